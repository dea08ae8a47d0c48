"""The invariants every fault scenario ends with, checked the same way after each one, from the lab itself.

`check(...)` reads Nova (servers, services, evacuation migration records), the failed host's BMC event log and
its compute process, and compares them with the instances that were on the host before the run and with the run's
report (host_failover_report). It returns an `Outcome`: the name of each invariant and the violations found.

The fake virt driver keeps its guests in the memory of each nova-compute process, so "an instance runs on host H"
means: H's compute process is alive and holds the instance. Its copy on the failed host lives as long as that
process; it dies when the process dies (the BMC's power off kills it and logs a `killed` event; `labctl crash`
kills it too, and the scenario records when). A restarted compute comes back with no guests. So no instance ran on
two hosts exactly when every evacuation of it was created after the failed host's process had died.

Invariants:
- fenced: the failed host's compute process is dead and its power off, Nova has it forced down and disabled
  (for a scenario that must NOT fence - a BMC that rejects the credentials or lies - : nothing was evacuated,
  forced down or moved, and the report says the fence was not verified);
- fence_before_evacuation: every evacuation migration from the host was created after its process died;
- exactly_once: at most one successful evacuation per instance, one server record each, no evacuation left in
  flight unless the report names the instance failed, or names that migration as one of its lost evacuations
  (Nova never closes a lost evacuation's 'accepted' record, nor the 'pre-migrating' one of a move its
  destination's fence cut off; nova_evacuate reports the ids it leaves);
- target_state: every instance is on another host that is up, enabled and alive, in its target state, with no
  task state and no evacuation lock left behind - or the report names it failed;
- nothing_lost: no instance deleted or in ERROR unless the report says so;
- report_matches_nova: the report's outcome, fence and per-instance records agree with Nova.
"""

import datetime
import json
import os

from lab_helpers import compute_service, evacuation_migrations, process_alive

INVARIANTS = ('fenced', 'fence_before_evacuation', 'exactly_once', 'target_state', 'nothing_lost',
              'report_matches_nova')
IN_FLIGHT = ('accepted', 'pre-migrating', 'migrating', 'running', 'queued', 'preparing')
MOVED = ('done', 'completed')
TARGET_STATUS = {'ACTIVE': 'ACTIVE', 'SHUTOFF': 'SHUTOFF', 'ERROR': 'ACTIVE'}
LOCK_PREFIX = 'openstack_ha.recovery.nova_evacuate:'


class Outcome:
    """What `check` found: violations by invariant (empty lists when it held)."""

    def __init__(self):
        self.violations = {name: [] for name in INVARIANTS}

    def fail(self, invariant, message):
        self.violations[invariant].append(message)

    @property
    def held(self):
        return [name for name, found in self.violations.items() if not found]

    @property
    def ok(self):
        return len(self.held) == len(INVARIANTS)

    def summary(self):
        if self.ok:
            return 'all %d' % len(INVARIANTS)
        return '%d/%d (broken: %s)' % (len(self.held), len(INVARIANTS),
                                       ', '.join(n for n in INVARIANTS if n not in self.held))

    def __str__(self):
        lines = ['%s: %s' % (name, '; '.join(found)) for name, found in self.violations.items() if found]
        return '\n'.join(lines) or 'every invariant held'


def snapshot(conn, host):
    """{server id: {name, status, host}} of every server Nova places on `host`, read before the run."""
    return {s.id: dict(name=s.name, status=s.status, host=s.compute_host)
            for s in conn.compute.servers(details=True, all_projects=True) if s.compute_host == host}


def bmc_events(lab, host):
    path = os.path.join(lab['hosts'][host]['state_dir'], 'bmc-events.log')
    if not os.path.exists(path):
        return []
    with open(path) as log:
        return [json.loads(line) for line in log if line.strip()]


def compute_alive(lab, host):
    try:
        with open(os.path.join(lab['hosts'][host]['state_dir'], 'compute.pid')) as pidfile:
            return process_alive(int(pidfile.read().strip()))
    except (FileNotFoundError, ValueError):
        return False


def power_file(lab, host):
    try:
        with open(os.path.join(lab['hosts'][host]['state_dir'], 'power')) as power:
            return power.read().strip()
    except FileNotFoundError:
        return None


