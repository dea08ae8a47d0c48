"""The evacuation core (_evacuate.py) against a fake Nova faked at the openstacksdk boundary: every branch.

EvacuationCloud extends nova_fakes.FakeCloud with what nova_evacuate needs: server actions (evacuate, lock,
unlock, os-start, os-stop), single-server reads, the `locked` and `instance_uuid` filters, and evacuations that
progress each time the moving server is read, the way Nova 34 runs them (see _evacuate.py's docstring): the API
sets task state `rebuilding` and creates an 'accepted' migration, and accepts a second evacuation of a moving
instance; a success changes the host, then marks the migration 'done'; a failure leaves the instance on its host.
"""

import datetime
import re
import threading
import time

import pytest
from keystoneauth1 import exceptions as ksa_exceptions

from ansible_collections.openstack_ha.recovery.plugins.module_utils import _evacuate
from ansible_collections.openstack_ha.recovery.plugins.module_utils._evacuate import (
    LOCK_REASON,
    EvacuationError,
    evacuate_host,
    resolve_priority,
)
from ansible_collections.openstack_ha.recovery.plugins.module_utils._openstack import RecoveryError
from ansible_collections.openstack_ha.recovery.tests.unit.plugins.nova_fakes import (
    FakeCloud,
    FakeProxy,
    FakeResponse,
    nova_error,
)


class ActionProxy(FakeProxy):
    def post(self, url, microversion=None, json=None):
        return self.cloud.request(self.service, 'POST', url, microversion, json)


def _version(microversion):
    if microversion == 'latest':
        return (2, 100)
    major, minor = str(microversion).split('.')
    return (int(major), int(minor))


class EvacuationCloud(FakeCloud):
    """FakeCloud with server actions and evacuations that advance one step each time the server is read.

    script(server, 'novalidhost', 'ok', polls=3): the outcomes of its next evacuations, in order ('ok',
    'novalidhost', 'failed', 'claim', 'error-on-dest', 'stuck', 'cut' - claimed by its destination, which dies),
    each `polls` seconds (of the cloud's clock) after its request. A power action takes a second.
    """

    def __init__(self, clock=None):
        super(EvacuationCloud, self).__init__()
        self.clock = clock or Clock()
        self.compute = ActionProxy(self, 'compute')
        self.mutex = threading.RLock()
        self.scripts = {}
        self.jobs = {}
        self.polls = 2
        self.moving = 0
        self.most_moving = 0
        self.conductor_takes_first_accepted = False
        self.claims = {}  # server id -> hosts the scheduler claimed for a move (Placement allocations)

    # -- building ------------------------------------------------------------------------------------------

    def script(self, server, *outcomes, **kwargs):
        self.scripts[server['id']] = [(outcome, kwargs.get('polls', self.polls)) for outcome in outcomes]

    def server(self, name):
        return next(s for s in self.servers if s['name'] == name)

    def crash(self, host):
        self.service(host).update(forced_down=True, status='disabled', disabled_reason='fenced')

    # -- reading what happened -----------------------------------------------------------------------------

    def actions(self, kind=None):
        """(server name, action, body) of every POST /servers/{id}/action, in order."""
        found = []
        for request in self.sent('compute', 'POST'):
            server_id = request.path.split('/')[2]
            name = next((s['name'] for s in self.servers if s['id'] == server_id), server_id)
            action = list(request.body)[0]
            if kind is None or action == kind:
                found.append((name, action, request.body[action]))
        return found

    def evacuations(self):
        return [(name, body.get('host')) for name, dummy, body in self.actions('evacuate')]

    # -- answering -----------------------------------------------------------------------------------------

    def request(self, service, method, url, microversion, body):
        with self.mutex:
            self._advance()
            return super(EvacuationCloud, self).request(service, method, url, microversion, body)

    def _find(self, server_id):
        return next((s for s in self.servers if s['id'] == server_id), None)

    def _compute_get(self, path, query, body):
        match = re.match(r'^/servers/([^/]+)$', path)
        if match and match.group(1) != 'detail':
            server = self._find(match.group(1))
            if server is None:
                return nova_error(404, 'Instance %s could not be found.' % match.group(1))
            return FakeResponse(200, dict(server=server))
        if path == '/servers/detail' and 'locked' in query:
            assert query.get('all_tenants') == 'True'
            return self._page([s for s in self.servers if s['locked']], query, 'servers', 'id', path)
        if path == '/os-migrations' and 'instance_uuid' in query:
            found = [m for m in self.migrations if m['instance_uuid'] == query['instance_uuid']
                     and query.get('migration_type') in (None, m['migration_type'])]
            return FakeResponse(200, dict(migrations=found))
        return super(EvacuationCloud, self)._compute_get(path, query, body)

    def _compute_post(self, path, query, body):
        match = re.match(r'^/servers/([^/]+)/action$', path)
        server = self._find(match.group(1)) if match else None
        if server is None:
            return nova_error(404, 'Instance could not be found.')
        action = list(body)[0]
        microversion = self.requests[-1].microversion
        if action == 'lock':
            server.update(locked=True, locked_reason=(body['lock'] or {}).get('locked_reason'))
            return FakeResponse(202, text='')
        if action == 'unlock':
            server.update(locked=False, locked_reason=None)
            return FakeResponse(202, text='')
        if action in ('os-start', 'os-stop'):
            wanted = 'SHUTOFF' if action == 'os-start' else 'ACTIVE'
            if server['status'] != wanted:
                return nova_error(409, "Cannot '%s' instance %s while it is in vm_state %s"
                                  % (action[3:], server['id'], server['OS-EXT-STS:vm_state']))
            server.update({'OS-EXT-STS:task_state': 'powering-on' if action == 'os-start' else 'powering-off'})
            self.jobs[server['id']] = dict(power=action, due=self.clock() + 1)
            return FakeResponse(202, text='')
        if action == 'evacuate':
            return self._evacuate(server, body['evacuate'], microversion)
        return nova_error(400, 'unknown action %s' % action)

    def _placement_get(self, path, query, body):
        match = re.match(r'^/allocations/([^/]+)$', path)
        if not match:
            return super(EvacuationCloud, self)._placement_get(path, query, body)
        server = self._find(match.group(1))
        hosts = ([server['OS-EXT-SRV-ATTR:host']] if server else []) + self.claims.get(match.group(1), [])
        nodes = [h['id'] for h in self.hypervisors if h['service']['host'] in hosts]
        return FakeResponse(200, dict(allocations=dict((node, dict(resources=dict(VCPU=2))) for node in nodes)))

    def _usable(self, host):
        service = self.service(host)
        return service['status'] == 'enabled' and service['state'] == 'up' and not service['forced_down']

    def _evacuate(self, server, body, microversion):
        source = server['OS-EXT-SRV-ATTR:host']
        service = self.service(source)
        if service['state'] == 'up' and not service['forced_down']:
            return nova_error(400, 'Compute service of %s is still in use.' % source)
        target = body.get('host')
        if target is not None and target not in [s['host'] for s in self.services]:
            return nova_error(404, 'Compute host %s not found.' % target)
        if target == source:
            return nova_error(400, "The target host can't be the same one.")
        if server['OS-EXT-STS:vm_state'] not in ('active', 'stopped', 'error'):
            return nova_error(409, "Cannot 'evacuate' instance %s while it is in vm_state %s"
                              % (server['id'], server['OS-EXT-STS:vm_state']))
        # like Nova: no task state check, a moving instance is accepted again
        migration = self.add_migration(server['id'], source, target, 'accepted')
        migration['created_at'] = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%f')
        if self.conductor_takes_first_accepted:
            # like Nova's conductor (Migration.get_by_instance_and_status(..., 'accepted') is the oldest one)
            migration = next(m for m in reversed(self.migrations) if m['instance_uuid'] == server['id']
                             and m['status'] == 'accepted')
        outcome, polls = (self.scripts.get(server['id']) or [('ok', self.polls)]).pop(0) \
            if self.scripts.get(server['id']) else ('ok', self.polls)
        if target is None:
            target = next((s['host'] for s in sorted(self.services, key=lambda s: s['host'])
                           if s['host'] != source and self._usable(s['host'])), None)
        if target is None or not self._usable(target):
            outcome = 'novalidhost'
        if outcome == 'cut':  # the destination claims it (pre-migrating) and dies before its rebuild ends
            migration.update(status='pre-migrating', dest_compute=target)
            self.claims.setdefault(server['id'], []).append(target)
        self.jobs[server['id']] = dict(migration=migration, outcome=outcome, due=self.clock() + polls, dest=target,
                                       vm_state=server['OS-EXT-STS:vm_state'],
                                       stops=_version(microversion) >= (2, 95))
        server.update({'OS-EXT-STS:task_state': 'rebuilding', 'status': 'REBUILD'})
        server.pop('fault', None)
        self.moving += 1
        self.most_moving = max(self.most_moving, self.moving)
        return FakeResponse(200, text='')

    def _set(self, server, vm_state):
        status = dict(active='ACTIVE', stopped='SHUTOFF', error='ERROR')[vm_state]
        server.update({'OS-EXT-STS:vm_state': vm_state, 'status': status, 'OS-EXT-STS:task_state': None})

    def _advance(self):
        for server_id, job in list(self.jobs.items()):
            server = self._find(server_id)
            if server is None:
                del self.jobs[server_id]
            elif job['due'] <= self.clock() and job.get('outcome') not in ('stuck', 'cut'):
                self._finish(server, job)

    def _finish(self, server, job):
        del self.jobs[server['id']]
        if 'power' in job:
            self._set(server, 'active' if job['power'] == 'os-start' else 'stopped')
            return
        self.moving -= 1
        migration, outcome = job['migration'], job['outcome']
        if outcome in ('ok', 'error-on-dest'):
            server['OS-EXT-SRV-ATTR:host'] = job['dest']
            migration.update(status='done', dest_compute=job['dest'])
            if outcome == 'error-on-dest':
                self._set(server, 'error')
                server['fault'] = dict(code=500, message='spawn failed on %s' % job['dest'])
            elif job['vm_state'] == 'stopped' or (job['stops'] and job['vm_state'] != 'error'):
                self._set(server, 'stopped')
            else:
                self._set(server, 'active')
        elif outcome == 'novalidhost':
            migration.update(status='error', dest_compute=None)
            self._set(server, 'error')
            server['fault'] = dict(code=500, message='No valid host was found. ')
        elif outcome == 'failed':
            migration.update(status='failed', dest_compute=job['dest'])
            self._set(server, 'error')
            server['fault'] = dict(code=500, message='Build of instance aborted on %s' % job['dest'])
        elif outcome == 'claim':
            migration.update(status='failed', dest_compute=job['dest'])
            self._set(server, job['vm_state'])


class Clock:
    """time.monotonic and time.sleep of a test: sleeping advances the clock at once (thread-safe); `real` seconds of
    real sleep let the worker threads interleave."""

    def __init__(self, real=0.0):
        self.now = 1000.0
        self.real = real
        self.mutex = threading.Lock()

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        with self.mutex:
            self.now += seconds
        if self.real:
            time.sleep(self.real)


def make_cloud(servers=3, host='compute1', clock=None):
    cloud = EvacuationCloud(clock)
    for name in ('compute1', 'compute2', 'compute3'):
        cloud.add_host(name)
    for index in range(servers):
        cloud.add_server(host, 'vm-%d' % index)
    cloud.crash(host)
    return cloud


@pytest.fixture
def cloud():
    return make_cloud()


def evacuate(cloud, **kwargs):
    """evacuate_host on the cloud's clock: sleeping advances it, and the evacuations with it."""
    kwargs.setdefault('host', 'compute1')
    return evacuate_host(cloud, clock=cloud.clock, sleep=cloud.clock.sleep, **kwargs)


def failing(cloud, **kwargs):
    with pytest.raises(EvacuationError) as caught:
        evacuate(cloud, **kwargs)
    return caught.value


def by_name(result):
    return dict((r['name'], r) for r in result['instances'])


def hosts_of(cloud):
    return dict((s['name'], (s['OS-EXT-SRV-ATTR:host'], s['status'])) for s in cloud.servers)


# ---------------------------------------------------------------------------------------------------------
# the host must be down


def test_refuses_a_host_whose_service_is_up_naming_it_and_sends_nothing():
    cloud = make_cloud()
    cloud.service('compute1').update(forced_down=False, status='enabled', state='up')
    error = failing(cloud)
    assert error.msg.startswith('refusing to evacuate compute1: its nova-compute service is up and not forced down')
    assert 'Fence compute1, force its service down' in error.msg
    assert error.facts['service']['host'] == 'compute1' and error.facts['instances'] == []
    assert error.facts['changed'] is False
    assert cloud.sent('compute', 'POST') == []
    assert [r.path for r in cloud.requests] == ['/os-services']


def test_refuses_in_check_mode_too():
    cloud = make_cloud()
    cloud.service('compute1').update(forced_down=False)
    assert failing(cloud, check_mode=True).msg.startswith('refusing to evacuate compute1')


def test_a_down_service_not_forced_down_is_evacuated():
    cloud = make_cloud()
    cloud.service('compute1').update(forced_down=False, state='down')
    result = evacuate(cloud)
    assert result['totals']['moved'] == 3


def test_unknown_host(cloud):
    error = failing(cloud, host='compute9')
    assert error.msg.startswith("no nova-compute service for host 'compute9'")
    assert error.facts['service'] is None and error.facts['totals'] is None


# ---------------------------------------------------------------------------------------------------------
# a plain evacuation


