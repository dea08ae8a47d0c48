"""storm_guard's edge: arguments in, verdict and evidence out, through AnsibleModule and the OpenStack base."""

import datetime

import pytest

from ansible_collections.openstack_ha.recovery.plugins.module_utils import _openstack
from ansible_collections.openstack_ha.recovery.plugins.module_utils._storm_guard import format_marker
from ansible_collections.openstack_ha.recovery.plugins.modules import storm_guard
from ansible_collections.openstack_ha.recovery.tests.unit.plugins.nova_fakes import FakeCloud

ARGS = dict(cloud='lab', host='compute1')


@pytest.fixture
def cloud(monkeypatch):
    cloud = FakeCloud()
    for name in ('compute1', 'compute2', 'compute3'):
        cloud.add_host(name)
    cloud.service('compute1')['state'] = 'down'
    cloud.connects = []

    def connect(**kwargs):
        cloud.connects.append(kwargs)
        return cloud
    monkeypatch.setattr(_openstack.openstack, 'connect', connect)
    return cloud


@pytest.mark.parametrize('check_mode', [False, True])
def test_proceed_returns_exactly_the_documented_keys_and_never_changes(cloud, run_module, check_mode):
    outcome = run_module(storm_guard.main, ARGS, check_mode=check_mode)
    assert not outcome.failed
    assert set(outcome.result) == set(storm_guard.RETURNED_KEYS) | {'changed'}
    assert (outcome.result['changed'], outcome.result['verdict'], outcome.result['down']) == (
        False, 'proceed', ['compute1'])
    assert cloud.sent('compute', 'PUT') == []


def test_refusal_fails_by_default_with_the_evidence(cloud, run_module):
    cloud.service('compute3')['state'] = 'down'
    outcome = run_module(storm_guard.main, ARGS)
    assert outcome.failed
    assert set(outcome.result) == set(storm_guard.RETURNED_KEYS) | {'msg'}
    assert outcome.result['msg'] == (
        'storm guard refuses the failover of compute1: 2 of 3 hosts in failure domain availability_zone nova are '
        'down or forced down, counting compute1 (compute1, compute3): 66.7% is more than max_down_percent 34.0%')
    assert outcome.result['verdict'] == 'refuse' and outcome.result['down'] == ['compute1', 'compute3']


def test_refusal_is_returned_when_asked_not_to_fail(cloud, run_module):
    cloud.service('compute3')['state'] = 'down'
    outcome = run_module(storm_guard.main, dict(ARGS, fail_on_refuse=False))
    assert not outcome.failed and outcome.result['verdict'] == 'refuse' and len(outcome.result['reasons']) == 1


def test_options_reach_the_core(cloud, run_module):
    now = datetime.datetime.now(datetime.timezone.utc)
    cloud.service('compute1').update(status='disabled', disabled_reason=format_marker('failover', 'run-1', now))
    cloud.service('compute2').update(status='disabled', disabled_reason=format_marker('failover', 'run-2', now))
    cloud.add_aggregate('rack-a', ['compute1', 'compute2'])
    args = dict(ARGS, failure_domain='aggregate', aggregate='rack-a', max_down_percent=50.0, max_down_hosts=1,
                max_failovers=1, window=60, run_id='run-1', fail_on_refuse=False)
    result = run_module(storm_guard.main, args).result
    assert result['domain'] == dict(kind='aggregate', name='rack-a', aggregates=['rack-a'], size=2)
    assert [f['host'] for f in result['recent_failovers']] == ['compute2']
    assert result['verdict'] == 'refuse' and len(result['reasons']) == 1  # the rate only: 1 of 2 is 50%


def test_unknown_host_fails_naming_it_with_the_documented_keys(cloud, run_module):
    outcome = run_module(storm_guard.main, dict(ARGS, host='compute9'))
    assert outcome.failed
    assert set(outcome.result) == set(storm_guard.RETURNED_KEYS) | {'msg'}
    assert outcome.result['msg'].startswith("no nova-compute service for host 'compute9'")


def test_bad_choice_fails_before_connecting(cloud, run_module):
    outcome = run_module(storm_guard.main, dict(ARGS, failure_domain='rack'))
    assert outcome.failed and 'failure_domain' in outcome.result['msg']
    assert cloud.connects == []
