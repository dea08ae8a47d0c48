"""BMC faults during a failover (lab/bmcsim.py fail modes, set with `labctl bmc HOST --fail MODE`):

- a BMC that does not answer the first tries, then does: the fence retries and the run recovers;
- a BMC that rejects the credentials: no level fences, nothing is evacuated, the report fails and says why;
- a BMC that answers power off with an error when the host is already off (IPMI 0xD5, Redfish 409): the fence
  counts as done because, and only because, the power state reads off, and the run recovers;
- a BMC that says "off" while the host still runs: fence_verify must catch it (the Nova heartbeat of a running
  host, a probe answered by a frozen one), so nothing is evacuated and the report fails.
"""

import threading

import pytest

from fault_lab import report_of
from invariants import bmc_events
from lab_helpers import compute_service, ipmitool, labctl

pytestmark = pytest.mark.timeout(1200, func_only=True)


def test_bmc_unreachable_for_the_first_tries(scenario):
    scenario.prepare('compute1', servers=3)
    labctl('bmc', scenario.host, '--fail', 'unreachable')
    # the BMC answers again 15 s into the run: the first IPMI tries time out
    timer = threading.Timer(15.0, labctl, args=('bmc', scenario.host, '--ok'))
    timer.start()
    try:
        run = scenario.failover()
    finally:
        timer.cancel()
        timer.join()
    report = report_of(run)
    scenario.check(report)
    assert run.rc == 0, run.output[-3000:]


def test_bmc_answers_already_off_with_an_error(scenario):
    """The host lost its power (crashed, then powered off) and its BMC, like some iLO / iDRAC, refuses a power
    off with an error when the system is already off. A fence agent that sends off blindly stops there; the
    fence must read the power state, find it off, confirm it with further reads, and go on."""
    scenario.prepare('compute2', servers=3)
    bmc = scenario.lab['hosts'][scenario.host]
    ipmitool(bmc, 'power', 'off')
    labctl('bmc', scenario.host, '--fail', 'already_off_error')
    # the BMC really refuses: a blind power off fails (ipmitool prints the completion code's meaning)
    ipmitool(bmc, 'power', 'off', check=False)
    events = bmc_events(scenario.lab, scenario.host)
    assert (events[-1]['action'], events[-1]['result'], events[-1]['power_before']) == ('off', 'error', 'off'), \
        events[-1]
    run = scenario.failover()
    report = report_of(run)
    scenario.check(report)
    assert run.rc == 0, run.output[-3000:]
    fence = run.fact('host_fence_result')
    assert [a['outcome'] for a in fence['attempts']][:1] == ['fenced'], fence
    # the first level's ipmi_fence read off, sent nothing (or was refused) and confirmed off with further reads
    ipmi = [r['result'] for r in run.results('Power the host off over IPMI') if r['status'] == 'ok']
    assert ipmi and ipmi[-1]['verified'] and (ipmi[-1]['power_before'], ipmi[-1]['power']) == ('off', 'off'), ipmi
    assert ipmi[-1]['changed'] is False, ipmi[-1]
    # at the BMC: no power off or cycle was accepted after the scenario's own (any the run sent was refused)
    off = [e for e in bmc_events(scenario.lab, scenario.host)[len(events):] if e.get('action') in ('off', 'cycle')]
    assert all(e['result'] == 'error' for e in off), off


def test_bmc_rejects_the_credentials(scenario):
    scenario.prepare('compute2', servers=3)
    labctl('bmc', scenario.host, '--fail', 'bad_credentials')
    run = scenario.failover()
    report = report_of(run)
    scenario.check(report, expect_fence=False)
    assert run.rc != 0
    assert 'not proven fenced' in report['message'] or 'fence' in report['message'].lower(), report['message']


def test_bmc_says_off_while_the_host_runs(scenario):
    """nova-compute alive and heartbeating, BMC lying. The corroboration gate would refuse already (the host
    answers on its sshd); it is switched off here so that the fence itself meets the lie."""
    scenario.prepare('compute3', servers=3, crash=False)
    labctl('bmc', scenario.host, '--fail', 'lying')
    run = scenario.failover(host_failover_gate_corroboration=False)
    report = report_of(run)
    scenario.check(report, expect_fence=False)
    assert run.rc != 0
    assert compute_service(scenario.conn, scenario.host).state == 'up'
    assert labctl('status')['hosts'][scenario.host]['compute'] == 'alive'


def test_bmc_says_off_while_the_frozen_host_keeps_its_guests(scenario):
    """The split-brain case: nova-compute frozen (no heartbeat, guests kept), BMC lying. Only a probe tells the
    frozen host (its sockets still accept connections) from a powered-off one, so the scenario gives fence_verify
    the host's sshd as a probe."""
    scenario.prepare('compute1', servers=3, crash=False)
    labctl('freeze', scenario.host)
    scenario.wait_down()
    labctl('bmc', scenario.host, '--fail', 'lying')
    host = scenario.lab['hosts'][scenario.host]
    run = scenario.failover(host_fence_probes=[dict(host=host['ssh_address'], port=host['ssh_port'])])
    report = report_of(run)
    scenario.check(report, expect_fence=False)
    assert run.rc != 0
    assert labctl('status')['hosts'][scenario.host]['compute'] == 'frozen'
