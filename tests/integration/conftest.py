"""Fixtures for integration tests against the real lab (lab/labctl).

The session starts the lab itself when it is not running (CI starts with nothing) and stops it at the end
only in that case, so a developer's running lab survives a test run. Every test that changes the cloud
uses `fresh_lab`, which returns the lab to a clean state afterwards (servers deleted, hosts powered,
up and enabled): Nova's scheduler never picks a disabled host, so a leaked disabled host breaks the next test.
"""

import json
import os
import subprocess

import pytest

from lab_helpers import LABCTL, labctl


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


