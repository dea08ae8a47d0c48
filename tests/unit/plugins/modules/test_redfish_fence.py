"""redfish_fence's edge: arguments in, results and failures out, through AnsibleModule."""

from ansible_collections.openstack_ha.recovery.plugins.module_utils import _redfish
from ansible_collections.openstack_ha.recovery.plugins.modules import redfish_fence

PASSWORD = 'redfish-Module-pw'
ARGS = dict(address='https://192.0.2.50', username='root', password=PASSWORD, poll_interval=0.01)


class FakeResponse:
    def __init__(self, status_code, body):
        self.status_code = status_code
        self._body = body
        self.text = str(body)

    def json(self):
        return self._body


class FakeSession:
    """A Redfish service with one system whose power follows ForceOff / On at once."""

    def __init__(self, power='On', status=None):
        self.power = power
        self.status = status
        self.headers = {}
        self.posts = []

    def request(self, method, url, json=None, timeout=None):
        if self.status:
            return FakeResponse(self.status, {'error': {'message': 'Unauthorized'}})
        if url.endswith('/redfish/v1/Systems'):
            return FakeResponse(200, {'Members': [{'@odata.id': '/redfish/v1/Systems/node'}]})
        if method == 'POST':
            self.posts.append(json)
            self.power = 'Off' if json['ResetType'] == 'ForceOff' else 'On'
            return FakeResponse(204, None)
        return FakeResponse(200, {'PowerState': self.power})

    def close(self):
        pass


def use_session(monkeypatch, session):
    monkeypatch.setattr(_redfish.requests, 'Session', lambda: session)
    return session


def test_fences_and_returns_exactly_the_documented_keys(monkeypatch, run_module):
    session = use_session(monkeypatch, FakeSession(power='On'))
    outcome = run_module(redfish_fence.main, ARGS)
    assert not outcome.failed
    assert set(outcome.result) == set(redfish_fence.RETURNED_KEYS) | {'changed'}
    assert (outcome.result['changed'], outcome.result['power'], outcome.result['verified']) == (True, 'off', True)
    assert session.posts == [{'ResetType': 'ForceOff'}]
    assert session.auth == ('root', PASSWORD)
    assert session.verify is True


def test_check_mode_reads_and_changes_nothing(monkeypatch, run_module):
    session = use_session(monkeypatch, FakeSession(power='On'))
    outcome = run_module(redfish_fence.main, dict(ARGS, validate_certs=False), check_mode=True, diff=True)
    assert (outcome.result['changed'], outcome.result['power']) == (True, 'on')
    assert outcome.result['diff'] == dict(before=dict(power='on'), after=dict(power='off'))
    assert session.posts == []
    assert session.verify is False


def test_already_off_is_no_change(monkeypatch, run_module):
    session = use_session(monkeypatch, FakeSession(power='Off'))
    outcome = run_module(redfish_fence.main, ARGS)
    assert (outcome.result['changed'], outcome.result['verified']) == (False, True)
    assert session.posts == []


def test_rejected_credentials_fail_naming_the_url_never_the_password(monkeypatch, run_module):
    use_session(monkeypatch, FakeSession(status=401))
    outcome = run_module(redfish_fence.main, ARGS)
    assert outcome.failed
    assert outcome.result['msg'].startswith('Redfish BMC https://192.0.2.50 rejected the credentials (HTTP 401')
    assert PASSWORD not in repr(outcome.result)
    assert set(outcome.result) == set(redfish_fence.RETURNED_KEYS) | {'msg'}


def test_missing_requests_is_reported_as_such(monkeypatch, run_module):
    monkeypatch.setattr(redfish_fence, 'HAS_REQUESTS', False)
    outcome = run_module(redfish_fence.main, ARGS)
    assert outcome.failed
    assert 'requests' in outcome.result['msg']
