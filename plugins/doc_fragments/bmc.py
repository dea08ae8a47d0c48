# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options of plugins/module_utils/_bmc.py BMC_ARGUMENT_SPEC, shared by every fence module.
    DOCUMENTATION = r'''
options:
  confirmations:
    description:
      - How many consecutive power state reads must return O(state) before the result is RV(verified).
      - Reads are O(poll_interval) seconds apart; all of them happen within O(timeout).
    type: int
    default: 3
  password:
    description:
      - Password of the BMC user. Never logged, never part of an error message.
    type: str
    required: true
  poll_interval:
    description:
      - Seconds between two power state reads while waiting for the BMC to confirm O(state).
    type: float
    default: 0.1
  retries:
    description:
      - How many times a request the BMC did not answer (timeout, connection refused, HTTP 5xx) is sent again
        before the module fails. Rejected credentials are never retried.
    type: int
    default: 2
  state:
    description:
      - V(off) powers the host off at once (no operating system shutdown) and verifies it.
      - V(on) powers the host on (unfencing) and verifies it.
      - Power cycle and reset are never used, because they do not leave a host off.
    type: str
    choices: ['off', 'on']
    default: 'off'
  timeout:
    description:
      - Seconds the whole operation may take, from the first read to the last confirmation, retries included.
      - Real BMCs apply a power change seconds after accepting it; give slow ones a longer timeout.
    type: float
    default: 30.0
  username:
    description:
      - User name on the BMC. It needs the privilege to control chassis power (IPMI operator or administrator).
    type: str
    required: true
notes:
  - RV(verified) means that O(confirmations) consecutive reads of the BMC returned O(state). It is the BMC's
    word only; a BMC that reports V(off) while the host still runs cannot be caught this way. Before evacuating
    a host, cross-check with independent evidence (M(openstack_ha.recovery.fence_verify)).
  - Check mode reads the real power state and reports whether it would change; it never changes it.
  - A BMC that refuses the power command with a reply meaning "already in that state" (IPMI completion code
    0xD5, Redfish HTTP 400 or 409) is not an error once the reads confirm O(state).
'''
