"""From an Alertmanager alert to recovered instances with nobody awake, against the lab: real Alertmanager (Debian
prometheus-alertmanager, the shipped route and receiver) -> the collection's alertmanager source in real
ansible-rulebook, running the shipped rulebook by FQCN -> the real host_failover runbook -> the lab's BMC and Nova.

Prints alert -> fence verified and alert -> last instance ACTIVE elsewhere.
"""

import datetime
import json
import os
import secrets
import sys
import time

import pytest

from lab_helpers import REPO, compute_service, evacuation_migrations, labctl, wait_for

sys.path.insert(0, os.path.join(REPO, 'tests', 'eda'))
from eda_helpers import RulebookRun  # noqa: E402

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
    rulebook = RulebookRun(tmp_path, 'host_failover', inventory, 'openstack_ha_listen_port', TOKEN,
                           env={'OS_CLIENT_CONFIG_FILE': lab['clouds_yaml']})
    try:
        labctl('crash', host)
        wait_for('Nova to report %s down' % host, lambda: compute_service(conn, host).state == 'down', 60)
        alerted = rulebook.alert(*ROUTED, 'host=' + host)

        def recovered():
            placed = {s.id: (s.compute_host, s.status) for s in conn.compute.servers(details=True, all_projects=True)
                      if s.name.startswith('eda-fo')}
            return len(placed) == 4 and all(h != host and status == 'ACTIVE' for h, status in placed.values())

        wait_for('the servers of %s ACTIVE elsewhere (rulebook log: %s)' % (host, rulebook.rulebook.log), recovered,
                 600, interval=0.5)
        last_active = time.time()
        report, = rulebook.json_files('reports/failover-%s-*.json' % host, timeout=120)
    finally:
        rulebook.stop()

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
