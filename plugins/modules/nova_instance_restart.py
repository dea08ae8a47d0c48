#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: nova_instance_restart
short_description: Start again the marked instances whose guest went off by itself, at most N times per window
version_added: 0.1.0
description:
  - For each instance (O(servers), or every server marked with O(restart_tag) when O(servers) is empty), decides
    from Nova's records whether to start it, and starts it and waits until it is ACTIVE.
  - Marked - the server metadata O(restart_tag) (V(true)/V(false)) decides, else a server tag with that name, else
    the flavor extra spec O(restart_tag). An instance that is not marked is never started.
  - Stopped by Nova - when a guest powers itself off (crash, panic, an unplanned power-off), the compute's
    power-state sync calls Nova's stop API itself, with no user - the instance becomes SHUTOFF and its newest
    instance action is a C(stop) whose C(user_id) is null. A stop that a user asked for carries the user's id
    and is left alone (unless O(stopped_by=any)).
  - Its host must be healthy - nova-compute up and not forced down; a host failure is host_failover's case.
  - Limit - at most O(max_restarts) restarts in O(window) seconds per instance, like vSphere's VM monitoring.
    The restart times are kept in the server metadata O(history_tag), so every controller (AWX containers
    included) sees the same history. A restart is recorded before the start request. An instance at its
    limit is left SHUTOFF and reported V(limit_reached).
  - An ACTIVE instance is V(unchanged); instances in other states (ERROR, SHELVED, busy with a task) are skipped.
author:
  - openstack_ha.recovery maintainers (@openstack-ha)
extends_documentation_fragment:
  - openstack_ha.recovery.openstack
options:
  history_tag:
    description:
      - Server metadata key holding the restart times (space-separated UTC times, at most 12).
    type: str
    default: 'openstack_ha:restart_history'
  max_restarts:
    description:
      - Restarts allowed per instance within O(window) seconds (1 to 12).
    type: int
    default: 3
  poll_interval:
    description:
      - Seconds between two reads of a starting server.
    type: int
    default: 2
  restart_tag:
    description:
      - Server metadata key, server tag, or flavor extra spec that marks an instance for restarts.
    type: str
    default: 'openstack_ha:restart'
  servers:
    description:
      - Names or ids of the servers to look at. Empty looks at every server marked with O(restart_tag), in all
        projects.
    type: list
    elements: str
    default: []
  stopped_by:
    description:
      - V(nova) starts only instances that Nova stopped itself (the guest went off). V(any) also starts marked
        instances that a user stopped.
    type: str
    choices: [nova, any]
    default: nova
  timeout:
    description:
      - Seconds an instance may take from the start request to ACTIVE.
    type: int
    default: 300
  window:
    description:
      - Seconds the restart limit counts back.
    type: int
    default: 3600
attributes:
  check_mode:
    description: Reads the servers, their instance actions and hosts, and reports which instances would be
      started (V(would_restart)); starts nothing and writes no history.
    support: full
  diff_mode:
    description: The status of each instance looked at, before and after.
    support: full
notes:
  - Uses compute API microversion 2.73, or O(compute_microversion) when it is at least that.
seealso:
  - module: openstack_ha.recovery.nova_instance_start
'''

EXAMPLES = r'''
- name: Start web-1 again if it crashed (it is marked with the metadata openstack_ha:restart=true)
  openstack_ha.recovery.nova_instance_restart:
    cloud: production
    servers: [web-1]
  register: restart

- name: Look at every marked server, at most 2 restarts per 30 minutes
  openstack_ha.recovery.nova_instance_restart:
    cloud: production
    max_restarts: 2
    window: 1800

- name: What would be restarted (nothing is started)
  openstack_ha.recovery.nova_instance_restart:
    cloud: production
  check_mode: true
