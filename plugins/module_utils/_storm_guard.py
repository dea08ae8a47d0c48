# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""storm_guard core: may a failover of one host proceed, given how much of its failure domain is down and how
many failovers happened lately? Read-only; plain functions over the nova core's reads.

The failover history lives in Nova itself: every failover disables the host's nova-compute service with the
structured reason `openstack_ha:failover run=<run id> at=<UTC ISO-8601 with Z>` (parse_marker, format_marker),
so it survives a controller restart and every controller sees the same history.

That marker is written only after the fence, tens of seconds after this gate: two failovers started together
(one alert group per host, two operators) would both pass a max_failovers limit that only one of them should.
So a run that passes the gate with claim=True also writes a claim, `{host, run, at}`, into
<lock_dir>/failover-claims.json, the run locks' directory (shared by every controller that must see the others'
runs, as for run_lock): reading the claims, deciding and writing this run's claim happen under one flock, so of
two runs racing through the gate the second one counts the first one's claim. A claim counts for `window`
seconds like a marker (a marker of the same host counts instead, once), and stops counting once its host is
back in service - enabled, up, not forced down - and the claim is older than CLAIM_GRACE (restored like a
marked host; a failover that gave up before marking it): within CLAIM_GRACE it counts whatever Nova says, since a
failover may start on an alert before Nova notices the host is down.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import re

from ansible_collections.openstack_ha.recovery.plugins.module_utils._nova import (
    compute_services,
    find_service,
    list_aggregates,
    parse_time,
    utc_now,
)
from ansible_collections.openstack_ha.recovery.plugins.module_utils._openstack import RecoveryError
from ansible_collections.openstack_ha.recovery.plugins.module_utils._run_lock import (
    Guard,
    RunLockError,
    default_lock_dir,
    ensure_lock_dir,
)

FAILURE_DOMAINS = ('availability_zone', 'aggregate', 'all')
RUNBOOKS = ('failover', 'drain', 'restore')
MARKER_PREFIX = 'openstack_ha:'
MARKER = re.compile(r'^openstack_ha:(?P<runbook>[a-z_]+) run=(?P<run>\S+) at=(?P<at>\S+)$')
MARKER_TIME_FORMAT = '%Y-%m-%dT%H:%M:%SZ'

STORM_GUARD_RESULT_KEYS = ('claim_path', 'claimed', 'domain', 'down', 'down_percent', 'host', 'hosts', 'reasons',
                           'recent_failovers', 'verdict')
CLAIMS_FILE = 'failover-claims.json'
CLAIM_GRACE = 300  # seconds a claim counts even while its host looks in service (see the module docstring)

PROCEED = 'proceed'
REFUSE = 'refuse'


class StormGuardError(RecoveryError):
    """A bad option or host for the storm guard (not a refusal: a refusal is a verdict)."""


def format_marker(runbook, run_id, at):
    """The disabled_reason a runbook writes: `openstack_ha:<runbook> run=<run_id> at=<UTC time with Z>`."""
    at = at.astimezone(datetime.timezone.utc) if at.tzinfo else at
    return '%s%s run=%s at=%s' % (MARKER_PREFIX, runbook, run_id, at.strftime(MARKER_TIME_FORMAT))


def _utc_time(text):
    """The time of a marker's or claim's `at` (UTC ISO-8601 ending in Z); None for anything else."""
    return parse_time(text) if str(text or '').endswith('Z') else None


def parse_marker(reason):
    """dict(runbook, run, at, time) of a structured disabled_reason, time None when `at` is no time; else None."""
    match = MARKER.match((reason or '').strip())
    if not match:
        return None
    return dict(runbook=match.group('runbook'), run=match.group('run'), at=match.group('at'),
                time=_utc_time(match.group('at')))


def recent_failovers(services, host, run_id, window, now):
    """[{host, run, at}] of the failover markers in the services' disabled reasons written within `window`
    seconds before `now` (or after it: a controller clock behind Nova's), sorted by time then host.

    A marker on `host` itself is the failover of this host being run again (a rerun, whatever its run id:
    host_restore clears the marker), not another one: left out. `run_id` is kept for the callers' records.
    A disabled reason that starts like a failover marker but does not parse is counted (its age is unknown, so
    it cannot be shown to be old).
    """
    found = []
    for service in services:
        reason = (service.get('disabled_reason') or '').strip()
        marker = parse_marker(reason)
        if marker is None:
            if not reason.startswith(MARKER_PREFIX + 'failover'):
                continue
            marker = dict(runbook='failover', run=None, at=None, time=None)
        if marker['runbook'] != 'failover':
            continue
        if service['host'] == host:
            continue
        if marker['time'] is not None and (now - marker['time']).total_seconds() > window:
            continue
        found.append(dict(host=service['host'], run=marker['run'], at=marker['at'], source='nova'))
    return _by_time(found)


def _by_time(failovers):
    return sorted(failovers, key=lambda entry: (entry['at'] or '', entry['host']))


