"""Make this checkout importable as ansible_collections.openstack_ha.recovery for plain pytest runs.

Modules import their module_utils by that name. ansible-test already runs from such a layout; plain
pytest gets a symlink ansible_collections/openstack_ha/recovery -> this checkout in a temporary directory
of its own (outside the repository, so no tool ever walks into a loop).
"""

import hashlib
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _collections_root():
    parts = REPO.split(os.sep)
    if parts[-3:-1] == ['ansible_collections', 'openstack_ha'] and parts[-1] == 'recovery':
        return os.sep.join(parts[:-3])
    digest = hashlib.sha256(REPO.encode()).hexdigest()[:12]
    root = os.path.join(tempfile.gettempdir(), 'openstack_ha.recovery-%d-%s' % (os.getuid(), digest))
    namespace = os.path.join(root, 'ansible_collections', 'openstack_ha')
    os.makedirs(namespace, exist_ok=True)
    try:
        os.symlink(REPO, os.path.join(namespace, 'recovery'))
    except FileExistsError:  # made by an earlier run or by another xdist worker
        pass
    return root


if 'ansible_collections.openstack_ha.recovery' not in sys.modules:
    sys.path.insert(0, _collections_root())


import pytest  # noqa: E402  (after the path set-up above, which must run first)

from ansible_collections.openstack_ha.recovery.plugins.module_utils._bmc import (  # noqa: E402
    BmcAlreadyInState,
    BmcAuthError,
    BmcUnreachable,
)


class FakeClock:
    """time.monotonic and time.sleep of a test: sleeping advances the clock at once."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class FakeBmc:
    """A BMC in the power controller's client interface, on a FakeClock, with the misbehaviours of real ones.

    power            the system's real power state
    off_delay        seconds between an accepted power off and the system being off (slow BMC)
    ignores_commands accepts power commands and never acts on them
    silent           how many requests in a row get no answer (each costs silence_cost seconds, as in pyghmi)
    rejects_credentials every request fails with BmcAuthError
    already_in_state_reply power commands are refused the way iLO/iDRAC refuse "already off" (409 / 0xD5)
    lies             after a power off command, reads say off while the system keeps running
    reads            a script of read results, used before the real state
    """

    name = 'FAKE BMC 192.0.2.10:623'
    password = 'fake-Secret-pw'

    def __init__(self, clock, power='on', off_delay=0.0, on_delay=0.0, ignores_commands=False, silent=0,
                 silence_cost=5.0, rejects_credentials=False, already_in_state_reply=False, lies=False, reads=None):
        self.clock = clock
        self.power = power
        self.delays = {'off': off_delay, 'on': on_delay}
        self.ignores_commands = ignores_commands
        self.silent = silent
        self.silence_cost = silence_cost
        self.rejects_credentials = rejects_credentials
        self.already_in_state_reply = already_in_state_reply
        self.lies = lies
        self.script = list(reads or [])
        self.pending = None
        self.commands = []
        self.reads = 0
        self.requests = 0
        self.closed = False

    def _answer(self):
        self.requests += 1
        if self.rejects_credentials:
            raise BmcAuthError('%s rejected the login of user %r (Incorrect password provided)' % (self.name, 'admin'))
        if self.silent:
            self.silent -= 1
            self.clock.now += self.silence_cost
            raise BmcUnreachable('%s: no answer to the IPMI session request' % self.name,
                                 cause='no answer to the IPMI session request')

    def _settle(self):
        if self.pending and self.clock.now >= self.pending[1]:
            self.power, self.pending = self.pending[0], None

    def get_power(self):
        self._answer()
        self.reads += 1
        self._settle()
        if self.script:
            return self.script.pop(0)
        if self.lies and 'off' in self.commands:
            return 'off'
        return self.power

    def set_power(self, state):
        self._answer()
        self.commands.append(state)
        if self.already_in_state_reply:
            cause = 'Command not supported in present state (0xD5)'
            raise BmcAlreadyInState('%s refused power %s: %s' % (self.name, state, cause), cause=cause)
        if not self.ignores_commands and not self.lies:
            self.pending = (state, self.clock.now + self.delays[state])
            self._settle()

    def close(self):
        self.closed = True


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def make_bmc(clock):
    def make(**behaviour):
        return FakeBmc(clock, **behaviour)
    return make


class ModuleExit(Exception):
    """Raised instead of exit_json / fail_json: carries the module's result."""

    def __init__(self, result, failed):
        super(ModuleExit, self).__init__(result)
        self.result = result
        self.failed = failed


@pytest.fixture
def run_module(monkeypatch):
    """run(main, args, check_mode=False, diff=False) -> ModuleExit: a module's main() through AnsibleModule.

    exit_json and fail_json are replaced, so the result is seen as the module built it, before Ansible
    masks no_log values: a password that leaks into a message shows here.
    """
    from ansible.module_utils.basic import AnsibleModule
    from ansible.module_utils.testing import patch_module_args

    def exit_json(self, **result):
        raise ModuleExit(result, failed=False)

    def fail_json(self, msg, **result):
        result['msg'] = msg
        raise ModuleExit(result, failed=True)

    monkeypatch.setattr(AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(AnsibleModule, 'fail_json', fail_json)

    def run(main, args, check_mode=False, diff=False):
        args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
        with patch_module_args(args):
            with pytest.raises(ModuleExit) as caught:
                main()
        return caught.value
    return run


@pytest.fixture(autouse=True)
def retry_pauses(monkeypatch):
    """Nova requests sent again after a transient failure (_nova.RETRY_DELAYS) do not pause in unit tests: the
    pauses they would have made are recorded in this list."""
    from ansible_collections.openstack_ha.recovery.plugins.module_utils import _nova
    pauses = []
    monkeypatch.setattr(_nova, '_sleep', pauses.append)
    return pauses
