# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Drain core of nova_drain (planned maintenance): plain functions over an openstacksdk connection.

    drain_host(conn, host, ...)   plan (check mode) or run the drain of a healthy host

Every request goes through _nova's SDK boundary (_nova._call), so unit tests fake the same surface as for the
other nova modules. What Nova does, and what this code does about it (Nova 34):

- Live migration needs an ACTIVE or PAUSED instance; cold migration (migrate, then confirm the resize) an ACTIVE
  or SHUTOFF one. Instances in any other state (ERROR, SUSPENDED, RESCUED, ...) are not moved and are reported,
  except ERROR ones with reset_error_instances (their state is reset to active first).
- os-migrateLive is asked at 2.34 (block_migration 'auto' needs 2.25; from 2.34 the pre-checks run in the
  conductor after the API answered, so a refused live migration shows as a migration record in 'error' and the
  instance back on its host with no task state, instead of an HTTP error). A target host given at 2.30 and later
  goes through the scheduler's filters: a disabled or full target is refused, never forced.
- migrate (cold) is asked at 2.56, the first that takes a target host. The instance reaches VERIFY_RESIZE on
  the destination, then confirmResize finishes it (the source compute cleans up, the migration turns
  'confirmed'); a cold-migrated instance keeps its power state (a SHUTOFF one arrives SHUTOFF).
- The API sets the task state (migrating, resize_prep) before it answers, so an instance seen afterwards with
  no task state on its old host, without the migration having succeeded, has failed to move.
- An instance found with a migration task state (from an earlier run that was interrupted) is followed to its
  end, never asked to migrate a second time.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from ansible_collections.openstack_ha.recovery.plugins.module_utils._nova import (
    TRANSPORT_ERRORS,
    NovaError,
    _api,
    _call,
    _error_detail,
    _paged,
    _url,
    _version,
    compute_microversion,
    compute_services,
    find_service,
    host_servers,
    update_service,
)
from ansible_collections.openstack_ha.recovery.plugins.module_utils._openstack import RecoveryError

DEFAULT_REASON = 'openstack_ha.recovery: maintenance drain'
# Microversions of the server actions (the oldest with what is needed; a newer user pin is used instead).
ACTION_MICROVERSIONS = dict(
    live='2.34',     # block_migration 'auto' (2.25), target host checked by the scheduler (2.30), async checks
    cold='2.56',     # migrate with a target host
)
BLOCK_MIGRATION = dict(auto='auto', true=True, false=False)
LIVE_STATUSES = ('ACTIVE', 'PAUSED')
COLD_STATUSES = ('ACTIVE', 'SHUTOFF')
LIVE_TASK_STATES = ('migrating',)
COLD_TASK_STATES = ('resize_prep', 'resize_migrating', 'resize_migrated', 'resize_finish')
FAILED_MIGRATION_STATES = ('error', 'failed', 'cancelled')
RECORD_KEYS = ('id', 'name', 'from', 'to', 'method', 'status_before', 'status_after', 'attempts', 'seconds',
               'outcome', 'reason')
DRAIN_RESULT_KEYS = ('candidate_hosts', 'host', 'instances', 'service', 'service_changed', 'totals')


class DrainError(NovaError):
    """The drain of a host was refused, or some instances are still on it."""


class _Failed(Exception):
    """One move attempt failed; `fallback` says whether a cold migration may still be tried."""

    def __init__(self, reason, fallback=False):
        super(_Failed, self).__init__(reason)
        self.reason = reason
        self.fallback = fallback


# ---------------------------------------------------------------------------------------------------------
# requests


