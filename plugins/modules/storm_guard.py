#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: storm_guard
short_description: Decide whether a failover of a compute host may proceed, or is part of a storm
version_added: 0.1.0
description:
  - A safety gate of the failover runbook. Automatic failover is right for one failed host; when many hosts
    fail together (a rack's power, a switch, a storage outage, a broken control plane that makes healthy hosts
    look dead), failing them over one after the other makes things worse. This module reads Nova and returns
    the verdict V(proceed) or V(refuse) with its evidence. Nothing in Nova is changed (with O(claim=true) a
    V(proceed) writes this run's claim in O(lock_dir), see B(Claims)).
  - B(Failure domain) (O(failure_domain)). V(availability_zone) - the hosts whose nova-compute service is in
    the availability zone of O(host). V(aggregate) - the hosts sharing any host aggregate with O(host), or
    the hosts of the aggregate named by O(aggregate). V(all) - every nova-compute host.
  - B(Down hosts). A host of the domain counts as down when Nova reports its service down or it is forced
    down, whatever its reason (a powered-off host in maintenance counts too). O(host) itself always counts as
    down, whatever Nova says yet - the failover takes it out of service.
  - The verdict is V(refuse) when B(any) of these holds, else V(proceed).
  - (1) down hosts / domain hosts x 100 B(>) O(max_down_percent) (compared unrounded). With 3 hosts and the
    default 34, one down host (33.3%) proceeds and two (66.7%) are refused; with 2 hosts, any failover is
    refused unless O(max_down_percent) is at least 50.
  - (2) down hosts B(>) O(max_down_hosts), when set.
  - (3) recent failovers B(>=) O(max_failovers), that is, this failover would be one more than
    O(max_failovers) within O(window) seconds. A recent failover is a nova-compute service, anywhere in the
    cloud, disabled with the failover marker C(openstack_ha:failover run=<run id> at=<UTC time>) whose time is
    at most O(window) seconds ago (or in the future of this controller's clock). The history therefore lives in
    Nova - it survives a controller restart and every controller sees it - and a host leaves it when it is
    restored (enabled). A marker of run O(run_id) on O(host) itself is this same failover run again, not
    another one, and is left out. A reason that starts with C(openstack_ha:failover) but does not parse counts
    (nothing shows it is old).
  - B(Claims). The marker is written only after the fence, so two failovers started together would both pass
    (3). With O(lock_dir) set, the claims in O(lock_dir)/failover-claims.json count as recent failovers too (a
    claim of a host that also has a marker counts once), and with O(claim=true) a V(proceed) verdict writes this
    run's claim (C(host), C(run), C(at)) there - the only change this module makes. Reading the claims, deciding
    and writing happen under an exclusive flock on O(lock_dir)/failover-claims.json.guard, so of two runs racing
    through the gate the second counts the first. Give every controller that may fail hosts over the same
    O(lock_dir) (the directory of openstack_ha.recovery.run_lock's locks).
  - With O(fail_on_refuse=true) a refusal fails the task with a message that names the down hosts, the
    failovers and the limits exceeded; the failure carries the same evidence.
author:
  - openstack_ha.recovery maintainers (@openstack-ha)
extends_documentation_fragment:
  - openstack_ha.recovery.openstack
options:
  claim:
    description:
      - Whether a V(proceed) verdict records this run's claim in O(lock_dir) (see B(Claims)). Needs O(run_id). A
        live claim of the same host (a rerun of its failover) is kept as it is, and nothing changes.
    type: bool
    default: false
  aggregate:
    description:
      - With O(failure_domain=aggregate), the name of the host aggregate that is the failure domain (a rack, a
        power feed), instead of all the aggregates of O(host). O(host) must be in it.
    type: str
  fail_on_refuse:
    description:
      - Whether a V(refuse) verdict fails the task. Set V(false) to get the verdict and decide in the play.
      - Bad options, an unknown O(host) or O(aggregate), and API errors always fail.
    type: bool
    default: true
  failure_domain:
    description:
      - Which hosts form the failure domain of O(host) (see the description).
    type: str
    choices: [availability_zone, aggregate, all]
    default: availability_zone
  host:
    description:
      - The compute host to fail over, as the nova-compute service reports it. Unknown hosts fail, naming the
        hosts Nova knows.
    type: str
    required: true
  lock_dir:
    description:
      - The directory of the failover claims (see B(Claims)); created (mode 0700) when a claim is written.
      - Unset with O(claim=true), the default of openstack_ha.recovery.run_lock - the controller's environment
        variable E(OPENSTACK_HA_LOCK_DIR) if set, else C(~/.ansible/openstack_ha/locks). Unset with O(claim=false),
        only Nova's markers count.
    type: path
  max_down_hosts:
    description:
      - Refuse when more hosts of the domain than this are down (O(host) included). Unset, only
        O(max_down_percent) limits.
    type: int
  max_down_percent:
    description:
      - Refuse when the down share of the domain (O(host) included) is more than this, in percent.
    type: float
    default: 34.0
  max_failovers:
    description:
      - How many failovers may happen within O(window) seconds; refuse when that many already did.
      - V(0) refuses every failover (a kill switch).
    type: int
    default: 3
  run_id:
    description:
      - The id of this failover run, as written into the failover marker. A marker of this run on O(host) is not
        counted as a recent failover (a rerun of one failover is not a second failover).
    type: str
  window:
    description:
      - Seconds that a failover counts as recent.
    type: int
    default: 3600
attributes:
  check_mode:
    description: Reads the same; with O(claim=true) writes no claim (RV(claimed) says it would).
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
notes:
  - Requests, with their compute API microversions (or O(compute_microversion) when it is at least that) - the
    nova-compute services (2.53), and with O(failure_domain=aggregate) the host aggregates (2.41). Needs an
    account that may list services (admin by default).
  - Nova reports a service down only C(service_down_time) seconds (60 by default) after its last heartbeat, so
    a host that died a moment ago still counts as up.
seealso:
  - module: openstack_ha.recovery.nova_service
  - module: openstack_ha.recovery.nova_host_info
'''

EXAMPLES = r'''
- name: Refuse the failover of compute-17 when too much of its availability zone is down
  openstack_ha.recovery.storm_guard:
    cloud: production
    host: compute-17
    run_id: "{{ failover_run_id }}"

- name: Take the rack aggregate as the failure domain, and decide in the play
  openstack_ha.recovery.storm_guard:
    cloud: production
    host: compute-17
    failure_domain: aggregate
    aggregate: rack-a
    max_down_percent: 25
    max_down_hosts: 2
    max_failovers: 5
    window: 7200
    run_id: "{{ failover_run_id }}"
    fail_on_refuse: false
  register: storm

- name: Pass the gate and claim the failover, so a failover started at the same time counts this one
  openstack_ha.recovery.storm_guard:
    cloud: production
    host: compute-17
    run_id: "{{ failover_run_id }}"
    lock_dir: /srv/shared/openstack_ha/locks
    claim: true
'''

RETURN = r'''
claim_path:
  description: The claims file read (and written with O(claim=true)); null without O(lock_dir).
  returned: always
  type: str
  sample: /srv/shared/openstack_ha/locks/failover-claims.json
claimed:
  description:
    - Whether the failover of O(host) is claimed (O(claim=true) and V(proceed)) - by a claim this run wrote (in
      check mode, would write; then changed is true) or by a live claim of O(host) that was there already.
  returned: always
  type: bool
  sample: true
domain:
  description: The failure domain; null when the module failed before knowing it.
  returned: always
  type: dict
  contains:
    kind:
      description: O(failure_domain).
      type: str
    name:
      description: The availability zone, the aggregate names joined with C(, ), or V(all).
      type: str
    aggregates:
      description: The aggregate names, sorted; empty unless RV(domain.kind) is V(aggregate).
      type: list
      elements: str
    size:
      description: How many hosts the domain has (hosts with a nova-compute service).
      type: int
  sample: {kind: availability_zone, name: nova, aggregates: [], size: 3}
down:
  description: The domain's hosts counted as down, sorted; O(host) is always one of them.
  returned: always
  type: list
  elements: str
  sample: [compute-17, compute-18]
down_percent:
  description: RV(down) / RV(domain.size) x 100, rounded to one decimal; null when the module failed before.
  returned: always
  type: float
  sample: 66.7
host:
  description: The host asked for.
  returned: always
  type: str
  sample: compute-17
hosts:
  description: Every host of the domain with its nova-compute service as Nova reports it, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    host:
      description: Host name.
      type: str
    state:
      description: V(up) or V(down) (a forced-down service is V(down)).
      type: str
    forced_down:
      description: Whether the service is forced down.
      type: bool
    status:
      description: V(enabled) or V(disabled).
      type: str
    disabled_reason:
      description: Why the service is disabled; null when none.
      type: str
    down:
      description: Whether the host counts as down (always true for O(host)).
      type: bool
  sample:
    - {host: compute-16, state: up, forced_down: false, status: enabled, disabled_reason: null, down: false}
    - {host: compute-17, state: down, forced_down: false, status: enabled, disabled_reason: null, down: true}
    - {host: compute-18, state: down, forced_down: true, status: disabled,
       disabled_reason: 'openstack_ha:failover run=20261122T101500Z-compute-18-4711 at=2026-11-22T10:15:00Z',
       down: true}
reasons:
  description: Why the verdict is V(refuse), one sentence per limit exceeded; empty for V(proceed).
  returned: always
  type: list
  elements: str
  sample: ['2 of 3 hosts in failure domain availability_zone nova are down or forced down, counting compute-17
            (compute-17, compute-18): 66.7% is more than max_down_percent 34.0%']
recent_failovers:
  description:
    - The recent failovers counted against O(max_failovers) - C(host), C(run) and C(at) of each marker, oldest
      first; C(run) and C(at) are null for a failover marker that does not parse.
  returned: always
  type: list
  elements: dict
  sample: [{host: compute-18, run: 20261122T101500Z-compute-18-4711, at: '2026-11-22T10:15:00Z'}]
verdict:
  description: V(proceed) or V(refuse); null when the module failed before deciding.
  returned: always
  type: str
  sample: refuse
'''

from ansible_collections.openstack_ha.recovery.plugins.module_utils._openstack import OpenStackModule, RecoveryError
from ansible_collections.openstack_ha.recovery.plugins.module_utils._storm_guard import (
    FAILURE_DOMAINS,
    REFUSE,
    STORM_GUARD_RESULT_KEYS,
    refusal_message,
    storm_guard,
)

RETURNED_KEYS = STORM_GUARD_RESULT_KEYS


class StormGuardModule(OpenStackModule):
    argument_spec = dict(
        aggregate=dict(type='str'),
        claim=dict(type='bool', default=False),
        fail_on_refuse=dict(type='bool', default=True),
        failure_domain=dict(type='str', default='availability_zone', choices=list(FAILURE_DOMAINS)),
        host=dict(type='str', required=True),
        lock_dir=dict(type='path'),
        max_down_hosts=dict(type='int'),
        max_down_percent=dict(type='float', default=34.0),
        max_failovers=dict(type='int', default=3),
        run_id=dict(type='str'),
        window=dict(type='int', default=3600),
    )

    def act(self, conn):
        params = self.params
        result = storm_guard(conn, params['host'], failure_domain_kind=params['failure_domain'],
                             aggregate=params['aggregate'], max_down_percent=params['max_down_percent'],
                             max_down_hosts=params['max_down_hosts'], window=params['window'],
                             max_failovers=params['max_failovers'], run_id=params['run_id'],
                             lock_dir=params['lock_dir'], claim=params['claim'], check_mode=self.check_mode)
        if result['verdict'] == REFUSE and params['fail_on_refuse']:
            facts = dict(result)
            del facts['changed']
            raise RecoveryError(refusal_message(result), facts)
        return result


def main():
    StormGuardModule().run()


if __name__ == '__main__':
    main()
