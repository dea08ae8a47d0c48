"""The drain core (_drain.py) against a FakeCloud that migrates, faked at the openstacksdk boundary."""

import threading

import pytest
from keystoneauth1 import exceptions as ksa_exceptions

from ansible_collections.openstack_ha.recovery.plugins.module_utils import _drain
from ansible_collections.openstack_ha.recovery.plugins.module_utils._drain import (
    DEFAULT_REASON,
    DRAIN_RESULT_KEYS,
    RECORD_KEYS,
    DrainError,
    action_microversion,
    drain_host,
    plan_instance,
)
from ansible_collections.openstack_ha.recovery.tests.unit.plugins.nova_fakes import (
    FakeCloud,
    FakeProxy,
    FakeResponse,
    nova_error,
)

VM_STATES = dict(ACTIVE='active', PAUSED='paused', SHUTOFF='stopped', ERROR='error', SUSPENDED='suspended')


class MigratingProxy(FakeProxy):
    def post(self, url, microversion=None, json=None):
        return self.cloud.request(self.service, 'POST', url, microversion, json)


class DrainCloud(FakeCloud):
    """FakeCloud plus GET /servers/{id}, migration records by instance, and the server actions a drain sends.

    A move advances one step at each GET of the server. behaviour[name] scripts a server's moves:
    live / cold / confirm: 'ok' (default), 'error' (migration error, instance back as it was), 'to_error'
    (instance in ERROR), 'stuck' (never ends), 'slow' (one more step), 'stay' (ends 'ok' without leaving),
    'delete' (the server disappears); reject_live / reject_cold / reject_reset: answer the POST with HTTP 400.
    """

    def __init__(self):
        super(DrainCloud, self).__init__()
        self.compute = MigratingProxy(self, 'compute')
        self.behaviour = {}
        self.moving = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.mutex = threading.RLock()
        self.on_get = None

    def request(self, service, method, url, microversion, body):
        with self.mutex:
            return super(DrainCloud, self).request(service, method, url, microversion, body)

    def add_server(self, host, name, status='ACTIVE', **kwargs):
        kwargs.setdefault('vm_state', VM_STATES.get(status, status.lower()))
        return super(DrainCloud, self).add_server(host, name, status=status, **kwargs)

    def server(self, name):
        return next(s for s in self.servers if s['name'] == name)

    def actions(self):
        return [(self.name_of(r.path), list(r.body)[0]) for r in self.sent('compute', 'POST')]

    def name_of(self, path):
        server_id = path.split('/')[2]
        return next((s['name'] for s in self.servers if s['id'] == server_id), server_id)

    # -- answering -------------------------------------------------------------------------------------------

    def _compute_get(self, path, query, body):
        if path.startswith('/servers/') and path != '/servers/detail':
            server = next((s for s in self.servers if s['id'] == path.split('/')[2]), None)
            if server is None:
                return nova_error(404, 'Instance %s could not be found.' % path.split('/')[2])
            if self.on_get:
                self.on_get(server)
            self._advance(server)
            if server.get('deleted'):
                self.servers.remove(server)
                return nova_error(404, 'Instance %s could not be found.' % server['id'])
            return FakeResponse(200, dict(server=server))
        if path == '/os-migrations' and 'instance_uuid' in query:
            migrations = [m for m in self.migrations if m['instance_uuid'] == query['instance_uuid']
                          and query.get('migration_type') in (None, m['migration_type'])]
            return FakeResponse(200, dict(migrations=migrations))
        return super(DrainCloud, self)._compute_get(path, query, body)

    def _compute_post(self, path, query, body):
        server = next((s for s in self.servers if '/servers/%s/action' % s['id'] == path), None)
        if server is None:
            return nova_error(404, 'no such server in the fake: %s' % path)
        script = self.behaviour.get(server['name'], {})
        action, args = list(body.items())[0]
        if action == 'os-resetState':
            if script.get('reject_reset'):
                return nova_error(400, 'reset refused by the fake')
            server.update({'status': args['state'].upper(), 'OS-EXT-STS:vm_state': args['state']})
            return FakeResponse(202)
        if action == 'confirmResize':
            if server['status'] != 'VERIFY_RESIZE':
                return nova_error(409, "Cannot 'confirmResize' instance %s while it is in vm_state %s"
                                  % (server['id'], server['OS-EXT-STS:vm_state']))
            move = self.moving[server['id']]
            move.update(phase='confirm', plan=script.get('confirm', 'ok'), steps=0, done=False)
            move['migration']['status'] = 'confirming'
            return FakeResponse(204)
        live = action == 'os-migrateLive'
        allowed = ('ACTIVE', 'PAUSED') if live else ('ACTIVE', 'SHUTOFF')
        if server['status'] not in allowed or server['OS-EXT-STS:task_state']:
            return nova_error(409, "Cannot '%s' instance %s while it is in vm_state %s"
                              % (action, server['id'], server['OS-EXT-STS:vm_state']))
        if script.get('reject_live' if live else 'reject_cold'):
            return nova_error(400, 'Migration pre-check error: refused by the fake')
        migration = self.add_migration(server['id'], server['OS-EXT-SRV-ATTR:host'], None,
                                       'accepted' if live else 'pre-migrating',
                                       migration_type='live-migration' if live else 'migration')
        migration['dest_compute'] = self._schedule(server['OS-EXT-SRV-ATTR:host'], args.get('host'))
        migration['body'] = args
        self.moving[server['id']] = dict(phase='live' if live else 'cold', plan=script.get('live' if live else 'cold',
                                                                                           'ok'),
                                         migration=migration, status=server['status'],
                                         vm_state=server['OS-EXT-STS:vm_state'], steps=0)
        server.update({'status': 'MIGRATING' if live else 'RESIZE',
                       'OS-EXT-STS:task_state': 'migrating' if live else 'resize_prep'})
        with self.mutex:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return FakeResponse(202)

    def _schedule(self, source, requested):
        usable = sorted(s['host'] for s in self.services if s['host'] != source and s['status'] == 'enabled'
                        and s['state'] == 'up' and not s['forced_down'])
        if requested:
            return requested if requested in usable else None
        return usable[0] if usable else None

    def _advance(self, server):
        move = self.moving.get(server['id'])
        if move is None or move.get('done'):
            return
        move['steps'] += 1
        plan, migration = move['plan'], move['migration']
        if plan == 'stuck' or (plan == 'slow' and move['steps'] < 2):
            migration['status'] = 'running' if move['phase'] == 'live' else migration['status']
            return
        if plan == 'delete':
            server['deleted'] = True
            return
        if migration['dest_compute'] is None:
            plan = 'error'
        move['done'] = True
        with self.mutex:
            self.in_flight -= move['phase'] != 'confirm'
        back = {'status': move['status'], 'OS-EXT-STS:vm_state': move['vm_state'], 'OS-EXT-STS:task_state': None}
        if plan == 'error':
            migration['status'] = 'error'
            server.update(back)
        elif plan == 'to_error':
            migration['status'] = 'failed'
            server.update({'status': 'ERROR', 'OS-EXT-STS:vm_state': 'error', 'OS-EXT-STS:task_state': None,
                           'fault': dict(code=500, message='fake hypervisor exploded')})
        elif plan == 'stay':
            migration['status'] = 'completed' if move['phase'] == 'live' else 'finished'
            server.update(back)
        elif move['phase'] == 'live':
            migration['status'] = 'completed'
            server.update(back)
            server['OS-EXT-SRV-ATTR:host'] = migration['dest_compute']
        elif move['phase'] == 'cold':
            migration['status'] = 'finished'
            server.update({'status': 'VERIFY_RESIZE', 'OS-EXT-STS:vm_state': 'resized',
                           'OS-EXT-STS:task_state': None, 'OS-EXT-SRV-ATTR:host': migration['dest_compute']})
        else:
            migration['status'] = 'confirmed'
            server.update(back)