def action_microversion(conn, kind):
    """The microversion of a server action (ACTION_MICROVERSIONS), or the user's pin when at least that."""
    needed = ACTION_MICROVERSIONS[kind]
    pinned = conn.config.get_default_microversion('compute')
    if not pinned:
        return needed
    if str(pinned) == 'latest':
        return 'latest'
    version = _version(pinned)
    if version is None or version < _version(needed):
        raise DrainError('compute microversion %s is too old to %s: it needs %s or later; unset '
                         'compute_microversion (and the cloud\'s compute default microversion) or raise it'
                         % (pinned, 'live-migrate' if kind == 'live' else 'cold-migrate to a target host', needed))
    return str(pinned)


def server_action(conn, server_id, body, microversion, what):
    """POST /servers/{id}/action; Nova answers 202 with no body. Raises _Failed with Nova's reason."""
    url = '/servers/%s/action' % quote(str(server_id))
    try:
        response = _call(conn, 'compute', 'post', url, microversion, body)
    except TRANSPORT_ERRORS as exc:
        raise _Failed('cannot %s: the compute API is unreachable: %s' % (what, exc))
    if response.status_code >= 400:
        raise _Failed('Nova refused to %s (HTTP %d): %s' % (what, response.status_code, _error_detail(response)),
                      fallback=True)


def get_server(conn, server_id):
    """The raw server (microversion 2.73), or None when it was deleted."""
    data = _api(conn, 'compute', 'get', '/servers/%s' % quote(str(server_id)), 'read server %s' % server_id,
                compute_microversion(conn, 'servers'), missing_ok=True)
    return None if data is None else data.get('server')


def server_migrations(conn, server_id, migration_type):
    """The instance's migration records of one type ('live-migration' or 'migration'), newest first."""
    data = _api(conn, 'compute', 'get', _url('/os-migrations', dict(instance_uuid=server_id,
                                                                    migration_type=migration_type)),
                'list the migrations of server %s' % server_id, compute_microversion(conn, 'migrations'))
    return [m for m in data.get('migrations') or [] if m.get('instance_uuid') in (None, server_id)]


def _host(raw):
    return raw.get('OS-EXT-SRV-ATTR:host')


def _task(raw):
    return raw.get('OS-EXT-STS:task_state')


def _fault(raw):
    fault = raw.get('fault') or {}
    return ': %s' % fault['message'] if fault.get('message') else ''


# ---------------------------------------------------------------------------------------------------------
# planning


def _record(raw, host):
    return {'id': raw.get('id'), 'name': raw.get('name'), 'from': host, 'to': None, 'method': None,
            'status_before': raw.get('status'), 'status_after': raw.get('status'), 'attempts': 0, 'seconds': 0.0,
            'outcome': 'skipped', 'reason': None}


def plan_instance(raw, host, cold_migration_fallback, reset_error_instances):
    """The record of one instance with its method ('live', 'cold' or None) and, when not moved, the reason.

    Also returns how it starts: 'new' (ask Nova), 'adopt' (a migration already in flight: follow it) or
    'reset' (reset the ERROR state first).
    """
    record = _record(raw, host)
    status, task = raw.get('status'), _task(raw)
    if task in LIVE_TASK_STATES:
        record['method'] = 'live'
        return record, 'adopt'
    if task in COLD_TASK_STATES:
        record['method'] = 'cold'
        return record, 'adopt'
    if task:
        record['reason'] = ('busy: task state %s; run the drain again when Nova has finished it' % task)
        return record, None
    if status in LIVE_STATUSES:
        record['method'] = 'live'
        return record, 'new'
    if status == 'SHUTOFF':
        if not cold_migration_fallback:
            record['reason'] = ('SHUTOFF: live migration needs a running instance, and cold_migration_fallback is '
                                'false')
            return record, None
        record['method'] = 'cold'
        return record, 'new'
    if status == 'ERROR':
        if not reset_error_instances:
            record['reason'] = ('ERROR%s: Nova migrates no instance in ERROR; repair it, or set '
                                'reset_error_instances to reset it to active and move it' % _fault(raw))
            return record, None
        record['method'] = 'live'
        return record, 'reset'
    record['reason'] = ('%s: Nova live-migrates only ACTIVE or PAUSED instances and cold-migrates only ACTIVE or '
                        'SHUTOFF ones' % status)
    return record, None


