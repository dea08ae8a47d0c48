# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""IPMI 2.0 (lanplus) power client for the BMC power controller, over pyghmi.

Only two standard chassis commands are used: Get Chassis Status (power state) and Chassis Control
(power down / power up). Never power cycle or hard reset: they do not leave the host off. pyghmi's
Command.set_power() is not used: with wait=True it polls once a second, and it drops the completion code
that tells "already in that state" (0xD5) from other refusals. The controller polls itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import traceback

from ansible_collections.openstack_ha.recovery.plugins.module_utils._bmc import (
    POWER_OFF,
    POWER_ON,
    BmcAlreadyInState,
    BmcAuthError,
    BmcError,
    BmcUnreachable,
)

try:
    from pyghmi.exceptions import IpmiException
    from pyghmi.ipmi.command import Command
except ImportError:
    HAS_PYGHMI = False
    PYGHMI_IMPORT_ERROR = traceback.format_exc()

    class IpmiException(Exception):
        """Stands in for pyghmi's exception so this module imports without pyghmi."""

    Command = None
else:
    HAS_PYGHMI = True
    PYGHMI_IMPORT_ERROR = None

IPMI_PORT = 623
NETFN_CHASSIS = 0x00
CMD_GET_CHASSIS_STATUS = 0x01
CMD_CHASSIS_CONTROL = 0x02
CHASSIS_CONTROL = {POWER_OFF: 0x00, POWER_ON: 0x01}  # power down, power up
# "Command not supported in present state": what BMCs answer to power down when already down.
CC_NOT_IN_PRESENT_STATE = 0xD5
CC_INSUFFICIENT_PRIVILEGE = 0xD4
CC_TIMEOUT = 0xFFFF  # pyghmi's code for a request that got no answer

# Login errors from pyghmi that mean the BMC answered and rejected who we are.
AUTH_ERRORS = ('Incorrect password', 'Unauthorized name', 'Unauthorized role', 'Invalid username length',
               'privelege level', 'privilege level', 'Password is too long', 'Username too long')
# Login errors that mean no (complete) answer came back. pyghmi reports a silent BMC with no message at all.
NO_ANSWER_ERRORS = (None, '', 'None', 'timeout', 'Session no longer connected', 'Session Disconnected',
                    'Session failed to initialize')


def _to_bytes(value):
    return value if isinstance(value, bytes) else value.encode('utf-8')


class IpmiClient:
    """Power client over one pyghmi lanplus session, opened at the first request and reopened after a silence.

    Credentials are given to pyghmi as bytes: with str credentials a second session to the same BMC in one
    process can pick up a stale cached session and hang.
    """

    def __init__(self, address, username, password, port=IPMI_PORT, command_factory=None):
        self.name = 'IPMI BMC %s:%d' % (address, port)
        self._address = address
        self._port = port
        self._username = username
        self._password = password
        self._command_factory = command_factory or Command
        self._command = None

    def get_power(self):
        response = self._request('power status', CMD_GET_CHASSIS_STATUS)
        data = response.get('data') or []
        if not data:
            raise BmcError('%s answered power status without data' % self.name)
        return POWER_ON if data[0] & 0x01 else POWER_OFF

    def set_power(self, state):
        self._request('power %s' % state, CMD_CHASSIS_CONTROL, [CHASSIS_CONTROL[state]])

    def close(self):
        command, self._command = self._command, None
        if command is not None:
            try:
                command.ipmi_session.logout()
            except Exception:  # pylint: disable=broad-except
                pass  # the BMC expires the session on its own; nothing to report

    def _session(self):
        if self._command is None:
            try:
                self._command = self._command_factory(bmc=self._address, port=self._port,
                                                      userid=_to_bytes(self._username),
                                                      password=_to_bytes(self._password))
            except IpmiException as exc:
                raise self._login_error(exc)
            except (socket.error, ValueError) as exc:
                cause = 'cannot open an IPMI session (%s)' % exc
                raise BmcUnreachable('%s: %s' % (self.name, cause), cause=cause)
        return self._command

    def _login_error(self, exc):
        cause = str(exc) if exc.args and exc.args[0] else None
        if cause in NO_ANSWER_ERRORS:
            cause = 'no answer to the IPMI session request'
            return BmcUnreachable('%s: %s' % (self.name, cause), cause=cause)
        if any(marker in cause for marker in AUTH_ERRORS):
            return BmcAuthError('%s rejected the login of user %r (%s): check username and password, and that '
                                'the user may use IPMI over LAN with operator or administrator privilege'
                                % (self.name, self._username, cause), cause=cause)
        return BmcError('%s refused the IPMI session (%s)' % (self.name, cause), cause=cause)

    def _request(self, what, command, data=()):
        session = self._session()
        try:
            response = session.raw_command(netfn=NETFN_CHASSIS, command=command, data=data)
        except IpmiException as exc:
            self.close()
            cause = 'IPMI session lost during %s (%s)' % (what, exc)
            raise BmcUnreachable('%s: %s' % (self.name, cause), cause=cause)
        code = response.get('code', 0)
        if not code and 'error' not in response:
            return response
        cause = response.get('error') or 'completion code 0x%02X' % code
        if code == CC_TIMEOUT or cause == 'timeout':
            self.close()
            raise BmcUnreachable('%s: no answer to %s' % (self.name, what), cause='no answer to %s' % what)
        cause = '%s (0x%02X)' % (cause, code)
        if code == CC_NOT_IN_PRESENT_STATE:
            raise BmcAlreadyInState('%s refused %s: %s' % (self.name, what, cause), cause=cause)
        if code == CC_INSUFFICIENT_PRIVILEGE:
            raise BmcAuthError('%s refused %s: %s; user %r needs operator or administrator privilege'
                               % (self.name, what, cause, self._username), cause=cause)
        raise BmcError('%s refused %s: %s' % (self.name, what, cause), cause=cause)
