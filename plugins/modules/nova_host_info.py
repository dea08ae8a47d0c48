#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: nova_host_info
short_description: Everything about one compute host in one call, with the capacity to evacuate it
version_added: 0.1.0
description:
  - Reads one host's nova-compute service (up or down, forced down, disabled and why, heartbeat age), its instances
    in all projects (state, flavor, image, lock, server groups, evacuation policy), its host aggregates and
    availability zone, and the capacity its instances need against what the other usable hosts have free.
  - The evacuation policy of an instance comes from operator-owned settings only, never from server metadata
    (tenants can write it). The key O(evacuable_tag) is looked up in the instance's flavor extra specs, then its
    image properties, then the metadata of the host's aggregates (where any aggregate saying no wins); the first
    that sets it decides, and a value of V(true), V(yes), V(on) or V(1) (any case) means evacuable, any other
    value not. When none sets it, O(evacuable_default) applies.
  - Capacity compares the sum of what the host's instances hold (vCPUs, RAM and disk of their flavors, as Nova
    allocates them in Placement) with what the other hosts have free in Placement ((total - reserved) *
    allocation_ratio - used). Counted hosts are the other hosts in the same availability zone or sharing a host
    aggregate with it, that are enabled, up and not forced down; the others are listed in
    RV(capacity.excluded_hosts) with the reason.
  - A host without instances gives empty lists. A host without a nova-compute service fails, naming the host
    and the hosts Nova knows.
author:
  - openstack_ha.recovery maintainers (@openstack-ha)
extends_documentation_fragment:
  - openstack_ha.recovery.openstack
options:
  evacuable_default:
    description:
      - Whether an instance is evacuable when neither its flavor, nor its image, nor the host's aggregates set
        O(evacuable_tag).
      - Set it to V(false) to evacuate only the instances an operator marked.
    type: bool
    default: true
  evacuable_sources:
    description:
      - Where O(evacuable_tag) is looked up. The order is always flavor, image, aggregate.
      - Image properties can be set by the image's owner; leave V(image) out when projects upload their own images
        and must not choose for themselves.
    type: list
    elements: str
    choices: [flavor, image, aggregate]
    default: [flavor, image, aggregate]
  evacuable_tag:
    description:
      - The flavor extra spec, image property and aggregate metadata key that marks instances evacuable.
    type: str
    default: evacuable
  host:
    description:
      - Name of the compute host, as the nova-compute service reports it (C(openstack compute service list)).
    type: str
    required: true
  wait_down:
    description:
      - Seconds to keep reading the host's service again, every O(wait_interval) seconds, while Nova still sees it
        up. Nova takes a nova-compute for down only when its last heartbeat is older than its C(service_down_time)
        (60 s by default), so a caller that learned of a crash another way (an alert, the BMC, a probe) can wait
        here for Nova to agree. The instances, aggregates and capacity are read after the wait.
      - V(0) reads once. The service is returned as last read, up or down; RV(waited) says how long it took.
    type: float
    default: 0
  wait_interval:
    description:
      - Seconds between the reads of O(wait_down).
    type: float
    default: 2
attributes:
  check_mode:
    description: Read-only; runs the same in check mode.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
notes:
  - Requests, with their compute API microversions (or O(compute_microversion) when it is at least that) - the
    nova-compute services (2.53); then at once the host's servers in all projects (2.73, flavors embedded), the
    host aggregates (2.41), the server groups of all projects (2.64) and the hypervisors (2.53); the images of
    instances whose flavor does not decide the policy (Glance v2); and at once two Placement reads per counted
    host (1.0). Needs an admin role.
  - Capacity is a sum over the counted hosts; whether each instance fits somewhere is for the evacuation to
    decide. Disk offered by a shared storage resource provider, and dedicated CPUs (PCPU), are not counted.
  - The heartbeat age is measured on the clock of the host running the module against Nova's timestamp; clock
    skew shows in it.
seealso:
  - module: openstack_ha.recovery.nova_service
'''

EXAMPLES = r'''
- name: Check that the other hosts can take a failed host's instances
  block:
    - name: Read what compute-17 held and what the other hosts have free
      openstack_ha.recovery.nova_host_info:
        cloud: production
        host: compute-17
      register: failed_host

    - name: Stop before evacuating what would not fit
      ansible.builtin.assert:
        that: failed_host.capacity.sufficient_evacuable
        fail_msg: "not enough room for compute-17's instances: {{ failed_host.capacity.shortfall_evacuable }}"