def unconfirmed_migrations(conn, host, listed):
    """Cold migrations from `host` waiting in VERIFY_RESIZE on another host (an earlier run was interrupted
    before confirming): Nova lists such instances on their destination, yet the source keeps their resources
    until the confirmation. -> [(record, 'adopt')], to be confirmed."""
    raw = _paged(conn, '/os-migrations', dict(source_compute=host, migration_type='migration', status='finished'),
                 'migrations', 'list the cold migrations from %s' % host, 'migrations', 'uuid')
    found = []
    for migration in raw:
        server_id = migration.get('instance_uuid')
        if migration.get('status') != 'finished' or server_id in listed:
            continue
        server = get_server(conn, server_id)
        if server is None or server.get('status') != 'VERIFY_RESIZE' or _host(server) == host:
            continue
        listed.add(server_id)
        record = _record(server, host)
        record.update(method='cold', to=_host(server),
                      reason='cold migration to %s left unconfirmed by an earlier run' % _host(server))
        found.append((record, 'adopt'))
    return found


def _usable(service):
    return service['enabled'] and service['state'] == 'up' and not service['forced_down']


def candidate_hosts(host, services, target_hosts):
    """The hosts instances may go to: target_hosts (each checked), else every other enabled, up host."""
    if not target_hosts:
        return sorted(s['host'] for s in services if s['host'] != host and _usable(s))
    for target in target_hosts:
        if target == host:
            raise DrainError('target_hosts lists %s, the host being drained: list other hosts' % host)
        service = find_service(services, target)
        if not _usable(service):
            raise DrainError('target host %s cannot take instances from %s: its nova-compute service is %s, and '
                             'Nova\'s scheduler never places instances on such a host; enable it or list other '
                             'targets' % (target, host, _state_words(service)))
    return list(target_hosts)


def _state_words(service):
    words = [service['state'] if not service['forced_down'] else 'forced down']
    if not service['enabled']:
        words.append('disabled (%s)' % (service['disabled_reason'] or 'no reason given'))
    return ', '.join(words)


# ---------------------------------------------------------------------------------------------------------
# moving one instance


class _Run:
    def __init__(self, conn, host, block_migration, cold_migration_fallback, timeout, clock, sleep,
                 poll_interval):
        self.conn = conn
        self.host = host
        self.block_migration = BLOCK_MIGRATION[block_migration]
        self.cold_migration_fallback = cold_migration_fallback
        self.timeout = timeout
        self.clock = clock
        self.sleep = sleep
        self.poll_interval = poll_interval


def move_instance(run, record, start, target):
    """Move one instance off run.host (live, then cold where allowed); fills in its record. Never raises."""
    started = run.clock()
    deadline = started + run.timeout
    try:
        if start == 'reset':
            server_action(run.conn, record['id'], {'os-resetState': {'state': 'active'}}, '2.1',
                          'reset the state of %s to active' % _name(record))
        target_status = dict(new=record['status_before'], reset='ACTIVE').get(start)  # None: adopted, unknown
        if record['method'] == 'live':
            try:
                _live(run, record, target, deadline, adopt=start == 'adopt', target_status=target_status)
            except _Failed as exc:
                if not (exc.fallback and run.cold_migration_fallback):
                    raise
                raw = get_server(run.conn, record['id'])
                if raw is None or raw.get('status') not in COLD_STATUSES or _host(raw) != run.host or _task(raw):
                    raise _Failed('%s; no cold migration tried: the instance is now %s'
                                  % (exc.reason, _describe(raw)))
                record['reason'] = 'live migration failed (%s), moved by cold migration' % exc.reason
                record['method'] = 'cold'
                _cold(run, record, target, deadline, adopt=False, target_status=raw['status'])
        else:
            _cold(run, record, target, deadline, adopt=start == 'adopt', target_status=target_status)
        record['outcome'] = 'moved'
    except _Failed as exc:
        record['outcome'] = 'failed'
        record['reason'] = exc.reason
    except RecoveryError as exc:
        record['outcome'] = 'failed'
        record['reason'] = exc.msg
    finally:
        record['seconds'] = round(run.clock() - started, 1)
    return record


