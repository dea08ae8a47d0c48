"""The shipped rulebook openstack_ha.recovery.host_failover, end to end on loopback: real Alertmanager (Debian
prometheus-alertmanager, the shipped docs/monitoring/alertmanager.yml) -> the collection's alertmanager source in
real ansible-rulebook 1.3.2, which loads rulebooks/host_failover.yml by FQCN from this checkout.

The only thing the test changes is the playbook the rule runs (the rulebook's variable
openstack_ha_failover_playbook): tests/eda/failover_recorder/record_failover.yml records, per run, the extra vars
the rulebook gives the runbook. The real runbook against the lab is the lead's test of host_failover.

"No run happened" is never waited for with a sleep: the test sends a Sentinel (a ComputeHostDown alert for a host
named sentinel-N) through the same source and rules, waits for the Sentinel's run, then for every run
ansible-rulebook started to have ended (its private data dirs, made when an action starts, are gone). Events go
through the rules in order and actions start in order (parallel strategy: asyncio tasks, started first in first
out), so by then any run an earlier event caused has started and written its file.
"""

import glob
import json
import os
import re
import secrets
import subprocess
import time

import pytest
import yaml

from eda_helpers import (HERE, STARTUP, Process, collections_dir, free_port, http, listening, localhost_inventory,
                         probe, read, start_alertmanager, tool, wait_for)

pytestmark = pytest.mark.timeout(300)

TOKEN = 'eda-' + secrets.token_hex(16)
WRONG_TOKEN = 'eda-' + secrets.token_hex(16)
ROUTED = ['alertname=ComputeHostDown', 'openstack_ha=recover']  # what the shipped route sends to the source
RUN = 60  # seconds for one alert to reach the playbook's effect (measured ~1-2 s)
RECORDER = os.path.join(HERE, 'failover_recorder', 'record_failover.yml')


class Rulebook:
    """ansible-rulebook running the shipped rulebook by FQCN with a vars file, and the runs it started."""

    def __init__(self, tmp, name, variables):
        self.tmp = os.path.join(str(tmp), name)
        os.makedirs(self.tmp)
        self.runs_dir = os.path.join(self.tmp, 'runs')
        self.private_tmp = os.path.join(self.tmp, 'tmp')
        os.makedirs(self.runs_dir)
        os.makedirs(self.private_tmp)
        self.port = free_port()
        self.url = 'http://127.0.0.1:%d' % self.port
        variables = dict(variables, openstack_ha_listen_port=self.port, openstack_ha_failover_playbook=RECORDER)
        with open(os.path.join(self.tmp, 'vars.yml'), 'w') as out:
            yaml.safe_dump(variables, out)
        localhost_inventory(os.path.join(self.tmp, 'inventory.yml'))
        # TMPDIR: ansible-rulebook makes a private data dir per run (removed when the run ends) in it.
        env = dict(os.environ, PATH=os.path.dirname(tool('ansible-rulebook')) + os.pathsep + os.environ['PATH'],
                   TMPDIR=self.private_tmp, ANSIBLE_COLLECTIONS_PATH=collections_dir(self.tmp),
                   ALERTMANAGER_WEBHOOK_TOKEN=TOKEN, OPENSTACK_HA_TEST_RUNS_DIR=self.runs_dir, ANSIBLE_NOCOLOR='1')
        self.process = Process([tool('ansible-rulebook'), '-r', 'openstack_ha.recovery.host_failover',
                                '-i', 'inventory.yml', '--vars', 'vars.yml', '-E', 'ALERTMANAGER_WEBHOOK_TOKEN', '-v'],
                               os.path.join(self.tmp, 'ansible-rulebook.log'), cwd=self.tmp, env=env)
        self.sentinels = 0
        self.seen = {}  # run file -> time.time() the test saw it

    def wait_ready(self):
        # Ready: it answers, and refuses a GET with 405 before any authentication.
        wait_for('the event source listening', lambda: listening(self.port) and probe(self.url) == 405,
                 self.process.popen, self.process.log, STARTUP)

    def log(self):
        return self.process.output()

    def runs(self, host=None):
        """Run records, sorted by file name; of one host, or of every host but the sentinels."""
        found = []
        for path in sorted(glob.glob(os.path.join(self.runs_dir, '%s.*.json' % (host or '*')))):
            if host is None and os.path.basename(path).startswith('sentinel-'):
                continue
            with open(path) as handle:
                found.append(dict(json.load(handle), path=path, finished=os.path.getmtime(path)))
        return found

    def post(self, *alerts, token=TOKEN, receiver='direct'):
        """POST one Alertmanager notification holding ALERTS (dicts of status and labels) straight to the source."""
        body = json.dumps({'version': '4', 'receiver': receiver, 'status': 'firing', 'alerts': list(alerts)}).encode()
        headers = {'Authorization': 'Bearer ' + token} if token else {}
        return http(self.url + '/alerts', body, headers, 'POST')

    def wait_runs(self, host, count=1):
        runs = wait_for('%d playbook run(s) for %s' % (count, host), lambda: len(self.runs(host)) >= count and
                        self.runs(host), self.process.popen, self.process.log, RUN, interval=0.01)
        for run in runs:
            self.seen.setdefault(run['path'], time.time())
        return runs

    def drain(self, alertname='ComputeHostDown', host_label='host'):
        """Return once every event sent so far has been through the rules and its runs have ended."""
        self.sentinels += 1
        host = 'sentinel-%d' % self.sentinels
        assert self.post({'status': 'firing', 'labels': {'alertname': alertname, host_label: host}}) == \
            (200, '{"events": 1}')
        self.wait_runs(host)
        wait_for('every run ansible-rulebook started to end',
                 lambda: not glob.glob(os.path.join(self.private_tmp, 'eda*')), self.process.popen, self.process.log,
                 RUN)


