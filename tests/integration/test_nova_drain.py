"""nova_drain against the real lab, run through the ansible CLI; every outcome read back from Nova and Neutron.

check mode (changed, Nova unchanged) -> apply (changed, host empty and disabled) -> check rerun (not changed) ->
rerun (not changed).
"""

import time

from helpers_nova import run_module, service_settings
from lab_helpers import labctl, wait_for

HOST = 'compute1'
REASON = 'maintenance by the nova_drain integration test'
# Each module run is bounded by run_module's own 300 s; each instance by the module's timeout (generous: on a
# loaded 2-core machine the same drain took 33 s idle and 140 s next to a sanity run).
OPTIONS = dict(host=HOST, disabled_reason=REASON, concurrency=5, timeout=240)


def servers_by_id(conn, ids):
    return dict((server.id, server) for server in conn.compute.servers(all_projects=True) if server.id in ids)


def test_drain_ten_servers_live_and_cold(fresh_lab, conn):
    booted = labctl('boot', '--count', '8', '--host', HOST, '--prefix', 'drain', timeout=300)['servers']
    booted += labctl('boot', '--count', '2', '--host', HOST, '--prefix', 'drainport', '--port', timeout=300)['servers']
    ids = set(server['id'] for server in booted)
    assert len(ids) == 10 and all(server['host'] == HOST for server in booted)
    stopped = booted[0]['id']
    conn.compute.stop_server(stopped)
    wait_for('server %s SHUTOFF' % stopped, lambda: conn.compute.get_server(stopped).status == 'SHUTOFF', 60)
    port_servers = set(server['id'] for server in booted if server['name'].startswith('drainport'))
    ports = [port for port in conn.network.ports() if port.device_id in port_servers]
    assert len(ports) == 2 and all(port.binding_host_id == HOST for port in ports)
    enabled = dict(enabled=True, forced_down=False, disabled_reason=None, state='up')
    assert service_settings(conn, HOST) == enabled

    # check mode: the plan, read from Nova; nothing disabled, nothing moved
    check = run_module(fresh_lab, 'nova_drain', check=True, diff=True, **OPTIONS)
    assert not check.failed, check
    assert check['changed'] is True and check['service_changed'] is True
    assert check['totals']['would_move'] == 10 and check['totals']['live'] == 9 and check['totals']['cold'] == 1
    methods = dict((r['id'], r['method']) for r in check['instances'])
    assert methods[stopped] == 'cold' and set(m for i, m in methods.items() if i != stopped) == {'live'}
    assert sorted(check['candidate_hosts']) == ['compute2', 'compute3']
    assert service_settings(conn, HOST) == enabled, 'check mode changed the service'
    assert set(s.compute_host for s in servers_by_id(conn, ids).values()) == {HOST}, 'check mode moved servers'

    # apply
    apply = run_module(fresh_lab, 'nova_drain', **OPTIONS)
    print('\nnova_drain of 10 servers (9 live, 1 cold, concurrency 5): %.1f s (module run %.1f s)'
          % (apply['totals']['seconds'], apply.seconds))
    for record in apply['instances']:
        print('  %-32s %-4s %-8s -> %-8s %5.1f s %s' % (record['name'], record['method'], record['status_before'],
                                                      record['to'], record['seconds'], record['reason'] or ''))
    assert not apply.failed, apply
    assert apply['changed'] is True and apply['totals']['moved'] == 10
    assert apply['totals']['live'] == 9 and apply['totals']['cold'] == 1
    assert service_settings(conn, HOST) == dict(enabled=False, forced_down=False, disabled_reason=REASON, state='up')
    # compute_host, not host: openstacksdk silently drops an unknown host= filter (that assertion could not fail)
    assert [s.id for s in conn.compute.servers(all_projects=True, compute_host=HOST)] == []
    now = servers_by_id(conn, ids)
    assert len(now) == 10
    for record in apply['instances']:
        server = now[record['id']]
        assert server.compute_host not in (None, HOST) and server.compute_host == record['to'], record
        assert server.status == ('SHUTOFF' if server.id == stopped else 'ACTIVE'), record
        assert server.task_state is None and record['outcome'] == 'moved'
        assert record['method'] == ('cold' if server.id == stopped else 'live'), record
    for port in ports:
        rebound = conn.network.get_port(port.id)
        assert rebound.binding_host_id == now[port.device_id].compute_host != HOST

    # the reruns change nothing
    for check_mode in (True, False):
        started = time.monotonic()
        again = run_module(fresh_lab, 'nova_drain', check=check_mode, **OPTIONS)
        assert not again.failed, again
        assert again['changed'] is False and again['instances'] == [], again
        assert time.monotonic() - started < 60
    assert service_settings(conn, HOST)['disabled_reason'] == REASON
    assert set(s.compute_host for s in servers_by_id(conn, ids).values()) <= {'compute2', 'compute3'}


def live_migrations(conn, server_id, migration_type='live-migration'):
    response = conn.compute.get('/os-migrations?instance_uuid=%s&migration_type=%s' % (server_id, migration_type),
                                microversion='2.59')
    response.raise_for_status()
    return response.json()['migrations']


def test_failing_live_migration_falls_back_to_cold_migration_only_when_allowed(fresh_lab, conn):
    """compute1's live migrations fail the way libvirt's do when the migration job fails (labctl live-migration
    --fail abort: Nova rolls back, migration 'failed', instance ACTIVE on the source). Without the fallback the drain
    reports them failed and they stay; with it, they move by cold migration, confirmed."""
    booted = labctl('boot', '--count', '2', '--host', HOST, '--prefix', 'nolive', timeout=300)['servers']
    ids = set(server['id'] for server in booted)
    labctl('live-migration', HOST, '--fail', 'abort')

    strict = run_module(fresh_lab, 'nova_drain', cold_migration_fallback=False, **OPTIONS)
    assert strict.failed and strict['changed'] is True, strict
    assert strict['msg'].startswith('drain of %s incomplete: 2 of 2 instance(s) are still on it' % HOST), strict
    for record in strict['instances']:
        assert record['outcome'] == 'failed' and record['method'] == 'live', record
        assert record['reason'].startswith('live migration to ') and "ended 'failed'" in record['reason'], record
    for server in servers_by_id(conn, ids).values():
        assert (server.compute_host, server.status, server.task_state) == (HOST, 'ACTIVE', None)
        assert [m['status'] for m in live_migrations(conn, server.id)] == ['failed']

    fallback = run_module(fresh_lab, 'nova_drain', cold_migration_fallback=True, **OPTIONS)
    assert not fallback.failed and fallback['changed'] is True, fallback
    assert fallback['totals']['moved'] == 2 and fallback['totals']['cold'] == 2 and fallback['totals']['live'] == 0
    now = servers_by_id(conn, ids)
    for record in fallback['instances']:
        assert record['method'] == 'cold' and record['outcome'] == 'moved', record
        assert record['reason'].startswith('live migration failed (live migration to '), record
        server = now[record['id']]
        assert server.compute_host == record['to'] != HOST and server.status == 'ACTIVE' and server.task_state is None
        assert [m['status'] for m in live_migrations(conn, server.id)] == ['failed', 'failed']
        assert [m['status'] for m in live_migrations(conn, server.id, 'migration')] == ['confirmed']
    # compute_host, not host: openstacksdk silently drops an unknown host= filter (that assertion could not fail)
    assert [s.id for s in conn.compute.servers(all_projects=True, compute_host=HOST)] == []
    assert service_settings(conn, HOST)['disabled_reason'] == REASON