@pytest.fixture
def cloud():
    cloud = DrainCloud()
    for host in ('compute1', 'compute2', 'compute3'):
        cloud.add_host(host)
    return cloud


def drain(cloud, clock, host='compute1', **kwargs):
    kwargs.setdefault('clock', clock)
    kwargs.setdefault('sleep', clock.sleep)
    return drain_host(cloud, host, **kwargs)


def by_name(result):
    return dict((r['name'], r) for r in result['instances'])


def on_host(cloud, host):
    return sorted(s['name'] for s in cloud.servers if s['OS-EXT-SRV-ATTR:host'] == host)


# ---------------------------------------------------------------------------------------------------------
# the happy paths


def test_live_and_cold_drain_disables_moves_and_reports(cloud, clock):
    cloud.add_server('compute1', 'web-1')
    cloud.add_server('compute1', 'web-2', status='PAUSED')
    cloud.add_server('compute1', 'db-1', status='SHUTOFF')
    cloud.add_server('compute2', 'other')
    result = drain(cloud, clock)
    assert sorted(result) == sorted(DRAIN_RESULT_KEYS + ('changed', 'diff'))
    assert result['changed'] is True and result['service_changed'] is True
    assert result['service']['enabled'] is False and result['service']['disabled_reason'] == DEFAULT_REASON
    assert cloud.service('compute1')['disabled_reason'] == DEFAULT_REASON
    assert result['candidate_hosts'] == ['compute2', 'compute3']
    assert on_host(cloud, 'compute1') == []
    records = by_name(result)
    assert list(records) == ['db-1', 'web-1', 'web-2']  # sorted by name
    for record in records.values():
        assert sorted(record) == sorted(RECORD_KEYS)
        assert record['outcome'] == 'moved' and record['reason'] is None and record['attempts'] == 1
        assert record['from'] == 'compute1' and record['to'] == 'compute2'
        assert record['status_after'] == record['status_before']
    assert [records[n]['method'] for n in ('db-1', 'web-1', 'web-2')] == ['cold', 'live', 'live']
    assert cloud.server('db-1')['status'] == 'SHUTOFF' and cloud.server('web-2')['status'] == 'PAUSED'
    assert sorted(cloud.actions()) == [('db-1', 'confirmResize'), ('db-1', 'migrate'), ('web-1', 'os-migrateLive'),
                                       ('web-2', 'os-migrateLive')]
    assert result['totals'] == dict(instances=3, moved=3, skipped=0, failed=0, would_move=0, live=2, cold=1,
                                    seconds=result['totals']['seconds'])
    assert result['diff'] == dict(before=dict(enabled=True, disabled_reason=None, instances=['db-1', 'web-1', 'web-2']),
                                  after=dict(enabled=False, disabled_reason=DEFAULT_REASON, instances=[]))