def test_every_instance_moves_locked_meanwhile_with_the_documented_record(cloud):
    result = evacuate(cloud)
    assert result['changed'] is True
    assert set(result) == set(_evacuate.RESULT_KEYS) | {'changed', 'diff', 'warnings'}
    assert hosts_of(cloud) == {'vm-0': ('compute2', 'ACTIVE'), 'vm-1': ('compute2', 'ACTIVE'),
                               'vm-2': ('compute2', 'ACTIVE')}
    record = by_name(result)['vm-0']
    server = cloud.server('vm-0')
    assert record == {
        'id': server['id'], 'name': 'vm-0', 'project_id': server['tenant_id'], 'from': 'compute1', 'to': 'compute2',
        'status_before': 'ACTIVE', 'status_after': 'ACTIVE', 'target_status': 'ACTIVE',
        'priority': 0, 'priority_source': 'default', 'evacuable': True, 'evacuable_source': 'default',
        'needs': dict(vcpus=2, memory_mb=512, disk_gb=1), 'action': 'evacuate', 'outcome': 'moved', 'reason': None,
        'candidates': ['compute2', 'compute3'], 'target_pool': 'scheduler', 'attempts': 1,
        'history': [dict(target=None, dest='compute2', migration_id=cloud.migrations[-1]['uuid'],
                         migration_status='done', error=None)],
        'lock': 'this run', 'power_action': None, 'resumed': False, 'seconds': record['seconds'],
        'lost_evacuations': []}
    assert record['seconds'] > 0
    assert result['totals'] == dict(instances=3, selected=3, moved=3, skipped=0, failed=0, planned=0, resumed=0,
                                    evacuations=3, last_evacuation_after=result['totals']['last_evacuation_after'],
                                    seconds=result['totals']['seconds'])
    assert result['microversion'] == '2.94'
    assert result['groups'] == [dict(priority=0, instances=[cloud.server('vm-%d' % i)['id'] for i in range(3)])]
    # locked with a reason before the evacuation, unlocked after
    for name in ('vm-0', 'vm-1', 'vm-2'):
        mine = [(action, body) for n, action, body in cloud.actions() if n == name]
        assert mine == [('lock', {'locked_reason': LOCK_REASON % ('compute1', 'ACTIVE')}), ('evacuate', {}),
                        ('unlock', None)]
        assert cloud.server(name)['locked'] is False
    assert result['diff']['before'][server['id']] == dict(host='compute1', status='ACTIVE')
    assert result['diff']['after'][server['id']] == dict(host='compute2', status='ACTIVE')


def test_microversions_of_every_request(cloud):
    evacuate(cloud)
    seen = set((r.method, re.sub(r'[0-9a-f-]{36}', 'ID', r.path), r.microversion) for r in cloud.requests
               if r.service == 'compute')
    assert seen == {
        ('GET', '/os-services', '2.53'), ('GET', '/os-aggregates', '2.41'), ('GET', '/servers/detail', '2.73'),
        ('GET', '/os-migrations', '2.59'), ('GET', '/os-hypervisors/detail', '2.53'), ('GET', '/servers/ID', '2.73'),
        ('POST', '/servers/ID/action', '2.73'), ('POST', '/servers/ID/action', '2.94')}
    assert set(r.microversion for r in cloud.sent('compute', 'POST') if 'evacuate' in r.body) == {'2.94'}


def test_a_second_identical_run_changes_nothing(cloud):
    evacuate(cloud)
    before = len(cloud.requests)
    again = evacuate(cloud)
    assert again['changed'] is False and again['instances'] == [] and again['totals']['selected'] == 0
    assert [r for r in cloud.requests[before:] if r.method == 'POST'] == []


def test_a_host_without_instances():
    cloud = make_cloud(servers=0)
    result = evacuate(cloud)
    assert result['changed'] is False and result['instances'] == [] and result['groups'] == []
    # the plan's migration list is read together with the servers (one request), and nothing after it
    assert len([r for r in cloud.requests if r.path == '/os-migrations']) == 1 and cloud.sent('compute', 'POST') == []


# ---------------------------------------------------------------------------------------------------------
# selection


def test_policy_flavor_image_and_aggregate_and_never_server_metadata():
    cloud = make_cloud(servers=0)
    cloud.add_server('compute1', 'flavor-no', extra_specs={'evacuable': 'false'})
    cloud.add_server('compute1', 'image-no', image_id='image-2')
    cloud.add_image('image-2', evacuable='no')
    cloud.add_server('compute1', 'meta-no', metadata={'evacuable': 'false'})
    cloud.add_server('compute1', 'plain')
    result = evacuate(cloud)
    records = by_name(result)
    assert records['flavor-no']['outcome'] == 'skipped'
    assert records['flavor-no']['reason'] == 'not evacuable: its flavor says evacuable is not true'
    assert records['image-no']['reason'] == 'not evacuable: its image says evacuable is not true'
    assert records['meta-no']['outcome'] == 'moved' and records['plain']['outcome'] == 'moved'
    assert cloud.evacuations() == [('meta-no', None), ('plain', None)]
    assert result['totals']['skipped'] == 2 and result['totals']['selected'] == 2


def test_aggregate_says_no():
    cloud = make_cloud(servers=1)
    cloud.add_aggregate('rack-a', ['compute1', 'compute2'], metadata={'evacuable': 'false'})
    record = evacuate(cloud)['instances'][0]
    assert record['outcome'] == 'skipped' and record['reason'] == 'not evacuable: its aggregate rack-a says ' \
                                                                  'evacuable is not true'


def test_only_marked_instances_with_evacuable_default_false():
    cloud = make_cloud(servers=0)
    cloud.add_server('compute1', 'marked', extra_specs={'ha': 'yes'})
    cloud.add_server('compute1', 'unmarked')
    records = by_name(evacuate(cloud, evacuable_tag='ha', evacuable_default=False))
    assert records['marked']['outcome'] == 'moved'
    assert records['unmarked']['outcome'] == 'skipped'
    assert records['unmarked']['reason'] == 'not evacuable: no flavor, image or aggregate marks it and ' \
                                            'evacuable_default is false'


def test_no_sources_evacuates_everything_and_reads_images_once_for_the_priority():
    cloud = make_cloud(servers=0)
    cloud.add_server('compute1', 'flavor-no', extra_specs={'evacuable': 'false'})
    cloud.add_server('compute1', 'same-image')
    result = evacuate(cloud, evacuable_sources=[])
    assert [r['outcome'] for r in result['instances']] == ['moved', 'moved']
    assert [r.path for r in cloud.sent('image')] == ['/images/image-1']  # missing image: priority 0


def test_exclude_and_include_by_name_or_id():
    cloud = make_cloud(servers=0)
    cloud.add_server('compute1', 'keep')
    marked_no = cloud.add_server('compute1', 'forced', extra_specs={'evacuable': 'false'})
    cloud.add_server('compute1', 'other')
    result = evacuate(cloud, exclude=['keep', 'nowhere'], include=[marked_no['id']])
    records = by_name(result)
    assert records['keep']['outcome'] == 'skipped' and records['keep']['reason'] == 'excluded by the exclude option'
    assert records['forced']['outcome'] == 'moved' and records['forced']['reason'] == 'listed in include'
    assert records['other']['outcome'] == 'moved'
    assert result['warnings'] == ["exclude entry 'nowhere' matches no instance on compute1"]
    assert hosts_of(cloud)['keep'] == ('compute1', 'ACTIVE')


def test_include_and_exclude_together_is_refused_before_any_request(cloud):
    error = failing(cloud, include=['vm-1', 'vm-2'], exclude=['vm-2'])
    assert error.msg == 'vm-2 listed in both include and exclude: keep each in one list'
    assert cloud.requests == []


@pytest.mark.parametrize('option, value, message', [
    ('concurrency', 0, 'concurrency must be at least 1, not 0'),
    ('retries', -1, 'retries must be at least 0, not -1'),
    ('timeout', 0, 'timeout must be at least 1, not 0'),
])
def test_bounds_of_the_numbers(cloud, option, value, message):
    assert failing(cloud, **{option: value}).msg == message
    assert cloud.requests == []


def test_error_instances_only_with_include_error_and_they_come_up_active():
    cloud = make_cloud(servers=0)
    cloud.add_server('compute1', 'broken', status='ERROR', vm_state='error')
    skipped = evacuate(cloud)['instances'][0]
    assert skipped['outcome'] == 'skipped' and skipped['reason'] == 'in ERROR and include_error is false'
    assert cloud.sent('compute', 'POST') == []
    moved = evacuate(cloud, include_error=True)['instances'][0]
    assert moved['outcome'] == 'moved' and moved['target_status'] == 'ACTIVE' and moved['status_before'] == 'ERROR'
    assert hosts_of(cloud)['broken'] == ('compute2', 'ACTIVE')


def test_include_moves_an_instance_in_error():
    cloud = make_cloud(servers=0)
    cloud.add_server('compute1', 'broken', status='ERROR', vm_state='error')
    assert evacuate(cloud, include=['broken'])['instances'][0]['outcome'] == 'moved'


def test_an_instance_in_error_after_a_failed_evacuation_is_retried_without_include_error():
    cloud = make_cloud(servers=0)
    server = cloud.add_server('compute1', 'retry-me', status='ERROR', vm_state='error')
    cloud.add_migration(server['id'], 'compute1', None, 'error')
    record = evacuate(cloud)['instances'][0]
    assert record['outcome'] == 'moved'
    assert record['reason'] == 'in ERROR since an earlier evacuation failed (migration error)'


def test_an_instance_nova_cannot_evacuate_fails_the_run_after_the_others_moved():
    cloud = make_cloud(servers=1)
    cloud.add_server('compute1', 'paused', status='PAUSED', vm_state='paused')
    error = failing(cloud)
    records = by_name(error.facts)
    assert records['vm-0']['outcome'] == 'moved'
    assert records['paused']['outcome'] == 'failed' and records['paused']['action'] == 'none'
    assert records['paused']['reason'].startswith('Nova evacuates only active, stopped and error instances; this one '
                                                  'is paused')
    assert error.msg.startswith('evacuation of compute1 incomplete: 1 of 2 selected instance(s) did not reach their '
                                'target state on another host - paused (')
    assert error.facts['totals']['failed'] == 1 and error.facts['changed'] is True


# ---------------------------------------------------------------------------------------------------------
# order


def test_priority_groups_run_one_after_the_other_highest_first():
    cloud = make_cloud(servers=0)
    cloud.add_server('compute1', 'low')
    cloud.add_server('compute1', 'high-a', extra_specs={'evacuation_priority': '10'})
    cloud.add_server('compute1', 'high-b', image_id='image-9')
    cloud.add_image('image-9', evacuation_priority='10')
    cloud.add_server('compute1', 'mid', extra_specs={'evacuation_priority': '5'}, image_id='image-9')
    cloud.add_server('compute1', 'odd', extra_specs={'evacuation_priority': 'high'})
    result = evacuate(cloud, concurrency=4)
    ids = dict((s['name'], s['id']) for s in cloud.servers)
    assert result['groups'] == [dict(priority=10, instances=[ids['high-a'], ids['high-b']]),
                                dict(priority=5, instances=[ids['mid']]),
                                dict(priority=0, instances=[ids['low'], ids['odd']])]
    records = by_name(result)
    assert (records['high-b']['priority'], records['high-b']['priority_source']) == (10, 'image')
    assert (records['mid']['priority'], records['mid']['priority_source']) == (5, 'flavor')
    assert (records['odd']['priority'], records['odd']['priority_source']) == (0, 'flavor')
    assert result['warnings'] == ["odd (%s): flavor evacuation_priority='high' is not an integer: priority 0 used"
                                  % ids['odd']]
    # a group starts only when every instance of the one before is in its target state (and unlocked)
    order = [(name, action) for name, action, dummy in cloud.actions() if action in ('evacuate', 'unlock')]
    position = dict(((name, action), index) for index, (name, action) in enumerate(order))
    assert max(position[(n, 'unlock')] for n in ('high-a', 'high-b')) < position[('mid', 'evacuate')]
    assert position[('mid', 'unlock')] < min(position[(n, 'evacuate')] for n in ('low', 'odd'))


def test_resolve_priority():
    assert resolve_priority('p', {'p': ' 7 '}, lambda: {'p': '9'}) == (7, 'flavor', None)
    assert resolve_priority('p', {}, lambda: {'p': '-3'}) == (-3, 'image', None)
    assert resolve_priority('p', {}, lambda: None) == (0, 'default', None)
    assert resolve_priority('p', {}, lambda: {'p': None}) == (0, 'image', "image p=None is not an integer: "
                                                                          "priority 0 used")


# ---------------------------------------------------------------------------------------------------------
# targets


def test_target_hosts_spread_in_turn(cloud):
    cloud.add_host('compute4')
    result = evacuate(cloud, target_hosts=['compute3', 'compute4'])
    assert cloud.evacuations() == [('vm-0', 'compute3'), ('vm-1', 'compute4'), ('vm-2', 'compute3')]
    assert by_name(result)['vm-1']['candidates'] == ['compute4', 'compute3']
    assert result['diff']['after'][cloud.server('vm-1')['id']]['host'] == 'compute4'


def test_target_hosts_without_spread_fill_the_first(cloud):
    cloud.add_host('compute4')
    evacuate(cloud, target_hosts=['compute3', 'compute4'], target_spread=False, concurrency=1)
    assert cloud.evacuations() == [('vm-0', 'compute3'), ('vm-1', 'compute3'), ('vm-2', 'compute3')]


