# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Starting instances again: the core of nova_instance_restart (a crashed instance on a healthy host) and
nova_instance_start (the instances of a site that lost its power, in priority order).

Both decide from Nova's own records whether an instance is off because something other than a user stopped it:
when a guest powers itself off (a crash, a panic, a power cut of its host), the compute's power-state sync
(nova.compute.manager._sync_instance_power_state) calls the stop API itself, with an admin context that has no
user. The instance becomes SHUTOFF and its newest instance action is a 'stop' whose user_id is null. A user's
`openstack server stop` records a 'stop' with that user's id.

    instance_stop(conn, server_id)        ('nova' | 'user' | 'none', the newest instance action or None)
    recover_instances(conn, ...)          nova_instance_restart: start marked instances Nova stopped, within limits
    start_in_priority_order(conn, ...)    nova_instance_start: start instances group by group, highest first

Requests go through _nova._api (the one SDK boundary the unit tests fake).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import socket
import time

from urllib.parse import quote

from ansible_collections.openstack_ha.recovery.plugins.module_utils._evacuate import server_action
from ansible_collections.openstack_ha.recovery.plugins.module_utils._nova import (
    NovaError,
    _api,
    _paged,
    compute_microversion,
    compute_services,
    is_true,
    parse_time,
    utc_now,
)

RESTART_TAG = 'openstack_ha:restart'
HISTORY_TAG = 'openstack_ha:restart_history'
READY_TAG = 'openstack_ha:ready_tcp'
PRIORITY_TAG = 'evacuation_priority'
# Nova keeps metadata values up to 255 characters: the history holds at most this many times (21 characters each).
HISTORY_MAX = 12
UUID_PATTERN = re.compile(r'^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$', re.I)

RECORD_KEYS = ('id', 'name', 'host', 'status_before', 'status_after', 'marked', 'marked_by', 'stopped_by',
               'stop_action', 'restarts_in_window', 'restart_history', 'outcome', 'reason', 'seconds')
RESTART_RESULT_KEYS = ('instances', 'totals')
START_RESULT_KEYS = ('groups', 'instances', 'totals')


class InstanceStartError(NovaError):
    """An instance could not be read or started; msg names the server."""


# ---------------------------------------------------------------------------------------------------------
# Nova reads and writes


def _mv(conn):
    return compute_microversion(conn, 'servers')


def get_server(conn, server_id):
    data = _api(conn, 'compute', 'get', '/servers/%s' % quote(str(server_id)), 'read server %s' % server_id,
                _mv(conn), missing_ok=True)
    return None if data is None else data.get('server')


def all_servers(conn):
    return _paged(conn, '/servers/detail', dict(all_tenants='True'), 'servers', 'list the servers', 'servers', 'id')


def find_server(conn, name_or_id, servers=None):
    """The raw server named or with the id `name_or_id`; InstanceStartError when none or several match."""
    if UUID_PATTERN.match(name_or_id):
        raw = get_server(conn, name_or_id)
        if raw is not None:
            return raw
    servers = all_servers(conn) if servers is None else servers
    found = [raw for raw in servers if raw.get('name') == name_or_id or raw.get('id') == name_or_id]
    if not found:
        raise InstanceStartError('no server named or with the id %r (in any project): give an existing server'
                                 % name_or_id)
    if len(found) > 1:
        raise InstanceStartError('%d servers are named %r (%s): give the id of the one to start'
                                 % (len(found), name_or_id, ', '.join(sorted(raw['id'] for raw in found))))
    return found[0]


def instance_actions(conn, server_id):
    """The server's instance actions, newest first (Nova's order)."""
    data = _api(conn, 'compute', 'get', '/servers/%s/os-instance-actions' % quote(str(server_id)),
                'list the instance actions of server %s' % server_id, _mv(conn))
    actions = data.get('instanceActions') or []
    return sorted(actions, key=lambda a: (a.get('start_time') or ''), reverse=True)


def instance_stop(conn, server_id):
    """Who stopped the server: ('nova', action) when its newest action is a stop without a user (Nova's
    power-state sync after the guest powered off by itself), ('user', action) for a stop a user asked for,
    ('none', newest action or None) when its newest action is not a stop."""
    actions = instance_actions(conn, server_id)
    if not actions or actions[0].get('action') != 'stop':
        return 'none', (_action_view(actions[0]) if actions else None)
    action = actions[0]
    return ('user' if action.get('user_id') else 'nova'), _action_view(action)