def death_time(lab, host, since, crashed_at=None):
    """When the host's compute process (and with it every guest it held) died after `since`: a `killed` event of
    its BMC, a power off of a host already dead (the crash was earlier), or the scenario's own crash time."""
    times = [crashed_at] if crashed_at else []
    times += [e['t'] for e in bmc_events(lab, host) if e['t'] >= since and e.get('action') == 'killed']
    return min(times) if times else None


def _timestamp(text):
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.timezone.utc).timestamp()


def check(conn, lab, host, before, report, since, crashed_at=None, expect_fence=True, powered_back=False):
    """Check every invariant after a scenario. before: snapshot() of `host` before the run; report: the last run's
    host_failover_report (None when no report was written); since: time.time() when the scenario's run began;
    powered_back: someone powered the failed host on again during the run (its new compute process holds no guest,
    Nova must still have it forced down and disabled)."""
    out = Outcome()
    migrations = evacuation_migrations(conn, host)
    ours = [m for m in migrations if m['instance_uuid'] in before]
    service = compute_service(conn, host)
    records = {r['id']: r for r in ((report or {}).get('evacuation') or {}).get('instances', []) or []}
    # failed in the report: a failed evacuation record, or a failed verification of a moved instance
    reported_failed = {i for i, r in records.items() if r.get('outcome') == 'failed'}
    reported_failed |= {v['id'] for v in (report or {}).get('verification', []) or [] if not v.get('ok')}
    if report is None:
        out.fail('report_matches_nova', 'the run wrote no report')

    if not expect_fence:
        _check_untouched(out, conn, lab, host, before, ours, service, report)
        return out

    # fenced
    if compute_alive(lab, host) and not powered_back:
        out.fail('fenced', 'the compute process of %s is alive' % host)
    if power_file(lab, host) != 'off' and not powered_back:
        out.fail('fenced', 'the chassis power of %s is %s, not off' % (host, power_file(lab, host)))
    if not service.is_forced_down or service.status != 'disabled':
        out.fail('fenced', 'Nova has %s forced_down=%s, %s' % (host, service.is_forced_down, service.status))

    # fence_before_evacuation
    died = death_time(lab, host, since, crashed_at)
    if ours and died is None:
        out.fail('fence_before_evacuation', '%d evacuation(s) of %s but its compute process never died'
                 % (len(ours), host))
    for migration in ours:
        if died is not None and _timestamp(migration['created_at']) <= died:
            out.fail('fence_before_evacuation', 'evacuation %s of %s was created %.2f s before %s died'
                     % (migration['id'], migration['instance_uuid'], died - _timestamp(migration['created_at']),
                        host))

    # exactly_once
    by_instance = {}
    for migration in ours:
        by_instance.setdefault(migration['instance_uuid'], []).append(migration)
    for server_id, moves in sorted(by_instance.items()):
        done = [m for m in moves if m['status'] in MOVED]
        flying = [m for m in moves if m['status'] in IN_FLIGHT]
        if len(done) > 1:
            out.fail('exactly_once', '%s was evacuated %d times (%s)' % (
                before[server_id]['name'], len(done), ', '.join(m['dest_compute'] or '?' for m in done)))
        lost = (records.get(server_id) or {}).get('lost_evacuations') or []
        named = set(e['migration_id'] for e in lost) | set(i for e in lost for i in e.get('left_accepted') or [])
        flying = [m for m in flying if m['uuid'] not in named]
        if flying and server_id not in reported_failed:
            out.fail('exactly_once', '%s has evacuation(s) still %s and the report does not say so' % (
                before[server_id]['name'], ', '.join(m['status'] for m in flying)))

    # target_state, nothing_lost, report_matches_nova (per instance)
    servers = {s.id: s for s in conn.compute.servers(details=True, all_projects=True)}
    names = [s.name for s in servers.values()]
    healthy = {}
    for server_id, was in sorted(before.items(), key=lambda kv: kv[1]['name']):
        name, server, record = was['name'], servers.get(server_id), records.get(server_id)
        failed_in_report = server_id in reported_failed
        if names.count(name) > 1:
            out.fail('exactly_once', '%s exists %d times in Nova' % (name, names.count(name)))
        if server is None:
            if not record or record.get('outcome') not in ('failed', 'skipped'):
                out.fail('nothing_lost', '%s was deleted and the report does not say so' % name)
            continue
        if server.status == 'ERROR' and not failed_in_report:
            out.fail('nothing_lost', '%s is in ERROR and the report does not say so' % name)
        problems = []
        target = TARGET_STATUS.get(was['status'], was['status'])
        if server.compute_host == host:
            problems.append('still on %s' % host)
        else:
            if server.compute_host not in healthy:
                svc = compute_service(conn, server.compute_host)
                healthy[server.compute_host] = (svc.state == 'up' and svc.status == 'enabled' and
                                                not svc.is_forced_down and compute_alive(lab, server.compute_host))
            if not healthy[server.compute_host]:
                problems.append('its host %s is not healthy' % server.compute_host)
        if server.status != target:
            problems.append('%s instead of %s' % (server.status, target))
        if server.task_state:
            problems.append('task state %s' % server.task_state)
        if server.is_locked and (server.locked_reason or '').startswith(LOCK_PREFIX):
            problems.append('still locked by the evacuation (%s)' % server.locked_reason)
        if problems and not failed_in_report:
            out.fail('target_state', '%s: %s, and the report does not say so' % (name, ', '.join(problems)))
        if record and record.get('outcome') == 'moved' and (record.get('to') != server.compute_host or
                                                            record.get('target_status') != server.status):
            out.fail('report_matches_nova', 'the report has %s moved to %s %s, Nova has it on %s %s' % (
                name, record.get('to'), record.get('target_status'), server.compute_host, server.status))
        if record is None and server.compute_host == host and report is not None:
            out.fail('report_matches_nova', '%s is still on %s and the report does not list it' % (name, host))

    # report_matches_nova (the run)
    if report is not None:
        bad = [i for i in before if i in servers and servers[i].compute_host == host] + sorted(reported_failed)
        if bad and report.get('outcome') == 'recovered':
            out.fail('report_matches_nova', 'the report says recovered while %d instance(s) did not make it' % len(bad))
        if not bad and report.get('outcome') not in ('recovered', 'unchanged'):
            out.fail('report_matches_nova', 'the report says %s while every instance made it' % report.get('outcome'))
        fence = report.get('fence') or {}
        if report.get('outcome') == 'recovered' and not fence.get('fenced'):
            out.fail('report_matches_nova', 'the report says recovered without a verified fence: %s' % fence)
        extra = set(records) - set(before)
        if extra:
            out.fail('report_matches_nova', 'the report lists instances that were not on %s: %s' % (host, extra))
    return out


