"""Every molecule scenario of the roles (molecule/<scenario>/), run with `molecule test -s <scenario>` against the
lab: syntax, prepare, converge, idempotence (a second converge changes nothing), verify (reads Nova and the BMC),
cleanup (labctl reset)."""

import os
import subprocess
import sys

import pytest

from helpers_nova import collections_path
from lab_helpers import REPO, labctl

pytestmark = pytest.mark.timeout(900, func_only=True)

SCENARIOS = sorted(name for name in os.listdir(os.path.join(REPO, 'molecule'))
                   if os.path.isfile(os.path.join(REPO, 'molecule', name, 'molecule.yml')))


def test_every_role_has_a_scenario():
    roles = sorted(os.listdir(os.path.join(REPO, 'roles')))
    runbooks = [role for role in roles if role.startswith('host_') and role != 'host_fence']
    assert set(runbooks) <= set(SCENARIOS), 'roles without a molecule scenario: %s' % (set(runbooks) - set(SCENARIOS))


@pytest.mark.parametrize('scenario', SCENARIOS)
def test_molecule_scenario(lab, scenario):
    bin_dir = os.path.dirname(sys.executable)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), PATH=bin_dir + os.pathsep + os.environ['PATH'],
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR='1', NO_COLOR='1', PY_COLORS='0')
    # molecule keeps a scenario's state (prepared: true) between runs and the unmanaged driver never destroys
    # it, so a second run would skip prepare: start from a clean state every time
    subprocess.run([os.path.join(bin_dir, 'molecule'), 'reset', '-s', scenario], cwd=REPO, env=env, check=True,
                   capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    try:
        proc = subprocess.run([os.path.join(bin_dir, 'molecule'), 'test', '-s', scenario], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=760, stdin=subprocess.DEVNULL)
    finally:
        labctl('reset', timeout=600)  # whatever the scenario left (its cleanup may not have run)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-8000:]