def _name(record):
    return 'server %s (%s)' % (record['name'], record['id'])


def _describe(raw):
    if raw is None:
        return 'deleted'
    return '%s on %s, task state %s' % (raw.get('status'), _host(raw), _task(raw) or 'none')


def _settled(raw, run, target_status):
    """On another host, no task state, in the target status (any of ACTIVE, PAUSED, SHUTOFF when unknown)."""
    status_ok = raw.get('status') == target_status if target_status else raw.get('status') in ('ACTIVE', 'PAUSED',
                                                                                               'SHUTOFF')
    return _task(raw) is None and _host(raw) != run.host and status_ok


def _live(run, record, target, deadline, adopt, target_status):
    select = _newest_of(set() if adopt else _migration_ids(run, record, 'live-migration'))
    if not adopt:
        body = {'os-migrateLive': {'host': target, 'block_migration': run.block_migration}}
        record['attempts'] += 1
        server_action(run.conn, record['id'], body, action_microversion(run.conn, 'live'),
                      'live-migrate %s from %s' % (_name(record), run.host))

    def verdict(raw, migration):
        status = migration and migration.get('status')
        if status in FAILED_MIGRATION_STATES:
            return _Failed('live migration to %s ended %r%s' % (migration.get('dest_compute') or 'a host chosen by '
                                                                'the scheduler', status, _fault(raw)),
                           fallback=raw.get('status') != 'ERROR')
        if raw.get('status') == 'ERROR':
            return _Failed('live migration left the instance in ERROR%s' % _fault(raw))
        if _task(raw) is None and _host(raw) == run.host:
            return _Failed('live migration ended with the instance still on %s (migration %s)'
                           % (run.host, status or 'not recorded'), fallback=True)
        return _settled(raw, run, target_status) and status == 'completed'

    _follow(run, record, 'live-migration', select, verdict, deadline, 'the live migration')


def _cold(run, record, target, deadline, adopt, target_status):
    select = _newest_of(set() if adopt else _migration_ids(run, record, 'migration'))
    if not adopt:
        record['attempts'] += 1
        server_action(run.conn, record['id'], {'migrate': {'host': target}}, action_microversion(run.conn, 'cold'),
                      'cold-migrate %s from %s' % (_name(record), run.host))

    def resized(raw, migration):
        status = migration and migration.get('status')
        if status in FAILED_MIGRATION_STATES:
            return _Failed('cold migration ended %r%s' % (status, _fault(raw)))
        if raw.get('status') == 'ERROR':
            return _Failed('cold migration left the instance in ERROR%s' % _fault(raw))
        if _task(raw) is None and _host(raw) == run.host:
            return _Failed('cold migration ended with the instance still on %s (migration %s)'
                           % (run.host, status or 'not recorded'))
        return raw.get('status') == 'VERIFY_RESIZE' and _host(raw) != run.host and migration is not None

    migration = _follow(run, record, 'migration', select, resized, deadline, 'the cold migration')
    server_action(run.conn, record['id'], {'confirmResize': None}, action_microversion(run.conn, 'cold'),
                  'confirm the cold migration of %s' % _name(record))

    def confirmed(raw, migration):
        status = migration and migration.get('status')
        if status in FAILED_MIGRATION_STATES or raw.get('status') == 'ERROR':
            return _Failed('confirming the cold migration failed (migration %s, instance %s)%s'
                           % (status, raw.get('status'), _fault(raw)))
        return _settled(raw, run, target_status) and status == 'confirmed'

    _follow(run, record, 'migration', _this(migration['uuid']), confirmed, deadline,
            'the confirmation of the cold migration')


