# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""BMC base of the fence modules: shared options, domain exceptions and the verified power controller.

The controller knows nothing about IPMI, Redfish or Ansible. It drives a small client interface:

    client.name                 "IPMI BMC 10.0.0.5:623": names the BMC in every message
    client.get_power()          -> "on", "off" or a transitional state reported by the BMC
    client.set_power(state)     sends the power command for "on" or "off"; returns once the BMC accepted it
    client.close()              releases the BMC session

A client raises BmcUnreachable when the BMC did not answer (retried), BmcAuthError when it rejected the
credentials (never retried), BmcAlreadyInState when it refused a power command with a reply that can mean
"already in that state" (IPMI completion code 0xD5, Redfish 400/409), and BmcError for any other refusal.
Unit tests inject a fake client; the modules inject the pyghmi or the requests one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import time

POWER_OFF = 'off'
POWER_ON = 'on'

# The keys every fence module returns (besides changed and diff), in success and in failure alike.
# The modules document exactly these in RETURN; tests/unit/test_module_docs.py keeps the two in step.
FENCE_RESULT_KEYS = ('attempts', 'elapsed', 'power', 'power_before', 'verified')

# Options every fence module shares, documented once in the openstack_ha.recovery.bmc doc fragment.
# The BMC address is not here: IPMI takes a host name and a port, Redfish a base URL.
BMC_ARGUMENT_SPEC = dict(
    confirmations=dict(type='int', default=3),
    password=dict(type='str', required=True, no_log=True),
    poll_interval=dict(type='float', default=0.1),
    retries=dict(type='int', default=2),
    state=dict(type='str', default=POWER_OFF, choices=[POWER_OFF, POWER_ON]),
    timeout=dict(type='float', default=30.0),
    username=dict(type='str', required=True),
)

# Pause before re-sending a request the BMC did not answer.
RETRY_DELAY = 0.5


def no_facts():
    """The FENCE_RESULT_KEYS of a run that never reached the BMC."""
    return dict(attempts=0, elapsed=0.0, power=None, power_before=None, verified=False)


def bmc_argument_spec(**module_options):
    """The shared BMC options plus the module's own (address, port, system_id, ...)."""
    spec = copy.deepcopy(BMC_ARGUMENT_SPEC)
    spec.update(module_options)
    return spec


class FenceError(Exception):
    """A fence operation failed.

    msg names the BMC and says what failed; cause is the BMC's own words or the transport error alone, for
    messages that wrap this one; facts holds what was known when it failed (the FENCE_RESULT_KEYS).
    """

    def __init__(self, msg, facts=None, cause=None):
        super(FenceError, self).__init__(msg)
        self.msg = msg
        self.facts = facts or {}
        self.cause = cause or msg


class BmcError(FenceError):
    """The BMC refused a request (any reason not covered by a subclass)."""


class BmcUnreachable(BmcError):
    """The BMC did not answer (timeout, connection refused, name not resolvable): worth retrying."""


class BmcAuthError(BmcError):
    """The BMC rejected the credentials or their privilege: retrying cannot help."""


class BmcAlreadyInState(BmcError):
    """The BMC refused a power command with a reply that can mean the system is already in that state."""


class FenceTimeout(FenceError):
    """The power state was not confirmed within the timeout."""


