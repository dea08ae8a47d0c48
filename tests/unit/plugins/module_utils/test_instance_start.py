"""The core of nova_instance_restart and nova_instance_start, against a small fake of Nova's server API."""

import datetime
import json
import re
from urllib.parse import urlsplit

import pytest

from ansible_collections.openstack_ha.recovery.plugins.module_utils import _instance_start as core
from ansible_collections.openstack_ha.recovery.plugins.module_utils._nova import NovaError

NOW = datetime.datetime(2026, 11, 22, 12, 0, 0, tzinfo=datetime.timezone.utc)
USER = 'b5e1c7d0a0e04c0c9a9f3e5b1e6a8c11'


class Response:
    def __init__(self, status_code, body=None):
        self.status_code = status_code
        self._body = body
        self.text = json.dumps(body) if body is not None else ''

    def json(self):
        if self._body is None:
            raise ValueError('no JSON')
        return json.loads(json.dumps(self._body))


class Config:
    def get_default_microversion(self, service_type):
        return None


class Compute:
    def __init__(self, cloud):
        self.cloud = cloud

    def get(self, url, microversion=None, **kwargs):
        return self.cloud.request('GET', url, None)

    def post(self, url, microversion=None, json=None):
        return self.cloud.request('POST', url, json)


class Nova:
    """Servers, their instance actions and the nova-compute services; a start makes a server ACTIVE at once
    unless start_result says otherwise."""

    def __init__(self):
        self.config = Config()
        self.compute = Compute(self)
        self.servers = {}
        self.actions = {}
        self.services = []
        self.posts = []
        self.start_result = {}

    def add_host(self, host, state='up', forced_down=False):
        self.services.append(dict(id=host, host=host, zone='nova', state=state, status='enabled',
                                  forced_down=forced_down, disabled_reason=None, updated_at='2026-11-22T11:59:59'))

    def add_server(self, name, host='compute1', status='SHUTOFF', stopped_by='nova', metadata=None, specs=None,
                   tags=None):
        sid = 'id-%s' % name
        self.servers[sid] = {'id': sid, 'name': name, 'status': status, 'OS-EXT-SRV-ATTR:host': host,
                             'OS-EXT-STS:task_state': None, 'metadata': dict(metadata or {}), 'tags': tags or [],
                             'flavor': {'extra_specs': dict(specs or {})}}
        actions = [{'action': 'create', 'request_id': 'req-create', 'user_id': USER, 'project_id': 'p',
                    'start_time': '2026-11-22T10:00:00.000000'}]
        if stopped_by:
            actions.append({'action': 'stop', 'request_id': 'req-stop-%s' % name, 'project_id': None,
                            'user_id': USER if stopped_by == 'user' else None,
                            'start_time': '2026-11-22T11:00:00.000000'})
        self.actions[sid] = actions
        return sid

    def request(self, method, url, body):
        parts = urlsplit(url)
        path = parts.path
        if method == 'POST':
            self.posts.append((path, body))
        if method == 'GET' and path == '/servers/detail':
            return Response(200, {'servers': list(self.servers.values())})
        if method == 'GET' and path == '/os-services':
            return Response(200, {'services': self.services})
        match = re.match(r'^/servers/([^/]+)(/os-instance-actions|/action|/metadata)?$', path)
        server = self.servers.get(match.group(1)) if match else None
        if server is None:
            return Response(404, {'itemNotFound': {'code': 404, 'message': 'Instance could not be found.'}})
        if method == 'GET' and not match.group(2):
            return Response(200, {'server': server})
        if method == 'GET':
            return Response(200, {'instanceActions': list(reversed(self.actions[server['id']]))})
        if match.group(2) == '/metadata':
            server['metadata'].update(body['metadata'])
            return Response(200, {'metadata': server['metadata']})
        if server['status'] != 'SHUTOFF':
            return Response(409, {'conflict': {'code': 409, 'message': 'Cannot start while %s' % server['status']}})
        server['status'] = self.start_result.get(server['id'], 'ACTIVE')
        self.actions[server['id']].append({'action': 'start', 'request_id': 'req-start', 'user_id': USER,
                                           'project_id': 'p', 'start_time': '2026-11-22T11:59:00.000000'})
        return Response(202)

    def starts(self):
        return [path.split('/')[2] for path, body in self.posts if body == {'os-start': None}]


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, seconds):
        self.t += seconds


