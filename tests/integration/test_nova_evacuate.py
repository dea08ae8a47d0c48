"""nova_evacuate against the real lab, run through the ansible CLI; every outcome read back from Nova itself
(servers, their hosts and states, locks, and the evacuation migration records).

The state-changing run follows check mode (changed, Nova unchanged) -> apply (changed, Nova changed) -> check rerun
(not changed) -> rerun (not changed). Every test crashes compute1 (its nova-compute killed, as by a kernel panic)
and forces its service down first, as the runbook does after fencing.
"""

import json
import os
import signal
import subprocess
import time

from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers_nova import BIN, ansible_env, placement_free, provider_traits, run_module, service_settings
from lab_helpers import evacuation_migrations, ipmitool, labctl, process_alive, wait_for

HOST = 'compute1'
REASON = 'fenced by the nova_evacuate integration test'
NEVER_FLAVOR = 'ohlab-it-evac.never'     # evacuable=false
FIRST_FLAVOR = 'ohlab-it-evac.first'     # evacuation_priority=10
GOLD_FLAVOR = 'ohlab-it-evac.gold'       # evacuation_priority=10, the size of ohlab.small
SILVER_FLAVOR = 'ohlab-it-evac.silver'   # evacuation_priority=5, the size of ohlab.small
GROUP = 'ohlab-it-evac-anti'
FINAL_MIGRATION_STATES = ('done', 'completed', 'error', 'failed')


@pytest.fixture
def evacuation_lab(fresh_lab, conn):
    """fresh_lab, with this module's flavors and server group removed again, and compute1 powered back on and its
    evacuations cleaned up before fresh_lab's reset (Nova refuses to lift forced_down while 'done' ones remain)."""
    made = dict(flavors=[], groups=[])
    _remove_leftovers(conn)
    yield made
    service = _service(conn, HOST)
    if service['forced_down']:
        bmc = fresh_lab['hosts'][HOST]
        ipmitool(bmc, 'power', 'off')
        ipmitool(bmc, 'power', 'on')
        wait_for('%s to clean up its evacuations' % HOST,
                 lambda: not [m for m in evacuation_migrations(conn, HOST)
                              if m['status'] in ('done', 'accepted', 'pre-migrating')], 180, interval=1)
    for group in made['groups']:
        conn.compute.delete_server_group(group, ignore_missing=True)
    _remove_leftovers(conn)


def _remove_leftovers(conn):
    for name in (NEVER_FLAVOR, FIRST_FLAVOR, GOLD_FLAVOR, SILVER_FLAVOR):
        flavor = conn.compute.find_flavor(name)
        if flavor:
            conn.compute.delete_flavor(flavor)
    for group in conn.compute.server_groups(all_projects=True):
        if group.name == GROUP:
            conn.compute.delete_server_group(group)


def _service(conn, host):
    response = conn.compute.get('/os-services?binary=nova-compute&host=%s' % host, microversion='2.53')
    response.raise_for_status()
    service = response.json()['services'][0]
    return dict(service, forced_down=bool(service['forced_down']))


def _server(conn, server_id):
    """The server as Nova returns it (2.73: host, status, task state, lock and its reason)."""
    response = conn.compute.get('/servers/%s' % server_id, microversion='2.73')
    response.raise_for_status()
    raw = response.json()['server']
    return dict(id=raw['id'], name=raw['name'], host=raw['OS-EXT-SRV-ATTR:host'], status=raw['status'],
                task_state=raw['OS-EXT-STS:task_state'], locked=raw['locked'], locked_reason=raw['locked_reason'])


def _migrations_by_instance(conn):
    found = {}
    for migration in evacuation_migrations(conn, HOST):
        found.setdefault(migration['instance_uuid'], []).append(migration)
    return found


def _crash_and_force_down(lab):
    labctl('crash', HOST)
    down = run_module(lab, 'nova_service', host=HOST, forced_down=True, enabled=False, disabled_reason=REASON)
    assert down['changed'] is True and not down.failed, down


def _boot(prefix, count=1, flavor='ohlab.tiny', host=HOST):
    return labctl('boot', '--count', str(count), '--host', host, '--flavor', flavor, '--prefix', prefix,
                  timeout=600)['servers']


