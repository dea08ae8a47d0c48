#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: ipmi_fence
short_description: Power a host off (fence) or on over IPMI and verify the power state
version_added: 0.1.0
description:
  - Powers the host behind an IPMI 2.0 BMC off at once (IPMI lanplus, chassis power down) and reads the power
    state until several consecutive reads say off, polling well under a second, within a timeout.
  - With O(state=on), powers the host on (unfencing) and verifies it the same way.
  - A host already in the requested state is not changed (C(changed=false)). A BMC that refuses power down with
    completion code 0xD5 ("not supported in present state") is not an error once the reads confirm off.
  - A BMC that does not answer is asked again up to O(retries) times; rejected credentials fail at once.
author:
  - openstack_ha.recovery maintainers (@openstack-ha)
extends_documentation_fragment:
  - openstack_ha.recovery.bmc
options:
  address:
    description:
      - Host name or IP address of the BMC.
    type: str
    required: true
  port:
    description:
      - UDP port of the BMC's IPMI (RMCP+) service.
    type: int
    default: 623
attributes:
  check_mode:
    description: Reads the real power state and reports whether it would change; never changes it.
    support: full
  diff_mode:
    description: Reports the power state before and after.
    support: full
requirements:
  - pyghmi >= 1.6.19 (pure Python; ipmitool is not needed)
notes:
  - Uses only the standard chassis commands (Get Chassis Status, Chassis Control power down / power up);
    never power cycle or reset.
  - A BMC that does not answer costs about 5 seconds per try before pyghmi gives up (its own retransmissions);
    O(timeout) is checked between tries. Some BMCs do not answer at all to an unknown user name, which then
    looks like an unreachable BMC.
seealso:
  - module: openstack_ha.recovery.redfish_fence
'''

EXAMPLES = r'''
- name: Fence a failed compute host (power off, verified by 3 consecutive reads)
  openstack_ha.recovery.ipmi_fence:
    address: "{{ bmc_address }}"
    username: "{{ bmc_username }}"
    password: "{{ bmc_password }}"
  register: fence

- name: Unfence the repaired host
  openstack_ha.recovery.ipmi_fence:
    address: 10.20.0.15
    port: 623
    username: admin
    password: "{{ vault_bmc_password }}"
    state: "on"

- name: Share the BMC credentials between fence modules
  module_defaults:
    group/openstack_ha.recovery.bmc:
      username: admin
      password: "{{ vault_bmc_password }}"
      timeout: 60
  block:
    - name: Fence compute-2, giving its slow BMC a minute
      openstack_ha.recovery.ipmi_fence:
        address: compute-2-ipmi.example.com
'''

RETURN = r'''
attempts:
  description: How many times the power command was sent (retries included); 0 when nothing had to change.
  returned: always
  type: int
  sample: 1
elapsed:
  description: Seconds from the first read to the end (the last confirmation, or the failure).
  returned: always
  type: float
  sample: 0.412
power:
  description:
    - Power state the BMC reported last, V(on) or V(off). In check mode, the state read (unchanged).
    - Null when the BMC could not be read at all.
  returned: always
  type: str
  sample: 'off'
power_before:
  description: Power state the BMC reported before anything was done; null when it could not be read.
  returned: always
  type: str
  sample: 'on'
verified:
  description:
    - Whether O(confirmations) consecutive reads returned the requested state within O(timeout).
    - This is the BMC's word only; M(openstack_ha.recovery.fence_verify) cross-checks it with evidence that does not
      come from the BMC.
  returned: always
  type: bool
  sample: true
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.openstack_ha.recovery.plugins.module_utils._bmc import (
    FENCE_RESULT_KEYS,
    bmc_argument_spec,
    run_fence_module,
)
from ansible_collections.openstack_ha.recovery.plugins.module_utils._ipmi import (
    HAS_PYGHMI,
    IPMI_PORT,
    PYGHMI_IMPORT_ERROR,
    IpmiClient,
)

RETURNED_KEYS = FENCE_RESULT_KEYS


def main():
    module = AnsibleModule(
        argument_spec=bmc_argument_spec(
            address=dict(type='str', required=True),
            port=dict(type='int', default=IPMI_PORT),
        ),
        supports_check_mode=True,
    )
    if not HAS_PYGHMI:
        module.fail_json(msg=missing_required_lib('pyghmi'), exception=PYGHMI_IMPORT_ERROR)
    params = module.params
    client = IpmiClient(params['address'], params['username'], params['password'], port=params['port'])
    run_fence_module(module, client)


if __name__ == '__main__':
    main()
