"""The shipped rulebooks, read by ansible-rulebook's own parser (no engine, no network).

tests/eda/test_host_failover_rulebook.py runs rulebooks/host_failover.yml end to end; here: both rulebooks pass
ansible-rulebook's schema and compile to the rule engine's form, by file and with no variables at all (every
variable has a default, and `ansible-rulebook -r openstack_ha.recovery.NAME` parses without them); the controller
variant has the same source and rules as the playbook one, only the action differs; what the action sends are
variables of the host_failover playbook and role.
"""

import copy
import os
import sys

import pytest
import yaml

ansible_rulebook = pytest.importorskip('ansible_rulebook', reason='pip install -r eda-requirements.txt')
from ansible_rulebook import json_generator, rules_parser  # noqa: E402
from ansible_rulebook.validators import Validate  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULEBOOKS = ('host_failover.yml', 'host_failover_controller.yml')


@pytest.fixture
def collection_on_path(tmp_path, monkeypatch):
    """This checkout as openstack_ha.recovery, and ansible-galaxy for ansible-rulebook's plugin routing."""
    from ansible_rulebook.conf import settings
    namespace = tmp_path / 'ansible_collections' / 'openstack_ha'
    namespace.mkdir(parents=True)
    (namespace / 'recovery').symlink_to(REPO)
    monkeypatch.setenv('ANSIBLE_COLLECTIONS_PATH', str(tmp_path))
    monkeypatch.setattr(settings, 'ansible_galaxy_path', os.path.join(os.path.dirname(sys.executable),
                                                                      'ansible-galaxy'))


def load(name):
    with open(os.path.join(REPO, 'rulebooks', name)) as handle:
        return yaml.safe_load(handle)


@pytest.mark.parametrize('name', RULEBOOKS)
def test_rulebook_passes_the_schema_and_compiles_without_variables(name, collection_on_path):
    data = load(name)
    Validate.rulebook(copy.deepcopy(data))
    rulesets = rules_parser.parse_rule_sets(copy.deepcopy(data), {})
    compiled = json_generator.generate_dict_rulesets(rulesets, {})
    ruleset, = compiled
    assert [rule['Rule']['name'] for rule in ruleset['RuleSet']['rules']] == [
        'Firing alert', 'Fail over the host', 'Alert without the host label']
    assert data[0]['execution_strategy'] == 'parallel'


def without_actions(data):
    data = copy.deepcopy(data)
    for rule in data[0]['rules']:
        action = rule['action']
        for kind in ('run_playbook', 'run_job_template'):
            if kind in action:
                action.pop(kind)
                action['RUN'] = None
    return data


def test_the_controller_rulebook_has_the_same_source_and_rules():
    assert without_actions(load('host_failover.yml')) == without_actions(load('host_failover_controller.yml'))


def run_action(name):
    rule, = [rule for rule in load(name)[0]['rules'] if rule['name'] == 'Fail over the host']
    return rule


def test_both_send_the_same_extra_vars_with_a_per_host_lock_and_throttle():
    playbook = run_action('host_failover.yml')
    controller = run_action('host_failover_controller.yml')
    assert playbook['action']['run_playbook']['extra_vars'] == \
        controller['action']['run_job_template']['job_args']['extra_vars']
    for rule in (playbook, controller):
        action, = rule['action'].values()
        assert action['lock'] == '{{ event.openstack_ha_failover.host }}'
        assert rule['throttle']['group_by_attributes'] == ['event.openstack_ha_failover.host']
    # at least as long as the shipped route's repeat_interval (4h), or a host still down gets a second run
    with open(os.path.join(REPO, 'docs', 'monitoring', 'alertmanager.yml')) as handle:
        route, = [route for route in yaml.safe_load(handle)['route']['routes']
                  if route['receiver'] == 'openstack-ha-recovery']
    assert route['repeat_interval'] == '4h'
    assert playbook['throttle']['once_within'] == '4 hours'


