# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Evacuation core of nova_evacuate: plain functions over an openstacksdk connection and plain values.

    evacuate_host(conn, host, ...)   plan (check mode) or run the evacuation of a failed host's instances

Every request goes through _nova's SDK boundary (_nova._call), so unit tests fake the same surface as for
the other nova modules. What Nova does, and what this code does about it (Nova 34, read from its source):

- POST /servers/{id}/action evacuate is accepted while another evacuation of the same instance is still running
  (the API's state check lets any task_state through): a second request leaves the instance stuck in
  rebuild_block_device_mapping with a migration 'accepted' forever (seen in the lab). So right before each
  evacuation the host's evacuation migrations are read again (one list for every worker), and an instance with a
  rebuild task state, a migration not yet final, or a migration the plan did not see is only waited for, never
  evacuated again (_state_before_move says why the plan's seconds-old server read is enough).
- Compute API 2.95 and later land every evacuated instance stopped (except one that was in ERROR). Evacuation
  requests use 2.94, which keeps the state: an active instance arrives ACTIVE, a stopped one SHUTOFF. Under a
  pinned microversion of 2.95 or later they arrive SHUTOFF, and an instance whose target is ACTIVE is started.
  Whatever the microversion, an instance that arrived in the other power state than its target (an instance
  in ERROR always arrives ACTIVE) is started or stopped, so it ends in its target state.
- A failed evacuation: the scheduler found no host (migration 'error') or the destination failed the rebuild
  (migration 'failed'). The instance stays on the failed host, in ERROR (or in its former state when only the
  destination's resource claim failed), with no task state. Nova evacuates instances in ERROR, so a retry
  evacuates it again at once: no state reset is needed, and none is made.
- Computes report their state through nova-conductor: after a restart of it (or of RabbitMQ) Nova sees every
  host down for up to a minute, and the scheduler's ComputeFilter then finds no host (migration 'error' within a
  second; seen in the lab). So a retry first waits until Nova sees a host to take the instance up.
- The instance's host changes to the destination only at the very end of a successful evacuation, right before
  the migration turns 'done' (the source compute turns it 'completed' when it starts again).
- Locking does not stop an admin's evacuation (the API's lock check lets admins through), so each instance is
  locked with a reason while it moves, to keep its owner away. The reason names the source host and the
  status before the move, so a later run (after a crash) knows its own locks and the status to restore.
- A lost evacuation. The API sets task state 'rebuilding', creates the migration 'accepted' (dest_compute set only
  when a host was named) and casts the request to nova-conductor; the conductor schedules (the scheduler claims
  the destination in Placement, merged into the instance's allocations) and casts it to the destination compute,
  whose resource claim is the first thing to change the migration: 'pre-migrating' with dest_compute (then 'done'
  or 'failed'). oslo.messaging acknowledges a message before it runs it, so a conductor that stops (or a RabbitMQ
  that restarts, dropping its non-durable queues) loses what it held: the migration stays 'accepted' and the
  instance 'rebuilding' on the failed host for ever, and nothing in Nova times it out. Such a move is declared
  lost after lost_evacuation_timeout seconds 'accepted' (seen by this run), and only when a fresh read still shows
  it lost: the migration the newest and still 'accepted', the instance still on the failed host in task state
  'rebuilding' (or none, after an operator's reset), the failed host still down or forced down, and Placement
  holding no destination for it (a destination claimed means the conductor handed the move to a compute, which may
  still be at it, blocked on its own calls to the restarted conductor: in the lab such a compute went on after the
  repeated evacuation had landed and rebuilt the instance a second time - with lost_evacuation_timeout=30) unless
  the instance has no task state any more: a compute whose first call to the restarting conductor failed gave the
  move up, reverting the task state to none and leaving the migration 'accepted' and its claim in Placement (seen
  in the lab: the conductor's rebuild_server event a success, no compute event). It is then
  evacuated again, as a retry, with no state reset: the evacuate API's state check lets any task state through
  (check_instance_state(task_state=None) checks none) and the rebuild only expects 'rebuilding', which the new
  request sets again; vm_state is kept, so a stopped instance arrives stopped. (os-resetState would set vm_state
  active or error and task state none: a stopped instance would then arrive running, and be started for
  nothing before it is stopped again.)
  What is left: one migration stays 'accepted' for ever - Nova has no API to close it, and the conductor takes
  the instance's first 'accepted' migration (Migration.get_by_instance_and_status, no order: the lost one) for the
  new evacuation, which then carries it to 'done' and leaves the new one 'accepted' (so for all 4 seen in the lab).
  The source compute marks one evacuation per instance 'completed' each time it starts (a dict by instance); in
  the lab its first start took the 'accepted' one and left the 'done' one, so Nova refused forced_down=false
  until the compute started a second time: restoring such a host takes two starts of its nova-compute. A
  destination the lost move had claimed keeps that claim in Placement (Nova's heal skips it). The safety rests on
  the timeout: a message that was only slow, delivered after the retry started, passes the destination's
  expected_task_state check ('rebuilding' again) and would rebuild the instance a second time - so the timeout
  must exceed what the cloud's conductor and scheduler may take (rpc_response_timeout, 60 s by default).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import functools
import re
import threading
import time
import traceback

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from ansible_collections.openstack_ha.recovery.plugins.module_utils._nova import (
    EVACUABLE_SOURCES,
    RESOURCES,
    TRANSPORT_ERRORS,
    PLACEMENT_MICROVERSION,
    NovaError,
    _api,
    _error_detail,
    _send,
    _paged,
    _url,
    capacity_hosts,
    compute_microversion,
    compute_services,
    evacuation_migrations,
    find_service,
    get_compute_service,
    host_servers,
    parse_time,
    utc_now,
    hypervisor_nodes,
    image_properties,
    instance_record,
    is_reserved_reason,
    list_aggregates,
    migration_record,
    neighbour_services,
    providers_room,
    read_concurrently,
    resolve_evacuable,
    update_service,
)
from ansible_collections.openstack_ha.recovery.plugins.module_utils._openstack import RecoveryError

# The newest compute microversion that keeps an evacuated instance's state (2.95 lands them stopped).
EVACUATE_MICROVERSION = '2.94'

# What an evacuation migration's status means: the instance moved, the attempt failed; anything else is in flight
# ('accepted' by the API, 'pre-migrating' once the destination claimed resources).
MOVED_MIGRATION_STATES = ('done', 'completed')
FAILED_MIGRATION_STATES = ('error', 'failed')
# The statuses of an evacuation migration once a destination compute claimed it (rebuild_claim), until it ends.
CLAIMED_MIGRATION_STATES = ('pre-migrating', 'migrating')
# The task states of an evacuation under way (a rebuild on the destination).
REBUILD_TASK_STATES = ('rebuilding', 'rebuild_block_device_mapping', 'rebuild_spawning')
# The vm_states Nova evacuates.
EVACUABLE_VM_STATES = ('active', 'stopped', 'error')
# The status each vm_state ends in after an evacuation: stopped instances stay stopped, the rest run.
TARGET_STATUS = dict(active='ACTIVE', stopped='SHUTOFF', error='ACTIVE')

LOCK_PREFIX = 'openstack_ha.recovery.nova_evacuate: evacuating from '
LOCK_REASON = LOCK_PREFIX + '%s, was %s'
LOCK_PATTERN = re.compile(r'^' + re.escape(LOCK_PREFIX) + r'(?P<host>.+), was (?P<status>[A-Z_]+)$')

POLL_INTERVAL = 1.0
# How long the plan's reads of an instance stand in for a new read right before its evacuation (seconds); see
# _state_before_move. Instances of later priority groups, which wait for the earlier ones, are read again.
PLAN_FRESH = 30.0
# lost_evacuation_timeout: its default, and the least value other than 0 (never) - less than Nova's own
# rpc_response_timeout (60 s) could repeat an evacuation that its conductor or scheduler is still working on.
LOST_EVACUATION_TIMEOUT = 120
LOST_EVACUATION_TIMEOUT_MIN = 30
# While its migration is under way, an instance's server record is read only this often (seconds).
SERVER_CHECK = 10.0

# Where instances go (target_order): the scheduler, reserved hosts only, or one pool first and the other after.
TARGET_ORDERS = ('scheduler', 'reserved', 'reserved_then_scheduler', 'scheduler_then_reserved')
# What to do when the capacity estimate says some instances would not fit (capacity_policy).
CAPACITY_POLICIES = ('partial', 'fail', 'ignore')

RESULT_KEYS = ('capacity', 'groups', 'host', 'instances', 'microversion', 'reserved_hosts_used', 'service', 'totals')


class EvacuationError(NovaError):
    """The evacuation of a host was refused, or some instances did not reach their target state."""


class ActionFailed(EvacuationError):
    """A server action (evacuate, lock, unlock, start, stop) was refused or got no answer (status None)."""

    def __init__(self, msg, status=None, detail=None):
        super(ActionFailed, self).__init__(msg)
        self.status = status
        self.detail = detail


# ---------------------------------------------------------------------------------------------------------
# requests


def server_action(conn, server_id, body, microversion, what, idempotent=False):
    """POST /servers/{id}/action. Nova answers 200 or 202, with an empty body from the microversions used.
    idempotent: the action may be sent again after a transient failure (lock, unlock: the same result twice)."""
    url = '/servers/%s/action' % quote(str(server_id))
    try:
        response = _send(conn, 'compute', 'post', url, microversion, body, idempotent=idempotent)
    except TRANSPORT_ERRORS as exc:
        raise ActionFailed('cannot %s: the compute API is unreachable (POST %s): %s' % (what, url, exc),
                           detail=str(exc))
    if response.status_code >= 400:
        detail = _error_detail(response)
        raise ActionFailed('cannot %s: the compute API answered HTTP %d: %s' % (what, response.status_code, detail),
                           status=response.status_code, detail=detail)


def get_server(conn, server_id):
    """The raw server (microversion 2.73), or None when it no longer exists."""
    data = _api(conn, 'compute', 'get', '/servers/%s' % quote(str(server_id)), 'read server %s' % server_id,
                compute_microversion(conn, 'servers'), missing_ok=True)
    return None if data is None else data.get('server')


def instance_evacuations(conn, server_id):
    """The instance's evacuation migration records, newest first."""
    data = _api(conn, 'compute', 'get', _url('/os-migrations', dict(instance_uuid=server_id,
                                                                    migration_type='evacuation')),
                'list the evacuation migrations of server %s' % server_id, compute_microversion(conn, 'migrations'))
    return [migration_record(raw) for raw in data.get('migrations') or []]


def locked_servers(conn):
    """Every locked server of every project (the `locked` filter needs 2.73)."""
    return _paged(conn, '/servers/detail', dict(all_tenants='True', locked='True'), 'servers',
                  'list the locked servers', 'servers', 'id')


def evacuate_microversion(conn):
    """The microversion of evacuation requests: 2.94, or the user's pin (already checked to be at least 2.73)."""
    pinned = conn.config.get_default_microversion('compute')
    return str(pinned) if pinned else EVACUATE_MICROVERSION


# ---------------------------------------------------------------------------------------------------------
# reading raw servers


def _host_of(raw):
    return raw.get('OS-EXT-SRV-ATTR:host')


def _vm_state(raw):
    return raw.get('OS-EXT-STS:vm_state')


def _task_state(raw):
    return raw.get('OS-EXT-STS:task_state')


def _fault(raw):
    fault = raw.get('fault') or {}
    return fault.get('message')


def our_lock(raw, host):
    """The status before the move that our lock reason recorded when `raw` carries our lock for `host`, else None."""
    if not raw.get('locked'):
        return None
    match = LOCK_PATTERN.match(raw.get('locked_reason') or '')
    if match and match.group('host') == host:
        return match.group('status')
    return None


def _int_or_none(value):
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def resolve_priority(tag, flavor_specs, read_image):
    """(priority, source, warning): the flavor extra spec `tag`, else the image property, else 0."""
    for source, values in (('flavor', lambda: flavor_specs), ('image', read_image)):
        found = values() or {}
        if tag in found:
            value = _int_or_none(found[tag])
            if value is None:
                return 0, source, '%s %s=%r is not an integer: priority 0 used' % (source, tag, found[tag])
            return value, source, None
    return 0, 'default', None


# ---------------------------------------------------------------------------------------------------------
# planning


def _new_record(raw, host, evacuable, evacuable_source, priority, priority_source):
    info = instance_record(raw, [], evacuable, evacuable_source)
    return {
        'id': info['id'], 'name': info['name'], 'project_id': info['project_id'],
        'from': host, 'to': None,
        'status_before': info['status'], 'status_after': info['status'], 'target_status': None,
        'priority': priority, 'priority_source': priority_source,
        'evacuable': evacuable, 'evacuable_source': evacuable_source,
        'needs': info['needs'],
        'action': 'none', 'outcome': None, 'reason': None,
        'candidates': [], 'target_pool': None, 'attempts': 0, 'history': [],
        'lock': 'none', 'power_action': None, 'resumed': False, 'seconds': None,
    }


def _lock_state(raw, host):
    if not raw.get('locked'):
        return 'none'
    return 'earlier run' if our_lock(raw, host) else 'other'


def _matches(record, names):
    return record['id'] in names or record['name'] in names


def _newest_by_instance(migrations):
    newest = {}
    for migration in migrations:  # newest first
        newest.setdefault(migration['instance_uuid'], migration)
    return newest


def _in_flight(raw, newest_migration):
    """Whether an evacuation of the instance is under way: a rebuild task state, or a migration not yet final."""
    if _task_state(raw) in REBUILD_TASK_STATES:
        return True
    return bool(newest_migration) and newest_migration['status'] not in MOVED_MIGRATION_STATES + \
        FAILED_MIGRATION_STATES


def _target_status(raw, host):
    return our_lock(raw, host) or TARGET_STATUS.get(_vm_state(raw), 'ACTIVE')


def _select(record, raw, host, newest, options):
    """Set the record's action ('evacuate', 'wait' or 'none'), outcome and reason from the selection rules."""
    migration = newest.get(record['id'])
    vm_state = _vm_state(raw)
    record['target_status'] = _target_status(raw, host)
    if _matches(record, options['exclude']):
        record.update(outcome='skipped', reason='excluded by the exclude option')
        return
    if _in_flight(raw, migration):
        under_way = (_task_state(raw), migration['status'] if migration else 'none')
        record.update(action='wait', resumed=True,
                      reason='an evacuation is already under way (task state %s, migration %s): waiting for it, '
                             'never evacuating it a second time' % under_way)
        return
    failed_before = vm_state == 'error' and migration and migration['status'] in FAILED_MIGRATION_STATES
    if our_lock(raw, host):
        why = 'locked by an earlier run of nova_evacuate that did not finish'
    elif _matches(record, options['include']):
        why = 'listed in include'
    elif failed_before:
        why = 'in ERROR since an earlier evacuation failed (migration %s)' % migration['status']
    elif not record['evacuable']:
        if record['evacuable_source'] == 'default':
            reason = 'not evacuable: no flavor, image or aggregate marks it and evacuable_default is false'
        else:
            source = record['evacuable_source'].replace(':', ' ')
            reason = 'not evacuable: its %s says %s is not true' % (source, options['evacuable_tag'])
        record.update(outcome='skipped', reason=reason)
        return
    elif vm_state == 'error' and not options['include_error']:
        record.update(outcome='skipped', reason='in ERROR and include_error is false')
        return
    else:
        why = None
    if vm_state not in EVACUABLE_VM_STATES:
        record.update(outcome='failed', reason='Nova evacuates only active, stopped and error instances; this one is '
                                               '%s. Reset its state to error (openstack server set --state error) '
                                               'and run again with include_error' % vm_state)
        return
    record.update(action='evacuate', reason=why)


def _groups(records):
    """The records to act on, in groups of equal priority, highest first; each sorted by name then id."""
    acting = [r for r in records if r['action'] != 'none']
    priorities = sorted(set(r['priority'] for r in acting), reverse=True)
    return [sorted((r for r in acting if r['priority'] == p), key=lambda r: (r['name'] or '', r['id']))
            for p in priorities]


def _unusable_reason(service):
    if service['forced_down']:
        return 'forced down'
    if service['state'] != 'up':
        return 'down'
    if not service['enabled']:
        return 'disabled'
    return None


def _listed_targets(host, services, target_hosts):
    """The usable target_hosts in order, and those left out: (usable, excluded [{host, reason, disabled_reason}]).
    Raises EvacuationError for the failed host itself, NovaError for an unknown host."""
    usable, excluded = [], []
    for name in target_hosts:
        if name == host:
            raise EvacuationError('target_hosts lists %s, the host being evacuated: list other hosts' % host)
        service = find_service(services, name)
        reason = _unusable_reason(service)
        if reason:
            excluded.append(dict(host=name, reason=reason, disabled_reason=service['disabled_reason']))
        elif name not in usable:
            usable.append(name)
    return usable, excluded


def _reserved_pool(host, zone, services, aggregates, reserved_hosts, discover):
    """The reserved hosts to use, in order - those listed in reserved_hosts, then (discover) the other hosts of
    the host's availability zone and aggregates disabled with a reserved reason, by name - and those left out.

    A reserved host is usable when it is up and not forced down, and enabled, or disabled with a reserved reason
    (a listed one also without any reason): this run enables it when it sends it an instance. A host disabled for
    another reason (maintenance, a failover) is left out: enabling it would undo what disabled it.
    -> (usable [names], excluded [{host, reason, disabled_reason}]). Raises EvacuationError, NovaError.
    """
    usable, excluded = [], []

    def consider(service, listed):
        name, reason = service['host'], service['disabled_reason']
        if name in usable or any(e['host'] == name for e in excluded):
            return
        unusable = 'forced down' if service['forced_down'] else 'down' if service['state'] != 'up' else None
        reserved_reason = is_reserved_reason(reason) or (listed and not reason)
        if unusable is None and not service['enabled'] and not reserved_reason:
            unusable = 'disabled'
        if unusable:
            excluded.append(dict(host=name, reason=unusable, disabled_reason=reason))
        else:
            usable.append(name)

    for name in reserved_hosts:
        if name == host:
            raise EvacuationError('reserved_hosts lists %s, the host being evacuated: list other hosts' % host)
        consider(find_service(services, name), True)
    if discover:
        for service in neighbour_services(host, zone, services, aggregates):
            if not service['enabled'] and is_reserved_reason(service['disabled_reason']):
                consider(service, False)
    return usable, excluded


def _pools(host, zone, services, aggregates, target_hosts, target_order, reserved_hosts, discover):
    """Where instances may go, in the order they are tried: [(kind, [hosts])] with kind 'target_hosts',
    'scheduler' or 'reserved'; and the hosts left out. A host in the reserved pool is not in the scheduler's."""
    if target_hosts:
        usable, excluded = _listed_targets(host, services, target_hosts)
        return [('target_hosts', usable)], excluded
    kinds = target_order.split('_then_')
    reserved, reserved_excluded = [], []
    if 'reserved' in kinds:
        reserved, reserved_excluded = _reserved_pool(host, zone, services, aggregates, reserved_hosts, discover)
    excluded = []
    scheduler = []
    if 'scheduler' in kinds:
        scheduler, excluded = capacity_hosts(host, zone, services, aggregates)
        scheduler = [h for h in scheduler if h not in reserved]
        excluded = [e for e in excluded if e['host'] not in reserved]
    excluded += [e for e in reserved_excluded if all(e['host'] != x['host'] for x in excluded)]
    return [(kind, reserved if kind == 'reserved' else scheduler) for kind in kinds], excluded


def _fits(free, needs):
    """Whether `needs` fits in `free`; a host's free figures carry max_unit, the most one allocation may take
    (Placement refuses more, however much is free)."""
    return all(free[key] >= needs[key] and ('max_unit' not in free or free['max_unit'][key] >= needs[key])
               for key, dummy in RESOURCES)


def _pool_order(kind, hosts, free):
    """A pool's hosts in the order they fill: the scheduler's the most free memory first (Nova's default weighers
    spread), reserved hosts as given (one spare is filled before the next is taken)."""
    if kind == 'scheduler':
        return sorted(hosts, key=lambda h: (-free[h]['memory_mb'], h))
    return list(hosts)


def _candidates(pools, free_by_host, needs, planned_pool, planned_host):
    """The hosts an instance's attempts may name, in order: the hosts of its planned pool with room for it alone
    (its planned reserved host first), then those of the other pools."""
    parts = []
    for kind, hosts in pools:
        part = [h for h in _pool_order(kind, hosts, free_by_host) if _fits(free_by_host[h], needs)]
        if kind == planned_pool:
            if kind == 'reserved' and planned_host in part:
                part.remove(planned_host)
                part.insert(0, planned_host)
            parts.insert(0, part)
        else:
            parts.append(part)
    return [h for part in parts for h in part]


def _plan_targets(groups, pools, free_by_host, target_spread):
    """Each instance's pool and candidate hosts, from a first-fit placement in priority order over the pools in
    their order; returns the records that would not fit anywhere (unplaced)."""
    remaining = dict((h, dict(free_by_host[h], max_unit=dict(free_by_host[h]['max_unit'])))
                     for dummy, hosts in pools for h in hosts)
    unplaced = []
    index = 0
    for group in groups:
        for record in group:
            needs = record['needs']
            if pools[0][0] == 'target_hosts':
                usable = pools[0][1]
                start = index % len(usable) if target_spread and usable else 0
                record['candidates'] = usable[start:] + usable[:start]
                index += 1
                tries = [('target_hosts', record['candidates'])]
            else:
                tries = [(kind, _pool_order(kind, hosts, remaining)) for kind, hosts in pools]
            planned_pool = planned_host = None
            if record['action'] == 'evacuate':  # one already moving holds resources on its destination
                for kind, order in tries:
                    planned_host = next((h for h in order if _fits(remaining[h], needs)), None)
                    if planned_host is not None:
                        planned_pool = kind
                        break
            if pools[0][0] != 'target_hosts':
                record['candidates'] = _candidates(pools, free_by_host, needs, planned_pool, planned_host)
            record['target_pool'] = planned_pool
            if record['action'] != 'evacuate':
                continue
            if planned_host is None:
                unplaced.append(record)
                continue
            for key, dummy in RESOURCES:
                remaining[planned_host][key] -= needs[key]
    return unplaced


def _capacity(conn, pools, excluded, groups, target_spread, nodes):
    """nodes: hypervisor_nodes; the Placement reads of every candidate host's providers go out at once."""
    hosts = [(kind, h) for kind, names in pools for h in names]
    providers = [(name, provider) for dummy, name in hosts for provider in nodes.get(name, [])]
    rooms = dict(zip(providers, providers_room(conn, providers)))
    free_by_host = {}
    for dummy, name in hosts:
        free = dict((key, 0) for key, dummy in RESOURCES)
        free['max_unit'] = dict((key, 0) for key, dummy in RESOURCES)
        for provider in nodes.get(name, []):
            room, max_unit = rooms[(name, provider)]
            for key, dummy in RESOURCES:
                free[key] += room[key]
                free['max_unit'][key] = max(free['max_unit'][key], max_unit[key])
        free_by_host[name] = free
    unplaced = _plan_targets(groups, pools, free_by_host, target_spread)
    moving = [r for group in groups for r in group if r['action'] == 'evacuate']
    needed = dict((key, sum(r['needs'][key] for r in moving)) for key, dummy in RESOURCES)
    free = dict((key, sum(f[key] for f in free_by_host.values())) for key, dummy in RESOURCES)

    def free_only(name):
        return dict((key, free_by_host[name][key]) for key, dummy in RESOURCES)
    return dict(
        hosts=[dict(host=h, pool=kind, free=free_only(h), max_unit=free_by_host[h]['max_unit']) for kind, h in hosts],
        excluded_hosts=excluded,
        needed=needed,
        free=free,
        shortfall=dict((key, max(needed[key] - free[key], 0)) for key in needed),
        sufficient=not unplaced,
        unplaced=[dict(id=r['id'], name=r['name'], priority=r['priority'], needs=r['needs']) for r in unplaced],
    )


def _describe_needs(needs):
    return ', '.join('%s=%s' % (key, needs[key]) for key, dummy in RESOURCES)


def _pool_words(pools):
    words = []
    for kind, hosts in pools:
        label = dict(target_hosts='target_hosts', scheduler='the scheduler\'s hosts', reserved='reserved hosts')[kind]
        words.append('%s (%s)' % (label, ', '.join(hosts) or 'none'))
    return ' then '.join(words)


def _shortfall_message(host, capacity, pools, total):
    unplaced = capacity['unplaced']
    shown = '; '.join('%s (%s, priority %d) needs %s' % (u['name'], u['id'], u['priority'], _describe_needs(u['needs']))
                      for u in unplaced[:10])
    more = '; and %d more' % (len(unplaced) - 10) if len(unplaced) > 10 else ''
    return ('refusing to evacuate %s: %d of %d instance(s) to move would not fit on %s: %s%s (free together: %s; '
            'placed first-fit in priority order over what Placement reports free). Nothing was moved '
            '(capacity_policy=fail). Make room (enable or add hosts, or use reserved hosts with target_order), or run '
            'with capacity_policy=partial to move what fits, highest priority first.'
            % (host, len(unplaced), total, _pool_words(pools), shown, more, _describe_needs(capacity['free'])))


def _apply_capacity_policy(host, records, capacity, pools, policy):
    """fail: raise before anything moves when some instance would not fit; partial: those instances are not
    evacuated and fail with a 'no capacity' reason; ignore: every selected instance is sent, Nova decides."""
    if not capacity['unplaced'] or policy == 'ignore':
        return
    total = len([r for r in records if r['action'] == 'evacuate'])
    if policy == 'fail':
        raise EvacuationError(_shortfall_message(host, capacity, pools, total))
    unplaced = set(u['id'] for u in capacity['unplaced'])
    for record in records:
        if record['id'] in unplaced:
            reason = ('no capacity: it needs %s and, after the instances of higher or equal priority before it, none '
                      'of %s has that much free (first-fit estimate over Placement); not evacuated '
                      '(capacity_policy=partial)' % (_describe_needs(record['needs']), _pool_words(pools)))
            record.update(action='none', outcome='failed', reason=reason)


# ---------------------------------------------------------------------------------------------------------
# moving one instance


class _Run:
    """What the workers share: the connection, the options, the clock, the counters, the abort flag, and the host's
    evacuation migrations, read with one request for every worker at most once per poll interval."""

    def __init__(self, conn, host, microversion, timeout, retries, target_hosts, clock, sleep, poll_interval,
                 started, pools=(), reserved_services=None, plan=None, lost_timeout=LOST_EVACUATION_TIMEOUT):
        self.conn = conn
        # what the plan read: dict(servers={id: raw}, newest={instance id: its newest migration id}, read_at=clock)
        self.plan = plan or dict(servers={}, newest={}, read_at=None)
        self.host = host
        self.microversion = microversion
        self.servers_microversion = compute_microversion(conn, 'servers')
        self.timeout = timeout
        self.retries = retries
        self.lost_timeout = lost_timeout
        self.target_hosts = target_hosts
        self.pool_kinds = [kind for kind, dummy in pools] or ['scheduler']
        # reserved hosts by name -> their service as read before the run; those disabled are enabled on demand
        self.reserved_services = dict(reserved_services or {})
        self.reserved_lock = threading.Lock()
        self.enabled_hosts = []
        self.clock = clock
        self.sleep = sleep
        self.poll_interval = poll_interval
        self.started = started
        self.lock = threading.Lock()
        self.evacuations = 0
        self.last_evacuation = None
        self.changed = False
        self.abort_reason = None
        self.migrations_lock = threading.Lock()
        self.migrations = []
        self.migrations_read = 0   # how many times the list was read: a generation number
        self.migrations_time = None
        self.services_lock = threading.Lock()
        self.services = []
        self.services_time = None

    def compute_services(self):
        """The compute services, read at most once per poll interval for every worker."""
        with self.services_lock:
            if self.services_time is None or self.clock() - self.services_time >= self.poll_interval:
                self.services = compute_services(self.conn)
                self.services_time = self.clock()
            return self.services

    def note_change(self):
        with self.lock:
            self.changed = True

    def note_evacuation(self):
        with self.lock:
            self.changed = True
            self.evacuations += 1
            self.last_evacuation = round(self.clock() - self.started, 1)

    def enable_reserved(self, host):
        """Enable a disabled reserved host before the first evacuation that names it (once, whatever the number of
        workers): Nova's scheduler never places an instance on a disabled host, even one named. Raises NovaError."""
        with self.reserved_lock:
            service = self.reserved_services.get(host)
            if service is None or service['enabled'] or host in self.enabled_hosts:
                return
            update_service(self.conn, service, dict(status='enabled'))
            self.enabled_hosts.append(host)
            self.note_change()

    def abort(self, reason):
        with self.lock:
            if self.abort_reason is None:
                self.abort_reason = reason

    def generation(self):
        """The generation of the migration list now; a read in progress counts (it waits for it)."""
        with self.migrations_lock:
            return self.migrations_read

    def host_migrations(self, newer_than):
        """The host's evacuation migrations (newest first) from a read of a generation above `newer_than` and at
        most one poll interval old. One worker reads, the others wait and share the answer."""
        with self.migrations_lock:
            if self.migrations_read <= newer_than or self.clock() - self.migrations_time >= self.poll_interval:
                self.migrations = evacuation_migrations(self.conn, self.host)
                self.migrations_read += 1
                self.migrations_time = self.clock()
            return self.migrations


class _AttemptFailed(Exception):
    """A move ended without the instance in its target state on another host. retryable: the instance is back on
    the failed host with no evacuation under way, so another evacuation may follow."""

    def __init__(self, reason, retryable):
        super(_AttemptFailed, self).__init__(reason)
        self.reason = reason
        self.retryable = retryable


def move_instance(run, record):
    """Evacuate one instance (or wait for the move already under way) to its target state on another host, locked
    meanwhile; fill in its record. Never raises: every failure ends in the record."""
    started = run.clock()
    deadline = started + run.timeout
    unlock = False
    try:
        if run.abort_reason:
            record.update(outcome='failed', reason='not evacuated: %s' % run.abort_reason)
            return record
        raw, migrations, started_since_plan = _state_before_move(run, record)
        if raw is None:
            record.update(outcome='skipped', reason='deleted before it was evacuated')
            return record
        unlock = our_lock(raw, run.host) is not None
        if record['action'] == 'evacuate' and (_host_of(raw) != run.host or started_since_plan or
                                               _in_flight(raw, migrations[0] if migrations else None)):
            # moved or moving since the plan was read (by another run?): never a second evacuation
            record.update(action='wait', resumed=True, reason='an evacuation started after the plan was read: '
                                                              'waiting for it, never evacuating it a second time')
        if record['action'] == 'wait':
            try:
                _wait_for(run, record, None, deadline, adopted=True)
                return record
            except _AttemptFailed as exc:
                if not exc.retryable:
                    raise
                # the move waited for ended with the instance back on the failed host: evacuate it now
                record['history'].append(dict(target=None, dest=None, migration_id=None, migration_status=None,
                                              error=exc.reason))
                record['action'] = 'evacuate'
                _give_up_or_retry(run, record, exc.reason, deadline, True)
                migrations = instance_evacuations(run.conn, record['id'])
                raw = get_server(run.conn, record['id'])
                if raw is None:
                    raise _AttemptFailed('deleted while it was being evacuated', False)
        if not raw.get('locked'):
            try:
                _lock(run, record)
            except ActionFailed as exc:
                if exc.status != 404:
                    raise
                record.update(outcome='skipped', reason='deleted before it was evacuated')
                return record
            unlock = True
        _evacuate_with_retries(run, record, migrations, deadline)
        return record
    except _AttemptFailed as exc:
        record.update(outcome='failed', reason=exc.reason)
        return record
    except RecoveryError as exc:
        record.update(outcome='failed', reason=exc.msg)
        return record
    except Exception as exc:  # a worker thread must report everything, never die silently
        where = traceback.extract_tb(exc.__traceback__)[-1]
        record.update(outcome='failed', reason='unexpected error: %s: %s (%s line %d)' % (
            type(exc).__name__, exc, where.filename.rsplit('/', 1)[-1], where.lineno))
        return record
    finally:
        if unlock:
            _unlock(run, record)
        record['seconds'] = round(run.clock() - started, 1)


def _state_before_move(run, record):
    """(raw server or None when deleted, the instance's evacuation migrations newest first, whether an evacuation
    of it began after the plan was read) right before its move.

    The migrations come from the host's list that every worker shares (_Run.host_migrations: one request for all,
    at most a poll interval old and read after the plan), not from one request per instance. The server is read
    again only when the plan's read of it is older than PLAN_FRESH, or the plan found a move to wait for.
    Reusing the plan's read misses no move of the instance by anyone else since the plan:
    - an instance leaves a down host only by evacuation (a live or cold migration needs the source compute), and
      Nova's API records every evacuation it accepts as a migration ('accepted') before it answers. An instance
      whose newest migration in the shared list is not the one the plan saw has been moved, or is moving, since
      the plan - finished, in flight or failed: it is only waited for (adopted), never evacuated a second time;
    - the moment between the shared list's read and our request is the moment the server read this replaces left
      open as well. There, Nova is the backstop: once an evacuation has finished, the instance's host is the
      destination, whose service is up ("Compute service of HOST is still in use", HTTP 400); while it runs, the
      API saves its own task state only over none (instance.save(expected_task_state=None) in
      nova/compute/api.py evacuate) - though a second request accepted mid-move was seen once (module
      docstring), which is why the migration list, not Nova, is the guard.
    What a seconds-old read may miss is not a move: the owner deleting it (the lock request then answers 404:
    skipped as deleted) or locking it (our lock replaces theirs, as when they lock right after a new read).
    """
    migrations = [m for m in run.host_migrations(0) if m['instance_uuid'] == record['id']]
    planned = run.plan['servers'].get(record['id'])
    fresh = run.plan['read_at'] is not None and run.clock() - run.plan['read_at'] < PLAN_FRESH
    if planned is not None and fresh and record['action'] == 'evacuate' and not record['resumed']:
        newest = migrations[0]['id'] if migrations else None
        return planned, migrations, newest != run.plan['newest'].get(record['id'])
    return get_server(run.conn, record['id']), migrations, False


def _lock(run, record):
    reason = LOCK_REASON % (run.host, record['target_status'])
    server_action(run.conn, record['id'], {'lock': {'locked_reason': reason}}, run.servers_microversion,
                  'lock server %s (%s) for its evacuation' % (record['name'], record['id']), idempotent=True)
    run.note_change()
    record['lock'] = 'this run'


def _unlock(run, record):
    try:
        server_action(run.conn, record['id'], {'unlock': None}, run.servers_microversion,
                      'unlock server %s (%s) after its evacuation' % (record['name'], record['id']), idempotent=True)
        run.note_change()
    except ActionFailed as exc:
        if exc.status == 404:
            return
        record.update(outcome='failed', reason='%s; and %s' % (record['reason'], exc.msg)
                      if record['outcome'] == 'failed' else exc.msg)


def _choose_target(run, record, tried):
    """The host of the next attempt; None lets the scheduler choose.

    target_hosts: the instance's candidates in order, round and round. Otherwise the first attempt follows the
    plan - the scheduler chooses, or it names the reserved host planned for it - and a retry names the first
    candidate that has not failed the instance yet (the scheduler still checks that host); when there is none,
    the scheduler chooses again, or with target_order=reserved the candidates are named round and round.
    """
    attempt = record['attempts']
    candidates = record['candidates']
    if run.target_hosts:
        if not candidates:
            raise _AttemptFailed('none of the target_hosts can take it', False)
        return candidates[attempt % len(candidates)]
    pool = record['target_pool'] or run.pool_kinds[0]
    if attempt == 0 and pool == 'scheduler':
        return None
    untried = next((h for h in candidates if h not in tried), None)
    if untried is not None:
        return untried
    if 'scheduler' in run.pool_kinds:
        return None
    if not candidates:
        raise _AttemptFailed('no reserved host has room for it (reserved hosts: %s)'
                             % (', '.join(sorted(run.reserved_services)) or 'none'), False)
    return candidates[attempt % len(candidates)]


def _evacuate_with_retries(run, record, migrations, deadline):
    tried = [h['dest'] for h in record['history'] if h['dest']]
    while True:
        target = _choose_target(run, record, tried)
        known = set(m['id'] for m in migrations)
        entry = dict(target=target, dest=None, migration_id=None, migration_status=None, error=None)
        record['history'].append(entry)
        record['attempts'] += 1
        if target in run.reserved_services:
            try:
                run.enable_reserved(target)
            except RecoveryError as exc:
                entry['error'] = 'cannot enable the reserved host %s: %s' % (target, exc.msg)
                if target not in tried:
                    tried.append(target)
                _give_up_or_retry(run, record, entry['error'], deadline, True)
                continue
        if len(record['history']) > 1:
            _wait_for_target(run, record, target, record['history'][-2]['error'], deadline)
        body = {'evacuate': {'host': target} if target else {}}
        what = 'evacuate server %s (%s) from %s%s' % (record['name'], record['id'], run.host,
                                                      ' to %s' % target if target else '')
        try:
            server_action(run.conn, record['id'], body, run.microversion, what)
            run.note_evacuation()
        except ActionFailed as exc:
            if exc.status is not None and exc.status < 500:
                entry['error'] = exc.msg
                if 'is still in use' in (exc.detail or ''):
                    run.abort('Nova says the compute service of %s is up again (%s); evacuating a host that is not '
                              'down runs its instances twice' % (run.host, exc.detail))
                raise _AttemptFailed(exc.msg, False)
            # no answer, or a server error: the request may have been accepted - look before anything else
            migrations = instance_evacuations(run.conn, record['id'])
            if not [m for m in migrations if m['id'] not in known]:
                entry['error'] = exc.msg
                _give_up_or_retry(run, record, exc.msg, deadline, True)
                continue
            run.note_evacuation()
        try:
            _wait_for(run, record, known, deadline, entry=entry)
            return
        except _AttemptFailed as exc:
            entry['error'] = exc.reason
            for host in (entry['dest'], target):
                if host and host not in tried:
                    tried.append(host)
            _give_up_or_retry(run, record, exc.reason, deadline, exc.retryable)
            migrations = instance_evacuations(run.conn, record['id'])


def _wait_for_target(run, record, target, reason, deadline):
    """Before a retry: wait until Nova sees a host to take the instance up - the target, or for the scheduler any
    other enabled host. Computes report through nova-conductor: after a conductor or RabbitMQ restart Nova sees
    every host down for a while, its scheduler finds no host, and a retry sent then is an attempt lost (seen in the
    lab: three NoValidHost in four seconds). Raises _AttemptFailed when the time is up first."""
    while True:
        up = [s['host'] for s in run.compute_services() if s['host'] != run.host and s['state'] == 'up'
              and not s['forced_down'] and (s['enabled'] or s['host'] == target)]
        if (target in up) if target else up:
            return
        if run.clock() >= deadline or run.abort_reason:
            raise _AttemptFailed('%s (no retry: Nova saw %s down until %s)' % (
                reason, target or 'every other enabled host', 'the timeout' if not run.abort_reason
                else run.abort_reason), False)
        run.sleep(run.poll_interval)


def _give_up_or_retry(run, record, reason, deadline, retryable):
    """Raise the final _AttemptFailed unless another attempt is allowed."""
    if not retryable:
        raise _AttemptFailed(reason, False)
    if record['attempts'] > run.retries:
        raise _AttemptFailed('%s (gave up after %d attempt(s), retries=%d)' % (reason, record['attempts'],
                                                                               run.retries), False)
    if run.clock() >= deadline:
        raise _AttemptFailed('%s (no time left for another attempt within timeout=%s)' % (reason, run.timeout),
                             False)
    if run.abort_reason:
        raise _AttemptFailed('%s (no retry: %s)' % (reason, run.abort_reason), False)


def _wait_for(run, record, known, deadline, entry=None, adopted=False):
    """Follow the instance until it is in its target state on another host, starting or stopping it once if it
    arrived in the other power state. Raises _AttemptFailed.

    The migration comes from the host's list shared by every worker (one request per poll interval for all). The
    server itself is read when its migration is final (or missing), after a power action, and otherwise every
    SERVER_CHECK seconds: a server read costs nova-api far more than a list of migrations.

    known: the ids of the instance's migrations that existed before our evacuation request (the list read must be
    newer than the request); None when waiting for a move this run did not start (adopted): the newest counts.
    """
    generation = run.generation() if known is not None else 0
    power_sent = False
    server_read = None
    accepted_since = {}  # migration id -> when this wait first saw it 'accepted'
    cut_off_checked = {}  # migration id -> when to look again whether its fenced destination cut it off
    while True:
        listed = run.host_migrations(generation)
        mine = [m for m in listed if m['instance_uuid'] == record['id'] and (known is None or m['id'] not in known)]
        migration = _carrier(record, listed, mine[0] if mine else None)
        mstatus = migration['status'] if migration else None
        if mstatus == 'accepted' and run.lost_timeout:
            since = accepted_since.setdefault(migration['id'], run.clock())
            if run.clock() - since >= run.lost_timeout:
                lost = _recover_lost(run, record, migration, run.clock() - since, deadline)
                if lost:
                    raise _AttemptFailed(lost, True)
                accepted_since[migration['id']] = since + SERVER_CHECK  # not lost: look again later
        if (mstatus in CLAIMED_MIGRATION_STATES and run.clock() >= cut_off_checked.get(migration['id'], 0) and
                _destination_fenced(run, migration)):
            cut_off = _recover_cut_off(run, record, migration, deadline)
            if cut_off:
                raise _AttemptFailed(cut_off, True)
            cut_off_checked[migration['id']] = run.clock() + SERVER_CHECK  # not cut off: look again later
        if entry is not None and migration:
            entry.update(dest=migration['dest_compute'], migration_id=migration['id'], migration_status=mstatus)
        moving = migration is not None and mstatus not in MOVED_MIGRATION_STATES + FAILED_MIGRATION_STATES
        if server_read is None or not moving or power_sent or run.clock() - server_read >= SERVER_CHECK:
            server_read = run.clock()
            raw = get_server(run.conn, record['id'])
            if raw is None:
                raise _AttemptFailed('deleted while it was being evacuated', False)
            status, host, task_state = raw.get('status'), _host_of(raw), _task_state(raw)
            record['status_after'] = status
            if task_state is None:
                if _arrived(run, record, raw, migration, adopted, power_sent):
                    _after_lost(run, record)
                    return
                power_sent = power_sent or record['power_action'] is not None
        if run.clock() >= deadline:
            raise _AttemptFailed('not %s on another host within timeout=%ss: %s on %s, task state %s, migration %s; '
                                 '%s' % (record['target_status'], run.timeout, status, host, task_state,
                                         mstatus or 'none', _timeout_advice(run, migration)), False)
        run.sleep(run.poll_interval)


def _arrived(run, record, raw, migration, adopted, power_sent):
    """Decide on a server without task state: True when it is in its target state on another host; sends the power
    action when it arrived in the other power state; raises _AttemptFailed when the move failed; False to go on."""
    status, host = raw.get('status'), _host_of(raw)
    mstatus = migration['status'] if migration else None
    fault = ': %s' % _fault(raw) if _fault(raw) else ''
    if host != run.host:
        if mstatus in MOVED_MIGRATION_STATES or (adopted and migration is None):
            record['to'] = host
            if status == record['target_status']:
                record['outcome'] = 'moved'
                return True
            if status in ('ACTIVE', 'SHUTOFF') and not power_sent:
                _power(run, record, status)
                return False
            raise _AttemptFailed('moved to %s but %s there, not %s%s'
                                 % (host, status, record['target_status'], fault), False)
        return False  # the host changes right before the migration turns done: the next list will say
    if mstatus in FAILED_MIGRATION_STATES:
        raise _AttemptFailed('the evacuation %s (migration %s, destination %s)%s; the instance is %s on %s'
                             % ('found no host' if mstatus == 'error' else 'failed on the destination',
                                mstatus, migration['dest_compute'] or 'none', fault, status, host), True)
    if adopted and mstatus not in ('accepted', 'pre-migrating'):
        raise _AttemptFailed('no evacuation under way any more (migration %s) and still %s on %s'
                             % (mstatus or 'none', status, host), True)
    if migration is None:
        raise _AttemptFailed('Nova accepted the evacuation but recorded no migration for it and the instance has no '
                             'task: look at its instance actions (openstack server event list)', False)
    return False


def _power(run, record, status):
    action = 'os-start' if record['target_status'] == 'ACTIVE' else 'os-stop'
    server_action(run.conn, record['id'], {action: None}, run.servers_microversion,
                  '%s server %s (%s), evacuated %s' % (action[3:], record['name'], record['id'], status))
    run.note_change()
    record['power_action'] = action[3:]


# ---------------------------------------------------------------------------------------------------------
# lost evacuations (see the module docstring)


def _carrier(record, listed, migration):
    """The migration that carries the instance's move: `migration`, unless it is still 'accepted' (or missing) and a
    migration of an evacuation declared lost has moved on since - Nova's conductor takes the instance's first
    'accepted' migration for the new evacuation, which is the lost one."""
    if not record['lost_evacuations'] or (migration is not None and migration['status'] != 'accepted'):
        return migration
    lost = set(e['migration_id'] for e in record['lost_evacuations'] if e['migration_status'] == 'accepted')
    return next((m for m in listed if m['id'] in lost and m['status'] != 'accepted'), migration)


def _lost_candidate(raw, host, newest, migration_id=None):
    """Whether the instance looks like a lost evacuation now: its newest evacuation migration (the one followed,
    when migration_id is given) 'accepted', the instance still on `host` with task state rebuilding or none."""
    return (newest is not None and newest['status'] == 'accepted' and migration_id in (None, newest['id']) and
            _host_of(raw) == host and _task_state(raw) in ('rebuilding', None))


def _lost_entry(migration, raw, seconds, action, allocated_on=None):
    return dict(migration_id=migration['id'], created_at=migration['created_at'], migration_status=migration['status'],
                dest_compute=migration['dest_compute'], status=raw.get('status'), task_state=_task_state(raw),
                accepted_seconds=None if seconds is None else round(seconds, 1), action=action, left_accepted=[],
                allocated_on=allocated_on)


def allocation_hosts(conn, server_id):
    """The hosts whose compute nodes hold Placement allocations of the instance (provider uuids when no host is
    known for one), sorted; None when Placement cannot tell (never a failure: _recover_lost then keeps waiting)."""
    try:
        allocations = _api(conn, 'placement', 'get', '/allocations/%s' % quote(str(server_id)),
                           'read the Placement allocations of server %s' % server_id,
                           PLACEMENT_MICROVERSION).get('allocations') or {}
        hosts = dict((node, host) for host, nodes in hypervisor_nodes(conn).items() for node in nodes)
    except RecoveryError:
        return None
    return sorted(set(hosts.get(provider, provider) for provider in allocations))


def _recover_lost(run, record, migration, seconds, deadline):
    """Decide on an evacuation 'accepted' for lost_evacuation_timeout: when fresh reads prove it lost (see
    _lost_candidate, and the failed host still down or forced down) and another attempt is allowed, record it
    and return the reason of the retry; None when it is not lost. Raises _AttemptFailed when it is lost but no
    attempt is left (the instance is left as it is)."""
    raw = get_server(run.conn, record['id'])
    if raw is None:
        raise _AttemptFailed('deleted while it was being evacuated', False)
    migrations = instance_evacuations(run.conn, record['id'])
    if not _lost_candidate(raw, run.host, migrations[0] if migrations else None, migration['id']):
        return None
    service = get_compute_service(run.conn, run.host)
    if not (service['forced_down'] or service['state'] == 'down'):
        return None  # the failed host is back: its compute may finish or clean up the move, never repeat it
    # a destination claimed in Placement: the conductor got past scheduling and handed the move to that compute,
    # which may still be at it - blocked on its own calls to the restarted conductor (seen in the lab: it went on
    # after the repeated evacuation had landed, and rebuilt the instance a second time). While the instance keeps
    # its rebuild task state (or Placement cannot tell), wait. A compute that gave the move up before its claim
    # reverted the task state to none (reverts_task_state) and left the migration 'accepted' and its allocation
    # behind (seen in the lab: its first call to the restarting conductor failed, no compute event recorded): no
    # one works on that move any more.
    allocated_on = allocation_hosts(run.conn, record['id'])
    claimed = [h for h in allocated_on or [] if h != run.host]
    if allocated_on is None or (claimed and _task_state(raw) is not None):
        return None
    if claimed:
        reason = ('its evacuation was dropped: migration %s accepted for %d s (lost_evacuation_timeout=%d), the '
                  'scheduler had claimed %s for it, and no compute holds the move (the instance has no task state '
                  'any more); still %s on %s'
                  % (migration['id'], seconds, run.lost_timeout, ', '.join(claimed), raw.get('status'), run.host))
    else:
        reason = ('its evacuation was lost: migration %s accepted for %d s (lost_evacuation_timeout=%d) and no '
                  'destination compute took it; still %s on %s, task state %s'
                  % (migration['id'], seconds, run.lost_timeout, raw.get('status'), run.host,
                     _task_state(raw) or 'none'))
    return _evacuate_again(run, record, reason, deadline, _lost_entry(migration, raw, seconds, 'evacuated again',
                                                                      allocated_on))


def _evacuate_again(run, record, reason, deadline, entry):
    """A move found lost or cut off: record `entry` and return the reason of the retry when another attempt is
    allowed; else raise the final _AttemptFailed (the instance is left as it is)."""
    try:
        _give_up_or_retry(run, record, reason, deadline, True)
    except _AttemptFailed as exc:
        raise _AttemptFailed('%s; left as it is: run again to evacuate it again' % exc.reason, False)
    record['lost_evacuations'].append(entry)
    return reason + '; evacuating it again'


def _destination_fenced(run, migration):
    """Whether the destination compute that claimed the move (migration pre-migrating or migrating) is forced down
    in Nova now - fenced, by a failover of its own or by its operator - from the compute services every worker
    shares (one read per poll interval)."""
    dest = migration['dest_compute']
    if not dest or dest == run.host:
        return False
    service = next((s for s in run.compute_services() if s['host'] == dest), None)
    return bool(service and service['forced_down'])


def _recover_cut_off(run, record, migration, deadline):
    """Decide on a move whose destination was fenced while it rebuilt the instance: when fresh reads show it cut
    off and another attempt is allowed, record it and return the reason of the retry; None when it is not.

    The destination's rebuild sets the instance's host only at its very end (finish_evacuation, with the migration
    'done'); a compute that dies before leaves the migration 'pre-migrating' and the instance on the failed host in
    a rebuild task state for ever: a started compute only resumes the instances whose host it is. Forced down is the
    same word Nova takes to evacuate from a host - its operator says it is off - so the copy the destination had
    begun is gone, and the instance is evacuated again elsewhere. The destination keeps the instance's allocation
    in Placement (its resource tracker leaves an instance that is not its own alone): `allocated_on` names it.
    A destination that is down but not forced down may be cut off from Nova only and still rebuilding: the
    instance is waited for, and the timeout's message says to fence that host."""
    raw = get_server(run.conn, record['id'])
    if raw is None:
        raise _AttemptFailed('deleted while it was being evacuated', False)
    migrations = instance_evacuations(run.conn, record['id'])
    newest = migrations[0] if migrations else None
    if not (newest and newest['id'] == migration['id'] and newest['status'] in CLAIMED_MIGRATION_STATES and
            _host_of(raw) == run.host):
        return None  # it ended, or arrived on the destination: the wait goes on
    dest = migration['dest_compute']
    services = compute_services(run.conn)
    if not find_service(services, dest)['forced_down']:
        return None
    service = find_service(services, run.host)
    if not (service['forced_down'] or service['state'] == 'down'):
        return None  # the failed host is back: its compute may finish or clean up the move, never repeat it
    reason = ('its evacuation was cut off: the destination %s was fenced (forced down in Nova) while migration %s '
              'was %s; still %s on %s, task state %s'
              % (dest, migration['id'], newest['status'], raw.get('status'), run.host, _task_state(raw) or 'none'))
    return _evacuate_again(run, record, reason, deadline, _lost_entry(newest, raw, None, 'evacuated again',
                                                                      allocation_hosts(run.conn, record['id'])))


def _timeout_advice(run, migration):
    """What the timeout's message tells the operator about a move still under way."""
    if migration and migration['status'] in CLAIMED_MIGRATION_STATES and migration['dest_compute']:
        dest = migration['dest_compute']
        try:
            service = next((s for s in run.compute_services() if s['host'] == dest), None)
        except RecoveryError:
            service = None
        if service and service['state'] == 'down' and not service['forced_down']:
            return ('its destination %s went down during the move and is not fenced, so the move can neither end nor '
                    'be repeated safely: fence %s (host_failover for it), then run again to evacuate it elsewhere'
                    % (dest, dest))
    return 'its evacuation may still be under way: wait for it to end, never evacuate it again before'


def _loss_words(entry, host, arrived_on):
    """How the report names one lost or cut-off evacuation of an instance of `host` that arrived on `arrived_on`;
    an allocation it left on a third host is named (Nova never removes it)."""
    if entry['migration_status'] == 'accepted':
        words = 'its evacuation was lost (migration %s accepted, never carried out by a compute' % entry['migration_id']
    else:
        words = 'its evacuation to %s was cut off when %s was fenced (migration %s left %s' % (
            entry['dest_compute'], entry['dest_compute'], entry['migration_id'], entry['migration_status'])
    kept = [h for h in entry['allocated_on'] or [] if h not in (host, arrived_on)]
    if kept:
        words += '; Placement keeps its allocation on %s' % ', '.join(kept)
    return words + ')'


def _after_lost(run, record):
    """Once an instance arrived after a lost evacuation: name the evacuation migrations Nova leaves 'accepted'."""
    if not record['lost_evacuations']:
        return
    left = [m['id'] for m in instance_evacuations(run.conn, record['id']) if m['status'] == 'accepted']
    record['lost_evacuations'][-1]['left_accepted'] = left
    note = '%s and it was evacuated again; Nova keeps %s accepted' % (
        '; '.join(_loss_words(e, run.host, record['to']) for e in record['lost_evacuations']), ', '.join(left) or 'none')
    record['reason'] = '%s; %s' % (record['reason'], note) if record['reason'] else note


def _suspect_lost(conn, host, records, lost_timeout, now):
    """Check mode: note in the records of the instances waited for whose evacuation may be lost, or was cut off by
    the fence of its destination, what a run would do. A run measures the time 'accepted' itself; here the
    migration's age (created_at, on this machine's UTC clock) tells whether a run would evacuate it again at once.
    Returns whether one would."""
    at_once = False
    fenced = None  # the hosts forced down, read once when a move claimed by a destination is found
    for record in records:
        if record['action'] != 'wait' or record['to'] is not None:
            continue
        raw = get_server(conn, record['id'])
        migrations = instance_evacuations(conn, record['id']) if raw else []
        newest = migrations[0] if migrations else None
        if raw is None or newest is None or _host_of(raw) != host:
            continue
        if newest['status'] in CLAIMED_MIGRATION_STATES and newest['dest_compute']:
            if fenced is None:
                fenced = set(s['host'] for s in compute_services(conn) if s['forced_down'])
            if newest['dest_compute'] not in fenced:
                continue
            at_once = True
            action = 'would evacuate it again: its destination %s is fenced (forced down)' % newest['dest_compute']
            record['lost_evacuations'].append(_lost_entry(newest, raw, None, action))
            record['reason'] = '%s; migration %s was cut off at %s: %s' % (
                record['reason'], newest['id'], newest['status'], action)
            continue
        if not lost_timeout or not _lost_candidate(raw, host, newest):
            continue
        created = parse_time(newest['created_at'])
        age = (now - created).total_seconds() if created else None
        if age is not None and age >= lost_timeout:
            at_once = True
            action = ('would evacuate it again after watching it accepted for lost_evacuation_timeout=%d s'
                      % lost_timeout)
        else:
            action = ('would wait for it, and evacuate it again if it stays accepted for lost_evacuation_timeout=%d s'
                      % lost_timeout)
        record['lost_evacuations'].append(_lost_entry(newest, raw, age, action))
        record['reason'] = '%s; migration %s is accepted since %s: %s' % (
            record['reason'], newest['id'], newest['created_at'], action)
    return at_once


# ---------------------------------------------------------------------------------------------------------
# the whole host


def _check_down(service, host):
    if service['forced_down'] or service['state'] == 'down':
        return
    raise EvacuationError(
        'refusing to evacuate %s: its nova-compute service is up and not forced down (last report %s). Evacuating '
        'a host that is not really down runs its instances twice, and Nova refuses it ("Compute service of %s is '
        'still in use"). Fence %s, force its service down (openstack_ha.recovery.nova_service forced_down=true), '
        'then run this again.' % (host, service['updated_at'] or 'unknown', host, host))


def _read_inputs(conn, host):
    """What the plan reads from Nova, read at once (read_concurrently) rather than one request after the other:
    dict(servers, migrations, aggregates, locked, nodes)."""
    names = ('servers', 'migrations', 'aggregates', 'locked', 'nodes')
    answers = read_concurrently(conn, [functools.partial(host_servers, conn, host),
                                       functools.partial(evacuation_migrations, conn, host),
                                       functools.partial(list_aggregates, conn),
                                       functools.partial(locked_servers, conn),
                                       functools.partial(hypervisor_nodes, conn)])
    return dict(zip(names, answers))


def _plan(conn, host, options, inputs):
    """The records of the instances on the host and of those an earlier run moved but left locked; warnings.
    inputs: _read_inputs."""
    warnings = []
    raw_servers = inputs['servers']
    newest = _newest_by_instance(inputs['migrations'])
    aggregates = [a for a in inputs['aggregates'] if host in a['hosts']]
    stale = [raw for raw in inputs['locked'] if our_lock(raw, host) and _host_of(raw) != host]
    images = {}

    def reader(raw):
        image = raw.get('image')
        image_id = image.get('id') if isinstance(image, dict) else None

        def read():
            if not image_id:
                return None
            if image_id not in images:
                images[image_id] = image_properties(conn, image_id)
            return images[image_id]
        return read

    records = []
    for raw, moved_before in [(raw, False) for raw in raw_servers] + [(raw, True) for raw in stale]:
        specs = (raw.get('flavor') or {}).get('extra_specs') or {}
        evacuable, source = resolve_evacuable(options['evacuable_tag'], options['evacuable_sources'],
                                              options['evacuable_default'], specs, reader(raw), aggregates)
        priority, priority_source, warning = resolve_priority(options['priority_tag'], specs, reader(raw))
        if warning:
            warnings.append('%s (%s): %s' % (raw.get('name'), raw.get('id'), warning))
        record = _new_record(raw, host, evacuable, source, priority, priority_source)
        record['lock'] = _lock_state(raw, host)
        if moved_before:
            record.update(action='wait', resumed=True, to=_host_of(raw), target_status=our_lock(raw, host),
                          reason='moved (or moving) by an earlier run of nova_evacuate that did not finish: checking '
                                 'it and unlocking it')
        else:
            _select(record, raw, host, newest, options)
        records.append(record)
    for option in ('include', 'exclude'):
        for name in options[option]:
            if not any(_matches(r, [name]) for r in records if r['to'] is None):
                warnings.append('%s entry %r matches no instance on %s' % (option, name, host))
    return sorted(records, key=lambda r: (r['name'] or '', r['id'])), warnings


def _totals(records, run, started, clock):
    count = dict((outcome, len([r for r in records if r['outcome'] == outcome]))
                 for outcome in ('moved', 'skipped', 'failed', 'planned'))
    return dict(instances=len(records), selected=len([r for r in records if r['outcome'] != 'skipped']),
                resumed=len([r for r in records if r['resumed']]),
                evacuations=run.evacuations if run else 0,
                last_evacuation_after=run.last_evacuation if run else None,
                seconds=round(clock() - started, 1), **count)


def _planned_host(record):
    """The host the first evacuation of a record names as planned; None when the scheduler chooses."""
    if record['target_pool'] in ('target_hosts', 'reserved') and record['candidates']:
        return record['candidates'][0]
    return None


def _diff(records):
    acting = [r for r in records if r['action'] != 'none']

    def after(record):
        host = record['to'] or _planned_host(record) or '(scheduler)'
        return dict(host=host, status=record['target_status'] if record['outcome'] != 'failed'
                    else record['status_after'])
    return dict(before=dict((r['id'], dict(host=r['from'], status=r['status_before'])) for r in acting),
                after=dict((r['id'], after(r)) for r in acting))


def _reserved_used(records, reserved_services, run, check_mode):
    """The reserved hosts this run enabled or sent instances to (in check mode: would), in pool order."""
    used = []
    for name, service in reserved_services.items():
        if check_mode:
            instances = [r['id'] for r in records if r['action'] == 'evacuate' and r['target_pool'] == 'reserved'
                         and _planned_host(r) == name]
            action = 'would enable' if instances and not service['enabled'] else 'none'
        else:
            instances = [r['id'] for r in records if r['outcome'] == 'moved' and r['to'] == name]
            action = 'enabled' if run and name in run.enabled_hosts else 'none'
        if instances or action != 'none':
            used.append(dict(host=name, disabled_reason=service['disabled_reason'], action=action,
                             instances=instances))
    return used


def _failure_message(host, records, totals):
    failed = [r for r in records if r['outcome'] == 'failed']
    shown = '; '.join('%s (%s): %s' % (r['name'], r['id'], r['reason']) for r in failed[:10])
    more = '; and %d more' % (len(failed) - 10) if len(failed) > 10 else ''
    return ('evacuation of %s incomplete: %d of %d selected instance(s) did not reach their target state on another '
            'host - %s%s. Moved: %d, skipped: %d; the record of every instance is in `instances`.'
            % (host, len(failed), totals['selected'], shown, more, totals['moved'], totals['skipped']))


def evacuate_host(conn, host, capacity_policy='partial', concurrency=10, discover_reserved_hosts=True,
                  evacuable_default=True, evacuable_sources=EVACUABLE_SOURCES, evacuable_tag='evacuable', exclude=(),
                  include=(), include_error=False, lost_evacuation_timeout=LOST_EVACUATION_TIMEOUT,
                  priority_tag='evacuation_priority', reserved_hosts=(), retries=2,
                  target_hosts=(), target_order='scheduler', target_spread=True, timeout=300, check_mode=False,
                  clock=time.monotonic, sleep=time.sleep, poll_interval=None, now=utc_now):
    """nova_evacuate: evacuate the instances of a failed host, or (check_mode) plan it from real reads.

    Returns dict(changed, diff, warnings, and RESULT_KEYS). Raises EvacuationError with the same facts when it
    refuses, and when any selected instance did not reach its target state after everything was tried.
    """
    started = clock()
    target_hosts = list(target_hosts or [])
    reserved_hosts = list(reserved_hosts or [])
    options = dict(evacuable_default=evacuable_default, evacuable_sources=list(evacuable_sources),
                   evacuable_tag=evacuable_tag, exclude=list(exclude or []), include=list(include or []),
                   include_error=include_error, priority_tag=priority_tag)
    facts = dict(changed=False, host=host, service=None, microversion=None, instances=[], groups=[], capacity=None,
                 reserved_hosts_used=[], totals=None)
    run = None
    try:
        _check_options(options, concurrency, retries, timeout, capacity_policy, target_order, target_hosts)
        _check_lost_timeout(lost_evacuation_timeout)
        warnings = []
        if reserved_hosts and target_order == 'scheduler':
            warnings.append('reserved_hosts (%s) are not used with target_order=scheduler: set target_order to '
                            'reserved, reserved_then_scheduler or scheduler_then_reserved to use them'
                            % ', '.join(reserved_hosts))
        services = compute_services(conn)
        service = facts['service'] = find_service(services, host)
        _check_down(service, host)
        microversion = facts['microversion'] = evacuate_microversion(conn)
        inputs_read_at = clock()
        inputs = _read_inputs(conn, host)
        pools, excluded = _pools(host, service['zone'], services, inputs['aggregates'], target_hosts, target_order,
                                 reserved_hosts, discover_reserved_hosts)
        reserved_services = dict((name, find_service(services, name)) for kind, names in pools if kind == 'reserved'
                                 for name in names)
        records, plan_warnings = _plan(conn, host, options, inputs)
        for record in records:
            record['lost_evacuations'] = []
        warnings += plan_warnings
        facts['instances'] = records
        groups = _groups(records)
        capacity = facts['capacity'] = _capacity(conn, pools, excluded, groups, target_spread, inputs['nodes'])
        facts['groups'] = [dict(priority=g[0]['priority'], instances=[r['id'] for r in g]) for g in groups]
        if any(r['action'] == 'evacuate' for r in records) and not any(names for kind, names in pools):
            raise EvacuationError(_no_target_message(host, target_order, target_hosts, excluded))
        _apply_capacity_policy(host, records, capacity, pools, capacity_policy)
        groups = _groups(records)
        facts['groups'] = [dict(priority=g[0]['priority'], instances=[r['id'] for r in g]) for g in groups]
        if check_mode:
            for record in records:
                if record['action'] != 'none':
                    record['outcome'] = 'planned'
            changed = any(r['action'] == 'evacuate' or r['lock'] == 'earlier run' for r in records
                          if r['action'] != 'none')
            changed = _suspect_lost(conn, host, records, lost_evacuation_timeout, now()) or changed
            facts['reserved_hosts_used'] = _reserved_used(records, reserved_services, None, True)
            return dict(facts, changed=changed, totals=_totals(records, None, started, clock), warnings=warnings,
                        diff=_diff(records))
        run = _Run(conn, host, microversion, timeout, retries, target_hosts, clock, sleep,
                   POLL_INTERVAL if poll_interval is None else poll_interval, started, pools, reserved_services,
                   plan=dict(servers=dict((raw['id'], raw) for raw in inputs['servers']), read_at=inputs_read_at,
                             newest=dict((uuid, m['id']) for uuid, m in
                                         _newest_by_instance(inputs['migrations']).items())),
                   lost_timeout=lost_evacuation_timeout)
        for group in groups:
            with ThreadPoolExecutor(max_workers=min(concurrency, len(group))) as pool:
                list(pool.map(lambda record: move_instance(run, record), group))
        totals = facts['totals'] = _totals(records, run, started, clock)
        facts['changed'] = run.changed
        facts['reserved_hosts_used'] = _reserved_used(records, reserved_services, run, False)
        if totals['failed']:
            raise EvacuationError(_failure_message(host, records, totals), dict(facts, warnings=warnings))
        return dict(facts, warnings=warnings, diff=_diff(records))
    except EvacuationError as exc:
        if exc.facts:
            raise
        raise EvacuationError(exc.msg, _facts(facts, run))
    except RecoveryError as exc:
        raise EvacuationError(exc.msg, _facts(facts, run))


def _check_options(options, concurrency, retries, timeout, capacity_policy, target_order, target_hosts):
    both = sorted(set(options['include']) & set(options['exclude']))
    if both:
        raise EvacuationError('%s listed in both include and exclude: keep each in one list' % ', '.join(both))
    for name, value, low in (('concurrency', concurrency, 1), ('retries', retries, 0), ('timeout', timeout, 1)):
        if value < low:
            raise EvacuationError('%s must be at least %d, not %d' % (name, low, value))
    for name, value, choices in (('capacity_policy', capacity_policy, CAPACITY_POLICIES),
                                 ('target_order', target_order, TARGET_ORDERS)):
        if value not in choices:
            raise EvacuationError('%s must be one of %s, not %r' % (name, ', '.join(choices), value))
    if target_hosts and target_order != 'scheduler':
        raise EvacuationError('target_hosts and target_order=%s exclude each other: target_hosts names the hosts '
                              'to use; leave target_order at scheduler with it, or list spare hosts in '
                              'reserved_hosts instead' % target_order)


def _check_lost_timeout(value):
    if value != 0 and value < LOST_EVACUATION_TIMEOUT_MIN:
        raise EvacuationError('lost_evacuation_timeout must be 0 (never declare an evacuation lost) or at least %d '
                              'seconds, not %d: a shorter wait could repeat an evacuation that nova-conductor '
                              'or the scheduler is still working on, and the instance would be rebuilt twice'
                              % (LOST_EVACUATION_TIMEOUT_MIN, value))


def _no_target_message(host, target_order, target_hosts, excluded):
    if target_order == 'reserved' and not target_hosts:
        left_out = ', '.join('%s (%s%s)' % (e['host'], e['reason'], ', reason %r' % e['disabled_reason']
                                            if e['disabled_reason'] else '') for e in excluded)
        return ('no reserved host can take the instances of %s: %s. List spare hosts in reserved_hosts, or disable '
                'them with the reason "reserved" in the availability zone or an aggregate of %s (found with '
                'discover_reserved_hosts), or use target_order=reserved_then_scheduler'
                % (host, left_out or 'none is listed in reserved_hosts or found disabled as reserved', host))
    return ('no host can take the instances of %s: %s. Nova would put every instance it cannot place in ERROR; '
            'enable or add hosts first' % (host, ', '.join('%s (%s)' % (e['host'], e['reason']) for e in excluded)
                                           or 'Nova knows no other host in its availability zone and aggregates'))


def _facts(facts, run):
    facts = dict(facts)
    facts['changed'] = bool(run and run.changed)
    return facts
