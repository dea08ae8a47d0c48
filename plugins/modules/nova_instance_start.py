#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: nova_instance_start
short_description: Start the instances of hosts back from a power loss, highest priority first
version_added: 0.1.0
description:
  - Looks at every server on O(hosts) (all projects) and starts those that were running before the outage, in
    groups of equal priority, highest first - a group starts when every instance of the group before is ACTIVE
    (and answers its readiness probe) or has failed.
  - Was running - the server is listed in O(running_before) (read while the hosts were down, when Nova still
    showed it ACTIVE - the site_restore role reads that before it powers anything on), or it is SHUTOFF and its
    newest instance action is a C(stop) without a user (Nova's power-state sync stopped it after its guest came
    back powered off). A server stopped by a user is left alone.
  - Priority - the server metadata O(priority_tag), else the flavor extra spec O(priority_tag) (the same key as
    M(openstack_ha.recovery.nova_evacuate)'s C(priority_tag)), else 0. Higher starts first.
  - Readiness - a server with the metadata O(ready_tag) set to C(ADDRESS:PORT) counts as up only when a TCP
    connection to it succeeds, within O(ready_timeout) seconds after it is ACTIVE.
  - ACTIVE servers are V(unchanged) - a rerun changes nothing.
author:
  - openstack_ha.recovery maintainers (@openstack-ha)
extends_documentation_fragment:
  - openstack_ha.recovery.openstack
options:
  hosts:
    description:
      - The compute hosts (as Nova names them) whose instances to start. Their nova-compute services should be
        up; an instance on a host that is not is reported failed.
    type: list
    elements: str
    required: true
  poll_interval:
    description:
      - Seconds between two reads of a starting server, or two readiness probes.
    type: int
    default: 2
  priority_tag:
    description:
      - Server metadata key, else flavor extra spec, holding an instance's priority (an integer; higher first).
    type: str
    default: evacuation_priority
  ready_tag:
    description:
      - Server metadata key holding an instance's readiness probe, C(ADDRESS:PORT) (TCP).
    type: str
    default: 'openstack_ha:ready_tcp'
  ready_timeout:
    description:
      - Seconds an ACTIVE instance may take to answer its readiness probe.
    type: int
    default: 300
  settle_timeout:
    description:
      - Seconds to wait, before anything starts, until no server of O(running_before) is ACTIVE any more - a
        compute that starts runs Nova's power-state sync at once, which stops the guests that came back off,
        but until then Nova still shows them ACTIVE. A server still ACTIVE after that is V(unchanged) (its guest
        runs, for example with C(resume_guests_state_on_host_boot)). V(0) does not wait. Check mode does not wait.
    type: int
    default: 120
  running_before:
    description:
      - Ids (or names) of the servers that were running before the outage, read before the power came back.
    type: list
    elements: str
    default: []
  timeout:
    description:
      - Seconds a priority group may take from its start requests until all its instances are ACTIVE.
    type: int
    default: 600
attributes:
  check_mode:
    description: Reads the servers, their instance actions and the hosts, and reports the groups and which
      instances would be started (V(would_start)); starts nothing.
    support: full
  diff_mode:
    description: Not supported; the records carry the status before and after.
    support: none
notes:
  - Uses compute API microversion 2.73, or O(compute_microversion) when it is at least that.
seealso:
  - module: openstack_ha.recovery.nova_instance_restart
  - module: openstack_ha.recovery.nova_evacuate
'''

EXAMPLES = r'''
- name: Start what ran on the site's hosts, highest evacuation_priority first
  openstack_ha.recovery.nova_instance_start:
    cloud: production
    hosts: [compute-1, compute-2, compute-3]
    running_before: "{{ servers_active_while_down }}"
  register: started

- name: Plan only
  openstack_ha.recovery.nova_instance_start:
    cloud: production
    hosts: [compute-1]
  check_mode: true
'''

RETURN = r'''
groups:
  description: The priority groups in the order they ran.
  returned: always
  type: list
  elements: dict
  contains:
    priority:
      description: The group's priority.
      type: int
    instances:
      description: Ids of its instances.
      type: list
      elements: str
    started:
      description: When the group started (UTC).
      type: str
    finished:
      description: When it ended (UTC).
      type: str
    seconds:
      description: How long it took.
      type: float
    outcome:
      description: V(ok), V(failed) (an instance failed), V(planned) (check mode).
      type: str
  sample:
    - {priority: 10, instances: [4a5e6c0e-2b8f-4f5c-9a55-3f7b0f1f6d2e], started: '2026-11-22T05:00:00Z',
       finished: '2026-11-22T05:00:04Z', seconds: 4.2, outcome: ok}
instances:
  description: One record per server on the hosts, sorted by name.
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
    host:
      description: Its compute host.
      type: str
    priority:
      description: Its priority.
      type: int
    priority_source:
      description: V(metadata), V(flavor) or V(default).
      type: str
    ready:
      description: Its readiness probe C(ADDRESS:PORT), null when none.
      type: str
    status_before:
      description: Server status when read first.
      type: str
    status_after:
      description: Server status when last read.
      type: str
    stop_action:
      description: Nova's stop action that marks it as running before the outage, when that decided.
      type: dict
    outcome:
      description: V(started), V(would_start) (check mode), V(unchanged) (ACTIVE), V(skipped) (not running
        before), V(failed) (see reason).
      type: str
    reason:
      description: Why.
      type: str
    seconds:
      description: Time from its group's start until it ended.
      type: float
    marked:
      description: Unused here (null).
      type: bool
    marked_by:
      description: Unused here (null).
      type: str
    stopped_by:
      description: Unused here (null).
      type: str
    restarts_in_window:
      description: Unused here (null).
      type: int
    restart_history:
      description: Unused here (empty).
      type: list
      elements: str
  sample:
    - {id: 4a5e6c0e-2b8f-4f5c-9a55-3f7b0f1f6d2e, name: db-1, host: compute-1, priority: 10,
       priority_source: flavor, ready: '10.0.0.5:5432', status_before: SHUTOFF, status_after: ACTIVE,
       outcome: started, reason: 'running before the outage (listed)', seconds: 3.0}
totals:
  description: Counts of the records by outcome, and the seconds the run took.
  returned: always
  type: dict
  contains:
    instances:
      description: Servers on the hosts.
      type: int
    started:
      description: Started (and ready).
      type: int
    would_start:
      description: Check mode - would be started.
      type: int
    unchanged:
      description: ACTIVE already.
      type: int
    skipped:
      description: Not running before the outage.
      type: int
    failed:
      description: Not started, or not ACTIVE or ready in time.
      type: int
    seconds:
      description: Duration of the run.
      type: float
  sample: {instances: 3, started: 3, would_start: 0, unchanged: 0, skipped: 0, failed: 0, seconds: 9.1}
'''

from ansible_collections.openstack_ha.recovery.plugins.module_utils._instance_start import (
    PRIORITY_TAG,
    READY_TAG,
    START_RESULT_KEYS,
    start_in_priority_order,
)
from ansible_collections.openstack_ha.recovery.plugins.module_utils._openstack import OpenStackModule

RETURNED_KEYS = START_RESULT_KEYS


class NovaInstanceStartModule(OpenStackModule):
    argument_spec = dict(
        hosts=dict(type='list', elements='str', required=True),
        poll_interval=dict(type='int', default=2),
        priority_tag=dict(type='str', default=PRIORITY_TAG),
        ready_tag=dict(type='str', default=READY_TAG),
        ready_timeout=dict(type='int', default=300),
        running_before=dict(type='list', elements='str', default=[]),
        settle_timeout=dict(type='int', default=120),
        timeout=dict(type='int', default=600),
    )

    def act(self, conn):
        params = self.params
        return start_in_priority_order(conn, params['hosts'], running_before=params['running_before'],
                                       priority_tag=params['priority_tag'], ready_tag=params['ready_tag'],
                                       timeout=params['timeout'], ready_timeout=params['ready_timeout'],
                                       settle_timeout=params['settle_timeout'],
                                       poll_interval=params['poll_interval'], check_mode=self.check_mode)


def main():
    NovaInstanceStartModule().run()


if __name__ == '__main__':
    main()
