"""Tests of lab/ohlab_host.py, the init of a lab compute host, against real processes: a real OpenSSH sshd on a
free port and a dummy service (``sleep``) in place of nova-compute. Outcomes are read from the processes (/proc)
and from what the port answers, as the runbooks' banner probes read it."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not os.path.exists('/usr/sbin/sshd') or shutil.which('ssh-keygen') is None,
                                 reason='openssh-server is not installed (lab/install-debs installs it)')]

HOST_INIT = Path(__file__).resolve().parents[2] / 'lab' / 'ohlab_host.py'


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')
    except FileNotFoundError:
        return False


def banner(port, timeout=1.5):
    """The first line the port sends, 'refused', 'reset' (accepted, then the listener went away) or 'silent' (TCP
    accepted, nothing said)."""
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=timeout) as conn:
            return conn.recv(64).decode()
    except ConnectionRefusedError:
        return 'refused'
    except ConnectionResetError:
        return 'reset'
    except socket.timeout:
        return 'silent'


def wait_for(what, predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out waiting for ' + what
        time.sleep(0.05)


class FakeHost:
    def __init__(self, directory):
        self.dir = directory
        self.port = free_port()
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(directory / 'hostkey')], check=True)
        (directory / 'sshd_config').write_text('\n'.join([
            'ListenAddress 127.0.0.1:%d' % self.port, 'HostKey %s' % (directory / 'hostkey'), 'PidFile none',
            'PasswordAuthentication no', 'UsePAM no', '']))
        self.marker = 'ohlab-host-test-%d' % self.port
        self.proc = subprocess.Popen(
            [sys.executable, str(HOST_INIT), '--host-dir', str(directory), '--sshd-config',
             str(directory / 'sshd_config'), '--', 'sleep', '3600.%d' % self.port],
            stdout=open(directory / 'host.log', 'ab'), stderr=subprocess.STDOUT, start_new_session=True)

    def state(self):
        try:
            return json.loads((self.dir / 'service.json').read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def service_pid(self):
        record = self.state()
        return record.get('pid') if record.get('state') == 'running' else None

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


@pytest.fixture
def host(tmp_path):
    fake = FakeHost(tmp_path)
    yield fake
    fake.kill()


def test_sshd_and_service_live_and_die_with_the_host(host):
    wait_for('the service to start', lambda: host.service_pid())
    wait_for('sshd to answer', lambda: banner(host.port).startswith('SSH-2.0-'))
    service = host.service_pid()
    assert host.state()['init_pid'] == host.proc.pid and os.getpgid(service) == host.proc.pid

    # the service stops, the host and its sshd stay up
    host.proc.send_signal(signal.SIGUSR2)
    wait_for('the service to stop', lambda: not alive(service))
    assert host.state()['state'] == 'stopped' and not (host.dir / 'nova-compute.pid').exists()
    assert banner(host.port).startswith('SSH-2.0-')

    host.proc.send_signal(signal.SIGUSR1)
    wait_for('the service to start again', lambda: host.service_pid() not in (None, service))
    assert host.state()['starts'] == 2

    # frozen: the kernel accepts the connection, sshd says nothing (a hung host)
    os.killpg(host.proc.pid, signal.SIGSTOP)
    try:
        assert banner(host.port) == 'silent'
    finally:
        os.killpg(host.proc.pid, signal.SIGCONT)
    assert banner(host.port).startswith('SSH-2.0-')

    # power off / crash: the whole group dies, the port refuses
    new_service = host.service_pid()
    host.kill()
    wait_for('the service to die with the host', lambda: not alive(new_service))
    # sshd is killed with the same signal, but may close its listener a moment after the service died: a connection
    # made in between is accepted and reset, never answered
    wait_for('the port to refuse', lambda: banner(host.port) == 'refused')


def test_a_broken_service_fails_at_every_start(host):
    wait_for('the service to start', lambda: host.service_pid())
    (host.dir / 'service-broken').write_text('broken\n')
    host.proc.send_signal(signal.SIGUSR2)
    wait_for('the service to stop', lambda: host.state().get('state') == 'stopped')
    for starts in (2, 3):
        host.proc.send_signal(signal.SIGUSR1)
        wait_for('start %d to fail' % starts,
                 lambda s=starts: host.state().get('starts') == s and host.state().get('state') == 'failed')
        assert host.state()['exit_status'] == 1
    assert banner(host.port).startswith('SSH-2.0-')  # the host itself is fine
    (host.dir / 'service-broken').unlink()
    host.proc.send_signal(signal.SIGUSR1)
    wait_for('the repaired service to run', lambda: host.service_pid() and alive(host.service_pid()))
