"""End to end on loopback: real Alertmanager -> openstack_ha.recovery.alertmanager in real ansible-rulebook -> a playbook.

Alertmanager (Debian prometheus-alertmanager) runs the shipped docs/monitoring/alertmanager.yml, with the test's
port, token file and timings (group_wait 0s, group_interval 1s), plus a second receiver holding a wrong token.
ansible-rulebook 1.3.2 runs tests/eda/alert_echo.yml, which names the source by FQCN through an
ansible_collections/openstack_ha/recovery symlink to this checkout; its playbook writes one file per run.

"No run happened" is never waited for with a sleep: the test then sends a Sentinel alert through the same path and
waits for the Sentinel's file. ansible-rulebook runs actions in event order (sequential strategy), so when the
Sentinel's playbook has run, every earlier event has been through the rules.
"""

import datetime
import glob
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from eda_helpers import Process, free_port, http, listening, probe, read, tool, wait_for

pytestmark = pytest.mark.timeout(300)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.path.dirname(sys.executable)
SHIPPED_ALERTMANAGER_CONFIG = os.path.join(REPO, 'docs', 'monitoring', 'alertmanager.yml')
TOKEN = 'eda-' + secrets.token_hex(16)
WRONG_TOKEN = 'eda-' + secrets.token_hex(16)
ALERT = ['alertname=ComputeHostDown', 'openstack_ha=recover']  # what the shipped route sends to the source
STARTUP = 90  # seconds: Alertmanager ~0.2 s, ansible-rulebook (JVM, Drools) 3-4 s on this machine kind
RUN = 60  # seconds for one alert to reach the playbook's effect (measured ~1-2 s)


def alertmanager_config(source_url, token_file):
    """The shipped alertmanager.yml with the test's URL, token file and timings, plus the test's own routes."""
    with open(SHIPPED_ALERTMANAGER_CONFIG) as handle:
        config = yaml.safe_load(handle)
    recovery_route, = [route for route in config['route']['routes'] if route['receiver'] == 'openstack-ha-recovery']
    recovery_route.update(group_wait='0s', group_interval='1s')
    receiver, = [entry for entry in config['receivers'] if entry['name'] == 'openstack-ha-recovery']
    webhook, = receiver['webhook_configs']
    webhook['url'] = source_url
    webhook['http_config']['authorization']['credentials_file'] = token_file
    wrong = {'name': 'wrong-token', 'webhook_configs': [dict(webhook, http_config={
        'authorization': {'type': 'Bearer', 'credentials': WRONG_TOKEN}})]}
    config['receivers'].append(wrong)
    config['route']['routes'] = [
        {'receiver': 'wrong-token', 'matchers': ['token="wrong"'], 'group_by': ['host'],
         'group_wait': '0s', 'group_interval': '1s'},
        {'receiver': 'openstack-ha-recovery', 'matchers': ['alertname="Sentinel"'], 'group_by': ['host'],
         'group_wait': '0s', 'group_interval': '1s'},
    ] + config['route']['routes']
    return config


class Stack:
    def __init__(self, tmp, alertmanager, rulebook, am_url, source_url, out_dir):
        self.tmp = tmp
        self.alertmanager = alertmanager
        self.rulebook = rulebook
        self.am_url = am_url
        self.source_url = source_url
        self.out_dir = out_dir
        self.sentinels = 0
        self.seen = {}  # run file -> wall-clock time the test saw it

    def runs(self, host):
        return sorted(glob.glob(os.path.join(self.out_dir, '%s.*.json' % host)))

    def add_alert(self, *labels):
        subprocess.run([tool('amtool'), 'alert', 'add'] + list(labels) + ['--alertmanager.url=' + self.am_url],
                       check=True, capture_output=True, timeout=30)

    def wait_runs(self, host, count=1):
        runs = wait_for('%d playbook run(s) for %s' % (count, host), lambda: len(self.runs(host)) >= count and
                        self.runs(host), self.rulebook.popen, self.rulebook.log, RUN, interval=0.01)
        self.seen.setdefault(runs[-1], time.time())
        return runs

    def drain(self):
        """Return once every event sent so far has been through the rules (see the module docstring)."""
        self.sentinels += 1
        host = 'sentinel-%d' % self.sentinels
        self.add_alert('alertname=Sentinel', 'host=' + host)
        self.wait_runs(host)

    def metric(self, name):
        dummy, text = http(self.am_url + '/metrics')
        match = re.search(r'^%s\{integration="webhook"\} (\S+)$' % re.escape(name), text, re.M)
        return float(match.group(1)) if match else 0.0

    def source_log(self):
        return read(self.rulebook.log)


