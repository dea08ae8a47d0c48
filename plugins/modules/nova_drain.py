#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: nova_drain
short_description: Empty a healthy compute host for planned maintenance (disable, live-migrate, cold fallback)
version_added: 0.1.0
description:
  - Disables the host's nova-compute service with a maintenance reason, so the scheduler places nothing new on
    it, then moves every instance off it and follows each one, through its migration record and the server's
    state and host, until it runs on another host in the state it had.
  - ACTIVE and PAUSED instances are live-migrated. SHUTOFF instances, and instances whose live migration Nova
    refuses or fails, are cold-migrated (migrate, wait for C(VERIFY_RESIZE), confirm) when
    O(cold_migration_fallback) allows. A cold-migrated instance keeps its power state.
  - Instances in ERROR are reported and not moved, unless O(reset_error_instances). Instances in other states
    (SUSPENDED, RESCUED, ...) or busy with another task are reported and not moved. An instance found in the
    middle of a migration (from an interrupted run) is followed to its end, never migrated a second time, and a
    cold migration from the host left in C(VERIFY_RESIZE) by an interrupted run is confirmed.
  - Fails, after moving everything it could, when any instance is still on the host, with the full records.
  - A host whose service is already disabled is left disabled with its reason (for example a reason set by
    another tool); a rerun on an empty, disabled host changes nothing.
  - Refuses, before changing anything, a host that is down or forced down (use
    M(openstack_ha.recovery.nova_evacuate)), an unusable O(target_hosts) entry, or a drain with no other enabled
    and up host.
author:
  - openstack_ha.recovery maintainers (@openstack-ha)
extends_documentation_fragment:
  - openstack_ha.recovery.openstack
options:
  block_migration:
    description:
      - Block migration for live migrations. V(auto) lets Nova choose from the storage (shared or not).
    type: str
    choices: ['auto', 'true', 'false']
    default: auto
  cold_migration_fallback:
    description:
      - Whether to cold-migrate SHUTOFF instances and instances whose live migration is refused or fails. A cold
        migration stops the instance for the copy and starts it again on the destination.
    type: bool
    default: true
  concurrency:
    description:
      - How many instances move at the same time.
      - The source nova-compute runs at most its C(max_concurrent_live_migrations) live migrations at once (1 by
        default) and queues the others, so a higher O(concurrency) mostly overlaps the waiting and the cold
        migrations; queued time counts against O(timeout).
    type: int
    default: 4
  disabled_reason:
    description:
      - Reason set on the service when this module disables it.
    type: str
    default: 'openstack_ha.recovery: maintenance drain'
  host:
    description:
      - Name of the compute host to drain, as the nova-compute service reports it.
    type: str
    required: true
  reset_error_instances:
    description:
      - Reset instances in ERROR to active (C(os-resetState)) and move them like ACTIVE ones. Only for instances
        known to be fine apart from their recorded state.
    type: bool
    default: false
  target_hosts:
    description:
      - Hosts to move the instances to, used in turn; each must be enabled and up. The scheduler still checks
        each one. Unset lets Nova's scheduler choose.
    type: list
    elements: str
  timeout:
    description:
      - Seconds each instance may take, from the first migration request to its arrival (cold fallback
        included), time queued on the source compute included. An instance that times out is reported failed and
        not migrated again (its migration may still be running).
    type: int
    default: 600
attributes:
  check_mode:
    description: Reads the service, the instances and the host's unconfirmed cold migrations, and reports whether
      the service would be disabled and which instances would move and how (live or cold); disables nothing and
      moves nothing. Fails, like a real run, when some instances would stay on the host.
    support: full
  diff_mode:
    description: Reports the service's enabled and disabled_reason and the instances on the host, before and
      after.
    support: full
notes:
  - Uses compute API microversion 2.34 for live migration and 2.56 for cold migration, 2.73 to read servers and
    2.59 for migration records, or O(compute_microversion) when it is at least that.
seealso:
  - module: openstack_ha.recovery.nova_service
  - module: openstack_ha.recovery.nova_host_info
  - module: openstack_ha.recovery.nova_evacuate
'''

EXAMPLES = r'''
- name: Empty compute-3 before its firmware update
  openstack_ha.recovery.nova_drain:
    cloud: production
    host: compute-3
    disabled_reason: maintenance CHG-1234
    concurrency: 4
  register: drain

