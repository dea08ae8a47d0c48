#!/usr/bin/env python3
"""How long does a verified fence take? Power off + verification against a simulated BMC, N runs per method.

    .venv/bin/python bench/fence.py                 # own BMC simulator (lab/bmcsim.py) guarding a dummy host
    .venv/bin/python bench/fence.py --runs 50 --cli-runs 5
    OHLAB_HOME=... lab/labctl up && .venv/bin/python bench/fence.py --lab compute1   # a lab host's BMC

Methods, each timed from the first request to the verified "off" (the host is powered on again between runs,
untimed):

    ipmi_fence core       PowerController + IpmiClient, as the module runs them (new session per run,
                          poll_interval 0.1 s, 3 consecutive off reads)
    ipmi_fence (ansible)  the module by FQCN through the `ansible` CLI (adds Ansible's start-up)
    redfish_fence core    PowerController + RedfishClient, same defaults
    pyghmi set_power      pyghmi's own Command(...).set_power('off', wait=True), for comparison

The script starts what it needs, stops by itself, and removes everything it made (the BMC simulator, the dummy
host, temporary directories), also on Ctrl-C. With --lab, the lab host's nova-compute is killed and restarted by
every run, and left powered on at the end.
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BMCSIM = os.path.join(REPO, 'lab', 'bmcsim.py')
USER = 'admin'
PASSWORD = 'bench-bmc-secret'


def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError('timed out after %s s waiting for %s' % (timeout, what))
        time.sleep(0.02)


class OwnBmc:
    """lab/bmcsim.py on free ports, guarding a dummy host process (`sleep 3600.<marker>`)."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, 'host')
        os.makedirs(self.dir)
        self.marker = '3600.%08d' % random.randrange(10 ** 8)
        self.address = '127.0.0.1'
        self.ipmi_port = free_port(socket.SOCK_DGRAM)
        self.redfish_url = 'http://127.0.0.1:%d' % free_port(socket.SOCK_STREAM)
        self.username, self.password = USER, PASSWORD
        self._write('bmc.json', dict(name='bench-host', address=self.address, ipmi_port=self.ipmi_port,
                                     redfish_port=int(self.redfish_url.rsplit(':', 1)[1]), username=USER,
                                     password=PASSWORD, fail_mode=None, slow_delay=5))
        self._write('compute.json', dict(argv=['sleep', self.marker], env={}, cwd=workdir,
                                         log=os.path.join(workdir, 'host.log')))
        self.stderr = open(os.path.join(workdir, 'bmcsim.log'), 'wb')
        self.proc = None
        self.host = None

    def _write(self, name, data):
        with open(os.path.join(self.dir, name + '.tmp'), 'w') as out:
            json.dump(data, out)
        os.replace(os.path.join(self.dir, name + '.tmp'), os.path.join(self.dir, name))

    def start(self):
        self.host = subprocess.Popen(['sleep', self.marker], start_new_session=True, stdin=subprocess.DEVNULL)
        with open(os.path.join(self.dir, 'compute.pid'), 'w') as pidfile:
            pidfile.write('%d\n' % self.host.pid)
        with open(os.path.join(self.dir, 'power'), 'w') as power:
            power.write('on\n')
        self.proc = subprocess.Popen([sys.executable, BMCSIM, '--host-dir', self.dir], stdin=subprocess.DEVNULL,
                                     stdout=self.stderr, stderr=self.stderr)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError('bmcsim exited with %s (see %s)' % (self.proc.returncode, self.stderr.name))
            try:
                with urllib.request.urlopen(self.redfish_url + '/redfish/v1', timeout=1) as response:
                    return os.path.exists(os.path.join(self.dir, 'bmc.pid')) and response.status == 200
            except OSError:
                return False
        wait_until(ready, 15, 'the BMC simulator')
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self._marked_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.host is not None:
            self.host.wait()
        self.stderr.close()

    def _marked_pids(self):
        pids = []
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                with open('/proc/%s/cmdline' % entry, 'rb') as cmdline:
                    if self.marker.encode() in cmdline.read():
                        pids.append(int(entry))
            except OSError:
                pass
        return pids


class LabBmc:
    """The BMC of one host of a running lab (lab/labctl env)."""

    def __init__(self, host):
        proc = subprocess.run([os.path.join(REPO, 'lab', 'labctl'), '--json', 'env'], capture_output=True,
                              text=True, timeout=300, check=True)
        bmc = json.loads(proc.stdout)['hosts'][host]
        self.address, self.ipmi_port, self.redfish_url = bmc['bmc_address'], bmc['ipmi_port'], bmc['redfish_url']
        self.username, self.password = bmc['bmc_username'], bmc['bmc_password']

    def start(self):
        return self

    def stop(self):
        pass


def import_collection(workdir):
    """Make this checkout importable as ansible_collections.openstack_ha.recovery; return the collections root."""
    root = os.path.join(workdir, 'collections')
    os.makedirs(os.path.join(root, 'ansible_collections', 'openstack_ha'))
    os.symlink(REPO, os.path.join(root, 'ansible_collections', 'openstack_ha', 'recovery'))
    sys.path.insert(0, root)
    return root


