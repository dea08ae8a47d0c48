#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: nova_service
short_description: Force down, disable, enable and bring back the nova-compute service of a host
version_added: 0.1.0
description:
  - Sets the C(enabled), C(forced_down) and C(disabled_reason) of one host's nova-compute service, leaving the
    settings not given as they are. A service already as requested is not changed (C(changed=false)).
  - When both O(forced_down) and O(enabled) change, the O(forced_down) change is sent first. Going down, a
    forced-down service is down for Nova, so the disable that follows makes no call to the host; disabling a
    service that Nova still believes up makes nova-api call the (dead) host and wait for the RPC timeout,
    60 seconds by default. Coming back, lifting O(forced_down) is the step Nova may refuse, so a refusal leaves
    the host still forced down and still disabled; once the service is up, the enable reaches the live compute,
    which drops its C(COMPUTE_STATUS_DISABLED) trait in Placement at once.
  - Refuses O(forced_down=false) while evacuation migrations from the host are not cleaned up yet (any state but
    C(completed), C(failed) or C(error), for example C(done) or C(accepted)), naming the host and the instances.
    The host's nova-compute removes what the evacuated instances left there when it starts. Power the host on (or
    restart its nova-compute), wait until those migrations are C(completed), and run the task again.
author:
  - openstack_ha.recovery maintainers (@openstack-ha)
extends_documentation_fragment:
  - openstack_ha.recovery.openstack
options:
  disabled_reason:
    description:
      - Why the service is disabled, for example C(fenced by openstack_ha.recovery) or C(maintenance).
      - Only with O(enabled=false). Without it, an already disabled service keeps its reason; enabling a service
        clears its reason.
    type: str
  enabled:
    description:
      - Whether the scheduler may place instances on the host. Unset leaves it as it is.
    type: bool
  forced_down:
    description:
      - Whether Nova must consider the service down whatever its heartbeats say. Unset leaves it as it is.
      - Set it only for a host that is really down (fenced); Nova then allows evacuating its instances at once.
    type: bool
  host:
    description:
      - Name of the compute host, as the nova-compute service reports it (C(openstack compute service list)).
    type: str
    required: true
attributes:
  check_mode:
    description: Reads the service (and, to lift O(forced_down), the host's evacuation migrations) and reports
      what would change, refusals included; sends nothing.
    support: full
  diff_mode:
    description: Reports enabled, forced_down and disabled_reason before and after.
    support: full
notes:
  - Uses compute API microversion 2.53 for the service (its uuid, C(PUT /os-services/{id})) and 2.59 for the
    migrations, or O(compute_microversion) when it is at least that.
seealso:
  - module: openstack_ha.recovery.nova_host_info
'''

EXAMPLES = r'''
- name: Tell Nova the fenced host is down and keep the scheduler away from it
  openstack_ha.recovery.nova_service:
    cloud: production
    host: compute-17
    forced_down: true
    enabled: false
    disabled_reason: "fenced by openstack_ha.recovery at {{ now(utc=true).isoformat() }}"

- name: Bring the repaired host back (refused while its evacuations are not cleaned up)
  openstack_ha.recovery.nova_service:
    cloud: production
    host: compute-17
    forced_down: false
    enabled: true
  register: back
  retries: 10
  delay: 15
  until: back is succeeded

- name: Share the cloud between nova modules
  module_defaults:
    group/openstack_ha.recovery.openstack:
      cloud: production
  block:
    - name: Disable compute-3 for maintenance, leaving forced_down as it is
      openstack_ha.recovery.nova_service:
        host: compute-3
        enabled: false
        disabled_reason: maintenance CHG-1234
'''

RETURN = r'''
pending_evacuations:
  description:
    - Evacuation migrations from the host whose source compute has not cleaned up yet. Read only when the module
      has to lift O(forced_down); an empty list otherwise. Non-empty only in a refusal.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Migration uuid.
      type: str
    instance_uuid:
      description: The evacuated instance.
      type: str
    status:
      description: Nova's migration status, for example C(done).
      type: str
    source_compute:
      description: The host.
      type: str
    dest_compute:
      description: Where the instance went; null while not decided.
      type: str
    created_at:
      description: When the evacuation started (UTC).
      type: str
    updated_at:
      description: Last change of the record (UTC).
      type: str
  sample:
    - id: 0d8a6a4c-3b9e-4c8e-9d0e-6c1f5b0b8f11
      instance_uuid: 4a5e6c0e-2b8f-4f5c-9a55-3f7b0f1f6d2e
      status: done
      source_compute: compute-17
      dest_compute: compute-4
      created_at: '2026-11-22T05:20:01.000000'
      updated_at: '2026-11-22T05:20:03.000000'
service:
  description:
    - The host's nova-compute service as Nova reports it after the changes; in check mode, as read.
    - Null when the host has no nova-compute service.
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
  sample:
    id: 2145ac86-96f1-4d8f-8106-201c4e7b5c36
    host: compute-17
    zone: nova
    state: down
    status: disabled
    enabled: false
    forced_down: true
    disabled_reason: fenced by openstack_ha.recovery
    updated_at: '2026-11-22T05:19:58.000000'
'''

from ansible_collections.openstack_ha.recovery.plugins.module_utils._nova import (
    SERVICE_RESULT_KEYS,
    ensure_service,
)
from ansible_collections.openstack_ha.recovery.plugins.module_utils._openstack import OpenStackModule

RETURNED_KEYS = SERVICE_RESULT_KEYS


class NovaServiceModule(OpenStackModule):
    argument_spec = dict(
        disabled_reason=dict(type='str'),
        enabled=dict(type='bool'),
        forced_down=dict(type='bool'),
        host=dict(type='str', required=True),
    )

    def act(self, conn):
        params = self.params
        result = ensure_service(conn, params['host'], enabled=params['enabled'], forced_down=params['forced_down'],
                                disabled_reason=params['disabled_reason'], check_mode=self.check_mode)
        if not self.ansible._diff:
            result.pop('diff')
        return result


def main():
    NovaServiceModule().run()


if __name__ == '__main__':
    main()