def firing(host=None, alertname='ComputeHostDown', **labels):
    labels = dict(labels, alertname=alertname)
    if host is not None:
        labels['host'] = host
    return {'status': 'firing', 'labels': labels}


@pytest.fixture(scope='module')
def stack(tmp_path_factory):
    """The shipped rulebook with its defaults (alert names, host label), behind the shipped Alertmanager route."""
    tmp = tmp_path_factory.mktemp('host_failover_rulebook')
    tool('java')
    tool('amtool')
    stopped = []
    try:
        started = time.monotonic()
        rulebook = Rulebook(tmp, 'defaults', {})
        stopped.append(rulebook.process)
        alertmanager, am_url = start_alertmanager(tmp, rulebook.url + '/alerts', TOKEN, WRONG_TOKEN)
        stopped.append(alertmanager)
        rulebook.wait_ready()
        print('\nansible-rulebook and Alertmanager ready in %.2f s' % (time.monotonic() - started))
        rulebook.alertmanager = alertmanager
        rulebook.am_url = am_url
        yield rulebook
    finally:
        for process in reversed(stopped):
            process.stop()


def add_alert(stack, *labels):
    subprocess.run([tool('amtool'), 'alert', 'add'] + list(labels) + ['--alertmanager.url=' + stack.am_url],
                   check=True, capture_output=True, timeout=30)


