"""Fixtures for integration tests against the real lab (lab/labctl).

The session starts the lab itself when it is not running (CI starts with nothing) and stops it at the end
only in that case, so a developer's running lab survives a test run. Every test that changes the cloud
uses `fresh_lab`, which returns the lab to a clean state afterwards (servers deleted, hosts powered,
up and enabled): Nova's scheduler never picks a disabled host, so a leaked disabled host breaks the next test.
"""

import json
import os
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABCTL = os.path.join(REPO, 'lab', 'labctl')


class LabCommandError(AssertionError):
    pass


def labctl(*args, timeout=600, check=True):
    """Run `lab/labctl --json ARGS` and return its parsed JSON output."""
    proc = subprocess.run([LABCTL, '--json'] + list(args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise LabCommandError('labctl %s failed (exit %d):\n%s' % (' '.join(args), proc.returncode,
                                                                 proc.stderr[-3000:]))
    return json.loads(proc.stdout) if proc.returncode == 0 else proc


def wait_for(what, predicate, timeout, interval=0.25):
    """Poll `predicate` until it returns something truthy; fail the test naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail('timed out after %ss waiting for %s' % (timeout, what))
        time.sleep(interval)


def _lab_running():
    proc = subprocess.run([LABCTL, '--json', 'status'], capture_output=True, text=True, timeout=300,
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


def compute_service(conn, host):
    for svc in conn.compute.services(binary='nova-compute', host=host):
        return svc
    raise AssertionError('no nova-compute service for host %s' % host)


def evacuation_migrations(conn, host):
    """Nova's evacuation migration records whose source is `host` (os-migrations, microversion 2.59)."""
    resp = conn.compute.get('/os-migrations?migration_type=evacuation&source_compute=%s' % host,
                            microversion='2.59')
    resp.raise_for_status()
    return resp.json()['migrations']


def ipmitool(bmc, *args, check=True, timeout=30):
    """Real ipmitool (Debian) against a lab BMC, password passed through the environment."""
    argv = ['ipmitool', '-I', 'lanplus', '-C', '3', '-N', '1', '-R', '2', '-H', bmc['bmc_address'],
            '-p', str(bmc['ipmi_port']), '-U', bmc['bmc_username'], '-E'] + list(args)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, IPMI_PASSWORD=bmc['bmc_password']))
    if check and proc.returncode != 0:
        raise AssertionError('ipmitool %s failed: %s' % (' '.join(args), proc.stderr))
    return proc.stdout


def process_alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')
    except FileNotFoundError:
        return False
