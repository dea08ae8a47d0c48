"""The service_recover runbook against the real lab, through `ansible-playbook openstack_ha.recovery.service_recover`
with the lab's own inventory: the restart goes over real SSH to the host's real sshd (lab/ohlab_host.py), whose
`systemctl` restarts that host's nova-compute.

Three scenarios (the CI budget): a stopped service is restarted (check mode first), a service that cannot start is
escalated to host_failover after its bounded attempts, and a crashed host (no SSH) is escalated at once. Every
outcome is read back from the lab: Nova's service state, the service's process, the BMC's power and event log,
where the servers run.
"""

import json

import pytest

from lab_helpers import compute_service, evacuation_migrations, ipmitool, labctl, wait_for
from playbook_harness import PlaybookDir

pytestmark = pytest.mark.timeout(900, func_only=True)

PLAYBOOK = 'openstack_ha.recovery.service_recover'


class ServiceRecover(PlaybookDir):
    def __init__(self, lab, directory):
        super().__init__(lab, directory)
        with open(lab['inventory']) as inventory:
            self.write_yaml('inventory.yml', json.load(inventory))
        self.reports = directory / 'reports'
        self.locks = directory / 'locks'

    def run(self, host, check=False, **extra):
        extra_vars = dict(compute_host=host, service_recover_report_dir=str(self.reports),
                          service_recover_lock_dir=str(self.locks), host_failover_report_dir=str(self.reports),
                          host_failover_instance_timeout=600, **extra)
        return self.play(PLAYBOOK, check=check, extra_vars=extra_vars, timeout=900)


@pytest.fixture
def recover(fresh_lab, tmp_path):
    return ServiceRecover(fresh_lab, tmp_path)


def wait_nova(conn, host, state):
    wait_for('Nova to report %s %s' % (host, state), lambda: compute_service(conn, host).state == state, 60,
             interval=0.5)


def power_offs(lab, host):
    with open('%s/bmc-events.log' % lab['hosts'][host]['state_dir']) as log:
        events = [json.loads(line) for line in log if line.strip()]
    return [event for event in events if event.get('action') == 'off' and event.get('changed')]


def servers_on(conn, prefix):
    return {server.name: server.compute_host for server in conn.compute.servers(details=True, all_projects=True)
            if server.name.startswith(prefix)}


def report_file(recover, report):
    stem = recover.reports / ('service_recover-%s-%s' % (report['host'], report['run_id']))
    return json.loads(stem.with_suffix('.json').read_text()), stem.with_suffix('.md').read_text()


def test_stopped_service_is_restarted_over_ssh(recover, conn):
    lab, host = recover.lab, 'compute1'
    servers = labctl('boot', '--count', '2', '--host', host, '--prefix', 'sr-stop')['servers']
    # nothing to do while the service is up
    idle = recover.run(host)
    assert idle.rc == 0, idle.output[-4000:]
    assert idle.fact('service_recover_report')['outcome'] == 'not_needed'

    assert labctl('service', host, '--stop')['service'] == 'inactive'
    wait_nova(conn, host, 'down')
    assert labctl('status')['hosts'][host]['compute'] == 'alive'  # the host runs: only its service is gone
    offs = len(power_offs(lab, host))
    written_before = sorted(recover.reports.iterdir())  # the not_needed run's report

    check = recover.run(host, check=True)
    assert check.rc == 0, check.output[-4000:]
    plan = check.fact('service_recover_report')
    assert (plan['outcome'], plan['action'], plan['check_mode']) == ('planned', 'restart', True), plan['message']
    assert plan['evidence']['ssh']['reachable'] and plan['evidence']['bmc']['power'] == 'on'
    assert plan['evidence']['nova']['state'] == 'down'
    assert 'Would restart nova-compute on compute1 over SSH' in plan['message']
    assert labctl('service', host)['service'] == 'inactive'  # check mode restarted nothing
    assert compute_service(conn, host).state == 'down'
    assert sorted(recover.reports.iterdir()) == written_before  # check mode writes no report file

    run = recover.run(host)
    assert run.rc == 0, run.output[-4000:]
    report = run.fact('service_recover_report')
    assert report['outcome'] == 'recovered_service', report['message']
    assert len(report['attempts']) == 1 and report['attempts'][0]['up']
    assert report['attempts'][0]['commands'][0]['cmd'] == 'systemctl restart nova-compute'
    assert report['attempts'][0]['commands'][0]['rc'] == 0
    assert report['escalation'] is None
    # outcomes in the lab: the service runs again, Nova says up, no fence, nothing moved
    assert labctl('service', host)['service'] == 'active'
    assert compute_service(conn, host).state == 'up'
    assert len(power_offs(lab, host)) == offs
    assert ipmitool(lab['hosts'][host], 'power', 'status').strip() == 'Chassis Power is on'
    assert evacuation_migrations(conn, host) == []
    assert set(servers_on(conn, 'sr-stop').values()) == {host} and len(servers) == 2
    written, summary = report_file(recover, report)
    assert written['outcome'] == 'recovered_service'
    assert '# Service recovery of compute1: RECOVERED_SERVICE' in summary and 'restart 1: up' in summary
    assert lab['hosts'][host]['bmc_password'] not in run.output + json.dumps(written)