def _migration_ids(run, record, migration_type):
    return set(m.get('uuid') for m in server_migrations(run.conn, record['id'], migration_type))


def _newest_of(known):
    """The newest migration not in `known` (Nova lists newest first)."""
    return lambda migrations: next((m for m in migrations if m.get('uuid') not in known), None)


def _this(uuid):
    return lambda migrations: next((m for m in migrations if m.get('uuid') == uuid), None)


def _follow(run, record, migration_type, select, verdict, deadline, what):
    """Poll the server and its migration (select(migrations)) until verdict() is True (-> the migration) or a
    _Failed (raised); raises _Failed at the deadline."""
    while True:
        raw = get_server(run.conn, record['id'])
        if raw is None:
            raise _Failed('the instance was deleted during %s' % what)
        migration = select(server_migrations(run.conn, record['id'], migration_type))
        record['status_after'] = raw.get('status')
        if _host(raw) != run.host:
            record['to'] = _host(raw)
        elif migration and migration.get('dest_compute'):
            record['to'] = migration['dest_compute']
        outcome = verdict(raw, migration)
        if isinstance(outcome, _Failed):
            record['to'] = _host(raw) if _host(raw) != run.host else None
            raise outcome
        if outcome:
            return migration
        if run.clock() >= deadline:
            raise _Failed('%s did not finish within the timeout of %s s: the instance is %s, migration %s'
                          % (what, run.timeout, _describe(raw), migration.get('status') if migration else
                             'not recorded yet'))
        run.sleep(run.poll_interval)


# ---------------------------------------------------------------------------------------------------------
# the drain


def _totals(records, started, clock):
    totals = dict(instances=len(records), moved=0, skipped=0, failed=0, would_move=0, live=0, cold=0,
                  seconds=round(clock() - started, 1))
    for record in records:
        totals[record['outcome']] += 1
        if record['outcome'] in ('moved', 'would_move'):
            totals[record['method']] += 1
    return totals


def _diff(service, service_changed, reason, records):
    before = dict(enabled=service['enabled'], disabled_reason=service['disabled_reason'],
                  instances=sorted(r['name'] or r['id'] for r in records))
    after = dict(enabled=False, disabled_reason=reason if service_changed else service['disabled_reason'],
                 instances=sorted(r['name'] or r['id'] for r in records
                                  if r['outcome'] not in ('moved', 'would_move')))
    return dict(before=before, after=after)


def _failure_message(host, records, check_mode):
    left = [r for r in records if r['outcome'] not in ('moved', 'would_move')]
    shown = '; '.join('%s (%s): %s %s' % (r['name'], r['id'], r['outcome'], r['reason']) for r in left[:10])
    more = '; and %d more' % (len(left) - 10) if len(left) > 10 else ''
    verb = 'would stay' if check_mode else 'are still'
    return ('drain of %s incomplete: %d of %d instance(s) %s on it: %s%s. The host is not empty: do not take it '
            'down before these are moved or dealt with (see instances for each record).'
            % (host, len(left), len(records), verb, shown, more))