def _action_view(action):
    return dict((key, action.get(key)) for key in ('action', 'request_id', 'user_id', 'project_id', 'start_time'))


def start_server(conn, server_id):
    """POST os-start (Nova answers 202 with no body); ActionFailed (a NovaError) when refused."""
    server_action(conn, server_id, {'os-start': None}, _mv(conn), 'start server %s' % server_id)


def set_metadata(conn, server_id, metadata):
    _api(conn, 'compute', 'post', '/servers/%s/metadata' % quote(str(server_id)),
         'write the metadata of server %s' % server_id, _mv(conn), body={'metadata': metadata})


# ---------------------------------------------------------------------------------------------------------
# plain decisions


def marked_for_restart(raw, tag):
    """(marked, source): server metadata `tag` (true/false) decides first, then a server tag named `tag`, then the
    flavor extra spec `tag`; (False, None) when none sets it."""
    metadata = raw.get('metadata') or {}
    if tag in metadata:
        return is_true(metadata[tag]), 'metadata'
    if tag in (raw.get('tags') or []):
        return True, 'tag'
    specs = (raw.get('flavor') or {}).get('extra_specs') or {}
    if tag in specs:
        return is_true(specs[tag]), 'flavor'
    return False, None


def restart_history(raw, tag):
    """The restart times recorded in the server's metadata `tag` (space-separated UTC times), oldest first."""
    text = (raw.get('metadata') or {}).get(tag) or ''
    times = [parse_time(word) for word in text.split()]
    return sorted(t for t in times if t is not None)


def _iso(moment):
    return moment.strftime('%Y-%m-%dT%H:%M:%SZ')


def priority_of(raw, tag):
    """(priority, source): the server metadata `tag`, else the flavor extra spec `tag` (nova_evacuate's
    priority_tag), else 0. A value that is not an integer counts as 0."""
    for source, values in (('metadata', raw.get('metadata') or {}),
                           ('flavor', (raw.get('flavor') or {}).get('extra_specs') or {})):
        if tag in values:
            try:
                return int(str(values[tag]).strip()), source
            except ValueError:
                return 0, source
    return 0, 'default'


def _host_problem(services, host):
    """Why the server's host is no healthy host to start it on, or None."""
    service = next((s for s in services if s['host'] == host), None)
    if service is None:
        return 'its host %s has no nova-compute service' % host
    if service['forced_down'] or service['state'] != 'up':
        return ('its host %s is down (nova-compute %s%s): a host failure is host_failover\'s case'
                % (host, service['state'], ', forced down' if service['forced_down'] else ''))
    return None


def _record(raw):
    return dict(id=raw.get('id'), name=raw.get('name'), host=raw.get('OS-EXT-SRV-ATTR:host'),
                status_before=raw.get('status'), status_after=raw.get('status'), marked=None, marked_by=None,
                stopped_by=None, stop_action=None, restarts_in_window=None, restart_history=[], outcome=None,
                reason=None, seconds=0.0)


def wait_active(conn, server_id, timeout, poll, clock=time.monotonic, sleep=time.sleep):
    """Wait for the server to be ACTIVE: (raw, None), or (raw, reason) when it went to ERROR or timed out."""
    deadline = clock() + timeout
    while True:
        raw = get_server(conn, server_id)
        if raw is None:
            return None, 'the server was deleted while it was starting'
        if raw.get('status') == 'ACTIVE' and not raw.get('OS-EXT-STS:task_state'):
            return raw, None
        if raw.get('status') == 'ERROR':
            return raw, 'the server went to ERROR: %s' % ((raw.get('fault') or {}).get('message') or 'no fault')
        if clock() >= deadline:
            return raw, 'still %s (task %s) after %s s' % (raw.get('status'), raw.get('OS-EXT-STS:task_state'),
                                                           timeout)
        sleep(poll)


# ---------------------------------------------------------------------------------------------------------
# nova_instance_restart