def test_unusable_target_hosts_are_left_out_and_reported(cloud):
    cloud.add_host('compute4', status='disabled', disabled_reason='reserved')
    result = evacuate(cloud, target_hosts=['compute4', 'compute3'], check_mode=True)
    assert result['capacity']['excluded_hosts'] == [dict(host='compute4', reason='disabled',
                                                         disabled_reason='reserved')]
    assert [h['host'] for h in result['capacity']['hosts']] == ['compute3']


def test_no_usable_target_host_fails_before_anything_moves(cloud):
    cloud.add_host('compute4', state='down')
    error = failing(cloud, target_hosts=['compute4'])
    assert error.msg == ('no host can take the instances of compute1: compute4 (down). Nova would put every instance '
                         'it cannot place in ERROR; enable or add hosts first')
    assert cloud.sent('compute', 'POST') == [] and len(error.facts['instances']) == 3


def test_no_usable_host_for_the_scheduler_fails_before_anything_moves(cloud):
    for host in ('compute2', 'compute3'):
        cloud.service(host).update(status='disabled', disabled_reason='maintenance')
    error = failing(cloud)
    assert error.msg.startswith('no host can take the instances of compute1: compute2 (disabled), compute3 (disabled)')
    assert cloud.sent('compute', 'POST') == []


def test_unknown_or_same_target_host(cloud):
    unknown = failing(cloud, target_hosts=['compute7'])
    assert unknown.msg.startswith("no nova-compute service for host 'compute7'")
    same = failing(cloud, target_hosts=['compute1'])
    assert same.msg == 'target_hosts lists compute1, the host being evacuated: list other hosts'
    assert cloud.sent('compute', 'POST') == []


# ---------------------------------------------------------------------------------------------------------
# failures and retries


def test_a_failed_evacuation_is_retried_on_another_host_without_any_state_reset(cloud):
    cloud.script(cloud.server('vm-0'), 'novalidhost', 'ok')
    cloud.script(cloud.server('vm-1'), 'failed', 'ok')
    result = evacuate(cloud)
    records = by_name(result)
    assert records['vm-0']['attempts'] == 2 and records['vm-0']['outcome'] == 'moved'
    assert [h['target'] for h in records['vm-0']['history']] == [None, 'compute2']
    assert records['vm-0']['history'][0]['migration_status'] == 'error'
    assert records['vm-0']['history'][0]['error'].startswith('the evacuation found no host (migration error, '
                                                             'destination none): No valid host was found. ; the '
                                                             'instance is ERROR on compute1')
    # the destination that failed is not asked again: the next candidate is
    assert [h['target'] for h in records['vm-1']['history']] == [None, 'compute3']
    assert records['vm-1']['history'][0]['dest'] == 'compute2'
    assert hosts_of(cloud)['vm-1'] == ('compute3', 'ACTIVE')
    assert set(action for dummy, action, dummy2 in cloud.actions()) == {'lock', 'evacuate', 'unlock'}
    assert result['totals']['evacuations'] == 5


def test_a_failed_claim_keeps_the_state_and_is_retried():
    cloud = make_cloud(servers=1)
    cloud.script(cloud.server('vm-0'), 'claim', 'ok')
    record = evacuate(cloud)['instances'][0]
    assert record['attempts'] == 2 and record['outcome'] == 'moved'
    assert record['history'][0]['error'].startswith('the evacuation failed on the destination (migration failed, '
                                                    'destination compute2); the instance is ACTIVE on compute1')


def test_retries_on_target_hosts_go_to_the_next_host(cloud):
    cloud.script(cloud.server('vm-0'), 'novalidhost', 'ok')
    evacuate(cloud, target_hosts=['compute2', 'compute3'], concurrency=1)
    assert cloud.evacuations()[:2] == [('vm-0', 'compute2'), ('vm-0', 'compute3')]


def test_gives_up_after_the_retries_and_fails_with_every_record(cloud):
    cloud.script(cloud.server('vm-2'), 'novalidhost', 'novalidhost', 'novalidhost')
    error = failing(cloud, retries=2)
    record = by_name(error.facts)['vm-2']
    assert record['outcome'] == 'failed' and record['attempts'] == 3
    assert record['reason'].endswith('(gave up after 3 attempt(s), retries=2)')
    assert [h['target'] for h in record['history']] == [None, 'compute2', 'compute3']
    assert record['lock'] == 'this run' and cloud.server('vm-2')['locked'] is False
    assert record['status_after'] == 'ERROR' and record['to'] is None
    assert error.facts['totals']['moved'] == 2 and error.facts['totals']['failed'] == 1
    assert 'vm-2 (%s): the evacuation found no host' % cloud.server('vm-2')['id'] in error.msg
    assert set(error.facts) == set(_evacuate.RESULT_KEYS) | {'changed', 'warnings'}


def test_no_retries():
    cloud = make_cloud(servers=1)
    cloud.script(cloud.server('vm-0'), 'novalidhost')
    record = by_name(failing(cloud, retries=0).facts)['vm-0']
    assert record['attempts'] == 1 and record['reason'].endswith('(gave up after 1 attempt(s), retries=0)')


def test_a_refused_request_is_not_retried(cloud):
    cloud.fail('compute', 'POST', '/servers/%s/action' % cloud.server('vm-0')['id'], status=409,
               body={'conflict': {'code': 409, 'message': 'Instance has an accelerator'}}, times=None)
    # the lock is refused as well: the whole move fails with Nova's message
    error = failing(cloud)
    assert by_name(error.facts)['vm-0']['reason'] == ('cannot lock server vm-0 (%s) for its evacuation: the compute '
                                                      'API answered HTTP 409: Instance has an accelerator'
                                                      % cloud.server('vm-0')['id'])


def test_an_evacuation_refused_with_409_is_not_retried():
    cloud = make_cloud(servers=1)
    server = cloud.server('vm-0')
    server['locked'] = True  # locked by its owner: no lock request of ours
    cloud.fail('compute', 'POST', '/servers/%s/action' % server['id'], status=409,
               body={'conflict': {'code': 409, 'message': "Cannot 'evacuate' instance while it has a share"}})
    record = by_name(failing(cloud).facts)['vm-0']
    assert record['attempts'] == 1 and record['lock'] == 'other'
    assert record['reason'].endswith("HTTP 409: Cannot 'evacuate' instance while it has a share")
    assert cloud.actions('unlock') == []


def test_a_host_coming_back_up_stops_every_evacuation_not_yet_started():
    cloud = make_cloud(servers=4)
    original = cloud._evacuate

    def host_returns(server, body, microversion):
        cloud.service('compute1').update(forced_down=False, state='up')
        return original(server, body, microversion)
    cloud._evacuate = host_returns
    error = failing(cloud, concurrency=1)
    records = by_name(error.facts)
    assert records['vm-0']['reason'].endswith('HTTP 400: Compute service of compute1 is still in use.')
    for name in ('vm-1', 'vm-2', 'vm-3'):
        assert records[name]['reason'].startswith('not evacuated: Nova says the compute service of compute1 is up '
                                                  'again')
    assert len(cloud.evacuations()) == 1


def test_a_server_error_without_a_migration_is_retried():
    cloud = make_cloud(servers=1)
    server = cloud.server('vm-0')
    cloud.fail('compute', 'POST', '/servers/%s/action' % server['id'], status=503, text='Service Unavailable',
               times=1)
    server['locked'] = True
    record = evacuate(cloud)['instances'][0]
    assert record['attempts'] == 2 and record['outcome'] == 'moved'
    assert 'HTTP 503' in record['history'][0]['error']


def test_a_lost_answer_to_an_accepted_evacuation_is_never_followed_by_a_second_one():
    cloud = make_cloud(servers=1)
    server = cloud.server('vm-0')
    original = cloud._evacuate

    def accepted_then_lost(server, body, microversion):
        original(server, body, microversion)
        return FakeResponse(504, text='Gateway Timeout')
    cloud._evacuate = accepted_then_lost
    record = evacuate(cloud)['instances'][0]
    assert record['outcome'] == 'moved' and record['attempts'] == 1
    assert len(cloud.evacuations()) == 1 and server['OS-EXT-SRV-ATTR:host'] == 'compute2'


def test_arriving_in_error_on_the_destination_fails_without_retry():
    cloud = make_cloud(servers=1)
    cloud.script(cloud.server('vm-0'), 'error-on-dest')
    record = by_name(failing(cloud).facts)['vm-0']
    assert record['reason'] == 'moved to compute2 but ERROR there, not ACTIVE: spawn failed on compute2'
    assert record['attempts'] == 1 and record['to'] == 'compute2'


# ---------------------------------------------------------------------------------------------------------
# timeouts


def test_a_stuck_evacuation_times_out_and_is_never_sent_again():
    cloud = make_cloud(servers=2)
    cloud.script(cloud.server('vm-0'), 'stuck')
    error = failing(cloud, timeout=30, concurrency=1)
    record = by_name(error.facts)['vm-0']
    assert record['reason'].startswith('not ACTIVE on another host within timeout=30s: REBUILD on compute1, task '
                                       'state rebuilding, migration accepted; its evacuation may still be under way')
    assert record['seconds'] >= 30 and record['attempts'] == 1
    assert cloud.evacuations().count(('vm-0', None)) == 1
    assert by_name(error.facts)['vm-1']['outcome'] == 'moved'


def test_no_retry_when_the_timeout_is_spent():
    cloud = make_cloud(servers=1)
    cloud.script(cloud.server('vm-0'), 'novalidhost', polls=40)
    record = by_name(failing(cloud, timeout=30).facts)['vm-0']
    assert record['reason'].startswith('not ACTIVE on another host within timeout=30s')


def test_no_retry_when_a_failure_comes_at_the_timeout():
    cloud = make_cloud(servers=1)
    cloud.script(cloud.server('vm-0'), 'novalidhost', polls=6)  # fails at the 7th read, 6 s after the first
    record = by_name(failing(cloud, timeout=6).facts)['vm-0']
    assert record['reason'].endswith('(no time left for another attempt within timeout=6)')


# ---------------------------------------------------------------------------------------------------------
# microversions and power states


def test_a_shutoff_instance_stays_shutoff():
    cloud = make_cloud(servers=0)
    cloud.add_server('compute1', 'off', status='SHUTOFF', vm_state='stopped')
    record = evacuate(cloud)['instances'][0]
    assert (record['target_status'], record['status_after'], record['power_action']) == ('SHUTOFF', 'SHUTOFF', None)
    assert cloud.actions('lock')[0][2] == {'locked_reason': LOCK_REASON % ('compute1', 'SHUTOFF')}


@pytest.mark.parametrize('pinned', ['2.95', '2.100', 'latest'])
def test_from_2_95_active_instances_land_stopped_and_are_started(pinned):
    cloud = make_cloud(servers=0)
    cloud.add_server('compute1', 'on')
    cloud.add_server('compute1', 'off', status='SHUTOFF', vm_state='stopped')
    cloud.config.microversions['compute'] = pinned
    result = evacuate(cloud)
    records = by_name(result)
    assert result['microversion'] == pinned
    assert (records['on']['status_after'], records['on']['power_action']) == ('ACTIVE', 'start')
    assert (records['off']['status_after'], records['off']['power_action']) == ('SHUTOFF', None)
    assert hosts_of(cloud) == {'on': ('compute2', 'ACTIVE'), 'off': ('compute2', 'SHUTOFF')}
    assert cloud.actions('os-start') == [('on', 'os-start', None)]
    assert [a for n, a, dummy in cloud.actions() if n == 'on'] == ['lock', 'evacuate', 'os-start', 'unlock']


def test_a_shutoff_instance_retried_from_error_lands_active_and_is_stopped():
    cloud = make_cloud(servers=0)
    server = cloud.add_server('compute1', 'off', status='SHUTOFF', vm_state='stopped')
    cloud.script(server, 'novalidhost', 'ok')  # the retry evacuates an instance in ERROR: Nova brings it up
    record = evacuate(cloud)['instances'][0]
    assert (record['status_after'], record['power_action'], record['attempts']) == ('SHUTOFF', 'stop', 2)
    assert hosts_of(cloud)['off'] == ('compute2', 'SHUTOFF')


def test_a_power_action_that_does_not_take_fails():
    cloud = make_cloud(servers=1)
    cloud.config.microversions['compute'] = '2.95'
    original = cloud._compute_post

    def start_ignored(path, query, body):
        if 'os-start' in body:
            return FakeResponse(202, text='')
        return original(path, query, body)
    cloud._compute_post = start_ignored
    record = by_name(failing(cloud).facts)['vm-0']
    assert record['reason'] == 'moved to compute2 but SHUTOFF there, not ACTIVE'


def test_a_pinned_microversion_too_old_for_lock_reasons_is_refused(cloud):
    cloud.config.microversions['compute'] = '2.60'
    error = failing(cloud)
    assert error.msg.startswith('compute microversion 2.60 is too old to read servers: it needs 2.73 or later')
    assert cloud.sent('compute', 'POST') == []


# ---------------------------------------------------------------------------------------------------------
# resuming after a crash


def test_an_evacuation_under_way_is_waited_for_never_sent_again():
    cloud = make_cloud(servers=2)
    server = cloud.server('vm-0')
    cloud._evacuate(server, {}, '2.94')  # started by a run that crashed
    result = evacuate(cloud)
    record = by_name(result)['vm-0']
    assert (record['action'], record['outcome'], record['resumed'], record['attempts']) == ('wait', 'moved', True, 0)
    assert record['reason'].startswith('an evacuation is already under way (task state rebuilding, migration '
                                       'accepted)')
    assert cloud.evacuations() == [('vm-1', None)]
    assert [a for n, a, dummy in cloud.actions() if n == 'vm-0'] == []  # not ours to lock
    assert result['totals']['resumed'] == 1 and result['totals']['evacuations'] == 1


