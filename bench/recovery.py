#!/usr/bin/env python3
"""How fast do a failed host's servers come back, and how does that grow with the host's load? Side by side.

    .venv/bin/python bench/recovery.py                       # N = 10, 50, 100 servers, 3 repetitions, every system
    .venv/bin/python bench/recovery.py --quick               # N = 5, 1 repetition: a smoke run (~10-15 min)
    .venv/bin/python bench/recovery.py --sizes 10,20 --repeat 2 --systems floor,naive,collection

For each N and repetition, and each system: the lab is reset, N servers are booted on compute1, compute1's
nova-compute is killed (`labctl crash`: the failure signal, time 0), the system is triggered at once, and an
observer polls Nova (and the BMC's event log) for the milestones, all in seconds from the crash:

    BMC off          the host's BMC powered it off (the BMC's bmc-events.log); only systems that fence
    fence verified   the runbook's fence phase ended (its fence_verify proved the host off): the start time of
                     the task after it, from the Ansible log (ANSIBLE_LOG_PATH); the collection's runs only
    forced down      Nova shows the nova-compute service forced down
    disabled         Nova shows it disabled (Masakari disables and never forces down)
    first / last     the first / last server ACTIVE on another host

Systems (--systems, comma separated):
    floor         bench/runbooks/floor.py: force down, every evacuation at once, wait. Nothing but what Nova needs.
    naive         bench/runbooks/naive_serial.py: force down, then evacuate one server and poll it to ACTIVE, next.
    collection    ansible-playbook playbooks/host_failover.yml -e compute_host=compute1 (gates, fence, mark down,
                  evacuate, verify, report) with the lab's inventory.
    rulebook      the shipped rulebook (ansible-rulebook -r openstack_ha.recovery.host_failover, started before the
                  crash, untimed) and an Alertmanager-shaped ComputeHostDown alert POSTed to its webhook at time 0.
    masakari      real Masakari from PyPI (bench/masakari.py: its own venv, database, Keystone user and endpoint),
                  a segment holding the lab's hosts, a COMPUTE_HOST host-down notification posted at time 0 as
                  masakari-monitors posts it; with Masakari's default waits.
    masakari-min  the same with Masakari's waits at their minimum.

Everything a run leaves is removed: the lab is reset between runs, the lab is stopped at the end if this script
started it, Masakari's processes are stopped. Raw results go to --out (JSON), with a PNG plot (matplotlib, from a
venv of its own: $OHLAB_HOME/bench-venv, made from bench/requirements.txt on first use). The last line printed is
a one-line JSON summary: medians of "last ACTIVE" per system and N, and their ratios to the floor.
"""

import argparse
import glob
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LABCTL = os.path.join(REPO, 'lab', 'labctl')
# A subprocess in its own session, its output in a log file (shared with tests/eda: lab/session_process.py).
sys.path.insert(0, os.path.join(REPO, 'lab'))
from session_process import SessionProcess as Proc  # noqa: E402  (after the path above)
BIN = os.path.dirname(sys.executable)
HOME = os.environ.get('OHLAB_HOME', '/var/tmp/ohlab')
FAILED_HOST = 'compute1'
SYSTEMS = ('floor', 'naive', 'collection', 'rulebook', 'masakari', 'masakari-min')
MILESTONES = ('fenced', 'fence_verified', 'service_down', 'service_disabled', 'first_active', 'last_active')
POLL = 0.5  # seconds between the observer's reads of Nova (each read loads nova-api: not too often)


