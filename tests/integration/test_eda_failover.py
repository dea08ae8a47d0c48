"""From an Alertmanager alert to recovered instances with nobody awake, against the lab: real Alertmanager (Debian
prometheus-alertmanager, the shipped route and receiver) -> the collection's alertmanager source in real
ansible-rulebook, running the shipped rulebook by FQCN -> the real host_failover runbook -> the lab's BMC and Nova.

Prints alert -> fence verified and alert -> last instance ACTIVE elsewhere.
"""

import datetime
import glob
import json
import os
import secrets
import subprocess
import sys
import time

import pytest
import yaml

from lab_helpers import REPO, compute_service, evacuation_migrations, labctl, wait_for

sys.path.insert(0, os.path.join(REPO, 'tests', 'eda'))
from eda_helpers import Process, collections_dir, free_port, listening, probe, start_alertmanager, tool  # noqa: E402

pytestmark = pytest.mark.timeout(900, func_only=True)

TOKEN = 'eda-' + secrets.token_hex(16)
ROUTED = ['alertname=ComputeHostDown', 'openstack_ha=recover']


def test_alert_to_recovered_instances(fresh_lab, conn, tmp_path, record_property):
    lab, host = fresh_lab, 'compute2'
    servers = labctl('boot', '--count', '4', '--host', host, '--prefix', 'eda-fo', timeout=600)['servers']
    reports = tmp_path / 'reports'
    with open(lab['inventory']) as handle:
        inventory = json.load(handle)
    inventory['all']['children']['compute_hosts']['vars'].update(
        host_failover_report_dir=str(reports), host_failover_lock_dir=str(tmp_path / 'locks'))
    (tmp_path / 'inventory.yml').write_text(yaml.safe_dump(inventory))
    port = free_port()
    (tmp_path / 'vars.yml').write_text(yaml.safe_dump({'openstack_ha_listen_port': port}))
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
               ANSIBLE_COLLECTIONS_PATH=collections_dir(tmp_path), ALERTMANAGER_WEBHOOK_TOKEN=TOKEN,
               OS_CLIENT_CONFIG_FILE=lab['clouds_yaml'], ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_NOCOLOR='1', TMPDIR=str(tmp_path))
    stopped = []
    try:
        rulebook = Process([tool('ansible-rulebook'), '-r', 'openstack_ha.recovery.host_failover', '-i',
                            'inventory.yml', '--vars', 'vars.yml', '-E', 'ALERTMANAGER_WEBHOOK_TOKEN', '-v'],
                           str(tmp_path / 'ansible-rulebook.log'), cwd=str(tmp_path), env=env)
        stopped.append(rulebook)
        url = 'http://127.0.0.1:%d' % port
        alertmanager, am_url = start_alertmanager(tmp_path, url + '/alerts', TOKEN, 'eda-wrong')
        stopped.append(alertmanager)
        wait_for('the rulebook listening', lambda: listening(port) and probe(url) == 405, 90)

        labctl('crash', host)
        wait_for('Nova to report %s down' % host, lambda: compute_service(conn, host).state == 'down', 60)
        alerted = time.time()
        subprocess.run([tool('amtool'), 'alert', 'add'] + ROUTED + ['host=' + host, '--alertmanager.url=' + am_url],
                       check=True, capture_output=True, timeout=30)

        def recovered():
            placed = {s.id: (s.compute_host, s.status) for s in conn.compute.servers(details=True, all_projects=True)
                      if s.name.startswith('eda-fo')}
            return len(placed) == 4 and all(h != host and status == 'ACTIVE' for h, status in placed.values())

        wait_for('the servers of %s ACTIVE elsewhere (rulebook log: %s)' % (host, rulebook.log), recovered, 600,
                 interval=0.5)
        last_active = time.time()
        found = wait_for('the failover report', lambda: glob.glob(str(reports / ('failover-%s-*.json' % host))), 120)
        with open(found[0]) as handle:
            report = json.load(handle)
    finally:
        for process in reversed(stopped):
            process.stop()

    assert report['outcome'] == 'recovered', report['message']
    assert [s['down'] for s in report['signals'] if s['signal'] == 'alert'] == [True]
    with open(os.path.join(lab['hosts'][host]['state_dir'], 'bmc-events.log')) as log:
        offs = [json.loads(line) for line in log if '"action": "off"' in line]
    fenced = [event['t'] for event in offs if event['t'] > alerted and event.get('changed')]
    assert len(fenced) == 1
    migrations = evacuation_migrations(conn, host)
    assert len(migrations) == len(servers) == 4
    first = min(datetime.datetime.fromisoformat(m['created_at']).replace(tzinfo=datetime.timezone.utc).timestamp()
                for m in migrations)
    assert fenced[0] < first
    started = datetime.datetime.strptime(report['started'], '%Y-%m-%dT%H:%M:%SZ').replace(
        tzinfo=datetime.timezone.utc).timestamp()
    verified = started + [p['at_seconds'] for p in report['phases'] if p['phase'] == 'fence'][0]
    print('\nalert -> power off: %.1f s; alert -> fence verified: %.1f s (report, 1 s resolution); '
          'alert -> last instance ACTIVE elsewhere: %.1f s' % (fenced[0] - alerted, verified - alerted,
                                                               last_active - alerted))
    record_property('alert_to_fence_verified_s', round(verified - alerted, 1))
    record_property('alert_to_last_active_s', round(last_active - alerted, 1))