def test_an_accepted_migration_without_task_state_counts_as_under_way():
    cloud = make_cloud(servers=1)
    server = cloud.server('vm-0')
    cloud._evacuate(server, {}, '2.94')
    server['OS-EXT-STS:task_state'] = None
    cloud.jobs[server['id']]['due'] = cloud.clock() + 1
    record = evacuate(cloud)['instances'][0]
    assert record['action'] == 'wait' and record['outcome'] == 'moved' and cloud.evacuations() == []


def on_shared_list(cloud, action):
    """Run action() once, when the workers read the host's migration list (the second list: the first is the
    plan's) - after the plan, right before the first move."""
    original = cloud._compute_get
    lists = []

    def hooked(path, query, body):
        if path == '/os-migrations' and 'source_compute' in query:
            lists.append(True)
            if len(lists) == 2:
                action()
        return original(path, query, body)
    cloud._compute_get = hooked


@pytest.mark.parametrize('finished', [False, True], ids=['moving', 'finished'])
def test_an_evacuation_started_after_the_plan_is_waited_for(finished):
    cloud = make_cloud(servers=1)
    server = cloud.server('vm-0')

    def other_run_starts():
        cloud._evacuate(server, {}, '2.94')
        if finished:  # moved to compute2 and done before this run looks: the plan still says compute1, no task
            cloud._finish(server, cloud.jobs[server['id']])
    on_shared_list(cloud, other_run_starts)
    record = evacuate(cloud)['instances'][0]
    assert record['action'] == 'wait' and record['outcome'] == 'moved' and record['to'] == 'compute2'
    assert record['reason'] == 'an evacuation started after the plan was read: waiting for it, never evacuating it ' \
                               'a second time'
    assert cloud.evacuations() == []
    # the plan's read of the server stood in for a new one: the server was read only once it had moved
    assert server_reads(cloud, server['id']) and all(
        r.path.endswith(server['id']) for r in server_reads(cloud))


def test_the_plan_reads_its_inputs_at_once():
    cloud = make_cloud(servers=2)
    gate = threading.Barrier(5, timeout=5)
    original = cloud.request
    lists = ('/servers/detail', '/os-migrations', '/os-aggregates', '/os-hypervisors/detail')

    def meet(service, method, url, microversion, body):
        # the host's servers, its migrations, the aggregates, the locked servers and the hypervisors wait for each
        # other (outside the fake's own lock): they pass only when sent at once
        if not gate.broken and gate.n_waiting < 5 and url.split('?')[0] in lists and 'instance_uuid' not in url \
                and len([r for r in cloud.requests if r.path == '/os-migrations']) == 0:
            gate.wait()
        return original(service, method, url, microversion, body)
    cloud.request = meet
    assert evacuate(cloud)['totals']['moved'] == 2 and not gate.broken


def test_the_plan_reads_stand_in_only_while_fresh(monkeypatch):
    cloud = make_cloud(servers=1)
    server = cloud.server('vm-0')
    monkeypatch.setattr(_evacuate, 'PLAN_FRESH', 0.0)
    original = cloud._compute_get
    started = []

    def other_run_starts(path, query, body):
        if path == '/servers/%s' % server['id'] and not started:  # the read right before the move
            started.append(True)
            cloud._evacuate(server, {}, '2.94')
            cloud._finish(server, cloud.jobs[server['id']])
        return original(path, query, body)
    cloud._compute_get = other_run_starts
    record = evacuate(cloud)['instances'][0]
    assert started and record['action'] == 'wait' and record['outcome'] == 'moved'
    assert cloud.evacuations() == []


def test_per_instance_reads_before_the_moves():
    cloud = make_cloud(servers=5)
    result = evacuate(cloud, concurrency=5)
    assert result['totals']['moved'] == 5
    # no per-instance migration list; the plan's server reads stand in for new ones before the evacuations
    assert not [r for r in cloud.requests if r.path == '/os-migrations' and 'instance_uuid' in r.query]
    first_evacuation = next(i for i, r in enumerate(cloud.requests) if r.method == 'POST' and 'evacuate' in r.body)
    assert not [r for r in cloud.requests[:first_evacuation] if re.match(r'^/servers/[0-9a-f-]{36}$', r.path)]
    # the plan's reads and the workers' first migration list: services, then the rest at once, then one list
    lists = [i for i, r in enumerate(cloud.requests) if r.path == '/os-migrations']
    assert len([i for i in lists if i < first_evacuation]) == 2


def test_an_instance_left_locked_by_a_crashed_run_is_evacuated_and_unlocked():
    cloud = make_cloud(servers=0)
    # crashed between lock and evacuate; an earlier failed attempt left it in ERROR: the lock says it was SHUTOFF
    server = cloud.add_server('compute1', 'half', status='ERROR', vm_state='error', locked=True,
                              locked_reason=LOCK_REASON % ('compute1', 'SHUTOFF'))
    record = evacuate(cloud)['instances'][0]
    assert record['reason'] == 'locked by an earlier run of nova_evacuate that did not finish'
    assert (record['lock'], record['target_status'], record['status_after']) == ('earlier run', 'SHUTOFF', 'SHUTOFF')
    assert record['power_action'] == 'stop'
    assert [a for n, a, dummy in cloud.actions()] == ['evacuate', 'os-stop', 'unlock']
    assert server['locked'] is False


def test_instances_moved_by_a_crashed_run_but_left_locked_are_checked_and_unlocked():
    cloud = make_cloud(servers=1)
    moved = cloud.add_server('compute2', 'moved', locked=True, locked_reason=LOCK_REASON % ('compute1', 'ACTIVE'))
    cloud.add_migration(moved['id'], 'compute1', 'compute2', 'done')
    cloud.add_server('compute2', 'locked-by-owner', locked=True, locked_reason='mine')
    cloud.add_server('compute3', 'other-host', locked=True, locked_reason=LOCK_REASON % ('compute9', 'ACTIVE'))
    check = evacuate(cloud, check_mode=True)
    assert check['changed'] is True
    result = evacuate(cloud)
    records = by_name(result)
    assert sorted(records) == ['moved', 'vm-0']
    record = records['moved']
    assert (record['action'], record['outcome'], record['lock'], record['to']) == ('wait', 'moved', 'earlier run',
                                                                                   'compute2')
    assert moved['locked'] is False and cloud.server('locked-by-owner')['locked'] is True
    assert cloud.server('other-host')['locked'] is True
    again = evacuate(cloud)
    assert again['changed'] is False and again['instances'] == []


def test_a_move_waited_for_that_fails_is_evacuated_again():
    cloud = make_cloud(servers=1)
    server = cloud.server('vm-0')
    cloud._evacuate(server, {}, '2.94')
    cloud.script(server, 'ok')
    cloud.jobs[server['id']]['outcome'] = 'novalidhost'
    record = evacuate(cloud)['instances'][0]
    assert record['outcome'] == 'moved' and record['action'] == 'evacuate' and record['attempts'] == 1
    assert record['history'][0]['error'].startswith('the evacuation found no host')
    assert cloud.evacuations() == [('vm-0', None)]  # ours: the scheduler chooses first
    assert record['lock'] == 'this run'


def test_a_rebuild_task_without_evacuation_ends_and_the_instance_is_evacuated():
    cloud = make_cloud(servers=1)
    server = cloud.server('vm-0')
    server['OS-EXT-STS:task_state'] = 'rebuilding'
    reads = []
    original = cloud._compute_get

    def rebuild_ends(path, query, body):
        if path == '/servers/%s' % server['id']:
            reads.append(path)
            if len(reads) == 3:
                server['OS-EXT-STS:task_state'] = None
        return original(path, query, body)
    cloud._compute_get = rebuild_ends
    record = evacuate(cloud)['instances'][0]
    assert record['history'][0]['error'] == 'no evacuation under way any more (migration none) and still ACTIVE on ' \
                                            'compute1'
    assert record['outcome'] == 'moved' and cloud.evacuations() == [('vm-0', None)]


def test_deleted_before_or_during_the_move():
    cloud = make_cloud(servers=2)
    gone = cloud.server('vm-0')
    on_shared_list(cloud, lambda: cloud.servers.remove(gone))  # after the plan, before the lock: it answers 404
    original = cloud._compute_get

    def delete_on_read(path, query, body):
        if path == '/servers/%s' % cloud.server('vm-1')['id'] and cloud.jobs.get(cloud.server('vm-1')['id']):
            vanishing = cloud.server('vm-1')
            cloud.servers.remove(vanishing)
        return original(path, query, body)
    cloud._compute_get = delete_on_read
    error = failing(cloud, concurrency=1)
    records = dict((r['id'], r) for r in error.facts['instances'])
    assert records[gone['id']]['outcome'] == 'skipped'
    assert records[gone['id']]['reason'] == 'deleted before it was evacuated'
    assert [a for n, a, dummy in cloud.actions() if n == gone['id']] == ['lock']  # no evacuation, nothing to unlock
    vm1 = [r for r in error.facts['instances'] if r['name'] == 'vm-1'][0]
    assert vm1['reason'] == 'deleted while it was being evacuated'


def test_an_accepted_evacuation_without_migration_is_not_repeated():
    cloud = make_cloud(servers=1)
    server = cloud.server('vm-0')
    original = cloud._evacuate

    def no_migration(srv, body, microversion):
        response = original(srv, body, microversion)
        cloud.migrations.pop(0)
        cloud.jobs.pop(srv['id'])
        srv.update({'OS-EXT-STS:task_state': None, 'status': 'ACTIVE'})
        return response
    cloud._evacuate = no_migration
    record = by_name(failing(cloud).facts)['vm-0']
    assert record['reason'].startswith('Nova accepted the evacuation but recorded no migration for it')
    assert len(cloud.evacuations()) == 1 and server['locked'] is False


# ---------------------------------------------------------------------------------------------------------
# locks


def test_an_instance_locked_by_someone_else_is_moved_and_left_locked():
    cloud = make_cloud(servers=1)
    server = cloud.server('vm-0')
    server.update(locked=True, locked_reason='owner says hands off')
    record = evacuate(cloud)['instances'][0]
    assert record['lock'] == 'other' and record['outcome'] == 'moved'
    assert [a for n, a, dummy in cloud.actions()] == ['evacuate']
    assert server['locked'] is True and server['locked_reason'] == 'owner says hands off'


def test_an_unlock_that_fails_fails_the_instance():
    cloud = make_cloud(servers=1)
    original = cloud._compute_post

    def unlock_refused(path, query, body):
        if 'unlock' in body:
            return nova_error(500, 'database gone')
        return original(path, query, body)
    cloud._compute_post = unlock_refused
    record = by_name(failing(cloud).facts)['vm-0']
    assert record['to'] == 'compute2' and record['outcome'] == 'failed'
    assert record['reason'].startswith('cannot unlock server vm-0')


def test_an_unlock_of_a_server_deleted_meanwhile_is_fine():
    cloud = make_cloud(servers=1)
    original = cloud._compute_post

    def gone(path, query, body):
        if 'unlock' in body:
            return nova_error(404, 'Instance could not be found.')
        return original(path, query, body)
    cloud._compute_post = gone
    assert evacuate(cloud)['instances'][0]['outcome'] == 'moved'


def test_an_unexpected_error_in_a_worker_is_reported_not_lost(monkeypatch):
    cloud = make_cloud(servers=1)

    def broken(run, record):
        raise KeyError('surprise')
    monkeypatch.setattr(_evacuate, '_lock', broken)
    record = by_name(failing(cloud).facts)['vm-0']
    assert re.match(r"^unexpected error: KeyError: 'surprise' \(test_evacuate.py line \d+\)$", record['reason'])
    assert cloud.evacuations() == []


def test_an_api_failure_in_a_worker_is_reported():
    cloud = make_cloud(servers=1)
    cloud.fail('compute', 'GET', '/servers/%s$' % cloud.server('vm-0')['id'], status=500,
               body={'computeFault': {'code': 500, 'message': 'oops'}})
    record = by_name(failing(cloud).facts)['vm-0']
    assert record['reason'] == ('cannot read server %s: the compute API answered HTTP 500 to GET /servers/%s: oops'
                                % ((cloud.server('vm-0')['id'],) * 2))


def test_an_api_failure_while_planning_keeps_the_facts_read(cloud):
    cloud.fail('compute', 'GET', '/os-aggregates', status=503, text='busy')
    error = failing(cloud)
    assert error.msg.startswith('cannot list the host aggregates')
    assert error.facts['service']['host'] == 'compute1' and error.facts['changed'] is False
    assert isinstance(error, RecoveryError)


# ---------------------------------------------------------------------------------------------------------
# check mode