def test_broken_service_escalates_to_host_failover(recover, conn):
    lab, host = recover.lab, 'compute2'
    labctl('boot', '--count', '3', '--host', host, '--prefix', 'sr-broken')
    labctl('service', host, '--broken')
    labctl('service', host, '--stop')
    wait_nova(conn, host, 'down')

    run = recover.run(host, service_recover_attempts=2)
    assert run.rc == 0, run.output[-4000:]
    report = run.fact('service_recover_report')
    assert report['outcome'] == 'escalated', report['message']
    # both restart attempts went over SSH and failed at once (systemctl reported the failed start)
    assert [a['up'] for a in report['attempts']] == [False, False]
    assert all(a['commands'][0]['rc'] == 1 and 'failed to start' in a['commands'][0]['output']
               for a in report['attempts'])
    assert [s['step'] for s in report['steps']] == ['preflight', 'evidence', 'restart', 'restart', 'escalate',
                                                    'host_failover']
    escalation = report['escalation']
    assert escalation['outcome'] == 'recovered' and escalation['fence']['fenced']
    assert escalation['evacuation']['moved'] == 3
    # outcomes in the lab: fenced (BMC off, the host's OS and sshd gone), servers elsewhere
    assert ipmitool(lab['hosts'][host], 'power', 'status').strip() == 'Chassis Power is off'
    assert labctl('status')['hosts'][host]['service'] == 'host-down'
    assert host not in set(servers_on(conn, 'sr-broken').values())
    assert len(evacuation_migrations(conn, host)) == 3
    written, summary = report_file(recover, report)
    assert written['escalation']['outcome'] == 'recovered'
    assert 'Escalation: host_failover RECOVERED' in summary


def test_crashed_host_escalates_at_once(recover, conn):
    lab, host = recover.lab, 'compute3'
    labctl('boot', '--count', '1', '--host', host, '--prefix', 'sr-crash')
    labctl('crash', host)
    wait_nova(conn, host, 'down')

    run = recover.run(host)
    assert run.rc == 0, run.output[-4000:]
    report = run.fact('service_recover_report')
    assert report['outcome'] == 'escalated', report['message']
    assert report['attempts'] == [] and not report['evidence']['ssh']['reachable']
    assert report['evidence']['bmc']['power'] == 'on'  # a crash keeps the power on
    assert report['escalation']['outcome'] == 'recovered'
    # host_failover ran its own corroboration with the inventory's probes: nova and the silent sshd
    assert sorted(s['signal'] for s in report['escalation']['signals'] if s['down']) == ['nova', 'probes']
    assert ipmitool(lab['hosts'][host], 'power', 'status').strip() == 'Chassis Power is off'
    assert host not in set(servers_on(conn, 'sr-crash').values())