def test_disable_comes_first_and_requests_carry_their_microversions(cloud, clock):
    cloud.add_server('compute1', 'web-1')
    cloud.add_server('compute1', 'db-1', status='SHUTOFF')
    drain(cloud, clock, disabled_reason='CHG-1')
    writes = [r for r in cloud.requests if r.method in ('PUT', 'POST')]
    assert writes[0].method == 'PUT' and writes[0].body == dict(status='disabled', disabled_reason='CHG-1')
    versions = dict(((r.method, r.body and list(r.body)[0]), r.microversion) for r in writes)
    assert versions == {('PUT', 'status'): '2.53', ('POST', 'os-migrateLive'): '2.34', ('POST', 'migrate'): '2.56',
                        ('POST', 'confirmResize'): '2.56'}
    assert set(r.microversion for r in cloud.sent('compute', 'GET') if r.path.startswith('/servers/')
               and r.path != '/servers/detail') == {'2.73'}
    assert set(r.microversion for r in cloud.sent('compute', 'GET') if r.path == '/os-migrations') == {'2.59'}


@pytest.mark.parametrize('option, sent', [('auto', 'auto'), ('true', True), ('false', False)])
def test_block_migration_and_scheduler_choice(cloud, clock, option, sent):
    cloud.add_server('compute1', 'web-1')
    drain(cloud, clock, block_migration=option)
    assert cloud.migrations[0]['body'] == dict(host=None, block_migration=sent)


def test_target_hosts_are_used_in_turn(cloud, clock):
    cloud.add_host('compute4')
    for index in range(4):
        cloud.add_server('compute1', 'vm-%d' % index)
    cloud.add_server('compute1', 'off', status='SHUTOFF')
    result = drain(cloud, clock, target_hosts=['compute3', 'compute4'])
    assert result['candidate_hosts'] == ['compute3', 'compute4']
    assert [(r['name'], r['to']) for r in result['instances']] == [
        ('off', 'compute3'), ('vm-0', 'compute4'), ('vm-1', 'compute3'), ('vm-2', 'compute4'), ('vm-3', 'compute3')]
    assert cloud.migrations[-1]['body'] == dict(host='compute3')  # the cold migration names its target too


def test_concurrency_bounds_the_moves_in_flight(cloud, clock):
    for index in range(8):
        cloud.add_server('compute1', 'vm-%d' % index)
        cloud.behaviour['vm-%d' % index] = dict(live='slow')
    result = drain(cloud, clock, concurrency=3)
    assert result['totals']['moved'] == 8
    assert 1 <= cloud.max_in_flight <= 3


def test_concurrency_one_moves_one_at_a_time(cloud, clock):
    for index in range(3):
        cloud.add_server('compute1', 'vm-%d' % index)
    drain(cloud, clock, concurrency=1)
    assert cloud.max_in_flight == 1
    assert cloud.actions() == [('vm-0', 'os-migrateLive'), ('vm-1', 'os-migrateLive'), ('vm-2', 'os-migrateLive')]


def test_slow_moves_are_polled_with_the_interval(cloud, clock):
    cloud.add_server('compute1', 'web-1')
    cloud.behaviour['web-1'] = dict(live='slow')
    result = drain(cloud, clock, poll_interval=0.5)
    assert clock.sleeps == [0.5]
    assert by_name(result)['web-1']['seconds'] == 0.5


# ---------------------------------------------------------------------------------------------------------
# idempotency and check mode


def test_rerun_on_an_empty_disabled_host_changes_nothing(cloud, clock):
    cloud.service('compute1').update(status='disabled', disabled_reason=DEFAULT_REASON)
    for check_mode in (True, False):
        result = drain(cloud, clock, check_mode=check_mode)
        assert result['changed'] is False and result['service_changed'] is False
        assert result['instances'] == [] and result['totals']['instances'] == 0
    assert cloud.puts() == [] and cloud.sent('compute', 'POST') == []


