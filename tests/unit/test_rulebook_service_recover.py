"""rulebooks/service_recover.yml: passes ansible-rulebook's schema, compiles, and sends what the service_recover
playbook and role read; it acts on NovaComputeServiceDown (docs/monitoring routes it there), not on ComputeHostDown."""

import copy
import os
import sys

import pytest
import yaml

ansible_rulebook = pytest.importorskip('ansible_rulebook')
from ansible_rulebook import json_generator, rules_parser  # noqa: E402
from ansible_rulebook.validators import Validate  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(*parts):
    with open(os.path.join(REPO, *parts)) as handle:
        return yaml.safe_load(handle)


@pytest.fixture
def collection_on_path(tmp_path, monkeypatch):
    from ansible_rulebook.conf import settings
    namespace = tmp_path / 'ansible_collections' / 'openstack_ha'
    namespace.mkdir(parents=True)
    (namespace / 'recovery').symlink_to(REPO)
    monkeypatch.setenv('ANSIBLE_COLLECTIONS_PATH', str(tmp_path))
    monkeypatch.setattr(settings, 'ansible_galaxy_path', os.path.join(os.path.dirname(sys.executable),
                                                                      'ansible-galaxy'))


def test_service_recover_rulebook_passes_the_schema_and_compiles(collection_on_path):
    data = load('rulebooks', 'service_recover.yml')
    Validate.rulebook(copy.deepcopy(data))
    ruleset, = json_generator.generate_dict_rulesets(rules_parser.parse_rule_sets(copy.deepcopy(data), {}), {})
    assert [rule['Rule']['name'] for rule in ruleset['RuleSet']['rules']] == [
        'Firing alert', 'Recover the service', 'Alert without the host label']
    assert data[0]['execution_strategy'] == 'parallel'


def test_service_recover_rulebook_runs_the_playbook_with_what_the_role_reads():
    rule, = [r for r in load('rulebooks', 'service_recover.yml')[0]['rules'] if r['name'] == 'Recover the service']
    action = rule['action']['run_playbook']
    assert "default('openstack_ha.recovery.service_recover')" in action['name']
    assert set(action['extra_vars']) == {'compute_host', 'service_recover_alert'}
    assert action['lock'] == '{{ event.openstack_ha_service.host }}'
    assert rule['throttle']['group_by_attributes'] == ['event.openstack_ha_service.host']
    options = load('roles', 'service_recover', 'meta', 'argument_specs.yml')['argument_specs']['main']['options']
    assert options['service_recover_alert']['type'] == 'dict'
    firing = load('rulebooks', 'service_recover.yml')[0]['rules'][0]
    assert "['NovaComputeServiceDown']" in firing['action']['post_event']['event']['openstack_ha_service']['wanted']


def test_the_alert_it_waits_for_is_routed_to_its_port():
    alertmanager = load('docs', 'monitoring', 'alertmanager.yml')
    route, = [r for r in alertmanager['route']['routes'] if r['receiver'] == 'openstack-ha-service-recover']
    assert 'alertname="NovaComputeServiceDown"' in route['matchers']
    rule, = [r for g in load('docs', 'monitoring', 'prometheus-rules.yml')['groups'] for r in g['rules']
             if r['alert'] == 'NovaComputeServiceDown']
    assert rule['labels']['openstack_ha'] == 'restart' and 'openstack_ha="restart"' in route['matchers']
    receiver, = [r for r in alertmanager['receivers'] if r['name'] == 'openstack-ha-service-recover']
    assert receiver['webhook_configs'][0]['url'].startswith('http://127.0.0.1:9891/')
    source = load('rulebooks', 'service_recover.yml')[0]['sources'][0]['openstack_ha.recovery.alertmanager']
    assert 'default(9891)' in source['port']
