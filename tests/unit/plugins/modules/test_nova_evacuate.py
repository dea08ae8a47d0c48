"""nova_evacuate's edge: arguments in, results, warnings and failures out, through AnsibleModule and the
OpenStack base, against the fake Nova of the core's tests."""

import pytest

from ansible_collections.openstack_ha.recovery.plugins.module_utils import _evacuate, _openstack
from ansible_collections.openstack_ha.recovery.plugins.modules import nova_evacuate
from ansible_collections.openstack_ha.recovery.tests.unit.plugins.module_utils.test_evacuate import (
    RealClock,
    make_cloud,
)

ARGS = dict(cloud='lab', host='compute1')


@pytest.fixture
def cloud(monkeypatch):
    cloud = make_cloud(servers=2, clock=RealClock())  # the module runs on the real clock
    cloud.polls = 0  # evacuations end at the next request
    cloud.connects = []

    def connect(**kwargs):
        cloud.connects.append(kwargs)
        return cloud
    monkeypatch.setattr(_openstack.openstack, 'connect', connect)
    monkeypatch.setattr(_evacuate, 'POLL_INTERVAL', 0.0)
    return cloud


def test_evacuation_returns_exactly_the_documented_keys(cloud, run_module):
    outcome = run_module(nova_evacuate.main, ARGS)
    assert not outcome.failed
    assert set(outcome.result) == set(nova_evacuate.RETURNED_KEYS) | {'changed'}
    assert outcome.result['changed'] is True
    assert [r['outcome'] for r in outcome.result['instances']] == ['moved', 'moved']
    assert cloud.connects == [dict(cloud='lab', interface='public', app_name='openstack_ha.recovery')]


def test_check_mode_with_diff_plans_and_sends_nothing(cloud, run_module):
    outcome = run_module(nova_evacuate.main, ARGS, check_mode=True, diff=True)
    assert set(outcome.result) == set(nova_evacuate.RETURNED_KEYS) | {'changed', 'diff'}
    assert outcome.result['changed'] is True
    assert [r['outcome'] for r in outcome.result['instances']] == ['planned', 'planned']
    first = cloud.server('vm-0')['id']
    assert outcome.result['diff']['before'][first] == dict(host='compute1', status='ACTIVE')
    assert outcome.result['diff']['after'][first] == dict(host='(scheduler)', status='ACTIVE')
    assert [r for r in cloud.requests if r.method != 'GET'] == []


def test_the_options_reach_the_core(cloud, run_module):
    cloud.add_host('compute4')
    cloud.server('vm-0')['flavor']['extra_specs']['ha'] = 'true'
    outcome = run_module(nova_evacuate.main, dict(ARGS, evacuable_tag='ha', evacuable_default=False,
                                                  evacuable_sources=['flavor'], target_hosts=['compute4'],
                                                  concurrency=1, retries=0, timeout=30))
    records = dict((r['name'], r) for r in outcome.result['instances'])
    assert records['vm-0']['to'] == 'compute4' and records['vm-1']['outcome'] == 'skipped'
    assert cloud.evacuations() == [('vm-0', 'compute4')]


def test_warnings_become_ansible_warnings(cloud, run_module, monkeypatch):
    from ansible.module_utils.basic import AnsibleModule
    warned = []
    monkeypatch.setattr(AnsibleModule, 'warn', lambda self, warning: warned.append(warning))
    outcome = run_module(nova_evacuate.main, dict(ARGS, exclude=['ghost']))
    assert warned == ["exclude entry 'ghost' matches no instance on compute1"]
    assert 'warnings' not in outcome.result


def test_an_incomplete_evacuation_fails_with_every_record(cloud, run_module):
    cloud.script(cloud.server('vm-1'), 'novalidhost')
    outcome = run_module(nova_evacuate.main, dict(ARGS, retries=0))
    assert outcome.failed
    assert set(outcome.result) == set(nova_evacuate.RETURNED_KEYS) | {'changed', 'msg', 'warnings'}
    assert outcome.result['msg'].startswith('evacuation of compute1 incomplete: 1 of 2 selected instance(s)')
    assert outcome.result['changed'] is True
    assert [r['outcome'] for r in outcome.result['instances']] == ['moved', 'failed']


def test_a_refusal_fails_with_the_documented_keys(cloud, run_module):
    cloud.service('compute1').update(forced_down=False)
    outcome = run_module(nova_evacuate.main, ARGS)
    assert outcome.failed
    assert set(outcome.result) == set(nova_evacuate.RETURNED_KEYS) | {'changed', 'msg'}
    assert outcome.result['msg'].startswith('refusing to evacuate compute1')
    assert outcome.result['instances'] == [] and outcome.result['changed'] is False


def test_host_is_required_and_checked_before_connecting(cloud, run_module):
    outcome = run_module(nova_evacuate.main, dict(cloud='lab'))
    assert outcome.failed and 'host' in outcome.result['msg']
    assert cloud.connects == []


def test_a_bad_source_choice_is_refused_before_connecting(cloud, run_module):
    outcome = run_module(nova_evacuate.main, dict(ARGS, evacuable_sources=['metadata']))
    assert outcome.failed and 'evacuable_sources' in outcome.result['msg']
    assert cloud.connects == []


def test_reserved_host_options_reach_the_core_and_the_spare_is_reported(cloud, run_module):
    cloud.add_host('spare1', status='disabled', disabled_reason='reserved: rack 4')
    cloud.add_host('spare2', status='disabled', disabled_reason='reserved')
    outcome = run_module(nova_evacuate.main, dict(ARGS, target_order='reserved', reserved_hosts=['spare2'],
                                                  discover_reserved_hosts=False))
    assert not outcome.failed
    assert set(outcome.result) == set(nova_evacuate.RETURNED_KEYS) | {'changed'}
    assert sorted(cloud.evacuations()) == [('vm-0', 'spare2'), ('vm-1', 'spare2')]
    used = outcome.result['reserved_hosts_used']
    assert [(u['host'], u['action'], u['disabled_reason']) for u in used] == [('spare2', 'enabled', 'reserved')]
    assert cloud.service('spare1')['status'] == 'disabled'


def test_capacity_policy_fail_reaches_the_core_and_fails_with_the_documented_keys(cloud, run_module):
    cloud.server('vm-1')['flavor']['ram'] = 100000
    outcome = run_module(nova_evacuate.main, dict(ARGS, capacity_policy='fail'))
    assert outcome.failed
    assert set(outcome.result) == set(nova_evacuate.RETURNED_KEYS) | {'changed', 'msg'}
    assert outcome.result['msg'].startswith('refusing to evacuate compute1: 1 of 2 instance(s) to move would not '
                                            'fit')
    assert 'vm-1' in outcome.result['msg'] and outcome.result['changed'] is False
    assert cloud.evacuations() == []


def test_bad_target_order_and_capacity_policy_are_refused_before_connecting(cloud, run_module):
    for option in ('target_order', 'capacity_policy'):
        outcome = run_module(nova_evacuate.main, dict(ARGS, **{option: 'whatever'}))
        assert outcome.failed and option in outcome.result['msg']
    assert cloud.connects == []