def test_a_host_disabled_for_another_reason_keeps_it_and_is_still_drained(cloud, clock):
    cloud.service('compute1').update(status='disabled', disabled_reason='hardware ticket 7')
    cloud.add_server('compute1', 'web-1')
    result = drain(cloud, clock)
    assert result['changed'] is True and result['service_changed'] is False
    assert cloud.puts() == [] and cloud.service('compute1')['disabled_reason'] == 'hardware ticket 7'
    assert result['diff']['after']['disabled_reason'] == 'hardware ticket 7'
    assert on_host(cloud, 'compute1') == []


def test_check_mode_reports_the_plan_and_sends_nothing(cloud, clock):
    cloud.add_server('compute1', 'web-1')
    cloud.add_server('compute1', 'db-1', status='SHUTOFF')
    result = drain(cloud, clock, check_mode=True, target_hosts=['compute2'])
    assert result['changed'] is True and result['service_changed'] is True
    assert result['service']['enabled'] is True  # as read
    assert [(r['name'], r['method'], r['outcome'], r['to'], r['attempts']) for r in result['instances']] == [
        ('db-1', 'cold', 'would_move', 'compute2', 0), ('web-1', 'live', 'would_move', 'compute2', 0)]
    assert result['totals']['would_move'] == 2 and result['totals']['live'] == 1 and result['totals']['cold'] == 1
    assert result['diff']['after'] == dict(enabled=False, disabled_reason=DEFAULT_REASON, instances=[])
    assert [(r.method, r.path) for r in cloud.requests] == [('GET', '/os-services'), ('GET', '/servers/detail'),
                                                            ('GET', '/os-migrations')]
    assert on_host(cloud, 'compute1') == ['db-1', 'web-1']


def test_check_mode_on_a_disabled_host_with_instances_is_a_change(cloud, clock):
    cloud.service('compute1').update(status='disabled', disabled_reason='x')
    cloud.add_server('compute1', 'web-1')
    result = drain(cloud, clock, check_mode=True)
    assert result['changed'] is True and result['service_changed'] is False
    assert by_name(result)['web-1']['to'] is None  # the scheduler chooses


def test_check_mode_fails_when_instances_would_stay(cloud, clock):
    cloud.add_server('compute1', 'web-1')
    cloud.add_server('compute1', 'broken', status='ERROR')
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock, check_mode=True)
    assert caught.value.msg.startswith('drain of compute1 incomplete: 1 of 2 instance(s) would stay on it: broken (')
    assert caught.value.facts['changed'] is True
    assert cloud.sent('compute', 'POST') == [] and cloud.puts() == []


# ---------------------------------------------------------------------------------------------------------
# what is not moved


def test_error_and_other_states_are_reported_not_moved_and_the_run_fails_after_moving_the_rest(cloud, clock):
    cloud.add_server('compute1', 'web-1')
    broken = cloud.add_server('compute1', 'broken', status='ERROR')
    broken['fault'] = dict(code=500, message='disk gone')
    cloud.add_server('compute1', 'sleepy', status='SUSPENDED')
    cloud.add_server('compute1', 'busy', task_state='rebooting')
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock)
    facts = caught.value.facts
    assert sorted(facts) == sorted(DRAIN_RESULT_KEYS + ('changed',))
    assert facts['changed'] is True
    records = dict((r['name'], r) for r in facts['instances'])
    assert records['web-1']['outcome'] == 'moved'
    assert records['broken']['outcome'] == 'skipped' and records['broken']['reason'] == (
        'ERROR: disk gone: Nova migrates no instance in ERROR; repair it, or set reset_error_instances to reset it '
        'to active and move it')
    assert records['sleepy']['reason'] == ('SUSPENDED: Nova live-migrates only ACTIVE or PAUSED instances and '
                                           'cold-migrates only ACTIVE or SHUTOFF ones')
    assert records['busy']['reason'] == 'busy: task state rebooting; run the drain again when Nova has finished it'
    assert facts['totals']['skipped'] == 3 and facts['totals']['moved'] == 1
    assert caught.value.msg.startswith('drain of compute1 incomplete: 3 of 4 instance(s) are still on it: ')
    assert 'do not take it down' in caught.value.msg
    assert cloud.service('compute1')['status'] == 'disabled'


def test_failure_message_lists_ten_and_counts_the_rest(cloud, clock):
    for index in range(12):
        cloud.add_server('compute1', 'e%02d' % index, status='ERROR')
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock)
    assert '; and 2 more.' in caught.value.msg and 'e09' in caught.value.msg and 'e10' not in caught.value.msg
    assert caught.value.facts['changed'] is True  # the service was disabled


def test_shutoff_without_cold_fallback_is_skipped(cloud, clock):
    cloud.add_server('compute1', 'db-1', status='SHUTOFF')
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock, cold_migration_fallback=False)
    record = caught.value.facts['instances'][0]
    assert record['outcome'] == 'skipped' and record['method'] is None
    assert record['reason'] == 'SHUTOFF: live migration needs a running instance, and cold_migration_fallback is false'