- name: Read which instances an operator marked evacuable (flavor extra spec or aggregate metadata ha=true)
  openstack_ha.recovery.nova_host_info:
    cloud: production
    host: compute-17
    evacuable_tag: ha
    evacuable_sources: [flavor, aggregate]
    evacuable_default: false
  register: marked
'''

RETURN = r'''
aggregates:
  description: The host aggregates the host belongs to (an availability zone is one too); empty when none.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Aggregate id.
      type: int
    uuid:
      description: Aggregate uuid.
      type: str
    name:
      description: Aggregate name.
      type: str
    availability_zone:
      description: The availability zone the aggregate defines; null when none.
      type: str
    hosts:
      description: The aggregate's hosts, sorted.
      type: list
      elements: str
    metadata:
      description: The aggregate's metadata.
      type: dict
  sample:
    - id: 3
      uuid: 6ba28ba7-f29b-45cc-a30b-6e3a40c2fb14
      name: rack-a
      availability_zone: null
      hosts: [compute-16, compute-17, compute-18]
      metadata: {evacuable: 'true'}
availability_zone:
  description: The host's availability zone as Nova reports it for its service; null when the host is unknown.
  returned: always
  type: str
  sample: nova
capacity:
  description:
    - What the host's instances need against what the counted hosts have free, per resource (keys V(vcpus),
      V(memory_mb), V(disk_gb)).
    - Null when the host is unknown or a read failed before.
  returned: always
  type: dict
  contains:
    needed:
      description: What all the host's instances hold.
      type: dict
    needed_evacuable:
      description: What the evacuable instances hold.
      type: dict
    free:
      description: What the counted hosts have free together.
      type: dict
    shortfall:
      description: How much of RV(capacity.needed) does not fit into RV(capacity.free) (zeros when it fits).
      type: dict
    shortfall_evacuable:
      description: The same for RV(capacity.needed_evacuable).
      type: dict
    sufficient:
      description: Whether RV(capacity.shortfall) is all zeros.
      type: bool
    sufficient_evacuable:
      description: Whether RV(capacity.shortfall_evacuable) is all zeros.
      type: bool
    hosts:
      description: The counted hosts (C(host)) with what each has free (C(free)), sorted by name.
      type: list
      elements: dict
    excluded_hosts:
      description:
        - The other hosts of the zone and aggregates that are not counted, with C(host), C(reason)
          (V(forced down), V(down) or V(disabled)) and C(disabled_reason).
      type: list
      elements: dict
  sample:
    needed: {vcpus: 6, memory_mb: 1152, disk_gb: 4}
    needed_evacuable: {vcpus: 4, memory_mb: 1024, disk_gb: 2}
    free: {vcpus: 3996, memory_mb: 798464, disk_gb: 599998}
    shortfall: {vcpus: 0, memory_mb: 0, disk_gb: 0}
    shortfall_evacuable: {vcpus: 0, memory_mb: 0, disk_gb: 0}
    sufficient: true
    sufficient_evacuable: true
    hosts:
      - host: compute-16
        free: {vcpus: 3996, memory_mb: 798464, disk_gb: 599998}
    excluded_hosts:
      - host: compute-18
        reason: disabled
        disabled_reason: maintenance
host:
  description: The host asked for.
  returned: always
  type: str
  sample: compute-17