class Methods:
    """The timed methods, and power on between runs."""

    def __init__(self, bmc, collections_root):
        from ansible_collections.openstack_ha.recovery.plugins.module_utils import _bmc, _ipmi, _redfish
        self.bmc = bmc
        self._bmc, self._ipmi, self._redfish = _bmc, _ipmi, _redfish
        self.collections_root = collections_root

    def power_on(self):
        client = self._ipmi.IpmiClient(self.bmc.address, self.bmc.username, self.bmc.password, port=self.bmc.ipmi_port)
        try:
            self._bmc.PowerController(client, timeout=60).ensure('on')
        finally:
            client.close()

    def _core(self, client):
        try:
            result = self._bmc.PowerController(client).ensure('off')
        finally:
            client.close()
        assert result['verified'] and result['changed'], result

    def ipmi_core(self):
        self._core(self._ipmi.IpmiClient(self.bmc.address, self.bmc.username, self.bmc.password,
                                         port=self.bmc.ipmi_port))

    def redfish_core(self):
        self._core(self._redfish.RedfishClient(self.bmc.redfish_url, self.bmc.username, self.bmc.password))

    def ipmi_cli(self):
        bin_dir = os.path.dirname(sys.executable)
        args = dict(address=self.bmc.address, port=self.bmc.ipmi_port, username=self.bmc.username,
                    password=self.bmc.password)
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=self.collections_root, ANSIBLE_STDOUT_CALLBACK='minimal',
                   ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING='0',
                   ANSIBLE_INVENTORY_UNPARSED_WARNING='0', PATH=bin_dir + os.pathsep + os.environ.get('PATH', ''))
        proc = subprocess.run([os.path.join(bin_dir, 'ansible'), 'localhost', '-c', 'local', '-i', 'localhost,',
                               '-m', 'openstack_ha.recovery.ipmi_fence', '-a', json.dumps(args)],
                              env=env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0 and '"verified": true' in proc.stdout, proc.stdout + proc.stderr

    def pyghmi_set_power(self):
        from pyghmi.ipmi.command import Command
        command = Command(bmc=self.bmc.address, port=self.bmc.ipmi_port, userid=self.bmc.username.encode(),
                          password=self.bmc.password.encode())
        try:
            result = command.set_power('off', wait=True)
        finally:
            command.ipmi_session.logout()
        assert result.get('powerstate') == 'off', result


def measure(method, power_on, runs):
    timings = []
    for dummy in range(runs):
        power_on()
        started = time.perf_counter()
        method()
        timings.append(time.perf_counter() - started)
    return timings


def p90(values):
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 9 // 10) - 1)]  # nearest rank


def table(rows):
    lines = ['%-48s %5s %9s %9s %9s %9s' % ('off + verified', 'runs', 'median', 'p90', 'min', 'max'),
             '%-48s %5s %9s %9s %9s %9s' % ('', '', 'ms', 'ms', 'ms', 'ms')]
    for name, timings in rows:
        ms = [t * 1000 for t in timings]
        lines.append('%-48s %5d %9.1f %9.1f %9.1f %9.1f'
                     % (name, len(ms), statistics.median(ms), p90(ms), min(ms), max(ms)))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=20, help='runs per method (default 20)')
    parser.add_argument('--cli-runs', type=int, help='runs of the ansible CLI method (default: --runs)')
    parser.add_argument('--lab', metavar='HOST', help="use this host's BMC in the running lab (lab/labctl env)")
    args = parser.parse_args(argv)
    cli_runs = args.runs if args.cli_runs is None else args.cli_runs

    def interrupted(signum, frame):
        raise KeyboardInterrupt('signal %d' % signum)
    signal.signal(signal.SIGTERM, interrupted)

    workdir = tempfile.mkdtemp(prefix='fence-bench-')
    bmc = None
    try:
        bmc = (LabBmc(args.lab) if args.lab else OwnBmc(workdir)).start()
        methods = Methods(bmc, import_collection(workdir))
        rows = []
        for name, method, runs in (
                ('ipmi_fence core (poll 0.1 s, 3 off reads)', methods.ipmi_core, args.runs),
                ('ipmi_fence through the ansible CLI', methods.ipmi_cli, cli_runs),
                ('redfish_fence core (poll 0.1 s, 3 off reads)', methods.redfish_core, args.runs),
                ("pyghmi Command.set_power('off', wait=True)", methods.pyghmi_set_power, args.runs)):
            if runs > 0:
                print('%s: %d runs ...' % (name, runs), file=sys.stderr, flush=True)
                rows.append((name, measure(method, methods.power_on, runs)))
        methods.power_on()
        where = ('lab host %s' % args.lab) if args.lab else 'lab/bmcsim.py guarding a dummy host'
        print('BMC: %s, IPMI %s:%d, Redfish %s' % (where, bmc.address, bmc.ipmi_port, bmc.redfish_url))
        print(table(rows))
        return 0
    except KeyboardInterrupt:
        print('interrupted: cleaning up', file=sys.stderr)
        return 130
    finally:
        if bmc is not None:
            bmc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
