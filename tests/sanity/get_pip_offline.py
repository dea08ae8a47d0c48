"""Offline stand-in for the get-pip script `ansible-test sanity --local` downloads from Ansible's CI file host.

`make sanity` installs it as ~/.ansible/test/cache/get_pip_<version>.py. Like get-pip, it takes pip install
arguments plus get-pip's own --no-setuptools / --no-wheel: it bootstraps pip with ensurepip, then installs
the requested packages (the pinned pip among them) from the package index pip is configured for.

ensurepip runs in a child process because it sets PIP_CONFIG_FILE=/dev/null, which would make pip lose
the configuration (such as the CA certificate in /etc/pip.conf); pip install gets the original environment.
"""

import os
import subprocess
import sys

GET_PIP_ONLY_OPTIONS = ('--no-setuptools', '--no-wheel')


def main():
    environment = dict(os.environ)
    arguments = [argument for argument in sys.argv[1:] if argument not in GET_PIP_ONLY_OPTIONS]
    subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade'], env=environment,
                          stdout=subprocess.DEVNULL)
    subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + arguments, env=environment)


if __name__ == '__main__':
    main()
