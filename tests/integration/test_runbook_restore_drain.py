"""The host_drain and host_restore runbooks against the real lab, run as an operator runs them:
`ansible-playbook openstack_ha.recovery.host_drain -e compute_host=NAME` against the lab's inventory (the compute
hosts with their BMC settings and fence levels; one BMC password vaulted), every outcome read back from Nova, the
BMCs and the report files.

Lean on purpose (CI budget): one drain scenario (check mode, drain, rerun, restore), one failover scenario (a
foreign disabled reason refused; then crash, power off, force down, evacuate: an evacuation under way refused,
check mode, restore, rerun), and the refusal of unknown hosts, which changes nothing in the lab.
"""

import json
import re
import time

import pytest

from helpers_nova import run_module, service_settings
from lab_helpers import evacuation_migrations, ipmitool, labctl, wait_for
from playbook_harness import PlaybookDir

# func_only: the session-wide lab start must not count against one test. A drain of 10 servers took 33 s on an
# idle machine and over 6 minutes next to four other labs.
pytestmark = pytest.mark.timeout(1200, func_only=True)

DRAIN = 'openstack_ha.recovery.host_drain'
RESTORE = 'openstack_ha.recovery.host_restore'
# The lock reason nova_evacuate puts on a server while it moves it (plugins/module_utils/_evacuate.py LOCK_REASON)
EVACUATE_LOCK = 'openstack_ha.recovery.nova_evacuate: evacuating from %s, was %s'
MARKER = re.compile(r'^openstack_ha:(failover|drain|restore) run=(\S+) at=(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)(?: (.*))?$')


class Runbooks(PlaybookDir):
    """The lab's inventory (its compute_hosts group vars: cloud, fence levels), reports into the test directory."""

    def __init__(self, lab, directory):
        super().__init__(lab, directory)
        with open(lab['inventory']) as source:
            inventory = json.load(source)
        group = inventory['all']['children']['compute_hosts']
        group_vars = group.setdefault('vars', {})
        # the lab writes the fence levels and the cloud into the group vars; older labs did not
        group_vars.setdefault('openstack_ha_cloud', lab['cloud'])
        group_vars.setdefault('host_fence_cloud', lab['cloud'])
        group_vars.setdefault('host_fence_report_interval', lab['report_interval'])
        group_vars.setdefault('host_fence_levels', [
            {'name': 'ipmi', 'methods': [{'type': 'ipmi', 'address': '{{ bmc_address }}', 'port': '{{ bmc_ipmi_port }}',
                                          'username': '{{ bmc_username }}', 'password': '{{ bmc_password }}'}]},
            {'name': 'redfish', 'methods': [{'type': 'redfish', 'address': '{{ bmc_redfish_url }}',
                                             'username': '{{ bmc_username }}', 'password': '{{ bmc_password }}'}]}])
        self.reports = directory / 'reports'
        group_vars.update(host_drain_report_dir=str(self.reports), host_restore_report_dir=str(self.reports),
                          host_restore_poll_interval=1, host_restore_up_timeout=180,
                          host_restore_cleanup_timeout=180, host_drain_timeout=600)
        self.write_yaml('inventory.yml', inventory)

    def vault_bmc_password(self, host):
        """The host's BMC password from a vaulted host_vars file (it overrides the inventory's)."""
        (self.dir / 'host_vars').mkdir(exist_ok=True)
        (self.dir / 'host_vars' / ('%s.yml' % host)).write_text(
            self.vault_string('bmc_password', self.lab['hosts'][host]['bmc_password']))

    def report(self, run, role):
        report = run.fact('%s_report' % role)
        with open(report['files']['json']) as source:
            assert json.load(source) == report
        assert open(report['files']['markdown']).read().startswith('# %s %s: ' % (report['runbook'], report['host']))
        artifacts = [record['result']['ansible_stats']['data']['openstack_ha_recovery_report']
                     for record in run.records if 'ansible_stats' in record['result']]
        assert artifacts == [report], 'set_stats did not hand the report over'
        return report


@pytest.fixture
def runbooks(lab, tmp_path):
    return Runbooks(lab, tmp_path)


def servers_on(conn, host):
    return sorted(server.id for server in conn.compute.servers(all_projects=True, compute_host=host))


def server_action(conn, server_id, body):
    response = conn.compute.post('/servers/%s/action' % server_id, json=body, microversion='2.73')
    assert response.status_code == 202, response.text


def chassis_power(lab, host):
    return ipmitool(lab['hosts'][host], 'power', 'status').strip().rsplit(' ', 1)[-1]


def step_statuses(report):
    return dict((step['name'], step['status']) for step in report['steps'])


