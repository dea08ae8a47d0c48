"""nova_host_info's edge: arguments in, results and failures out, through AnsibleModule and the OpenStack base."""

import pytest

from ansible_collections.openstack_ha.recovery.plugins.module_utils import _openstack
from ansible_collections.openstack_ha.recovery.plugins.modules import nova_host_info
from ansible_collections.openstack_ha.recovery.tests.unit.plugins.nova_fakes import FakeCloud

ARGS = dict(cloud='lab', host='compute1')


@pytest.fixture
def cloud(monkeypatch):
    cloud = FakeCloud()
    cloud.add_host('compute1')
    cloud.add_host('compute2')
    cloud.add_image('image-1', evacuable='true')
    cloud.add_server('compute1', 'db-1', extra_specs={'ha': 'true'})
    cloud.connects = []

    def connect(**kwargs):
        cloud.connects.append(kwargs)
        return cloud
    monkeypatch.setattr(_openstack.openstack, 'connect', connect)
    return cloud


@pytest.mark.parametrize('check_mode', [False, True])
def test_returns_exactly_the_documented_keys_and_never_changes(cloud, run_module, check_mode):
    outcome = run_module(nova_host_info.main, ARGS, check_mode=check_mode, diff=True)
    assert not outcome.failed
    assert set(outcome.result) == set(nova_host_info.RETURNED_KEYS) | {'changed'}
    assert outcome.result['changed'] is False
    assert outcome.result['instances'][0]['evacuable_source'] == 'image'
    assert outcome.result['capacity']['hosts'][0]['host'] == 'compute2'
    assert cloud.sent('compute', 'PUT') == []


def test_policy_options_reach_the_core(cloud, run_module):
    outcome = run_module(nova_host_info.main, dict(ARGS, evacuable_tag='ha', evacuable_sources=['aggregate'],
                                                   evacuable_default=False))
    instance = outcome.result['instances'][0]
    assert (instance['evacuable'], instance['evacuable_source']) == (False, 'default')
    assert cloud.sent('image') == []


def test_unknown_host_fails_naming_it_with_the_documented_keys(cloud, run_module):
    outcome = run_module(nova_host_info.main, dict(ARGS, host='compute9'))
    assert outcome.failed
    assert set(outcome.result) == set(nova_host_info.RETURNED_KEYS) | {'msg'}
    assert outcome.result['msg'] == ("no nova-compute service for host 'compute9'; Nova knows the compute hosts "
                                     "compute1, compute2")


def test_unknown_policy_source_fails_before_connecting(cloud, run_module):
    outcome = run_module(nova_host_info.main, dict(ARGS, evacuable_sources=['flavor', 'server_metadata']))
    assert outcome.failed and 'server_metadata' in outcome.result['msg']
    assert cloud.connects == []