class PowerController:
    """Bring a BMC's system to a power state and verify it with consecutive reads.

    verified means: `confirmations` reads in a row returned the requested state, polled every
    `poll_interval` seconds, all within `timeout` seconds from the start. It is the BMC's word only;
    a BMC that lies about the power state can only be caught by independent evidence (fence_verify).
    """

    def __init__(self, client, timeout=30.0, retries=2, poll_interval=0.1, confirmations=3,
                 clock=time.monotonic, sleep=time.sleep):
        for name, value, minimum in (('timeout', timeout, 0.001), ('poll_interval', poll_interval, 0.001),
                                     ('confirmations', confirmations, 1), ('retries', retries, 0)):
            if value < minimum:
                raise FenceError('%s must be at least %s, got %s' % (name, minimum, value), facts=no_facts())
        self.client = client
        self.timeout = timeout
        self.retries = retries
        self.poll_interval = poll_interval
        self.confirmations = confirmations
        self._clock = clock
        self._sleep = sleep
        self._start = None
        self._power_before = None
        self._power = None
        self._attempts = 0

    def ensure(self, state, check_mode=False):
        """Bring the system to `state` ("on" or "off"); return changed plus the FENCE_RESULT_KEYS.

        In check mode the power state is read, never changed: changed tells whether it would change,
        power is the state read, and verified is true only when the system already is in `state`.
        Raises FenceError (with .facts) when the state cannot be reached and confirmed.
        """
        if state not in (POWER_OFF, POWER_ON):
            raise FenceError('state must be %r or %r, got %r' % (POWER_OFF, POWER_ON, state), facts=no_facts())
        self._start = self._clock()
        self._attempts = 0
        try:
            self._power_before = self._power = self._read()
            changed = self._power_before != state
            if changed and check_mode:
                return self._result(changed, verified=False)
            rejection = None
            if changed:
                rejection = self._send(state)
            self._confirm(state, rejection)
            return self._result(changed, verified=True)
        except FenceError as exc:
            exc.facts = self._facts(verified=False)
            raise

    def _facts(self, verified):
        return dict(
            attempts=self._attempts,
            elapsed=round(self._clock() - self._start, 3),
            power=self._power,
            power_before=self._power_before,
            verified=verified,
        )

    def _result(self, changed, verified):
        result = self._facts(verified)
        result['changed'] = changed
        return result

    def _remaining(self):
        return self._start + self.timeout - self._clock()

    def _read(self):
        return self._call('read the power state', self.client.get_power)

    def _send(self, state):
        """Send the power command; return the BMC's "already in that state" refusal, if it gave one."""
        def command():
            self._attempts += 1
            return self.client.set_power(state)
        try:
            self._call('power %s' % state, command)
        except BmcAlreadyInState as exc:
            return exc
        return None

    def _call(self, what, request):
        tries = 0
        while True:
            tries += 1
            try:
                return request()
            except BmcUnreachable as exc:
                if tries > self.retries or self._remaining() <= RETRY_DELAY:
                    raise BmcUnreachable(
                        '%s did not answer (%s) after %d tries in %.1f s (%s). Check the address and port, '
                        'that the BMC is powered and reachable from this host, and that its remote '
                        'management interface is enabled'
                        % (self.client.name, what, tries, self._clock() - self._start, exc.cause))
                self._sleep(RETRY_DELAY)

    def _confirm(self, state, rejection):
        """Poll until `confirmations` consecutive reads say `state`, or fail at the deadline."""
        consecutive = 0
        if self._power == state:
            consecutive = 1
        while consecutive < self.confirmations:
            remaining = self._remaining()
            if remaining <= 0:
                raise FenceTimeout(self._timeout_message(state, consecutive, rejection))
            self._sleep(min(self.poll_interval, remaining))
            self._power = self._read()
            consecutive = consecutive + 1 if self._power == state else 0

    def _timeout_message(self, state, consecutive, rejection):
        if rejection is not None:
            sent = 'refused power %s (%s)' % (state, rejection.cause)
        elif self._power_before == state:
            sent = 'first reported %r' % state
        else:
            sent = 'accepted power %s' % state
        msg = ('%s %s but reported %r %.1f s later: %d of %d consecutive %r reads within the %s s timeout'
               % (self.client.name, sent, self._power, self._clock() - self._start,
                  consecutive, self.confirmations, state, self.timeout))
        if state == POWER_OFF:
            msg += ('. The host is NOT fenced: do not evacuate it; try the next fence level or check the '
                    'BMC (a slow BMC needs a longer timeout)')
        return msg


def run_fence_module(module, client):
    """The module edge shared by the fence modules: run the controller, turn FenceError into fail_json."""
    params = module.params
    try:
        try:
            controller = PowerController(client, timeout=params['timeout'], retries=params['retries'],
                                         poll_interval=params['poll_interval'],
                                         confirmations=params['confirmations'])
            result = controller.ensure(params['state'], check_mode=module.check_mode)
        finally:
            client.close()
    except FenceError as exc:
        module.fail_json(msg=exc.msg, **exc.facts)
    if module._diff:
        result['diff'] = dict(before=dict(power=result['power_before']), after=dict(power=params['state']))
    module.exit_json(**result)