def test_error_instances_are_reset_and_moved_when_asked(cloud, clock):
    cloud.add_server('compute1', 'broken', status='ERROR')
    result = drain(cloud, clock, reset_error_instances=True)
    record = result['instances'][0]
    assert record['outcome'] == 'moved' and record['status_before'] == 'ERROR' and record['status_after'] == 'ACTIVE'
    assert cloud.actions() == [('broken', 'os-resetState'), ('broken', 'os-migrateLive')]
    assert cloud.sent('compute', 'POST')[0].body == {'os-resetState': {'state': 'active'}}


def test_refused_reset_fails_the_instance(cloud, clock):
    cloud.add_server('compute1', 'broken', status='ERROR')
    cloud.behaviour['broken'] = dict(reject_reset=True)
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock, reset_error_instances=True)
    record = caught.value.facts['instances'][0]
    assert record['outcome'] == 'failed' and record['attempts'] == 0
    assert record['reason'].startswith('Nova refused to reset the state of server broken (')
    assert record['reason'].endswith(') to active (HTTP 400): reset refused by the fake')


def test_an_instance_that_appears_during_the_drain_is_reported(cloud, clock):
    cloud.add_server('compute1', 'web-1')

    def boot_one(server):
        cloud.on_get = None
        cloud.add_server('compute1', 'late')
    cloud.on_get = boot_one
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock)
    late = [r for r in caught.value.facts['instances'] if r['name'] == 'late'][0]
    assert late['outcome'] == 'skipped'
    assert late['reason'] == 'appeared on compute1 during the drain (booted or moved there before the disable)'


# ---------------------------------------------------------------------------------------------------------
# failures and the cold fallback


@pytest.mark.parametrize('script, reason', [
    (dict(live='error'), "live migration failed (live migration to compute2 ended 'error'), moved by cold migration"),
    (dict(reject_live=True), 'live migration failed (Nova refused to live-migrate server web-1 ('),
    (dict(live='stay'), 'live migration failed (live migration ended with the instance still on compute1 '
                        '(migration completed)), moved by cold migration'),
])
def test_a_failed_live_migration_falls_back_to_cold(cloud, clock, script, reason):
    cloud.add_server('compute1', 'web-1')
    cloud.behaviour['web-1'] = script
    result = drain(cloud, clock)
    record = result['instances'][0]
    assert record['outcome'] == 'moved' and record['method'] == 'cold' and record['attempts'] == 2
    assert record['reason'].startswith(reason)
    assert record['to'] == 'compute2' and record['status_after'] == 'ACTIVE'
    assert cloud.actions()[-2:] == [('web-1', 'migrate'), ('web-1', 'confirmResize')]


def test_without_fallback_a_failed_live_migration_fails(cloud, clock):
    cloud.add_server('compute1', 'web-1')
    cloud.behaviour['web-1'] = dict(live='error')
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock, cold_migration_fallback=False)
    record = caught.value.facts['instances'][0]
    assert record['outcome'] == 'failed' and record['attempts'] == 1 and record['to'] is None
    assert record['reason'] == "live migration to compute2 ended 'error'"
    assert cloud.actions() == [('web-1', 'os-migrateLive')]


def test_a_live_migration_leaving_the_instance_in_error_is_not_retried_cold(cloud, clock):
    cloud.add_server('compute1', 'web-1')
    cloud.behaviour['web-1'] = dict(live='to_error')
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock)
    record = caught.value.facts['instances'][0]
    assert record['outcome'] == 'failed' and record['status_after'] == 'ERROR'
    assert record['reason'] == "live migration to compute2 ended 'failed': fake hypervisor exploded"


def test_an_instance_in_error_without_a_failed_migration_is_failed(cloud, clock):
    server = cloud.add_server('compute1', 'web-1')
    cloud.behaviour['web-1'] = dict(live='stuck')

    def explode(raw):
        if raw['OS-EXT-STS:task_state'] == 'migrating':
            raw.update({'status': 'ERROR', 'OS-EXT-STS:task_state': None})
    cloud.on_get = explode
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock)
    assert caught.value.facts['instances'][0]['reason'] == 'live migration left the instance in ERROR'
    assert server['status'] == 'ERROR'


def test_no_cold_fallback_when_the_instance_is_no_longer_movable(cloud, clock):
    cloud.add_server('compute1', 'web-1')
    cloud.behaviour['web-1'] = dict(reject_live=True)

    def suspend(raw):
        raw.update({'status': 'SUSPENDED'})
    cloud.on_get = suspend
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock)
    reason = caught.value.facts['instances'][0]['reason']
    assert reason.endswith('; no cold migration tried: the instance is now SUSPENDED on compute1, task state none')