def test_check_mode_plans_from_real_reads_and_sends_nothing():
    cloud = make_cloud(servers=0)
    cloud.add_host('compute4', status='disabled', disabled_reason='maintenance')
    cloud.add_server('compute1', 'big', vcpus=8, ram=30000, extra_specs={'evacuation_priority': '1'})
    cloud.add_server('compute1', 'bigger', vcpus=8, ram=31000, extra_specs={'evacuation_priority': '2'})
    cloud.add_server('compute1', 'small', ram=512)
    cloud.add_server('compute1', 'huge', ram=40000)
    cloud.add_server('compute1', 'no', extra_specs={'evacuable': 'false'})
    result = evacuate(cloud, check_mode=True, capacity_policy='ignore')
    assert result['changed'] is True
    assert not [r for r in cloud.requests if r.method != 'GET']
    records = by_name(result)
    assert [records[n]['outcome'] for n in ('big', 'bigger', 'small', 'huge', 'no')] == ['planned'] * 4 + ['skipped']
    ids = dict((s['name'], s['id']) for s in cloud.servers)
    assert result['groups'] == [dict(priority=2, instances=[ids['bigger']]), dict(priority=1, instances=[ids['big']]),
                                dict(priority=0, instances=[ids['huge'], ids['small']])]
    # each host has 32256 MiB free: bigger takes compute2, big compute3, huge fits nowhere
    assert records['bigger']['candidates'] == ['compute2', 'compute3']
    assert records['huge']['candidates'] == []
    capacity = result['capacity']
    assert capacity['sufficient'] is False
    assert capacity['unplaced'] == [dict(id=ids['huge'], name='huge', priority=0,
                                         needs=dict(vcpus=2, memory_mb=40000, disk_gb=1))]
    assert capacity['needed'] == dict(vcpus=20, memory_mb=101512, disk_gb=4)
    assert capacity['free'] == dict(vcpus=128, memory_mb=64512, disk_gb=200)
    assert capacity['shortfall'] == dict(vcpus=0, memory_mb=37000, disk_gb=0)
    assert capacity['excluded_hosts'] == [dict(host='compute4', reason='disabled', disabled_reason='maintenance')]
    assert result['totals']['planned'] == 4 and result['totals']['evacuations'] == 0
    assert result['diff']['after'][ids['big']] == dict(host='(scheduler)', status='ACTIVE')
    assert hosts_of(cloud)['big'] == ('compute1', 'ACTIVE')


def test_check_mode_with_nothing_to_do_is_not_a_change():
    cloud = make_cloud(servers=0)
    cloud.add_server('compute1', 'broken', status='ERROR', vm_state='error')
    result = evacuate(cloud, check_mode=True)
    assert result['changed'] is False and result['totals']['planned'] == 0


def test_check_mode_of_a_move_under_way_is_no_change():
    cloud = make_cloud(servers=1)
    cloud._evacuate(cloud.server('vm-0'), {}, '2.94')
    result = evacuate(cloud, check_mode=True)
    assert result['changed'] is False and result['instances'][0]['action'] == 'wait'


# ---------------------------------------------------------------------------------------------------------
# concurrency


def test_twenty_instances_with_bounded_concurrency():
    cloud = make_cloud(servers=20, clock=Clock(real=0.002))
    cloud.polls = 4
    result = evacuate(cloud, concurrency=5)
    assert result['totals']['moved'] == 20 and result['totals']['evacuations'] == 20
    assert 1 < cloud.most_moving <= 5
    assert all(host != 'compute1' and status == 'ACTIVE' for host, status in hosts_of(cloud).values())
    assert not any(s['locked'] for s in cloud.servers)
    per_instance = {}
    for migration in cloud.migrations:
        per_instance[migration['instance_uuid']] = per_instance.get(migration['instance_uuid'], 0) + 1
    assert set(per_instance.values()) == {1}


def test_the_fake_accepts_a_second_evacuation_like_nova():
    cloud = make_cloud(servers=1)
    server = cloud.server('vm-0')
    assert cloud._evacuate(server, {}, '2.94').status_code == 200
    assert cloud._evacuate(server, {}, '2.94').status_code == 200
    assert [m['status'] for m in cloud.migrations] == ['accepted', 'accepted']


# ---------------------------------------------------------------------------------------------------------
# corners


def test_an_unreachable_api_for_an_evacuation_without_migration_is_retried():
    cloud = make_cloud(servers=1)
    server = cloud.server('vm-0')
    server['locked'] = True
    cloud.fail('compute', 'POST', '/servers/%s/action' % server['id'],
               exception=ksa_exceptions.ConnectFailure('connection refused'), times=1)
    record = evacuate(cloud)['instances'][0]
    assert record['attempts'] == 2 and record['outcome'] == 'moved'
    assert record['history'][0]['error'] == ('cannot evacuate server vm-0 (%s) from compute1: the compute API is '
                                             'unreachable (POST /servers/%s/action): connection refused'
                                             % (server['id'], server['id']))


def test_a_forced_down_target_host_is_left_out(cloud):
    cloud.add_host('compute4', forced_down=True)
    result = evacuate(cloud, target_hosts=['compute4', 'compute3', 'compute3'], check_mode=True)
    assert result['capacity']['excluded_hosts'] == [dict(host='compute4', reason='forced down', disabled_reason=None)]
    assert [h['host'] for h in result['capacity']['hosts']] == ['compute3']


def test_a_move_waited_for_that_times_out_is_failed_not_repeated():
    cloud = make_cloud(servers=1)
    server = cloud.server('vm-0')
    cloud._evacuate(server, {}, '2.94')
    cloud.jobs[server['id']]['outcome'] = 'stuck'
    record = by_name(failing(cloud, timeout=10).facts)['vm-0']
    assert record['action'] == 'wait' and record['attempts'] == 0
    assert record['reason'].startswith('not ACTIVE on another host within timeout=10s: REBUILD on compute1')
    assert cloud.evacuations() == []


def test_a_move_waited_for_that_fails_with_no_usable_target_host_left():
    cloud = make_cloud(servers=1)
    server = cloud.server('vm-0')
    cloud._evacuate(server, {}, '2.94')
    cloud.jobs[server['id']]['outcome'] = 'novalidhost'
    cloud.service('compute3').update(status='disabled')
    record = by_name(failing(cloud, target_hosts=['compute3']).facts)['vm-0']
    assert record['reason'] == 'none of the target_hosts can take it'
    assert cloud.evacuations() == []


def test_no_retry_once_the_run_is_aborted():
    class Run:
        retries = 5
        timeout = 60
        abort_reason = 'the host is back'

        def clock(self):
            return 0
    with pytest.raises(_evacuate._AttemptFailed) as caught:
        _evacuate._give_up_or_retry(Run(), dict(attempts=1), 'no host', 10, True)
    assert caught.value.reason == 'no host (no retry: the host is back)' and caught.value.retryable is False


def test_a_volume_backed_instance_has_no_image_to_read():
    cloud = make_cloud(servers=0)
    cloud.add_server('compute1', 'on-volume', image_id=None)
    record = evacuate(cloud)['instances'][0]
    assert record['outcome'] == 'moved' and record['needs']['disk_gb'] == 0
    assert cloud.sent('image') == []


# ---------------------------------------------------------------------------------------------------------
# the load on nova-api


def server_reads(cloud, server_id=None):
    return [r for r in cloud.sent('compute', 'GET') if re.match(r'^/servers/[0-9a-f-]{36}$', r.path)
            and (server_id is None or r.path.endswith(server_id))]


def host_lists(cloud):
    return [r for r in cloud.sent('compute', 'GET') if r.path == '/os-migrations' and 'source_compute' in r.query]


class RealClock:
    def __call__(self):
        return time.monotonic()

    def sleep(self, seconds):
        time.sleep(seconds)


def test_workers_share_one_migration_list_per_poll_interval_and_read_servers_rarely(monkeypatch):
    cloud = make_cloud(servers=20, clock=RealClock())
    cloud.polls = 0.4
    calls = []
    original = _evacuate._Run.host_migrations

    def counted(run, newer_than):
        calls.append(newer_than)
        return original(run, newer_than)
    monkeypatch.setattr(_evacuate._Run, 'host_migrations', counted)
    result = evacuate(cloud, concurrency=20, poll_interval=0.02)
    assert result['totals']['moved'] == 20
    # one list for every worker per poll interval (plus one after each evacuation request), not one per worker
    assert len(calls) >= 20 * 2
    assert len(host_lists(cloud)) * 3 <= len(calls)
    # per instance: one read before its evacuation, one right after it, one when its migration is done
    assert len(server_reads(cloud)) <= 20 * 4


def test_a_long_move_reads_its_server_every_server_check():
    cloud = make_cloud(servers=1)
    server = cloud.server('vm-0')
    cloud.script(server, 'ok', polls=25)
    evacuate(cloud)
    # right after the evacuation, at 10 s and 20 s, and when the migration is done (25 s); before it, the plan's read
    assert len(server_reads(cloud, server['id'])) == 4


def test_the_migration_list_after_a_request_is_always_read_after_it():
    cloud = make_cloud(servers=1)
    run = _evacuate._Run(cloud, 'compute1', '2.94', 60, 2, [], cloud.clock, cloud.clock.sleep, 1.0, 1000.0)
    assert run.host_migrations(0) == [] and len(host_lists(cloud)) == 1
    assert run.host_migrations(0) == [] and len(host_lists(cloud)) == 1  # shared within the poll interval
    generation = run.generation()
    cloud._evacuate(cloud.server('vm-0'), {}, '2.94')
    assert [m['status'] for m in run.host_migrations(generation)] == ['accepted']  # read again: newer needed
    assert len(host_lists(cloud)) == 2
    cloud.clock.sleep(1.0)
    run.host_migrations(0)
    assert len(host_lists(cloud)) == 3  # a poll interval later


def test_a_move_waited_for_that_fails_and_a_deletion_right_after():
    cloud = make_cloud(servers=1)
    server = cloud.server('vm-0')
    cloud._evacuate(server, {}, '2.94')
    cloud.jobs[server['id']]['outcome'] = 'novalidhost'
    original = cloud._compute_get

    def deleted_after_the_failure(path, query, body):
        # the instance's own migrations are read again right before the server, for the new evacuation
        if path == '/os-migrations' and query.get('instance_uuid') == server['id'] and server['status'] == 'ERROR':
            cloud.servers.remove(server)
        return original(path, query, body)
    cloud._compute_get = deleted_after_the_failure
    record = by_name(failing(cloud).facts)['vm-0']
    assert record['reason'] == 'deleted while it was being evacuated' and cloud.evacuations() == []


def test_a_host_changed_before_the_migration_list_says_done_is_waited_for():
    cloud = make_cloud(servers=1)
    server = cloud.server('vm-0')
    original = cloud._finish

    def migration_late(srv, job):
        original(srv, job)
        if 'migration' in job and job['migration']['status'] == 'done':
            job['migration']['status'] = 'pre-migrating'  # as read by a list just before Nova marks it done
            cloud.jobs[srv['id']] = dict(late=job['migration'], due=cloud.clock() + 12)  # past a SERVER_CHECK

    def finish(srv, job):
        if 'late' in job:
            del cloud.jobs[srv['id']]
            job['late']['status'] = 'done'
            return
        migration_late(srv, job)
    cloud._finish = finish
    reads = []
    get = cloud._compute_get

    def count(path, query, body):
        if path == '/servers/%s' % server['id']:
            reads.append(server['OS-EXT-SRV-ATTR:host'])
        return get(path, query, body)
    cloud._compute_get = count
    record = evacuate(cloud)['instances'][0]
    assert record['outcome'] == 'moved' and record['history'][0]['migration_status'] == 'done'
    assert reads.count('compute2') >= 2  # on compute2 before its migration said done, read again after


# ---------------------------------------------------------------------------------------------------------
# capacity policy


def inventory(vcpus=64, memory_mb=32256, disk_gb=100):
    return dict(VCPU=dict(total=vcpus, reserved=0, max_unit=vcpus, allocation_ratio=1.0),
                MEMORY_MB=dict(total=memory_mb, reserved=0, max_unit=memory_mb, allocation_ratio=1.0),
                DISK_GB=dict(total=disk_gb, reserved=0, max_unit=disk_gb, allocation_ratio=1.0))


def short_cloud():
    """compute2 and compute3 hold one 20000 MiB instance each; compute1 has three, of priorities 10, 5 and 0."""
    cloud = make_cloud(servers=0)
    for name, priority in (('gold', 10), ('silver', 5), ('bronze', 0)):
        cloud.add_server('compute1', name, ram=20000, extra_specs={'evacuation_priority': str(priority)})
    return cloud


def ids_of(cloud, *names):
    return [cloud.server(name)['id'] for name in names]


def test_partial_is_the_default_and_moves_by_priority_as_far_as_capacity_goes():
    cloud = short_cloud()
    error = failing(cloud)
    records = by_name(error.facts)
    assert [records[n]['outcome'] for n in ('gold', 'silver', 'bronze')] == ['moved', 'moved', 'failed']
    assert records['bronze']['reason'] == (
        "no capacity: it needs vcpus=2, memory_mb=20000, disk_gb=1 and, after the instances of higher or equal "
        "priority before it, none of the scheduler's hosts (compute2, compute3) has that much free (first-fit "
        "estimate over Placement); not evacuated (capacity_policy=partial)")
    assert records['bronze']['action'] == 'none' and records['bronze']['attempts'] == 0
    assert sorted(cloud.evacuations()) == [('gold', None), ('silver', None)]
    assert hosts_of(cloud)['bronze'] == ('compute1', 'ACTIVE')  # untouched, not put in ERROR
    assert not cloud.server('bronze')['locked']
    bronze = ids_of(cloud, 'bronze')[0]
    assert error.msg.startswith('evacuation of compute1 incomplete: 1 of 3 selected instance(s) did not reach '
                                'their target state on another host - bronze (%s): no capacity: ' % bronze)
    assert error.facts['groups'] == [dict(priority=10, instances=ids_of(cloud, 'gold')),
                                     dict(priority=5, instances=ids_of(cloud, 'silver'))]
    assert error.facts['capacity']['unplaced'] == [dict(id=ids_of(cloud, 'bronze')[0], name='bronze', priority=0,
                                                        needs=dict(vcpus=2, memory_mb=20000, disk_gb=1))]
    assert error.facts['totals']['moved'] == 2 and error.facts['totals']['failed'] == 1
    assert error.facts['changed'] is True