@pytest.fixture
def nova():
    nova = Nova()
    nova.add_host('compute1')
    nova.add_host('compute2', state='down')
    return nova


def recover(nova, check_mode=False, **kwargs):
    clock = Clock()
    return core.recover_instances(nova, check_mode=check_mode, now=lambda: NOW, clock=clock, sleep=clock.sleep,
                                  **kwargs)


def by_name(result):
    return dict((r['name'], r) for r in result['instances'])


MARK = {'openstack_ha:restart': 'true'}


def test_scan_restarts_a_marked_instance_nova_stopped_and_leaves_the_rest(nova):
    crashed = nova.add_server('crashed', metadata=MARK)
    nova.add_server('by-user', metadata=MARK, stopped_by='user')
    nova.add_server('unmarked')
    nova.add_server('running', status='ACTIVE', stopped_by=None, metadata=MARK)
    nova.add_server('flavor-marked', specs=MARK)
    nova.add_server('on-down-host', host='compute2', metadata=MARK)
    nova.add_server('opted-out', metadata={'openstack_ha:restart': 'false'}, specs=MARK)
    result = recover(nova)
    records = by_name(result)
    assert sorted(records) == ['by-user', 'crashed', 'flavor-marked', 'on-down-host', 'running']
    assert records['crashed']['outcome'] == 'restarted' and records['crashed']['status_after'] == 'ACTIVE'
    assert records['crashed']['stopped_by'] == 'nova' and records['crashed']['marked_by'] == 'metadata'
    assert records['crashed']['restart_history'] == ['2026-11-22T12:00:00Z']
    assert nova.servers[crashed]['metadata']['openstack_ha:restart_history'] == '2026-11-22T12:00:00Z'
    assert records['flavor-marked']['outcome'] == 'restarted' and records['flavor-marked']['marked_by'] == 'flavor'
    assert records['by-user']['outcome'] == 'skipped'
    assert records['by-user']['reason'].startswith('stopped by user %s at 2026-11-22T11:00:00.000000' % USER)
    assert records['running']['outcome'] == 'unchanged'
    assert records['on-down-host']['outcome'] == 'skipped' and 'compute2 is down' in records['on-down-host']['reason']
    assert result['changed'] is True
    assert result['totals']['restarted'] == 2 and result['totals']['skipped'] == 2
    assert sorted(nova.starts()) == ['id-crashed', 'id-flavor-marked']
    assert result['diff']['before']['crashed'] == 'SHUTOFF' and result['diff']['after']['crashed'] == 'ACTIVE'


def test_named_unmarked_instance_is_reported_not_started(nova):
    nova.add_server('plain')
    record = by_name(recover(nova, servers=['plain']))['plain']
    assert record['outcome'] == 'skipped' and record['reason'].startswith('not marked for restart')
    assert nova.posts == []


def test_server_tag_marks_and_named_by_id(nova):
    sid = nova.add_server('tagged', tags=['openstack_ha:restart'])
    record = recover(nova, servers=[sid, 'tagged'])['instances']
    assert len(record) == 1 and record[0]['marked_by'] == 'tag' and record[0]['outcome'] == 'restarted'


def test_check_mode_plans_and_changes_nothing_and_rerun_is_unchanged(nova):
    sid = nova.add_server('crashed', metadata=MARK)
    plan = recover(nova, check_mode=True)
    assert plan['changed'] is True and by_name(plan)['crashed']['outcome'] == 'would_restart'
    assert plan['diff']['after']['crashed'] == 'ACTIVE'
    assert nova.posts == [] and nova.servers[sid]['status'] == 'SHUTOFF'
    assert recover(nova)['changed'] is True
    again = recover(nova)
    assert again['changed'] is False and by_name(again)['crashed']['outcome'] == 'unchanged'


def test_restart_limit_counts_only_the_window_and_stops_at_the_limit(nova):
    old = '2026-11-22T10:00:00Z'  # 2 h ago: outside the 1 h window
    recent = '2026-11-22T11:30:00Z 2026-11-22T11:45:00Z'
    sid = nova.add_server('flappy', metadata=dict(MARK, **{'openstack_ha:restart_history': old + ' ' + recent}))
    record = by_name(recover(nova, max_restarts=2))['flappy']
    assert record['outcome'] == 'limit_reached' and record['restarts_in_window'] == 2
    assert 'the limit is 2' in record['reason'] and 'openstack_ha:restart_history' in record['reason']
    assert nova.posts == [] and nova.servers[sid]['status'] == 'SHUTOFF'
    record = by_name(recover(nova, max_restarts=3))['flappy']
    assert record['outcome'] == 'restarted'
    assert nova.servers[sid]['metadata']['openstack_ha:restart_history'] == recent + ' 2026-11-22T12:00:00Z'