def test_no_valid_host_for_the_target_ends_in_a_failed_cold_migration(cloud, clock):
    cloud.add_server('compute1', 'web-1')
    cloud.behaviour['web-1'] = dict(live='error', cold='error')
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock)
    record = caught.value.facts['instances'][0]
    assert record['outcome'] == 'failed' and record['attempts'] == 2
    assert record['reason'] == "cold migration ended 'error'"


@pytest.mark.parametrize('script, reason', [
    (dict(cold='to_error'), "cold migration ended 'failed': fake hypervisor exploded"),
    (dict(cold='stay'), 'cold migration ended with the instance still on compute1 (migration finished)'),
    (dict(reject_cold=True), 'Nova refused to cold-migrate server db-1 ('),
    (dict(confirm='to_error'), 'confirming the cold migration failed (migration failed, instance ERROR): fake'),
    (dict(cold='delete'), 'the instance was deleted during the cold migration'),
])
def test_cold_migration_failures(cloud, clock, script, reason):
    cloud.add_server('compute1', 'db-1', status='SHUTOFF')
    cloud.behaviour['db-1'] = script
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock)
    record = caught.value.facts['instances'][0]
    assert record['outcome'] == 'failed' and record['method'] == 'cold'
    assert record['reason'].startswith(reason)


def test_cold_migration_ending_on_the_source_is_failed(cloud, clock):
    cloud.add_server('compute1', 'db-1', status='SHUTOFF')
    cloud.behaviour['db-1'] = dict(cold='stuck')

    def give_up(raw):
        if raw['OS-EXT-STS:task_state'] == 'resize_prep':
            raw.update({'OS-EXT-STS:task_state': None, 'status': 'SHUTOFF'})
    cloud.on_get = give_up
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock)
    assert caught.value.facts['instances'][0]['reason'] == (
        'cold migration ended with the instance still on compute1 (migration pre-migrating)')


def test_cold_migration_into_error_is_failed(cloud, clock):
    cloud.add_server('compute1', 'db-1', status='SHUTOFF')
    cloud.behaviour['db-1'] = dict(cold='stuck')

    def explode(raw):
        raw.update({'status': 'ERROR'})
    cloud.on_get = explode
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock)
    assert caught.value.facts['instances'][0]['reason'] == 'cold migration left the instance in ERROR'


def test_a_stuck_live_migration_times_out_and_is_not_retried(cloud, clock):
    cloud.add_server('compute1', 'web-1')
    cloud.add_server('compute1', 'web-2')
    cloud.behaviour['web-1'] = dict(live='stuck')
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock, timeout=10, concurrency=1)
    records = dict((r['name'], r) for r in caught.value.facts['instances'])
    assert records['web-1']['outcome'] == 'failed' and records['web-1']['attempts'] == 1
    assert records['web-1']['reason'] == (
        'the live migration did not finish within the timeout of 10 s: the instance is MIGRATING on compute1, task '
        'state migrating, migration running')
    assert records['web-1']['to'] == 'compute2' and records['web-1']['seconds'] == 10.0
    assert records['web-2']['outcome'] == 'moved'
    assert ('web-1', 'migrate') not in cloud.actions()


def test_a_stuck_confirmation_times_out(cloud, clock):
    cloud.add_server('compute1', 'db-1', status='SHUTOFF')
    cloud.behaviour['db-1'] = dict(confirm='stuck')
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock, timeout=5)
    assert caught.value.facts['instances'][0]['reason'] == (
        'the confirmation of the cold migration did not finish within the timeout of 5 s: the instance is '
        'VERIFY_RESIZE on compute2, task state none, migration confirming')


def test_timeout_before_the_migration_record_appears(cloud, clock):
    cloud.add_server('compute1', 'web-1')
    cloud.behaviour['web-1'] = dict(live='stuck')

    def hide(raw):
        cloud.migrations[:] = [m for m in cloud.migrations if m['instance_uuid'] != raw['id']]
    cloud.on_get = hide
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock, timeout=1, cold_migration_fallback=False)
    assert caught.value.facts['instances'][0]['reason'].endswith('migration not recorded yet')


def test_api_errors_while_following_fail_only_that_instance(cloud, clock):
    cloud.add_server('compute1', 'web-1')
    cloud.add_server('compute1', 'web-2')
    target = cloud.server('web-1')['id']
    cloud.fail('compute', 'GET', '^/servers/%s$' % target, status=503, text='maintenance')
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock)
    records = dict((r['name'], r) for r in caught.value.facts['instances'])
    assert records['web-1']['outcome'] == 'failed'
    assert records['web-1']['reason'].startswith('cannot read server %s: the compute API answered HTTP 503' % target)
    assert records['web-2']['outcome'] == 'moved'


