# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Redfish power client for the BMC power controller, over plain requests.

Why requests and not sushy: requests already comes with openstacksdk (no new dependency), and it leaves
every timeout and every error body in our hands; sushy is one more dependency with retries of its own that
would run inside our deadline unseen.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

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
    import requests
except ImportError:
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None

from urllib.parse import urljoin, urlsplit, urlunsplit

SYSTEMS_PATH = '/redfish/v1/Systems'
RESET_ACTION = '#ComputerSystem.Reset'
RESET_TYPES = {POWER_OFF: 'ForceOff', POWER_ON: 'On'}  # never GracefulShutdown: an OS may ignore it
# A single HTTP request never waits longer than this; the controller's timeout bounds the whole run.
REQUEST_TIMEOUT = 10.0
# Statuses with which BMCs (iLO, iDRAC, ...) refuse a reset that would not change the power state.
ALREADY_IN_STATE_STATUSES = (400, 409)
TRANSIENT_STATUSES = (408, 429, 500, 502, 503, 504)


def _without_userinfo(url):
    """The URL without user name and password, if someone wrote them into it."""
    parts = urlsplit(url)
    if '@' not in parts.netloc:
        return url
    return urlunsplit((parts.scheme, parts.netloc.rsplit('@', 1)[1], parts.path, parts.query, parts.fragment))


def _cause(exc):
    """The innermost reason of a requests exception (urllib3 wraps it in 'Max retries exceeded ...')."""
    reason = getattr(exc.args[0], 'reason', None) if exc.args else None
    return '%s: %s' % (exc.__class__.__name__, reason or exc)


def _error_detail(response):
    """The BMC's own words from a Redfish error body, else the start of whatever it sent."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or '').strip()[:200]
    error = body.get('error', {}) if isinstance(body, dict) else {}
    messages = [info.get('Message') for info in error.get('@Message.ExtendedInfo', []) if isinstance(info, dict)]
    messages = [message for message in messages if message]
    return '; '.join(messages) or error.get('message') or str(body)[:200]


class RedfishClient:
    """Power client for one ComputerSystem of a Redfish service.

    `address` is the service's base URL (https://bmc.example.com or http://127.0.0.1:8000). Without
    `system_id`, the single member of /redfish/v1/Systems is used; several members are an error.
    """

    def __init__(self, address, username, password, system_id=None, validate_certs=True,
                 request_timeout=REQUEST_TIMEOUT, session=None):
        # Credentials go in the Authorization header only: never in URLs, which appear in messages.
        self._base = _without_userinfo(address).rstrip('/') + '/'
        self.name = 'Redfish BMC %s' % self._base.rstrip('/')
        self._system_id = system_id
        self._system_url = None
        self._reset_url = None
        self._timeout = request_timeout
        self._session = session if session is not None else requests.Session()
        self._session.auth = (username, password)
        self._session.verify = validate_certs
        self._session.headers.update({'Accept': 'application/json', 'OData-Version': '4.0'})

    def get_power(self):
        system = self._get(self._system())
        state = system.get('PowerState')
        if not state:
            raise BmcError('%s: %s has no PowerState' % (self.name, self._system_url))
        return str(state).lower()  # On / Off / PoweringOn / PoweringOff -> on / off / poweringon / poweringoff

    def set_power(self, state):
        url = self._reset_target()
        what = 'reset %s' % RESET_TYPES[state]
        response = self._send('POST', url, what, json={'ResetType': RESET_TYPES[state]})
        if response.status_code < 300:
            return
        cause = 'HTTP %d %s' % (response.status_code, _error_detail(response))
        if response.status_code in ALREADY_IN_STATE_STATUSES:
            raise BmcAlreadyInState('%s refused %s at %s: %s' % (self.name, what, url, cause), cause=cause)
        raise BmcError('%s refused %s at %s: %s' % (self.name, what, url, cause), cause=cause)

    def close(self):
        self._session.close()

    def _system(self):
        if self._system_url is None:
            if urlsplit(self._base).scheme not in ('http', 'https'):
                raise BmcError('%s: address must be the base URL of the Redfish service, like https://host[:port]'
                               % self.name)
            if self._system_id:
                self._system_url = urljoin(self._base, '%s/%s' % (SYSTEMS_PATH, self._system_id))
            else:
                self._system_url = self._only_system()
        return self._system_url

    def _only_system(self):
        url = urljoin(self._base, SYSTEMS_PATH)
        members = [member.get('@odata.id') for member in self._get(url).get('Members', [])]
        if len(members) != 1:
            raise BmcError('%s: %s lists %d systems (%s): set system_id to the one to fence'
                           % (self.name, url, len(members), ', '.join(str(member) for member in members)))
        return urljoin(self._base, members[0])

    def _reset_target(self):
        if self._reset_url is None:
            system = self._get(self._system())
            action = system.get('Actions', {}).get(RESET_ACTION, {})
            target = action.get('target') or '%s/Actions/ComputerSystem.Reset' % urlsplit(self._system_url).path
            self._reset_url = urljoin(self._base, target)
        return self._reset_url

    def _get(self, url):
        response = self._send('GET', url, 'GET %s' % url)
        if response.status_code == 404:
            raise BmcError('%s: %s not found (HTTP 404): check system_id and the base URL' % (self.name, url))
        if response.status_code >= 300:
            raise BmcError('%s: GET %s failed: HTTP %d %s'
                           % (self.name, url, response.status_code, _error_detail(response)))
        try:
            return response.json()
        except ValueError:
            raise BmcError('%s: GET %s did not return JSON' % (self.name, url))

    def _send(self, method, url, what, json=None):
        try:
            response = self._session.request(method, url, json=json, timeout=self._timeout)
        except requests.exceptions.SSLError as exc:
            raise BmcError('%s: TLS error on %s (%s): make the controller trust the BMC certificate '
                           '(REQUESTS_CA_BUNDLE) or set validate_certs: false' % (self.name, what, _cause(exc)))
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            cause = 'no answer to %s (%s)' % (what, _cause(exc))
            raise BmcUnreachable('%s: %s' % (self.name, cause), cause=cause)
        except requests.exceptions.RequestException as exc:
            raise BmcError('%s: %s failed (%s)' % (self.name, what, _cause(exc)))
        if response.status_code in (401, 403):
            raise BmcAuthError('%s rejected the credentials (HTTP %d on %s): check username and password, and '
                               'that the account may reset the system' % (self.name, response.status_code, what))
        if response.status_code in TRANSIENT_STATUSES:
            cause = 'HTTP %d on %s (%s)' % (response.status_code, what, _error_detail(response))
            raise BmcUnreachable('%s: %s' % (self.name, cause), cause=cause)
        return response