def read_claims(path):
    """The claims in the claims file `path` ([] when there is none); a file that is no claim list fails."""
    try:
        with open(path) as handle:
            text = handle.read()
    except IOError as exc:
        if not os.path.exists(path):
            return []
        raise StormGuardError('cannot read the failover claims %s: %s' % (path, exc))
    try:
        claims = json.loads(text) if text.strip() else []
        if not isinstance(claims, list) or not all(isinstance(c, dict) and c.get('host') for c in claims):
            raise ValueError('not a list of {host, run, at}')
    except ValueError as exc:
        raise StormGuardError('the failover claims %s are damaged (%s): move the file away; the failover markers '
                              'in Nova still count' % (path, exc))
    return claims


def write_claims(path, claims):
    """Replace the claims file in one rename (a reader never sees half of it)."""
    temporary = '%s.%d.tmp' % (path, os.getpid())
    with open(temporary, 'w') as handle:
        json.dump(claims, handle, indent=1, sort_keys=True)
    os.rename(temporary, path)


def live_claims(claims, window, now):
    """The claims written within `window` seconds before `now` (or after it); claims whose time does not parse
    count (nothing shows they are old)."""
    kept = []
    for claim in claims:
        at = _utc_time(claim.get('at'))
        if at is not None and (now - at).total_seconds() > window:
            continue
        kept.append(claim)
    return kept


def _in_service(service):
    return (service is not None and service['status'] == 'enabled' and service['state'] == 'up'
            and not service['forced_down'])


def claimed_failovers(claims, markers, host, services, now):
    """The live claims of OTHER hosts that count as recent failovers: no failover marker of the host in Nova
    (then the marker counts) and the host not back in service after CLAIM_GRACE."""
    marked = set(entry['host'] for entry in markers)
    by_host = dict((s['host'], s) for s in services)
    found = []
    for claim in claims:
        if claim['host'] == host or claim['host'] in marked:
            continue
        at = _utc_time(claim.get('at'))
        settled = at is not None and (now - at).total_seconds() > CLAIM_GRACE
        if settled and _in_service(by_host.get(claim['host'])):
            continue
        found.append(dict(host=claim['host'], run=claim.get('run'), at=claim.get('at'), source='claim'))
    return found


def failure_domain(host, service, services, failure_domain_kind, aggregate_name, aggregates):
    """(domain dict(kind, name, aggregates), domain host names sorted). Raises StormGuardError."""
    if failure_domain_kind == 'all':
        return dict(kind='all', name='all', aggregates=[]), sorted(s['host'] for s in services)
    if failure_domain_kind == 'availability_zone':
        zone = service['zone']
        return (dict(kind='availability_zone', name=zone, aggregates=[]),
                sorted(s['host'] for s in services if s['zone'] == zone))
    if aggregate_name:
        named = [a for a in aggregates if a['name'] == aggregate_name]
        if not named:
            raise StormGuardError('no host aggregate named %r (Nova has %s)' % (
                aggregate_name, ', '.join(sorted(a['name'] for a in aggregates)) or 'no aggregates'))
        chosen = named
        if not any(host in a['hosts'] for a in chosen):
            raise StormGuardError('host %s is not in host aggregate %r (its hosts: %s): name an aggregate of %s, '
                                  'or leave aggregate unset to use all of its aggregates'
                                  % (host, aggregate_name, ', '.join(chosen[0]['hosts']) or 'none', host))
    else:
        chosen = [a for a in aggregates if host in a['hosts']]
        if not chosen:
            raise StormGuardError('host %s is in no host aggregate, so failure_domain=aggregate has no domain for '
                                  'it: add it to one, or use failure_domain=availability_zone or all' % host)
    names = sorted(a['name'] for a in chosen)
    members = set()
    for entry in chosen:
        members.update(entry['hosts'])
    known = set(s['host'] for s in services)
    return dict(kind='aggregate', name=', '.join(names), aggregates=names), sorted(members & known)


def host_entry(service, host):
    down = service['host'] == host or service['state'] != 'up' or service['forced_down']
    return dict(host=service['host'], state=service['state'], forced_down=service['forced_down'],
                status=service['status'], disabled_reason=service['disabled_reason'], down=bool(down))


def check_options(max_down_percent, max_down_hosts, window, max_failovers, failure_domain_kind, aggregate_name):
    if failure_domain_kind not in FAILURE_DOMAINS:
        raise StormGuardError('failure_domain must be one of %s, got %r' % (', '.join(FAILURE_DOMAINS),
                                                                            failure_domain_kind))
    if aggregate_name and failure_domain_kind != 'aggregate':
        raise StormGuardError('aggregate %r is only used with failure_domain=aggregate, not %s'
                              % (aggregate_name, failure_domain_kind))
    if not 0 <= max_down_percent <= 100:
        raise StormGuardError('max_down_percent must be between 0 and 100, got %s' % max_down_percent)
    for option, value in (('max_down_hosts', max_down_hosts), ('window', window), ('max_failovers', max_failovers)):
        if value is not None and value < 0:
            raise StormGuardError('%s must not be negative, got %s' % (option, value))


