#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: bmc_ping
short_description: Check which BMCs answer this controller, without credentials
version_added: 0.1.0
description:
  - Sends every target BMC one request that needs no credentials and says which ones answered, how fast, and
    what share of them did. It is the observer-health gate of a failover - a controller that reaches almost
    none of the BMCs is probably the isolated one and must not fence anybody.
  - B(IPMI) (O(targets[].protocol=ipmi)) - one RMCP / IPMI 1.5 C(Get Channel Authentication Capabilities)
    request over UDP, the sessionless request every IPMI-over-LAN client sends first. No session is opened and
    no user name is sent. Any well-formed answer counts as reachable, whatever its completion code.
  - B(Redfish) (O(targets[].protocol=redfish)) - C(GET /redfish/v1), the service root, served without
    authentication. Any HTTP answer counts as reachable, also C(401) or C(500). A TLS certificate the controller
    does not trust (with O(validate_certs=true)) means no HTTP answer came, so the target is unreachable, and
    the error says why.
  - The targets are probed in parallel threads. Each probe waits O(timeout) seconds for its answer and is sent
    again O(retries) times when none came.
  - The module never needs, takes or logs a password.
author:
  - openstack_ha.recovery maintainers (@openstack-ha)
options:
  fail_on_below:
    description:
      - Whether the module fails when RV(below_minimum) is true. The failure carries the same results and
        names the unreachable BMCs.
    type: bool
    default: false
  min_reachable_percent:
    description:
      - RV(below_minimum) is true when the reachable share of the targets (RV(reachable) / RV(total) x 100,
        unrounded) is less than this. With no targets it is never below.
    type: float
    default: 0.0
  parallel:
    description:
      - How many probes run at the same time at most.
    type: int
    default: 16
  retries:
    description:
      - How many times a probe that got no answer is sent again.
    type: int
    default: 1
  targets:
    description:
      - The BMCs to probe. An empty list gives zeros (and RV(below_minimum=false)), not a failure.
    type: list
    elements: dict
    default: []
    suboptions:
      address:
        description:
          - For V(ipmi), the BMC's host name or IP address.
          - For V(redfish), the base URL of its Redfish service (C(https://bmc.example.com[:port])), as for
            M(openstack_ha.recovery.redfish_fence), or a host name (then C(https://) is used). A user name or
            password in the URL is dropped.
        type: str
        required: true
      name:
        description:
          - Names the target in the results and messages, for example the compute host whose BMC it is.
          - Defaults to O(targets[].address).
        type: str
      port:
        description:
          - For V(ipmi), the UDP port (default C(623)). For V(redfish), the TCP port when O(targets[].address) has
            none (default that of the URL's scheme).
        type: int
      protocol:
        description:
          - How to probe the BMC.
        type: str
        choices: [ipmi, redfish]
        default: ipmi
  timeout:
    description:
      - Seconds each probe waits for its answer.
    type: float
    default: 1.0
  validate_certs:
    description:
      - Whether to verify the TLS certificates of Redfish BMCs addressed by C(https://).
    type: bool
    default: true
attributes:
  check_mode:
    description: The module only reads; it runs the same in check mode and never reports a change.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
notes:
  - The Redfish probe honours the C(https_proxy) / C(http_proxy) / C(no_proxy) environment variables, as the
    fence modules do; put the BMC network into C(no_proxy) when a proxy is set.
  - A BMC can answer this probe and still reject the fence modules' credentials; this module says only that
    the BMC is there and reachable from this controller.
seealso:
  - module: openstack_ha.recovery.ipmi_fence
  - module: openstack_ha.recovery.redfish_fence
  - module: openstack_ha.recovery.fence_verify
'''

EXAMPLES = r'''
- name: Stop when this controller reaches fewer than half of the other hosts' BMCs (it may be the isolated one)
  openstack_ha.recovery.bmc_ping:
    targets:
      - name: compute-16
        address: 10.20.0.16
      - name: compute-18
        address: https://compute-18-bmc.example.com
        protocol: redfish
      - name: compute-19
        address: 10.20.0.19
        port: 6230
    min_reachable_percent: 50
    fail_on_below: true
  register: observer

- name: Probe the BMCs of the other compute hosts (each sets bmc_target, a dict of name, address, protocol)
  openstack_ha.recovery.bmc_ping:
    targets: "{{ groups['compute'] | difference([compute_host]) | map('extract', hostvars, 'bmc_target') | list }}"
    timeout: 0.5
    retries: 2
  register: observer

- name: Report a failed host's own BMC (reachable while the host itself is dead is what a crash looks like)
  openstack_ha.recovery.bmc_ping:
    targets:
      - name: "{{ compute_host }}"
        address: "{{ hostvars[compute_host].bmc_address }}"
  register: own_bmc
'''

RETURN = r'''
below_minimum:
  description:
    - Whether the reachable share is less than O(min_reachable_percent). Always false with no targets.
  returned: always
  type: bool
  sample: false
reachable:
  description: How many targets answered.
  returned: always
  type: int
  sample: 2
reachable_percent:
  description: RV(reachable) / RV(total) x 100, rounded to one decimal; V(0.0) with no targets.
  returned: always
  type: float
  sample: 66.7
targets:
  description: One entry per target, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The target's name (its address when no name was given).
      type: str
    protocol:
      description: V(ipmi) or V(redfish).
      type: str
    address:
      description: The address probed (for Redfish, the base URL without path and without credentials).
      type: str
    port:
      description: The port probed; null for a Redfish URL without one (the scheme's default).
      type: int
    url:
      description: The Redfish service root URL requested; null for IPMI.
      type: str
    reachable:
      description: Whether the BMC answered.
      type: bool
    latency_ms:
      description: Milliseconds from sending the answered request to its answer; null when unreachable.
      type: float
    attempts:
      description: How many requests were sent (1 + the retries used).
      type: int
    answer:
      description: What answered, V(IPMI completion code 0x00) or V(HTTP 200) for example; null when none.
      type: str
    error:
      description: Why the BMC counts as unreachable; null when reachable.
      type: str
  sample:
    - {name: compute-16, protocol: ipmi, address: 10.20.0.16, port: 623, url: null, reachable: true,
       latency_ms: 0.8, attempts: 1, answer: IPMI completion code 0x00, error: null}
    - {name: compute-18, protocol: redfish, address: 'https://compute-18-bmc.example.com', port: null,
       url: 'https://compute-18-bmc.example.com/redfish/v1', reachable: false, latency_ms: null, attempts: 2,
       answer: null, error: 'no HTTP answer from https://compute-18-bmc.example.com/redfish/v1: timed out'}
total:
  description: How many targets were probed.
  returned: always
  type: int
  sample: 3
unreachable:
  description: How many targets did not answer.
  returned: always
  type: int
  sample: 1
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.openstack_ha.recovery.plugins.module_utils._bmc_ping import (
    BMC_PING_RESULT_KEYS,
    PROTOCOLS,
    run_bmc_ping_module,
)

RETURNED_KEYS = BMC_PING_RESULT_KEYS


def main():
    module = AnsibleModule(
        argument_spec=dict(
            fail_on_below=dict(type='bool', default=False),
            min_reachable_percent=dict(type='float', default=0.0),
            parallel=dict(type='int', default=16),
            retries=dict(type='int', default=1),
            targets=dict(type='list', elements='dict', default=[], options=dict(
                address=dict(type='str', required=True),
                name=dict(type='str'),
                port=dict(type='int'),
                protocol=dict(type='str', default='ipmi', choices=list(PROTOCOLS)),
            )),
            timeout=dict(type='float', default=1.0),
            validate_certs=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    run_bmc_ping_module(module)


if __name__ == '__main__':
    main()
