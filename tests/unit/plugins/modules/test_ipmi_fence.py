"""ipmi_fence's edge: arguments in, results and failures out, through AnsibleModule."""

from pyghmi.exceptions import IpmiException

from ansible_collections.openstack_ha.recovery.plugins.module_utils import _ipmi
from ansible_collections.openstack_ha.recovery.plugins.modules import ipmi_fence

PASSWORD = 'ipmi-Module-pw'
ARGS = dict(address='192.0.2.40', username='admin', password=PASSWORD, poll_interval=0.01)


def use_fake_bmc(monkeypatch, bmc):
    made = []

    def fake_client(address, username, password, port):
        made.append(dict(address=address, username=username, password=password, port=port))
        return bmc
    monkeypatch.setattr(ipmi_fence, 'IpmiClient', fake_client)
    return made


def test_fences_and_returns_exactly_the_documented_keys(monkeypatch, run_module, make_bmc):
    bmc = make_bmc(power='on')
    made = use_fake_bmc(monkeypatch, bmc)
    outcome = run_module(ipmi_fence.main, ARGS)
    assert not outcome.failed
    assert set(outcome.result) == set(ipmi_fence.RETURNED_KEYS) | {'changed'}
    assert outcome.result['changed'] is True
    assert outcome.result['power'] == 'off'
    assert outcome.result['verified'] is True
    assert made == [dict(address='192.0.2.40', username='admin', password=PASSWORD, port=623)]
    assert bmc.closed is True


def test_check_mode_with_diff_reports_real_state_and_changes_nothing(monkeypatch, run_module, make_bmc):
    bmc = make_bmc(power='on')
    use_fake_bmc(monkeypatch, bmc)
    outcome = run_module(ipmi_fence.main, ARGS, check_mode=True, diff=True)
    assert outcome.result['changed'] is True
    assert outcome.result['power'] == 'on'
    assert outcome.result['diff'] == dict(before=dict(power='on'), after=dict(power='off'))
    assert bmc.commands == []


def test_state_on_and_port_reach_the_client(monkeypatch, run_module, make_bmc):
    bmc = make_bmc(power='off')
    made = use_fake_bmc(monkeypatch, bmc)
    outcome = run_module(ipmi_fence.main, dict(ARGS, state='on', port=6231))
    assert (outcome.result['changed'], outcome.result['power']) == (True, 'on')
    assert made[0]['port'] == 6231


def test_timeout_failure_returns_the_facts_gathered(monkeypatch, run_module, make_bmc):
    use_fake_bmc(monkeypatch, make_bmc(ignores_commands=True))
    outcome = run_module(ipmi_fence.main, dict(ARGS, timeout=0.2))
    assert outcome.failed
    assert set(outcome.result) == set(ipmi_fence.RETURNED_KEYS) | {'msg'}
    assert 'NOT fenced' in outcome.result['msg']
    assert outcome.result['verified'] is False


def test_rejected_password_fails_naming_the_bmc_never_the_password(monkeypatch, run_module):
    def refusing_command(**kwargs):
        raise IpmiException('Incorrect password provided')
    monkeypatch.setattr(_ipmi, 'Command', refusing_command)
    outcome = run_module(ipmi_fence.main, ARGS)
    assert outcome.failed
    assert outcome.result['msg'].startswith("IPMI BMC 192.0.2.40:623 rejected the login of user 'admin'")
    assert PASSWORD not in repr(outcome.result)
    assert outcome.result['power'] is None


def test_silent_bmc_fails_naming_address_and_port(monkeypatch, run_module):
    logins = []

    def silent_command(**kwargs):
        logins.append(kwargs)
        raise IpmiException(None)
    monkeypatch.setattr(_ipmi, 'Command', silent_command)
    outcome = run_module(ipmi_fence.main, dict(ARGS, port=6299, retries=1))
    assert outcome.failed
    assert outcome.result['msg'].startswith('IPMI BMC 192.0.2.40:6299 did not answer (read the power state) '
                                            'after 2 tries')
    assert len(logins) == 2
    assert PASSWORD not in repr(outcome.result)


def test_missing_pyghmi_is_reported_as_such(monkeypatch, run_module):
    monkeypatch.setattr(ipmi_fence, 'HAS_PYGHMI', False)
    outcome = run_module(ipmi_fence.main, ARGS)
    assert outcome.failed
    assert 'pyghmi' in outcome.result['msg']


def test_invalid_confirmations_fail_before_any_contact(monkeypatch, run_module, make_bmc):
    bmc = make_bmc()
    use_fake_bmc(monkeypatch, bmc)
    outcome = run_module(ipmi_fence.main, dict(ARGS, confirmations=0))
    assert outcome.failed
    assert outcome.result['msg'] == 'confirmations must be at least 1, got 0'
    assert bmc.requests == 0
    assert bmc.closed is True