def test_a_start_that_does_not_reach_active_fails_and_still_counts(nova):
    sid = nova.add_server('broken', metadata=MARK)
    nova.start_result[sid] = 'SHUTOFF'
    record = by_name(recover(nova, timeout=10, poll_interval=2))['broken']
    assert record['outcome'] == 'failed' and 'still SHUTOFF' in record['reason']
    assert record['restarts_in_window'] == 1
    sid2 = nova.add_server('errors', metadata=MARK)
    nova.start_result[sid2] = 'ERROR'
    reason = by_name(recover(nova, servers=['errors']))['errors']['reason']
    assert reason.startswith('started, but the server went to ERROR')


def test_stopped_by_any_starts_a_user_stop(nova):
    nova.add_server('by-user', metadata=MARK, stopped_by='user')
    assert by_name(recover(nova, stopped_by='any'))['by-user']['outcome'] == 'restarted'


def test_newest_action_not_a_stop_is_skipped(nova):
    nova.add_server('odd', metadata=MARK, stopped_by=None)
    record = by_name(recover(nova))['odd']
    assert record['outcome'] == 'skipped' and 'newest instance action is create' in record['reason']


@pytest.mark.parametrize('kwargs, message', [
    (dict(max_restarts=0), 'max_restarts must be at least 1, got 0'),
    (dict(max_restarts=13), 'max_restarts must be at most 12'),
    (dict(window=0), 'window must be at least 1'),
    (dict(stopped_by='someone'), "stopped_by must be nova or any, got 'someone'"),
])
def test_bad_options_are_refused(nova, kwargs, message):
    with pytest.raises(core.InstanceStartError, match=re.escape(message)):
        recover(nova, **kwargs)


def test_unknown_and_ambiguous_servers_are_refused(nova):
    with pytest.raises(core.InstanceStartError, match="no server named or with the id 'ghost'"):
        recover(nova, servers=['ghost'])
    nova.add_server('twin')
    nova.servers['id-twin-2'] = dict(nova.servers['id-twin'], id='id-twin-2')
    with pytest.raises(core.InstanceStartError, match="2 servers are named 'twin'"):
        recover(nova, servers=['twin'])


# ---------------------------------------------------------------------------------------------------------
# start_in_priority_order


def start(nova, hosts=('compute1',), check_mode=False, ready=lambda a, p: True, **kwargs):
    clock = Clock()
    return core.start_in_priority_order(nova, list(hosts), check_mode=check_mode, clock=clock, sleep=clock.sleep,
                                        ready=ready, **kwargs)


def test_site_start_goes_by_priority_and_only_what_was_running(nova):
    nova.add_server('low', specs={'evacuation_priority': '1'})
    nova.add_server('high', metadata={'evacuation_priority': '10'})
    nova.add_server('mid-listed', stopped_by='user', specs={'evacuation_priority': '5'})
    nova.add_server('stopped-by-user', stopped_by='user', specs={'evacuation_priority': '10'})
    nova.add_server('elsewhere', host='compute3')
    result = start(nova, running_before=['id-mid-listed'])
    assert nova.starts() == ['id-high', 'id-mid-listed', 'id-low']
    assert [g['priority'] for g in result['groups']] == [10, 5, 1]
    assert [g['outcome'] for g in result['groups']] == ['ok', 'ok', 'ok']
    records = by_name(result)
    assert records['high']['priority_source'] == 'metadata' and records['low']['priority_source'] == 'flavor'
    assert records['stopped-by-user']['outcome'] == 'skipped'
    assert result['totals']['started'] == 3 and result['changed'] is True
    assert start(nova)['changed'] is False


def test_site_start_check_mode_starts_nothing(nova):
    nova.add_server('vm')
    result = start(nova, check_mode=True)
    assert by_name(result)['vm']['outcome'] == 'would_start' and result['groups'][0]['outcome'] == 'planned'
    assert nova.posts == []


