"""The requests power client: URLs, bodies, system discovery, and how HTTP answers become domain exceptions."""

import pytest
import requests

from ansible_collections.openstack_ha.recovery.plugins.module_utils._bmc import (
    BmcAlreadyInState,
    BmcAuthError,
    BmcError,
    BmcUnreachable,
)
from ansible_collections.openstack_ha.recovery.plugins.module_utils._redfish import RedfishClient

BASE = 'https://192.0.2.30:8443'
PASSWORD = 'redfish-Secret-pw'
SYSTEM = '/redfish/v1/Systems/1'


class FakeResponse:
    def __init__(self, status_code, body=None, text=None):
        self.status_code = status_code
        self._body = body
        self.text = text if text is not None else ('' if body is None else str(body))

    def json(self):
        if self._body is None:
            raise ValueError('no JSON')
        return self._body


class FakeSession:
    """requests.Session as the client uses it: auth, verify, headers, request(), close()."""

    def __init__(self, routes):
        self.routes = routes  # {(method, path): response or exception, or a list of them}
        self.requests = []
        self.headers = {}
        self.closed = False

    def request(self, method, url, json=None, timeout=None):
        assert url.startswith(BASE + '/')
        path = url[len(BASE):]
        self.requests.append((method, path, json, timeout))
        answer = self.routes[(method, path)]
        if isinstance(answer, list):
            answer = answer.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self):
        self.closed = True


def system(power='On', target=None):
    body = {'@odata.id': SYSTEM, 'Id': '1', 'PowerState': power}
    if target is not False:
        body['Actions'] = {'#ComputerSystem.Reset': {'target': target or SYSTEM + '/Actions/ComputerSystem.Reset'}}
    return FakeResponse(200, body)


def members(*paths):
    return FakeResponse(200, {'Members': [{'@odata.id': path} for path in paths]})


def client(routes, **kwargs):
    session = FakeSession(routes)
    return RedfishClient(BASE, 'admin', PASSWORD, session=session, **kwargs), session


def error_body(status, message):
    return FakeResponse(status, {'error': {'code': 'Base.1.8.GeneralError', 'message': 'See ExtendedInfo',
                                           '@Message.ExtendedInfo': [{'Message': message}]}})


def test_session_carries_basic_auth_and_certificate_choice():
    redfish, session = client({}, validate_certs=False)
    assert session.auth == ('admin', PASSWORD)
    assert session.verify is False
    assert redfish.name == 'Redfish BMC ' + BASE


def test_discovers_the_single_system_and_reads_power_state_in_lower_case():
    redfish, session = client({('GET', '/redfish/v1/Systems'): members(SYSTEM),
                               ('GET', SYSTEM): [system('On'), system('PoweringOff'), system('Off')]})
    assert [redfish.get_power() for dummy in range(3)] == ['on', 'poweringoff', 'off']
    assert [request[1] for request in session.requests] == ['/redfish/v1/Systems', SYSTEM, SYSTEM, SYSTEM]


def test_several_systems_without_system_id_fail_naming_the_url_and_members():
    redfish, dummy = client({('GET', '/redfish/v1/Systems'): members('/redfish/v1/Systems/a', '/redfish/v1/Systems/b')})
    with pytest.raises(BmcError) as caught:
        redfish.get_power()
    assert caught.value.msg == ('Redfish BMC %s: %s/redfish/v1/Systems lists 2 systems (/redfish/v1/Systems/a, '
                                '/redfish/v1/Systems/b): set system_id to the one to fence' % (BASE, BASE))


def test_no_system_at_all_fails():
    redfish, dummy = client({('GET', '/redfish/v1/Systems'): members()})
    with pytest.raises(BmcError, match='lists 0 systems'):
        redfish.get_power()


def test_system_id_skips_discovery():
    redfish, session = client({('GET', '/redfish/v1/Systems/System.Embedded.1'): system('Off')},
                              system_id='System.Embedded.1')
    assert redfish.get_power() == 'off'
    assert len(session.requests) == 1


def test_force_off_posts_to_the_target_the_system_lists():
    target = '/redfish/v1/Systems/1/Actions/Oem/Vendor.Reset'
    redfish, session = client({('GET', SYSTEM): system(target=target), ('POST', target): FakeResponse(204)},
                              system_id='1')
    redfish.set_power('off')
    assert session.requests[-1][:3] == ('POST', target, {'ResetType': 'ForceOff'})
    assert session.requests[-1][3] == 10.0


def test_on_posts_reset_type_on_to_the_default_target_without_actions():
    default = SYSTEM + '/Actions/ComputerSystem.Reset'
    redfish, session = client({('GET', SYSTEM): system(target=False), ('POST', default): FakeResponse(202)},
                              system_id='1')
    redfish.set_power('on')
    assert session.requests[-1][:3] == ('POST', default, {'ResetType': 'On'})


