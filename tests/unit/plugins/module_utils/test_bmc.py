"""The verified power controller, every branch, against a fake BMC on a fake clock."""

import pytest

from ansible_collections.openstack_ha.recovery.plugins.module_utils._bmc import (
    BMC_ARGUMENT_SPEC,
    FENCE_RESULT_KEYS,
    RETRY_DELAY,
    BmcAuthError,
    BmcError,
    BmcUnreachable,
    FenceError,
    FenceTimeout,
    PowerController,
    bmc_argument_spec,
)


def controller(bmc, clock, **options):
    return PowerController(bmc, clock=clock, sleep=clock.sleep, **options)


def test_power_off_is_sent_once_and_verified_by_consecutive_reads(make_bmc, clock):
    bmc = make_bmc(power='on')
    result = controller(bmc, clock, confirmations=3).ensure('off')
    assert result == dict(changed=True, power='off', power_before='on', verified=True, attempts=1,
                          elapsed=result['elapsed'])
    assert bmc.commands == ['off']
    assert bmc.reads == 1 + 3  # the state before, then 3 consecutive off reads
    assert bmc.power == 'off'


def test_result_keys_are_exactly_the_documented_ones(make_bmc, clock):
    result = controller(make_bmc(), clock).ensure('off')
    assert set(result) == set(FENCE_RESULT_KEYS) | {'changed'}


def test_polls_at_poll_interval_not_once_a_second(make_bmc, clock):
    controller(make_bmc(off_delay=0.5), clock, poll_interval=0.05).ensure('off')
    assert clock.sleeps and set(clock.sleeps) == {0.05}


def test_already_off_is_not_a_change_and_sends_nothing(make_bmc, clock):
    bmc = make_bmc(power='off')
    result = controller(bmc, clock).ensure('off')
    assert result['changed'] is False
    assert result['verified'] is True
    assert result['attempts'] == 0
    assert (result['power'], result['power_before']) == ('off', 'off')
    assert bmc.commands == []


def test_second_identical_run_reports_no_change(make_bmc, clock):
    bmc = make_bmc(power='on')
    first = controller(bmc, clock).ensure('off')
    second = controller(bmc, clock).ensure('off')
    assert (first['changed'], second['changed']) == (True, False)
    assert bmc.commands == ['off']


def test_power_on_unfences_and_verifies(make_bmc, clock):
    bmc = make_bmc(power='off', on_delay=0.3)
    result = controller(bmc, clock).ensure('on')
    assert (result['changed'], result['power'], result['verified']) == (True, 'on', True)
    assert bmc.commands == ['on']


class TestCheckMode:
    def test_reports_the_change_from_the_real_state_and_sends_nothing(self, make_bmc, clock):
        bmc = make_bmc(power='on')
        result = controller(bmc, clock).ensure('off', check_mode=True)
        assert result['changed'] is True
        assert result['power'] == 'on'  # what the BMC said, never the desired state echoed back
        assert result['power_before'] == 'on'
        assert result['verified'] is False
        assert result['attempts'] == 0
        assert bmc.commands == []
        assert bmc.power == 'on'

    def test_already_off_is_no_change_and_confirmed_by_reads(self, make_bmc, clock):
        bmc = make_bmc(power='off')
        result = controller(bmc, clock, confirmations=2).ensure('off', check_mode=True)
        assert (result['changed'], result['verified'], result['power']) == (False, True, 'off')
        assert bmc.commands == []
        assert bmc.reads == 2

    def test_check_then_apply_then_check_then_apply(self, make_bmc, clock):
        bmc = make_bmc(power='on')
        runs = [controller(bmc, clock).ensure('off', check_mode=check) for check in (True, False, True, False)]
        assert [run['changed'] for run in runs] == [True, True, False, False]
        assert bmc.commands == ['off']


class TestCredentials:
    def test_rejected_credentials_fail_at_once_without_retries(self, make_bmc, clock):
        bmc = make_bmc(rejects_credentials=True)
        with pytest.raises(BmcAuthError) as caught:
            controller(bmc, clock, retries=5).ensure('off')
        assert bmc.requests == 1
        assert clock.sleeps == []
        assert '192.0.2.10:623' in caught.value.msg
        assert caught.value.facts == dict(attempts=0, elapsed=0.0, power=None, power_before=None, verified=False)

    def test_message_never_contains_the_password(self, make_bmc, clock):
        bmc = make_bmc(rejects_credentials=True)
        with pytest.raises(FenceError) as caught:
            controller(bmc, clock).ensure('off')
        assert bmc.password not in str(caught.value)


