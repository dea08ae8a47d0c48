"""nova_drain's edge: arguments in, results and failures out, through AnsibleModule and the OpenStack base."""

import pytest

from ansible_collections.openstack_ha.recovery.plugins.module_utils import _drain, _openstack
from ansible_collections.openstack_ha.recovery.plugins.modules import nova_drain
from ansible_collections.openstack_ha.recovery.tests.unit.plugins.module_utils.test_drain import DrainCloud

ARGS = dict(cloud='lab', host='compute1')


@pytest.fixture
def cloud(monkeypatch, clock):
    cloud = DrainCloud()
    for host in ('compute1', 'compute2'):
        cloud.add_host(host)
    cloud.connects = []

    def connect(**kwargs):
        cloud.connects.append(kwargs)
        return cloud
    monkeypatch.setattr(_openstack.openstack, 'connect', connect)
    monkeypatch.setattr(_drain.time, 'sleep', clock.sleep)
    monkeypatch.setattr(_drain.time, 'monotonic', clock)
    return cloud


def test_drain_returns_exactly_the_documented_keys(cloud, run_module):
    cloud.add_server('compute1', 'web-1')
    cloud.add_server('compute1', 'db-1', status='SHUTOFF')
    outcome = run_module(nova_drain.main, ARGS)
    assert not outcome.failed
    assert set(outcome.result) == set(nova_drain.RETURNED_KEYS) | {'changed'}
    assert outcome.result['changed'] is True
    assert [(r['name'], r['method'], r['outcome']) for r in outcome.result['instances']] == [
        ('db-1', 'cold', 'moved'), ('web-1', 'live', 'moved')]
    assert cloud.puts() == [dict(status='disabled', disabled_reason='openstack_ha.recovery: maintenance drain')]
    assert cloud.connects == [dict(cloud='lab', interface='public', app_name='openstack_ha.recovery')]


def test_options_reach_the_core(cloud, run_module):
    cloud.add_host('compute3')
    cloud.add_server('compute1', 'web-1')
    cloud.behaviour['web-1'] = dict(live='error')
    outcome = run_module(nova_drain.main, dict(ARGS, block_migration=True, target_hosts=['compute3'],
                                               disabled_reason='CHG-9', cold_migration_fallback=False,
                                               concurrency=2, timeout=30))
    assert outcome.failed
    assert cloud.migrations[0]['body'] == dict(host='compute3', block_migration=True)  # YAML true -> 'true'
    assert cloud.puts() == [dict(status='disabled', disabled_reason='CHG-9')]
    assert outcome.result['instances'][0]['reason'] == "live migration to compute3 ended 'error'"


def test_reset_error_instances_option(cloud, run_module):
    cloud.add_server('compute1', 'broken', status='ERROR')
    outcome = run_module(nova_drain.main, dict(ARGS, reset_error_instances=True))
    assert not outcome.failed and outcome.result['instances'][0]['outcome'] == 'moved'


def test_check_mode_with_diff(cloud, run_module):
    cloud.add_server('compute1', 'web-1')
    outcome = run_module(nova_drain.main, ARGS, check_mode=True, diff=True)
    assert set(outcome.result) == set(nova_drain.RETURNED_KEYS) | {'changed', 'diff'}
    assert outcome.result['changed'] is True and outcome.result['service_changed'] is True
    assert outcome.result['diff']['before']['instances'] == ['web-1']
    assert outcome.result['diff']['after'] == dict(enabled=False, disabled_reason=_drain.DEFAULT_REASON,
                                                   instances=[])
    assert cloud.puts() == [] and cloud.sent('compute', 'POST') == []


def test_a_drain_that_leaves_instances_fails_with_the_records(cloud, run_module):
    cloud.add_server('compute1', 'web-1')
    cloud.add_server('compute1', 'broken', status='ERROR')
    outcome = run_module(nova_drain.main, ARGS)
    assert outcome.failed
    assert set(outcome.result) == set(nova_drain.RETURNED_KEYS) | {'changed', 'msg'}
    assert outcome.result['changed'] is True
    assert outcome.result['msg'].startswith('drain of compute1 incomplete: 1 of 2 instance(s) are still on it')
    assert outcome.result['totals']['moved'] == 1 and outcome.result['totals']['skipped'] == 1


def test_unknown_host_fails_naming_it(cloud, run_module):
    outcome = run_module(nova_drain.main, dict(ARGS, host='compute7'))
    assert outcome.failed and outcome.result['changed'] is False
    assert outcome.result['msg'] == ("no nova-compute service for host 'compute7'; Nova knows the compute hosts "
                                     "compute1, compute2")


def test_rerun_on_an_empty_disabled_host_is_not_a_change(cloud, run_module):
    cloud.service('compute1').update(status='disabled', disabled_reason='x')
    outcome = run_module(nova_drain.main, ARGS)
    assert not outcome.failed and outcome.result['changed'] is False


@pytest.mark.parametrize('args, word', [(dict(block_migration='maybe'), 'block_migration'),
                                        (dict(concurrency='many'), 'concurrency'),
                                        (dict(cloud='lab'), 'host')])
def test_bad_arguments_fail_before_connecting(cloud, run_module, args, word):
    outcome = run_module(nova_drain.main, dict(ARGS, **args) if 'cloud' not in args else args)
    assert outcome.failed and word in outcome.result['msg']
    assert cloud.connects == []
