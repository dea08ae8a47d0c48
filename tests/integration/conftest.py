"""Fixtures for integration tests against the real lab (lab/labctl).

The session starts the lab itself when it is not running (CI starts with nothing) and stops it at the end
only in that case, so a developer's running lab survives a test run. Every test that changes the cloud
uses `fresh_lab`, which returns the lab to a clean state afterwards (servers deleted, hosts powered,
up and enabled): Nova's scheduler never picks a disabled host, so a leaked disabled host breaks the next test.

Under pytest-xdist (`make integration` runs three workers, `--dist loadfile`), each worker has a lab of its own:
OHLAB_HOME gets the worker's name appended and OHLAB_BASE_PORT moves down 2000 ports per worker; the workers' labs
share the installed lab venv. Most of a lab test's time is waiting for Nova, so several labs on two cores finish
the suite sooner than one.
"""

import json
import os
import subprocess

import pytest


def _lab_of_this_worker():
    worker = os.environ.get('PYTEST_XDIST_WORKER')
    if not worker:
        return
    home = os.environ.get('OHLAB_HOME', '/var/tmp/ohlab')
    worker_home = '%s-%s' % (home, worker)
    os.environ['OHLAB_HOME'] = worker_home
    # downwards: Linux hands out ephemeral ports from 32768, and a lab port taken as the local end of some
    # connection cannot be bound (a lab uses BASE .. BASE+1300)
    os.environ['OHLAB_BASE_PORT'] = str(int(os.environ.get('OHLAB_BASE_PORT', '28000'))
                                        - 2000 * int(worker.lstrip('gw')))
    os.makedirs(worker_home, exist_ok=True)
    # the runbooks' run locks (default ~/.ansible/openstack_ha/locks) are per controller: the workers' labs have
    # the same host names, so a failover of compute1 in one lab must not hold the lock of compute1 in the other
    os.environ['OPENSTACK_HA_LOCK_DIR'] = os.path.join(worker_home, 'locks')
    venv = os.path.join(worker_home, 'venv')
    if os.path.isdir(os.path.join(home, 'venv')) and not os.path.exists(venv):
        os.symlink(os.path.join(home, 'venv'), venv)


# before lab_helpers or any test reads the environment: every labctl the tests run inherits it
_lab_of_this_worker()

from lab_helpers import LABCTL, labctl  # noqa: E402


def _lab_running():
    proc = subprocess.run([LABCTL, "--json", "status"], capture_output=True, text=True, timeout=1800,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        return False
    status = json.loads(proc.stdout)
    return all(v == 'running' for v in status['services'].values())


@pytest.fixture(scope='session')
def lab():
    """The running lab: labctl's `env` output (clouds.yaml, cloud name, hosts and their BMCs)."""
    started_here = not _lab_running()
    if started_here:
        labctl('up', '--computes', '3', timeout=1800)
    env = labctl('env')
    yield env
    if started_here and not os.environ.get('OHLAB_KEEP'):
        labctl('down', timeout=300)


@pytest.fixture(scope='session')
def conn(lab):
    import openstack.config
    import openstack.connection
    region = openstack.config.OpenStackConfig(config_files=[lab['clouds_yaml']]).get_one(cloud=lab['cloud'])
    return openstack.connection.Connection(config=region)


@pytest.fixture
def fresh_lab(lab):
    """A lab with no servers and every host up; cleaned again after the test."""
    labctl('reset', timeout=600)
    yield lab
    labctl('reset', timeout=600)


