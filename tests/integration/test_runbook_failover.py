"""The host_failover runbook against the real lab, through `ansible-playbook openstack_ha.recovery.host_failover`,
with the lab's own inventory (fence levels and probes from its group vars), as an operator runs it.

Every outcome is read back from the lab itself: where Nova says each server runs, the service's state, the BMC's
power state and its event log, Nova's migration records. Scenarios share a lab state where they can (the CI budget):
a check run, the failover and its rerun are one test.
"""

import datetime
import http.server
import json
import threading

import pytest

from lab_helpers import compute_service, evacuation_migrations, ipmitool, labctl, wait_for
from playbook_harness import PlaybookDir

pytestmark = pytest.mark.timeout(900, func_only=True)

PLAYBOOK = 'openstack_ha.recovery.host_failover'


class Failover(PlaybookDir):
    """A directory with the lab's inventory, a report directory and a lock directory of its own."""

    def __init__(self, lab, directory):
        super().__init__(lab, directory)
        with open(lab['inventory']) as inventory:
            self.write_yaml('inventory.yml', json.load(inventory))
        self.reports = directory / 'reports'
        self.locks = directory / 'locks'

    def extra(self, host, **extra):
        return dict(dict(compute_host=host, host_failover_report_dir=str(self.reports),
                         host_failover_lock_dir=str(self.locks), host_failover_instance_timeout=600), **extra)

    def run(self, host, check=False, **extra):
        return self.play(PLAYBOOK, check=check, extra_vars=self.extra(host, **extra), timeout=900)


@pytest.fixture
def failover(fresh_lab, tmp_path):
    return Failover(fresh_lab, tmp_path)