def test_the_extra_vars_are_variables_of_the_host_failover_playbook_and_role():
    extra_vars = run_action('host_failover.yml')['action']['run_playbook']['extra_vars']
    with open(os.path.join(REPO, 'playbooks', 'host_failover.yml')) as handle:
        playbook = handle.read()
    with open(os.path.join(REPO, 'roles', 'host_failover', 'meta', 'argument_specs.yml')) as handle:
        options = yaml.safe_load(handle)['argument_specs']['main']['options']
    assert set(extra_vars) == {'compute_host', 'host_failover_alert'}
    assert 'compute_host' in playbook
    assert options['host_failover_alert']['type'] == 'dict'
    name = run_action('host_failover.yml')['action']['run_playbook']['name']
    assert "default('openstack_ha.recovery.host_failover')" in name


def test_instance_recover_rulebook_compiles_and_runs_the_playbook_with_its_server_variable(collection_on_path):
    data = load('instance_recover.yml')
    Validate.rulebook(copy.deepcopy(data))
    ruleset, = json_generator.generate_dict_rulesets(rules_parser.parse_rule_sets(copy.deepcopy(data), {}), {})
    assert [rule['Rule']['name'] for rule in ruleset['RuleSet']['rules']] == [
        'Firing alert', 'Recover the instance', 'Alert without the instance label']
    run = data[0]['rules'][1]['action']['run_playbook']
    assert set(run['extra_vars']) == {'server'}
    assert "default('openstack_ha.recovery.instance_recover')" in run['name']
    with open(os.path.join(REPO, 'playbooks', 'instance_recover.yml')) as handle:
        assert '[server] if server' in handle.read()


def test_instance_recover_rulebook_takes_the_server_from_the_first_label_present():
    import jinja2
    template = load('instance_recover.yml')[0]['rules'][0]['action']['post_event']['event']['openstack_ha_instance']
    render = jinja2.Environment().from_string(template['server'])
    assert render.render(event={'alert': {'labels': {'server': 'web-1'}}}).strip() == 'web-1'
    assert render.render(event={'alert': {'labels': {'server': 'web-1', 'instance_uuid': 'u-1'}}}).strip() == 'u-1'
    assert render.render(event={'alert': {'labels': {'alertname': 'InstanceDown'}}}).strip() == ''


def test_the_instance_alert_is_routed_to_the_instance_rulebooks_port_with_a_repeat_after_its_throttle():
    with open(os.path.join(REPO, 'docs', 'monitoring', 'alertmanager.yml')) as handle:
        alertmanager = yaml.safe_load(handle)
    route, = [r for r in alertmanager['route']['routes'] if r['receiver'] == 'openstack-ha-instance-recover']
    assert route['matchers'] == ['alertname="InstanceDown"', 'openstack_ha="instance"']
    # one notification per instance, by whichever label the rule sets (the rulebook's openstack_ha_instance_labels)
    labels = load('instance_recover.yml')[0]['rules'][0]['action']['post_event']['event']['openstack_ha_instance']
    assert "default(['instance_uuid', 'server'])" in labels['labels']
    assert route['group_by'] == ['instance_uuid', 'server']
    throttle = load('instance_recover.yml')[0]['rules'][1]['throttle']['once_within']
    assert throttle == '10 minutes' and route['repeat_interval'] == '15m'  # a repeat is not swallowed by the throttle
    receiver, = [r for r in alertmanager['receivers'] if r['name'] == 'openstack-ha-instance-recover']
    assert receiver['webhook_configs'][0]['url'].startswith('http://127.0.0.1:9892/')
    port = load('instance_recover.yml')[0]['sources'][0]['openstack_ha.recovery.alertmanager']['port']
    assert 'default(9892)' in port


def test_playbook_rulebooks_listen_on_ports_of_their_own():
    """Rulebooks that can run side by side on one controller (each ansible-rulebook process binds its own port)
    have distinct default ports and distinct port variables: a vars file shared by all of them must not move two
    onto one port."""
    import re
    seen = {}
    for name in ('host_failover.yml', 'service_recover.yml', 'instance_recover.yml'):
        port = load(name)[0]['sources'][0]['openstack_ha.recovery.alertmanager']['port']
        match = re.fullmatch(r'\{\{ (\w+) \| default\((\d+)\) \}\}', port)
        assert match, '%s: port %r is not "{{ VAR | default(N) }}"' % (name, port)
        seen[name] = match.groups()
    variables = [variable for variable, default in seen.values()]
    ports = [default for variable, default in seen.values()]
    assert len(set(variables)) == len(variables), seen
    assert len(set(ports)) == len(ports), seen