def say(msg):
    print('[%s] %s' % (time.strftime('%H:%M:%S'), msg), file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------
# statistics and summary (pure; tests/unit/test_bench_recovery_summary.py)


def spread(values):
    """{n, median, min, max} of the numbers in VALUES (None values are left out); n = 0 and None for none."""
    numbers = [v for v in values if v is not None]
    if not numbers:
        return {'n': 0, 'median': None, 'min': None, 'max': None}
    return {'n': len(numbers), 'median': round(statistics.median(numbers), 2), 'min': round(min(numbers), 2),
            'max': round(max(numbers), 2)}


def summarize(runs):
    """Per system and N: the spread of every milestone over the runs that recovered, the count of failed runs, and
    the ratio of the median "last ACTIVE" to the floor's at the same N (None without a floor or a recovery).

    RUNS: [{system, n, ok, milestones: {fenced, service_down, first_active, last_active}}].
    -> {system: {str(n): {'runs', 'failed', 'fenced', ..., 'last_active', 'ratio'}}}"""
    table = {}
    for run in runs:
        cell = table.setdefault(run['system'], {}).setdefault(str(run['n']), {'runs': [], 'failed': 0})
        if run['ok']:
            cell['runs'].append(run['milestones'])
        else:
            cell['failed'] += 1
    summary = {}
    for system, sizes in table.items():
        summary[system] = {}
        for n, cell in sizes.items():
            entry = {'runs': len(cell['runs']) + cell['failed'], 'failed': cell['failed']}
            for milestone in MILESTONES:
                entry[milestone] = spread(m.get(milestone) for m in cell['runs'])
            summary[system][n] = entry
    for system, sizes in summary.items():
        for n, entry in sizes.items():
            floor = summary.get('floor', {}).get(n, {}).get('last_active', {}).get('median')
            mine = entry['last_active']['median']
            entry['ratio'] = round(mine / floor, 2) if floor and mine is not None else None
    return summary


def summary_line(summary):
    """The one-line JSON of the run's end: {"last_active_median_s": {system: {n: s}}, "ratio_to_floor": {...},
    "failed_runs": {system: {n: count}}} (only non-zero failures)."""
    medians, ratios, failed = {}, {}, {}
    for system in sorted(summary, key=system_order):
        for n in sorted(summary[system], key=int):
            entry = summary[system][n]
            medians.setdefault(system, {})[n] = entry['last_active']['median']
            ratios.setdefault(system, {})[n] = entry['ratio']
            if entry['failed']:
                failed.setdefault(system, {})[n] = entry['failed']
    return json.dumps({'last_active_median_s': medians, 'ratio_to_floor': ratios, 'failed_runs': failed},
                      sort_keys=False, separators=(',', ':'))


def system_order(system):
    return SYSTEMS.index(system) if system in SYSTEMS else len(SYSTEMS)


# the systems as bench/README.md's tables name them: what triggers the collection in each
MARKDOWN_NAMES = {'collection': 'collection (playbook at the crash)', 'rulebook': 'rulebook (alert at the crash)',
                  'masakari': 'masakari (defaults)'}


def format_table(summary, markdown=False):
    """The printed table: one row per system and N; median [min-max] seconds from the crash per milestone.
    MARKDOWN: the same rows as a Markdown table (recovery.md, for bench/README.md)."""
    def cell(stat):
        if not stat['n']:
            return '-'
        if stat['n'] == 1 or stat['min'] == stat['max']:
            return '%.1f' % stat['median']
        return '%.1f [%.1f-%.1f]' % (stat['median'], stat['min'], stat['max'])
    head = ('system', 'N', 'runs', 'BMC off', 'fence verified', 'forced down', 'disabled', 'first ACTIVE',
            'last ACTIVE', 'x floor')
    rows = [head]
    for system in sorted(summary, key=system_order):
        for n in sorted(summary[system], key=int):
            entry = summary[system][n]
            runs = '%d' % entry['runs'] + (' (%d failed)' % entry['failed'] if entry['failed'] else '')
            rows.append((MARKDOWN_NAMES.get(system, system) if markdown else system, n, runs)
                        + tuple(cell(entry[m]) for m in MILESTONES)
                        + ('-' if entry['ratio'] is None else '%.2f' % entry['ratio'],))
    if markdown:
        return '\n'.join(['| %s |' % ' | '.join(str(value) for value in row) for row in rows[:1]]
                         + ['|%s' % ('---|' * len(head))]
                         + ['| %s |' % ' | '.join(str(value) for value in row) for row in rows[1:]])
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    lines = ['  '.join(str(value).ljust(width) for value, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, '  '.join('-' * width for width in widths))
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------------------
# the lab


class LabError(RuntimeError):
    pass


def labctl(*args, timeout=900):
    proc = subprocess.run([LABCTL, '--json'] + list(args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise LabError('labctl %s failed (rc %d):\n%s' % (' '.join(args), proc.returncode, proc.stderr[-3000:]))
    return json.loads(proc.stdout)


def lab_running():
    try:
        status = labctl('status', timeout=300)
    except LabError:
        return False
    return all(state == 'running' for state in status['services'].values())


def connect(env):
    import openstack.config
    import openstack.connection
    region = openstack.config.OpenStackConfig(config_files=[env['clouds_yaml']]).get_one(cloud=env['cloud'])
    return openstack.connection.Connection(config=region)


def bmc_off_time(state_dir, since):
    """Wall-clock time of the first successful power-off of the host's BMC after SINCE, or None."""
    try:
        with open(os.path.join(state_dir, 'bmc-events.log')) as log:
            for line in log:
                event = json.loads(line)
                if event['t'] >= since and event.get('action') in ('off', 'power_off', 'ForceOff') \
                        and event.get('result') in ('ok', 'done', 'success', True):
                    return event['t']
    except FileNotFoundError:
        pass
    return None


FENCE_RECORDED = 'TASK [openstack_ha.recovery.host_failover : Record the fence]'


def fence_verified_time(workdir, t0_wall):
    """Seconds from T0_WALL to the start of host_failover's "Record the fence" task (the fence, with its
    verification, has returned), from the Ansible log of the run (ANSIBLE_LOG_PATH), or None."""
    import datetime
    try:
        with open(os.path.join(workdir, 'ansible.log'), errors='replace') as log:
            for line in log:
                if FENCE_RECORDED in line:
                    stamp = datetime.datetime.strptime(line[:23], '%Y-%m-%d %H:%M:%S,%f')
                    return round(stamp.timestamp() - t0_wall, 2)
    except (FileNotFoundError, ValueError):
        pass
    return None


class Observer(threading.Thread):
    """Polls Nova from its own connection: when the failed host's service shows forced down, and when each of the
    watched servers is first seen ACTIVE on another host. Times are time.monotonic()."""

    def __init__(self, env, host, server_ids, conn=None):
        super().__init__(daemon=True)
        self.conn = conn or connect(env)
        self.host = host
        self.pending = set(server_ids)
        self.active = {}
        self.errors = {}
        self.service_down = None
        self.service_disabled = None
        self.stop_event = threading.Event()
        self.failure = None
        self.reads = 0
        self.since = None  # ISO time: list only servers changed since (set at the crash)

    def run(self):
        try:
            while not self.stop_event.is_set():
                self.poll()
                self.stop_event.wait(POLL)
        except Exception as error:  # reported by the run, never swallowed
            self.failure = '%s: %s' % (type(error).__name__, error)

    def poll(self):
        now = time.monotonic()
        if self.service_down is None or self.service_disabled is None:
            service, = self.conn.compute.services(binary='nova-compute', host=self.host)
            if service.is_forced_down and self.service_down is None:
                self.service_down = now
            if service.status == 'disabled' and self.service_disabled is None:
                self.service_disabled = now
        if self.pending:
            query = {'changes_since': self.since} if self.since else {}
            for server in self.conn.compute.servers(all_projects=True, **query):
                if server.id not in self.pending:
                    continue
                if server.status == 'ACTIVE' and server.compute_host != self.host:
                    self.active[server.id] = now
                    self.pending.discard(server.id)
                elif server.status == 'ERROR':
                    self.errors[server.id] = now
        self.reads += 1

    def done(self):
        return not self.pending

    def settle(self, timeout):
        """Wait (up to TIMEOUT s) until a read that began after this call has ended, or every server is ACTIVE
        elsewhere; -> done(). The read in flight at the call may have begun before the last change."""
        reads = self.reads
        deadline = time.monotonic() + timeout
        while not self.done() and self.reads < reads + 2 and self.failure is None and self.is_alive() \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.done()

    def stop(self):
        self.stop_event.set()
        self.join(30)


# ---------------------------------------------------------------------------------------------------------
# the systems: start(host) at time 0, returns a handle with poll() (None while running, else rc), stop() and
# details() (what the system itself reported)


class ScriptSystem:
    """floor / naive: a plain openstacksdk script, started at time 0."""

    def __init__(self, bench, script):
        self.bench = bench
        self.script = os.path.join(HERE, 'runbooks', script)

    def prepare(self, host, workdir):
        pass

    def start(self, host, workdir):
        env = dict(os.environ, OS_CLIENT_CONFIG_FILE=self.bench.env['clouds_yaml'])
        return Proc([sys.executable, self.script, '--cloud', self.bench.env['cloud'], '--host', host],
                    os.path.join(workdir, 'system.log'), env=env)

    def details(self, handle, workdir):
        return {}

    def after(self, host):
        pass

    def close(self):
        pass


class CollectionSystem:
    """ansible-playbook playbooks/host_failover.yml with the lab's inventory, started at time 0."""

    def __init__(self, bench):
        self.bench = bench

    def prepare(self, host, workdir):
        pass

    def start(self, host, workdir):
        report_dir = os.path.join(workdir, 'reports')
        os.makedirs(report_dir)
        return Proc([os.path.join(BIN, 'ansible-playbook'), os.path.join(REPO, 'playbooks', 'host_failover.yml'),
                     '-i', self.bench.env['inventory'], '-e', 'compute_host=%s' % host,
                     '-e', 'host_failover_report_dir=%s' % report_dir],
                    os.path.join(workdir, 'system.log'), env=self.bench.ansible_env(workdir))

    def details(self, handle, workdir):
        return read_report(os.path.join(workdir, 'reports'))

    def after(self, host):
        pass

    def close(self):
        pass


def read_report(report_dir):
    """Outcome, phases and totals of the host_failover report the run wrote (JSON), or {} when there is none."""
    for root, dummy, files in os.walk(report_dir):
        for name in sorted(files):
            if name.endswith('.json'):
                with open(os.path.join(root, name)) as handle:
                    report = json.load(handle)
                return {'outcome': report.get('outcome'), 'seconds': report.get('seconds'),
                        'phases': report.get('phases'),
                        'fence': {k: (report.get('fence') or {}).get(k) for k in ('fenced', 'outcome', 'level')},
                        'evacuation_totals': (report.get('evacuation') or {}).get('totals')}
    return {}


class RulebookSystem:
    """The shipped rulebook in ansible-rulebook, started (untimed) before the crash; at time 0 an Alertmanager-shaped
    ComputeHostDown alert is POSTed to its webhook. Restarted for every run: the rulebook throttles one run per host
    within 4 hours."""

    STARTUP = 120  # seconds; ansible-rulebook (JVM, Drools) takes 3-4 s on an idle machine

    def __init__(self, bench):
        self.bench = bench
        self.token = 'bench-' + secrets.token_hex(16)
        self.process = None

    def prepare(self, host, workdir):
        self.dir = tempfile.mkdtemp(prefix='rulebook-', dir=self.bench.workdir)
        self.report_dir = os.path.join(self.dir, 'reports')
        self.private_tmp = os.path.join(self.dir, 'tmp')
        os.makedirs(self.report_dir)
        os.makedirs(self.private_tmp)
        with open(self.bench.env['inventory']) as handle:
            inventory = json.load(handle)
        inventory['all']['children']['compute_hosts']['vars']['host_failover_report_dir'] = self.report_dir
        with open(os.path.join(self.dir, 'inventory.json'), 'w') as out:
            json.dump(inventory, out)
        self.port = free_port()
        with open(os.path.join(self.dir, 'vars.yml'), 'w') as out:
            json.dump({'openstack_ha_listen_port': self.port}, out)  # JSON is YAML
        env = dict(self.bench.ansible_env(workdir), TMPDIR=self.private_tmp, ALERTMANAGER_WEBHOOK_TOKEN=self.token)
        self.process = Proc([os.path.join(BIN, 'ansible-rulebook'), '-r', 'openstack_ha.recovery.host_failover',
                             '-i', 'inventory.json', '--vars', 'vars.yml', '-E', 'ALERTMANAGER_WEBHOOK_TOKEN', '-v'],
                            os.path.join(self.dir, 'ansible-rulebook.log'), env=env, cwd=self.dir)
        deadline = time.monotonic() + self.STARTUP
        while http_status('http://127.0.0.1:%d/' % self.port) != 405:
            if self.process.poll() is not None:
                raise RuntimeError('ansible-rulebook exited with %s:\n%s' % (self.process.poll(), self.process.tail()))
            if time.monotonic() > deadline:
                raise RuntimeError('ansible-rulebook not listening after %s s:\n%s'
                                   % (self.STARTUP, self.process.tail()))
            time.sleep(0.1)

    def start(self, host, workdir):
        alert = {'status': 'firing', 'labels': {'alertname': 'ComputeHostDown', 'host': host, 'openstack_ha': 'recover',
                                                'severity': 'critical'},
                 'annotations': {'summary': 'nova-compute on %s is down' % host},
                 'startsAt': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), 'endsAt': '0001-01-01T00:00:00Z',
                 'generatorURL': 'http://prometheus.invalid/graph', 'fingerprint': secrets.token_hex(8)}
        body = {'version': '4', 'groupKey': '{}:{host="%s"}' % host, 'truncatedAlerts': 0, 'status': 'firing',
                'receiver': 'openstack-ha-recovery', 'groupLabels': {'host': host}, 'commonLabels': alert['labels'],
                'commonAnnotations': alert['annotations'], 'externalURL': 'http://alertmanager.invalid',
                'alerts': [alert]}
        request = urllib.request.Request('http://127.0.0.1:%d/alerts' % self.port, data=json.dumps(body).encode(),
                                         headers={'Authorization': 'Bearer ' + self.token,
                                                  'Content-Type': 'application/json'}, method='POST')
        with urllib.request.urlopen(request, timeout=30) as answer:
            if answer.status != 200:
                raise RuntimeError('the rulebook webhook answered %s' % answer.status)
        return RulebookRun(self)

    def details(self, handle, workdir):
        shutil.copy(self.process.log, os.path.join(workdir, 'ansible-rulebook.log'))
        return read_report(self.report_dir)

    def after(self, host):
        if self.process is not None:
            self.process.stop()
            self.process = None

    def close(self):
        self.after(None)


class RulebookRun:
    """The playbook run the alert started: running while ansible-rulebook holds a private data dir for it, or
    until its report is written."""

    def __init__(self, rulebook):
        self.rulebook = rulebook
        self.started = time.monotonic()
        self.ended = None
        self.seen_running = False

    def poll(self):
        if self.ended is not None:
            return 0
        if self.rulebook.process.poll() is not None:
            self.ended = time.monotonic()
            return self.rulebook.process.poll() or 1
        running = bool(glob.glob(os.path.join(self.rulebook.private_tmp, 'eda*')))
        self.seen_running = self.seen_running or running
        if self.seen_running and not running:
            self.ended = time.monotonic()
            return 0 if read_report(self.rulebook.report_dir).get('outcome') == 'recovered' else 1
        return None

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.poll()

    def stop(self):
        pass

    def tail(self):
        return self.rulebook.process.tail()


def free_port():
    import socket
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------------------
# one run


class Bench:
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.env = None
        self.collections = os.path.join(workdir, 'collections')
        os.makedirs(os.path.join(self.collections, 'ansible_collections', 'openstack_ha'))
        os.symlink(REPO, os.path.join(self.collections, 'ansible_collections', 'openstack_ha', 'recovery'))

    def ansible_env(self, workdir):
        # OPENSTACK_HA_TOKEN_CACHE: a new directory per run, so that each run logs in to Keystone once, as the
        # floor and naive scripts do (the roles' default directory would carry a token from one run to the next)
        return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=self.collections, ANSIBLE_NOCOLOR='1',
                    OPENSTACK_HA_TOKEN_CACHE=os.path.join(workdir, 'tokens'),
                    OS_CLIENT_CONFIG_FILE=self.env['clouds_yaml'], ANSIBLE_PYTHON_INTERPRETER=sys.executable,
                    ANSIBLE_LOCAL_TEMP=os.path.join(workdir, 'ansible-tmp'),
                    ANSIBLE_LOG_PATH=os.path.join(workdir, 'ansible.log'),
                    PATH=BIN + os.pathsep + os.environ.get('PATH', ''))

    def run_once(self, system_name, system, n, repetition):
        """Reset the lab, boot N servers on the failed host, crash it, trigger SYSTEM; -> the run's record."""
        host = FAILED_HOST
        workdir = os.path.join(self.workdir, 'runs', '%s-n%d-r%d' % (system_name, n, repetition))
        os.makedirs(workdir)
        record = {'system': system_name, 'n': n, 'repetition': repetition, 'ok': False, 'milestones': {},
                  'error': None}
        labctl('reset', timeout=1200)
        servers = labctl('boot', '--count', str(n), '--host', host, '--prefix', 'bench', timeout=600 + 10 * n)
        ids = [s['id'] for s in servers['servers']]
        system.prepare(host, workdir)
        observer = Observer(self.env, host, ids)
        observer.poll()  # one read before the crash: connection and token ready
        crash_wall = time.time()
        observer.since = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(crash_wall - 2))
        labctl('crash', host, timeout=120)
        t0, t0_wall = time.monotonic(), time.time()  # time 0: the host's compute is dead
        handle = None
        try:
            handle = system.start(host, workdir)
            observer.start()
            deadline = t0 + self.args.timeout_base + self.args.timeout_per_server * n
            while not observer.done():
                rc = handle.poll()
                if observer.failure:
                    raise RuntimeError('observer failed: %s' % observer.failure)
                if rc is not None and not observer.done():
                    # the system ended: before calling it a failure, let the observer finish a whole read that
                    # began after the end (a read of 100 servers on a busy lab takes longer than a fixed grace:
                    # the naive loop's N=100 run of 2026-11-23 "failed" with its last server ACTIVE elsewhere)
                    if observer.settle(timeout=60):
                        break
                    raise RuntimeError('%s ended (rc %s) with %d of %d server(s) not ACTIVE elsewhere (%s):\n%s' % (
                        system_name, rc, len(observer.pending), n, ', '.join(sorted(observer.pending)[:5]),
                        handle.tail()))
                if time.monotonic() > deadline:
                    raise RuntimeError('%s: %d of %d server(s) not ACTIVE elsewhere after %.0f s:\n%s' % (
                        system_name, len(observer.pending), n, time.monotonic() - t0, handle.tail()))
                time.sleep(0.05)
            rc = handle.wait(self.args.timeout_base)
            record['system_rc'] = rc
            record['system_seconds'] = None if handle.ended is None else round(handle.ended - t0, 2)
            fenced = bmc_off_time(self.env['hosts'][host]['state_dir'], crash_wall)
            times = sorted(observer.active.values())
            record['milestones'] = {
                'fenced': None if fenced is None else round(fenced - t0_wall, 2),
                'fence_verified': fence_verified_time(workdir, t0_wall),
                'service_down': None if observer.service_down is None else round(observer.service_down - t0, 2),
                'service_disabled': None if observer.service_disabled is None else
                round(observer.service_disabled - t0, 2),
                'first_active': round(times[0] - t0, 2),
                'last_active': round(times[-1] - t0, 2),
            }
            record['ok'] = rc == 0
            if rc != 0:
                record['error'] = ('%s exited with %s after recovering every server:\n%s'
                                   % (system_name, rc, handle.tail()))
        except Exception as error:
            record['error'] = str(error)
        finally:
            observer.stop()
            if handle is not None:
                handle.stop()
            record['observer_reads'] = observer.reads
            record['errors_seen'] = len(observer.errors)
            try:
                record['details'] = system.details(handle, workdir) if handle is not None else {}
            except Exception as error:
                record['details'] = {'error': str(error)}
            system.after(host)
        return record


def set_up(systems):
    """Run each system's one-time set-up (e.g. Masakari's install); a system whose set-up fails is removed from
    SYSTEMS and does not run. -> {name: error} of those."""
    errors = {}
    for name, system in list(systems.items()):
        if hasattr(system, 'setup'):
            try:
                system.setup()
            except Exception as error:  # any failure, a bug in the harness too: that system cannot run, the rest can
                errors[name] = describe(error)
                say('%s cannot run: %s' % (name, errors[name]))
                del systems[name]
    return errors


def run_all(bench, systems, args, runs):
    """Every size, repetition and system in turn, each run's record appended to RUNS as it ends (a caller
    interrupted by KeyboardInterrupt keeps the runs that ended)."""
    for n in args.sizes:
        for repetition in range(1, args.repeat + 1):
            for name in [name for name in args.systems if name in systems]:
                say('N=%d repetition %d/%d: %s' % (n, repetition, args.repeat, name))
                try:
                    record = bench.run_once(name, systems[name], n, repetition)
                except Exception as error:
                    # the set-up of the run failed (reset, boot, the system's preparation; a bug in a system's
                    # prepare too): a failed run, and the next run resets the lab
                    record = {'system': name, 'n': n, 'repetition': repetition, 'ok': False, 'milestones': {},
                              'error': 'run set-up failed: %s' % describe(error)}
                runs.append(record)
                if record['ok']:
                    say('  %s' % ', '.join('%s %s' % (k, v) for k, v in record['milestones'].items()))
                else:
                    say('  FAILED: %s' % record['error'][:2000])
    return runs


def describe(error):
    """An exception as one message: the harness's own errors as they are, anything else with its type (an
    AttributeError's text alone does not say it is a bug)."""
    if isinstance(error, (LabError, RuntimeError, OSError, subprocess.SubprocessError)):
        return str(error)
    return '%s: %s' % (type(error).__name__, error)


def make_systems(bench, names):
    systems = {}
    for name in names:
        if name == 'floor':
            systems[name] = ScriptSystem(bench, 'floor.py')
        elif name == 'naive':
            systems[name] = ScriptSystem(bench, 'naive_serial.py')
        elif name == 'collection':
            systems[name] = CollectionSystem(bench)
        elif name == 'rulebook':
            systems[name] = RulebookSystem(bench)
        elif name in ('masakari', 'masakari-min'):
            import masakari as masakari_bench
            systems[name] = masakari_bench.MasakariSystem(bench, minimal_waits=(name == 'masakari-min'))
    return systems


def plot(results_json, png):
    """Draw the PNG with matplotlib from $OHLAB_HOME/bench-venv (made on first use from bench/requirements.txt)."""
    venv = os.path.join(HOME, 'bench-venv')
    python = os.path.join(venv, 'bin', 'python')
    if not os.path.exists(python) or subprocess.run([python, '-c', 'import matplotlib'],
                                                    capture_output=True).returncode != 0:
        say('making %s (matplotlib) for the plot' % venv)
        subprocess.run(['python3', '-m', 'venv', venv], check=True)
        subprocess.run([python, '-m', 'pip', 'install', '-q', '-r', os.path.join(HERE, 'requirements.txt')],
                       check=True)
    subprocess.run([python, os.path.join(HERE, 'plot_recovery.py'), results_json, png], check=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('--sizes', default='10,50,100', help='servers on the failed host, comma separated')
    parser.add_argument('--repeat', type=int, default=3, help='repetitions of each system at each size')
    parser.add_argument('--quick', action='store_true', help='a smoke run: --sizes 5 --repeat 1')
    parser.add_argument('--systems', default=','.join(SYSTEMS), help='comma separated, of: %s' % ', '.join(SYSTEMS))
    parser.add_argument('--computes', type=int, default=3, help='lab compute hosts (default 3; each has room for '
                        '1000 of the lab\'s tiny servers)')
    parser.add_argument('--out', default=os.path.join(REPO, 'bench', 'results'),
                        help='directory for recovery.json, recovery.md and recovery.png (default bench/results)')
    parser.add_argument('--timeout-base', type=float, default=600, help='seconds a run may take, plus ...')
    parser.add_argument('--timeout-per-server', type=float, default=6, help='... this many per server')
    parser.add_argument('--keep-workdir', action='store_true', help='keep the logs of every run')
    parser.add_argument('--combine', nargs='+', metavar='RESULTS_JSON',
                        help='run nothing: count the runs of these earlier recovery.json files together (e.g. '
                             'repetitions made in separate invocations) and write the table, JSON and plot to --out; '
                             'FILE:SYSTEM,SYSTEM counts only those systems of FILE')
    args = parser.parse_args(argv)
    if args.combine:
        return args
    if args.quick:
        args.sizes, args.repeat = '5', 1
    try:
        args.sizes = [int(size) for size in args.sizes.split(',')]
    except ValueError:
        parser.error('--sizes %r: give whole numbers separated by commas, e.g. 10,50,100' % args.sizes)
    if not args.sizes or min(args.sizes) < 1:
        parser.error('--sizes: every size must be at least 1')
    if args.repeat < 1:
        parser.error('--repeat %d: at least 1' % args.repeat)
    args.systems = [name.strip() for name in args.systems.split(',') if name.strip()]
    unknown = [name for name in args.systems if name not in SYSTEMS]
    if unknown or not args.systems:
        parser.error('--systems: unknown %s; choose from %s' % (', '.join(unknown) or '(none)', ', '.join(SYSTEMS)))
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.combine:
        try:
            return write_results(combine(args.combine), args.out)
        except ValueError as error:
            say(str(error))
            return 2
    sys.path.insert(0, HERE)

    def interrupted(signum, frame):
        raise KeyboardInterrupt('signal %d' % signum)
    signal.signal(signal.SIGTERM, interrupted)

    os.makedirs(args.out, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix='recovery-bench-')
    bench = Bench(args, workdir)
    started_lab = False
    lab_error = None
    systems = {}
    setup_errors = {}
    runs = []
    t_start = time.monotonic()
    try:
        if not lab_running():
            say('starting the lab (%d computes)' % args.computes)
            started_lab = True  # also stopped again when it does not come up whole
            labctl('up', '--computes', str(args.computes), timeout=1800)
        bench.env = labctl('env')
        if FAILED_HOST not in bench.env['hosts'] or len(bench.env['hosts']) < 2:
            raise LabError('the lab needs %s and at least one other compute host; it has %s'
                           % (FAILED_HOST, ', '.join(bench.env['hosts'])))
        systems = make_systems(bench, args.systems)
        setup_errors.update(set_up(systems))
        run_all(bench, systems, args, runs)
    except KeyboardInterrupt:
        say('interrupted: cleaning up')
    except LabError as error:  # the lab did not come up, or lacks the hosts: nothing was measured
        lab_error = str(error)
        say('the bench cannot run: %s' % error)
    finally:
        if bench.env is not None:
            try:  # left clean, also before a stop: a lab stopped with its host fenced and forced down does not
                # come up again (`labctl up` waits for every nova-compute to be up in Nova)
                labctl('reset', timeout=1200)
            except Exception as error:
                say('labctl reset failed: %s' % error)
        for system in systems.values():
            try:
                system.close()
            except Exception as error:
                say('could not stop %s: %s' % (type(system).__name__, error))
        if started_lab:
            say('stopping the lab this run started')
            try:
                labctl('down', timeout=600)
            except Exception as error:
                say('labctl down failed: %s' % error)
        if args.keep_workdir:
            say('run logs kept in %s' % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if lab_error is not None:
        return 2

    results = {'sizes': args.sizes, 'repeat': args.repeat, 'systems': args.systems, 'failed_host': FAILED_HOST,
               'computes': len(bench.env['hosts']) if bench.env else None,
               'load_average_at_end': os.getloadavg(), 'seconds': round(time.monotonic() - t_start, 1),
               'systems_config': {name: getattr(system, 'config', None) for name, system in systems.items()},
               'setup_errors': setup_errors, 'runs': runs, 'summary': summarize(runs)}
    return write_results(results, args.out)


def combine(paths):
    """One results document from several recovery.json files: every run of each (tagged with its file's directory
    name in 'source', unless it came from a combined file and has one), the union of their sizes and systems, the largest repetition count, and the summary over all runs.
    The files must agree on the failed host and the lab's size (else ValueError naming the file).
    A path may end in ':SYSTEM,SYSTEM...': only those systems' runs of that file count (e.g. a file whose
    collection runs measured older code)."""
    parts = []
    for path in paths:
        path, _, only = path.partition(':')
        only = [name.strip() for name in only.split(',') if name.strip()]
        unknown = [name for name in only if name not in SYSTEMS]
        if unknown:
            raise ValueError('--combine %s: unknown system(s) %s; choose from %s'
                             % (path, ', '.join(unknown), ', '.join(SYSTEMS)))
        try:
            with open(path) as handle:
                part = json.load(handle)
        except (OSError, ValueError) as error:
            raise ValueError('--combine %s: cannot read it as results JSON (%s)' % (path, error))
        if not isinstance(part, dict) or not isinstance(part.get('runs'), list):
            raise ValueError('--combine %s: no "runs" list; is it a bench/recovery.py recovery.json?' % path)
        if only:
            part = dict(part, runs=[run for run in part['runs'] if run['system'] in only])
        parts.append((path, part))
    first_path, first = parts[0]
    for path, part in parts[1:]:
        for key in ('failed_host', 'computes'):
            if part.get(key) != first.get(key):
                raise ValueError('--combine %s: %s %r, but %s has %r: runs of different labs are not comparable'
                                 % (path, key, part.get(key), first_path, first.get(key)))
    # a run keeps the source it had (a file combined before), else gets its file's directory name
    runs = [dict(run, source=run.get('source') or os.path.basename(os.path.dirname(os.path.abspath(path))) or path)
            for path, part in parts for run in part['runs']]
    systems = sorted({run['system'] for run in runs}, key=system_order)
    config, setup_errors = {}, {}
    for path, part in parts:
        config.update(part.get('systems_config') or {})
        setup_errors.update(part.get('setup_errors') or {})
    repeat = max([sum(1 for r in runs if r['system'] == s and r['n'] == n) for s in systems
                  for n in {r['n'] for r in runs}] or [0])
    return {'sizes': sorted({run['n'] for run in runs}), 'repeat': repeat, 'systems': systems,
            'failed_host': first.get('failed_host'), 'computes': first.get('computes'),
            # a combined file contributes the invocations it was combined from
            'combined_from': [entry for path, part in parts for entry in part.get('combined_from') or [
                {'file': path, 'seconds': part.get('seconds'),
                 'load_average_at_end': part.get('load_average_at_end')}]],
            'seconds': round(sum(part.get('seconds') or 0 for path, part in parts), 1),
            'systems_config': config, 'setup_errors': setup_errors, 'runs': runs, 'summary': summarize(runs)}


def write_results(results, out):
    """Write RESULTS as OUT/recovery.json, its table as OUT/recovery.md and the plot OUT/recovery.png; print the
    table and the summary line.
    -> the exit code: 0 only when there were runs, every system could run and every run recovered."""
    runs, setup_errors, summary = results['runs'], results['setup_errors'], results['summary']
    os.makedirs(out, exist_ok=True)
    results_json = os.path.join(out, 'recovery.json')
    with open(results_json, 'w') as handle:
        json.dump(results, handle, indent=1)
    with open(os.path.join(out, 'recovery.md'), 'w') as handle:
        handle.write(format_table(summary, markdown=True) + '\n')
    png = os.path.join(out, 'recovery.png')
    try:
        plot(results_json, png)
    except (subprocess.CalledProcessError, OSError) as error:
        say('no plot: %s (pip install -r bench/requirements.txt into %s/bench-venv)' % (error, HOME))
        png = None
    print(format_table(summary))
    for name, error in setup_errors.items():
        print('%s did not run: %s' % (name, error.splitlines()[0] if error else ''))
    print('raw results: %s%s' % (results_json, '; plot: %s' % png if png else ''))
    print(summary_line(summary))
    return 0 if runs and not setup_errors and all(run['ok'] for run in runs) else 1


if __name__ == '__main__':
    sys.exit(main())