def recover_instances(conn, servers=None, restart_tag=RESTART_TAG, history_tag=HISTORY_TAG, max_restarts=3,
                      window=3600, stopped_by='nova', timeout=300, poll_interval=2, check_mode=False,
                      now=utc_now, clock=time.monotonic, sleep=time.sleep):
    """Start the marked instances that Nova stopped because their guest went off, at most `max_restarts` times
    per `window` seconds each. `servers`: names or ids; empty scans every server marked with `restart_tag`."""
    _check_restart_options(max_restarts, window, stopped_by, timeout, poll_interval)
    started = clock()
    listing = all_servers(conn)
    if servers:
        raws = [find_server(conn, name, listing) for name in servers]
        seen = set()
        raws = [r for r in raws if not (r['id'] in seen or seen.add(r['id']))]
    else:
        raws = [raw for raw in listing if marked_for_restart(raw, restart_tag)[0]]
    services = compute_services(conn) if raws else []
    records = []
    for raw in sorted(raws, key=lambda r: (r.get('name') or '', r['id'])):
        t0 = clock()
        record = _record(raw)
        _decide_restart(conn, record, raw, services, restart_tag, history_tag, max_restarts, window, stopped_by,
                        now())
        if record['outcome'] == 'restart':
            if check_mode:
                record.update(outcome='would_restart')
            else:
                _restart(conn, record, raw, history_tag, window, timeout, poll_interval, now(), clock, sleep)
        record['seconds'] = round(clock() - t0, 1)
        records.append(record)
    totals = dict((outcome, len([r for r in records if r['outcome'] == outcome]))
                  for outcome in ('restarted', 'would_restart', 'unchanged', 'skipped', 'limit_reached', 'failed'))
    totals.update(instances=len(records), seconds=round(clock() - started, 1))
    changed = any(r['outcome'] in ('restarted', 'would_restart') for r in records)
    diff = dict(before=dict((r['name'], r['status_before']) for r in records),
                after=dict((r['name'], 'ACTIVE' if r['outcome'] == 'would_restart' else r['status_after'])
                           for r in records))
    return dict(changed=changed, instances=records, totals=totals, diff=diff)


def _check_restart_options(max_restarts, window, stopped_by, timeout, poll_interval):
    for name, value in (('max_restarts', max_restarts), ('window', window), ('timeout', timeout),
                        ('poll_interval', poll_interval)):
        if value is None or value < 1:
            raise InstanceStartError('%s must be at least 1, got %r' % (name, value))
    if max_restarts > HISTORY_MAX:
        raise InstanceStartError('max_restarts must be at most %d (the restart history lives in one server '
                                 'metadata value of 255 characters), got %d' % (HISTORY_MAX, max_restarts))
    if stopped_by not in ('nova', 'any'):
        raise InstanceStartError('stopped_by must be nova or any, got %r' % (stopped_by,))


def _decide_restart(conn, record, raw, services, restart_tag, history_tag, max_restarts, window, stopped_by, now):
    marked, source = marked_for_restart(raw, restart_tag)
    history = [t for t in restart_history(raw, history_tag) if (now - t).total_seconds() < window]
    record.update(marked=marked, marked_by=source, restarts_in_window=len(history),
                  restart_history=[_iso(t) for t in history])
    if not marked:
        record.update(outcome='skipped', reason='not marked for restart: set the server metadata %s=true (or the '
                                                'flavor extra spec, or a server tag %s)' % (restart_tag, restart_tag))
        return
    status = raw.get('status')
    if status == 'ACTIVE':
        record.update(outcome='unchanged', reason='ACTIVE already')
        return
    if status != 'SHUTOFF' or raw.get('OS-EXT-STS:task_state'):
        record.update(outcome='skipped', reason='status %s (task %s): only a SHUTOFF instance with no task is started'
                                                % (status, raw.get('OS-EXT-STS:task_state')))
        return
    who, action = instance_stop(conn, raw['id'])
    record.update(stopped_by=who, stop_action=action)
    if who != 'nova' and stopped_by == 'nova':
        record.update(outcome='skipped', reason=(
            'stopped by user %s at %s (request %s): a stop someone asked for is left alone' % (
                action['user_id'], action['start_time'], action['request_id']) if who == 'user' else
            'its newest instance action is %s, not a stop by Nova: Nova did not see the guest go off'
            % ((action or {}).get('action') or 'none')))
        return
    problem = _host_problem(services, record['host'])
    if problem:
        record.update(outcome='skipped', reason=problem)
        return
    if len(history) >= max_restarts:
        record.update(outcome='limit_reached', reason=(
            'restarted %d time(s) in the last %d s (%s), the limit is %d: left SHUTOFF for someone to look at why it '
            'keeps going down; remove the server metadata %s to allow restarts again'
            % (len(history), window, ', '.join(record['restart_history']), max_restarts, history_tag)))
        return
    record.update(outcome='restart', reason='stopped by Nova at %s (request %s): the guest went off by itself'
                                            % ((action or {}).get('start_time'), (action or {}).get('request_id'))
                  if who == 'nova' else 'stopped_by is any: starting it although %s' % who)


