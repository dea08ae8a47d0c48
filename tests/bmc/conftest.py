"""A real simulated BMC (lab/bmcsim.py) per test, and the collection's modules run through the ansible CLI.

Each test gets one bmcsim on free ports, guarding a dummy host process (`sleep 3600.<marker>`) that the
"lab controller" (this fixture) started, exactly as the lab runs a compute host. Power off through the BMC
kills that process; the tests check the process itself, and the BMC state through clients independent of
the modules (ipmitool for IPMI, plain urllib for Redfish).
"""

import base64
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BMCSIM = REPO / 'lab' / 'bmcsim.py'
USER = 'admin'
PASSWORD = 'bmc-Sim-Secret-pw'


def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def alive(pid):
    """Running or stopped, not a zombie."""
    try:
        with open('/proc/%d/stat' % pid) as stat:
            data = stat.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return data[data.rindex(')') + 2] not in 'ZX'


def marked_pids(marker):
    pids = []
    for entry in os.listdir('/proc'):
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as cmdline:
                if entry.isdigit() and marker.encode() in cmdline.read():
                    pids.append(int(entry))
        except OSError:
            pass
    return [pid for pid in pids if alive(pid)]


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError('timed out after %.1f s waiting for %s' % (timeout, what))
        time.sleep(0.02)


class Bmc:
    """One bmcsim process, its host directory and its dummy host."""

    def __init__(self, tmp_path):
        self.dir = tmp_path / 'host'
        self.dir.mkdir()
        self.marker = '3600.%08d' % random.randrange(10 ** 8)
        self.name = 'compute-bmc%03d' % random.randrange(1000)
        self.ipmi_port = free_port(socket.SOCK_DGRAM)
        self.redfish_port = free_port(socket.SOCK_STREAM)
        self.config = dict(name=self.name, address='127.0.0.1', ipmi_port=self.ipmi_port,
                           redfish_port=self.redfish_port, username=USER, password=PASSWORD, fail_mode=None,
                           slow_delay=1.5)
        self._write('bmc.json', self.config)
        self._write('compute.json', dict(argv=['sleep', self.marker], env={}, cwd=str(tmp_path),
                                         log=str(tmp_path / 'compute.log')))
        self.stderr = open(tmp_path / 'bmcsim.stderr', 'wb')
        self.proc = None
        self.host = None
        self.username = USER
        self.password = PASSWORD
        self.alive = alive

    def _write(self, name, data):
        temporary = self.dir / (name + '.tmp')
        temporary.write_text(json.dumps(data))
        os.replace(temporary, self.dir / name)

    def start(self):
        # The lab controller starts the host (session leader, pid file, power on), then its BMC.
        self.host = subprocess.Popen(['sleep', self.marker], start_new_session=True, stdin=subprocess.DEVNULL)
        (self.dir / 'compute.pid').write_text('%d\n' % self.host.pid)
        (self.dir / 'power').write_text('on\n')
        self.proc = subprocess.Popen([sys.executable, str(BMCSIM), '--host-dir', str(self.dir)],
                                     stdin=subprocess.DEVNULL, stdout=self.stderr, stderr=self.stderr)

        def ready():
            assert self.proc.poll() is None, 'bmcsim exited with %s' % self.proc.returncode
            return (self.dir / 'bmc.pid').exists() and self._service_root_answers()
        wait_until(ready, 15, 'bmcsim readiness')

    def _service_root_answers(self):
        try:
            return self.http('GET', '/redfish/v1', auth=False, timeout=1)[0] == 200
        except OSError:
            return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in marked_pids(self.marker):
            os.kill(pid, signal.SIGKILL)
        if self.host is not None:
            self.host.wait()
        self.stderr.close()

    def fail(self, mode):
        self.config['fail_mode'] = mode
        self._write('bmc.json', self.config)

    # Evidence that does not come from the modules.
    def host_pids(self):
        return marked_pids(self.marker)

    def ipmitool_power(self):
        result = subprocess.run(['ipmitool', '-I', 'lanplus', '-H', '127.0.0.1', '-p', str(self.ipmi_port),
                                 '-U', USER, '-E', 'power', 'status'],
                                env=dict(os.environ, IPMI_PASSWORD=PASSWORD), capture_output=True, text=True,
                                timeout=30, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().rsplit(' ', 1)[-1]  # "Chassis Power is off"

    def http(self, method, path, body=None, auth=True, timeout=5):
        request = urllib.request.Request('http://127.0.0.1:%d%s' % (self.redfish_port, path), method=method,
                                         data=None if body is None else json.dumps(body).encode())
        if auth:
            token = base64.b64encode(('%s:%s' % (USER, PASSWORD)).encode()).decode()
            request.add_header('Authorization', 'Basic ' + token)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        return status, (json.loads(raw) if raw else None)

    def http_power(self):
        status, body = self.http('GET', '/redfish/v1/Systems/' + self.name)
        assert status == 200, body
        return body['PowerState']

    def power_commands(self):
        """The power commands the BMC received, from its event log (kills and starts left out)."""
        try:
            lines = (self.dir / 'bmc-events.log').read_text().splitlines()
        except FileNotFoundError:
            return []
        return [event for event in map(json.loads, lines) if 'power_before' in event]

    @property
    def redfish_url(self):
        return 'http://127.0.0.1:%d' % self.redfish_port


@pytest.fixture
def bmc(tmp_path):
    if shutil.which('ipmitool') is None:
        pytest.fail('ipmitool is needed to check the BMC independently of the modules: apt-get install ipmitool')
    sim = Bmc(tmp_path)
    try:
        sim.start()
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope='session')
def collections_path(tmp_path_factory):
    """A directory with ansible_collections/openstack_ha/recovery -> this checkout."""
    root = tmp_path_factory.mktemp('collections')
    (root / 'ansible_collections' / 'openstack_ha').mkdir(parents=True)
    (root / 'ansible_collections' / 'openstack_ha' / 'recovery').symlink_to(REPO)
    return root


class Run:
    def __init__(self, result, failed, output, seconds):
        self.result = result
        self.failed = failed
        self.output = output
        self.seconds = seconds

    def __getitem__(self, key):
        return self.result[key]


RESULT_LINE = re.compile(r'^localhost \| ([A-Z]+)!? => ', re.MULTILINE)


@pytest.fixture
def ansible(collections_path):
    """ansible(module, check=False, diff=False, **args) -> Run: the module by FQCN through the ansible CLI.

    The result is the JSON the ad-hoc output shows after "localhost | CHANGED =>" (no_log applied); with
    diff, the diff is printed above it.
    """
    bin_dir = os.path.dirname(sys.executable)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_path), ANSIBLE_STDOUT_CALLBACK='minimal',
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_NOCOLOR='1',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='0', PATH=bin_dir + os.pathsep + os.environ.get('PATH', ''))

    def run(module, check=False, diff=False, **args):
        argv = [os.path.join(bin_dir, 'ansible'), 'localhost', '-c', 'local', '-i', 'localhost,',
                '-m', 'openstack_ha.recovery.' + module, '-a', json.dumps(args)]
        argv += ['--check'] if check else []
        argv += ['--diff'] if diff else []
        started = time.monotonic()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
        seconds = time.monotonic() - started
        output = proc.stdout + proc.stderr
        found = RESULT_LINE.search(proc.stdout)
        if found is None:
            raise AssertionError('ansible gave no result (rc %d):\n%s' % (proc.returncode, output))
        result = json.JSONDecoder().raw_decode(proc.stdout[found.end():])[0]
        return Run(result, found.group(1) == 'FAILED', output, seconds)
    return run
