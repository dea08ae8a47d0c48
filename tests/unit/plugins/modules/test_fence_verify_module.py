"""fence_verify's edge: arguments in, results and failures out, through AnsibleModule.

The BMC is conftest's FakeBmc (in place of the pyghmi / requests clients), Nova a fake openstack.connect
whose connection answers GET /os-services. Time is real but short: report intervals of a few milliseconds.
"""

import time

import pytest

from ansible_collections.openstack_ha.recovery.plugins.module_utils import _fence_verify, _openstack
from ansible_collections.openstack_ha.recovery.plugins.modules import fence_verify

PASSWORD = 'verify-Module-pw'
ARGS = dict(host='compute1', address='192.0.2.40', username='admin', password=PASSWORD, poll_interval=0.001,
            cloud='lab', report_interval=0.02, missed_heartbeats=2, timeout=5)


def nova_time(seconds):
    return time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(int(seconds))) + '.%06d' % int(seconds % 1 * 1e6)


class Response:
    status_code = 200
    headers = {}
    text = ''

    def __init__(self, services):
        self.services = services

    def json(self):
        return dict(services=self.services)


class FakeCloud:
    """openstack.connect for the module; its connection's compute.get answers /os-services.

    heartbeat: 'alive' (updated_at is always now) or seconds since the last heartbeat (a dead host).
    """

    def __init__(self, heartbeat='alive', error=None):
        self.heartbeat = heartbeat
        self.error = error
        self.connects = []
        self.gets = []
        self.started = time.time()
        self.compute = self

    def connect(self, **kwargs):
        self.connects.append(kwargs)
        if self.error:
            raise self.error
        return self

    def get(self, url, **kwargs):
        self.gets.append((url, kwargs))
        now = time.time()
        updated = now if self.heartbeat == 'alive' else self.started - self.heartbeat
        return Response([dict(binary='nova-compute', host='compute1', state='down', status='enabled',
                              forced_down=False, updated_at=nova_time(updated))])


@pytest.fixture
def cloud(monkeypatch):
    fake = FakeCloud()
    monkeypatch.setattr(_openstack.openstack, 'connect', fake.connect)
    return fake


def use_fake_bmc(monkeypatch, bmc, protocol='ipmi'):
    made = []

    def fake_client(address, username, password, **kwargs):
        made.append(dict(address=address, username=username, password=password, **kwargs))
        return bmc
    monkeypatch.setattr(_fence_verify, 'IpmiClient' if protocol == 'ipmi' else 'RedfishClient', fake_client)
    return made


def test_fenced_host_returns_exactly_the_documented_keys(monkeypatch, run_module, make_bmc, cloud):
    bmc = make_bmc(power='off')
    made = use_fake_bmc(monkeypatch, bmc)
    cloud.heartbeat = 120
    outcome = run_module(fence_verify.main, ARGS)
    assert not outcome.failed, outcome.result
    assert set(outcome.result) == set(fence_verify.RETURNED_KEYS) | {'changed'}
    assert (outcome.result['changed'], outcome.result['fenced'], outcome.result['reasons']) == (False, True, [])
    assert outcome.result['evidence']['bmc']['reads'] == ['off', 'off', 'off']
    assert outcome.result['evidence']['nova']['verdict'] == 'silent'
    assert made == [dict(address='192.0.2.40', username='admin', password=PASSWORD, port=623)]
    assert bmc.commands == [] and bmc.closed
    assert [kwargs['cloud'] for kwargs in cloud.connects] == ['lab']
    assert cloud.gets[0] == ('/os-services', dict(params=dict(binary='nova-compute', host='compute1'),
                                                  microversion='2.11'))


def test_check_mode_runs_the_same_reads_and_changes_nothing(monkeypatch, run_module, make_bmc, cloud):
    bmc = make_bmc(power='off')
    use_fake_bmc(monkeypatch, bmc)
    cloud.heartbeat = 120
    outcome = run_module(fence_verify.main, ARGS, check_mode=True)
    assert (outcome.failed, outcome.result['changed'], outcome.result['fenced']) == (False, False, True)
    assert bmc.reads == 3 and bmc.commands == []


def test_lying_bmc_fails_naming_the_heartbeat_never_the_password(monkeypatch, run_module, make_bmc, cloud):
    bmc = make_bmc(power='on', lies=True)
    bmc.set_power('off')
    use_fake_bmc(monkeypatch, bmc)
    outcome = run_module(fence_verify.main, ARGS)
    assert outcome.failed
    assert set(outcome.result) == set(fence_verify.RETURNED_KEYS) | {'msg'}
    assert outcome.result['msg'].startswith('compute1 is NOT provably fenced: nova-compute on compute1 wrote a '
                                            'heartbeat while fence_verify watched')
    assert outcome.result['evidence']['bmc']['verdict'] == 'off'
    assert outcome.result['evidence']['nova']['verdict'] == 'alive'
    assert PASSWORD not in repr(outcome.result)


