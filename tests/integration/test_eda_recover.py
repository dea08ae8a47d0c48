"""The service_recover and instance_recover rulebooks end to end, against the lab, as they run in production: a
real Alertmanager with the shipped alertmanager.yml (its route and receiver for the alert; shorter timings) -> the
collection's alertmanager source in real ansible-rulebook, running the shipped rulebook by FQCN -> the real runbook
-> the lab's sshd, Nova and BMC. Every outcome is read back from the lab and the runbook's report file.

- NovaComputeServiceDown for a host whose nova-compute was stopped: restarted over SSH, no fence, nothing moved.
- InstanceDown for two crashed instances, one marked for restart (named by instance_uuid) and one not (named by
  server): the first is started again, the second is reported and left SHUTOFF (the runbook decides from Nova).
"""

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
MARK = {'openstack_ha:restart': 'true'}


class Rulebook:
    """ansible-rulebook running the shipped rulebook NAME, and Alertmanager routing RECEIVER's alerts to it."""

    def __init__(self, lab, tmp_path, name, port_variable, receiver, inventory):
        self.tmp = tmp_path
        (tmp_path / 'inventory.yml').write_text(yaml.safe_dump(inventory))
        port = free_port()
        (tmp_path / 'vars.yml').write_text(yaml.safe_dump({port_variable: port}))
        env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
                   ANSIBLE_COLLECTIONS_PATH=collections_dir(tmp_path), ALERTMANAGER_WEBHOOK_TOKEN=TOKEN,
                   OS_CLIENT_CONFIG_FILE=lab['clouds_yaml'], ANSIBLE_PYTHON_INTERPRETER=sys.executable,
                   ANSIBLE_NOCOLOR='1', TMPDIR=str(tmp_path))
        self.processes = []
        try:
            self.rulebook = Process([tool('ansible-rulebook'), '-r', 'openstack_ha.recovery.' + name, '-i',
                                     'inventory.yml', '--vars', 'vars.yml', '-E', 'ALERTMANAGER_WEBHOOK_TOKEN', '-v'],
                                    str(tmp_path / 'ansible-rulebook.log'), cwd=str(tmp_path), env=env)
            self.processes.append(self.rulebook)
            url = 'http://127.0.0.1:%d' % port
            alertmanager, self.am_url = start_alertmanager(tmp_path, url + '/alerts', TOKEN, 'eda-wrong',
                                                           receiver_name=receiver)
            self.processes.append(alertmanager)
            wait_for('the rulebook listening', lambda: listening(port) and probe(url) == 405, 90)
        except BaseException:
            self.stop()
            raise

    def alert(self, *labels):
        subprocess.run([tool('amtool'), 'alert', 'add'] + list(labels) + ['--alertmanager.url=' + self.am_url],
                       check=True, capture_output=True, timeout=30)
        return time.time()

    def reports(self, pattern, count=1, timeout=300):
        """The COUNT report files matching PATTERN in the reports directory, once written, as JSON."""
        found = wait_for('%d report(s) %s (rulebook log: %s)' % (count, pattern, self.rulebook.log),
                         lambda: len(glob.glob(str(self.tmp / 'reports' / pattern))) >= count and
                         glob.glob(str(self.tmp / 'reports' / pattern)), timeout, interval=0.5)
        time.sleep(1)  # the file is written whole by one task; let a second report's task end as well
        reports = []
        for path in sorted(glob.glob(str(self.tmp / 'reports' / pattern))):
            with open(path) as handle:
                reports.append(json.load(handle))
        return reports

    def log(self):
        with open(self.rulebook.log, errors='replace') as handle:
            return handle.read()

    def stop(self):
        for process in reversed(self.processes):
            process.stop()


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
    rulebook = Rulebook(lab, tmp_path, 'service_recover', 'openstack_ha_service_listen_port',
                        'openstack-ha-service-recover', inventory)
    try:
        assert labctl('service', host, '--stop')['service'] == 'inactive'
        wait_for('Nova to report %s down' % host, lambda: compute_service(conn, host).state == 'down', 60)
        alerted = rulebook.alert('alertname=NovaComputeServiceDown', 'openstack_ha=restart', 'host=' + host,
                                 'severity=warning')
        report, = rulebook.reports('service_recover-%s-*.json' % host)
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
    rulebook = Rulebook(lab, tmp_path, 'instance_recover', 'openstack_ha_instance_listen_port',
                        'openstack-ha-instance-recover', inventory)
    try:
        alerted = rulebook.alert('alertname=InstanceDown', 'openstack_ha=instance', 'instance_uuid=' + marked['id'],
                                 'severity=warning')
        rulebook.alert('alertname=InstanceDown', 'openstack_ha=instance', 'server=' + unmarked['name'],
                       'severity=warning')
        reports = rulebook.reports('instance_recover-*.json', count=2)
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