class TestNoAnswer:
    def test_timeout_then_answer_is_retried_and_succeeds(self, make_bmc, clock):
        bmc = make_bmc(silent=2)
        result = controller(bmc, clock, retries=2, timeout=60).ensure('off')
        assert (result['changed'], result['verified']) == (True, True)
        assert clock.sleeps[:2] == [RETRY_DELAY, RETRY_DELAY]

    def test_retries_of_the_power_command_count_as_attempts(self, make_bmc, clock):
        bmc = make_bmc(power='on')
        ctl = controller(bmc, clock, retries=3, timeout=60)
        original = bmc.set_power
        calls = []

        def set_power_silent_once(state):
            calls.append(state)
            if len(calls) == 1:
                raise BmcUnreachable('%s: no answer to power off' % bmc.name)
            return original(state)
        bmc.set_power = set_power_silent_once
        result = ctl.ensure('off')
        assert result['attempts'] == 2
        assert result['verified'] is True

    def test_gives_up_after_retries_and_says_how_often_it_tried(self, make_bmc, clock):
        bmc = make_bmc(silent=10)
        with pytest.raises(BmcUnreachable) as caught:
            controller(bmc, clock, retries=2, timeout=60).ensure('off')
        assert bmc.requests == 3
        assert caught.value.msg == (
            'FAKE BMC 192.0.2.10:623 did not answer (read the power state) after 3 tries in 16.0 s (no answer to '
            'the IPMI session request). Check the address and port, that the BMC is powered and reachable from '
            'this host, and that its remote management interface is enabled')
        assert caught.value.facts['power'] is None

    def test_stops_retrying_at_the_deadline(self, make_bmc, clock):
        bmc = make_bmc(silent=10, silence_cost=5.0)
        with pytest.raises(BmcUnreachable):
            controller(bmc, clock, retries=10, timeout=8).ensure('off')
        assert bmc.requests == 2  # 5 s + 0.5 s + 5 s: no time left for a third try
        assert clock.now - 1000.0 < 8 + 5.0

    def test_silence_during_verification_is_retried(self, make_bmc, clock):
        bmc = make_bmc(power='on')
        original = bmc.get_power

        def get_power_with_a_gap():
            if bmc.reads == 2 and not getattr(bmc, 'gapped', False):
                bmc.gapped = True
                raise BmcUnreachable('%s: no answer to power status' % bmc.name)
            return original()
        bmc.get_power = get_power_with_a_gap
        result = controller(bmc, clock, retries=1).ensure('off')
        assert result['verified'] is True


class TestSlowBmc:
    def test_slow_power_off_is_waited_for_within_the_timeout(self, make_bmc, clock):
        bmc = make_bmc(off_delay=4.0)
        result = controller(bmc, clock, timeout=10, poll_interval=0.2, confirmations=3).ensure('off')
        assert result['verified'] is True
        assert result['power'] == 'off'
        assert 4.0 <= result['elapsed'] < 4.0 + 3 * 0.2 + 0.01

    def test_power_off_slower_than_the_timeout_fails_as_not_fenced(self, make_bmc, clock):
        bmc = make_bmc(off_delay=20.0)
        with pytest.raises(FenceTimeout) as caught:
            controller(bmc, clock, timeout=5, poll_interval=0.2).ensure('off')
        msg = caught.value.msg
        assert msg.startswith('FAKE BMC 192.0.2.10:623 accepted power off but reported ')
        assert "0 of 3 consecutive 'off' reads within the 5 s timeout" in msg
        assert 'NOT fenced' in msg
        assert caught.value.facts['power'] == 'on'
        assert caught.value.facts['verified'] is False
        assert caught.value.facts['attempts'] == 1
        assert caught.value.facts['elapsed'] == pytest.approx(5.0)

    def test_never_turns_off_fails_at_the_deadline(self, make_bmc, clock):
        bmc = make_bmc(ignores_commands=True)
        with pytest.raises(FenceTimeout) as caught:
            controller(bmc, clock, timeout=3, poll_interval=0.1).ensure('off')
        assert clock.now == pytest.approx(1003.0)
        assert bmc.commands == ['off']  # sent once, never repeated, never a power cycle
        assert caught.value.facts['power_before'] == 'on'

    def test_off_reads_must_be_consecutive(self, make_bmc, clock):
        bmc = make_bmc(reads=['on', 'off', 'on', 'off', 'off', 'off'], ignores_commands=True)
        result = controller(bmc, clock, confirmations=3).ensure('off')
        assert result['verified'] is True
        assert bmc.reads == 6

    def test_flapping_state_never_verifies(self, make_bmc, clock):
        bmc = make_bmc(reads=['on'] + ['off', 'on'] * 100, ignores_commands=True)
        with pytest.raises(FenceTimeout) as caught:
            controller(bmc, clock, timeout=2, confirmations=2).ensure('off')
        assert 'consecutive' in caught.value.msg

    def test_already_off_but_then_on_fails_instead_of_verifying(self, make_bmc, clock):
        bmc = make_bmc(reads=['off'] + ['on'] * 100)
        with pytest.raises(FenceTimeout) as caught:
            controller(bmc, clock, timeout=1).ensure('off')
        assert "first reported 'off' but reported 'on'" in caught.value.msg
        assert bmc.commands == []


