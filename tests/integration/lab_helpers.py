"""Helpers for integration tests against the lab: run labctl, poll, read Nova and the BMCs.

Import them from here (`from lab_helpers import ...`), never from conftest: several test suites have a
conftest.py and only one module of that name can be imported in a pytest run.
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