def test_drain_ten_servers_then_restore(fresh_lab, runbooks, conn):
    lab, host = fresh_lab, 'compute1'
    ids = sorted(server['id'] for server in labctl('boot', '--count', '10', '--host', host, timeout=300)['servers'])
    assert servers_on(conn, host) == ids
    drain_vars = dict(compute_host=host, host_drain_reason='CHG-4711 firmware', host_drain_concurrency=5)

    # check mode: every gate and the plan, nothing disabled, nothing moved
    check = runbooks.play(DRAIN, check=True, extra_vars=drain_vars, timeout=300)
    assert check.rc == 0, check.output
    report = runbooks.report(check, 'host_drain')
    assert (report['check_mode'], report['outcome']) == (True, 'changed')
    assert [gate['name'] for gate in report['gates'] if gate['passed']] == ['host_running', 'capacity']
    assert step_statuses(report) == dict(disable='planned', migrate='planned', power_off='skipped')
    assert len(report['instances']) == 10 and {r['outcome'] for r in report['instances']} == {'would_move'}
    assert 'CHECK MODE: nothing is changed. Drain %s' % host in check.output
    assert check.output.count('would move, live migration to') == 10
    assert service_settings(conn, host) == dict(enabled=True, forced_down=False, disabled_reason=None, state='up')
    assert servers_on(conn, host) == ids

    # the drain
    started = time.monotonic()
    drain = runbooks.play(DRAIN, extra_vars=drain_vars, timeout=1000)
    print('\nhost_drain of 10 servers: %.1f s' % (time.monotonic() - started))
    assert drain.rc == 0, drain.output
    report = runbooks.report(drain, 'host_drain')
    assert (report['check_mode'], report['outcome'], report['host']) == (False, 'changed', host)
    assert [phase['name'] for phase in report['phases']] == ['preflight', 'act', 'verify']
    assert all(phase['outcome'] == 'ok' and phase['seconds'] >= 0 for phase in report['phases'])
    assert step_statuses(report) == dict(disable='done', migrate='done', power_off='skipped')
    assert report['totals']['moved'] == 10 and report['error'] is None
    assert report['files']['json'].endswith('/drain-%s-%s.json' % (host, report['run_id']))
    reason = service_settings(conn, host)
    assert (reason['enabled'], reason['forced_down'], reason['state']) == (False, False, 'up')
    assert reason['disabled_reason'] == report['marker']
    runbook, run_id, at, text = MARKER.match(reason['disabled_reason']).groups()
    assert (runbook, run_id, text) == ('drain', report['run_id'], 'CHG-4711 firmware')
    assert run_id.startswith(at.replace('-', '').replace(':', '')) and host in run_id
    assert servers_on(conn, host) == []
    moved = dict((server.id, server) for server in conn.compute.servers(all_projects=True) if server.id in ids)
    assert len(moved) == 10 and all(s.compute_host in ('compute2', 'compute3') and s.status == 'ACTIVE'
                                    for s in moved.values())

    # a rerun changes nothing (and keeps the first run's marker)
    again = runbooks.play(DRAIN, extra_vars=drain_vars, timeout=300)
    assert again.rc == 0, again.output
    assert again.changes(DRAIN) == [] and again.stats[host]['changed'] == 0
    rerun = runbooks.report(again, 'host_drain')
    assert (rerun['outcome'], rerun['instances']) == ('unchanged', [])
    assert rerun['run_id'] != report['run_id']
    assert service_settings(conn, host)['disabled_reason'] == report['marker']

    # host_restore brings the drained host back (it is on: the power-on finds it on)
    restore = runbooks.play(RESTORE, extra_vars=dict(compute_host=host), timeout=600)
    assert restore.rc == 0, restore.output
    report = runbooks.report(restore, 'host_restore')
    assert report['outcome'] == 'changed'
    assert step_statuses(report) == dict(power_on='done', wait_up='done', wait_cleanup='unchanged',
                                         unforce='unchanged', enable='done')
    assert service_settings(conn, host) == dict(enabled=True, forced_down=False, disabled_reason=None, state='up')
    assert chassis_power(lab, host) == 'on'


