"""The site_restore runbook against the real lab: every host powered off through its BMC (`labctl site-outage`,
the control plane stays up), then `ansible-playbook openstack_ha.recovery.site_restore` with two waves. The hosts'
guests come back powered off (the lab's fake hypervisor keeps them on "disk"), Nova's power-state sync stops
them, and the runbook starts what ran before, highest priority first. The order is proven from the BMCs' event
logs (power on) and Nova's instance actions (start times, and when the high-priority starts finished).
"""

import json
import os
import time

import pytest

from lab_helpers import labctl
from playbook_harness import PlaybookDir

pytestmark = pytest.mark.timeout(900, func_only=True)

PLAYBOOK = 'openstack_ha.recovery.site_restore'


def power_on_times(lab, host, since):
    with open(os.path.join(lab['hosts'][host]['state_dir'], 'bmc-events.log')) as log:
        events = [json.loads(line) for line in log if line.strip()]
    return [e['t'] for e in events if e['action'] == 'on' and e['result'] == 'ok' and e['t'] >= since]


def start_action(conn, server_id):
    actions = conn.compute.get('/servers/%s/os-instance-actions' % server_id, microversion='2.73').json()
    starts = [a for a in actions['instanceActions'] if a['action'] == 'start']
    assert starts, 'server %s has no start action' % server_id
    return max(starts, key=lambda a: a['start_time'])


def test_site_outage_hosts_in_waves_instances_by_priority(fresh_lab, conn, tmp_path):
    servers = {}
    for prefix, host, priority in (('high', 'compute1', 10), ('high', 'compute2', 10), ('low', 'compute2', 1),
                                   ('low', 'compute3', 1), ('stopped', 'compute3', 10)):
        server = labctl('boot', '--host', host, '--prefix', prefix)['servers'][0]
        conn.compute.set_server_metadata(server['id'], evacuation_priority=str(priority))
        servers[server['id']] = dict(server, prefix=prefix)
    stopped, = [sid for sid, s in servers.items() if s['prefix'] == 'stopped']
    conn.compute.stop_server(stopped)
    conn.compute.wait_for_server(conn.compute.get_server(stopped), status='SHUTOFF', interval=0.5, wait=120)

    outage = time.time()
    labctl('site-outage')

    book = PlaybookDir(fresh_lab, tmp_path)
    with open(fresh_lab['inventory']) as source:
        inventory = json.load(source)
    group_vars = inventory['all']['children']['compute_hosts']['vars']
    group_vars.update(site_restore_report_dir=str(tmp_path / 'reports'), site_restore_poll_interval=1,
                      site_restore_up_timeout=180, site_restore_waves=[['compute1'], ['compute2', 'compute3']],
                      site_restore_down_wait=120)
    book.write_yaml('inventory.yml', inventory)
    # check mode: the plan, from the BMCs and Nova; every host stays off, nothing starts
    check = book.play(PLAYBOOK, check=True, timeout=600)
    assert check.rc == 0, check.stdout[-4000:]
    plan = check.fact('site_restore_report')
    # started right after the outage: the preflight waited for Nova to call the three hosts down
    assert (plan['check_mode'], plan['outcome'], plan['totals']['would_start']) == (True, 'changed', 4)
    assert plan['hosts_still_up'] == []
    assert set(h['power'] for h in plan['hosts'].values()) == {'planned'}
    assert labctl('status')['hosts']['compute1']['bmc_power'] == 'off'

    run = book.play(PLAYBOOK, timeout=600)
    assert run.rc == 0, run.stdout[-4000:]
    report = run.fact('site_restore_report')
    with open(report['files']['json']) as source:
        assert json.load(source) == report
    assert report['outcome'] == 'changed', report['message']
    assert sorted(report['running_before']) == sorted(sid for sid in servers if sid != stopped)
    assert dict((h, (v['wave'], v['power'], v['nova'])) for h, v in report['hosts'].items()) == {
        'compute1': (1, 'done', 'up'), 'compute2': (2, 'done', 'up'), 'compute3': (2, 'done', 'up')}
    assert [g['priority'] for g in report['groups']] == [10, 1] and report['totals']['started'] == 4

    # wave 2 was powered on after compute1 (wave 1) was powered on and its nova-compute reported
    first, = power_on_times(fresh_lab, 'compute1', outage)
    for host in ('compute2', 'compute3'):
        later, = power_on_times(fresh_lab, host, outage)
        assert later > first
    assert report['hosts']['compute2']['powered_at'] >= report['hosts']['compute1']['up_at']

    # what ran is ACTIVE again; the server a user stopped stays SHUTOFF
    for sid, server in servers.items():
        assert conn.compute.get_server(sid).status == ('SHUTOFF' if sid == stopped else 'ACTIVE'), server['name']
    # Nova's records: every high-priority start had finished before the first low-priority start began
    high = [start_action(conn, sid) for sid, s in servers.items() if s['prefix'] == 'high']
    low = [start_action(conn, sid) for sid, s in servers.items() if s['prefix'] == 'low']
    assert max(a['updated_at'] for a in high) <= min(a['start_time'] for a in low)
    assert all(a['user_id'] for a in high + low)  # started by the runbook's user, after Nova's own stop

    assert all(h['power_changed'] for h in report['hosts'].values())

    rerun = book.play(PLAYBOOK, timeout=600)
    assert rerun.rc == 0, rerun.stdout[-4000:]
    again = rerun.fact('site_restore_report')
    assert again['outcome'] == 'unchanged' and again['running_before'] == [] and again['totals']['started'] == 0
    # the hosts run: each sent a heartbeat during the preflight's wait, which did not last site_restore_down_wait
    assert sorted(again['hosts_still_up']) == ['compute1', 'compute2', 'compute3'] and again['seconds'] < 120