class ChatWebhook:
    """A chat webhook on a free loopback port that keeps every POST (headers and JSON body)."""

    def __init__(self):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers['Content-Length']))
                received.append(dict(headers=dict(self.headers), body=json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%d/hooks/ops' % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def servers_by_host(conn, names_prefix):
    """{server name: (host, status)} of the lab's servers whose name starts with names_prefix."""
    return {server.name: (server.compute_host, server.status)
            for server in conn.compute.servers(details=True, all_projects=True)
            if server.name.startswith(names_prefix)}


def chassis_power(lab, host):
    return ipmitool(lab['hosts'][host], 'power', 'status').strip().rsplit(' ', 1)[-1]


def power_off_events(lab, host):
    with open('%s/bmc-events.log' % lab['hosts'][host]['state_dir']) as log:
        events = [json.loads(line) for line in log if line.strip()]
    return [event for event in events if event.get('action') == 'off' and event.get('changed')]


def wait_nova_down(conn, *hosts):
    wait_for('Nova to report %s down' % ', '.join(hosts),
             lambda: all(compute_service(conn, host).state == 'down' for host in hosts), 60, interval=0.5)


def boot(host, count, prefix):
    return labctl('boot', '--count', str(count), '--host', host, '--prefix', prefix, timeout=600)['servers']


def report_files(failover, report):
    stem = failover.reports / ('failover-%s-%s' % (report['host'], report['run_id']))
    return json.loads(stem.with_suffix('.json').read_text()), stem.with_suffix('.md').read_text()


def test_crashed_host_check_then_failover_then_rerun(failover, conn):
    lab, host = failover.lab, 'compute1'
    boot(host, 20, 'fo-crash')
    offs = len(power_off_events(lab, host))
    labctl('crash', host)

    # started right after the crash, as an alert would start it: Nova may still call the host up (its last
    # heartbeat is younger than service_down_time), and then the gate waits for Nova as the second signal
    check = failover.run(host, check=True)
    assert check.rc == 0, check.output[-4000:]
    plan = check.fact('host_failover_report')
    assert (plan['outcome'], plan['check_mode']) == ('planned', True)
    assert {gate['gate']: gate['verdict'] for gate in plan['gates']} == dict(
        corroboration='pass', observer='pass', storm='proceed', capacity='pass')
    assert sorted(s['signal'] for s in plan['signals'] if s['down']) == ['nova', 'probes']
    assert plan['fence']['outcome'] == 'would_fence' and plan['fence']['level_name'] == 'ipmi'
    assert plan['evacuation']['totals']['planned'] == 20
    assert {i['outcome'] for i in plan['evacuation']['instances']} == {'planned'}
    assert 'PLANNED (check mode)' in check.output  # the summary is printed
    # nothing changed: the BMC, the service, the servers, and no report file in check mode
    assert chassis_power(lab, host) == 'on' and len(power_off_events(lab, host)) == offs
    service = compute_service(conn, host)
    assert (service.is_forced_down, service.status) == (False, 'enabled')
    assert {h for h, _ in servers_by_host(conn, 'fo-crash').values()} == {host}
    assert not failover.reports.exists()

    apply = failover.run(host)
    assert apply.rc == 0, apply.output[-4000:]
    report = apply.fact('host_failover_report')
    assert report['outcome'] == 'recovered', report['message']
    assert report['evacuation']['totals']['moved'] == 20 and report['evacuation']['totals']['failed'] == 0
    assert len(report['verification']) == 20 and all(check['ok'] for check in report['verification'])
    # in the cloud: every server ACTIVE elsewhere, exactly one evacuation each; the host off, forced down, disabled
    placed = servers_by_host(conn, 'fo-crash')
    assert len(placed) == 20 and {status for _, status in placed.values()} == {'ACTIVE'}
    assert host not in {h for h, _ in placed.values()}
    migrations = evacuation_migrations(conn, host)
    assert len(migrations) == 20 and len({m['instance_uuid'] for m in migrations}) == 20
    assert chassis_power(lab, host) == 'off'
    service = compute_service(conn, host)
    assert (service.is_forced_down, service.status) == (True, 'disabled')
    assert service.disabled_reason.startswith('openstack_ha:failover run=%s at=' % report['run_id'])
    # the fence came before the first evacuation
    fenced_at = power_off_events(lab, host)[-1]['t']
    first_migration = min(datetime.datetime.fromisoformat(m['created_at']).replace(
        tzinfo=datetime.timezone.utc).timestamp() for m in migrations)
    assert fenced_at < first_migration
    # the report, as written and as handed over
    written, summary = report_files(failover, report)
    assert written['outcome'] == 'recovered' and len(written['evacuation']['instances']) == 20
    assert '# Failover of compute1: RECOVERED' in summary and summary.count('| moved |') == 20
    assert lab['hosts'][host]['bmc_password'] not in apply.output + json.dumps(written)

    rerun = failover.run(host)
    assert rerun.rc == 0, rerun.output[-4000:]
    again = rerun.fact('host_failover_report')
    assert again['outcome'] == 'unchanged', again['message']
    assert rerun.stats[host]['changed'] == 0, rerun.changes('openstack_ha.recovery.host_failover')
    assert len(evacuation_migrations(conn, host)) == 20
    assert compute_service(conn, host).disabled_reason == service.disabled_reason


def test_frozen_host_is_fenced_before_any_evacuation(failover, conn):
    lab, host = failover.lab, 'compute2'
    servers = boot(host, 5, 'fo-frozen')
    labctl('freeze', host)  # alive, not heartbeating: its "sshd" accepts connections but says nothing
    wait_nova_down(conn, host)

    run = failover.run(host)
    assert run.rc == 0, run.output[-4000:]
    report = run.fact('host_failover_report')
    assert report['outcome'] == 'recovered' and report['evacuation']['totals']['moved'] == 5, report['message']
    fenced_at = power_off_events(lab, host)[-1]['t']
    migrations = evacuation_migrations(conn, host)
    assert len(migrations) == 5
    for migration in migrations:
        created = datetime.datetime.fromisoformat(migration['created_at']).replace(tzinfo=datetime.timezone.utc)
        assert fenced_at < created.timestamp(), 'evacuation %s started before the fence' % migration['id']
    # the frozen compute was killed by the power off, so it can never run its copies again
    assert labctl('status')['hosts'][host]['compute'] == 'dead'
    assert {h for h, _ in servers_by_host(conn, 'fo-frozen').values()}.isdisjoint({host})
    assert len(servers) == 5


def test_storm_and_partition_refused_with_nothing_changed(failover, conn):
    lab = failover.lab
    boot('compute1', 2, 'fo-storm')
    # a host that is down in Nova but still answers on its network: a partition, not a failed host
    partition = failover.run('compute1', host_failover_alert=dict(status='firing'),
                             host_failover_heartbeat_stale=0)
    assert partition.rc != 0
    report = partition.fact('host_failover_report')
    assert report['outcome'] == 'refused' and 'a partition, not a failed host' in report['message']
    assert chassis_power(lab, 'compute1') == 'on'

    # an alert alone (no probes configured; the BMC says on): Nova's would be the second signal, but Nova sees the
    # living host up: the gate reads Nova again for host_failover_corroboration_wait seconds, then refuses
    alone = failover.run('compute1', host_failover_alert=dict(status='firing'), host_failover_probes=[],
                         host_failover_corroboration_wait=6, host_failover_corroboration_interval=1)
    assert alone.rc != 0
    report = alone.fact('host_failover_report')
    assert report['outcome'] == 'refused', report['message']
    assert '1 of the required 2 signals say compute1 is down (alert)' in report['message'], report['message']
    nova, = [signal for signal in report['signals'] if signal['signal'] == 'nova']
    assert nova['down'] is False and 5 <= float(nova['waited']) <= 10, nova
    assert 'read again for' in nova['detail'], nova
    assert chassis_power(lab, 'compute1') == 'on' and compute_service(conn, 'compute1').state == 'up'

    # two of three hosts down: the storm guard refuses, nothing is fenced or marked
    labctl('crash', 'compute1')
    labctl('crash', 'compute2')
    wait_nova_down(conn, 'compute1', 'compute2')
    offs = {host: len(power_off_events(lab, host)) for host in ('compute1', 'compute2')}
    chat, token = ChatWebhook(), 'chat-token-4f9a0c'
    try:
        run = failover.run('compute1', host_failover_report_webhook_url=chat.url,
                           host_failover_report_webhook_token=token)
    finally:
        chat.close()
    assert run.rc != 0
    report = run.fact('host_failover_report')
    assert report['outcome'] == 'refused', report['message']
    storm = [gate for gate in report['gates'] if gate['gate'] == 'storm'][0]
    assert storm['verdict'] == 'refuse' and sorted(storm['evidence']['down']) == ['compute1', 'compute2']
    assert 'Refusing to fail over compute1, nothing was changed' in run.output
    assert report['fence'] is None and report['evacuation'] is None
    for host in ('compute1', 'compute2'):
        assert len(power_off_events(lab, host)) == offs[host] and chassis_power(lab, host) == 'on'
        assert compute_service(conn, host).is_forced_down is False
    assert {h for h, _ in servers_by_host(conn, 'fo-storm').values()} == {'compute1'}
    written, _ = report_files(failover, report)
    assert written['outcome'] == 'refused'
    # the summary went to the chat webhook, with its token, which no output shows
    post, = chat.received
    assert post['headers']['Authorization'] == 'Bearer ' + token
    assert post['body']['text'].startswith('# Failover of compute1: REFUSED')
    assert post['body']['report']['outcome'] == 'refused'
    assert token not in run.output and token not in json.dumps(run.records)

    # both hosts down and let through by the down share, but at most one failover: two runs started together
    # must not both pass the gate (Nova's failover marker is written only after the fence; the first run's claim
    # in the lock directory is what the second one counts). The fence phase is left out: nothing is changed.
    limits = dict(host_failover_max_down_percent=100, host_failover_max_failovers=1,
                  host_failover_lock_dir=str(failover.dir / 'shared-locks'))
    racing = []
    threads = [threading.Thread(target=lambda h=h: racing.append(failover.play(
        PLAYBOOK, extra_vars=dict(failover.extra(h), **limits), timeout=600,
        env=dict(ANSIBLE_SKIP_TAGS='host_failover_fence')))) for h in ('compute1', 'compute2')]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gates = {}
    for race in racing:
        report = race.fact('host_failover_report')
        gates[report['host']] = [gate for gate in report['gates'] if gate['gate'] == 'storm'][0]
    verdicts = sorted(gate['verdict'] for gate in gates.values())
    assert verdicts == ['proceed', 'refuse'], gates
    first = [host for host, gate in gates.items() if gate['verdict'] == 'proceed'][0]
    second = [host for host, gate in gates.items() if gate['verdict'] == 'refuse'][0]
    assert [(f['host'], f['source']) for f in gates[second]['evidence']['recent_failovers']] == [(first, 'claim')]
    assert 'more than max_failovers 1' in gates[second]['reason']
    for host in ('compute1', 'compute2'):
        assert chassis_power(lab, host) == 'on' and compute_service(conn, host).is_forced_down is False


def test_two_concurrent_runs_for_one_host_make_one_recovery(failover, conn):
    host = 'compute3'
    boot(host, 4, 'fo-twice')
    labctl('crash', host)
    wait_nova_down(conn, host)
    runs = []
    threads = [threading.Thread(target=lambda: runs.append(failover.run(host))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes = sorted(run.fact('host_failover_report')['outcome'] for run in runs)
    assert outcomes == ['already_running', 'recovered'], [run.output[-3000:] for run in runs]
    assert all(run.rc == 0 for run in runs)
    standing_down = [run for run in runs if run.fact('host_failover_report')['outcome'] == 'already_running'][0]
    assert 'Another failover of compute3 is running' in standing_down.fact('host_failover_report')['message']
    migrations = evacuation_migrations(conn, host)
    assert len(migrations) == 4 and len({m['instance_uuid'] for m in migrations}) == 4


def test_every_fence_level_failing_means_no_evacuation(failover, conn):
    host = 'compute1'
    boot(host, 3, 'fo-nofence')
    labctl('crash', host)
    labctl('bmc', host, '--fail', 'unreachable')
    wait_nova_down(conn, host)
    # leaving the fence phase out with --skip-tags must not let anything after it run
    skipped = failover.play(PLAYBOOK, extra_vars=failover.extra(host), timeout=900,
                            env=dict(ANSIBLE_SKIP_TAGS='host_failover_fence'))
    assert skipped.rc != 0
    assert 'compute1 is not proven fenced (the fence phase did not run' in skipped.fact('host_failover_report')['message']
    assert compute_service(conn, host).is_forced_down is False and evacuation_migrations(conn, host) == []

    run = failover.run(host, host_fence_timeout=3, host_fence_retries=0)
    assert run.rc != 0
    report = run.fact('host_failover_report')
    assert report['outcome'] == 'failed'
    assert 'NOT fenced' in report['message'] and 'every fence level failed' in report['message']
    assert report['evacuation'] is None
    assert report['fence']['fenced'] is False
    assert [a['outcome'] for a in report['fence']['attempts']] == ['act_failed', 'act_failed']
    service = compute_service(conn, host)
    assert (service.is_forced_down, service.status) == (False, 'enabled')
    assert {h for h, _ in servers_by_host(conn, 'fo-nofence').values()} == {host}
    assert evacuation_migrations(conn, host) == []
    written, summary = report_files(failover, report)
    assert written['outcome'] == 'failed' and 'NOT fenced' in summary


def test_unknown_host_is_a_clear_error(failover):
    run = failover.run('compute99')
    assert run.rc != 0
    assert 'compute_host compute99 is not in the inventory group compute_hosts' in run.output
