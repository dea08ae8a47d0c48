"""A fault scenario against the real lab: prepare a failed host with servers, run the host_failover runbook
(ansible-playbook, through tests/integration/playbook_harness.py) while faults are injected, check the invariants
(invariants.py), and keep the scenario's row for the table the suite prints at the end (conftest.py).

Import from here (`from fault_lab import ...`), never from the conftest.
"""

import json
import os
import signal
import subprocess
import threading
import time
import types

import invariants
from lab_helpers import compute_service, evacuation_migrations, labctl, wait_for
from nova_proxy import FaultProxy, clouds_yaml_via
from playbook_harness import PlaybookDir, PlayRun

PLAYBOOK = 'openstack_ha.recovery.host_failover'
RESULTS = []  # one row per scenario: scenario, outcome, invariants, seconds


class Scenario(PlaybookDir):
    """One scenario: the lab's inventory, a report and a lock directory of its own, the failed host and the
    servers that were on it (`before`), the moment it failed, and the runs made."""

    def __init__(self, lab, conn, directory, name):
        super().__init__(lab, directory)
        self.conn = conn
        self.name = name
        with open(lab['inventory']) as inventory:
            self.inventory = json.load(inventory)
        self.write_yaml('inventory.yml', self.inventory)
        self.reports = directory / 'reports'
        self.locks = directory / 'locks'
        self.host = None
        self.before = {}
        self.crashed_at = None
        self.since = None
        self.proxies = []
        self.row = None
        self.seconds = 0.0

    # -- the failed host ------------------------------------------------------------------------------------

    def prepare(self, host='compute1', servers=4, stopped=0, crash=True, stopped_first=False):
        """A clean lab, `servers` servers on `host` (the last `stopped` of them SHUTOFF; the first ones with
        stopped_first, which are evacuated first), then the host crashed (its BMC still says on) and Nova reporting
        it down. Returns the servers (labctl boot's records)."""
        labctl('reset', timeout=600)
        self.host = host
        booted = labctl('boot', '--count', str(servers), '--host', host, '--prefix', 'flt', timeout=600)['servers']
        to_stop = booted[:stopped] if stopped_first else booted[len(booted) - stopped:]
        for server in to_stop:
            self.conn.compute.stop_server(server['id'])
        for server in to_stop:
            wait_for('%s to stop' % server['name'],
                     lambda s=server: self.conn.compute.get_server(s['id']).status == 'SHUTOFF', 60, interval=0.5)
        self.before = invariants.snapshot(self.conn, host)
        assert len(self.before) == servers, self.before
        self.since = time.time()
        if crash:
            self.crash(host)
        return booted

    def crash(self, host):
        """labctl crash HOST (nova-compute killed, BMC still on); the failed host's crash time is kept."""
        labctl('crash', host)
        if host == self.host:
            self.crashed_at = time.time()
        self.wait_down(host)

    def wait_down(self, host=None):
        host = host or self.host
        wait_for('Nova to report %s down' % host, lambda: compute_service(self.conn, host).state == 'down', 90,
                 interval=0.5)

    # -- runs -----------------------------------------------------------------------------------------------

    def extra(self, **extra):
        return dict(dict(compute_host=self.host, host_failover_report_dir=str(self.reports),
                         host_failover_lock_dir=str(self.locks), host_failover_instance_timeout=300), **extra)

    def failover(self, env=None, timeout=900, **extra):
        started = time.monotonic()
        run = self.play(PLAYBOOK, extra_vars=self.extra(**extra), timeout=timeout, env=env)
        self.seconds += time.monotonic() - started
        return run

    def failover_in_background(self, env=None, **extra):
        """Start the runbook in a thread; returns (thread, holder): holder[0] is the PlayRun once it ended."""
        holder = []
        thread = threading.Thread(target=lambda: holder.append(self.failover(env=env, **extra)), daemon=True)
        thread.start()
        return thread, holder

    def spawn_failover(self, env=None, **extra):
        """ansible-playbook in its own process group (so the test can kill the controller and its workers):
        returns (Popen, results file)."""
        self.runs += 1
        results = self.dir / ('results-%d.jsonl' % self.runs)
        argv = [os.path.join(self.bin_dir, 'ansible-playbook'), '-i', str(self.dir / 'inventory.yml'),
                '--vault-password-file', str(self.dir / 'vault-password'), PLAYBOOK, '-e', json.dumps(self.extra(**extra))]
        proc = subprocess.Popen(argv, env=dict(self.env, TASK_RESULTS_FILE=str(results), **(env or {})),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(self.dir),
                                stdin=subprocess.DEVNULL, start_new_session=True)
        return proc, results

    def kill_controller(self, proc):
        """SIGKILL ansible-playbook and every process under it at once: the controller dies mid-run, as on a power
        loss. (Its process group is not enough: ansible-core 2.19 runs each task's worker in a session of its own,
        and a worker whose ansible-playbook was killed goes on running its module - seen with nova_evacuate.)"""
        tree = [proc.pid] + descendants(proc.pid)
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        output = proc.communicate(timeout=60)[0]
        wait_for('every process of the killed controller to end', lambda: not any(
            os.path.exists('/proc/%d' % pid) and _state(pid) not in ('Z', None) for pid in tree), 30)
        return output

    def wait_first_evacuation(self, timeout=300):
        """Block until Nova holds an evacuation migration from the failed host; returns the migrations."""
        def started():
            return [m for m in evacuation_migrations(self.conn, self.host) if m['instance_uuid'] in self.before]
        return wait_for('the first evacuation from %s' % self.host, started, timeout, interval=0.2)

    def proxied_env(self):
        """A fault proxy in front of nova-api and the environment that points the runbook at it."""
        endpoint = [e for e in self.conn.identity.endpoints(interface='public')
                    if e.service_id == self.conn.identity.find_service('nova').id][0].url
        upstream = endpoint.split('/v2')[0]
        proxy = FaultProxy(upstream)
        self.proxies.append(proxy)
        clouds = clouds_yaml_via(self.lab['clouds_yaml'], self.lab['cloud'], proxy.url, self.dir / 'clouds-proxy.yaml')
        return proxy, dict(OS_CLIENT_CONFIG_FILE=clouds)

    # -- the verdict ----------------------------------------------------------------------------------------

    def check(self, report, expect_fence=True, outcome=None, powered_back=False):
        """Check the invariants, record the scenario's row and fail the test on any violation."""
        result = invariants.check(self.conn, self.lab, self.host, self.before, report, self.since,
                                  crashed_at=self.crashed_at, expect_fence=expect_fence, powered_back=powered_back)
        self.record(outcome or (report or {}).get('outcome', 'no report'), result.summary())
        assert result.ok, '%s\n(report message: %s)' % (result, (report or {}).get('message'))
        return result

    def record(self, outcome, held):
        self.row = dict(scenario=self.name.replace('test_', '', 1), outcome=outcome, invariants=held,
                        seconds='%.1f s' % self.seconds if self.seconds else '-')

    def close(self):
        for proxy in self.proxies:
            proxy.close()
        RESULTS.append(self.row or dict(scenario=self.name.replace('test_', '', 1), outcome='error before check',
                                        invariants='not checked', seconds='%.1f s' % self.seconds))


def _state(pid):
    try:
        with open('/proc/%d/stat' % pid) as stat:
            return stat.read().rsplit(')', 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return None


def descendants(pid):
    """Every process below `pid` (children, their children, ...), read from /proc."""
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/%s/stat' % entry) as stat:
                    ppid = int(stat.read().rsplit(')', 1)[1].split()[1])
            except (FileNotFoundError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def report_of(run):
    """The run's host_failover_report (None when the run wrote none)."""
    found = [r['result']['ansible_facts']['host_failover_report'] for r in run.records
             if 'host_failover_report' in r['result'].get('ansible_facts', {})]
    return found[-1] if found else None


def play_run(proc, results, output):
    """A PlayRun of a spawned ansible-playbook that ended (or was killed)."""
    ended = types.SimpleNamespace(returncode=proc.returncode, stdout=output or '', stderr='')
    records = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    return PlayRun(ended, records)
