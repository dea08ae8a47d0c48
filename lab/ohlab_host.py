#!/usr/bin/env python3
"""The operating system of one lab compute host: its init, its sshd and its nova-compute service.

The BMC simulator (lab/bmcsim.py) starts this program at power on, in a new session, and writes its pid to the
host directory's ``compute.pid``; power off and ``labctl crash`` SIGKILL its whole process group, ``labctl
freeze`` SIGSTOPs it. Everything of the host runs in that one process group, so it lives and dies with the
host's power, as on a real machine:

* a real OpenSSH ``sshd -D -f <host dir>/sshd_config`` (written by labctl: the host's own port on 127.0.0.1, its
  own host key, root login with the lab's key only). A frozen host's sshd is stopped too: the kernel still
  completes the TCP handshake, but no banner ever comes, as with a hung host.
* the ``nova-compute`` service: the command after ``--``, started at boot (an enabled unit). Its pid is in
  ``nova-compute.pid`` while it runs.

Service control (what ``systemctl`` does on a real host; ``labctl service HOST ...`` sends these signals):

``SIGUSR1``  start nova-compute unless it runs. With a file ``service-broken`` in the host directory (``labctl
             service HOST --broken``) the start fails: the service's process exits at once with status 1.
``SIGUSR2``  stop nova-compute: its process (group) is killed; the host and its sshd stay up.
``SIGTERM``  shut the host down: sshd and nova-compute are killed, then this program exits.

``service.json`` in the host directory records the service's state after every change: ``{"init_pid": <this
program's pid>, "state":
"running"|"stopped"|"failed", "pid": N|null, "started": <time.time()>|null, "exit_status": N|null,
"changed": <time.time()>, "starts": <count>}``. A start that fails is recorded as ``failed`` with its exit status.

Usage::

    python lab/ohlab_host.py --host-dir DIR [--sshd-config FILE] -- NOVA_COMPUTE_ARGV...
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

SSHD = '/usr/sbin/sshd'
PRIVSEP_DIR = '/run/sshd'  # Debian's sshd refuses to start without it ("Missing privilege separation directory")
BROKEN_FILE = 'service-broken'
SERVICE_PID_FILE = 'nova-compute.pid'
SERVICE_STATE_FILE = 'service.json'


def log(message):
    sys.stdout.write('%s ohlab_host[%d]: %s\n' % (time.strftime('%Y-%m-%dT%H:%M:%S'), os.getpid(), message))
    sys.stdout.flush()


def write_atomic(path, text):
    tmp = '%s.%d.tmp' % (path, os.getpid())
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


class Host:
    def __init__(self, host_dir, sshd_config, service_argv):
        self.dir = os.path.abspath(host_dir)
        self.sshd_config = sshd_config
        self.service_argv = service_argv
        self.sshd = None
        self.service = None
        self.state = {'init_pid': os.getpid(), 'state': 'stopped', 'pid': None, 'started': None, 'exit_status': None,
                      'changed': time.time(), 'starts': 0}
        self.requests = []  # signals received, handled in order by the main loop

    def _record(self, **changes):
        self.state.update(changes, changed=time.time())
        # the pid file first: labctl takes a record of this init without a live pid file for a stopped service, and
        # between the two writes (seconds on a loaded machine) it asked a running service to start (CI rehearsal)
        pidfile = os.path.join(self.dir, SERVICE_PID_FILE)
        if self.state['state'] == 'running':
            write_atomic(pidfile, '%d\n' % self.state['pid'])
        elif os.path.exists(pidfile):
            os.unlink(pidfile)
        write_atomic(os.path.join(self.dir, SERVICE_STATE_FILE), json.dumps(self.state) + '\n')

    def start_sshd(self):
        if not self.sshd_config:
            return
        os.makedirs(PRIVSEP_DIR, mode=0o755, exist_ok=True)
        # -D: no daemon, stays in this process group (power off kills it); -e: its log goes to our log
        self.sshd = subprocess.Popen([SSHD, '-D', '-e', '-f', self.sshd_config], stdin=subprocess.DEVNULL)
        log('sshd started (pid %d, %s)' % (self.sshd.pid, self.sshd_config))

    def start_service(self):
        if self.service is not None and self.service.poll() is None:
            log('nova-compute already running (pid %d)' % self.service.pid)
            return
        argv = self.service_argv
        if os.path.exists(os.path.join(self.dir, BROKEN_FILE)):
            # a service that cannot come up: its process exits at once, as a unit whose binary fails at start
            argv = [sys.executable, '-c', 'import sys; sys.exit("nova-compute: cannot start (the lab made this '
                                          'service broken: labctl service HOST --ok repairs it)")']
        self.service = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        self._record(state='running', pid=self.service.pid, started=time.time(), exit_status=None,
                     starts=self.state['starts'] + 1)
        log('nova-compute started (pid %d)' % self.service.pid)

    def stop_service(self):
        if self.service is None or self.service.poll() is not None:
            self._record(state='stopped', pid=None)
            return
        pid = self.service.pid
        self.service.kill()
        self.service.wait()
        self.service = None
        self._record(state='stopped', pid=None, exit_status=None)
        log('nova-compute stopped (pid %d killed)' % pid)

    def reap(self):
        if self.service is not None and self.service.poll() is not None:
            status = self.service.returncode
            self.service = None
            self._record(state='failed', pid=None, exit_status=status)
            log('nova-compute exited with status %s' % status)
        if self.sshd is not None and self.sshd.poll() is not None:
            log('sshd exited with status %s' % self.sshd.returncode)
            self.sshd = None

    def shutdown(self):
        for proc in (self.service, self.sshd):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        self._record(state='stopped', pid=None)
        log('host shut down')

    def run(self):
        for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: self.requests.append(signum))
        self.start_sshd()
        self.start_service()
        while True:
            while self.requests:
                signum = self.requests.pop(0)
                if signum == signal.SIGUSR1:
                    self.start_service()
                elif signum == signal.SIGUSR2:
                    self.stop_service()
                else:
                    self.shutdown()
                    return 0
            self.reap()
            time.sleep(0.1)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if '--' not in argv:
        print('usage: ohlab_host.py --host-dir DIR [--sshd-config FILE] -- NOVA_COMPUTE_ARGV...', file=sys.stderr)
        return 2
    split = argv.index('--')
    parser = argparse.ArgumentParser(prog='ohlab_host.py')
    parser.add_argument('--host-dir', required=True)
    parser.add_argument('--sshd-config')
    args = parser.parse_args(argv[:split])
    if not argv[split + 1:]:
        parser.error('no service command after --')
    return Host(args.host_dir, args.sshd_config, argv[split + 1:]).run()


if __name__ == '__main__':
    sys.exit(main())