def _check_untouched(out, conn, lab, host, before, ours, service, report):
    """A scenario that must not fence (credentials rejected, a lying BMC): nothing moved, nothing marked down."""
    if ours:
        out.fail('fence_before_evacuation', '%d instance(s) evacuated although %s was never proven off'
                 % (len(ours), host))
    if service.is_forced_down or service.status == 'disabled':
        out.fail('fenced', 'Nova has %s forced_down=%s, %s although no fence was verified'
                 % (host, service.is_forced_down, service.status))
    for server_id, was in before.items():
        try:
            server = conn.compute.get_server(server_id)
        except Exception:  # openstacksdk's NotFound
            out.fail('nothing_lost', '%s was deleted' % was['name'])
            continue
        if (server.compute_host, server.status) != (host, was['status']):
            out.fail('target_state', '%s is %s on %s, it was %s on %s and nothing may move it'
                     % (was['name'], server.status, server.compute_host, was['status'], host))
    if report is not None:
        if report.get('outcome') != 'failed':
            out.fail('report_matches_nova', 'the report says %s, not failed' % report.get('outcome'))
        if (report.get('fence') or {}).get('fenced'):
            out.fail('report_matches_nova', 'the report says fenced: %s' % report['fence'])
        if report.get('evacuation'):
            out.fail('report_matches_nova', 'the report has an evacuation: %s' % str(report['evacuation'])[:300])