def refusal_reasons(host, domain, down, total, percent, max_down_percent, max_down_hosts, failovers, window,
                    max_failovers):
    reasons = []
    where = 'failure domain %s %s' % (domain['kind'], domain['name'])
    listed = ', '.join(down)
    if percent > max_down_percent:
        reasons.append('%d of %d hosts in %s are down or forced down, counting %s (%s): %.1f%% is more than '
                       'max_down_percent %s%%' % (len(down), total, where, host, listed, percent, max_down_percent))
    if max_down_hosts is not None and len(down) > max_down_hosts:
        reasons.append('%d hosts in %s are down or forced down, counting %s (%s): more than max_down_hosts %d'
                       % (len(down), where, host, listed, max_down_hosts))
    if max_failovers == 0:
        reasons.append('max_failovers is 0: no failover may run')
    elif len(failovers) >= max_failovers:
        shown = ', '.join('%s (run %s at %s)' % (f['host'], f['run'] or 'unknown', f['at'] or 'unknown')
                          for f in failovers)
        reasons.append('%d failover(s) within the last %s s (%s): another one would be more than max_failovers %d'
                       % (len(failovers), window, shown, max_failovers))
    return reasons


def storm_guard(conn, host, failure_domain_kind='availability_zone', aggregate=None, max_down_percent=34.0,
                max_down_hosts=None, window=3600, max_failovers=3, run_id=None, now=None, lock_dir=None, claim=False,
                check_mode=False):
    """storm_guard: the verdict on a failover of `host` with its evidence (STORM_GUARD_RESULT_KEYS).

    A host counts as down when Nova says its service is down or it is forced down; `host` itself always counts
    as down (the failover takes it out, whatever Nova says yet). Refuses when down hosts / domain hosts * 100 >
    max_down_percent, when down hosts > max_down_hosts (if set), or when recent failovers >= max_failovers.
    With `lock_dir`, the claims in it count as recent failovers too; with `claim`, a proceed verdict records
    this run's claim there (lock_dir unset: run_lock's default_lock_dir()) unless a live claim of `host` is
    there already (a rerun: not changed; claimed says the failover is claimed; in check mode nothing is
    written). Raises StormGuardError / NovaError (bad option, unknown host, unknown aggregate, API failure,
    unreadable claims) with the facts known so far.
    """
    facts = dict(host=host, domain=None, hosts=[], down=[], down_percent=None, recent_failovers=[], verdict=None,
                 reasons=[], claim_path=None, claimed=False)
    try:
        if claim and not run_id:
            raise StormGuardError('claim needs run_id, the run the claim of %s is written for' % host)
        check_options(max_down_percent, max_down_hosts, window, max_failovers, failure_domain_kind, aggregate)
        services = compute_services(conn)
        service = find_service(services, host)
        aggregates = list_aggregates(conn) if failure_domain_kind == 'aggregate' else []
        domain, members = failure_domain(host, service, services, failure_domain_kind, aggregate, aggregates)
        by_host = dict((s['host'], s) for s in services)
        facts['hosts'] = [host_entry(by_host[name], host) for name in members]
        facts['down'] = [entry['host'] for entry in facts['hosts'] if entry['down']]
        percent = 100.0 * len(facts['down']) / len(members)
        facts['down_percent'] = round(percent, 1)
        domain['size'] = len(members)
        facts['domain'] = domain
        now = now or utc_now()
        if claim and not lock_dir:
            lock_dir = default_lock_dir()
        markers = recent_failovers(services, host, run_id, window, now)

        def decide(claims):
            facts['recent_failovers'] = _by_time(markers + claimed_failovers(claims, markers, host, services, now))
            facts['reasons'] = refusal_reasons(host, domain, facts['down'], len(members), percent, max_down_percent,
                                               max_down_hosts, facts['recent_failovers'], window, max_failovers)
            facts['verdict'] = REFUSE if facts['reasons'] else PROCEED
            return facts['verdict'] == PROCEED

        if not lock_dir:
            decide([])
            return dict(changed=False, **facts)
        lock_dir = os.path.abspath(os.path.expanduser(lock_dir))
        path = facts['claim_path'] = os.path.join(lock_dir, CLAIMS_FILE)
        writing = claim and not check_mode
        ensure_lock_dir(lock_dir, not writing)
        with Guard(path, enabled=writing):
            claims = live_claims(read_claims(path), window, now)
            changed = False
            if decide(claims) and claim:
                facts['claimed'] = True
                # a live claim of this host already counts for this failover (a rerun): leave it, unchanged
                changed = not any(c['host'] == host for c in claims)
                if writing and changed:
                    at = now.astimezone(datetime.timezone.utc).strftime(MARKER_TIME_FORMAT)
                    write_claims(path, claims + [dict(host=host, run=run_id, at=at)])
        return dict(changed=changed, **facts)
    except (IOError, OSError, RunLockError) as exc:
        raise StormGuardError('cannot use the failover claims in %s for %s: %s'
                              % (lock_dir, host, getattr(exc, 'msg', exc)), dict(facts))
    except RecoveryError as exc:
        merged = dict(facts)
        merged.update(exc.facts)
        raise exc.__class__(exc.msg, merged)


def refusal_message(result):
    return 'storm guard refuses the failover of %s: %s' % (result['host'], '; '.join(result['reasons']))