def test_unreachable_api_on_an_action_fails_without_fallback(cloud, clock):
    cloud.add_server('compute1', 'web-1')
    cloud.fail('compute', 'POST', '/action$', exception=ksa_exceptions.ConnectFailure('refused'))
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock)
    record = caught.value.facts['instances'][0]
    assert record['reason'].startswith('cannot live-migrate server web-1 (')
    assert record['reason'].endswith('from compute1: the compute API is unreachable: refused')
    assert record['attempts'] == 1 and cloud.actions() == [('web-1', 'os-migrateLive')]


def test_an_instance_reported_moved_but_still_listed_is_failed(cloud, clock, monkeypatch):
    cloud.add_server('compute1', 'web-1')
    real = _drain.host_servers
    calls = []

    def stale(conn, host):
        calls.append(host)
        servers = real(conn, host)
        return servers if len(calls) == 1 else [dict(cloud.server('web-1'), **{'OS-EXT-SRV-ATTR:host': host})]
    monkeypatch.setattr(_drain, 'host_servers', stale)
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock)
    assert caught.value.facts['instances'][0]['reason'] == 'Nova still lists the instance on compute1 after its move'


# ---------------------------------------------------------------------------------------------------------
# resuming what an interrupted run left in flight


def test_an_interrupted_live_migration_is_followed_not_restarted(cloud, clock):
    server = cloud.add_server('compute1', 'web-1', status='MIGRATING', task_state='migrating')
    migration = cloud.add_migration(server['id'], 'compute1', 'compute3', 'running', migration_type='live-migration')
    cloud.moving[server['id']] = dict(phase='live', plan='ok', migration=migration, status='ACTIVE',
                                      vm_state='active', steps=0)
    result = drain(cloud, clock)
    record = result['instances'][0]
    assert record['outcome'] == 'moved' and record['attempts'] == 0 and record['to'] == 'compute3'
    assert record['method'] == 'live' and record['status_before'] == 'MIGRATING' and record['status_after'] == 'ACTIVE'
    assert cloud.sent('compute', 'POST') == []


def test_an_interrupted_cold_migration_is_followed_and_confirmed(cloud, clock):
    server = cloud.add_server('compute1', 'db-1', status='RESIZE', task_state='resize_migrating')
    migration = cloud.add_migration(server['id'], 'compute1', 'compute2', 'migrating', migration_type='migration')
    cloud.moving[server['id']] = dict(phase='cold', plan='ok', migration=migration, status='SHUTOFF',
                                      vm_state='stopped', steps=0)
    result = drain(cloud, clock)
    record = result['instances'][0]
    assert record['outcome'] == 'moved' and record['attempts'] == 0 and record['status_after'] == 'SHUTOFF'
    assert cloud.actions() == [('db-1', 'confirmResize')]


def test_a_cold_migration_left_unconfirmed_is_confirmed(cloud, clock):
    left = cloud.add_server('compute2', 'db-1', status='VERIFY_RESIZE', vm_state='resized')
    migration = cloud.add_migration(left['id'], 'compute1', 'compute2', 'finished', migration_type='migration')
    cloud.moving[left['id']] = dict(phase='cold', plan='ok', migration=migration, status='SHUTOFF',
                                    vm_state='stopped', steps=1, done=True)
    done = cloud.add_server('compute2', 'old-1')  # confirmed long ago
    cloud.add_migration(done['id'], 'compute1', 'compute2', 'confirmed', migration_type='migration')
    back = cloud.add_server('compute1', 'back-1')  # reverted: back on compute1, moved normally
    cloud.add_migration(back['id'], 'compute1', 'compute2', 'finished', migration_type='migration')
    gone = cloud.add_migration('deleted-server', 'compute1', 'compute2', 'finished', migration_type='migration')
    stale = cloud.add_server('compute3', 'stale-1', status='ACTIVE')  # finished, yet no longer VERIFY_RESIZE
    cloud.add_migration(stale['id'], 'compute1', 'compute3', 'finished', migration_type='migration')
    assert gone

    plan = drain(cloud, clock, check_mode=True)
    assert [(r['name'], r['method'], r['outcome'], r['to']) for r in plan['instances']] == [
        ('back-1', 'live', 'would_move', None), ('db-1', 'cold', 'would_move', 'compute2')]

    result = drain(cloud, clock)
    records = by_name(result)
    assert records['db-1']['outcome'] == 'moved' and records['db-1']['attempts'] == 0
    assert records['db-1']['status_before'] == 'VERIFY_RESIZE' and records['db-1']['status_after'] == 'SHUTOFF'
    assert records['db-1']['reason'] == 'cold migration to compute2 left unconfirmed by an earlier run'
    assert migration['status'] == 'confirmed'
    assert sorted(cloud.actions()) == [('back-1', 'os-migrateLive'), ('db-1', 'confirmResize')]