instances:
  description: The instances on the host in all projects, sorted by name; empty when none.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Server uuid.
      type: str
    name:
      description: Server name.
      type: str
    project_id:
      description: The server's project.
      type: str
    status:
      description: Server status, for example V(ACTIVE), V(SHUTOFF), V(ERROR).
      type: str
    vm_state:
      description: Nova's vm_state, for example V(active), V(stopped), V(error).
      type: str
    task_state:
      description: Nova's task_state, for example V(rebuilding) during an evacuation; null when idle.
      type: str
    flavor:
      description: The flavor the server was built with (C(name), C(vcpus), C(ram), C(disk), C(ephemeral), C(swap),
        C(extra_specs)).
      type: dict
    image_id:
      description: The image the server was built from; null for a volume-backed server.
      type: str
    boot_from_volume:
      description: Whether the server boots from a volume (its root disk is not on the host).
      type: bool
    locked:
      description: Whether the server is locked.
      type: bool
    locked_reason:
      description: Why it is locked; null when not locked or no reason was given.
      type: str
    server_groups:
      description: The server groups the server belongs to, each with C(id), C(name) and C(policy).
      type: list
      elements: dict
    evacuable:
      description: Whether the evacuation policy marks the server evacuable (see O(evacuable_tag)).
      type: bool
    evacuable_source:
      description: What decided RV(instances[].evacuable) - V(flavor), V(image), V(aggregate:NAME) or V(default).
      type: str
    needs:
      description: What the server holds in Placement (C(vcpus), C(memory_mb), C(disk_gb)).
      type: dict
  sample:
    - id: 4a5e6c0e-2b8f-4f5c-9a55-3f7b0f1f6d2e
      name: db-1
      project_id: 07eb2f1d64a9415e9a07c15193c368da
      status: ACTIVE
      vm_state: active
      task_state: null
      flavor: {name: m1.small, vcpus: 2, ram: 512, disk: 1, ephemeral: 0, swap: 0, extra_specs: {evacuable: 'true'}}
      image_id: 531e0dd4-f56f-4d1d-bd37-5ac7a5a12263
      boot_from_volume: false
      locked: false
      locked_reason: null
      server_groups: [{id: 9d1c5f0e-7f3a-4a47-a1b2-1f0e3c3d4b5a, name: db, policy: anti-affinity}]
      evacuable: true
      evacuable_source: flavor
      needs: {vcpus: 2, memory_mb: 512, disk_gb: 1}
service:
  description: The host's nova-compute service; null when the host has none.
  returned: always
  type: dict
  contains:
    id:
      description: Service uuid.
      type: str
    host:
      description: Host name.
      type: str
    zone:
      description: Availability zone of the host.
      type: str
    state:
      description: V(up) or V(down); a forced-down service is V(down).
      type: str
    status:
      description: V(enabled) or V(disabled).
      type: str
    enabled:
      description: Whether status is V(enabled).
      type: bool
    forced_down:
      description: Whether the service is forced down.
      type: bool
    disabled_reason:
      description: Why the service is disabled; null when none.
      type: str
    updated_at:
      description: Last heartbeat or change of the service record (UTC).
      type: str
    heartbeat_age:
      description: Seconds since RV(service.updated_at), on the clock of the host running the module.
      type: float
  sample:
    id: 2145ac86-96f1-4d8f-8106-201c4e7b5c36
    host: compute-17
    zone: nova
    state: down
    status: enabled
    enabled: true
    forced_down: false
    disabled_reason: null
    updated_at: '2026-11-22T05:19:58.000000'
    heartbeat_age: 41.3
waited:
  description: Seconds spent reading the service again for O(wait_down); V(0) without a wait.
  returned: always
  type: float
  sample: 6.1
'''

from ansible_collections.openstack_ha.recovery.plugins.module_utils._nova import (
    EVACUABLE_SOURCES,
    HOST_INFO_RESULT_KEYS,
    host_info,
)
from ansible_collections.openstack_ha.recovery.plugins.module_utils._openstack import OpenStackModule

RETURNED_KEYS = HOST_INFO_RESULT_KEYS


class NovaHostInfoModule(OpenStackModule):
    argument_spec = dict(
        evacuable_default=dict(type='bool', default=True),
        evacuable_sources=dict(type='list', elements='str', choices=list(EVACUABLE_SOURCES),
                               default=list(EVACUABLE_SOURCES)),
        evacuable_tag=dict(type='str', default='evacuable'),
        host=dict(type='str', required=True),
        wait_down=dict(type='float', default=0),
        wait_interval=dict(type='float', default=2),
    )

    def act(self, conn):
        params = self.params
        return host_info(conn, params['host'], evacuable_tag=params['evacuable_tag'],
                         evacuable_sources=params['evacuable_sources'], evacuable_default=params['evacuable_default'],
                         wait_down=params['wait_down'], wait_interval=params['wait_interval'])


def main():
    NovaHostInfoModule().run()


if __name__ == '__main__':
    main()
