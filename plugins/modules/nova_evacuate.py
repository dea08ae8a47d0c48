#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: nova_evacuate
short_description: Evacuate the instances of a failed compute host, in priority order, resumably
version_added: 0.1.0
description:
  - Moves the instances of a compute host that is down to other hosts with Nova's evacuate action, and follows each
    one, through its evacuation migration record and the server itself, until it is in its target state on another
    host - V(ACTIVE), or V(SHUTOFF) for an instance that was V(SHUTOFF) before (an instance in V(ERROR) is brought
    up V(ACTIVE)). An instance that arrives in the other power state is started or stopped.
  - Refuses unless the host's nova-compute service is forced down or down, naming the host. Fence the host and
    force its service down first with M(openstack_ha.recovery.nova_service). Evacuating a host that still runs
    makes its instances run twice.
  - Selection - every instance on the host, except those the evacuation policy marks not evacuable (see
    O(evacuable_tag)), those listed in O(exclude), and those in V(ERROR) unless O(include_error). O(include) names
    instances to move whatever the policy says. An instance in V(ERROR) because an earlier evacuation of it failed
    is always retried.
  - Order - instances move in groups of equal priority, highest first; a group starts when the one before has
    ended. The priority is the integer in the flavor extra spec O(priority_tag), else the image property of that
    name, else 0.
  - Targets - O(target_order) says where instances go - the scheduler chooses (the default), reserved hosts only,
    or one of the two first and the other for what the first cannot hold - unless O(target_hosts) names the hosts.
    A failed evacuation leaves the instance on the failed host (in V(ERROR)); it is evacuated again, up to
    O(retries) times, on another host - the next of its O(target_hosts), or the next of its candidate hosts that
    has not failed it yet (Nova's scheduler still checks that host).
  - Reserved hosts - spare hosts kept disabled with the reason V(reserved) (or starting V(reserved ) or
    V(reserved:)), listed in O(reserved_hosts) or found in the failed host's availability zone and aggregates
    (O(discover_reserved_hosts)). They take instances only with a O(target_order) that names them, each named in
    the evacuation request. Nova's scheduler never places an instance on a disabled host, even one named, so a
    reserved host is enabled right before the first evacuation sent to it, and only then - a spare that gets no
    instance stays disabled; check mode says which it would enable.
  - A reserved host this run enabled is marked used by being enabled - Nova keeps no reason on an enabled
    service, so it is an ordinary compute host afterwards, no longer found as reserved - and by
    RV(reserved_hosts_used), which names it with the reason it had and the instances it took, for the runbook to
    record and report. To make it a spare again, drain it and disable it with the reason V(reserved)
    (M(openstack_ha.recovery.nova_drain) with O(openstack_ha.recovery.nova_drain#module:disabled_reason=reserved)).
    A rerun after an interrupted run no longer finds the spares that run enabled; list them in O(reserved_hosts).
  - Capacity - before anything moves, the instances to move are placed first-fit in priority order over what the
    candidate hosts have free in Placement; O(capacity_policy) says what happens to the instances that would not
    fit.
  - Up to O(concurrency) instances move at once. Each is locked while it moves, with a reason naming the host and
    the state before the move, and unlocked afterwards; an instance locked by someone else is moved and left
    locked.
  - Resumable - an instance that is no longer on the host is not touched again. An instance whose evacuation is
    under way (a rebuild task state, or an evacuation migration not yet done) is waited for and never evacuated a
    second time; Nova itself accepts a second evacuation of a moving instance and the instance then gets stuck.
    Instances an interrupted run moved but did not unlock are checked and unlocked.
  - Fails, after everything that could be done was done, when any selected instance did not reach its target
    state on another host within O(timeout); the failure carries the record of every instance.
author:
  - openstack_ha.recovery maintainers (@openstack-ha)
extends_documentation_fragment:
  - openstack_ha.recovery.openstack
options:
  capacity_policy:
    description:
      - What to do when the capacity estimate says some instances to move would not fit on the candidate hosts.
      - V(partial) moves, in priority order, the instances that fit, and does not evacuate the others - they stay
        on the failed host as they are (not put in V(ERROR) by a hopeless attempt), reported V(failed) with a
        reason starting V(no capacity), so the module fails after moving the rest. It is the default because a
        failover should bring back as much as it can, the most important first, and tell loudly what it could
        not - failing all of it over a shortfall in the last group would leave every instance down.
      - V(fail) fails before moving anything, naming each instance that would not fit and what it needs (check
        mode too). For operators who want to decide themselves (add capacity, enable spares) before anything moves.
      - V(ignore) reports the estimate but sends every selected instance, and Nova's scheduler decides (instances
        it cannot place end in V(ERROR) on the failed host and are retried per O(retries)). For clouds where the
        estimate is known to be wrong (see the notes).
    type: str
    choices: [partial, fail, ignore]
    default: partial
  concurrency:
    description:
      - How many instances move at the same time (threads, each sending its instance's requests).
    type: int
    default: 10
  discover_reserved_hosts:
    description:
      - With a O(target_order) that uses reserved hosts, also use the other hosts of the failed host's
        availability zone and aggregates that are disabled with a reserved reason (V(reserved), or starting
        V(reserved ) or V(reserved:)), up and not forced down, after those of O(reserved_hosts), by name.
    type: bool
    default: true
  evacuable_default:
    description:
      - Whether an instance is evacuable when neither its flavor, nor its image, nor the host's aggregates set
        O(evacuable_tag).
      - Set it to V(false) to evacuate only the instances an operator marked.
    type: bool
    default: true
  evacuable_sources:
    description:
      - Where O(evacuable_tag) is looked up, always in the order flavor extra specs, image properties, metadata of
        the host's aggregates (where any aggregate saying no wins). The first that sets it decides; V(true),
        V(yes), V(on) or V(1) (any case) mean evacuable, any other value not. Server metadata is never read,
        projects can write it.
      - Leave V(image) out when projects upload their own images and must not choose for themselves.
      - V([]) evacuates every instance (with O(evacuable_default=true)) whatever the policy says.
    type: list
    elements: str
    choices: [flavor, image, aggregate]
    default: [flavor, image, aggregate]
  evacuable_tag:
    description:
      - The flavor extra spec, image property and aggregate metadata key that marks instances evacuable.
    type: str
    default: evacuable
  exclude:
    description:
      - Instances (ids or names) never to evacuate. A name matches every instance of that name on the host.
    type: list
    elements: str
    default: []
  host:
    description:
      - The failed compute host, as its nova-compute service reports it (C(openstack compute service list)).
    type: str
    required: true
  include:
    description:
      - Instances (ids or names) to evacuate whatever the evacuation policy says, in V(ERROR) too.
      - With O(evacuable_sources=[]) and O(evacuable_default=false), only these move.
    type: list
    elements: str
    default: []
  include_error:
    description:
      - Whether to evacuate instances in V(ERROR) (they come up V(ACTIVE) on their new host).
      - An instance in V(ERROR) because an earlier evacuation of it failed is evacuated again in any case.
    type: bool
    default: false
  priority_tag:
    description:
      - The flavor extra spec (else image property) holding an instance's evacuation priority, an integer; higher
        moves first. Instances without it have priority 0; a value that is not an integer counts as 0, with a
        warning.
    type: str
    default: evacuation_priority
  reserved_hosts:
    description:
      - Spare hosts to use, in this order, with a O(target_order) that uses reserved hosts (ignored, with a
        warning, with V(scheduler)). Each is filled, as far as the capacity estimate goes, before the next.
      - A listed host may be enabled, or disabled with a reserved reason or without any reason (then this module
        enables it when it sends it an instance). One disabled for another reason (maintenance, a failover), down
        or forced down is left out and reported in RV(capacity.excluded_hosts). An unknown host, or the failed
        host itself, fails.
    type: list
    elements: str
    default: []
  lost_evacuation_timeout:
    description:
      - Seconds an evacuation may stay C(accepted) before it is declared lost, counted by this run from when it
        first sees it so; V(0) never declares one lost (the instance is only waited for, until O(timeout)).
      - Nova loses an evacuation when nova-conductor stops or RabbitMQ restarts while it holds the request; the
        migration stays C(accepted) and the instance in task state C(rebuilding) on the failed host for ever. A
        lost one is recovered only when fresh reads still show it so (the instance on the failed host, in task
        state C(rebuilding) or none, its newest migration C(accepted), Placement holding no destination for it -
        a claimed one means a compute may still be at it, unless the instance has no task state any more, as when the
        compute gave the move up) and the failed host is still down or forced down;
        then it is evacuated again as a retry (counted in O(retries), within O(timeout)). Nova accepts the
        evacuation of an instance in task state C(rebuilding), so its state is not reset and a stopped instance
        arrives stopped. A rerun does
        the same for such an instance left by an earlier run. Reported in RV(instances[].lost_evacuations).
      - Nova never closes the lost evacuation's migration record. Its nova-compute completes one evacuation record
        per instance each time it starts, and Nova keeps its service forced down while one is V(done), so
        restoring the failed host later may take a second start of its nova-compute.
      - Keep it above the time the cloud's nova-conductor and scheduler may take to pass an evacuation on to
        a compute (their rpc_response_timeout, 60 s by default); an evacuation that was only slow and still
        arrives after the retry started would rebuild the instance a second time. At least 30.
      - Whatever this option, a move cut off by its destination is evacuated again as a retry too - the destination
        compute claimed it (migration C(pre-migrating)) and Nova then has that host forced down - fenced by its
        own failover or by its operator - while the instance is still on the failed host. A destination that is
        only down is never taken for dead (it may still be rebuilding); the instance is waited for, and the
        timeout's message says to fence that host and run again. Reported in RV(instances[].lost_evacuations)
        too; Placement keeps the instance's allocation on that destination (its compute leaves an instance that
        is not its own alone), named in C(allocated_on).
    type: int
    default: 120
  retries:
    description:
      - How many more times an instance whose evacuation failed is evacuated again, each time on another host.
      - A retry is sent once Nova sees a host to take the instance up (the one it names, or for the scheduler any
        other enabled host), within O(timeout). Computes report through nova-conductor, so after a restart of
        it or of RabbitMQ Nova sees every host down for a while, and an evacuation then finds no host.
    type: int
    default: 2
  target_hosts:
    description:
      - Hosts to evacuate to, instead of letting the scheduler choose; Nova's scheduler still checks each
        (capacity, server group policies). Only with O(target_order=scheduler).
      - Hosts that are disabled, down or forced down are left out (Nova never places an instance there, even when
        named); the module fails before moving anything when none is left. An unknown host fails too.
    type: list
    elements: str
    default: []
  target_order:
    description:
      - Where instances go, when O(target_hosts) is not given.
      - V(scheduler) - Nova's scheduler chooses among the enabled hosts; reserved hosts are left alone.
      - V(reserved) - only reserved hosts (O(reserved_hosts), O(discover_reserved_hosts)), each instance to the
        host the capacity estimate planned for it, one spare filled before the next.
      - V(reserved_then_scheduler) - reserved hosts for what they can hold, in priority order, the scheduler for
        the rest.
      - V(scheduler_then_reserved) - the scheduler for what the enabled hosts can hold, reserved hosts for the rest
        (and for a retry of an instance the enabled hosts failed).
      - A retry goes to the next candidate host of the instance, its own pool first, then the other.
    type: str
    choices: [scheduler, reserved, reserved_then_scheduler, scheduler_then_reserved]
    default: scheduler
  target_spread:
    description:
      - With O(target_hosts), V(true) spreads the instances over the hosts in turn (the first instance to the
        first host, the second to the second, ...), V(false) sends every instance to the first host, and to the
        next only on a retry. A retry always goes to the next host of the list.
    type: bool
    default: true
  timeout:
    description:
      - Seconds an instance may take, from its first request to its target state on another host, retries
        included. An instance still moving then is reported failed and never evacuated again by this run.
    type: int
    default: 300
attributes:
  check_mode:
    description:
      - Reads the host's service, instances, evacuation migrations, the policy, the other hosts and their free
        capacity in Placement, and returns exactly which instances would move, in which groups and order, to
        which candidate hosts, the instances that would not fit (failed with a V(no capacity) reason under
        O(capacity_policy=partial), a failure under V(fail)), and the reserved hosts it would enable; sends
        nothing. Refusals fail as they would.
    support: full
  diff_mode:
    description: Per instance to move, its host and status before, and after (planned in check mode).
    support: full
notes:
  - Evacuation requests use compute API microversion 2.94, the newest that keeps an evacuated instance's state
    (from 2.95 Nova lands every evacuated instance stopped). With O(compute_microversion) set (at least 2.73),
    that one is used; from 2.95 the instances whose target is V(ACTIVE) are started after their move. A cloud
    older than 2.94 (before Zed) needs O(compute_microversion) between 2.73 and its newest.
  - Reads and locks use 2.73 (lock reasons), migrations 2.59, services 2.53, aggregates 2.41. Needs an admin role.
  - The plan's reads (the host's servers, its evacuation migrations, the aggregates, the locked servers, the
    hypervisors; then two Placement reads per candidate host's provider) are sent at once, over one connection
    and one token, after the read of the services that decides whether the host may be evacuated at all.
  - Requests per instance - lock, evacuate, unlock, and a read of the server when its migration ends (and every
    10 seconds while it moves). While instances move, one list of the host's evacuation migrations per second
    serves them all; right before each evacuation that list (read after the plan) is checked for a move of the
    instance the plan did not see. The plan's read of the server stands in for a new one for 30 seconds; an
    instance whose move starts later (a later priority group) is read again.
  - Runs of this module for the same host must not overlap (use one runbook per host, with a throttle in
    event-driven setups). Each instance is checked again right before its evacuation, which leaves a window of
    about one request between two concurrent runs.
  - Capacity is a first-fit estimate in priority order over what the candidate hosts have free in Placement (the
    other usable hosts of the host's availability zone and aggregates, the reserved hosts, or O(target_hosts));
    the scheduler's hosts are filled the most free memory first, reserved hosts one after the other. It counts
    vcpus, memory and disk only (free, and each inventory's max_unit) - not server group policies, traits, PCI devices, or aggregates that limit
    projects or flavors - and Nova's scheduler has the last word.
  - Enabling a reserved host uses compute API 2.53 (PUT /os-services/{id}); nova-api then asks that host to drop
    its COMPUTE_STATUS_DISABLED trait before it answers.
seealso:
  - module: openstack_ha.recovery.nova_service
  - module: openstack_ha.recovery.nova_host_info
'''

EXAMPLES = r'''
- name: Recover the instances of a failed host
  module_defaults:
    group/openstack_ha.recovery.openstack:
      cloud: production
  block:
    - name: Tell Nova the fenced host is down
      openstack_ha.recovery.nova_service:
        host: compute-17
        forced_down: true
        enabled: false
        disabled_reason: fenced by openstack_ha.recovery

    - name: Evacuate its instances, highest priority first
      openstack_ha.recovery.nova_evacuate:
        host: compute-17
        concurrency: 16
      register: evacuation

- name: Show which instances would move where, without moving any
  openstack_ha.recovery.nova_evacuate:
    cloud: production
    host: compute-17
  check_mode: true
  register: plan

- name: Move only what operators marked (flavor or aggregate ha=true) to two spare hosts, in ERROR too
  openstack_ha.recovery.nova_evacuate:
    cloud: production
    host: compute-17
    evacuable_tag: ha
    evacuable_sources: [flavor, aggregate]
    evacuable_default: false
    include_error: true
    target_hosts: [compute-spare-1, compute-spare-2]
    exclude: [scratch-vm]
    timeout: 600

- name: Evacuate to the spare hosts of the rack first (disabled with reason "reserved"), the rest anywhere
  openstack_ha.recovery.nova_evacuate:
    cloud: production
    host: compute-17
    target_order: reserved_then_scheduler
    reserved_hosts: [compute-spare-1]   # first; then the others found disabled as reserved
  register: evacuation   # evacuation.reserved_hosts_used names the spares it enabled: no longer spare

- name: Move nothing unless everything fits
  openstack_ha.recovery.nova_evacuate:
    cloud: production
    host: compute-17
    capacity_policy: fail

- name: Move exactly two instances, whatever the policy says
  openstack_ha.recovery.nova_evacuate:
    cloud: production
    host: compute-17
    evacuable_sources: []
    evacuable_default: false
    include: [db-1, 4a5e6c0e-2b8f-4f5c-9a55-3f7b0f1f6d2e]
'''

RETURN = r'''
capacity:
  description:
    - The candidate hosts (the other usable hosts of the host's availability zone and aggregates, or the usable
      O(target_hosts)) and what they have free in Placement, against what the instances to move need (keys
      V(vcpus), V(memory_mb), V(disk_gb)). Null when the module failed before reading it.
  returned: always
  type: dict
  contains:
    hosts:
      description:
        - The candidate hosts (C(host)) with what each has free (C(free)), the most one instance may take there
          (C(max_unit), Placement's limit per allocation, such as its physical cores) and their pool (C(pool) -
          V(scheduler), V(reserved) or V(target_hosts)), in the order the pools are used.
      type: list
      elements: dict
    excluded_hosts:
      description: Hosts left out, with C(host), C(reason) (V(forced down), V(down), V(disabled)) and
        C(disabled_reason); reserved hosts left out too (a listed one disabled for another reason, a spare down).
      type: list
      elements: dict
    needed:
      description: What the instances to evacuate need together.
      type: dict
    free:
      description: What the candidate hosts have free together.
      type: dict
    shortfall:
      description: How much of RV(capacity.needed) exceeds RV(capacity.free) (zeros when it does not).
      type: dict
    sufficient:
      description: Whether every instance to evacuate fits somewhere, placed first-fit in priority order.
      type: bool
    unplaced:
      description:
        - The instances (C(id), C(name), C(priority), C(needs)) that would not fit, in priority order; what
          happens to them is O(capacity_policy)'s choice.
      type: list
      elements: dict
  sample:
    hosts:
      - {host: compute-16, pool: scheduler, free: {vcpus: 60, memory_mb: 120000, disk_gb: 800},
         max_unit: {vcpus: 32, memory_mb: 257000, disk_gb: 900}}
    excluded_hosts:
      - {host: compute-18, reason: disabled, disabled_reason: maintenance}
    needed: {vcpus: 6, memory_mb: 1152, disk_gb: 4}
    free: {vcpus: 60, memory_mb: 120000, disk_gb: 800}
    shortfall: {vcpus: 0, memory_mb: 0, disk_gb: 0}
    sufficient: true
    unplaced: []
groups:
  description:
    - The priority groups in the order they run (C(priority), and C(instances), their ids in order). Instances
      O(capacity_policy=partial) leaves out are not in them.
  returned: always
  type: list
  elements: dict
  sample:
    - {priority: 10, instances: [4a5e6c0e-2b8f-4f5c-9a55-3f7b0f1f6d2e]}
    - {priority: 0, instances: [0f8e1f8a-8f0b-4b6e-9a0e-5d2c1f3a4b5c]}
host:
  description: The evacuated host.
  returned: always
  type: str
  sample: compute-17
instances:
  description:
    - One record per instance on the host (and per instance an interrupted earlier run moved but left locked),
      sorted by name.
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
    project_id:
      description: The server's project.
      type: str
    from:
      description: The evacuated host.
      type: str
    to:
      description: The host the instance is on after its move; null when it did not move.
      type: str
    status_before:
      description: Server status when the module read it, for example V(ACTIVE), V(SHUTOFF), V(ERROR).
      type: str
    status_after:
      description: Server status when the module last read it (as before, in check mode).
      type: str
    target_status:
      description: The status it must reach, V(ACTIVE) or V(SHUTOFF).
      type: str
    priority:
      description: Its evacuation priority.
      type: int
    priority_source:
      description: What set the priority - V(flavor), V(image) or V(default).
      type: str
    evacuable:
      description: Whether the evacuation policy marks it evacuable.
      type: bool
    evacuable_source:
      description: What decided RV(instances[].evacuable) - V(flavor), V(image), V(aggregate:NAME) or V(default).
      type: str
    needs:
      description: What it holds in Placement (C(vcpus), C(memory_mb), C(disk_gb)).
      type: dict
    action:
      description:
        - V(evacuate) (this run evacuates it), V(wait) (its evacuation was already under way, or an earlier run
          moved it; this run waits for it and checks it) or V(none) (skipped).
      type: str
    outcome:
      description:
        - V(moved) (in its target state on another host), V(skipped), V(failed), or V(planned) in check mode.
      type: str
    reason:
      description:
        - Why it was skipped or failed (what Nova said, the fault of the instance); for a moved instance, why it
          was selected beyond the policy (listed in include, retried after a failed evacuation, ...); else null.
      type: str
    candidates:
      description:
        - With O(target_hosts), the hosts in the order its attempts use them. Otherwise the hosts with room for
          it alone, those of its RV(instances[].target_pool) first (its planned reserved host first of all), the
          scheduler's the most free memory first, reserved hosts in their order (where a retry goes).
      type: list
      elements: str
    target_pool:
      description:
        - Where the capacity estimate placed it, which its first attempt follows - V(scheduler) (the scheduler
          chooses), V(reserved) (names its planned reserved host, the first of RV(instances[].candidates)) or
          V(target_hosts); null when it would not fit anywhere or was not to be evacuated by this run.
      type: str
    attempts:
      description:
        - How many attempts this run made for it - evacuation requests, and reserved hosts it could not enable.
      type: int
    history:
      description:
        - Per attempt, C(target) (the host asked for; null for the scheduler), C(dest), C(migration_id),
          C(migration_status) and C(error).
      type: list
      elements: dict
    lost_evacuations:
      description:
        - The evacuations of it declared lost or cut off (see O(lost_evacuation_timeout)), oldest first, each with
          C(migration_id), C(created_at), C(migration_status) (V(accepted) when lost, V(pre-migrating) or
          V(migrating) when its destination's fence cut it off), C(dest_compute) (the host named or the
          destination that claimed it, or null), C(status) and C(task_state)
          (of the instance then), C(accepted_seconds) (how long this run saw it accepted; in check mode its age;
          null for a move cut off),
          C(action) (V(evacuated again), or what check mode would do), C(allocated_on) (the hosts holding
          its Placement allocations then - the failed host, plus a destination the lost move had claimed, which
          Nova leaves allocated; null when Placement could not tell, or in check mode) and C(left_accepted)
          (the ids of its evacuation migrations Nova still holds C(accepted) once it arrived - Nova never closes
          them; its source compute marks them completed when it starts again). Empty when none.
      type: list
      elements: dict
    lock:
      description:
        - Its lock - V(none) (was not locked), V(this run) (locked for the move and unlocked after),
          V(earlier run) (left locked by an interrupted run, unlocked now) or V(other) (locked by someone else,
          left locked).
      type: str
    power_action:
      description: V(start) or V(stop) when it arrived in the other power state than its target; else null.
      type: str
    resumed:
      description: Whether its evacuation was under way (or done) before this run, which only waited for it.
      type: bool
    seconds:
      description: How long this run spent on it; null in check mode and when it was skipped.
      type: float
  sample:
    - id: 4a5e6c0e-2b8f-4f5c-9a55-3f7b0f1f6d2e
      name: db-1
      project_id: 07eb2f1d64a9415e9a07c15193c368da
      from: compute-17
      to: compute-4
      status_before: ACTIVE
      status_after: ACTIVE
      target_status: ACTIVE
      priority: 10
      priority_source: flavor
      evacuable: true
      evacuable_source: flavor
      needs: {vcpus: 2, memory_mb: 512, disk_gb: 1}
      action: evacuate
      outcome: moved
      reason: null
      candidates: [compute-4, compute-5]
      target_pool: scheduler
      attempts: 1
      history:
        - {target: null, dest: compute-4, migration_id: 0d8a6a4c-3b9e-4c8e-9d0e-6c1f5b0b8f11,
           migration_status: done, error: null}
      lock: this run
      power_action: null
      resumed: false
      seconds: 4.2
      lost_evacuations: []
microversion:
  description: The compute API microversion of the evacuation requests.
  returned: always
  type: str
  sample: '2.94'
reserved_hosts_used:
  description:
    - The reserved hosts this run enabled or sent instances to (in check mode, would), in pool order - how a
      used spare is marked, since an enabled Nova service keeps no reason. Empty when none.
  returned: always
  type: list
  elements: dict
  contains:
    host:
      description: The reserved host.
      type: str
    disabled_reason:
      description: Its disabled reason before this run (null when it was enabled already).
      type: str
    action:
      description: V(enabled) (this run enabled it), V(would enable) (check mode) or V(none) (it was enabled).
      type: str
    instances:
      description: Ids of the instances moved there (in check mode, planned there first).
      type: list
      elements: str
  sample:
    - host: compute-spare-1
      disabled_reason: reserved
      action: enabled
      instances: [4a5e6c0e-2b8f-4f5c-9a55-3f7b0f1f6d2e]
service:
  description: The host's nova-compute service as read before anything else; null when the host has none.
  returned: always
  type: dict
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
totals:
  description:
    - Counts - C(instances) (records), C(selected) (not skipped), C(moved), C(skipped), C(failed), C(planned)
      (check mode), C(resumed), C(evacuations) (evacuation requests sent); C(last_evacuation_after) (seconds from
      the start to the last evacuation request answered, null when none) and C(seconds) (the whole run).
    - Null when the module failed before planning.
  returned: always
  type: dict
  sample: {instances: 21, selected: 20, moved: 20, skipped: 1, failed: 0, planned: 0, resumed: 0, evacuations: 20,
           last_evacuation_after: 2.1, seconds: 12.4}
'''

from ansible_collections.openstack_ha.recovery.plugins.module_utils._evacuate import (
    CAPACITY_POLICIES,
    RESULT_KEYS,
    TARGET_ORDERS,
    evacuate_host,
)
from ansible_collections.openstack_ha.recovery.plugins.module_utils._nova import EVACUABLE_SOURCES
from ansible_collections.openstack_ha.recovery.plugins.module_utils._openstack import OpenStackModule

RETURNED_KEYS = RESULT_KEYS


class NovaEvacuateModule(OpenStackModule):
    argument_spec = dict(
        capacity_policy=dict(type='str', choices=list(CAPACITY_POLICIES), default='partial'),
        concurrency=dict(type='int', default=10),
        discover_reserved_hosts=dict(type='bool', default=True),
        evacuable_default=dict(type='bool', default=True),
        evacuable_sources=dict(type='list', elements='str', choices=list(EVACUABLE_SOURCES),
                               default=list(EVACUABLE_SOURCES)),
        evacuable_tag=dict(type='str', default='evacuable'),
        exclude=dict(type='list', elements='str', default=[]),
        host=dict(type='str', required=True),
        include=dict(type='list', elements='str', default=[]),
        include_error=dict(type='bool', default=False),
        lost_evacuation_timeout=dict(type='int', default=120),
        priority_tag=dict(type='str', default='evacuation_priority'),
        reserved_hosts=dict(type='list', elements='str', default=[]),
        retries=dict(type='int', default=2),
        target_hosts=dict(type='list', elements='str', default=[]),
        target_order=dict(type='str', choices=list(TARGET_ORDERS), default='scheduler'),
        target_spread=dict(type='bool', default=True),
        timeout=dict(type='int', default=300),
    )

    def act(self, conn):
        params = dict((name, self.params[name]) for name in self.argument_spec)
        result = evacuate_host(conn, check_mode=self.check_mode, **params)
        for warning in result.pop('warnings'):
            self.ansible.warn(warning)
        if not self.ansible._diff:
            result.pop('diff')
        return result


def main():
    NovaEvacuateModule().run()


if __name__ == '__main__':
    main()
