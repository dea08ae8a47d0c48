"""Fixtures of the fault suite (tests/faults): the lab, a scenario per test, and the table printed at the end.

The suite reuses the integration tests' helpers (tests/integration/lab_helpers.py, playbook_harness.py) and starts
the lab when it is not running, like tests/integration/conftest.py (OHLAB_KEEP=1 keeps a lab it started;
OHLAB_KEEP=as-is also leaves the servers of the last scenario, to look at them).
"""

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'integration'))

from lab_helpers import LABCTL, labctl  # noqa: E402  (after the path above)

from fault_lab import RESULTS, Scenario  # noqa: E402


def _lab_running():
    proc = subprocess.run([LABCTL, '--json', 'status'], capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL, check=False)
    return proc.returncode == 0 and all(v == 'running' for v in json.loads(proc.stdout)['services'].values())


@pytest.fixture(scope='session')
def lab():
    started_here = not _lab_running()
    if started_here:
        labctl('up', '--computes', '3', timeout=1800)
    yield labctl('env')
    keep = os.environ.get('OHLAB_KEEP')
    if started_here and not keep:
        labctl('down', timeout=300)
    elif RESULTS and keep != 'as-is':
        labctl('reset', timeout=600)  # a running lab is left clean for whoever uses it next


@pytest.fixture(scope='session')
def conn(lab):
    import openstack.config
    import openstack.connection
    region = openstack.config.OpenStackConfig(config_files=[lab['clouds_yaml']]).get_one(cloud=lab['cloud'])
    return openstack.connection.Connection(config=region)


@pytest.fixture
def scenario(lab, conn, tmp_path, request):
    """A Scenario for this test (see fault_lab.Scenario); its row joins the table whatever the test's result."""
    made = Scenario(lab, conn, tmp_path, request.node.name)
    yield made
    made.close()


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    rows = [('scenario', 'outcome', 'invariants held', 'recovery time')]
    rows += [(r['scenario'], r['outcome'], r['invariants'], r['seconds']) for r in RESULTS]
    widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
    terminalreporter.section('fault scenarios')
    for n, row in enumerate(rows):
        terminalreporter.write_line('  '.join(str(cell).ljust(width) for cell, width in zip(row, widths)))
        if n == 0:
            terminalreporter.write_line('  '.join('-' * width for width in widths))
