"""Alerts through the shipped rulebook in real ansible-rulebook, the real runbook, the real lab:

- a duplicate alert storm for one failed host: twenty identical Alertmanager notifications, posted at once from
  many threads straight to the collection's alertmanager source, must make exactly one recovery: one run report,
  one evacuation per instance;
- alerts for two failed hosts at once (one notification holding both alerts, then a duplicate of one): one
  recovery per host, in parallel, each instance moved once, the storm guard letting both through because two
  down hosts of three are within the threshold the scenario configures.
(Every rulebook rule, with a recording playbook instead of the runbook, is tests/eda's.)
"""

import glob
import json
import os
import secrets
import sys
import threading
import time

import pytest
import yaml

import invariants
from lab_helpers import REPO, labctl, wait_for

sys.path.insert(0, os.path.join(REPO, 'tests', 'eda'))
from eda_helpers import Process, collections_dir, free_port, http, listening, probe, tool  # noqa: E402

pytestmark = pytest.mark.timeout(1200, func_only=True)

TOKEN = 'eda-' + secrets.token_hex(16)
STORM = 20


def start_rulebook(scenario, **inventory_vars):
    """ansible-rulebook running the shipped rulebook against the lab's inventory, the runbook writing its reports
    and locks into the scenario's directories; returns (rulebook, url, private run directories)."""
    tmp = scenario.dir / 'eda'
    tmp.mkdir()
    inventory = json.loads(json.dumps(scenario.inventory))
    inventory['all']['children']['compute_hosts']['vars'].update(
        host_failover_report_dir=str(scenario.reports), host_failover_lock_dir=str(scenario.locks), **inventory_vars)
    (tmp / 'inventory.yml').write_text(yaml.safe_dump(inventory))
    port = free_port()
    (tmp / 'vars.yml').write_text(yaml.safe_dump({'openstack_ha_listen_port': port}))
    (tmp / 'private').mkdir()
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
               ANSIBLE_COLLECTIONS_PATH=collections_dir(tmp), ALERTMANAGER_WEBHOOK_TOKEN=TOKEN,
               OS_CLIENT_CONFIG_FILE=scenario.lab['clouds_yaml'], ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_NOCOLOR='1', TMPDIR=str(tmp / 'private'))
    rulebook = Process([tool('ansible-rulebook'), '-r', 'openstack_ha.recovery.host_failover', '-i', 'inventory.yml',
                        '--vars', 'vars.yml', '-E', 'ALERTMANAGER_WEBHOOK_TOKEN', '-v'],
                       str(tmp / 'ansible-rulebook.log'), cwd=str(tmp), env=env)
    url = 'http://127.0.0.1:%d' % port
    try:
        wait_for('the rulebook listening', lambda: listening(port) and probe(url) == 405, 120)
    except BaseException:
        rulebook.stop()
        raise
    return rulebook, url, str(tmp / 'private')


def notification(*hosts):
    """An Alertmanager notification (one group) with a firing ComputeHostDown alert for each host."""
    return json.dumps({'version': '4', 'receiver': 'openstack-ha-recovery', 'status': 'firing', 'alerts': [
        {'status': 'firing', 'labels': {'alertname': 'ComputeHostDown', 'openstack_ha': 'recover', 'host': host}}
        for host in hosts]}).encode()


def post_at_once(url, bodies):
    """POST every body at once, one thread each; returns the HTTP statuses."""
    answers = []
    headers = {'Authorization': 'Bearer ' + TOKEN}
    posts = [threading.Thread(target=lambda b=body: answers.append(http(url + '/alerts', b, headers, 'POST')[0]))
             for body in bodies]
    for post in posts:
        post.start()
    for post in posts:
        post.join()
    return answers


def wait_runs_ended(scenario, private, reports, rulebook):
    """Wait for `reports` run reports, then for every run ansible-rulebook started to end (its private run
    directories are gone); returns the report files."""
    wait_for('%d failover report(s) (rulebook log: %s)' % (reports, rulebook.log),
             lambda: len(glob.glob(str(scenario.reports / '*.json'))) >= reports, 900, interval=0.5)
    wait_for('every run to end', lambda: not glob.glob(os.path.join(private, 'eda*')), 300, interval=0.5)
    return sorted(glob.glob(str(scenario.reports / '*.json')))


def test_duplicate_alert_storm_makes_one_recovery(scenario):
    scenario.prepare('compute2', servers=3)
    rulebook, url, private = start_rulebook(scenario)
    try:
        started = time.monotonic()
        answers = post_at_once(url, [notification(scenario.host)] * STORM)
        assert answers == [200] * STORM, answers
        reports = wait_runs_ended(scenario, private, 1, rulebook)
        scenario.seconds = time.monotonic() - started
    finally:
        rulebook.stop()
    assert len(reports) == 1, 'the storm made %d runs: %s' % (len(reports), reports)
    with open(reports[0]) as handle:
        report = json.load(handle)
    scenario.check(report, outcome='%s (1 run of %d alerts)' % (report['outcome'], STORM))


def test_alerts_for_two_hosts_at_once(scenario):
    """compute1 and compute2 crash; one notification holds both alerts, a second one repeats compute2's. Two of
    the lab's three hosts down is 67 %: the scenario sets host_failover_max_down_percent to 67, so the storm guard
    must let both runs through (its refusal above the threshold is tests/integration/test_storm_guard.py's)."""
    first, second = 'compute1', 'compute2'
    scenario.prepare(first, servers=2, crash=False)
    labctl('boot', '--count', '2', '--host', second, '--prefix', 'flt', timeout=600)
    before = {first: scenario.before, second: invariants.snapshot(scenario.conn, second)}
    assert len(before[second]) == 2, before
    crashed_at = {}
    for host in (first, second):
        labctl('crash', host)  # nova-compute killed, BMC still on
        crashed_at[host] = time.time()
    for host in (first, second):
        scenario.wait_down(host)
    rulebook, url, private = start_rulebook(scenario, host_failover_max_down_percent=67)
    try:
        started = time.monotonic()
        answers = post_at_once(url, [notification(first, second), notification(second)])
        assert answers == [200, 200], answers
        reports = wait_runs_ended(scenario, private, 2, rulebook)
        scenario.seconds = time.monotonic() - started
    finally:
        rulebook.stop()
    by_host = {}
    for path in reports:
        with open(path) as handle:
            report = json.load(handle)
        by_host.setdefault(report['host'], []).append(report)
    assert sorted(by_host) == [first, second] and all(len(r) == 1 for r in by_host.values()), \
        'expected one run per host, got %s' % {h: len(r) for h, r in by_host.items()}
    results = {}
    for host in (first, second):
        report = by_host[host][0]
        storm = [g for g in report['gates'] if g['gate'] == 'storm']
        assert storm and storm[0]['verdict'] == 'proceed', storm
        results[host] = invariants.check(scenario.conn, scenario.lab, host, before[host], report, scenario.since,
                                         crashed_at=crashed_at[host])
    held = [sum(len(r.held) for r in results.values()), len(invariants.INVARIANTS) * len(results)]
    scenario.record(' + '.join('%s %s' % (h, by_host[h][0]['outcome']) for h in (first, second)),
                    'all %d x2' % len(invariants.INVARIANTS) if held[0] == held[1] else '%d/%d (%s)' % (
                        held[0], held[1], '; '.join('%s: %s' % (h, r.summary()) for h, r in results.items())))
    for host, result in results.items():
        assert result.ok, '%s: %s\n(report message: %s)' % (host, result, by_host[host][0]['message'])