def webhook_failures(stack):
    dummy, text = http(stack.am_url + '/metrics')
    match = re.search(r'^alertmanager_notifications_failed_total\{integration="webhook"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_a_firing_alert_runs_the_failover_for_its_host(stack, record_property):
    started = time.monotonic()
    add_alert(stack, *ROUTED + ['host=compute1'])
    run, = stack.wait_runs('compute1')
    latency = time.monotonic() - started
    assert run['compute_host'] == 'compute1'
    eda = run['ansible_eda']
    assert eda['rule'] == 'Fail over the host'
    assert eda['ruleset'] == 'Fail over compute hosts that Alertmanager reports down'
    failover = eda['event']['openstack_ha_failover']
    assert failover['host'] == 'compute1'
    assert failover['wanted'] is True
    assert failover['alertname'] == 'ComputeHostDown'
    assert failover['receiver'] == 'openstack-ha-recovery'
    alert = failover['alert']
    assert alert['status'] == 'firing'
    assert alert['labels'] == {'alertname': 'ComputeHostDown', 'openstack_ha': 'recover', 'host': 'compute1'}
    assert re.match(r'^[0-9a-f]{16}$', alert['fingerprint'])
    assert alert['startsAt']
    assert run['host_failover_alert'] == alert  # the runbook's corroboration gate counts a firing alert
    print('\nlatency amtool alert add -> failover playbook effect: %.3f s' % latency)
    record_property('latency_alert_to_failover_playbook_s', round(latency, 3))


def test_repeated_alerts_for_one_host_start_one_run(stack):
    add_alert(stack, *ROUTED + ['host=compute2'])
    stack.wait_runs('compute2')
    # A second alert for the same host (another label set): Alertmanager re-notifies the host's group with both
    # alerts, so two more firing events for compute2 reach the rules; the throttle lets none of them run.
    add_alert(stack, *ROUTED + ['host=compute2', 'instance=compute2:9100'])
    wait_for('a notification of 2 alerts for compute2', lambda: re.search(
        r'queued 2 alert event\(s\) from receiver openstack-ha-recovery \(group \S*\{host="compute2"\}, firing\)',
        stack.log()), stack.process.popen, stack.process.log, RUN)
    # The same alert again, straight to the source, twice in one notification.
    assert stack.post(firing('compute2'), firing('compute2')) == (200, '{"events": 2}')
    stack.drain()
    assert len(stack.runs('compute2')) == 1


def test_many_hosts_alerting_at_once_each_start_a_run_in_parallel(stack, record_property):
    """No host is dropped: each reaches the runbook (whose storm guard decides), and the runs overlap in time."""
    hosts = ['storm%d' % number for number in range(1, 6)]
    started = time.monotonic()
    assert stack.post(*[firing(host) for host in hosts] + [firing('storm1')]) == (200, '{"events": 6}')
    runs = [stack.wait_runs(host)[0] for host in hosts]
    elapsed = time.monotonic() - started
    stack.drain()
    assert sorted(run['compute_host'] for run in stack.runs() if run['compute_host'].startswith('storm')) == hosts
    first_end = min(run['finished'] for run in runs)
    overlapping = [run['compute_host'] for run in runs if run['started'] < first_end]
    assert len(overlapping) >= 2, 'the 5 runs did not overlap: %s' % [(r['started'], r['finished']) for r in runs]
    print('\n5 hosts in one notification -> 5 runs in %.2f s; runs already going when the first ended: %s'
          % (elapsed, overlapping))
    record_property('five_host_runs_s', round(elapsed, 3))


def test_a_resolved_alert_starts_nothing(stack):
    body = json.dumps({'version': '4', 'receiver': 'direct', 'status': 'resolved', 'alerts': [
        {'status': 'resolved', 'labels': {'alertname': 'ComputeHostDown', 'host': 'compute4'},
         'endsAt': '2026-01-05T10:05:00Z'}]}).encode()
    assert http(stack.url + '/alerts', body, {'Authorization': 'Bearer ' + TOKEN}, 'POST') == (200, '{"events": 1}')
    stack.drain()
    assert stack.runs('compute4') == []


def test_an_alert_without_the_host_label_is_logged_and_starts_nothing(stack):
    before = len(stack.runs())
    # Through Alertmanager: the route groups by host, so the alert arrives in a group of its own.
    add_alert(stack, *ROUTED + ['instance=10.0.0.9:9100'])
    wait_for('the rule logging the alert without a host label', lambda: re.search(
        r"NOT failing over: alert ComputeHostDown \(fingerprint [0-9a-f]{16}\) has no label 'host' naming the "
        r"compute host; labels: \{[^}]*'instance': '10\.0\.0\.9:9100'", stack.log()),
        stack.process.popen, stack.process.log, RUN)
    stack.drain()
    assert len(stack.runs()) == before


def test_alerts_of_other_names_start_nothing(stack):
    assert stack.post(firing('compute5', alertname='NodeExporterDown'),
                      firing('compute5', alertname='NovaComputeServiceDown')) == (200, '{"events": 2}')
    stack.drain()
    assert stack.runs('compute5') == []
    assert 'compute5' not in stack.log()


def test_a_wrong_token_is_refused_with_401_and_starts_nothing(stack):
    failed_before = webhook_failures(stack)
    # Through Alertmanager: its second receiver holds a wrong token.
    add_alert(stack, *ROUTED + ['host=compute3', 'token=wrong'])
    wait_for('Alertmanager failing to deliver with the wrong token', lambda: webhook_failures(stack) > failed_before,
             stack.alertmanager.popen, stack.alertmanager.log, RUN)
    assert 'unexpected status code 401' in read(stack.alertmanager.log)
    # Directly: a wrong token, none.
    assert stack.post(firing('compute3'), token=WRONG_TOKEN)[0] == 401
    assert stack.post(firing('compute3'), token=None)[0] == 401
    stack.drain()
    assert stack.runs('compute3') == []


def test_the_token_is_in_no_log_and_no_run(stack):
    stack.drain()
    assert TOKEN not in stack.log()
    assert WRONG_TOKEN not in stack.log()
    assert TOKEN not in read(stack.alertmanager.log)
    for path in glob.glob(os.path.join(stack.runs_dir, '*.json')):
        assert TOKEN not in read(path)


def test_alert_names_and_the_host_label_are_variables(tmp_path):
    """Another alert name list and host label: only those alerts run, and the host comes from that label."""
    rulebook = Rulebook(tmp_path, 'custom', {'openstack_ha_alertnames': ['NovaHostDown', 'HypervisorDown'],
                                             'openstack_ha_host_label': 'nova_host'})
    try:
        rulebook.wait_ready()
        assert rulebook.post(
            firing(alertname='NovaHostDown', nova_host='hv1', host='wrong1'),
            firing(alertname='HypervisorDown', nova_host='hv2'),
            firing(alertname='ComputeHostDown', nova_host='hv3', host='hv3'),
            firing(alertname='NovaHostDown', host='hv4')) == (200, '{"events": 4}')
        assert [run['compute_host'] for run in rulebook.wait_runs('hv1')] == ['hv1']
        assert [run['compute_host'] for run in rulebook.wait_runs('hv2')] == ['hv2']
        wait_for('the rule logging the alert without a nova_host label', lambda: re.search(
            r"NOT failing over: alert NovaHostDown \(fingerprint None\) has no label 'nova_host'", rulebook.log()),
            rulebook.process.popen, rulebook.process.log, RUN)
        rulebook.drain(alertname='HypervisorDown', host_label='nova_host')
        assert sorted(run['compute_host'] for run in rulebook.runs()) == ['hv1', 'hv2']
    finally:
        rulebook.process.stop()
