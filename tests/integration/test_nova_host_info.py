"""nova_host_info against the real lab, run through the ansible CLI; every figure checked against Nova and
Placement read independently (openstacksdk resources, resource providers found by name)."""

import json

import pytest

from helpers_nova import placement_free, run_module, run_playbook, service_settings
from lab_helpers import labctl, wait_for

EVACUABLE_FLAVOR = 'ohlab-it.evacuable'
AGGREGATE = 'ohlab-it-rack'
GROUP = 'ohlab-it-group'
LOCK_REASON = 'held by the nova_host_info integration test'


@pytest.fixture
def nova_objects(fresh_lab, conn):
    """Flavor, aggregate and server group this module's tests create, removed again (before fresh_lab's reset)."""
    # what an interrupted run may have left
    for aggregate in conn.compute.aggregates():
        if aggregate.name == AGGREGATE:
            _delete_aggregate(conn, aggregate)
    for group in conn.compute.server_groups(all_projects=True):
        if group.name == GROUP:
            conn.compute.delete_server_group(group)
    flavor = conn.compute.find_flavor(EVACUABLE_FLAVOR)
    if flavor:
        conn.compute.delete_flavor(flavor)
    made = dict(groups=[])
    yield made  # the servers are fresh_lab's to delete
    for group in made['groups']:
        conn.compute.delete_server_group(group, ignore_missing=True)
    if made.get('aggregate'):
        _delete_aggregate(conn, conn.compute.get_aggregate(made['aggregate'].id))
    if made.get('flavor'):
        conn.compute.delete_flavor(made['flavor'], ignore_missing=True)


def _delete_aggregate(conn, aggregate):
    for host in aggregate.hosts or []:
        conn.compute.remove_host_from_aggregate(aggregate, host)
    conn.compute.delete_aggregate(aggregate)


def test_host_with_servers_of_two_flavors_policy_and_capacity(fresh_lab, nova_objects, conn):
    lab = fresh_lab
    host = 'compute1'
    flavor = conn.compute.create_flavor(name=EVACUABLE_FLAVOR, vcpus=2, ram=256, disk=2, ephemeral=1, swap=1536)
    nova_objects['flavor'] = flavor
    conn.compute.create_flavor_extra_specs(flavor, {'evacuable': 'true'})
    aggregate = conn.compute.create_aggregate(name=AGGREGATE)
    nova_objects['aggregate'] = aggregate
    for member in ('compute1', 'compute2'):
        conn.compute.add_host_to_aggregate(aggregate, member)
    conn.compute.set_aggregate_metadata(aggregate, {'evacuable': 'false', 'rack': 'r1'})
    group = conn.compute.create_server_group(name=GROUP, policy='soft-affinity')
    nova_objects['groups'].append(group)

    tiny = labctl('boot', '--count', '2', '--host', host)['servers']
    marked = labctl('boot', '--count', '1', '--host', host, '--flavor', EVACUABLE_FLAVOR)['servers']
    labctl('boot', '--count', '1', '--host', 'compute2', '--flavor', 'ohlab.small')  # usage on the other host
    image = conn.image.find_image('ohlab-image', ignore_missing=False)
    in_group = conn.compute.create_server(name='ohlab-it-grouped', flavor_id=conn.compute.find_flavor('ohlab.tiny').id,
                                          image_id=image.id, networks='none', availability_zone='nova:%s' % host,
                                          scheduler_hints={'group': group.id})
    in_group = conn.compute.wait_for_server(in_group, status='ACTIVE', failures=['ERROR'], interval=0.5, wait=120)
    conn.compute.lock_server(tiny[0]['id'], locked_reason=LOCK_REASON)
    # compute3 (same zone, outside the aggregate) disabled: listed as excluded, not counted
    disabled = run_module(lab, 'nova_service', host='compute3', enabled=False, disabled_reason='reserved')
    assert disabled['changed'] is True, disabled

    runs = [run_module(lab, 'nova_host_info', host=host, check=check_mode) for check_mode in (False, True)]
    for run in runs:
        assert not run.failed, run
        assert run['changed'] is False
    info = runs[0].result
    assert dict((k, v) for k, v in runs[1].result.items() if k not in ('service', 'instances')) == \
        dict((k, v) for k, v in info.items() if k not in ('service', 'instances'))

    # the instances: exactly Nova's list of the host, every project
    nova_servers = dict((s.id, s) for s in conn.compute.servers(all_projects=True, compute_host=host))
    instances = dict((i['id'], i) for i in info['instances'])
    assert set(instances) == set(nova_servers) == {tiny[0]['id'], tiny[1]['id'], marked[0]['id'], in_group.id}
    for server_id, instance in instances.items():
        server = nova_servers[server_id]
        assert (instance['name'], instance['status'], instance['vm_state'], instance['task_state']) == (
            server.name, server.status, server.vm_state, server.task_state)
        assert instance['image_id'] == image.id and instance['boot_from_volume'] is False
    assert instances[tiny[0]['id']]['locked'] is True
    assert instances[tiny[0]['id']]['locked_reason'] == LOCK_REASON
    assert instances[tiny[1]['id']]['locked'] is False
    assert instances[in_group.id]['server_groups'] == [dict(id=group.id, name=GROUP, policy='soft-affinity')]
    assert instances[tiny[1]['id']]['server_groups'] == []

    # the policy: the flavor's extra spec says yes, the aggregate's metadata says no to the others
    mine = instances[marked[0]['id']]
    assert mine['flavor'] == dict(name=EVACUABLE_FLAVOR, vcpus=2, ram=256, disk=2, ephemeral=1, swap=1536,
                                  extra_specs={'evacuable': 'true'})
    assert (mine['evacuable'], mine['evacuable_source']) == (True, 'flavor')
    for server_id in (tiny[0]['id'], tiny[1]['id'], in_group.id):
        assert instances[server_id]['flavor']['name'] == 'ohlab.tiny'
        assert (instances[server_id]['evacuable'], instances[server_id]['evacuable_source']) == (
            False, 'aggregate:%s' % AGGREGATE)

    # aggregates and zone
    assert [a['name'] for a in info['aggregates']] == [AGGREGATE]
    assert info['aggregates'][0]['hosts'] == ['compute1', 'compute2']
    assert info['aggregates'][0]['metadata'] == {'evacuable': 'false', 'rack': 'r1'}
    assert info['availability_zone'] == 'nova'
    assert info['service']['state'] == 'up' and info['service']['enabled'] is True
    assert 0 <= info['service']['heartbeat_age'] < lab['service_down_time']

    # capacity: flavors summed (swap 1.5 GiB counts 2 GiB of disk), free from Placement
    capacity = info['capacity']
    assert capacity['needed'] == dict(vcpus=3 * 1 + 2, memory_mb=3 * 64 + 256, disk_gb=3 * 1 + 2 + 1 + 2)
    assert capacity['needed_evacuable'] == dict(vcpus=2, memory_mb=256, disk_gb=5)
    assert capacity['hosts'] == [dict(host='compute2', free=placement_free(conn, 'compute2'))]
    assert capacity['free'] == placement_free(conn, 'compute2')
    assert capacity['excluded_hosts'] == [dict(host='compute3', reason='disabled', disabled_reason='reserved')]
    assert capacity['sufficient'] is True and capacity['shortfall'] == dict(vcpus=0, memory_mb=0, disk_gb=0)

    # the same host with the image and aggregate left out and nothing evacuable by default
    narrow = run_module(lab, 'nova_host_info', host=host, evacuable_sources=['flavor'], evacuable_default=False)
    assert sorted(i['id'] for i in narrow['instances'] if i['evacuable']) == [marked[0]['id']]
    assert set(i['evacuable_source'] for i in narrow['instances']) == {'flavor', 'default'}