def drain_host(conn, host, block_migration='auto', cold_migration_fallback=True, concurrency=4,
               disabled_reason=DEFAULT_REASON, reset_error_instances=False, target_hosts=None, timeout=600,
               check_mode=False, clock=time.monotonic, sleep=time.sleep, poll_interval=1.0):
    """nova_drain: disable a healthy host's nova-compute and move every instance off it.

    Returns dict(changed, diff, host, service, service_changed, candidate_hosts, instances, totals). Raises
    DrainError with those facts when it refuses (before changing anything) or when instances stay on the host
    (after moving all it could). An already disabled service is left as it is, its reason included.
    """
    started = clock()
    acted = []  # what this run changed, for `changed` when it fails half-way
    facts = dict(host=host, service=None, service_changed=False, candidate_hosts=[], instances=[],
                 totals=_totals([], started, clock))
    try:
        if block_migration not in BLOCK_MIGRATION:
            raise DrainError('block_migration must be one of auto, true, false, not %r' % (block_migration,))
        if concurrency < 1 or timeout <= 0:
            raise DrainError('concurrency (%s) and timeout (%s) must be positive' % (concurrency, timeout))
        services = compute_services(conn)
        service = facts['service'] = find_service(services, host)
        candidates = facts['candidate_hosts'] = candidate_hosts(host, services, target_hosts)
        planned = [plan_instance(raw, host, cold_migration_fallback, reset_error_instances)
                   for raw in sorted(host_servers(conn, host), key=lambda r: (r.get('name') or '', r.get('id')))]
        planned += unconfirmed_migrations(conn, host, set(record['id'] for record, dummy in planned))
        records = facts['instances'] = [record for record, dummy in planned]
        moves = [(record, start) for record, start in planned if start]
        if moves and (service['forced_down'] or service['state'] != 'up'):
            raise DrainError('refusing to drain %s: its nova-compute service is %s, and live or cold migration needs '
                             'the source host running; for a failed host use nova_evacuate'
                             % (host, _state_words(service)))
        if moves and not candidates:
            raise DrainError('refusing to drain %s: no other compute host is enabled and up to take its %d '
                             'instance(s)' % (host, len(moves)))
        if moves:
            for action in sorted(set(r['method'] for r, dummy in moves)):
                action_microversion(conn, action)
        service_changed = facts['service_changed'] = service['enabled']
        targets = [target_hosts[index % len(target_hosts)] if target_hosts else None for index in range(len(moves))]
        if check_mode:
            for (record, start), target in zip(moves, targets):
                record.update(outcome='would_move', to=record['to'] or target)
            diff = _diff(service, service_changed, disabled_reason, records)
        else:
            if service_changed:
                facts['service'] = update_service(conn, service, dict(status='disabled',
                                                                      disabled_reason=disabled_reason))
                acted.append('service')
            run = _Run(conn, host, block_migration, cold_migration_fallback, timeout, clock, sleep, poll_interval)
            if moves:
                with ThreadPoolExecutor(max_workers=min(concurrency, len(moves))) as pool:
                    list(pool.map(lambda item: move_instance(run, item[0][0], item[0][1], item[1]),
                                  zip(moves, targets)))
            _still_there(conn, host, records)
            diff = _diff(service, service_changed, disabled_reason, records)
        facts['totals'] = _totals(records, started, clock)
        changed = service_changed or any(r['attempts'] or r['outcome'] in ('moved', 'would_move') for r in records)
        if any(r['outcome'] not in ('moved', 'would_move') for r in records):
            raise DrainError(_failure_message(host, records, check_mode), dict(facts, changed=changed))
        return dict(changed=changed, diff=diff, **facts)
    except RecoveryError as exc:
        merged = dict(facts)
        merged['totals'] = _totals(facts['instances'], started, clock)
        merged['changed'] = bool(acted) or any(r['attempts'] for r in facts['instances'])
        merged.update(exc.facts)
        raise DrainError(exc.msg, merged)


def _still_there(conn, host, records):
    """Read the host again: an instance reported moved but still listed there is failed; a new one is added."""
    remaining = dict((raw.get('id'), raw) for raw in host_servers(conn, host))
    for record in records:
        if record['outcome'] == 'moved' and record['id'] in remaining:
            record.update(outcome='failed', reason='Nova still lists the instance on %s after its move' % host)
    known = set(r['id'] for r in records)
    for server_id, raw in sorted(remaining.items()):
        if server_id not in known:
            record = _record(raw, host)
            record['reason'] = 'appeared on %s during the drain (booted or moved there before the disable)' % host
            records.append(record)
