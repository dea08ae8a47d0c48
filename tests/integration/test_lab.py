"""The lab is real: Nova sees what the BMCs do, evacuation works, a crashed compute comes back.

These tests are the foundation's acceptance tests. Each asserts on what Nova, the BMC (over real IPMI with
Debian's ipmitool) and the operating system report, not on labctl's own answers alone.
"""

import json
import os

from lab_helpers import (compute_service, evacuation_migrations, ipmitool, labctl, process_alive,
                      wait_for)

# Microversion 2.95 and later land evacuated servers STOPPED; 2.94 keeps them running.
EVACUATE_MICROVERSION = '2.94'


def compute_pid(lab, host):
    with open(os.path.join(lab['hosts'][host]['state_dir'], 'compute.pid')) as f:
        return int(f.read().strip())


def service_state(conn, host):
    return compute_service(conn, host).state


def test_status_reports_every_host(fresh_lab):
    status = labctl('status')
    assert set(status['services'].values()) == {'running'}
    assert set(status['hosts']) == set(fresh_lab['hosts'])
    for host, state in status['hosts'].items():
        assert state['nova_state'] == 'up', host
        assert state['bmc_power'] == 'on', host
        assert state['compute'] == 'alive', host
        assert state['forced_down'] is False and state['disabled'] is False, host


def test_crashed_host_evacuated_then_cleaned_up_after_power_on(fresh_lab, conn):
    source = 'compute1'
    booted = labctl('boot', '--count', '2', '--host', source)['servers']
    booted += labctl('boot', '--count', '1', '--host', source, '--port')['servers']
    assert {s['host'] for s in booted} == {source}
    ids = {s['id'] for s in booted}

    labctl('crash', source)
    assert ipmitool(fresh_lab['hosts'][source], 'power', 'status').strip() == 'Chassis Power is on', \
        'a crashed host keeps chassis power, like a kernel panic'

    svc = compute_service(conn, source)
    conn.compute.update_service_forced_down(svc, source, 'nova-compute', True)
    assert compute_service(conn, source).state == 'down'

    for server_id in ids:
        resp = conn.compute.post('/servers/%s/action' % server_id, json={'evacuate': {}},
                                 microversion=EVACUATE_MICROVERSION)
        assert resp.status_code == 200, resp.text

    def all_moved():
        servers = [conn.compute.get_server(i) for i in ids]
        return all(s.status == 'ACTIVE' and s.task_state is None and s.compute_host != source
                   for s in servers)
    wait_for('evacuated servers ACTIVE on other hosts', all_moved, 120)

    migrations = [m for m in evacuation_migrations(conn, source) if m['instance_uuid'] in ids]
    assert len(migrations) == len(ids)
    assert {m['status'] for m in migrations} == {'done'}
    assert all(m['dest_compute'] != source for m in migrations)

    # the server booted with a port: Neutron re-bound the port to the server's new host
    ports = [p for p in conn.network.ports() if p.device_id in ids]
    assert len(ports) == 1
    assert ports[0].binding_host_id == conn.compute.get_server(ports[0].device_id).compute_host != source
    assert ports[0].status == 'ACTIVE'

    # Power the host back on through its BMC (off first: power is still on after the crash).
    bmc = fresh_lab['hosts'][source]
    ipmitool(bmc, 'power', 'off')
    ipmitool(bmc, 'power', 'on')
    wait_for('evacuation migrations completed by the restarted compute',
             lambda: {m['status'] for m in evacuation_migrations(conn, source) if m['instance_uuid'] in ids}
             == {'completed'}, 90)
    conn.compute.update_service_forced_down(compute_service(conn, source), source, 'nova-compute', False)
    wait_for('%s up again' % source, lambda: service_state(conn, source) == 'up', 60)


def test_ipmi_power_off_kills_compute_and_power_on_restores_it(fresh_lab, conn):
    host = 'compute2'
    bmc = fresh_lab['hosts'][host]
    pid = compute_pid(fresh_lab, host)
    assert process_alive(pid)

    ipmitool(bmc, 'power', 'off')
    wait_for('compute process of %s to die' % host, lambda: not process_alive(pid), 10)
    assert ipmitool(bmc, 'power', 'status').strip() == 'Chassis Power is off'
    down_after = fresh_lab['service_down_time'] + 3 * fresh_lab['report_interval'] + 5
    wait_for('Nova to report %s down' % host, lambda: service_state(conn, host) == 'down', down_after)

    ipmitool(bmc, 'power', 'on')
    wait_for('Nova to report %s up' % host, lambda: service_state(conn, host) == 'up', 60)
    new_pid = compute_pid(fresh_lab, host)
    assert new_pid != pid and process_alive(new_pid)
    assert ipmitool(bmc, 'power', 'status').strip() == 'Chassis Power is on'


def test_frozen_host_reported_down_while_its_process_lives(fresh_lab, conn):
    host = 'compute3'
    pid = compute_pid(fresh_lab, host)
    labctl('freeze', host)
    try:
        down_after = fresh_lab['service_down_time'] + 3 * fresh_lab['report_interval'] + 5
        wait_for('Nova to report frozen %s down' % host, lambda: service_state(conn, host) == 'down', down_after)
        assert process_alive(pid), 'a frozen host is alive: this is the split-brain case'
        with open('/proc/%d/stat' % pid) as f:
            assert f.read().rsplit(')', 1)[1].split()[0] == 'T'
        assert ipmitool(fresh_lab['hosts'][host], 'power', 'status').strip() == 'Chassis Power is on'
        assert labctl('status')['hosts'][host]['compute'] == 'frozen'
    finally:
        labctl('thaw', host)
    wait_for('thawed %s up again' % host, lambda: service_state(conn, host) == 'up', 60)
    assert compute_pid(fresh_lab, host) == pid


def test_bmc_fail_modes_are_switchable_and_reset_clears_them(fresh_lab):
    host = 'compute2'
    bmc = fresh_lab['hosts'][host]
    labctl('bmc', host, '--fail', 'bad_credentials')
    out = ipmitool(bmc, 'power', 'status', check=False, timeout=30)
    assert 'Chassis Power' not in out
    assert labctl('status')['hosts'][host]['bmc_fail_mode'] == 'bad_credentials'
    labctl('bmc', host, '--ok')
    assert ipmitool(bmc, 'power', 'status').strip() == 'Chassis Power is on'

    labctl('bmc', host, '--fail', 'unreachable')
    labctl('reset')
    assert labctl('status')['hosts'][host]['bmc_fail_mode'] is None
    assert ipmitool(bmc, 'power', 'status').strip() == 'Chassis Power is on'


def test_labctl_rejects_unknown_host_naming_it(lab):
    proc = labctl('crash', 'no-such-host', check=False)
    assert proc.returncode == 1
    assert "unknown host 'no-such-host'" in proc.stderr
    assert 'compute1' in proc.stderr


def test_env_gives_working_cloud_and_inventory(lab, conn):
    assert os.path.exists(lab['clouds_yaml'])
    assert os.stat(lab['clouds_yaml']).st_mode & 0o077 == 0, 'clouds.yaml holds a password: mode 600'
    with open(lab['inventory']) as f:
        inventory = json.load(f)
    hosts = inventory['all']['children']['compute_hosts']['hosts']
    assert set(hosts) == set(lab['hosts'])
    assert {h.name for h in conn.compute.hypervisors()} >= set(lab['hosts'])