def _flavor(conn, made, name, vcpus=1, ram=64, **extra_specs):
    flavor = conn.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=1)
    conn.compute.create_flavor_extra_specs(flavor, extra_specs)
    made['flavors'].append(flavor)
    return flavor


def _process_tree(pid):
    """pid and all its descendants (from /proc), parents first."""
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/%s/stat' % entry) as f:
                    parent = int(f.read().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def _kill_tree(pid):
    """SIGKILL a process and every descendant, as a crash of the machine running ansible would. Ansible's worker
    processes call setsid(), so killing ansible-playbook's process group leaves the module running."""
    tree = _process_tree(pid)
    for member in tree:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return tree


def _records(run):
    return dict((r['name'], r) for r in run['instances'])


def _assert_moved_once(conn, servers, status='ACTIVE'):
    """Each server is in `status` on another host, unlocked, with exactly one evacuation migration (done)."""
    migrations = _migrations_by_instance(conn)
    for server in servers:
        now = _server(conn, server['id'])
        assert now['host'] != HOST and now['status'] == status and now['task_state'] is None, now
        assert now['locked'] is False, now
        mine = migrations.get(server['id'], [])
        assert [m['status'] for m in mine] in (['done'], ['completed']), (server['name'], mine)
        assert mine[0]['dest_compute'] == now['host']


def test_policy_priority_shutoff_error_check_apply_check_rerun(evacuation_lab, fresh_lab, conn):
    lab = fresh_lab
    _flavor(conn, evacuation_lab, NEVER_FLAVOR, evacuable='false')
    _flavor(conn, evacuation_lab, FIRST_FLAVOR, evacuation_priority='10')
    plain = _boot('plain', count=2)
    first = _boot('first', flavor=FIRST_FLAVOR)[0]
    never = _boot('never', flavor=NEVER_FLAVOR)[0]
    off = _boot('off')[0]
    broken = _boot('broken')[0]
    conn.compute.stop_server(off['id'])
    wait_for('%s SHUTOFF' % off['name'], lambda: _server(conn, off['id'])['status'] == 'SHUTOFF', 60)
    conn.compute.reset_server_state(broken['id'], 'error')
    assert _server(conn, broken['id'])['status'] == 'ERROR'
    everyone = plain + [first, never, off, broken]

    # the host is up: refused, naming it, and nothing moves
    refused = run_module(lab, 'nova_evacuate', host=HOST)
    assert refused.failed, refused
    assert refused['msg'].startswith('refusing to evacuate %s: its nova-compute service is up and not forced '
                                     'down' % HOST), refused['msg']
    assert refused['instances'] == [] and evacuation_migrations(conn, HOST) == []

    _crash_and_force_down(lab)

    check = run_module(lab, 'nova_evacuate', check=True, diff=True, host=HOST)
    assert not check.failed, check
    assert check['changed'] is True
    records = _records(check)
    second = [s['id'] for s in sorted(plain + [off], key=lambda s: (s['name'], s['id']))]
    assert check['groups'] == [dict(priority=10, instances=[first['id']]), dict(priority=0, instances=second)]
    for server in plain + [first, off]:
        assert records[server['name']]['outcome'] == 'planned'
        assert set(records[server['name']]['candidates']) == {'compute2', 'compute3'}
    assert records[off['name']]['target_status'] == 'SHUTOFF'
    assert records[never['name']]['outcome'] == 'skipped'
    assert records[never['name']]['reason'] == 'not evacuable: its flavor says evacuable is not true'
    assert records[broken['name']]['reason'] == 'in ERROR and include_error is false'
    assert check['capacity']['sufficient'] is True and check['capacity']['unplaced'] == []
    assert check['totals']['planned'] == 4 and check['totals']['skipped'] == 2
    assert '--- before' in check.output and '+++ after' in check.output
    # nothing changed in Nova
    assert evacuation_migrations(conn, HOST) == []
    assert all(_server(conn, s['id'])['host'] == HOST and not _server(conn, s['id'])['locked'] for s in everyone)

    apply = run_module(lab, 'nova_evacuate', host=HOST)
    assert not apply.failed, apply
    assert apply['changed'] is True
    print('\nnova_evacuate apply: %.1f s (module %.1f s), totals %s'
          % (apply.seconds, apply['totals']['seconds'], json.dumps(apply['totals'])))
    records = _records(apply)
    assert apply['totals']['moved'] == 4 and apply['totals']['evacuations'] == 4
    assert apply['totals']['failed'] == 0 and apply['totals']['skipped'] == 2
    _assert_moved_once(conn, plain + [first])
    _assert_moved_once(conn, [off], status='SHUTOFF')
    assert records[off['name']]['status_after'] == 'SHUTOFF' and records[off['name']]['power_action'] is None
    for server in plain + [first, off]:
        assert records[server['name']]['to'] == _server(conn, server['id'])['host']
        assert records[server['name']]['lock'] == 'this run'
    for server, status in ((never, 'ACTIVE'), (broken, 'ERROR')):
        assert _server(conn, server['id'])['host'] == HOST and _server(conn, server['id'])['status'] == status
    # the priority group ended before the next one began
    migrations = _migrations_by_instance(conn)
    first_done = migrations[first['id']][0]['updated_at']
    assert all(migrations[s['id']][0]['created_at'] >= first_done for s in plain + [off])

    for check_mode in (True, False):
        again = run_module(lab, 'nova_evacuate', check=check_mode, host=HOST)
        assert not again.failed, again
        assert again['changed'] is False, again
        assert sorted(r['name'] for r in again['instances']) == sorted([never['name'], broken['name']])
        assert again['totals']['selected'] == 0
    assert len(evacuation_migrations(conn, HOST)) == 4

    # the server in ERROR moves only with include_error, and comes up ACTIVE
    with_error = run_module(lab, 'nova_evacuate', host=HOST, include_error=True)
    assert not with_error.failed, with_error
    assert with_error['changed'] is True
    assert _records(with_error)[broken['name']]['outcome'] == 'moved'
    _assert_moved_once(conn, [broken])
    assert _server(conn, never['id'])['host'] == HOST
    for check_mode in (True, False):
        again = run_module(lab, 'nova_evacuate', check=check_mode, host=HOST, include_error=True)
        assert again['changed'] is False and not again.failed, again


def test_twenty_servers_with_concurrency(evacuation_lab, fresh_lab, conn):
    lab = fresh_lab
    servers = _boot('many', count=20)
    _crash_and_force_down(lab)
    started = time.monotonic()
    run = run_module(lab, 'nova_evacuate', host=HOST, concurrency=20)
    seconds = time.monotonic() - started
    assert not run.failed, run
    totals = run['totals']
    figures = (totals['last_evacuation_after'], totals['seconds'], seconds)
    print('\n20 evacuations (concurrency 20): last evacuation request answered after %.1f s, all in their target '
          'state after %.1f s (module), %.1f s with ansible' % figures)
    assert totals['moved'] == 20 and totals['evacuations'] == 20 and totals['failed'] == 0
    _assert_moved_once(conn, servers)
    assert max(r['seconds'] for r in run['instances']) <= totals['seconds']
    again = run_module(lab, 'nova_evacuate', host=HOST)
    assert again['changed'] is False and again['instances'] == [], again


def test_retry_on_another_host_and_microversion_2_95(evacuation_lab, fresh_lab, conn):
    """compute2 holds a member of an anti-affinity group; the other member, evacuated to compute2 first, is refused
    by Nova's scheduler (migration 'error', server in ERROR on compute1) and retried on compute3. With compute API
    2.95 pinned, Nova lands the ACTIVE servers stopped: the module starts them; the SHUTOFF one stays SHUTOFF."""
    lab = fresh_lab
    group = conn.compute.create_server_group(name=GROUP, policy='anti-affinity')
    evacuation_lab['groups'].append(group)
    image = conn.image.find_image('ohlab-image', ignore_missing=False)
    tiny = conn.compute.find_flavor('ohlab.tiny', ignore_missing=False)
    members = []
    for name, host in (('anti-a', 'compute2'), ('anti-b', HOST)):
        server = conn.compute.create_server(name=name, flavor_id=tiny.id, image_id=image.id, networks='none',
                                            availability_zone='nova:%s' % host, scheduler_hints={'group': group.id})
        members.append(conn.compute.wait_for_server(server, status='ACTIVE', failures=['ERROR'], interval=0.5,
                                                    wait=120))
    on = _boot('on')[0]
    off = _boot('off')[0]
    conn.compute.stop_server(off['id'])
    wait_for('%s SHUTOFF' % off['name'], lambda: _server(conn, off['id'])['status'] == 'SHUTOFF', 60)
    _crash_and_force_down(lab)

    options = dict(host=HOST, target_hosts=['compute2', 'compute3'], target_spread=False, compute_microversion='2.95')
    check = run_module(lab, 'nova_evacuate', check=True, **options)
    assert check['changed'] is True and not check.failed, check
    assert all(r['candidates'] == ['compute2', 'compute3'] for r in check['instances'])
    run = run_module(lab, 'nova_evacuate', **options)
    assert not run.failed, run
    assert run['microversion'] == '2.95'
    records = _records(run)
    anti_b = records['anti-b']
    assert anti_b['attempts'] == 2, anti_b
    assert [h['target'] for h in anti_b['history']] == ['compute2', 'compute3']
    assert anti_b['history'][0]['migration_status'] == 'error'
    assert anti_b['history'][0]['error'].startswith('the evacuation found no host (migration error')
    assert anti_b['to'] == 'compute3' and anti_b['status_after'] == 'ACTIVE'
    assert records[on['name']]['power_action'] == 'start' and records[on['name']]['to'] == 'compute2'
    assert records[off['name']]['power_action'] is None and records[off['name']]['status_after'] == 'SHUTOFF'
    # Nova: anti-b has two evacuation migrations (the refused one, then the one that moved it), the others one
    migrations = _migrations_by_instance(conn)
    assert [m['status'] for m in migrations[members[1].id]] == ['done', 'error']
    now = _server(conn, members[1].id)
    assert (now['host'], now['status'], now['locked']) == ('compute3', 'ACTIVE', False)
    _assert_moved_once(conn, [on])
    _assert_moved_once(conn, [off], status='SHUTOFF')
    for check_mode in (True, False):
        again = run_module(lab, 'nova_evacuate', check=check_mode, **options)
        assert again['changed'] is False and not again.failed, again


def test_killed_mid_evacuation_then_rerun_moves_every_server_exactly_once(evacuation_lab, fresh_lab, conn,
                                                                          tmp_path):
    lab = fresh_lab
    servers = _boot('killed', count=12)
    _crash_and_force_down(lab)
    playbook = tmp_path / 'evacuate.yml'
    playbook.write_text(json.dumps([dict(hosts='localhost', gather_facts=False, tasks=[dict(
        name='Evacuate', **{'openstack_ha.recovery.nova_evacuate': dict(cloud=lab['cloud'], host=HOST,
                                                                        concurrency=3)})])]))
    log = open(str(tmp_path / 'ansible.log'), 'w')
    proc = subprocess.Popen([os.path.join(BIN, 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
                             str(playbook)], env=ansible_env(lab), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        # kill ansible-playbook, its worker and the module once some evacuations are done and others still moving
        def some_done():
            if proc.poll() is not None:
                return 'ansible-playbook ended first'
            statuses = [m['status'] for m in evacuation_migrations(conn, HOST)]
            moving = [status for status in statuses if status not in FINAL_MIGRATION_STATES]
            return len(statuses) >= 4 and 'done' in statuses and moving and 'killed'
        assert wait_for('some evacuations done and others under way', some_done, 180, interval=0.1) == 'killed'
    finally:
        killed = _kill_tree(proc.pid)
        proc.wait(30)
        log.close()
    wait_for('every process of the run gone', lambda: not [p for p in killed[1:] if process_alive(p)], 10)
    assert len(killed) >= 3, 'expected ansible-playbook, its worker and the module, killed %s' % killed
    # Nova goes on with the evacuations the killed run started: the rerun starts at once, while they are moving
    at_kill = evacuation_migrations(conn, HOST)
    states = [_server(conn, s['id']) for s in servers]
    print('\nkilled with %d evacuation migrations (%s); %d servers locked, %d with a task'
          % (len(at_kill), ', '.join(sorted(m['status'] for m in at_kill)), len([s for s in states if s['locked']]),
             len([s for s in states if s['task_state']])))
    assert 0 < len(at_kill) < 12
    assert any(s['locked'] for s in states), 'the kill came after every lock was released: nothing to resume'

    rerun = run_module(lab, 'nova_evacuate', host=HOST, concurrency=3)
    assert not rerun.failed, rerun
    totals = rerun['totals']
    print('rerun: %s; records (action, lock, reason): %s' % (json.dumps(totals), json.dumps(sorted(
        (r['action'], r['lock'], (r['reason'] or '')[:40]) for r in rerun['instances']))))
    assert totals['resumed'] >= 1 and totals['failed'] == 0
    evacuated = [r for r in rerun['instances'] if r['action'] == 'evacuate']
    assert totals['evacuations'] == len(evacuated) and all(r['attempts'] == 1 for r in evacuated)
    assert all(r['attempts'] == 0 for r in rerun['instances'] if r['action'] == 'wait')
    assert totals['moved'] == len(rerun['instances'])
    # the invariant: every server moved by exactly one evacuation, none left locked
    _assert_moved_once(conn, servers)
    for check_mode in (True, False):
        again = run_module(lab, 'nova_evacuate', check=check_mode, host=HOST)
        assert again['changed'] is False and again['instances'] == [] and not again.failed, again


def test_capacity_shortfall_fails_before_moving_or_moves_by_priority(evacuation_lab, fresh_lab, conn):
    """compute2 and compute3 are made small enough to hold one ohlab.small each (labctl resize); compute1 has three,
    of priorities 10, 5 and 0. capacity_policy=fail refuses before anything moves, naming the one that would not
    fit; the default (partial) moves the two of highest priority and leaves the third on compute1, untouched."""
    lab = fresh_lab
    with ThreadPoolExecutor(2) as pool:  # each restarts its compute (~10-40 s): side by side
        list(pool.map(lambda host: labctl('resize', host, '--vcpus', '2', '--memory-mb', '1024', timeout=300),
                      ('compute2', 'compute3')))
    for host in ('compute2', 'compute3'):
        assert placement_free(conn, host)['memory_mb'] == 512  # 1024 less the 512 Nova reserves for the host
    _flavor(conn, evacuation_lab, GOLD_FLAVOR, vcpus=2, ram=512, evacuation_priority='10')
    _flavor(conn, evacuation_lab, SILVER_FLAVOR, vcpus=2, ram=512, evacuation_priority='5')
    gold = _boot('gold', flavor=GOLD_FLAVOR)[0]
    silver = _boot('silver', flavor=SILVER_FLAVOR)[0]
    bronze = _boot('bronze', flavor='ohlab.small')[0]
    _crash_and_force_down(lab)

    # fail: refused before anything moves, in check mode as in a real run, naming the instance that would not fit
    for check_mode in (True, False):
        refused = run_module(lab, 'nova_evacuate', check=check_mode, host=HOST, capacity_policy='fail')
        assert refused.failed, refused
        assert refused['msg'].startswith('refusing to evacuate %s: 1 of 3 instance(s) to move would not fit on the '
                                         "scheduler's hosts (compute2, compute3): %s (%s, priority 0) needs vcpus=2, "
                                         'memory_mb=512, disk_gb=1' % (HOST, bronze['name'], bronze['id'])), refused
        assert 'Nothing was moved (capacity_policy=fail)' in refused['msg']
        assert [u['id'] for u in refused['capacity']['unplaced']] == [bronze['id']]
        assert refused['changed'] is False
    assert evacuation_migrations(conn, HOST) == []
    assert all(_server(conn, s['id'])['host'] == HOST and not _server(conn, s['id'])['locked']
               for s in (gold, silver, bronze))

    # partial (the default): check mode plans the two that fit and names the third, without failing
    check = run_module(lab, 'nova_evacuate', check=True, host=HOST)
    assert not check.failed and check['changed'] is True, check
    records = _records(check)
    assert [records[s['name']]['outcome'] for s in (gold, silver, bronze)] == ['planned', 'planned', 'failed']
    assert records[bronze['name']]['reason'].startswith('no capacity: it needs vcpus=2, memory_mb=512, disk_gb=1')
    assert check['groups'] == [dict(priority=10, instances=[gold['id']]), dict(priority=5, instances=[silver['id']])]
    assert evacuation_migrations(conn, HOST) == []

    apply = run_module(lab, 'nova_evacuate', host=HOST)
    assert apply.failed and apply['changed'] is True, apply
    assert apply['msg'].startswith('evacuation of %s incomplete: 1 of 3 selected instance(s) did not reach their '
                                   'target state on another host - %s (%s): no capacity: '
                                   % (HOST, bronze['name'], bronze['id'])), apply['msg']
    records = _records(apply)
    assert [records[s['name']]['outcome'] for s in (gold, silver, bronze)] == ['moved', 'moved', 'failed']
    _assert_moved_once(conn, [gold, silver])
    assert {_server(conn, gold['id'])['host'], _server(conn, silver['id'])['host']} == {'compute2', 'compute3'}
    now = _server(conn, bronze['id'])
    assert (now['host'], now['status'], now['locked']) == (HOST, 'ACTIVE', False), now
    assert bronze['id'] not in _migrations_by_instance(conn)
    assert records[bronze['name']]['attempts'] == 0 and apply['totals']['evacuations'] == 2

    # a rerun has nothing more to move and still names what does not fit
    again = run_module(lab, 'nova_evacuate', check=True, host=HOST)
    assert again['changed'] is False, again
    assert [(r['name'], r['outcome']) for r in again['instances']] == [(bronze['name'], 'failed')]


def test_reserved_host_is_enabled_on_demand_and_left_alone_by_the_scheduler(evacuation_lab, fresh_lab, conn):
    """compute3 is a spare, disabled with the reason 'reserved'. An evacuation with the scheduler (the default) leaves
    it alone; target_order=reserved sends the instance there, enabling compute3 only then, and reports it used."""
    lab = fresh_lab
    spare = 'compute3'
    first, second = _boot('spare', count=2)
    reserve = run_module(lab, 'nova_service', host=spare, enabled=False, disabled_reason='reserved')
    assert reserve['changed'] is True and not reserve.failed, reserve
    _crash_and_force_down(lab)
    reserved = dict(enabled=False, forced_down=False, disabled_reason='reserved', state='up')

    by_scheduler = run_module(lab, 'nova_evacuate', host=HOST, exclude=[second['id']])
    assert not by_scheduler.failed, by_scheduler
    assert by_scheduler['reserved_hosts_used'] == []
    assert dict(host=spare, reason='disabled', disabled_reason='reserved') in by_scheduler['capacity']['excluded_hosts']
    _assert_moved_once(conn, [first])
    assert _server(conn, first['id'])['host'] == 'compute2'
    assert service_settings(conn, spare) == reserved

    options = dict(host=HOST, target_order='reserved')
    check = run_module(lab, 'nova_evacuate', check=True, diff=True, **options)
    assert not check.failed and check['changed'] is True, check
    assert check['reserved_hosts_used'] == [dict(host=spare, disabled_reason='reserved', action='would enable',
                                                 instances=[second['id']])]
    assert _records(check)[second['name']]['target_pool'] == 'reserved'
    assert [(h['host'], h['pool']) for h in check['capacity']['hosts']] == [(spare, 'reserved')]
    assert service_settings(conn, spare) == reserved and 'COMPUTE_STATUS_DISABLED' in provider_traits(conn, spare)
    assert _server(conn, second['id'])['host'] == HOST

    apply = run_module(lab, 'nova_evacuate', **options)
    assert not apply.failed and apply['changed'] is True, apply
    assert apply['reserved_hosts_used'] == [dict(host=spare, disabled_reason='reserved', action='enabled',
                                                 instances=[second['id']])]
    record = _records(apply)[second['name']]
    assert record['to'] == spare and [h['target'] for h in record['history']] == [spare], record
    _assert_moved_once(conn, [second])
    assert _server(conn, second['id'])['host'] == spare
    assert service_settings(conn, spare) == dict(enabled=True, forced_down=False, disabled_reason=None, state='up')
    assert 'COMPUTE_STATUS_DISABLED' not in provider_traits(conn, spare)

    for check_mode in (True, False):
        again = run_module(lab, 'nova_evacuate', check=check_mode, **options)
        assert not again.failed and again['changed'] is False, again
        assert again['instances'] == [] and again['reserved_hosts_used'] == []

