"""The OpenStack module base: option mapping, lazy connection, and the edge that turns errors into failures."""

import pytest
from openstack import exceptions as sdk_exceptions

from ansible_collections.openstack_ha.recovery.plugins.module_utils import _openstack
from ansible_collections.openstack_ha.recovery.plugins.module_utils._openstack import (
    OpenStackModule,
    RecoveryError,
    connect,
    connection_kwargs,
)

UNSET = dict(api_timeout=None, auth=None, auth_type=None, ca_cert=None, cloud=None, compute_microversion=None,
             interface='public', region_name=None, validate_certs=None)
AUTH = dict(auth_url='http://192.0.2.60:5000/v3', username='admin', password='os-Secret-pw', project_name='admin',
            user_domain_name='Default', project_domain_name='Default')


def test_named_cloud_and_every_option_map_to_openstacksdk_names():
    params = dict(UNSET, cloud='lab', api_timeout=7, auth={'password': 'x'}, auth_type='password', ca_cert='/ca.pem',
                  compute_microversion='2.73', interface='internal', region_name='RegionTwo', validate_certs=False)
    assert connection_kwargs(params) == dict(
        cloud='lab', api_timeout=7, auth={'password': 'x'}, auth_type='password', cacert='/ca.pem',
        compute_default_microversion='2.73', interface='internal', region_name='RegionTwo', verify=False,
        app_name='openstack_ha.recovery')


def test_unset_options_are_left_to_clouds_yaml_and_the_environment():
    assert connection_kwargs(UNSET) == dict(interface='public', app_name='openstack_ha.recovery')


def test_cloud_given_as_a_dictionary_is_the_configuration_itself():
    params = dict(UNSET, cloud=dict(auth=AUTH, region_name='RegionOne'), region_name='RegionTwo')
    kwargs = connection_kwargs(params)
    assert kwargs['auth'] == AUTH
    assert kwargs['region_name'] == 'RegionTwo'  # an explicit option wins over the dictionary
    assert 'cloud' not in kwargs


def test_compute_microversion_pins_the_real_sdk_compute_proxy(monkeypatch):
    for variable in ('OS_CLOUD', 'OS_AUTH_URL', 'OS_COMPUTE_API_VERSION'):
        monkeypatch.delenv(variable, raising=False)
    conn = connect(dict(UNSET, auth=AUTH, auth_type='password', compute_microversion='2.73'))  # no request yet
    assert conn.config.get_default_microversion('compute') == '2.73'


def test_connect_failure_names_the_cloud():
    def refusing_connect(**kwargs):
        raise ValueError('Cloud lab was not found.')
    with pytest.raises(RecoveryError, match=r"^cannot connect to cloud 'lab': Cloud lab was not found.$"):
        connect(dict(UNSET, cloud='lab'), connect_function=refusing_connect)


@pytest.mark.parametrize('cloud, shown', [(None, 'the cloud of the OS_* environment variables'),
                                          ({'auth': {'auth_url': 'http://192.0.2.60:5000'}},
                                           'the cloud at http://192.0.2.60:5000'),
                                          ({'region_name': 'x'}, 'the cloud given as a dictionary')])
def test_connect_failure_names_unnamed_clouds_too(cloud, shown):
    def refusing_connect(**kwargs):
        raise ValueError('no auth_url')
    with pytest.raises(RecoveryError) as caught:
        connect(dict(UNSET, cloud=cloud), connect_function=refusing_connect)
    assert caught.value.msg == 'cannot connect to %s: no auth_url' % shown


class FakeSdk:
    """openstack.connect, counting the connections made."""

    def __init__(self, error=None):
        self.calls = []
        self.error = error

    def connect(self, **kwargs):
        self.calls.append(kwargs)
        if self.error:
            raise self.error
        return 'connection-%d' % len(self.calls)


class HostModule(OpenStackModule):
    argument_spec = dict(host=dict(type='str', required=True))

    def act(self, conn):
        return dict(changed=not self.check_mode, conn=conn, host=self.params['host'])


def failing_module(error):
    class FailingHostModule(HostModule):
        def act(self, conn):
            raise error
    return FailingHostModule


@pytest.fixture
def sdk(monkeypatch):
    fake = FakeSdk()
    monkeypatch.setattr(_openstack.openstack, 'connect', fake.connect)
    return fake


def run_host_module(run_module, args, module=HostModule, check_mode=False):
    return run_module(lambda: module().run(), args, check_mode=check_mode)


def test_constructing_a_module_never_connects(sdk):
    from ansible.module_utils.testing import patch_module_args
    with patch_module_args(dict(host='compute-1', cloud='lab')):
        module = HostModule()
    assert sdk.calls == []
    assert module.params['host'] == 'compute-1'
    assert module.params['interface'] == 'public'


def test_run_connects_once_and_hands_the_connection_to_act(sdk, run_module):
    outcome = run_host_module(run_module, dict(host='compute-1', cloud='lab', compute_microversion='2.95'))
    assert outcome.result == dict(changed=True, conn='connection-1', host='compute-1')
    assert sdk.calls == [dict(cloud='lab', compute_default_microversion='2.95', interface='public',
                              app_name='openstack_ha.recovery')]


def test_check_mode_reaches_act(sdk, run_module):
    outcome = run_host_module(run_module, dict(host='compute-1'), check_mode=True)
    assert outcome.result['changed'] is False


def test_bad_arguments_fail_without_connecting(sdk, run_module):
    outcome = run_host_module(run_module, dict(cloud='lab'))
    assert outcome.failed
    assert 'host' in outcome.result['msg']
    assert sdk.calls == []


def test_recovery_error_fails_with_its_facts(sdk, run_module):
    error = RecoveryError('compute-1: service still up', facts=dict(forced_down=False))
    outcome = run_host_module(run_module, dict(host='compute-1'), module=failing_module(error))
    assert outcome.failed
    assert outcome.result == dict(msg='compute-1: service still up', forced_down=False)


def test_sdk_error_fails_with_the_api_message(sdk, run_module):
    error = sdk_exceptions.HttpException(message='Compute service of compute-1 is still in use.')
    outcome = run_host_module(run_module, dict(host='compute-1'), module=failing_module(error))
    assert outcome.failed
    assert outcome.result['msg'] == 'OpenStack API error: Compute service of compute-1 is still in use.'


def test_connection_failure_fails_the_module(monkeypatch, run_module):
    monkeypatch.setattr(_openstack.openstack, 'connect', FakeSdk(error=ValueError('Cloud lab was not found.')).connect)
    outcome = run_host_module(run_module, dict(host='compute-1', cloud='lab'))
    assert outcome.result['msg'] == "cannot connect to cloud 'lab': Cloud lab was not found."


def test_missing_openstacksdk_is_reported_as_such(monkeypatch, sdk, run_module):
    monkeypatch.setattr(_openstack, 'HAS_OPENSTACKSDK', False)
    outcome = run_host_module(run_module, dict(host='compute-1'))
    assert outcome.failed
    assert 'openstacksdk' in outcome.result['msg']
    assert sdk.calls == []