@pytest.mark.parametrize('status', [400, 409])
def test_400_and_409_mean_maybe_already_in_state_and_quote_the_bmc(status):
    reset = SYSTEM + '/Actions/ComputerSystem.Reset'
    redfish, dummy = client({('GET', SYSTEM): system('Off'),
                             ('POST', reset): error_body(status, 'The system is already powered off.')},
                            system_id='1')
    with pytest.raises(BmcAlreadyInState) as caught:
        redfish.set_power('off')
    assert caught.value.msg == ('Redfish BMC %s refused reset ForceOff at %s%s: HTTP %d The system is already '
                                'powered off.' % (BASE, BASE, reset, status))
    assert caught.value.cause == 'HTTP %d The system is already powered off.' % status


def test_other_refusals_are_bmc_errors_with_the_body():
    reset = SYSTEM + '/Actions/ComputerSystem.Reset'
    redfish, dummy = client({('GET', SYSTEM): system(), ('POST', reset): FakeResponse(405, text='Method Not Allowed')},
                            system_id='1')
    with pytest.raises(BmcError, match='HTTP 405 Method Not Allowed') as caught:
        redfish.set_power('off')
    assert not isinstance(caught.value, BmcAlreadyInState)


@pytest.mark.parametrize('status', [401, 403])
def test_rejected_credentials_are_auth_errors_without_the_password(status):
    redfish, dummy = client({('GET', SYSTEM): FakeResponse(status, text='Unauthorized')}, system_id='1')
    with pytest.raises(BmcAuthError) as caught:
        redfish.get_power()
    assert caught.value.msg.startswith('Redfish BMC %s rejected the credentials (HTTP %d' % (BASE, status))
    assert PASSWORD not in caught.value.msg


@pytest.mark.parametrize('answer', [requests.exceptions.ConnectTimeout('connect timed out'),
                                    requests.exceptions.ConnectionError('Connection refused'),
                                    requests.exceptions.ReadTimeout('read timed out'),
                                    FakeResponse(503, text='Service Unavailable')])
def test_no_answer_and_5xx_are_unreachable(answer):
    redfish, dummy = client({('GET', SYSTEM): answer}, system_id='1')
    with pytest.raises(BmcUnreachable) as caught:
        redfish.get_power()
    assert caught.value.msg.startswith('Redfish BMC %s: ' % BASE)


def test_tls_failure_is_not_retried_and_says_what_to_do():
    redfish, dummy = client({('GET', SYSTEM): requests.exceptions.SSLError('certificate verify failed')},
                            system_id='1')
    with pytest.raises(BmcError, match='certificate verify failed.*validate_certs: false') as caught:
        redfish.get_power()
    assert not isinstance(caught.value, BmcUnreachable)


def test_missing_system_is_reported_with_its_url():
    redfish, dummy = client({('GET', '/redfish/v1/Systems/9'): FakeResponse(404)}, system_id='9')
    with pytest.raises(BmcError, match=r'/redfish/v1/Systems/9 not found \(HTTP 404\): check system_id'):
        redfish.get_power()


def test_other_get_failures_and_non_json_answers_are_bmc_errors():
    redfish, dummy = client({('GET', SYSTEM): [FakeResponse(418, text='teapot'), FakeResponse(200, text='<html>'),
                                               FakeResponse(200, {'Id': '1'})]}, system_id='1')
    with pytest.raises(BmcError, match='HTTP 418 teapot'):
        redfish.get_power()
    with pytest.raises(BmcError, match='did not return JSON'):
        redfish.get_power()
    with pytest.raises(BmcError, match='has no PowerState'):
        redfish.get_power()


def test_address_without_scheme_is_refused_before_any_request():
    session = FakeSession({})
    redfish = RedfishClient('192.0.2.30', 'admin', PASSWORD, session=session)
    with pytest.raises(BmcError, match='address must be the base URL'):
        redfish.get_power()
    assert session.requests == []


def test_credentials_in_the_address_never_reach_urls_or_messages():
    session = FakeSession({('GET', '/redfish/v1/Systems/9'): FakeResponse(404)})
    redfish = RedfishClient('https://admin:%s@192.0.2.30:8443/' % PASSWORD, 'admin', PASSWORD, system_id='9',
                            session=session)
    assert redfish.name == 'Redfish BMC ' + BASE
    with pytest.raises(BmcError) as caught:
        redfish.get_power()
    assert PASSWORD not in caught.value.msg


def test_close_closes_the_http_session():
    redfish, session = client({})
    redfish.close()
    assert session.closed is True