class TestAlreadyInStateReply:
    def test_refusal_is_success_once_reads_confirm_off(self, make_bmc, clock):
        # The BMC still read "on" when asked, then refused power off as "already off" (iLO/iDRAC 409, IPMI 0xD5).
        bmc = make_bmc(power='off', reads=['on'], already_in_state_reply=True)
        result = controller(bmc, clock).ensure('off')
        assert (result['verified'], result['power'], result['power_before']) == (True, 'off', 'on')
        assert result['attempts'] == 1

    def test_refusal_without_confirmation_fails_and_quotes_the_bmc(self, make_bmc, clock):
        bmc = make_bmc(power='on', already_in_state_reply=True)
        with pytest.raises(FenceTimeout) as caught:
            controller(bmc, clock, timeout=2).ensure('off')
        assert caught.value.msg.startswith(
            "FAKE BMC 192.0.2.10:623 refused power off (Command not supported in present state (0xD5)) but "
            "reported 'on' 2.0 s later: 0 of 3 consecutive 'off' reads within the 2 s timeout. "
            "The host is NOT fenced")

    def test_other_refusals_fail_at_once(self, make_bmc, clock):
        bmc = make_bmc(power='on')

        def refuse(state):
            raise BmcError('%s refused power %s: Insufficient resources (0xC9)' % (bmc.name, state))
        bmc.set_power = refuse
        with pytest.raises(BmcError) as caught:
            controller(bmc, clock).ensure('off')
        assert '0xC9' in caught.value.msg
        assert caught.value.facts['power_before'] == 'on'
        assert clock.sleeps == []


def test_lying_bmc_is_verified_by_reads_alone(make_bmc, clock):
    """A BMC that reads off while the host keeps running passes: verified is the BMC's word only.

    Only independent evidence (fence_verify: heartbeats, probes) can catch it; the documentation says so.
    """
    bmc = make_bmc(power='on', lies=True)
    result = controller(bmc, clock, confirmations=3).ensure('off')
    assert result['verified'] is True
    assert bmc.reads == 1 + 3
    assert bmc.power == 'on'  # the host still runs


@pytest.mark.parametrize('option, value', [('confirmations', 0), ('poll_interval', 0), ('timeout', 0),
                                           ('retries', -1)])
def test_nonsense_options_fail_before_contacting_the_bmc(make_bmc, clock, option, value):
    bmc = make_bmc()
    with pytest.raises(FenceError) as caught:
        controller(bmc, clock, **{option: value})
    assert caught.value.msg.startswith('%s must be at least' % option)
    assert set(caught.value.facts) == set(FENCE_RESULT_KEYS)
    assert bmc.requests == 0


def test_unknown_state_is_refused(make_bmc, clock):
    with pytest.raises(FenceError, match="state must be 'off' or 'on', got 'cycle'"):
        controller(make_bmc(), clock).ensure('cycle')


def test_module_options_extend_the_shared_spec_without_changing_it():
    spec = bmc_argument_spec(address=dict(type='str', required=True))
    spec['password']['no_log'] = False
    assert set(spec) == set(BMC_ARGUMENT_SPEC) | {'address'}
    assert BMC_ARGUMENT_SPEC['password']['no_log'] is True