def test_partial_in_check_mode_names_what_would_not_fit_and_does_not_fail():
    cloud = short_cloud()
    result = evacuate(cloud, check_mode=True, capacity_policy='partial')
    records = by_name(result)
    assert [records[n]['outcome'] for n in ('gold', 'silver', 'bronze')] == ['planned', 'planned', 'failed']
    assert records['bronze']['reason'].startswith('no capacity: it needs vcpus=2, memory_mb=20000')
    assert result['capacity']['sufficient'] is False
    assert [u['name'] for u in result['capacity']['unplaced']] == ['bronze']
    assert result['totals']['planned'] == 2 and result['totals']['failed'] == 1
    assert set(result['diff']['after']) == set(ids_of(cloud, 'gold', 'silver'))
    assert [r for r in cloud.requests if r.method != 'GET'] == []


def test_fail_refuses_before_anything_moves_naming_the_instances(tmp_path):
    for check_mode in (True, False):
        cloud = short_cloud()
        error = failing(cloud, capacity_policy='fail', check_mode=check_mode)
        assert error.msg == (
            "refusing to evacuate compute1: 1 of 3 instance(s) to move would not fit on the scheduler's hosts "
            "(compute2, compute3): bronze (%s, priority 0) needs vcpus=2, memory_mb=20000, disk_gb=1 (free together: "
            "vcpus=128, memory_mb=64512, disk_gb=200; placed first-fit in priority order over what Placement reports "
            "free). Nothing was moved (capacity_policy=fail). Make room (enable or add hosts, or use reserved hosts "
            "with target_order), or run with capacity_policy=partial to move what fits, highest priority first."
            % ids_of(cloud, 'bronze')[0])
        assert [r for r in cloud.requests if r.method != 'GET'] == []
        assert error.facts['changed'] is False and len(error.facts['groups']) == 3
        assert [u['name'] for u in error.facts['capacity']['unplaced']] == ['bronze']


def test_fail_with_enough_capacity_moves_everything():
    cloud = make_cloud()
    assert evacuate(cloud, capacity_policy='fail')['totals']['moved'] == 3


def test_the_shortfall_message_shows_ten_instances_and_counts_the_rest():
    cloud = make_cloud(servers=0)
    for index in range(12):
        cloud.add_server('compute1', 'big-%02d' % index, ram=40000)
    error = failing(cloud, capacity_policy='fail')
    assert '12 of 12 instance(s) to move would not fit' in error.msg
    assert 'big-09' in error.msg and 'big-10' not in error.msg and '; and 2 more (free together' in error.msg


def test_ignore_sends_every_instance_and_lets_nova_decide():
    cloud = short_cloud()
    result = evacuate(cloud, capacity_policy='ignore')
    assert result['capacity']['sufficient'] is False
    assert len(cloud.evacuations()) == 3 and result['totals']['moved'] == 3  # the fake scheduler has no capacity


@pytest.mark.parametrize('kwargs, message', [
    (dict(capacity_policy='best'), "capacity_policy must be one of partial, fail, ignore, not 'best'"),
    (dict(target_order='spares'), "target_order must be one of scheduler, reserved, reserved_then_scheduler, "
                                  "scheduler_then_reserved, not 'spares'"),
    (dict(target_order='reserved', target_hosts=['compute2']),
     'target_hosts and target_order=reserved exclude each other: target_hosts names the hosts to use; leave '
     'target_order at scheduler with it, or list spare hosts in reserved_hosts instead'),
])
def test_bad_target_and_capacity_options_are_refused_before_any_request(cloud, kwargs, message):
    assert failing(cloud, **kwargs).msg == message
    assert cloud.requests == []


# ---------------------------------------------------------------------------------------------------------
# reserved hosts


def spare_cloud(servers=3, spare_inventory=None):
    cloud = make_cloud(servers=servers)
    cloud.add_host('spare1', status='disabled', disabled_reason='reserved', inventories=spare_inventory)
    cloud.add_host('spare2', status='disabled', disabled_reason='reserved: rack 2')
    return cloud


def put_hosts(cloud):
    by_id = dict((s['id'], s['host']) for s in cloud.services)
    return [(by_id[r.path.split('/')[-1]], r.body) for r in cloud.sent('compute', 'PUT')]


def test_reserved_order_fills_the_first_spare_enabling_it_once_before_its_first_evacuation():
    cloud = spare_cloud()
    result = evacuate(cloud, target_order='reserved', concurrency=3)
    assert sorted(cloud.evacuations()) == [('vm-0', 'spare1'), ('vm-1', 'spare1'), ('vm-2', 'spare1')]
    assert put_hosts(cloud) == [('spare1', dict(status='enabled'))]
    first_evacuation = next(i for i, r in enumerate(cloud.requests) if r.method == 'POST' and 'evacuate' in r.body)
    assert cloud.requests.index(cloud.sent('compute', 'PUT')[0]) < first_evacuation
    assert cloud.service('spare1')['status'] == 'enabled' and cloud.service('spare1')['disabled_reason'] is None
    assert cloud.service('spare2')['status'] == 'disabled'
    assert result['reserved_hosts_used'] == [dict(host='spare1', disabled_reason='reserved', action='enabled',
                                                  instances=ids_of(cloud, 'vm-0', 'vm-1', 'vm-2'))]
    record = by_name(result)['vm-0']
    assert record['target_pool'] == 'reserved' and record['candidates'] == ['spare1', 'spare2']
    assert record['history'][0]['target'] == 'spare1'
    pools = [(h['host'], h['pool']) for h in result['capacity']['hosts']]
    assert pools == [('spare1', 'reserved'), ('spare2', 'reserved')]
    assert result['capacity']['excluded_hosts'] == []
    assert result['diff']['after'][record['id']] == dict(host='spare1', status='ACTIVE')


def test_reserved_order_check_mode_says_it_would_enable_and_reruns_change_nothing():
    cloud = spare_cloud()
    plan = evacuate(cloud, target_order='reserved', check_mode=True)
    assert plan['changed'] is True and [r for r in cloud.requests if r.method != 'GET'] == []
    assert plan['reserved_hosts_used'] == [dict(host='spare1', disabled_reason='reserved', action='would enable',
                                                instances=ids_of(cloud, 'vm-0', 'vm-1', 'vm-2'))]
    assert plan['diff']['after'][cloud.server('vm-1')['id']] == dict(host='spare1', status='ACTIVE')
    assert cloud.service('spare1')['status'] == 'disabled'
    evacuate(cloud, target_order='reserved')
    again = evacuate(cloud, target_order='reserved', check_mode=True)
    assert again['changed'] is False and again['reserved_hosts_used'] == []
    assert evacuate(cloud, target_order='reserved')['changed'] is False


def test_scheduler_order_leaves_reserved_hosts_alone():
    cloud = spare_cloud()
    result = evacuate(cloud)
    assert cloud.evacuations() == [('vm-0', None), ('vm-1', None), ('vm-2', None)]
    assert put_hosts(cloud) == [] and result['reserved_hosts_used'] == []
    assert set(host for host, dummy in hosts_of(cloud).values()) == {'compute2'}
    assert result['capacity']['excluded_hosts'] == [
        dict(host='spare1', reason='disabled', disabled_reason='reserved'),
        dict(host='spare2', reason='disabled', disabled_reason='reserved: rack 2')]


def test_reserved_then_scheduler_sends_what_the_spares_cannot_hold_to_the_scheduler():
    cloud = make_cloud(servers=3)
    cloud.add_host('spare1', status='disabled', disabled_reason='reserved', inventories=inventory(memory_mb=1024))
    result = evacuate(cloud, target_order='reserved_then_scheduler', concurrency=1)
    assert cloud.evacuations() == [('vm-0', 'spare1'), ('vm-1', 'spare1'), ('vm-2', None)]
    records = by_name(result)
    assert [records[n]['target_pool'] for n in ('vm-0', 'vm-1', 'vm-2')] == ['reserved', 'reserved', 'scheduler']
    assert records['vm-2']['candidates'] == ['compute2', 'compute3', 'spare1']  # its own pool first, then the other
    assert result['reserved_hosts_used'][0]['instances'] == ids_of(cloud, 'vm-0', 'vm-1')
    assert [(h['host'], h['pool']) for h in result['capacity']['hosts']] == [
        ('spare1', 'reserved'), ('compute2', 'scheduler'), ('compute3', 'scheduler')]


def test_scheduler_then_reserved_uses_a_spare_only_for_what_the_others_cannot_hold():
    cloud = EvacuationCloud()
    cloud.add_host('compute1')
    for name in ('compute2', 'compute3'):
        cloud.add_host(name, inventories=inventory(memory_mb=512))
    cloud.add_host('spare1', status='disabled', disabled_reason='reserved')
    for index in range(3):
        cloud.add_server('compute1', 'vm-%d' % index)
    cloud.crash('compute1')
    plan = evacuate(cloud, target_order='scheduler_then_reserved', check_mode=True)
    records = by_name(plan)
    assert [records[n]['target_pool'] for n in ('vm-0', 'vm-1', 'vm-2')] == ['scheduler', 'scheduler', 'reserved']
    assert records['vm-2']['candidates'] == ['spare1', 'compute2', 'compute3']
    assert plan['reserved_hosts_used'] == [dict(host='spare1', disabled_reason='reserved', action='would enable',
                                                instances=ids_of(cloud, 'vm-2'))]
    assert plan['capacity']['sufficient'] is True
    result = evacuate(cloud, target_order='scheduler_then_reserved', concurrency=1)
    assert cloud.evacuations() == [('vm-0', None), ('vm-1', None), ('vm-2', 'spare1')]
    assert result['reserved_hosts_used'][0]['action'] == 'enabled'


def test_a_spare_with_no_room_is_not_enabled_and_partial_reports_the_instance():
    cloud = make_cloud(servers=1)
    cloud.add_host('spare1', status='disabled', disabled_reason='reserved', inventories=inventory(memory_mb=256))
    error = failing(cloud, target_order='reserved')
    record = error.facts['instances'][0]
    assert record['outcome'] == 'failed' and record['target_pool'] is None and record['candidates'] == []
    assert 'none of reserved hosts (spare1) has that much free' in record['reason']
    assert put_hosts(cloud) == [] and cloud.evacuations() == []
    assert error.facts['reserved_hosts_used'] == []


def test_a_spare_with_no_room_under_ignore_is_not_asked():
    cloud = make_cloud(servers=1)
    cloud.add_host('spare1', status='disabled', disabled_reason='reserved', inventories=inventory(memory_mb=256))
    record = failing(cloud, target_order='reserved', capacity_policy='ignore').facts['instances'][0]
    assert record['reason'] == 'no reserved host has room for it (reserved hosts: spare1)'
    assert cloud.evacuations() == [] and put_hosts(cloud) == []


def test_listed_reserved_hosts_come_first_and_may_be_disabled_without_a_reason_or_enabled():
    cloud = spare_cloud(servers=2)
    cloud.add_host('spare3', status='disabled')
    result = evacuate(cloud, target_order='reserved', reserved_hosts=['spare3', 'compute3'], concurrency=1)
    assert cloud.evacuations() == [('vm-0', 'spare3'), ('vm-1', 'spare3')]
    assert [h['host'] for h in result['capacity']['hosts']] == ['spare3', 'compute3', 'spare1', 'spare2']
    assert put_hosts(cloud) == [('spare3', dict(status='enabled'))]
    cloud2 = spare_cloud(servers=1)
    result = evacuate(cloud2, target_order='reserved', reserved_hosts=['compute3'], discover_reserved_hosts=False)
    assert cloud2.evacuations() == [('vm-0', 'compute3')] and put_hosts(cloud2) == []
    assert result['reserved_hosts_used'] == [dict(host='compute3', disabled_reason=None, action='none',
                                                  instances=ids_of(cloud2, 'vm-0'))]


def test_reserved_hosts_disabled_for_another_reason_or_down_are_left_out_naming_why():
    cloud = make_cloud(servers=1)
    cloud.add_host('spare3', status='disabled', disabled_reason='maintenance')
    cloud.add_host('spare4', forced_down=True, status='disabled', disabled_reason='reserved')
    cloud.add_host('spare5', state='down', status='disabled', disabled_reason='reserved')
    error = failing(cloud, target_order='reserved', reserved_hosts=['spare3', 'spare4'])
    assert error.msg == (
        "no reserved host can take the instances of compute1: spare3 (disabled, reason 'maintenance'), spare4 "
        "(forced down, reason 'reserved'), spare5 (down, reason 'reserved'). List spare hosts in reserved_hosts, or "
        "disable them with the reason \"reserved\" in the availability zone or an aggregate of compute1 (found with "
        "discover_reserved_hosts), or use target_order=reserved_then_scheduler")
    assert [r for r in cloud.requests if r.method != 'GET'] == []


def test_without_discovery_and_nothing_listed_there_is_no_reserved_host():
    cloud = spare_cloud(servers=1)
    error = failing(cloud, target_order='reserved', discover_reserved_hosts=False)
    assert error.msg.startswith('no reserved host can take the instances of compute1: none is listed in '
                                'reserved_hosts or found disabled as reserved. List spare hosts')


def test_discovery_stays_in_the_zone_and_the_aggregates_of_the_host():
    cloud = make_cloud(servers=1)
    cloud.add_host('far', zone='az2', status='disabled', disabled_reason='reserved')
    cloud.add_host('rack', zone='az2', status='disabled', disabled_reason='reserved')
    cloud.add_aggregate('rack-4', ['compute1', 'rack'])
    result = evacuate(cloud, target_order='reserved', check_mode=True)
    assert [h['host'] for h in result['capacity']['hosts']] == ['rack']


