"""The instance_recover runbook against the real lab, run as an operator (or the rulebook) runs it:
`ansible-playbook openstack_ha.recovery.instance_recover [-e server=NAME]`. Guests crash through the lab's fake
hypervisor (`labctl crash-instance`: the guest powers off, nothing calls the API) and Nova's own power-state sync
stops them; every outcome is read back from Nova (status, instance actions, server metadata) and the report files.

One scenario (CI budget): a marked, an unmarked and a user-stopped instance; check mode; the restart; a rerun; a
second crash restarted by name; a third crash at the limit (max 2 per window) left SHUTOFF and reported.
"""

import json

import pytest

from lab_helpers import labctl
from playbook_harness import PlaybookDir

pytestmark = pytest.mark.timeout(900, func_only=True)

PLAYBOOK = 'openstack_ha.recovery.instance_recover'
MARK = {'openstack_ha:restart': 'true'}
HISTORY = 'openstack_ha:restart_history'


class Runbook(PlaybookDir):
    def __init__(self, lab, directory):
        super().__init__(lab, directory)
        self.reports = directory / 'reports'
        self.write_yaml('inventory.yml', {'all': {
            'hosts': {'localhost': {'ansible_connection': 'local'}},
            'vars': {'openstack_ha_cloud': lab['cloud'], 'instance_recover_report_dir': str(self.reports),
                     'instance_recover_max_restarts': 2, 'instance_recover_poll_interval': 1}}})

    def report(self, run):
        report = run.fact('instance_recover_report')
        with open(report['files']['json']) as source:
            assert json.load(source) == report
        assert open(report['files']['markdown']).read().startswith('# instance_recover: ')
        artifacts = [record['result']['ansible_stats']['data']['openstack_ha_recovery_report']
                     for record in run.records if 'ansible_stats' in record['result']]
        assert artifacts == [report], 'set_stats did not hand the report over'
        return dict((i['name'], i) for i in report['instances']), report


def newest_action(conn, server_id):
    actions = conn.compute.get('/servers/%s/os-instance-actions' % server_id, microversion='2.73').json()
    return sorted(actions['instanceActions'], key=lambda a: a['start_time'])[-1]


def test_crashed_marked_instance_is_restarted_up_to_the_limit(fresh_lab, conn, tmp_path):
    marked, unmarked, by_user = [labctl('boot', '--host', 'compute1', '--prefix', prefix)['servers'][0]
                                 for prefix in ('marked', 'unmarked', 'byuser')]
    for server in (marked, by_user):
        conn.compute.set_server_metadata(server['id'], **MARK)
    for server in (marked, unmarked):
        crash = labctl('crash-instance', server['id'])
        assert crash['status_after'] == 'SHUTOFF'
    conn.compute.stop_server(by_user['id'])
    conn.compute.wait_for_server(conn.compute.get_server(by_user['id']), status='SHUTOFF', interval=0.5, wait=120)
    # what Nova records: its power-state sync stopped the crashed guest with no user; the user's stop has the user
    nova_stop, user_stop = newest_action(conn, marked['id']), newest_action(conn, by_user['id'])
    assert nova_stop['action'] == 'stop' and nova_stop['user_id'] is None and nova_stop['project_id'] is None
    assert user_stop['action'] == 'stop' and user_stop['user_id']

    book = Runbook(fresh_lab, tmp_path)
    plan = book.play(PLAYBOOK, check=True)
    assert plan.rc == 0, plan.stdout[-3000:]
    records, report = book.report(plan)
    assert report['outcome'] == 'changed' and report['check_mode'] is True
    assert sorted(records) == [by_user['name'], marked['name']]  # the scan looks at marked servers only
    assert records[marked['name']]['outcome'] == 'would_restart'
    assert records[by_user['name']]['outcome'] == 'skipped' and 'stopped by user' in records[by_user['name']]['reason']
    assert conn.compute.get_server(marked['id']).status == 'SHUTOFF'
    assert HISTORY not in conn.compute.get_server_metadata(marked['id']).metadata

    run = book.play(PLAYBOOK)
    assert run.rc == 0, run.stdout[-3000:]
    records, report = book.report(run)
    assert report['outcome'] == 'changed' and records[marked['name']]['outcome'] == 'restarted'
    status = dict((s['id'], conn.compute.get_server(s['id']).status) for s in (marked, unmarked, by_user))
    assert status == {marked['id']: 'ACTIVE', unmarked['id']: 'SHUTOFF', by_user['id']: 'SHUTOFF'}
    assert len(conn.compute.get_server_metadata(marked['id']).metadata[HISTORY].split()) == 1

    rerun = book.play(PLAYBOOK)
    assert rerun.rc == 0 and book.report(rerun)[1]['outcome'] == 'unchanged'

    # the unmarked one, named as an alert would name it: reported, left alone
    named = book.play(PLAYBOOK, extra_vars={'server': unmarked['name']})
    records, report = book.report(named)
    assert named.rc == 0 and report['outcome'] == 'unchanged'
    assert records[unmarked['name']]['reason'].startswith('not marked for restart')
    assert conn.compute.get_server(unmarked['id']).status == 'SHUTOFF'

    labctl('crash-instance', marked['id'])
    second = book.play(PLAYBOOK, extra_vars={'server': marked['id']})
    assert second.rc == 0 and book.report(second)[0][marked['name']]['restarts_in_window'] == 2
    assert conn.compute.get_server(marked['id']).status == 'ACTIVE'

    labctl('crash-instance', marked['id'])
    limited = book.play(PLAYBOOK, extra_vars={'server': marked['name']})
    assert limited.rc != 0
    records, report = book.report(limited)
    assert report['outcome'] == 'failed' and records[marked['name']]['outcome'] == 'limit_reached'
    assert 'At the restart limit (2 in 3600 s), left SHUTOFF: %s' % marked['name'] in report['message']
    assert conn.compute.get_server(marked['id']).status == 'SHUTOFF'