def test_not_fenced_can_be_reported_without_failing(monkeypatch, run_module, make_bmc, cloud):
    use_fake_bmc(monkeypatch, make_bmc(power='on'))
    outcome = run_module(fence_verify.main, dict(ARGS, fail_when_not_fenced=False))
    assert (outcome.failed, outcome.result['changed'], outcome.result['fenced']) == (False, False, False)
    assert len(cloud.gets) == 1  # the BMC already refuted the fence: Nova read once, not watched


def test_redfish_options_reach_the_client(monkeypatch, run_module, make_bmc, cloud):
    made = use_fake_bmc(monkeypatch, make_bmc(power='off'), protocol='redfish')
    cloud.heartbeat = 120
    outcome = run_module(fence_verify.main, dict(ARGS, protocol='redfish', address='https://192.0.2.40',
                                                 system_id='1', bmc_validate_certs=False, validate_certs=True))
    assert outcome.result['evidence']['bmc']['protocol'] == 'redfish'
    assert made == [dict(address='https://192.0.2.40', username='admin', password=PASSWORD, system_id='1',
                         validate_certs=False, request_timeout=5.0)]
    assert cloud.connects[0]['verify'] is True  # validate_certs is about the OpenStack APIs


def test_without_nova_the_cloud_is_never_contacted(monkeypatch, run_module, make_bmc, cloud):
    use_fake_bmc(monkeypatch, make_bmc(power='off'))
    outcome = run_module(fence_verify.main, dict(ARGS, nova_heartbeat=False,
                                                 probes=[dict(host='127.0.0.1', port=1)]))
    assert cloud.connects == []
    assert outcome.result['evidence']['nova'] == dict(verdict='skipped')
    assert outcome.result['evidence']['probes'][0]['host'] == '127.0.0.1'


def test_one_signal_is_refused_before_any_contact(monkeypatch, run_module, make_bmc, cloud):
    bmc = make_bmc()
    use_fake_bmc(monkeypatch, bmc)
    outcome = run_module(fence_verify.main, dict(ARGS, nova_heartbeat=False))
    assert outcome.failed
    assert outcome.result['msg'].startswith('fence_verify needs at least 2 independent signals and got 1')
    assert set(outcome.result) == set(fence_verify.RETURNED_KEYS) | {'msg'}
    assert outcome.result['fenced'] is False
    assert bmc.requests == 0 and bmc.closed
    assert cloud.connects == []


def test_bmc_protocol_needs_address_and_credentials(run_module, cloud):
    outcome = run_module(fence_verify.main, dict(host='compute1', cloud='lab', protocol='redfish'))
    assert outcome.failed
    assert outcome.result['msg'] == 'protocol is redfish but all of the following are missing: address, username, ' \
                                    'password'


def test_protocol_none_needs_no_credentials(run_module, cloud):
    outcome = run_module(fence_verify.main, dict(host='compute1', cloud='lab', protocol='none', report_interval=0.02,
                                                 probes=[dict(host='127.0.0.1', port=1)], timeout=1))
    assert outcome.failed  # port 1 refuses: the probe answers
    assert outcome.result['evidence']['probes'][0]['verdict'] == 'answered'
    assert outcome.result['evidence']['bmc'] == dict(verdict='skipped')


def test_cloud_that_cannot_be_reached_is_unknown_evidence(monkeypatch, run_module, make_bmc):
    monkeypatch.setattr(_openstack.openstack, 'connect', FakeCloud(error=ValueError('Cloud lab was not found.')).connect)
    use_fake_bmc(monkeypatch, make_bmc(power='off'))
    outcome = run_module(fence_verify.main, ARGS)
    assert outcome.failed
    assert outcome.result['evidence']['nova']['verdict'] == 'unknown'
    assert outcome.result['reasons'] == ["cannot read the nova-compute service of compute1: cannot connect to "
                                         "cloud 'lab': Cloud lab was not found."]


@pytest.mark.parametrize('flag, args, library', [('HAS_PYGHMI', {}, 'pyghmi'),
                                                 ('HAS_REQUESTS', dict(protocol='redfish'), 'requests'),
                                                 ('HAS_OPENSTACKSDK', {}, 'openstacksdk')])
def test_missing_libraries_are_reported_as_such(monkeypatch, run_module, flag, args, library):
    monkeypatch.setattr(_fence_verify, flag, False)
    outcome = run_module(fence_verify.main, dict(ARGS, **args))
    assert outcome.failed
    assert library in outcome.result['msg']


def test_unused_libraries_are_not_needed(monkeypatch, run_module, make_bmc):
    monkeypatch.setattr(_fence_verify, 'HAS_OPENSTACKSDK', False)
    monkeypatch.setattr(_fence_verify, 'HAS_REQUESTS', False)
    use_fake_bmc(monkeypatch, make_bmc(power='off'))
    outcome = run_module(fence_verify.main, dict(ARGS, nova_heartbeat=False, probes=[dict(host='127.0.0.1', port=1)]))
    assert 'openstacksdk' not in outcome.result['msg'] and 'requests' not in outcome.result['msg']
    assert outcome.result['evidence']['bmc']['verdict'] == 'off'


def test_state_on_is_not_accepted(run_module, cloud):
    outcome = run_module(fence_verify.main, dict(ARGS, state='on'))
    assert outcome.failed
    assert 'state' in outcome.result['msg']