def _restart(conn, record, raw, history_tag, window, timeout, poll_interval, now, clock, sleep):
    # the restart is counted before it is tried: an instance that keeps failing to start still reaches the limit
    history = (record['restart_history'] + [_iso(now)])[-HISTORY_MAX:]
    set_metadata(conn, raw['id'], {history_tag: ' '.join(history)})
    record.update(restart_history=history, restarts_in_window=len(history))
    try:
        start_server(conn, raw['id'])
    except NovaError as exc:
        record.update(outcome='failed', reason='the start request failed: %s' % exc)
        return
    after, problem = wait_active(conn, raw['id'], timeout, poll_interval, clock, sleep)
    record['status_after'] = after.get('status') if after else None
    if problem:
        record.update(outcome='failed', reason='started, but %s' % problem)
    else:
        record['outcome'] = 'restarted'


# ---------------------------------------------------------------------------------------------------------
# nova_instance_start


def tcp_ready(address, port, timeout=2.0, connect=socket.create_connection):
    try:
        connection = connect((address, int(port)), timeout=timeout)
    except (OSError, ValueError):
        return False
    connection.close()
    return True


def _readiness_target(raw, tag):
    """(address, port) from the server metadata `tag` (ADDRESS:PORT), None when unset; InstanceStartError when
    malformed."""
    value = (raw.get('metadata') or {}).get(tag)
    if not value:
        return None
    address, sep, port = str(value).rpartition(':')
    if not sep or not address or not port.isdigit():
        raise InstanceStartError('server %s (%s): metadata %s=%r is not ADDRESS:PORT'
                                 % (raw.get('name'), raw.get('id'), tag, value))
    return address.strip('[]'), int(port)


def _was_running(conn, raw, running_before):
    """Why the server counts as running before the outage, or None: listed in running_before (ACTIVE while its
    host was down, read before the power came back), or SHUTOFF with a stop by Nova as its newest action."""
    if raw['id'] in running_before or raw.get('name') in running_before:
        return 'running before the outage (listed)', None
    if raw.get('status') == 'SHUTOFF':
        who, action = instance_stop(conn, raw['id'])
        if who == 'nova':
            return 'stopped by Nova at %s: its guest went off with the power' % action['start_time'], action
    return None, None


def _settled_servers(conn, hosts, running_before, settle_timeout, poll_interval, clock, sleep):
    """The servers on the hosts, once no server listed in running_before is ACTIVE any more, or settle_timeout
    seconds passed: a compute that starts runs its power-state sync at once and stops the guests that came back
    off, but Nova shows them ACTIVE until then."""
    deadline = clock() + settle_timeout
    while True:
        servers = [r for r in all_servers(conn) if r.get('OS-EXT-SRV-ATTR:host') in hosts]
        waiting = [r for r in servers if r.get('status') == 'ACTIVE'
                   and (r['id'] in running_before or r.get('name') in running_before)]
        if not waiting or clock() >= deadline:
            return servers
        sleep(poll_interval)