- name: Check first what a drain of compute-5 would do (nothing is disabled or moved)
  openstack_ha.recovery.nova_drain:
    cloud: production
    host: compute-5
  check_mode: true
  register: plan

- name: Drain onto two spare hosts, live only, without shared storage
  openstack_ha.recovery.nova_drain:
    cloud: production
    host: compute-8
    target_hosts: [compute-20, compute-21]
    block_migration: 'true'
    cold_migration_fallback: false
    timeout: 1200
'''

RETURN = r'''
candidate_hosts:
  description: Where the instances may go - O(target_hosts), or every other enabled and up host (the scheduler
    picks among them).
  returned: always
  type: list
  elements: str
  sample: [compute-1, compute-2]
host:
  description: The drained host.
  returned: always
  type: str
  sample: compute-3
instances:
  description:
    - One record per instance found on the host, sorted by name.
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
    from:
      description: The drained host.
      type: str
    to:
      description: The host the instance runs on now (in check mode the requested target, null for the
        scheduler's choice); null when it did not leave.
      type: str
    method:
      description: V(live) or V(cold); null when not moved.
      type: str
    status_before:
      description: Server status when read first.
      type: str
    status_after:
      description: Server status when last read.
      type: str
    attempts:
      description: Migration requests made (live and cold).
      type: int
    seconds:
      description: Time spent on the instance.
      type: float
    outcome:
      description: V(moved), V(skipped) (not attempted, see reason), V(failed) (see reason), or V(would_move) in
        check mode.
      type: str
    reason:
      description: Why it was skipped or failed, or that a live migration failed and a cold migration moved it;
        null otherwise.
      type: str
  sample:
    - id: 4a5e6c0e-2b8f-4f5c-9a55-3f7b0f1f6d2e
      name: web-1
      from: compute-3
      to: compute-1
      method: live
      status_before: ACTIVE
      status_after: ACTIVE
      attempts: 1
      seconds: 2.6
      outcome: moved
      reason: null
service:
  description: The host's nova-compute service after the disable; in check mode, as read. Null when the host
    has no nova-compute service.
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
      description: V(up) or V(down).
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
service_changed:
  description: Whether this run disabled the service (in check mode, whether it would); false when it was
    already disabled.
  returned: always
  type: bool
totals:
  description: Counts of the records by outcome and method, and the seconds the whole run took.
  returned: always
  type: dict
  contains:
    instances:
      description: Instances found on the host.
      type: int
    moved:
      description: Moved to another host.
      type: int
    skipped:
      description: Not attempted.
      type: int
    failed:
      description: Attempted and still on the host (or lost track of).
      type: int
    would_move:
      description: Check mode - would be moved.
      type: int
    live:
      description: Moved (or would move) by live migration.
      type: int
    cold:
      description: Moved (or would move) by cold migration.
      type: int
    seconds:
      description: Duration of the run.
      type: float
  sample: {instances: 10, moved: 10, skipped: 0, failed: 0, would_move: 0, live: 9, cold: 1, seconds: 14.2}
'''

from ansible_collections.openstack_ha.recovery.plugins.module_utils._drain import (
    DEFAULT_REASON,
    DRAIN_RESULT_KEYS,
    drain_host,
)
from ansible_collections.openstack_ha.recovery.plugins.module_utils._openstack import OpenStackModule

RETURNED_KEYS = DRAIN_RESULT_KEYS


class NovaDrainModule(OpenStackModule):
    argument_spec = dict(
        block_migration=dict(type='str', default='auto', choices=['auto', 'true', 'false']),
        cold_migration_fallback=dict(type='bool', default=True),
        concurrency=dict(type='int', default=4),
        disabled_reason=dict(type='str', default=DEFAULT_REASON),
        host=dict(type='str', required=True),
        reset_error_instances=dict(type='bool', default=False),
        target_hosts=dict(type='list', elements='str'),
        timeout=dict(type='int', default=600),
    )

    def act(self, conn):
        params = self.params
        result = drain_host(conn, params['host'], block_migration=params['block_migration'],
                            cold_migration_fallback=params['cold_migration_fallback'],
                            concurrency=params['concurrency'], disabled_reason=params['disabled_reason'],
                            reset_error_instances=params['reset_error_instances'],
                            target_hosts=params['target_hosts'], timeout=params['timeout'],
                            check_mode=self.check_mode)
        if not self.ansible._diff:
            result.pop('diff')
        return result


def main():
    NovaDrainModule().run()


if __name__ == '__main__':
    main()