def test_plan_instance_decisions():
    host = 'compute1'
    assert plan_instance(dict(status='ACTIVE'), host, True, False)[1] == 'new'
    assert plan_instance(dict(status='SHUTOFF'), host, True, False)[0]['method'] == 'cold'
    assert plan_instance(dict(status='ERROR'), host, True, True)[1] == 'reset'
    assert plan_instance({'status': 'RESIZE', 'OS-EXT-STS:task_state': 'resize_prep'}, host, False, False)[1] == \
        'adopt'


# ---------------------------------------------------------------------------------------------------------
# refusals before anything changes


def assert_refused(cloud, clock, message, **kwargs):
    with pytest.raises(DrainError) as caught:
        drain(cloud, clock, **kwargs)
    assert caught.value.msg == message
    assert caught.value.facts['changed'] is False
    assert cloud.puts() == [] and cloud.sent('compute', 'POST') == []
    return caught.value


def test_unknown_host(cloud, clock):
    refusal = assert_refused(cloud, clock, "no nova-compute service for host 'compute9'; Nova knows the compute "
                                           "hosts compute1, compute2, compute3", host='compute9')
    assert sorted(refusal.facts) == sorted(DRAIN_RESULT_KEYS + ('changed',))
    assert refusal.facts['service'] is None and refusal.facts['instances'] == []


@pytest.mark.parametrize('update, words', [(dict(forced_down=True), 'forced down'), (dict(state='down'), 'down')])
def test_a_down_host_is_sent_to_nova_evacuate(cloud, clock, update, words):
    cloud.service('compute1').update(update)
    cloud.add_server('compute1', 'web-1')
    assert_refused(cloud, clock, 'refusing to drain compute1: its nova-compute service is %s, and live or cold '
                                 'migration needs the source host running; for a failed host use nova_evacuate'
                                 % words)


def test_a_down_empty_host_is_only_disabled(cloud, clock):
    cloud.service('compute1').update(state='down')
    result = drain(cloud, clock)
    assert result['changed'] is True and cloud.puts() == [dict(status='disabled', disabled_reason=DEFAULT_REASON)]


def test_no_other_usable_host(cloud, clock):
    cloud.service('compute2').update(status='disabled', disabled_reason='reserved')
    cloud.service('compute3').update(forced_down=True)
    cloud.add_server('compute1', 'web-1')
    assert_refused(cloud, clock, 'refusing to drain compute1: no other compute host is enabled and up to take its 1 '
                                 'instance(s)')


@pytest.mark.parametrize('targets, message', [
    (['compute1'], 'target_hosts lists compute1, the host being drained: list other hosts'),
    (['compute7'], "no nova-compute service for host 'compute7'; Nova knows the compute hosts compute1, compute2, "
                   "compute3"),
    (['compute2'], "target host compute2 cannot take instances from compute1: its nova-compute service is up, "
                   "disabled (reserved), and Nova's scheduler never places instances on such a host; enable it or "
                   "list other targets"),
    (['compute3'], "target host compute3 cannot take instances from compute1: its nova-compute service is forced "
                   "down, disabled (no reason given), and Nova's scheduler never places instances on such a host; "
                   "enable it or list other targets"),
])
def test_bad_target_hosts(cloud, clock, targets, message):
    cloud.service('compute2').update(status='disabled', disabled_reason='reserved')
    cloud.service('compute3').update(forced_down=True, status='disabled')
    assert_refused(cloud, clock, message, target_hosts=targets)


@pytest.mark.parametrize('kwargs, message', [
    (dict(block_migration='maybe'), "block_migration must be one of auto, true, false, not 'maybe'"),
    (dict(concurrency=0), 'concurrency (0) and timeout (600) must be positive'),
    (dict(timeout=0), 'concurrency (4) and timeout (0) must be positive'),
])
def test_bad_options(cloud, clock, kwargs, message):
    assert_refused(cloud, clock, message, **kwargs)


def test_a_pinned_microversion_is_used_when_new_enough(cloud, clock):
    cloud.config.microversions['compute'] = '2.90'
    cloud.add_server('compute1', 'web-1')
    drain(cloud, clock)
    assert set(r.microversion for r in cloud.requests if r.service == 'compute') == {'2.90'}


def test_latest_microversion_pin(cloud):
    cloud.config.microversions['compute'] = 'latest'
    assert action_microversion(cloud, 'live') == 'latest'


@pytest.mark.parametrize('pin, kind, what', [
    ('2.30', 'live', 'live-migrate'),
    ('banana', 'cold', 'cold-migrate to a target host'),
])
def test_action_microversion_refuses_an_old_pin(cloud, pin, kind, what):
    cloud.config.microversions['compute'] = pin
    with pytest.raises(DrainError) as caught:
        action_microversion(cloud, kind)
    expected = ("compute microversion %s is too old to %s: it needs %s or later; unset compute_microversion (and "
                "the cloud's compute default microversion) or raise it" % (pin, what, _drain.ACTION_MICROVERSIONS[kind]))
    assert caught.value.msg == expected
