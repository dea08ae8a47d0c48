"""`make demo` must keep working: run demo/demo.py against the test session's lab and check its outcome in Nova."""

import json
import os
import subprocess
import sys

from lab_helpers import REPO, compute_service


def test_demo_recovers_every_server_with_the_collection(fresh_lab, conn):
    proc = subprocess.run([sys.executable, os.path.join(REPO, 'demo', 'demo.py')], capture_output=True,
                          text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary['host'] == 'compute1' and summary['fence_verified'] is True and summary['outcome'] == 'recovered'
    assert 'gate corroboration PASS' in proc.stdout and 'FENCED: level 1 (ipmi)' in proc.stdout
    assert 'RECOVERED' in proc.stdout

    servers = list(conn.compute.servers(all_projects=True))
    assert len(servers) == summary['servers'] == 6
    assert all(s.status == 'ACTIVE' and s.compute_host != 'compute1' for s in servers)
    svc = compute_service(conn, 'compute1')
    assert svc.is_forced_down and svc.status == 'disabled'
    assert svc.disabled_reason.startswith('openstack_ha:failover run=')
