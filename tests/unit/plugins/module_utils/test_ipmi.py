"""The pyghmi power client: what it sends, and how pyghmi's answers become domain exceptions."""

import pytest
from pyghmi.exceptions import IpmiException

from ansible_collections.openstack_ha.recovery.plugins.module_utils._bmc import (
    BmcAlreadyInState,
    BmcAuthError,
    BmcError,
    BmcUnreachable,
)
from ansible_collections.openstack_ha.recovery.plugins.module_utils._ipmi import IpmiClient

PASSWORD = 'ipmi-Secret-pw'


class FakeSession:
    def __init__(self):
        self.logged_out = False

    def logout(self):
        self.logged_out = True


class FakeCommand:
    """pyghmi.ipmi.command.Command as the client uses it: constructor (login), raw_command, ipmi_session."""

    def __init__(self, login_error=None, responses=None):
        self.login_error = login_error
        self.responses = list(responses or [])
        self.logins = []
        self.sent = []
        self.ipmi_session = FakeSession()

    def __call__(self, **kwargs):  # the client calls the factory like pyghmi's Command class
        self.logins.append(kwargs)
        if self.login_error is not None:
            raise self.login_error
        return self

    def raw_command(self, netfn, command, data=()):
        self.sent.append((netfn, command, list(data)))
        response = self.responses.pop(0)
        if isinstance(response, Exception):
            raise response
        return response


def ok(data=()):
    return {'netfn': 1, 'command': 1, 'code': 0, 'data': list(data)}


def failed(code, error):
    return {'netfn': 1, 'command': 2, 'code': code, 'error': error, 'data': []}


def client(command):
    return IpmiClient('192.0.2.20', 'admin', PASSWORD, port=6230, command_factory=command)


def test_reads_power_from_chassis_status_bit_0():
    command = FakeCommand(responses=[ok([0x01, 0x10, 0x40]), ok([0x60, 0x10, 0x40])])
    ipmi = client(command)
    assert [ipmi.get_power(), ipmi.get_power()] == ['on', 'off']
    assert command.sent == [(0x00, 0x01, []), (0x00, 0x01, [])]
    assert len(command.logins) == 1  # one session for the whole run


def test_power_off_is_chassis_control_power_down_and_on_is_power_up():
    command = FakeCommand(responses=[ok(), ok()])
    ipmi = client(command)
    ipmi.set_power('off')
    ipmi.set_power('on')
    assert command.sent == [(0x00, 0x02, [0x00]), (0x00, 0x02, [0x01])]  # never cycle (2) or reset (3)


def test_credentials_go_to_pyghmi_as_bytes():
    command = FakeCommand(responses=[ok([1])])
    client(command).get_power()
    assert command.logins == [dict(bmc='192.0.2.20', port=6230, userid=b'admin', password=PASSWORD.encode())]


def test_name_carries_address_and_port():
    assert client(FakeCommand()).name == 'IPMI BMC 192.0.2.20:6230'


@pytest.mark.parametrize('cause', ['Incorrect password provided', 'Unauthorized name in RAKP2',
                                   'Unauthorized role or privilege level requested in RAKP2'])
def test_rejected_login_is_an_auth_error_naming_bmc_and_user_never_the_password(cause):
    ipmi = client(FakeCommand(login_error=IpmiException(cause)))
    with pytest.raises(BmcAuthError) as caught:
        ipmi.get_power()
    msg = caught.value.msg
    assert msg.startswith("IPMI BMC 192.0.2.20:6230 rejected the login of user 'admin' (%s)" % cause)
    assert PASSWORD not in msg


@pytest.mark.parametrize('error', [IpmiException(None), IpmiException('timeout'), IpmiException()])
def test_silent_bmc_at_login_is_unreachable(error):
    with pytest.raises(BmcUnreachable, match=r'^IPMI BMC 192.0.2.20:6230: no answer to the IPMI session request$'):
        client(FakeCommand(login_error=error)).get_power()


def test_unresolvable_address_is_unreachable():
    import socket
    with pytest.raises(BmcUnreachable, match='cannot open an IPMI session'):
        client(FakeCommand(login_error=socket.gaierror(-2, 'Name or service not known'))).get_power()


def test_other_login_refusal_is_a_bmc_error():
    error = IpmiException('No Cipher suite match with proposed security algorithms')
    with pytest.raises(BmcError, match='refused the IPMI session .No Cipher suite match') as caught:
        client(FakeCommand(login_error=error)).get_power()
    assert not isinstance(caught.value, (BmcAuthError, BmcUnreachable))


def test_completion_code_d5_means_maybe_already_in_state():
    ipmi = client(FakeCommand(responses=[failed(0xD5, 'Command not supported in present state')]))
    with pytest.raises(BmcAlreadyInState) as caught:
        ipmi.set_power('off')
    assert caught.value.msg == ('IPMI BMC 192.0.2.20:6230 refused power off: Command not supported in present '
                                'state (0xD5)')
    assert caught.value.cause == 'Command not supported in present state (0xD5)'


def test_insufficient_privilege_is_an_auth_error():
    ipmi = client(FakeCommand(responses=[failed(0xD4, 'Insufficient privilege level')]))
    with pytest.raises(BmcAuthError, match="user 'admin' needs operator or administrator privilege"):
        ipmi.set_power('off')


def test_other_completion_codes_are_bmc_errors():
    ipmi = client(FakeCommand(responses=[failed(0xC1, 'Invalid command')]))
    with pytest.raises(BmcError, match=r'refused power off: Invalid command \(0xC1\)'):
        ipmi.set_power('off')


def test_code_without_error_text_is_still_a_failure():
    ipmi = client(FakeCommand(responses=[{'code': 0xC9, 'data': []}]))
    with pytest.raises(BmcError, match=r'completion code 0xC9'):
        ipmi.set_power('off')


def test_no_answer_mid_session_reopens_the_session_on_the_next_request():
    command = FakeCommand(responses=[failed(0xFFFF, 'timeout'), IpmiException('Session no longer connected'),
                                     ok([0])])
    ipmi = client(command)
    with pytest.raises(BmcUnreachable, match='no answer to power status'):
        ipmi.get_power()
    with pytest.raises(BmcUnreachable, match='IPMI session lost during power status'):
        ipmi.get_power()
    assert ipmi.get_power() == 'off'
    assert len(command.logins) == 3


def test_empty_status_answer_is_a_bmc_error():
    with pytest.raises(BmcError, match='answered power status without data'):
        client(FakeCommand(responses=[ok([])])).get_power()


def test_close_logs_out_once_and_tolerates_no_session():
    command = FakeCommand(responses=[ok([1])])
    ipmi = client(command)
    ipmi.close()  # nothing opened yet
    ipmi.get_power()
    ipmi.close()
    ipmi.close()
    assert command.ipmi_session.logged_out is True


def test_close_ignores_a_failing_logout():
    command = FakeCommand(responses=[ok([1])])

    def broken_logout():
        raise IpmiException('Session no longer connected')
    command.ipmi_session.logout = broken_logout
    ipmi = client(command)
    ipmi.get_power()
    ipmi.close()
