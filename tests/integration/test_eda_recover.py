"""The service_recover and instance_recover rulebooks end to end, against the lab, as they run in production: a
real Alertmanager with the shipped alertmanager.yml (its route and receiver for the alert; shorter timings) -> the
collection's alertmanager source in real ansible-rulebook, running the shipped rulebook by FQCN -> the real runbook
-> the lab's sshd, Nova and BMC. Every outcome is read back from the lab and the runbook's report file.

- NovaComputeServiceDown for a host whose nova-compute was stopped: restarted over SSH, no fence, nothing moved.
- InstanceDown for two crashed instances, one marked for restart (named by instance_uuid) and one not (named by
  server): the first is started again, the second is reported and left SHUTOFF (the runbook decides from Nova).
"""

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
MARK = {'openstack_ha:restart': 'true'}


def power_offs_since(lab, host, since):
    with open(os.path.join(lab['hosts'][host]['state_dir'], 'bmc-events.log')) as log:
        events = [json.loads(line) for line in log if line.strip()]
    return [event for event in events if event.get('action') == 'off' and event['t'] > since]


def test_service_down_alert_restarts_the_service(fresh_lab, conn, tmp_path):
    lab, host = fresh_lab, 'compute1'
    servers = labctl('boot', '--count', '2', '--host', host, '--prefix', 'eda-sr')['servers']
    with open(lab['inventory']) as handle:
        inventory = json.load(handle)
    inventory['all']['children']['compute_hosts']['vars'].update(
        service_recover_report_dir=str(tmp_path / 'reports'), service_recover_lock_dir=str(tmp_path / 'locks'),
        host_failover_report_dir=str(tmp_path / 'reports'))
    rulebook = RulebookRun(tmp_path, 'service_recover', inventory, 'openstack_ha_service_listen_port', TOKEN,
                           'openstack-ha-service-recover', env={'OS_CLIENT_CONFIG_FILE': lab['clouds_yaml']})
    try:
        assert labctl('service', host, '--stop')['service'] == 'inactive'
        wait_for('Nova to report %s down' % host, lambda: compute_service(conn, host).state == 'down', 60)
        alerted = rulebook.alert('alertname=NovaComputeServiceDown', 'openstack_ha=restart', 'host=' + host,
                                 'severity=warning')
        report, = rulebook.json_files('reports/service_recover-%s-*.json' % host)
        wait_for('Nova to report %s up' % host, lambda: compute_service(conn, host).state == 'up', 60)
        restarted = time.time()
    finally:
        rulebook.stop()

    assert report['outcome'] == 'recovered_service', report['message']
    assert report['host'] == host and report['escalation'] is None
    assert [attempt['up'] for attempt in report['attempts']] == [True]
    assert report['attempts'][0]['commands'][0]['cmd'] == 'systemctl restart nova-compute'
    assert labctl('service', host)['service'] == 'active'
    assert power_offs_since(lab, host, alerted) == []  # a service restart, not a fence
    assert evacuation_migrations(conn, host) == []
    placed = {s.compute_host for s in conn.compute.servers(details=True, all_projects=True)
              if s.name.startswith('eda-sr')}
    assert placed == {host} and len(servers) == 2
    assert TOKEN not in rulebook.log()
    print('\nalert -> nova-compute up in Nova again: %.1f s' % (restarted - alerted))


def test_instance_down_alerts_start_the_marked_instance_only(fresh_lab, conn, tmp_path):
    lab = fresh_lab
    marked, unmarked = [labctl('boot', '--host', 'compute2', '--prefix', prefix)['servers'][0]
                        for prefix in ('eda-ir-marked', 'eda-ir-unmarked')]
    conn.compute.set_server_metadata(marked['id'], **MARK)
    for server in (marked, unmarked):
        assert labctl('crash-instance', server['id'])['status_after'] == 'SHUTOFF'
    inventory = {'all': {
        'hosts': {'localhost': {'ansible_connection': 'local'}},
        'vars': {'openstack_ha_cloud': lab['cloud'], 'instance_recover_report_dir': str(tmp_path / 'reports'),
                 'instance_recover_poll_interval': 1}}}
    rulebook = RulebookRun(tmp_path, 'instance_recover', inventory, 'openstack_ha_instance_listen_port', TOKEN,
                           'openstack-ha-instance-recover', env={'OS_CLIENT_CONFIG_FILE': lab['clouds_yaml']})
    try:
        alerted = rulebook.alert('alertname=InstanceDown', 'openstack_ha=instance', 'instance_uuid=' + marked['id'],
                                 'severity=warning')
        rulebook.alert('alertname=InstanceDown', 'openstack_ha=instance', 'server=' + unmarked['name'],
                       'severity=warning')
        reports = rulebook.json_files('reports/instance_recover-*.json', count=2)
        wait_for('%s ACTIVE' % marked['name'], lambda: conn.compute.get_server(marked['id']).status == 'ACTIVE',
                 120, interval=0.5)
        started = time.time()
    finally:
        rulebook.stop()

    by_server = {}
    for report in reports:
        record, = report['instances']  # one run per alert, each for the one instance its alert names
        by_server[record['name']] = (report['outcome'], record)
    assert set(by_server) == {marked['name'], unmarked['name']}
    outcome, record = by_server[marked['name']]
    assert (outcome, record['outcome']) == ('changed', 'restarted'), record
    outcome, record = by_server[unmarked['name']]
    assert (outcome, record['outcome']) == ('unchanged', 'skipped'), record
    assert record['reason'].startswith('not marked for restart')
    assert conn.compute.get_server(unmarked['id']).status == 'SHUTOFF'
    assert len(conn.compute.get_server_metadata(marked['id']).metadata['openstack_ha:restart_history'].split()) == 1
    assert TOKEN not in rulebook.log()
    print('\nalert -> marked instance ACTIVE again: %.1f s' % (started - alerted))
