#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: redfish_fence
short_description: Power a host off (fence) or on over Redfish and verify the power state
version_added: 0.1.0
description:
  - Powers a Redfish ComputerSystem off at once (C(ComputerSystem.Reset) with C(ResetType=ForceOff)) and reads its
    C(PowerState) until several consecutive reads say off, within a timeout. Real BMCs apply the change seconds
    after accepting the request; the module waits for it.
  - With O(state=on), powers the system on (C(ResetType=On)) and verifies it the same way.
  - A system already in the requested state is not changed (C(changed=false)). A BMC that refuses the reset with
    HTTP 400 or 409 because the system already is in that state (as iLO and iDRAC do) is not an error once the
    reads confirm it.
  - A BMC that does not answer (or answers HTTP 5xx) is asked again up to O(retries) times; HTTP 401/403 fail at once.
author:
  - openstack_ha.recovery maintainers (@openstack-ha)
extends_documentation_fragment:
  - openstack_ha.recovery.bmc
options:
  address:
    description:
      - Base URL of the Redfish service, C(https://host[:port]).
    type: str
    required: true
  system_id:
    description:
      - Id of the system under C(/redfish/v1/Systems) to power, for example V(1) or V(System.Embedded.1).
      - When omitted, the single member of C(/redfish/v1/Systems) is used; the module fails when there are several.
    type: str
  validate_certs:
    description:
      - Whether to verify the BMC's TLS certificate. BMCs often have self-signed ones; prefer trusting that
        certificate (C(REQUESTS_CA_BUNDLE)) over turning verification off.
    type: bool
    default: true
attributes:
  check_mode:
    description: Reads the real power state and reports whether it would change; never changes it.
    support: full
  diff_mode:
    description: Reports the power state before and after.
    support: full
requirements:
  - requests
notes:
  - The reset target comes from the system's C(Actions) when the BMC lists it, else
    C({system}/Actions/ComputerSystem.Reset).
  - HTTP goes through plain C(requests), not sushy. requests already comes with openstacksdk, so the module adds no
    dependency; and it leaves every timeout and every error body in the module's hands, where sushy brings a
    dependency of its own and retries of its own that would run unseen inside O(timeout).
  - One HTTP request waits at most 10 seconds (or O(timeout) if shorter); O(timeout) is checked between requests.
seealso:
  - module: openstack_ha.recovery.ipmi_fence
'''

EXAMPLES = r'''
- name: Fence a failed compute host over Redfish (ForceOff, verified by 3 consecutive reads)
  openstack_ha.recovery.redfish_fence:
    address: "https://{{ bmc_address }}"
    username: "{{ bmc_username }}"
    password: "{{ bmc_password }}"
  register: fence

- name: Fence one system of a multi-system BMC, whose power changes take seconds
  openstack_ha.recovery.redfish_fence:
    address: https://idrac-compute-3.example.com
    system_id: System.Embedded.1
    username: root
    password: "{{ vault_idrac_password }}"
    timeout: 90
    validate_certs: false

- name: Unfence the repaired host
  openstack_ha.recovery.redfish_fence:
    address: https://10.20.0.15
    username: admin
    password: "{{ vault_bmc_password }}"
    state: "on"
'''

RETURN = r'''
attempts:
  description: How many times the reset was sent (retries included); 0 when nothing had to change.
  returned: always
  type: int
  sample: 1
elapsed:
  description: Seconds from the first read to the end (the last confirmation, or the failure).
  returned: always
  type: float
  sample: 3.207
power:
  description:
    - Power state the BMC reported last, in lower case; V(on), V(off), or a transitional state such as
      V(poweringoff). In check mode, the state read (unchanged).
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
from ansible_collections.openstack_ha.recovery.plugins.module_utils._redfish import (
    HAS_REQUESTS,
    REQUEST_TIMEOUT,
    REQUESTS_IMPORT_ERROR,
    RedfishClient,
)

RETURNED_KEYS = FENCE_RESULT_KEYS


def main():
    module = AnsibleModule(
        argument_spec=bmc_argument_spec(
            address=dict(type='str', required=True),
            system_id=dict(type='str'),
            validate_certs=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib('requests'), exception=REQUESTS_IMPORT_ERROR)
    params = module.params
    client = RedfishClient(params['address'], params['username'], params['password'],
                           system_id=params['system_id'], validate_certs=params['validate_certs'],
                           request_timeout=min(REQUEST_TIMEOUT, params['timeout']))
    run_fence_module(module, client)


if __name__ == '__main__':
    main()