def start_in_priority_order(conn, hosts, running_before=(), priority_tag=PRIORITY_TAG, ready_tag=READY_TAG,
                            timeout=600, ready_timeout=300, settle_timeout=120, poll_interval=2, check_mode=False,
                            clock=time.monotonic, sleep=time.sleep, ready=tcp_ready):
    """Start the instances of `hosts` that were running before a site outage, in groups of equal priority,
    highest first; a group starts when every instance of the one before is ACTIVE (and answers its readiness
    probe) or has failed."""
    for name, value in (('timeout', timeout), ('ready_timeout', ready_timeout), ('poll_interval', poll_interval),
                        ('settle_timeout', settle_timeout + 1 if settle_timeout is not None else None)):
        if value is None or value < 1:
            raise InstanceStartError('%s must be at least 1, got %r' % (name, value))
    if not hosts:
        raise InstanceStartError('no hosts given: name the hosts whose instances to start')
    started = clock()
    running_before = set(running_before or [])
    services = compute_services(conn)
    known = set(s['host'] for s in services)
    unknown = [h for h in hosts if h not in known]
    if unknown:
        raise InstanceStartError('unknown host(s) %s: Nova has no nova-compute service on them (known: %s)'
                                 % (', '.join(unknown), ', '.join(sorted(known)) or 'none'))
    on_hosts = _settled_servers(conn, hosts, running_before, 0 if check_mode else settle_timeout, poll_interval,
                                clock, sleep)
    records = []
    for raw in sorted(on_hosts, key=lambda r: (r.get('name') or '', r['id'])):
        record = _record(raw)
        record['priority'], record['priority_source'] = priority_of(raw, priority_tag)
        why, action = _was_running(conn, raw, running_before)
        record.update(stop_action=action, ready=_readiness_target(raw, ready_tag))
        listed = raw['id'] in running_before or raw.get('name') in running_before
        if raw.get('status') == 'ACTIVE' and listed and check_mode:
            record.update(outcome='start', reason='running before the outage (listed): Nova stops it when its host '
                                                  'is back, then it is started')
        elif raw.get('status') == 'ACTIVE':
            record.update(outcome='unchanged', reason='ACTIVE already')
            if listed:
                record['reason'] = ('ACTIVE: Nova did not stop it within settle_timeout after its host came back (its '
                                    'guest runs, e.g. resume_guests_state_on_host_boot)')
        elif why is None:
            record.update(outcome='skipped', reason='not running before the outage (status %s, not stopped by '
                                                    'Nova): left as it is' % raw.get('status'))
        elif raw.get('status') != 'SHUTOFF' or raw.get('OS-EXT-STS:task_state'):
            record.update(outcome='failed', reason='%s, but now %s (task %s): not startable'
                                                   % (why, raw.get('status'), raw.get('OS-EXT-STS:task_state')))
        else:
            record.update(outcome='start', reason=why)
        problem = _host_problem(services, record['host'])
        if record['outcome'] == 'start' and problem and check_mode:
            record['reason'] += '; %s now: it must be up first' % problem
        elif record['outcome'] == 'start' and problem:
            record.update(outcome='failed', reason='%s, but %s' % (record['reason'], problem))
        records.append(record)
    priorities = sorted(set(r['priority'] for r in records), reverse=True)
    groups = []
    for priority in priorities:
        members = [r for r in records if r['priority'] == priority]
        group = dict(priority=priority, instances=[r['id'] for r in members], started=None, finished=None,
                     seconds=0.0, outcome=None)
        _start_group(conn, group, members, check_mode, timeout, ready_timeout, poll_interval, clock, sleep, ready)
        groups.append(group)
    totals = dict((outcome, len([r for r in records if r['outcome'] == outcome]))
                  for outcome in ('started', 'would_start', 'unchanged', 'skipped', 'failed'))
    totals.update(instances=len(records), seconds=round(clock() - started, 1))
    changed = any(r['outcome'] in ('started', 'would_start') for r in records)
    return dict(changed=changed, groups=groups, instances=records, totals=totals)


def _start_group(conn, group, members, check_mode, timeout, ready_timeout, poll_interval, clock, sleep, ready):
    t0 = clock()
    group['started'] = _iso(utc_now())
    to_start = [r for r in members if r['outcome'] == 'start']
    if check_mode:
        for record in to_start:
            record['outcome'] = 'would_start'
    else:
        for record in to_start:
            try:
                start_server(conn, record['id'])
            except NovaError as exc:
                record.update(outcome='failed', reason='%s; the start request failed: %s' % (record['reason'], exc))
        for record in [r for r in to_start if r['outcome'] == 'start']:
            remaining = max(1, timeout - (clock() - t0))
            after, problem = wait_active(conn, record['id'], remaining, poll_interval, clock, sleep)
            record['status_after'] = after.get('status') if after else None
            if problem:
                record.update(outcome='failed', reason='%s; started, but %s' % (record['reason'], problem))
            else:
                record['outcome'] = 'started'
        for record in [r for r in to_start if r['outcome'] == 'started' and r['ready']]:
            address, port = record['ready']
            deadline = clock() + ready_timeout
            while not ready(address, port):
                if clock() >= deadline:
                    record.update(outcome='failed', reason='%s; ACTIVE, but %s:%d did not answer within %d s'
                                                           % (record['reason'], address, port, ready_timeout))
                    break
                sleep(poll_interval)
    for record in members:
        record['seconds'] = round(clock() - t0, 1)
        if record['ready']:
            record['ready'] = '%s:%d' % record['ready']
    group['finished'] = _iso(utc_now())
    group['seconds'] = round(clock() - t0, 1)
    failed = [r for r in members if r['outcome'] == 'failed']
    group['outcome'] = 'failed' if failed else 'planned' if check_mode and to_start else 'ok'
