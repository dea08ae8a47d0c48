"""docs/monitoring: the files users copy parse, Alertmanager's own amtool accepts and routes them, and the rules,
the route and the event source agree on names (alert name, labels, host label, Bearer token from a file).

promtool (Prometheus server package) is not installed on the test machines: the rules are checked structurally.
"""

import os
import re
import shutil
import subprocess

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
DOCS = os.path.join(REPO, 'docs', 'monitoring')
RULES = os.path.join(DOCS, 'prometheus-rules.yml')
ALERTMANAGER = os.path.join(DOCS, 'alertmanager.yml')
README = os.path.join(DOCS, 'README.md')
RECEIVER = 'openstack-ha-recovery'
TRIGGER = 'ComputeHostDown'
# Prometheus durations: 1m, 90s, 1h30m, 0m
DURATION = re.compile(r'^([0-9]+(ms|s|m|h|d|w|y))+$')
MATCHER = re.compile(r'^(\w+)="([^"]*)"$')
HOST_ALERTS = {'ComputeHostDown', 'NodeExporterDown', 'NovaComputeServiceDown'}


def load(path):
    with open(path) as handle:
        return yaml.safe_load(handle)


def rules():
    return {rule['alert']: rule for group in load(RULES)['groups'] for rule in group['rules']}


def recovery_route():
    route, = [route for route in load(ALERTMANAGER)['route']['routes'] if route['receiver'] == RECEIVER]
    return route


def amtool(*args):
    binary = shutil.which('amtool')
    if binary is None:
        pytest.fail('amtool (Debian prometheus-alertmanager) is not installed: make system-deps installs it')
    return subprocess.run([binary] + list(args), capture_output=True, text=True, timeout=60, check=False)


# --- Prometheus rules ---------------------------------------------------------------------------------------


def test_the_rules_file_has_the_structure_prometheus_loads():
    document = load(RULES)
    assert set(document) == {'groups'}
    names = set()
    for group in document['groups']:
        assert set(group) <= {'name', 'interval', 'rules', 'limit'}
        assert group['name'] and group['rules']
        for rule in group['rules']:
            assert set(rule) <= {'alert', 'expr', 'for', 'labels', 'annotations', 'keep_firing_for'}, rule['alert']
            assert isinstance(rule['alert'], str) and rule['alert'] not in names, rule['alert']
            names.add(rule['alert'])
            assert isinstance(rule['expr'], str) and rule['expr'].strip(), rule['alert']
            assert rule['expr'].count('(') == rule['expr'].count(')'), rule['alert']
            assert rule['expr'].count('{') == rule['expr'].count('}'), rule['alert']
            assert DURATION.match(rule['for']), rule['alert']
            assert rule['labels']['severity'] in ('critical', 'warning'), rule['alert']
            assert rule['annotations']['summary'], rule['alert']
            assert all(isinstance(value, str) for value in rule['labels'].values()), rule['alert']
    assert HOST_ALERTS <= names


def test_every_host_alert_carries_the_host_label_its_expression_makes():
    for name in HOST_ALERTS:
        rule = rules()[name]
        assert rule['labels']['host'] == '{{ $labels.host }}', name
        # label_replace(SELECTOR, "host", ...): the expression itself makes the label the rule copies
        assert re.search(r'label_replace\(\w+\{[^}]*\},\s*"host",', rule['expr']), name


def test_the_trigger_needs_both_the_node_exporter_and_nova_down_for_a_while():
    rule = rules()[TRIGGER]
    expr = ' '.join(rule['expr'].split())
    assert 'up{job="node"}' in expr
    assert 'openstack_nova_agent_state{service="nova-compute", adminState="enabled"}' in expr
    assert expr.count('== 0') == 2
    assert ' and on (host) ' in expr
    assert ' or ' not in expr and ' unless ' not in expr
    assert rule['for'] != '0m'
    assert rule['labels']['severity'] == 'critical'


def test_single_signal_alerts_never_reach_the_recovery_route():
    route = recovery_route()
    for name, rule in rules().items():
        if name != TRIGGER:
            labels = dict(rule['labels'], alertname=name)
            assert not all(labels.get(key) == value for key, value in matchers(route).items()), name


# --- Alertmanager configuration -----------------------------------------------------------------------------


def matchers(route):
    found = {}
    for matcher in route['matchers']:
        match = MATCHER.match(matcher)
        assert match, 'only name="value" matchers here: %s' % matcher
        found[match.group(1)] = match.group(2)
    return found


def test_the_route_sends_exactly_the_trigger_alert_one_notification_per_host():
    route = recovery_route()
    trigger = rules()[TRIGGER]
    labels = dict(trigger['labels'], alertname=TRIGGER)
    assert matchers(route) and all(labels.get(key) == value for key, value in matchers(route).items())
    assert route['group_by'] == ['host']
    assert DURATION.match(route['group_wait']) and route['group_wait'] in ('0s', '5s', '10s')
    assert route.get('continue', False) is False


def test_the_receiver_sends_the_bearer_token_from_a_file_and_every_alert():
    receiver, = [entry for entry in load(ALERTMANAGER)['receivers'] if entry['name'] == RECEIVER]
    webhook, = receiver['webhook_configs']
    assert webhook['url'].startswith(('http://127.0.0.1:', 'https://'))
    assert webhook['send_resolved'] is True
    assert webhook['max_alerts'] == 0
    authorization = webhook['http_config']['authorization']
    assert authorization['type'] == 'Bearer'
    assert 'credentials_file' in authorization and 'credentials' not in authorization


def test_amtool_accepts_the_alertmanager_configuration():
    result = amtool('check-config', ALERTMANAGER)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'SUCCESS' in result.stdout


@pytest.mark.parametrize('labels, receiver', [
    (['alertname=%s' % TRIGGER, 'openstack_ha=recover', 'host=compute1', 'severity=critical'], RECEIVER),
    (['alertname=%s' % TRIGGER, 'host=compute1'], 'default'),
    (['alertname=NodeExporterDown', 'host=compute1', 'severity=warning'], 'default'),
    (['alertname=NovaComputeServiceDown', 'host=compute1', 'severity=warning'], 'default'),
    (['alertname=InstanceDown', 'openstack_ha=instance', 'instance_uuid=u-1'], 'openstack-ha-instance-recover'),
    (['alertname=InstanceDown', 'instance_uuid=u-1'], 'default'),
], ids=['trigger', 'trigger-without-recover-label', 'node-only', 'nova-only', 'instance', 'instance-unlabelled'])
def test_alertmanager_routes_only_the_trigger_to_the_event_source(labels, receiver):
    result = amtool('config', 'routes', 'test', '--config.file=' + ALERTMANAGER, '--verify.receivers=' + receiver,
                    *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_the_readme_says_the_token_must_match_and_names_the_files():
    with open(README) as handle:
        text = handle.read()
    assert '**The two must be the same string.**' in text
    for name in ('prometheus-rules.yml', 'alertmanager.yml', 'openstack_ha.recovery.alertmanager', 'credentials_file',
                 TRIGGER):
        assert name in text, name