def test_site_start_readiness_probe_failure_fails_the_group_but_the_next_group_runs(nova):
    nova.add_server('db', metadata={'evacuation_priority': '9', 'openstack_ha:ready_tcp': '10.0.0.5:5432'})
    nova.add_server('app')
    result = start(nova, ready=lambda address, port: False, ready_timeout=5)
    records = by_name(result)
    assert records['db']['outcome'] == 'failed' and '10.0.0.5:5432 did not answer within 5 s' in records['db']['reason']
    assert records['app']['outcome'] == 'started'
    assert [g['outcome'] for g in result['groups']] == ['failed', 'ok']


def test_site_start_refuses_unknown_hosts_and_bad_probes(nova):
    with pytest.raises(core.InstanceStartError, match='unknown host.s. compute9'):
        start(nova, hosts=['compute9'])
    nova.add_server('bad', metadata={'openstack_ha:ready_tcp': 'no-port'})
    with pytest.raises(core.InstanceStartError, match="metadata openstack_ha:ready_tcp='no-port' is not ADDRESS:PORT"):
        start(nova)


def test_site_start_on_a_down_host_fails_the_instance(nova):
    nova.add_server('stuck', host='compute2')
    record = by_name(start(nova, hosts=['compute2']))['stuck']
    assert record['outcome'] == 'failed' and 'compute2 is down' in record['reason']
    assert nova.posts == []


def test_tcp_ready():
    def refuse(*args, **kwargs):
        raise OSError('refused')
    assert core.tcp_ready('127.0.0.1', 1, connect=refuse) is False

    class Conn:
        def close(self):
            pass
    assert core.tcp_ready('127.0.0.1', 22, connect=lambda *a, **k: Conn()) is True


def test_api_errors_name_the_server(nova):
    nova.add_server('vm', metadata=MARK)
    nova.request = lambda method, url, body: Response(500, {'computeFault': {'code': 500, 'message': 'boom'}})
    with pytest.raises(NovaError, match='cannot list the servers: the compute API answered HTTP 500'):
        recover(nova)


def test_a_refused_start_fails_that_instance_only(nova):
    nova.add_server('a', metadata=MARK)
    nova.add_server('b', metadata=MARK)
    original = nova.request

    def refuse_a(method, url, body):
        if method == 'POST' and url.startswith('/servers/id-a/action'):
            return Response(409, {'conflict': {'code': 409, 'message': 'task_state powering-on'}})
        return original(method, url, body)
    nova.request = refuse_a
    records = by_name(recover(nova))
    assert records['a']['outcome'] == 'failed' and 'HTTP 409: task_state powering-on' in records['a']['reason']
    assert records['b']['outcome'] == 'restarted'


def test_site_start_waits_for_nova_to_stop_what_was_running_then_starts_it(nova):
    sid = nova.add_server('vm', status='ACTIVE', stopped_by=None)
    original = nova.request
    reads = []

    def sync_after_two_reads(method, url, body):
        if method == 'GET' and url.startswith('/servers/detail'):
            reads.append(url)
            if len(reads) == 3:  # Nova's power-state sync stops it
                nova.servers[sid]['status'] = 'SHUTOFF'
                nova.actions[sid].append({'action': 'stop', 'request_id': 'req-sync', 'user_id': None,
                                          'project_id': None, 'start_time': '2026-11-22T11:58:00.000000'})
        return original(method, url, body)
    nova.request = sync_after_two_reads
    record = by_name(start(nova, running_before=[sid], settle_timeout=60))['vm']
    assert len(reads) == 3 and record['outcome'] == 'started'


def test_site_start_leaves_a_running_guest_after_the_settle_timeout(nova):
    sid = nova.add_server('vm', status='ACTIVE', stopped_by=None)
    record = by_name(start(nova, running_before=['vm'], settle_timeout=4, poll_interval=2))['vm']
    assert record['outcome'] == 'unchanged' and 'did not stop it within settle_timeout' in record['reason']
    assert nova.posts == [] and nova.servers[sid]['status'] == 'ACTIVE'


def test_site_start_check_mode_while_the_hosts_are_down_plans_the_listed_instances(nova):
    nova.add_server('vm', host='compute2', status='ACTIVE', stopped_by=None)
    record = by_name(start(nova, hosts=['compute2'], running_before=['id-vm'], check_mode=True))['vm']
    assert record['outcome'] == 'would_start' and 'compute2 is down' in record['reason']
    assert nova.posts == []
