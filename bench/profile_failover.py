"""Where the seconds of a host_failover run go: per phase, per task, and how much of it is Nova's own work.

    .venv/bin/python bench/profile_failover.py [--servers 4] [--repeat 1] [--keep-lab] [--json FILE]

Against the lab (started if it is not running, reset before each run): boots SERVERS servers on compute1,
crashes compute1, waits until Nova reports it down (the time the runbook is normally started), then runs
playbooks/host_failover.yml with ansible-playbook and a timing callback. Prints, per run:
  - the runbook's wall time, Ansible's start-up before the first task, and the sum over phases;
  - each phase (preflight, gates, fence, mark_down, evacuate, verify, report) and its share;
  - the slowest tasks;
  - the part that is Nova's work: nova_evacuate's time from its first evacuation request to the last instance in
    its target state (what the floor benchmark measures as well), against everything else (the runbook's overhead).
  - nova_evacuate's timeline, from Nova's own migration records (created when the API accepts an evacuation,
    'done' when the instance runs on its destination; Nova stores them to the second): seconds from the
    evacuate task's start to the first and the last evacuation accepted and to the last one done.
The last line is a JSON summary. The lab is stopped again if this script started it (unless --keep-lab).
--collection DIR profiles the collection of another checkout (e.g. a worktree of an older commit) with this
script, so that before/after comparisons differ only in the collection. Each run notes the load average.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABCTL = os.path.join(REPO, 'lab', 'labctl')
BIN = os.path.dirname(sys.executable)
HOST = 'compute1'
PHASES = ('preflight', 'gates', 'fence', 'mark_down', 'evacuate', 'verify', 'report')

# A callback that writes one JSON line per task: its name, the role task file it came from, start and end
# (monotonic clock of the ansible-playbook process), and the task's result summary for the module tasks we read.
CALLBACK = textwrap.dedent('''
    import json
    import os
    import time

    from ansible.plugins.callback import CallbackBase


    class CallbackModule(CallbackBase):
        CALLBACK_VERSION = 2.0
        CALLBACK_TYPE = 'aggregate'
        CALLBACK_NAME = 'task_timing'
        CALLBACK_NEEDS_ENABLED = True

        def __init__(self):
            super().__init__()
            self._current = None
            self._out = open(os.environ['TASK_TIMING_FILE'], 'a')
            self._write(dict(event='callback_loaded', at=time.time()))

        def _write(self, record):
            self._out.write(json.dumps(record, default=str) + '\\n')
            self._out.flush()

        def _close_current(self):
            if self._current:
                self._current['end'] = time.time()
                self._write(self._current)
                self._current = None

        def v2_playbook_on_task_start(self, task, is_conditional):
            self._close_current()
            path = task.get_path() or ''
            self._current = dict(event='task', name=task.get_name(), path=path.rsplit('/', 1)[-1].split(':')[0],
                                 action=task.action, start=time.time(), results=[])

        v2_playbook_on_handler_task_start = v2_playbook_on_task_start

        def _result(self, status, result):
            if self._current is not None:
                keep = {k: result._result.get(k) for k in ('evacuations', 'seconds', 'last_evacuation_after',
                                                           'elapsed', 'attempts', 'totals') if k in result._result}
                self._current['results'].append(dict(status=status, **keep))

        def v2_runner_on_ok(self, result):
            self._result('ok', result)

        def v2_runner_on_failed(self, result, ignore_errors=False):
            self._result('failed', result)

        def v2_runner_on_skipped(self, result):
            self._result('skipped', result)

        def v2_playbook_on_stats(self, stats):
            self._close_current()
            self._write(dict(event='end', at=time.time()))
''')


def labctl(*args, check=True):
    proc = subprocess.run([LABCTL, '--json'] + list(args), capture_output=True, text=True)
    if check and proc.returncode != 0:
        sys.exit('profile_failover: labctl %s failed:\n%s' % (' '.join(args), proc.stderr[-3000:]))
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def wait_for(what, predicate, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit('profile_failover: timed out after %ss waiting for %s' % (timeout, what))
        time.sleep(interval)


def nova_state(host):
    hosts = labctl('status')['hosts']
    if host not in hosts:
        sys.exit('profile_failover: labctl status does not list %s' % host)
    return hosts[host]['nova_state']


def phase_of(record):
    """The runbook phase of a task: its role task file (gates.yml -> gates); tasks of host_fence are 'fence'."""
    name = record['path'].rsplit('.', 1)[0]
    if name in PHASES:
        return name
    if record['name'].startswith('host_fence :') or name in ('level', 'method', 'verify_fence'):
        return 'fence'
    return 'other (%s)' % (name or 'playbook')


def evacuation_timeline(lab, since):
    """Nova's evacuation migrations from HOST created at or after `since` (epoch seconds): (first accepted, last
    accepted, last done) in epoch seconds, or None when there is none."""
    import openstack  # the bench runs with the collection's .venv, which has openstacksdk

    region = openstack.config.OpenStackConfig(config_files=[lab['clouds_yaml']]).get_one(cloud=lab['cloud'])
    conn = openstack.connection.Connection(config=region)
    try:
        response = conn.compute.get('/os-migrations?migration_type=evacuation&source_compute=%s' % HOST,
                                    microversion='2.59')
        migrations = response.json().get('migrations') or []
    finally:
        conn.close()

    def epoch(value):
        return datetime.datetime.fromisoformat(value.replace('Z', '')).replace(
            tzinfo=datetime.timezone.utc).timestamp() if value else None
    mine = [m for m in migrations if epoch(m['created_at']) >= int(since)]
    if not mine:
        return None
    created = [epoch(m['created_at']) for m in mine]
    done = [epoch(m['updated_at']) for m in mine if m['status'] in ('done', 'completed')]
    return min(created), max(created), max(done) if len(done) == len(mine) else None


def profile_once(lab, servers, workdir, collection):
    labctl('reset')
    labctl('boot', '--count', str(servers), '--host', HOST, '--prefix', 'prof')
    crashed = time.time()
    labctl('crash', HOST)
    wait_for('Nova to report %s down' % HOST, lambda: nova_state(HOST) == 'down', 120)
    nova_down = time.time()

    collections = os.path.join(workdir, 'collections', 'ansible_collections', 'openstack_ha')
    os.makedirs(collections, exist_ok=True)
    if os.path.islink(os.path.join(collections, 'recovery')):
        os.unlink(os.path.join(collections, 'recovery'))
    os.symlink(collection, os.path.join(collections, 'recovery'))
    callbacks = os.path.join(workdir, 'callback_plugins')
    os.makedirs(callbacks, exist_ok=True)
    with open(os.path.join(callbacks, 'task_timing.py'), 'w') as out:
        out.write(CALLBACK)
    timing = os.path.join(workdir, 'timing-%d.jsonl' % int(nova_down))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(workdir, 'collections'),
               ANSIBLE_CALLBACK_PLUGINS=callbacks, ANSIBLE_CALLBACKS_ENABLED='task_timing',
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_NOCOLOR='1',
               ANSIBLE_RETRY_FILES_ENABLED='0', OS_CLIENT_CONFIG_FILE=lab['clouds_yaml'], TASK_TIMING_FILE=timing,
               PATH=BIN + os.pathsep + os.environ.get('PATH', ''))
    extra = dict(compute_host=HOST, host_failover_report_dir=os.path.join(workdir, 'reports'),
                 host_failover_lock_dir=os.path.join(workdir, 'locks'))
    load_before = os.getloadavg()
    started = time.time()
    proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', lab['inventory'],
                           'openstack_ha.recovery.host_failover', '-e', json.dumps(extra)],
                          env=env, capture_output=True, text=True, cwd=workdir, stdin=subprocess.DEVNULL)
    finished = time.time()
    if proc.returncode != 0:
        sys.exit('profile_failover: the runbook failed (rc %d):\n%s' % (proc.returncode, proc.stdout[-4000:]))
    with open(timing) as lines:
        records = [json.loads(line) for line in lines]
    tasks = [r for r in records if r['event'] == 'task']
    loaded = next(r['at'] for r in records if r['event'] == 'callback_loaded')
    phases = {}
    for task in tasks:
        task['seconds'] = task['end'] - task['start']
        phases[phase_of(task)] = phases.get(phase_of(task), 0.0) + task['seconds']
    evacuate = [t for t in tasks if t['action'].endswith('nova_evacuate') and t['results']
                and t['results'][0].get('evacuations')]
    evacuate = evacuate or [t for t in tasks if t['action'].endswith('nova_evacuate') and t['results']
                            and (t['results'][0].get('totals') or {}).get('evacuations')]
    nova_work = timeline = None
    if evacuate:
        result = evacuate[0]['results'][0]
        nova_work = result.get('seconds', (result.get('totals') or {}).get('seconds'))
        task_start = evacuate[0]['start']
        found = evacuation_timeline(lab, task_start)
        if found:
            first, last, done = found
            timeline = dict(task_after_runbook_start=round(task_start - started, 1),
                            module_seconds=round(evacuate[0]['end'] - task_start, 1),
                            first_accepted=round(first - task_start, 1), last_accepted=round(last - task_start, 1),
                            last_done=round(done - task_start, 1) if done else None,
                            last_done_after_runbook_start=round(done - started, 1) if done else None,
                            last_evacuation_after=(result.get('totals') or {}).get('last_evacuation_after'))
    return dict(servers=servers, crash_to_nova_down=round(nova_down - crashed, 1),
                load_before=[round(x, 2) for x in load_before], load_after=[round(x, 2) for x in os.getloadavg()],
                collection=collection, nova_evacuate=timeline,
                wall=round(finished - started, 2), startup=round(tasks[0]['start'] - started, 2) if tasks else None,
                callback_loaded_after=round(loaded - started, 2), tasks=len(tasks),
                executed=sum(1 for t in tasks if any(r['status'] != 'skipped' for r in t['results'])),
                phases={k: round(v, 2) for k, v in phases.items()},
                nova_evacuate_seconds=nova_work,
                slowest=sorted(({'task': t['name'], 'seconds': round(t['seconds'], 2)} for t in tasks),
                               key=lambda t: -t['seconds'])[:15])


def print_run(run):
    print('\nservers %d: runbook wall %.1f s (Nova reported the host down %.1f s after the crash; the runbook '
          'starts then)' % (run['servers'], run['wall'], run['crash_to_nova_down']))
    print('  collection %s; load average before %s, after %s' % (run['collection'], run['load_before'],
                                                                  run['load_after']))
    print('  ansible start-up before the first task %.1f s; %d tasks, %d executed (not skipped)'
          % (run['startup'], run['tasks'], run['executed']))
    if run['nova_evacuate']:
        print('  nova_evacuate (s from its task start, Nova\'s migration records): first accepted %(first_accepted)s, '
              'last accepted %(last_accepted)s, last done %(last_done)s; module %(module_seconds)s; task started '
              '%(task_after_runbook_start)s s into the runbook, last done %(last_done_after_runbook_start)s s'
              % run['nova_evacuate'])
    print('  %-28s %8s %6s' % ('phase', 'seconds', 'share'))
    for name, seconds in sorted(run['phases'].items(), key=lambda kv: -kv[1]):
        print('  %-28s %8.1f %5.0f%%' % (name, seconds, 100 * seconds / run['wall']))
    if run['nova_evacuate_seconds'] is not None:
        overhead = run['wall'] - run['nova_evacuate_seconds']
        print('  nova_evacuate module %.1f s (Nova moving the instances, plus the module\'s own reads); everything '
              'else %.1f s (%.0f%% of the run)' % (run['nova_evacuate_seconds'], overhead, 100 * overhead / run['wall']))
    print('  slowest tasks:')
    for task in run['slowest']:
        print('    %6.2f s  %s' % (task['seconds'], task['task']))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--servers', type=int, default=4)
    parser.add_argument('--repeat', type=int, default=1)
    parser.add_argument('--keep-lab', action='store_true', help='leave the lab running (default: stop it if '
                                                                 'this script started it)')
    parser.add_argument('--json', help='write every run as JSON to this file')
    parser.add_argument('--collection', default=REPO, help='the checkout whose collection runs (default: this one)')
    args = parser.parse_args()
    if args.servers < 1 or args.repeat < 1:
        parser.error('--servers and --repeat must be at least 1')
    status = labctl('status', check=False)
    started_lab = not status or status['services'].get('nova-api') != 'running'
    lab = labctl('up') if started_lab else labctl('env')
    runs = []
    try:
        with tempfile.TemporaryDirectory(prefix='ohprofile-') as workdir:
            for _ in range(args.repeat):
                runs.append(profile_once(lab, args.servers, workdir, os.path.abspath(args.collection)))
                print_run(runs[-1])
    finally:
        labctl('reset', check=False)
        if started_lab and not args.keep_lab:
            labctl('down', check=False)
    if args.json:
        with open(args.json, 'w') as out:
            json.dump(runs, out, indent=2)
    walls = [r['wall'] for r in runs]
    nova = [r['nova_evacuate_seconds'] for r in runs if r['nova_evacuate_seconds'] is not None]
    print(json.dumps(dict(servers=args.servers, runs=len(runs), wall_median=round(statistics.median(walls), 2),
                          nova_evacuate_median=round(statistics.median(nova), 2) if nova else None,
                          overhead_median=round(statistics.median(w - n for w, n in zip(walls, nova)), 2)
                          if nova else None)))


if __name__ == '__main__':
    main()