def test_reserved_host_options_are_checked():
    cloud = spare_cloud(servers=1)
    assert failing(cloud, target_order='reserved', reserved_hosts=['compute1']).msg == (
        'reserved_hosts lists compute1, the host being evacuated: list other hosts')
    assert failing(cloud, target_order='reserved', reserved_hosts=['ghost']).msg.startswith(
        "no nova-compute service for host 'ghost'")


def test_reserved_hosts_with_the_scheduler_order_warn_and_are_not_used():
    cloud = spare_cloud(servers=1)
    result = evacuate(cloud, reserved_hosts=['spare1'])
    assert result['warnings'] == ['reserved_hosts (spare1) are not used with target_order=scheduler: set '
                                  'target_order to reserved, reserved_then_scheduler or scheduler_then_reserved to '
                                  'use them']
    assert put_hosts(cloud) == [] and cloud.evacuations() == [('vm-0', None)]


def test_a_spare_that_cannot_be_enabled_is_skipped_for_the_next():
    cloud = spare_cloud(servers=1)
    cloud.fail('compute', 'PUT', '^/os-services/%s$' % cloud.service('spare1')['id'], status=500,
               body={'computeFault': {'code': 500, 'message': 'RPC timeout'}})
    result = evacuate(cloud, target_order='reserved')
    record = result['instances'][0]
    assert record['outcome'] == 'moved' and record['to'] == 'spare2' and record['attempts'] == 2
    assert record['history'][0]['error'].startswith('cannot enable the reserved host spare1: cannot update the '
                                                    'nova-compute service of spare1 (status=enabled)')
    assert 'RPC timeout' in record['history'][0]['error']
    assert cloud.evacuations() == [('vm-0', 'spare2')]
    assert result['reserved_hosts_used'] == [dict(host='spare2', disabled_reason='reserved: rack 2',
                                                  action='enabled', instances=ids_of(cloud, 'vm-0'))]


def test_a_spare_that_cannot_be_enabled_fails_the_instance_when_no_retry_is_left():
    cloud = spare_cloud(servers=1)
    cloud.fail('compute', 'PUT', '^/os-services/', status=500)
    error = failing(cloud, target_order='reserved', retries=0)
    assert error.facts['instances'][0]['reason'].startswith('cannot enable the reserved host spare1')
    assert error.facts['instances'][0]['reason'].endswith('(gave up after 1 attempt(s), retries=0)')
    assert cloud.evacuations() == [] and error.facts['reserved_hosts_used'] == []


def test_a_failed_evacuation_to_a_spare_is_retried_on_the_next_spare_then_round_and_round():
    cloud = spare_cloud(servers=1)
    cloud.script(cloud.server('vm-0'), 'failed', 'failed', 'ok')
    result = evacuate(cloud, target_order='reserved')
    assert cloud.evacuations() == [('vm-0', 'spare1'), ('vm-0', 'spare2'), ('vm-0', 'spare1')]
    assert [u['host'] for u in result['reserved_hosts_used']] == ['spare1', 'spare2']
    assert [u['instances'] for u in result['reserved_hosts_used']] == [ids_of(cloud, 'vm-0'), []]
    cloud = make_cloud(servers=1)
    cloud.add_host('spare1', status='disabled', disabled_reason='reserved')
    cloud.script(cloud.server('vm-0'), 'novalidhost', 'ok')
    evacuate(cloud, target_order='scheduler_then_reserved')
    assert cloud.evacuations() == [('vm-0', None), ('vm-0', 'compute2')]


def test_a_scheduler_retry_after_the_scheduler_pool_goes_to_a_spare():
    cloud = make_cloud(servers=1)
    cloud.add_host('spare1', status='disabled', disabled_reason='reserved')
    cloud.script(cloud.server('vm-0'), 'novalidhost', 'novalidhost', 'novalidhost', 'ok')
    evacuate(cloud, target_order='scheduler_then_reserved', retries=3)
    assert cloud.evacuations() == [('vm-0', None), ('vm-0', 'compute2'), ('vm-0', 'compute3'), ('vm-0', 'spare1')]
    assert cloud.service('spare1')['status'] == 'enabled'


def test_an_instance_larger_than_a_hosts_max_unit_does_not_fit_there_however_much_is_free():
    """Placement refuses an allocation above an inventory's max_unit (a flavor with more vcpus than the host has
    cores, at any allocation ratio): the estimate does too."""
    cloud = EvacuationCloud()
    cloud.add_host('compute1')
    narrow = inventory(vcpus=1)
    narrow['VCPU']['allocation_ratio'] = 16.0
    cloud.add_host('compute2', inventories=narrow)
    cloud.add_host('compute3')
    cloud.add_server('compute1', 'wide', vcpus=2)
    cloud.crash('compute1')
    result = evacuate(cloud, check_mode=True)
    record = result['instances'][0]
    assert record['candidates'] == ['compute3'] and record['target_pool'] == 'scheduler'
    hosts = dict((h['host'], h) for h in result['capacity']['hosts'])
    assert hosts['compute2']['free']['vcpus'] == 16 and hosts['compute2']['max_unit']['vcpus'] == 1
    cloud.service('compute3').update(status='disabled')
    assert by_name(evacuate(cloud, check_mode=True))['wide']['reason'].startswith('no capacity: it needs vcpus=2')


def test_an_inventory_without_max_unit_counts_its_total():
    cloud = make_cloud(servers=1)
    for inventories in cloud.inventories.values():
        for resource in inventories.values():
            resource.pop('max_unit')
    result = evacuate(cloud, check_mode=True)
    assert result['capacity']['sufficient'] is True
    assert result['capacity']['hosts'][0]['max_unit'] == dict(vcpus=16, memory_mb=32768, disk_gb=100)


# ---------------------------------------------------------------------------------------------------------
# lost evacuations (a restarted nova-conductor or RabbitMQ drops the request: 'accepted' and 'rebuilding' for ever)


def _lost_cloud(servers=1, **server):
    cloud = make_cloud(servers=0)
    for index in range(servers):
        cloud.add_server('compute1', 'vm-%d' % index, **server)
    return cloud


def _posted(cloud, name):
    return [a for n, a, dummy in cloud.actions() if n == name]


def test_a_lost_evacuation_is_evacuated_again():
    cloud = _lost_cloud()
    server = cloud.server('vm-0')
    cloud.script(server, 'stuck', 'ok')
    result = evacuate(cloud, lost_evacuation_timeout=60)
    record = result['instances'][0]
    lost_id = cloud.migrations[-1]['uuid']
    assert (record['outcome'], record['to'], record['attempts']) == ('moved', 'compute2', 2)
    assert hosts_of(cloud) == {'vm-0': ('compute2', 'ACTIVE')}
    # no state reset: Nova's evacuate API accepts an instance in task state rebuilding
    assert _posted(cloud, 'vm-0') == ['lock', 'evacuate', 'evacuate', 'unlock']
    assert record['history'][0]['migration_status'] == 'accepted'
    assert record['history'][0]['error'] == (
        'its evacuation was lost: migration %s accepted for 60 s (lost_evacuation_timeout=60) and no destination '
        'compute took it; still REBUILD on compute1, task state rebuilding; evacuating it again' % lost_id)
    assert record['history'][1]['migration_status'] == 'done'
    entry, = record['lost_evacuations']
    assert entry == dict(migration_id=lost_id, created_at=cloud.migrations[-1]['created_at'], dest_compute=None,
                         migration_status='accepted',
                         status='REBUILD', task_state='rebuilding', accepted_seconds=60.0, action='evacuated again',
                         left_accepted=[lost_id], allocated_on=['compute1'])
    assert record['reason'] == ('its evacuation was lost (migration %s accepted, never carried out by a compute) and '
                                'it was evacuated again; Nova keeps %s accepted' % (lost_id, lost_id))
    assert result['totals']['evacuations'] == 2 and result['changed'] is True


def test_a_lost_evacuation_of_a_stopped_instance_arrives_stopped():
    cloud = _lost_cloud(status='SHUTOFF', vm_state='stopped')
    cloud.script(cloud.server('vm-0'), 'stuck', 'ok')
    record = evacuate(cloud, lost_evacuation_timeout=30)['instances'][0]
    # its vm_state stays stopped (no reset to active): it arrives stopped, never started on the way
    assert (record['outcome'], record['target_status'], record['power_action']) == ('moved', 'SHUTOFF', None)
    assert hosts_of(cloud) == {'vm-0': ('compute2', 'SHUTOFF')}
    assert _posted(cloud, 'vm-0') == ['lock', 'evacuate', 'evacuate', 'unlock']


def test_a_rerun_recovers_an_evacuation_an_earlier_run_lost():
    cloud = _lost_cloud(status='SHUTOFF', vm_state='stopped')
    server = cloud.server('vm-0')
    cloud._evacuate(server, {}, '2.94')  # the earlier run's evacuation, lost
    cloud.jobs[server['id']]['outcome'] = 'stuck'
    record = evacuate(cloud, lost_evacuation_timeout=30)['instances'][0]
    assert (record['action'], record['resumed'], record['outcome'], record['attempts']) == ('evacuate', True, 'moved',
                                                                                            1)
    assert _posted(cloud, 'vm-0') == ['lock', 'evacuate', 'unlock']
    assert record['history'][0]['error'].startswith('its evacuation was lost: migration %s accepted for 30 s'
                                                    % cloud.migrations[-1]['uuid'])
    assert hosts_of(cloud) == {'vm-0': ('compute2', 'SHUTOFF')}
    assert record['lost_evacuations'][0]['action'] == 'evacuated again'


def test_a_lost_evacuation_an_operator_reset_already_is_evacuated_again():
    cloud = _lost_cloud()
    server = cloud.server('vm-0')
    cloud._evacuate(server, {}, '2.94')
    cloud.jobs[server['id']]['outcome'] = 'stuck'
    cloud._set(server, 'active')  # openstack server set --state active
    record = evacuate(cloud, lost_evacuation_timeout=30)['instances'][0]
    assert record['outcome'] == 'moved' and _posted(cloud, 'vm-0') == ['lock', 'evacuate', 'unlock']
    assert record['lost_evacuations'][0]['task_state'] is None


def test_the_retry_carried_by_the_lost_migration_counts_as_moved():
    cloud = _lost_cloud()
    cloud.conductor_takes_first_accepted = True
    cloud.script(cloud.server('vm-0'), 'stuck', 'ok')
    record = evacuate(cloud, lost_evacuation_timeout=30)['instances'][0]
    lost, new = cloud.migrations[-1], cloud.migrations[0]
    assert (lost['status'], new['status']) == ('done', 'accepted')
    assert record['outcome'] == 'moved' and record['attempts'] == 2
    assert record['history'][1]['migration_id'] == lost['uuid']
    assert record['lost_evacuations'][0]['left_accepted'] == [new['uuid']]
    assert record['lost_evacuations'][0]['allocated_on'] == ['compute1']


@pytest.mark.parametrize('placement', ['claimed', 'unknown'])
def test_an_accepted_evacuation_with_a_destination_claimed_is_never_repeated(placement):
    # the scheduler claimed compute3: the move may be in compute3's hands (blocked on a restarted conductor) -
    # seen in the lab, where it went on after the repeated evacuation landed and rebuilt the instance twice
    cloud = _lost_cloud()
    server = cloud.server('vm-0')
    cloud.script(server, 'stuck', 'ok')
    if placement == 'claimed':
        cloud.claims[server['id']] = ['compute3']
    else:
        cloud.fail('placement', 'GET', r'^/allocations/', status=503)
    record = by_name(failing(cloud, timeout=100, lost_evacuation_timeout=30).facts)['vm-0']
    assert len(cloud.evacuations()) == 1 and record['lost_evacuations'] == []
    assert record['reason'].startswith('not ACTIVE on another host within timeout=100s')


def test_an_accepted_evacuation_its_compute_gave_up_is_evacuated_again_despite_the_claim():
    # seen in the lab after a conductor restart: the conductor's rebuild_server event a success, the destination's
    # first call to the restarting conductor failed - reverts_task_state set none, the migration stays 'accepted'
    # and the scheduler's claim on compute3 stays in Placement
    cloud = _lost_cloud()
    server = cloud.server('vm-0')
    cloud.script(server, 'stuck', 'ok')
    cloud.claims[server['id']] = ['compute3']
    original = cloud._evacuate

    def gives_up(server, body, microversion):
        answer = original(server, body, microversion)
        if len(cloud.evacuations()) == 1:
            server['OS-EXT-STS:task_state'] = None
            server['status'] = 'ACTIVE'
        return answer
    cloud._evacuate = gives_up
    record = evacuate(cloud, lost_evacuation_timeout=30)['instances'][0]
    lost = cloud.migrations[-1]
    assert (record['outcome'], record['attempts'], len(cloud.evacuations())) == ('moved', 2, 2)
    assert record['history'][0]['error'] == (
        'its evacuation was dropped: migration %s accepted for 30 s (lost_evacuation_timeout=30), the scheduler had '
        'claimed compute3 for it, and no compute holds the move (the instance has no task state any more); still '
        'ACTIVE on compute1; evacuating it again' % lost['uuid'])
    entry, = record['lost_evacuations']
    assert (entry['task_state'], entry['allocated_on']) == (None, ['compute1', 'compute3'])
    # it arrived on compute2: compute3 keeps the claim the first scheduling made
    assert record['to'] == 'compute2' and record['reason'].startswith(
        'its evacuation was lost (migration %s accepted, never carried out by a compute; Placement keeps its '
        'allocation on compute3) and it was evacuated again' % lost['uuid'])


