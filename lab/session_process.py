"""A child process in a session of its own, its output in a log file: shared by the tests (tests/eda/eda_helpers.py,
and through it tests/faults and tests/integration) and the benchmark (bench/recovery.py, bench/masakari.py).

It lives in lab/ because both already depend on this directory (lab/labctl) and neither may import from the
other (bench must not import from tests/); it is not part of the collection (lab/ is build_ignore'd and skipped by
ansible-test sanity). Import it with lab/ on sys.path: `from session_process import SessionProcess`.

stop() ends the child's session process group only (SIGTERM, SIGKILL after 15 s, then SIGKILL for whatever is left
in the group, such as the ansible-playbook of a run in progress), never processes by name.
"""

import os
import signal
import subprocess
import time

STOP_GRACE = 15  # seconds between SIGTERM and SIGKILL


class SessionProcess:
    """argv started in its own session, stdout and stderr to `log`; popen_kwargs go to subprocess.Popen (env, cwd)."""

    def __init__(self, argv, log, **popen_kwargs):
        self.log = log
        self.started = time.monotonic()
        self.ended = None
        with open(log, 'wb') as out:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True, **popen_kwargs)

    def poll(self):
        """None while it runs, else its exit code (the moment it was first seen ended is kept in `ended`)."""
        rc = self.popen.poll()
        if rc is not None and self.ended is None:
            self.ended = time.monotonic()
        return rc

    def wait(self, timeout):
        """Wait up to `timeout` seconds for it to end; returns poll()."""
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        return self.poll()

    def stop(self):
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(STOP_GRACE)
            except ProcessLookupError:
                pass
        try:  # children left in the group
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.poll()

    def output(self):
        """The whole log so far ('' when it cannot be read)."""
        try:
            with open(self.log, errors='replace') as handle:
                return handle.read()
        except OSError:
            return ''

    def tail(self, chars=3000):
        return self.output()[-chars:]