def test_crashed_host_reads_down_with_an_old_heartbeat(fresh_lab, conn):
    labctl('crash', 'compute2')
    wait_for('compute2 down', lambda: service_settings(conn, 'compute2')['state'] == 'down',
             fresh_lab['service_down_time'] * 3)
    run = run_module(fresh_lab, 'nova_host_info', host='compute2')
    assert not run.failed, run
    service = run['service']
    assert (service['state'], service['forced_down'], service['enabled']) == ('down', False, True)
    assert service['heartbeat_age'] >= fresh_lab['service_down_time']
    # compute2 is down, not counted for compute1's capacity
    other = run_module(fresh_lab, 'nova_host_info', host='compute1')
    assert [h['host'] for h in other['capacity']['hosts']] == ['compute3']
    assert other['capacity']['excluded_hosts'] == [dict(host='compute2', reason='down', disabled_reason=None)]


def test_host_without_servers_gives_empty_lists_through_a_playbook(fresh_lab, tmp_path):
    """Run the way a playbook does: cloud set once for the openstack action group."""
    playbook = tmp_path / 'host_info.yml'
    out = tmp_path / 'result.json'
    playbook.write_text('''
- name: Read an empty host
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/openstack_ha.recovery.openstack:
      cloud: %s
  tasks:
    - name: Read compute3
      openstack_ha.recovery.nova_host_info:
        host: compute3
      register: empty

    - name: Hand the result to the test
      ansible.builtin.copy:
        content: "{{ empty | to_json }}"
        dest: %s
        mode: '0600'
      check_mode: false
''' % (fresh_lab['cloud'], out))
    for check_mode in (False, True):
        rc, output = run_playbook(fresh_lab, str(playbook), check=check_mode)
        assert rc == 0, output
        result = json.loads(out.read_text())
        out.unlink()
        assert result['changed'] is False
        assert result['instances'] == [] and result['aggregates'] == []
        assert result['service']['host'] == 'compute3' and result['service']['state'] == 'up'
        assert result['capacity']['needed'] == dict(vcpus=0, memory_mb=0, disk_gb=0)
        assert result['capacity']['sufficient'] is True
        assert [h['host'] for h in result['capacity']['hosts']] == ['compute1', 'compute2']


def test_unknown_host_fails_naming_it(lab):
    run = run_module(lab, 'nova_host_info', host='compute-nowhere')
    assert run.failed
    assert run['msg'] == ("no nova-compute service for host 'compute-nowhere'; Nova knows the compute hosts %s"
                          % ', '.join(sorted(lab['hosts'])))
    assert run['instances'] == [] and run['service'] is None and run['capacity'] is None