def test_an_evacuation_accepted_within_the_lost_timeout_is_waited_for():
    cloud = _lost_cloud()
    cloud.script(cloud.server('vm-0'), 'ok', polls=50)  # slow, not lost
    record = evacuate(cloud, lost_evacuation_timeout=60)['instances'][0]
    assert record['outcome'] == 'moved' and record['attempts'] == 1 and record['lost_evacuations'] == []
    assert len(cloud.evacuations()) == 1


def test_a_stuck_evacuation_is_never_repeated_before_the_lost_timeout():
    cloud = _lost_cloud()
    cloud.script(cloud.server('vm-0'), 'stuck')
    record = by_name(failing(cloud, timeout=100, lost_evacuation_timeout=120).facts)['vm-0']
    assert record['reason'].startswith('not ACTIVE on another host within timeout=100s: REBUILD on compute1')
    assert len(cloud.evacuations()) == 1


def test_lost_evacuation_timeout_zero_never_repeats():
    cloud = _lost_cloud()
    cloud.script(cloud.server('vm-0'), 'stuck')
    failing(cloud, timeout=100, lost_evacuation_timeout=0)
    assert len(cloud.evacuations()) == 1


@pytest.mark.parametrize('change', ['task state', 'host', 'migration', 'deleted'])
def test_an_instance_that_moved_on_is_never_evacuated_again(change):
    cloud = _lost_cloud()
    server = cloud.server('vm-0')
    cloud.script(server, 'stuck')
    original = cloud._compute_get
    reads = []

    def moves_on(path, query, body):
        # 40 s in, the instance changes under the stuck evacuation (the fresh reads see it at 60 s)
        if path == '/servers/%s' % server['id'] and cloud.clock() >= 1040 and not reads:
            reads.append(path)
            if change == 'task state':
                server['OS-EXT-STS:task_state'] = 'rebuild_spawning'
            elif change == 'host':
                server.update({'OS-EXT-SRV-ATTR:host': 'compute3', 'OS-EXT-STS:task_state': None})
            elif change == 'migration':
                cloud.migrations[0].update(status='pre-migrating', dest_compute='compute3')
            else:
                cloud.servers.remove(server)
        return original(path, query, body)
    cloud._compute_get = moves_on
    error = failing(cloud, timeout=100, lost_evacuation_timeout=60)
    assert len(cloud.evacuations()) == 1
    record = by_name(error.facts)['vm-0']
    assert record['lost_evacuations'] == []
    if change == 'deleted':
        assert record['reason'] == 'deleted while it was being evacuated'
    else:
        assert record['reason'].startswith('not ACTIVE on another host within timeout=100s')


def test_a_lost_evacuation_is_never_repeated_when_the_failed_host_is_up_again():
    cloud = _lost_cloud()
    server = cloud.server('vm-0')
    cloud.script(server, 'stuck')
    original = cloud._evacuate

    def host_comes_back(server, body, microversion):
        answer = original(server, body, microversion)
        cloud.service('compute1').update(forced_down=False, state='up')
        return answer
    cloud._evacuate = host_comes_back
    record = by_name(failing(cloud, timeout=100, lost_evacuation_timeout=30).facts)['vm-0']
    assert len(cloud.evacuations()) == 1
    assert record['reason'].startswith('not ACTIVE on another host within timeout=100s: REBUILD on compute1')
    assert record['lost_evacuations'] == []


def test_a_lost_evacuation_with_no_retry_left_is_left_as_it_is():
    cloud = _lost_cloud()
    cloud.script(cloud.server('vm-0'), 'stuck')
    record = by_name(failing(cloud, retries=0, lost_evacuation_timeout=30).facts)['vm-0']
    assert record['reason'].startswith('its evacuation was lost: migration ')
    assert record['reason'].endswith('(gave up after 1 attempt(s), retries=0); left as it is: run again to '
                                     'evacuate it again')
    assert len(cloud.evacuations()) == 1 and record['lost_evacuations'] == []
    assert cloud.server('vm-0')['OS-EXT-STS:task_state'] == 'rebuilding'


def test_an_evacuation_lost_twice_uses_up_the_retries():
    cloud = _lost_cloud()
    cloud.script(cloud.server('vm-0'), 'stuck', 'stuck', 'ok')
    record = by_name(failing(cloud, lost_evacuation_timeout=30, retries=1, timeout=600).facts)['vm-0']
    assert record['attempts'] == 2 and len(record['lost_evacuations']) == 1 and len(cloud.evacuations()) == 2
    assert record['reason'].endswith('(gave up after 2 attempt(s), retries=1); left as it is: run again to '
                                     'evacuate it again')


def test_check_mode_says_what_it_would_do_with_a_lost_evacuation_and_changes_nothing():
    cloud = _lost_cloud(servers=2)
    old, fresh = cloud.server('vm-0'), cloud.server('vm-1')
    for server in (old, fresh):
        cloud._evacuate(server, {}, '2.94')
        cloud.jobs[server['id']]['outcome'] = 'stuck'
    cloud.migrations[-1]['created_at'] = '2026-11-22T04:00:00.000000'  # vm-0's, accepted for an hour
    cloud.requests[:] = []
    now = _evacuate.parse_time('2026-11-22T05:00:00Z')
    result = evacuate(cloud, check_mode=True, lost_evacuation_timeout=120, now=lambda: now)
    records = by_name(result)
    assert result['changed'] is True
    assert cloud.sent('compute', 'POST') == [] and cloud.sent('compute', 'PUT') == []
    entry = records['vm-0']['lost_evacuations'][0]
    assert (entry['accepted_seconds'], entry['action']) == (
        3600.0, 'would evacuate it again after watching it accepted for lost_evacuation_timeout=120 s')
    assert records['vm-0']['reason'].endswith('migration %s is accepted since 2026-11-22T04:00:00.000000: %s'
                                              % (entry['migration_id'], entry['action']))
    assert records['vm-1']['lost_evacuations'][0]['action'].startswith('would wait for it, and evacuate it again')
    assert [r['outcome'] for r in result['instances']] == ['planned', 'planned']
    # only fresh ones: no change predicted
    cloud.migrations[-1]['created_at'] = cloud.migrations[0]['created_at']
    assert evacuate(cloud, check_mode=True, lost_evacuation_timeout=120)['changed'] is False


# a move cut off: its destination claimed it (pre-migrating) and died before the rebuild ended


def _cut_off_cloud(fenced_after):
    """vm-0's first evacuation is claimed by compute2, which dies: Nova sees it down at once, and forced down
    (fenced) `fenced_after` seconds after the evacuation (never when None)."""
    cloud = _lost_cloud()
    cloud.script(cloud.server('vm-0'), 'cut', 'ok')
    original_evacuate, original_advance = cloud._evacuate, cloud._advance
    sent = []

    def evacuate(server, body, microversion):
        answer = original_evacuate(server, body, microversion)
        if not sent:
            cloud.service('compute2')['state'] = 'down'
        sent.append(cloud.clock())
        return answer

    def advance():
        if fenced_after is not None and sent and cloud.clock() >= sent[0] + fenced_after:
            cloud.crash('compute2')
        original_advance()
    cloud._evacuate, cloud._advance = evacuate, advance
    return cloud


def test_a_move_cut_off_by_the_fence_of_its_destination_is_evacuated_again_elsewhere():
    cloud = _cut_off_cloud(fenced_after=20)
    result = evacuate(cloud, lost_evacuation_timeout=0)  # the cut-off needs no lost timeout: the fence says
    record = result['instances'][0]
    cut = cloud.migrations[-1]
    assert (record['outcome'], record['to'], record['attempts']) == ('moved', 'compute3', 2)
    assert hosts_of(cloud) == {'vm-0': ('compute3', 'ACTIVE')}
    assert _posted(cloud, 'vm-0') == ['lock', 'evacuate', 'evacuate', 'unlock']
    assert record['history'][0]['error'] == (
        'its evacuation was cut off: the destination compute2 was fenced (forced down in Nova) while migration %s '
        'was pre-migrating; still REBUILD on compute1, task state rebuilding; evacuating it again' % cut['uuid'])
    entry, = record['lost_evacuations']
    assert (entry['migration_id'], entry['migration_status'], entry['dest_compute'], entry['allocated_on'],
            entry['action']) == (cut['uuid'], 'pre-migrating', 'compute2', ['compute1', 'compute2'], 'evacuated again')
    assert record['reason'] == (
        'its evacuation to compute2 was cut off when compute2 was fenced (migration %s left pre-migrating; Placement '
        'keeps its allocation on compute2) and it was evacuated again; Nova keeps none accepted' % cut['uuid'])
    # the new migration carries the move, never the one cut off
    assert record['history'][1]['migration_id'] == cloud.migrations[0]['uuid'] != cut['uuid']


def test_a_move_whose_destination_is_down_but_not_fenced_is_never_repeated():
    cloud = _cut_off_cloud(fenced_after=None)
    record = by_name(failing(cloud, timeout=100).facts)['vm-0']
    assert len(cloud.evacuations()) == 1 and record['lost_evacuations'] == []
    assert record['reason'].endswith(
        'migration pre-migrating; its destination compute2 went down during the move and is not fenced, so the move '
        'can neither end nor be repeated safely: fence compute2 (host_failover for it), then run again to evacuate it '
        'elsewhere')


def test_a_rerun_evacuates_again_a_move_an_earlier_run_saw_cut_off():
    cloud = _cut_off_cloud(fenced_after=0)
    cloud._evacuate(cloud.server('vm-0'), {}, '2.94')  # the earlier run's evacuation; compute2 then fenced
    cloud.crash('compute2')
    record = evacuate(cloud)['instances'][0]
    assert (record['action'], record['resumed'], record['outcome'], record['to']) == ('evacuate', True, 'moved',
                                                                                      'compute3')
    assert _posted(cloud, 'vm-0') == ['lock', 'evacuate', 'unlock']
    assert record['lost_evacuations'][0]['migration_status'] == 'pre-migrating'


def test_check_mode_says_it_would_evacuate_again_a_move_cut_off_and_changes_nothing():
    cloud = _cut_off_cloud(fenced_after=None)
    cloud._evacuate(cloud.server('vm-0'), {}, '2.94')
    cloud.requests[:] = []
    # compute2 down, not fenced: the move is only waited for
    result = evacuate(cloud, check_mode=True)
    assert result['changed'] is False and result['instances'][0]['lost_evacuations'] == []
    cloud.crash('compute2')
    result = evacuate(cloud, check_mode=True)
    record = result['instances'][0]
    assert result['changed'] is True and record['action'] == 'wait'
    assert record['lost_evacuations'][0]['action'] == 'would evacuate it again: its destination compute2 is fenced ' \
                                                      '(forced down)'
    assert cloud.sent('compute', 'POST') == [] and cloud.sent('compute', 'PUT') == []


@pytest.mark.parametrize('value', [1, 29, -5])
def test_lost_evacuation_timeout_is_zero_or_at_least_30(value):
    cloud = _lost_cloud()
    error = failing(cloud, lost_evacuation_timeout=value)
    assert error.msg.startswith('lost_evacuation_timeout must be 0 (never declare an evacuation lost) or at least 30 '
                                'seconds, not %d' % value)
    assert cloud.sent('compute', 'POST') == []


# ---------------------------------------------------------------------------------------------------------
# a retry waits for a host Nova sees up (computes report through nova-conductor: after its restart every host
# looks down for a while, and the scheduler finds no host)


def _hosts_down_after_the_first_evacuation(cloud, until, hosts=('compute2', 'compute3')):
    """From the first evacuation request on, Nova sees `hosts` down - until the cloud's clock reaches `until`."""
    original_evacuate, original_advance = cloud._evacuate, cloud._advance
    sent = []

    def evacuate(server, body, microversion):
        if not sent:
            for host in hosts:
                cloud.service(host)['state'] = 'down'
        sent.append(cloud.clock())
        return original_evacuate(server, body, microversion)

    def advance():
        if until is not None and cloud.clock() >= until:
            for host in hosts:
                cloud.service(host)['state'] = 'up'
        original_advance()
    cloud._evacuate, cloud._advance = evacuate, advance
    return sent


def test_a_retry_waits_until_nova_sees_a_host_up():
    cloud = _lost_cloud()
    sent = _hosts_down_after_the_first_evacuation(cloud, cloud.clock() + 30)
    record = evacuate(cloud)['instances'][0]
    # the first attempt finds no host (the fake's scheduler sees them down too); the retry waits for one
    assert (record['outcome'], record['attempts']) == ('moved', 2)
    assert record['history'][0]['error'].startswith('the evacuation found no host')
    assert len(sent) == 2 and sent[1] - sent[0] >= 28


def test_a_retry_with_no_host_up_until_the_timeout_is_not_sent():
    cloud = _lost_cloud()
    _hosts_down_after_the_first_evacuation(cloud, None)
    record = by_name(failing(cloud, timeout=60).facts)['vm-0']
    assert record['attempts'] == 2 and len(cloud.evacuations()) == 1
    assert record['reason'].startswith('the evacuation found no host')
    # the retry names the first candidate the scheduler did not fail on: compute2
    assert record['reason'].endswith('(no retry: Nova saw compute2 down until the timeout)')


def test_a_retry_to_a_named_host_waits_for_that_host():
    cloud = _lost_cloud()
    cloud.script(cloud.server('vm-0'), 'failed', 'ok')
    _hosts_down_after_the_first_evacuation(cloud, None, hosts=('compute3',))
    record = by_name(failing(cloud, timeout=60, target_hosts=['compute2', 'compute3']).facts)['vm-0']
    assert cloud.evacuations() == [('vm-0', 'compute2')]
    assert record['reason'].endswith('(no retry: Nova saw compute3 down until the timeout)')
