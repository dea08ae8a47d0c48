#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: fence_verify
short_description: Prove from independent evidence that a compute host is fenced
version_added: 0.1.0
description:
  - Gathers evidence that a compute host is fenced from up to three independent signals, and says whether the
    host is B(provably fenced). Nothing is changed; the module only reads.
  - B(BMC power state) (O(protocol=ipmi) or O(protocol=redfish)). O(confirmations) consecutive reads,
    O(poll_interval) seconds apart, must all say off. Any other read (on, or a transitional state such as
    V(poweringoff)) gives the verdict V(not_off). A BMC that cannot be read gives V(unknown).
  - B(Nova heartbeat) (O(nova_heartbeat=true)). The host's nova-compute service writes C(updated_at) every
    O(report_interval) seconds while it runs. The verdict is V(silent) when the last heartbeat is at least
    O(report_interval) x O(missed_heartbeats) seconds old (measured with the Nova API's clock from its C(Date)
    header when it sends one, else with this controller's clock), B(and) no heartbeat was written during at
    least 1.5 x O(report_interval) seconds of watching (which needs no shared clock). A heartbeat written while
    the module watches gives V(alive) at once, because the host runs after the fence. The module waits, within
    O(timeout), for silence to become provable; by the deadline it is V(unproven).
  - B(Probes) (O(probes)). A TCP connection to each address must get no answer within O(probe_timeout) (V(silent)).
    An accepted or refused connection is an answer (V(answered)); a refusal is a TCP reset, sent only by a live
    network stack. A probe that cannot be sent (name not resolvable, no route from this controller to that
    network) gives V(unknown) and proves nothing.
  - The host is provably fenced when every signal in use gives its fenced verdict (V(off), V(silent),
    V(silent)). At least two signals must be in use, so that the BMC's word is never taken alone; the default
    is the BMC and the Nova heartbeat.
  - A lying BMC (reports off while the host runs) is caught by the Nova heartbeat (the host keeps writing it)
    and by probes (the host keeps answering). A host that is silent but running (frozen, cut off from the
    control plane) is caught by the BMC. A host whose nova-compute died while its guests still run is caught
    by the BMC too.
author:
  - openstack_ha.recovery maintainers (@openstack-ha)
extends_documentation_fragment:
  - openstack_ha.recovery.openstack
options:
  address:
    description:
      - Address of the host's BMC, as for the fence modules. For V(ipmi), its host name or IP address (with
        O(port)); for V(redfish), the base URL of its Redfish service, C(https://host[:port]).
      - Required unless O(protocol=none).
    type: str
  bmc_validate_certs:
    description:
      - Whether to verify the Redfish BMC's TLS certificate (O(protocol=redfish) only).
      - Named apart from O(validate_certs), which is about the OpenStack APIs.
    type: bool
    default: true
  confirmations:
    description:
      - How many consecutive power state reads must say off for the BMC verdict V(off).
    type: int
    default: 3
  fail_when_not_fenced:
    description:
      - Whether the module fails when the host is not provably fenced. The failure carries the same
        RV(fenced), RV(evidence) and RV(reasons) as a success.
      - Set V(false) to gather the evidence and decide in the play (as the C(host_fence) role does, to try
        its next fence level).
    type: bool
    default: true
  host:
    description:
      - Name of the compute host as Nova knows it (the C(host) of its nova-compute service). Also names the
        host in messages.
    type: str
    required: true
  missed_heartbeats:
    description:
      - How many heartbeats in a row the host must have missed for the Nova verdict V(silent); the last
        heartbeat must be at least O(report_interval) x O(missed_heartbeats) seconds old.
    type: int
    default: 3
  nova_heartbeat:
    description:
      - Whether to use the Nova heartbeat signal. It needs the cloud options (O(cloud), O(auth) or the
        C(OS_*) environment variables) and an account that may list compute services (admin by default).
      - With V(false), the module does not contact OpenStack at all; then it needs the BMC and O(probes).
    type: bool
    default: true
  password:
    description:
      - Password of the BMC user. Never logged, never part of an error message.
      - Required unless O(protocol=none).
    type: str
  poll_interval:
    description:
      - Seconds between two power state reads.
    type: float
    default: 0.1
  port:
    description:
      - UDP port of the BMC's IPMI (RMCP+) service (O(protocol=ipmi) only).
    type: int
    default: 623
  probe_timeout:
    description:
      - Seconds each probe waits for an answer. Probes run one after the other.
    type: float
    default: 1.0
  probes:
    description:
      - Addresses of the host on its other networks (storage, tenant, a second management network) that must
        not answer. Pick a port the host listens on when it runs (C(22) for sshd), so that silence means
        something.
      - Silence can also mean that this controller's own path to that network is broken, so probes are one
        signal among two or three, never the proof alone; an answer refutes the fence.
    type: list
    elements: dict
    default: []
    suboptions:
      host:
        description:
          - Host name or IP address to connect to.
        type: str
        required: true
      port:
        description:
          - TCP port to connect to.
        type: int
        required: true
  protocol:
    description:
      - How to read the power state from the host's BMC. V(none) leaves the BMC out (for a host fenced by
        other means, such as a switch port shutdown); then the Nova heartbeat and O(probes) are both needed.
    type: str
    choices: [ipmi, redfish, none]
    default: ipmi
  report_interval:
    description:
      - Seconds between two heartbeats of nova-compute, the C([DEFAULT] report_interval) of the compute hosts
        (Nova's default is 10). Setting it lower than the real value makes a live host look silent.
    type: float
    default: 10.0
  retries:
    description:
      - How many times a power state read the BMC did not answer is sent again. Rejected credentials are never
        retried.
    type: int
    default: 2
  state:
    description:
      - The state to verify. Only V(off) (fenced) is supported; the option exists so that the C(bmc) action
        group's C(module_defaults) apply to this module as to the fence modules.
    type: str
    choices: ['off']
    default: 'off'
  system_id:
    description:
      - Id of the system under C(/redfish/v1/Systems) (O(protocol=redfish) only); without it, the BMC's single
        system.
    type: str
  timeout:
    description:
      - Seconds the whole verification may take. The Nova heartbeat is watched until it is provably silent or
        this deadline passes, so it must cover O(report_interval) x O(missed_heartbeats) after the host died.
    type: float
    default: 60.0
  username:
    description:
      - User name on the BMC (read access to the power state is enough).
      - Required unless O(protocol=none).
    type: str
attributes:
  check_mode:
    description: The module only reads; it runs the same in check mode and never reports a change.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
requirements:
  - pyghmi >= 1.6.19 for O(protocol=ipmi)
  - requests for O(protocol=redfish)
  - openstacksdk >= 4.0 for O(nova_heartbeat=true)
notes:
  - Probes use TCP only. ICMP echo needs a raw socket (root or C(CAP_NET_RAW)) or, unprivileged, a datagram
    ICMP socket that the kernel allows only for the groups in C(net.ipv4.ping_group_range); a TCP connection
    to a port the host listens on gives the same evidence without privileges.
  - A refusal from a firewall in front of the host (C(REJECT --reject-with tcp-reset)) also counts as an
    answer. Point probes at addresses whose silence means the host is down.
  - Nova's own service C(state) (V(up)/V(down)) and C(forced_down) are returned but never decide. C(state) is
    derived from the same C(updated_at) with Nova's C(service_down_time), and says V(down) for any
    forced-down service, alive or not.
  - The Nova signal reads C(GET /os-services) once per poll (every second at most), with compute
    microversion 2.11 unless O(compute_microversion) is set.
  - Run it after a fence module (M(openstack_ha.recovery.ipmi_fence), M(openstack_ha.recovery.redfish_fence))
    and before forcing the service down or evacuating. The C(host_fence) role does, for every fence level.
seealso:
  - module: openstack_ha.recovery.ipmi_fence
  - module: openstack_ha.recovery.redfish_fence
'''

EXAMPLES = r'''
- name: Fence a failed compute host over IPMI and prove it
  block:
    - name: Power the host off through its BMC
      openstack_ha.recovery.ipmi_fence:
        address: "{{ bmc_address }}"
        username: "{{ bmc_username }}"
        password: "{{ bmc_password }}"

    - name: Prove it is fenced (BMC off, no nova-compute heartbeat, sshd silent on the storage network)
      openstack_ha.recovery.fence_verify:
        cloud: production
        host: compute-7
        address: "{{ bmc_address }}"
        username: "{{ bmc_username }}"
        password: "{{ bmc_password }}"
        probes:
          - host: 10.40.0.17
            port: 22
      register: fence_evidence

- name: Gather the evidence over Redfish without failing, and decide in the play
  openstack_ha.recovery.fence_verify:
    cloud: production
    host: compute-7
    protocol: redfish
    address: https://compute-7-bmc.example.com
    username: root
    password: "{{ vault_bmc_password }}"
    report_interval: 10
    missed_heartbeats: 3
    timeout: 90
    fail_when_not_fenced: false
  register: fence_evidence

- name: Verify a host fenced at its switch port, without the BMC (Nova heartbeat and probes)
  openstack_ha.recovery.fence_verify:
    cloud: production
    host: compute-7
    protocol: none
    probes:
      - host: 10.20.0.17
        port: 22
      - host: 10.40.0.17
        port: 3260
'''

RETURN = r'''
elapsed:
  description: Seconds the verification took.
  returned: always
  type: float
  sample: 3.412
evidence:
  description: What each signal showed, with its verdict and the raw values read.
  returned: always
  type: dict
  contains:
    bmc:
      description:
        - The BMC signal. C(verdict) is V(off), V(not_off), V(unknown) or V(skipped) (O(protocol=none)).
        - C(bmc) names the BMC, C(reads) lists every power state read in order, C(power) is the last one,
          C(error) says why it could not be read, C(elapsed) is in seconds.
      type: dict
      returned: always
      sample: {verdict: 'off', protocol: ipmi, bmc: 'IPMI BMC 10.20.0.15:623', reads: ['off', 'off', 'off'],
               power: 'off', confirmations: 3, error: null, elapsed: 0.213}
    nova:
      description:
        - The Nova heartbeat signal. C(verdict) is V(silent), V(alive), V(unproven), V(unknown) or V(skipped)
          (O(nova_heartbeat=false)).
        - C(updated_at) is the last heartbeat as Nova returns it, C(heartbeat_age) its age in seconds by
          C(clock) (V(nova-api) or V(controller)), C(stale_after) the age silence needs, C(watched) how long the
          module watched (C(observe_for) needed), C(reads) how many times it read the service, C(waited) whether
          it watched at all (not when another signal already refuted the fence); C(state),
          C(status) and C(forced_down) as Nova returns them; C(error) says why it could not be read.
      type: dict
      returned: always
      sample: {verdict: silent, host: compute-7, state: down, status: enabled, forced_down: false,
               updated_at: '2026-11-22T05:15:01.000000', heartbeat_age: 31.2, stale_after: 30.0, watched: 15.1,
               observe_for: 15.0, reads: 16, waited: true, clock: controller, error: null}
    probes:
      description:
        - One entry per probe, in order, with C(host), C(port), C(verdict) (V(silent), V(answered) or
          V(unknown)), C(detail) and C(elapsed).
      type: list
      elements: dict
      returned: always
      sample: [{host: 10.40.0.17, port: 22, verdict: silent, detail: 'no answer within 1.0 s', elapsed: 1.001}]
fenced:
  description: Whether the host is provably fenced (every signal in use gave its fenced verdict).
  returned: always
  type: bool
  sample: true
reasons:
  description: Why the host is not provably fenced, one sentence per signal that did not show it; empty when fenced.
  returned: always
  type: list
  elements: str
  sample: ['nova-compute on compute-7 wrote a heartbeat while fence_verify watched (updated_at
            2026-11-22T05:15:03.000000): the host runs after the fence; a BMC that says off is wrong about this host']
'''

import copy

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.openstack_ha.recovery.plugins.module_utils._fence_verify import (
    FENCE_VERIFY_RESULT_KEYS,
    run_fence_verify_module,
)
from ansible_collections.openstack_ha.recovery.plugins.module_utils._ipmi import IPMI_PORT
from ansible_collections.openstack_ha.recovery.plugins.module_utils._openstack import OPENSTACK_ARGUMENT_SPEC

RETURNED_KEYS = FENCE_VERIFY_RESULT_KEYS

BMC_PARAMETERS = ('address', 'username', 'password')


def main():
    argument_spec = copy.deepcopy(OPENSTACK_ARGUMENT_SPEC)
    argument_spec.update(
        address=dict(type='str'),
        bmc_validate_certs=dict(type='bool', default=True),
        confirmations=dict(type='int', default=3),
        fail_when_not_fenced=dict(type='bool', default=True),
        host=dict(type='str', required=True),
        missed_heartbeats=dict(type='int', default=3),
        nova_heartbeat=dict(type='bool', default=True),
        password=dict(type='str', no_log=True),
        poll_interval=dict(type='float', default=0.1),
        port=dict(type='int', default=IPMI_PORT),
        probe_timeout=dict(type='float', default=1.0),
        probes=dict(type='list', elements='dict', default=[], options=dict(
            host=dict(type='str', required=True),
            port=dict(type='int', required=True),
        )),
        protocol=dict(type='str', default='ipmi', choices=['ipmi', 'redfish', 'none']),
        report_interval=dict(type='float', default=10.0),
        retries=dict(type='int', default=2),
        state=dict(type='str', default='off', choices=['off']),
        system_id=dict(type='str'),
        timeout=dict(type='float', default=60.0),
        username=dict(type='str'),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_if=[('protocol', 'ipmi', BMC_PARAMETERS), ('protocol', 'redfish', BMC_PARAMETERS)],
        supports_check_mode=True,
    )
    run_fence_verify_module(module)


if __name__ == '__main__':
    main()
