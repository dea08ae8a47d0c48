#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: run_lock
short_description: One failover per compute host at a time - a lock file per host on the controller
version_added: 0.1.0
description:
  - Takes (O(state=present)) or gives back (O(state=absent)) the lock of one compute host for one run of a
    runbook. A second run for a host that is being failed over does not fail - it gets RV(acquired=false) and
    RV(holder) naming the first run, so the play can end cleanly and report it. Runs for different hosts hold
    different locks and go on in parallel.
  - The lock is the file O(lock_dir)/O(name).lock, a JSON record of the holding run - C(run_id), the holder
    process C(pid) (with its start time and the kernel's boot id), the controller's C(hostname), and when it
    was C(created). A new lock is written to a temporary file and linked into place, which fails when another
    run's lock appeared (C(O_CREAT|O_EXCL) semantics without a half-written file ever being visible).
  - B(Same run). A lock of the same O(run_id) is acquired again without a change (a rerun of one run); its
    holder process is updated to the current one.
  - B(Stale locks). A lock of another run is stale when its holder process is gone (checked only on the
    controller that wrote it - same C(hostname); a pid now running another process does not count), or, when
    its holder cannot be checked (another controller, no holder process), when it is older than O(stale_after)
    seconds. A holder that still runs on this controller keeps its lock however long its run takes. A stale
    lock is replaced by this run's (RV(took_over_from) says whose it was).
  - B(Races). Each decision - read, create, take over, remove - is made under an exclusive C(flock) of
    O(lock_dir)/O(name).lock.guard, so of two runs racing for one host (also for one stale lock) exactly one
    acquires it and the other sees the first one's lock. A run killed meanwhile releases the flock with its
    process.
  - B(Holder process). The lock is meant to live as long as the play - the holder is the C(ansible-playbook)
    (or C(ansible-runner), C(ansible)) process that runs the module, found by walking up the parents of the
    module's process in C(/proc) (the per-task worker processes that Ansible forks are skipped). When the module
    does not run on the controller of the play (for example delegated to another host) there is none, and the
    lock expires by O(stale_after) only. O(holder_pid) sets the holder explicitly.
  - O(state=absent) removes the lock only when O(run_id) holds it; a lock of another run is left alone
    (not changed, RV(holder) says whose it is).
author:
  - openstack_ha.recovery maintainers (@openstack-ha)
options:
  fail_when_held:
    description:
      - Whether the module fails when another run holds the lock (O(state=present)). The failure carries the
        same RV(holder).
    type: bool
    default: false
  holder_pid:
    description:
      - The pid of the process whose life the lock lasts, instead of the Ansible process found by walking up
        the module's parents. For tests, and for callers that manage their own long-lived process.
    type: int
  lock_dir:
    description:
      - The directory of the lock files, created with mode C(0700) (and its parents) when missing.
      - The lock is per controller. When several controllers may run failovers (several AWX execution nodes,
        an event-driven controller next to operators), give them one shared O(lock_dir) with working
        C(flock) (local disk, or NFS with locking), or make the job template single-run (AWX
        C(allow_simultaneous=false)).
      - When not set, the controller's environment variable E(OPENSTACK_HA_LOCK_DIR) if it is set, else
        C(~/.ansible/openstack_ha/locks). One variable moves the locks of every runbook of a controller (an
        execution environment with a shared volume, or test runs side by side that must not share locks).
    type: path
  name:
    description:
      - What the lock is for - the compute host's name. Letters, digits, C(.), C(_) and C(-), not starting
        with C(.) or C(-).
    type: str
    required: true
  run_id:
    description:
      - The id of this run, the same for every task of one run (and for reruns of it).
    type: str
    required: true
  stale_after:
    description:
      - Seconds after which a lock of another run whose holder process cannot be checked (another controller,
        or no holder process) is stale. Set it longer than a failover can take.
    type: float
    default: 3600.0
  state:
    description:
      - V(present) takes the lock, V(absent) gives it back.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    description: Reads the lock and returns what would happen (acquired, took_over_from) without writing.
    support: full
  diff_mode:
    description: Returns the run holding the lock before and after.
    support: full
notes:
  - Put the lock on the controller of the play (C(delegate_to=localhost) with C(run_once)) when the play runs
    on the compute hosts.
  - Give the lock back at the end of the run (an C(always) section). A lock left behind by a crashed run is
    taken over once its holder process is gone, or after O(stale_after).
seealso:
  - module: openstack_ha.recovery.storm_guard
'''

EXAMPLES = r'''
- name: Fail over compute-17 once, however many runs are started for it
  block:
    - name: Take the lock of compute-17 for this run
      openstack_ha.recovery.run_lock:
        name: compute-17
        run_id: "{{ failover_run_id }}"
      register: failover_lock

    - name: Report the run already failing compute-17 over
      ansible.builtin.debug:
        msg: "run {{ failover_lock.holder.run_id }} is failing compute-17 over since {{ failover_lock.holder.created }}"
      when: not failover_lock.acquired

    - name: Fail over (only the run that holds the lock)
      ansible.builtin.include_role:
        name: openstack_ha.recovery.host_fence
      when: failover_lock.acquired
  always:
    - name: Give the lock of compute-17 back
      openstack_ha.recovery.run_lock:
        name: compute-17
        run_id: "{{ failover_run_id }}"
        state: absent

- name: Share the locks between two controllers, and fail when another run holds the lock
  openstack_ha.recovery.run_lock:
    name: compute-17
    run_id: "{{ failover_run_id }}"
    lock_dir: /srv/shared/openstack_ha/locks
    stale_after: 7200
    fail_when_held: true
'''

RETURN = r'''
acquired:
  description:
    - O(state=present) - whether this run holds the lock now (in check mode - would hold it). False for
      O(state=absent).
  returned: always
  type: bool
  sample: true
holder:
  description:
    - The run holding the lock after the call (this run's own record when RV(acquired)); null when nobody
      holds it.
    - C(run_id), C(pid) (null when unknown), C(hostname) (the controller), C(created) (UTC), C(age) (seconds),
      C(alive) (whether the holder process runs; null when this controller cannot tell), and C(unreadable)
      (why, when the lock file is not a lock record; its C(created) is then the file's modification time).
  returned: always
  type: dict
  sample: {run_id: 20261122T101500Z-compute-17-4711, pid: 4711, hostname: controller-1,
           created: '2026-11-22T10:15:00Z', age: 42.0, alive: true}
lock_path:
  description: The lock file.
  returned: always
  type: str
  sample: /home/ansible/.ansible/openstack_ha/locks/compute-17.lock
took_over_from:
  description:
    - The stale lock this run replaced (O(state=present)), with the keys of RV(holder) and C(stale_reason);
      null when none was.
  returned: always
  type: dict
  sample: {run_id: 20261122T091500Z-compute-17-4242, pid: 4242, hostname: controller-1,
           created: '2026-11-22T09:15:00Z', age: 3642.0, alive: false,
           stale_reason: its holder process 4242 on controller-1 is gone}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.openstack_ha.recovery.plugins.module_utils._run_lock import (
    RUN_LOCK_RESULT_KEYS,
    run_run_lock_module,
)

RETURNED_KEYS = RUN_LOCK_RESULT_KEYS


def main():
    module = AnsibleModule(
        argument_spec=dict(
            fail_when_held=dict(type='bool', default=False),
            holder_pid=dict(type='int'),
            lock_dir=dict(type='path'),
            name=dict(type='str', required=True),
            run_id=dict(type='str', required=True),
            stale_after=dict(type='float', default=3600.0),
            state=dict(type='str', default='present', choices=['present', 'absent']),
        ),
        supports_check_mode=True,
    )
    run_run_lock_module(module)


if __name__ == '__main__':
    main()