@pytest.fixture(scope='module')
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('eda')
    java, alertmanager_bin, rulebook_bin = tool('java'), tool('prometheus-alertmanager'), tool('ansible-rulebook')
    tool('amtool')
    del java
    stopped = []
    try:
        # The collection, by FQCN, from this checkout.
        collections = tmp / 'collections'
        (collections / 'ansible_collections' / 'openstack_ha').mkdir(parents=True)
        os.symlink(REPO, str(collections / 'ansible_collections' / 'openstack_ha' / 'recovery'))
        out_dir = tmp / 'runs'
        out_dir.mkdir()
        work = tmp / 'rulebook'
        work.mkdir()
        for name in ('alert_echo.yml', 'record_alert.yml'):
            shutil.copy(os.path.join(HERE, name), str(work / name))
        (work / 'inventory.yml').write_text(yaml.safe_dump({'all': {'hosts': {'localhost': {
            'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}}}}))
        source_port, am_port = free_port(), free_port()
        (work / 'vars.yml').write_text(yaml.safe_dump({'source_port': source_port, 'out_dir': str(out_dir)}))
        source_url = 'http://127.0.0.1:%d' % source_port
        am_url = 'http://127.0.0.1:%d' % am_port

        # TMPDIR: ansible-rulebook makes a private data dir per run_playbook and removes it when the run ends; the
        # run still finishing when the test stops ansible-rulebook would leave its directory in /tmp otherwise.
        (tmp / 'tmp').mkdir()
        env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''), TMPDIR=str(tmp / 'tmp'),
                   ANSIBLE_COLLECTIONS_PATH=str(collections), EDA_TEST_TOKEN=TOKEN, ANSIBLE_NOCOLOR='1')
        rulebook = Process([rulebook_bin, '-r', 'alert_echo.yml', '-i', 'inventory.yml', '-e', 'vars.yml',
                            '-E', 'EDA_TEST_TOKEN', '-v'], str(tmp / 'ansible-rulebook.log'), cwd=str(work), env=env)
        stopped.append(rulebook)

        token_file = tmp / 'token'
        token_file.write_text(TOKEN)
        am_config = tmp / 'alertmanager.yml'
        am_config.write_text(yaml.safe_dump(alertmanager_config(source_url + '/alerts', str(token_file))))
        alertmanager = Process([alertmanager_bin, '--config.file=%s' % am_config, '--storage.path=%s' % (tmp / 'am'),
                                '--web.listen-address=127.0.0.1:%d' % am_port, '--cluster.listen-address=',
                                '--log.level=debug'], str(tmp / 'alertmanager.log'))
        stopped.append(alertmanager)

        started = time.monotonic()
        wait_for('Alertmanager ready', lambda: listening(am_port) and probe(am_url + '/-/ready') == 200,
                 alertmanager.popen, alertmanager.log, STARTUP)
        # Readiness of the source: it answers, and a GET is refused with 405 before any authentication.
        wait_for('the event source listening', lambda: listening(source_port) and probe(source_url) == 405,
                 rulebook.popen, rulebook.log, STARTUP)
        print('\nansible-rulebook and Alertmanager ready in %.2f s' % (time.monotonic() - started))
        stack = Stack(tmp, alertmanager, rulebook, am_url, source_url, str(out_dir))
        yield stack
        print_run_latencies(stack.seen)
    finally:
        for process in reversed(stopped):
            process.stop()


def print_run_latencies(seen):
    """Event received by the source -> file seen by the test, for every run (mostly ansible-runner's start-up)."""
    spans = []
    for path, when in sorted(seen.items(), key=lambda item: item[1]):
        with open(path) as handle:
            event = json.load(handle)
        spans.append('%s %.2f s' % (event['alert']['labels']['host'], when - parse_time(event['meta']['received_at'])))
    print('\nevent in the source -> playbook effect, per run: ' + ', '.join(spans))


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace('Z', '+00:00')).timestamp()


def test_a_firing_alert_runs_the_playbook_for_its_host(stack, record_property):
    wall, started = time.time(), time.monotonic()
    stack.add_alert(*ALERT + ['host=compute1'])
    added = time.monotonic()
    run, = stack.wait_runs('compute1')
    effect = time.monotonic()
    with open(run) as handle:
        event = json.load(handle)
    assert event['alert']['status'] == 'firing'
    assert event['alert']['labels'] == {'alertname': 'ComputeHostDown', 'openstack_ha': 'recover', 'host': 'compute1'}
    assert event['receiver'] == 'openstack-ha-recovery'
    assert event['groupKey'].endswith('{host="compute1"}')
    assert event['meta']['endpoint'] == '/alerts'
    assert event['meta']['source'] == {'name': 'openstack_ha.recovery.alertmanager',
                                       'type': 'openstack_ha.recovery.alertmanager'}
    to_source = parse_time(event['meta']['received_at']) - wall
    latency = effect - started
    print('\nlatency amtool alert add -> playbook effect: %.3f s (amtool command %.3f s; alert add -> event in the '
          'source %.3f s; event -> playbook effect %.3f s)' % (latency, added - started, to_source, latency - to_source))
    record_property('latency_alert_to_playbook_s', round(latency, 3))
    assert latency < RUN


def test_repeated_alerts_for_one_host_start_one_run(stack):
    stack.add_alert(*ALERT + ['host=compute2'])
    stack.wait_runs('compute2')
    # A second alert for the same host (another label set): Alertmanager re-notifies the host's group with both
    # alerts, so two more firing events for compute2 reach the rules; the throttle lets none of them run.
    stack.add_alert(*ALERT + ['host=compute2', 'instance=compute2:9100'])
    wait_for('a notification of 2 alerts for compute2', lambda: re.search(
        r'queued 2 alert event\(s\) from receiver openstack-ha-recovery \(group \S*\{host="compute2"\}, firing\)',
        stack.source_log()), stack.rulebook.popen, stack.rulebook.log, RUN)
    # The same alert again, straight to the source with the right token.
    body = json.dumps({'version': '4', 'receiver': 'direct', 'status': 'firing', 'alerts': [
        {'status': 'firing', 'labels': {'alertname': 'ComputeHostDown', 'host': 'compute2'}}]}).encode()
    assert http(stack.source_url + '/alerts', body, {'Authorization': 'Bearer ' + TOKEN}, 'POST') == \
        (200, '{"events": 1}')
    stack.drain()
    assert len(stack.runs('compute2')) == 1


def test_a_wrong_token_is_refused_with_401_and_runs_nothing(stack):
    failed_before = stack.metric('alertmanager_notifications_failed_total')
    # Through Alertmanager: its second receiver holds a wrong token.
    stack.add_alert(*ALERT + ['host=compute3', 'token=wrong'])
    wait_for('Alertmanager failing to deliver with the wrong token',
             lambda: stack.metric('alertmanager_notifications_failed_total') > failed_before,
             stack.alertmanager.popen, stack.alertmanager.log, RUN)
    assert 'unexpected status code 401' in read(stack.alertmanager.log)
    # Directly, with a wrong token, with none, and with the right token in another scheme.
    body = json.dumps({'version': '4', 'alerts': [
        {'status': 'firing', 'labels': {'alertname': 'ComputeHostDown', 'host': 'compute3'}}]}).encode()
    for headers in ({'Authorization': 'Bearer ' + WRONG_TOKEN}, {}, {'Authorization': 'Basic ' + TOKEN}):
        status, dummy = http(stack.source_url + '/alerts', body, headers, 'POST')
        assert status == 401
    stack.drain()
    assert stack.runs('compute3') == []
    assert 'rejected POST /alerts from 127.0.0.1: 401 invalid Bearer token' in stack.source_log()


def test_a_resolved_alert_runs_nothing(stack):
    body = json.dumps({'version': '4', 'receiver': 'direct', 'status': 'resolved', 'alerts': [
        {'status': 'resolved', 'labels': {'alertname': 'ComputeHostDown', 'host': 'compute4'},
         'endsAt': '2026-01-05T10:05:00Z'}]}).encode()
    assert http(stack.source_url + '/alerts', body, {'Authorization': 'Bearer ' + TOKEN}, 'POST') == \
        (200, '{"events": 1}')
    stack.drain()
    assert stack.runs('compute4') == []


def test_the_token_appears_in_no_log(stack):
    stack.drain()
    assert TOKEN not in stack.source_log()
    assert WRONG_TOKEN not in stack.source_log()
    assert TOKEN not in read(stack.alertmanager.log)
    for run in glob.glob(os.path.join(stack.out_dir, '*.json')):
        assert TOKEN not in read(run)


def test_ansible_rulebook_stops_with_the_sources_message_on_a_bad_argument(tmp_path):
    """A typo in the source's arguments stops ansible-rulebook at once, naming the argument (no silent default)."""
    collections = tmp_path / 'collections' / 'ansible_collections' / 'openstack_ha'
    collections.mkdir(parents=True)
    os.symlink(REPO, str(collections / 'recovery'))
    (tmp_path / 'inventory.yml').write_text('all:\n  hosts:\n    localhost:\n')
    (tmp_path / 'bad.yml').write_text(yaml.safe_dump([{
        'name': 'A typo in the source arguments', 'hosts': 'all',
        'sources': [{'openstack_ha.recovery.alertmanager': {'port': free_port(), 'token': '{{ EDA_TEST_TOKEN }}',
                                                            'bind': '0.0.0.0'}}],
        'rules': [{'name': 'Anything', 'condition': 'event.alert is defined', 'action': {'debug': None}}]}]))
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''), TMPDIR=str(tmp_path),
               ANSIBLE_COLLECTIONS_PATH=str(tmp_path / 'collections'), EDA_TEST_TOKEN=TOKEN)
    result = subprocess.run([tool('ansible-rulebook'), '-r', 'bad.yml', '-i', 'inventory.yml', '-E', 'EDA_TEST_TOKEN'],
                            cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=STARTUP, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert 'ConfigError: unknown argument bind of openstack_ha.recovery.alertmanager; valid arguments: ' in output
    assert TOKEN not in output