'''

RETURN = r'''
instances:
  description: One record per instance looked at, sorted by name.
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
    status_before:
      description: Server status when read first.
      type: str
    status_after:
      description: Server status when last read.
      type: str
    marked:
      description: Whether the operator marked it for restarts.
      type: bool
    marked_by:
      description: What marked it (or not) - V(metadata), V(tag), V(flavor); null when nothing does.
      type: str
    stopped_by:
      description: V(nova) (its newest action is a stop without a user), V(user), V(none); null when not read
        (the instance is not SHUTOFF).
      type: str
    stop_action:
      description: The newest instance action (C(action), C(request_id), C(user_id), C(project_id),
        C(start_time)) when read.
      type: dict
    restarts_in_window:
      description: Restarts recorded within the window, this one included.
      type: int
    restart_history:
      description: Those restart times (UTC).
      type: list
      elements: str
    outcome:
      description: V(restarted), V(would_restart) (check mode), V(unchanged) (ACTIVE), V(skipped) (see reason),
        V(limit_reached), V(failed) (started but not ACTIVE in time, or ERROR).
      type: str
    reason:
      description: Why.
      type: str
    seconds:
      description: Time spent on the instance.
      type: float
  sample:
    - id: 4a5e6c0e-2b8f-4f5c-9a55-3f7b0f1f6d2e
      name: web-1
      host: compute-3
      status_before: SHUTOFF
      status_after: ACTIVE
      marked: true
      marked_by: metadata
      stopped_by: nova
      stop_action: {action: stop, request_id: req-1, user_id: null, project_id: null,
                    start_time: '2026-11-22T05:00:00.000000'}
      restarts_in_window: 1
      restart_history: ['2026-11-22T05:00:07Z']
      outcome: restarted
      reason: 'stopped by Nova at 2026-11-22T05:00:00.000000 (request req-1): the guest went off by itself'
      seconds: 3.1
totals:
  description: Counts of the records by outcome, the number of instances and the seconds the run took.
  returned: always
  type: dict
  contains:
    instances:
      description: Instances looked at.
      type: int
    restarted:
      description: Started and ACTIVE.
      type: int
    would_restart:
      description: Check mode - would be started.
      type: int
    unchanged:
      description: ACTIVE already.
      type: int
    skipped:
      description: Not started (see their reasons).
      type: int
    limit_reached:
      description: Left SHUTOFF at the restart limit.
      type: int
    failed:
      description: Started but not ACTIVE.
      type: int
    seconds:
      description: Duration of the run.
      type: float
  sample: {instances: 2, restarted: 1, would_restart: 0, unchanged: 1, skipped: 0, limit_reached: 0, failed: 0,
           seconds: 3.4}
'''

from ansible_collections.openstack_ha.recovery.plugins.module_utils._instance_start import (
    HISTORY_TAG,
    RESTART_RESULT_KEYS,
    RESTART_TAG,
    recover_instances,
)
from ansible_collections.openstack_ha.recovery.plugins.module_utils._openstack import OpenStackModule

RETURNED_KEYS = RESTART_RESULT_KEYS


class NovaInstanceRestartModule(OpenStackModule):
    argument_spec = dict(
        history_tag=dict(type='str', default=HISTORY_TAG),
        max_restarts=dict(type='int', default=3),
        poll_interval=dict(type='int', default=2),
        restart_tag=dict(type='str', default=RESTART_TAG),
        servers=dict(type='list', elements='str', default=[]),
        stopped_by=dict(type='str', default='nova', choices=['nova', 'any']),
        timeout=dict(type='int', default=300),
        window=dict(type='int', default=3600),
    )

    def act(self, conn):
        params = self.params
        result = recover_instances(conn, servers=params['servers'], restart_tag=params['restart_tag'],
                                   history_tag=params['history_tag'], max_restarts=params['max_restarts'],
                                   window=params['window'], stopped_by=params['stopped_by'],
                                   timeout=params['timeout'], poll_interval=params['poll_interval'],
                                   check_mode=self.check_mode)
        if not self.ansible._diff:
            result.pop('diff')
        return result


def main():
    NovaInstanceRestartModule().run()


if __name__ == '__main__':
    main()