def test_restore_after_failover(fresh_lab, runbooks, conn):
    lab, host, spare = fresh_lab, 'compute2', 'compute3'
    runbooks.vault_bmc_password(host)

    # A host disabled by hand (a reserved spare) is not enabled by a restore: refused, nothing changed
    run_module(lab, 'nova_service', host=spare, enabled=False, disabled_reason='reserved: spare for rack A')
    refused = runbooks.play(RESTORE, extra_vars=dict(compute_host=spare), timeout=300)
    assert refused.rc != 0
    assert 'refusing to restore %s, nothing was changed' % spare in refused.output
    assert 'host_restore_ignore_foreign_reason' in refused.output
    report = runbooks.report(refused, 'host_restore')
    assert report['outcome'] == 'failed' and report['error']['task'] == 'Refuse the restore when a gate failed'
    assert set(step_statuses(report).values()) == {'not_done'}
    assert [gate['name'] for gate in report['gates'] if not gate['passed']] == ['disabled_reason']
    assert service_settings(conn, spare) == dict(enabled=False, forced_down=False,
                                                 disabled_reason='reserved: spare for rack A', state='up')

    # A failed-over host, as host_failover leaves it: crashed, powered off through its BMC, forced down, disabled
    # with the failover marker, its servers evacuated (to compute1: compute3 is reserved). Then, before the
    # restore: the refusal of an evacuation under way, check mode, the restore, a rerun.
    ids = sorted(server['id'] for server in labctl('boot', '--count', '3', '--host', host, timeout=300)['servers'])
    labctl('crash', host)
    ipmitool(lab['hosts'][host], 'chassis', 'power', 'off')
    wait_for('%s powered off' % host, lambda: chassis_power(lab, host) == 'off', 30)
    marker = 'openstack_ha:failover run=20261122T101500Z-%s-4711 at=2026-11-22T10:15:00Z' % host
    down = run_module(lab, 'nova_service', host=host, forced_down=True, enabled=False, disabled_reason=marker)
    assert not down.failed, down
    evacuation = run_module(lab, 'nova_evacuate', host=host, timeout=240)
    assert not evacuation.failed, evacuation
    assert servers_on(conn, host) == []
    done = [m for m in evacuation_migrations(conn, host) if m['instance_uuid'] in ids]
    assert sorted(m['status'] for m in done) == ['done'] * 3

    # An evacuation still under way (here: a server an interrupted nova_evacuate run moved and left locked) stops
    # the restore, in check mode too
    server_action(conn, ids[0], {'lock': {'locked_reason': EVACUATE_LOCK % (host, 'ACTIVE')}})
    refused = runbooks.play(RESTORE, check=True, extra_vars=dict(compute_host=host), timeout=300)
    assert refused.rc != 0
    assert 'refusing to restore %s, nothing was changed: no_evacuation_in_flight: 1 evacuation(s)' % host in (
        refused.output)
    assert ids[0] in runbooks.report(refused, 'host_restore')['error']['msg']
    server_action(conn, ids[0], {'unlock': None})

    # check mode: every gate, the plan (power on, the three evacuations to clean up); nothing changes
    check = runbooks.play(RESTORE, check=True, extra_vars=dict(compute_host=host), timeout=300)
    assert check.rc == 0, check.output
    report = runbooks.report(check, 'host_restore')
    assert (report['check_mode'], report['outcome']) == (True, 'changed')
    assert [gate['name'] for gate in report['gates'] if gate['passed']] == ['no_evacuation_in_flight',
                                                                           'disabled_reason']
    assert step_statuses(report) == dict(power_on='planned', wait_up='planned', wait_cleanup='planned',
                                         unforce='planned', enable='planned')
    assert sorted(r['instance_uuid'] for r in report['instances']) == ids
    assert 'wait up to 180 s until the host has cleaned up 3 evacuated instance(s)' in check.output
    assert chassis_power(lab, host) == 'off'
    assert service_settings(conn, host) == dict(enabled=False, forced_down=True, disabled_reason=marker, state='down')

    # the restore: power on through the BMC, up, evacuations cleaned up, forced_down lifted, enabled
    started = time.monotonic()
    restore = runbooks.play(RESTORE, extra_vars=dict(compute_host=host), timeout=600)
    print('\nhost_restore after a failover: %.1f s' % (time.monotonic() - started))
    assert restore.rc == 0, restore.output
    assert lab['hosts'][host]['bmc_password'] not in restore.output
    report = runbooks.report(restore, 'host_restore')
    assert (report['outcome'], report['error']) == ('changed', None)
    assert step_statuses(report) == dict(power_on='done', wait_up='done', wait_cleanup='done', unforce='done',
                                         enable='done')
    assert sorted(r['instance_uuid'] for r in report['instances']) == ids
    assert {r['outcome'] for r in report['instances']} == {'cleaned_up'}
    assert report['service']['before']['disabled_reason'] == marker and report['service']['after']['enabled']
    assert chassis_power(lab, host) == 'on'
    assert service_settings(conn, host) == dict(enabled=True, forced_down=False, disabled_reason=None, state='up')
    assert sorted(m['status'] for m in evacuation_migrations(conn, host) if m['instance_uuid'] in ids) == [
        'completed'] * 3

    # a rerun on the restored host changes nothing
    again = runbooks.play(RESTORE, extra_vars=dict(compute_host=host), timeout=300)
    assert again.rc == 0, again.output
    assert again.stats[host]['changed'] == 0, again.output
    report = runbooks.report(again, 'host_restore')
    assert report['outcome'] == 'unchanged' and report['instances'] == []
    assert service_settings(conn, host) == dict(enabled=True, forced_down=False, disabled_reason=None, state='up')


def test_unknown_or_missing_host_is_refused(lab, runbooks):
    for playbook in (RESTORE, DRAIN):
        unknown = runbooks.play(playbook, extra_vars=dict(compute_host='compute9'), timeout=120)
        assert unknown.rc != 0
        assert ('compute_host "compute9" is not a host of the inventory group compute_hosts (compute1, compute2, '
                'compute3)') in unknown.output
        assert not any(record['task'].startswith(playbook) for record in unknown.records), 'the role ran'
    missing = runbooks.play(RESTORE, timeout=120)
    assert missing.rc != 0 and 'no host given: run with -e compute_host=NAME' in missing.output
    elsewhere = runbooks.play(RESTORE, extra_vars=dict(compute_host='compute1', compute_group='spare_hosts'),
                              timeout=120)
    assert elsewhere.rc != 0
    assert 'is not a host of the inventory group spare_hosts (empty or missing)' in elsewhere.output
