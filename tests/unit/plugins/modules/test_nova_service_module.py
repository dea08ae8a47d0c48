"""nova_service's edge: arguments in, results and failures out, through AnsibleModule and the OpenStack base."""

import pytest

from ansible_collections.openstack_ha.recovery.plugins.module_utils import _openstack
from ansible_collections.openstack_ha.recovery.plugins.modules import nova_service
from ansible_collections.openstack_ha.recovery.tests.unit.plugins.nova_fakes import FakeCloud

ARGS = dict(cloud='lab', host='compute1')


@pytest.fixture
def cloud(monkeypatch):
    cloud = FakeCloud()
    cloud.add_host('compute1')
    cloud.add_host('compute2')
    cloud.connects = []

    def connect(**kwargs):
        cloud.connects.append(kwargs)
        return cloud
    monkeypatch.setattr(_openstack.openstack, 'connect', connect)
    return cloud


def test_force_down_and_disable_returns_exactly_the_documented_keys(cloud, run_module):
    outcome = run_module(nova_service.main, dict(ARGS, forced_down=True, enabled=False, disabled_reason='fenced'))
    assert not outcome.failed
    assert set(outcome.result) == set(nova_service.RETURNED_KEYS) | {'changed'}
    assert outcome.result['changed'] is True
    assert outcome.result['service']['forced_down'] is True and outcome.result['service']['enabled'] is False
    assert cloud.puts() == [dict(forced_down=True), dict(status='disabled', disabled_reason='fenced')]
    assert cloud.connects == [dict(cloud='lab', interface='public', app_name='openstack_ha.recovery')]


def test_check_mode_with_diff_reports_and_changes_nothing(cloud, run_module):
    outcome = run_module(nova_service.main, dict(ARGS, forced_down=True), check_mode=True, diff=True)
    assert set(outcome.result) == set(nova_service.RETURNED_KEYS) | {'changed', 'diff'}
    assert outcome.result['changed'] is True
    assert outcome.result['diff'] == dict(before=dict(enabled=True, forced_down=False, disabled_reason=None),
                                          after=dict(enabled=True, forced_down=True, disabled_reason=None))
    assert outcome.result['service']['forced_down'] is False
    assert cloud.puts() == []


def test_unchanged_service(cloud, run_module):
    outcome = run_module(nova_service.main, dict(ARGS, forced_down=False, enabled=True))
    assert outcome.result['changed'] is False
    assert 'diff' not in outcome.result


def test_refusal_fails_with_the_documented_keys(cloud, run_module):
    cloud.service('compute1').update(forced_down=True, status='disabled')
    cloud.add_migration('vm-1', 'compute1', 'compute2', 'done')
    outcome = run_module(nova_service.main, dict(ARGS, forced_down=False, enabled=True))
    assert outcome.failed
    assert set(outcome.result) == set(nova_service.RETURNED_KEYS) | {'msg'}
    assert outcome.result['msg'].startswith('refusing forced_down=false for compute1: 1 evacuation(s) from compute1')
    assert [m['instance_uuid'] for m in outcome.result['pending_evacuations']] == ['vm-1']
    assert cloud.puts() == []


def test_unknown_host_fails_naming_it(cloud, run_module):
    outcome = run_module(nova_service.main, dict(ARGS, host='compute7', forced_down=True))
    assert outcome.failed
    assert outcome.result == dict(msg="no nova-compute service for host 'compute7'; Nova knows the compute hosts "
                                      "compute1, compute2", service=None, pending_evacuations=[])


def test_compute_microversion_option_reaches_the_requests(cloud, run_module):
    cloud.config.microversions['compute'] = '2.90'  # what openstacksdk does with compute_default_microversion
    outcome = run_module(nova_service.main, dict(ARGS, compute_microversion='2.90', enabled=False))
    assert cloud.connects[0]['compute_default_microversion'] == '2.90'
    assert outcome.result['changed'] is True
    assert set(r.microversion for r in cloud.requests) == {'2.90'}


def test_host_is_required_and_checked_before_connecting(cloud, run_module):
    outcome = run_module(nova_service.main, dict(cloud='lab', forced_down=True))
    assert outcome.failed and 'host' in outcome.result['msg']
    assert cloud.connects == []
