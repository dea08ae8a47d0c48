# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""run_lock core: one failover per host at a time, with a lock file per host on the controller.

The lock is <lock_dir>/<name>.lock, a JSON record of the run holding it:

    {"run_id": "...", "pid": 4711, "pid_start": 123456, "boot_id": "...", "hostname": "controller-1",
     "created": "2026-11-22T10:15:00Z", "created_ts": 1795428900.0}

pid is the Ansible process running the play (holder_pid()), pid_start its start time in clock ticks after boot
and boot_id the kernel's boot id: together they tell a live holder from a pid the kernel gave to another
process since. A lock whose holder is gone, or older than stale_after seconds, is stale and is taken over.

Every decision (read, create, take over, remove) is made while holding an exclusive flock() on the guard file
<lock_dir>/<name>.lock.guard, so two runs racing for one host - two creators, two takers of one stale lock, a
taker and a remover - are serialised: the second one reads what the first one wrote. flock is released by the
kernel when its holder dies, so a killed run never blocks the others. The lock file itself is written to a
temporary file and moved into place (link() for a new lock, which fails if one appeared; rename() to replace a
stale one), so a reader never sees a half-written lock, even without the guard.

Paths and the clock are plain arguments; /proc is read through small functions the unit tests point elsewhere.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import fcntl
import json
import os
import re
import socket
import tempfile
import time

RUN_LOCK_RESULT_KEYS = ('acquired', 'holder', 'lock_path', 'took_over_from')
DEFAULT_LOCK_DIR = '~/.ansible/openstack_ha/locks'
# lock_dir when the task does not set it: this environment variable of the controller, else DEFAULT_LOCK_DIR
LOCK_DIR_ENV = 'OPENSTACK_HA_LOCK_DIR'
# Command names of the Ansible processes that run a play: the lock holder is the outermost of them above the
# module (the worker processes ansible forks for each task carry their parent's command line and are skipped).
HOLDER_COMMANDS = ('ansible-playbook', 'ansible-runner', 'ansible', 'ansible-console')
NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]*$')


class RunLockError(Exception):
    """A lock cannot be read or written, or an option is wrong; msg names the lock and what to do."""

    def __init__(self, msg, facts=None):
        super(RunLockError, self).__init__(msg)
        self.msg = msg
        self.facts = facts or {}


# ---------------------------------------------------------------------------------------------------------
# processes (/proc)


def read_proc(pid, what, proc='/proc'):
    """The content of /proc/<pid>/<what> as bytes, or None when the process (or the file) is gone."""
    try:
        with open(os.path.join(proc, str(pid), what), 'rb') as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def proc_stat(pid, proc='/proc'):
    """(state, ppid, start ticks) of a process, or None when it is gone."""
    data = read_proc(pid, 'stat', proc)
    if not data:
        return None
    fields = data[data.rindex(b')') + 2:].split()
    return fields[0].decode(), int(fields[1]), int(fields[19])


def boot_id(proc='/proc'):
    data = read_proc('sys', os.path.join('kernel', 'random', 'boot_id'), proc)
    return data.decode().strip() if data else None


def command_name(cmdline):
    """The program a /proc cmdline runs: its first word's basename, or the script's for `python SCRIPT ...`."""
    argv = [arg.decode('utf-8', 'replace') for arg in (cmdline or b'').split(b'\0') if arg]
    if not argv:
        return None
    name = os.path.basename(argv[0])
    if re.match(r'^python[0-9.]*$', name) and len(argv) > 1:
        return os.path.basename(argv[1])
    return name


def holder_pid(pid=None, proc='/proc'):
    """The pid of the Ansible process that runs this module: the first ancestor whose command is one of
    HOLDER_COMMANDS, then up while the parent has the very same command line (ansible's forked workers).
    None when there is none (the module runs on another host than the play, or under something else)."""
    pid = pid or os.getpid()
    found = None
    seen = set()
    while pid and pid > 1 and pid not in seen:
        seen.add(pid)
        cmdline = read_proc(pid, 'cmdline', proc)
        stat = proc_stat(pid, proc)
        if stat is None:
            break
        if found is not None:
            if cmdline != read_proc(found, 'cmdline', proc):
                break
            found = pid
        elif command_name(cmdline) in HOLDER_COMMANDS:
            found = pid
        pid = stat[1]
    return found


def process_alive(record, proc='/proc', this_boot=None):
    """Whether the holder process of a lock record runs, or None when this controller cannot tell (another
    controller's lock, no pid recorded). A pid now carrying another process (other start time, or the
    controller rebooted since) is not the holder."""
    if record.get('hostname') != socket.gethostname() or not record.get('pid'):
        return None
    if record.get('boot_id') and record['boot_id'] != (this_boot or boot_id(proc)):
        return False
    stat = proc_stat(record['pid'], proc)
    if stat is None or stat[0] in ('Z', 'X'):
        return False
    if record.get('pid_start') is not None and stat[2] != record['pid_start']:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------
# lock records


def _iso(timestamp):
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def new_record(run_id, pid, now, proc='/proc'):
    stat = proc_stat(pid, proc) if pid else None
    return dict(run_id=run_id, pid=pid if stat else None, pid_start=stat[2] if stat else None,
                boot_id=boot_id(proc), hostname=socket.gethostname(), created=_iso(now), created_ts=now)


def read_lock(path):
    """The lock record at path: None when there is no lock. An unreadable record (not JSON, no run_id) is
    returned as one whose holder is unknown, created at the file's modification time."""
    try:
        with open(path) as handle:
            text = handle.read()
        mtime = os.stat(path).st_mtime
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise RunLockError('cannot read the lock %s: %s' % (path, exc))
    try:
        record = json.loads(text)
        if not isinstance(record, dict) or not record.get('run_id'):
            raise ValueError('no run_id')
        float(record.get('created_ts'))
    except (ValueError, TypeError) as exc:
        return dict(run_id=None, pid=None, pid_start=None, boot_id=None, hostname=None, created=_iso(mtime),
                    created_ts=mtime, unreadable='%s' % exc)
    return record


def holder_view(record, now, alive):
    """A lock record as the module returns it."""
    view = dict(run_id=record.get('run_id'), pid=record.get('pid'), hostname=record.get('hostname'),
                created=record.get('created'), age=round(now - float(record['created_ts']), 1), alive=alive)
    if record.get('unreadable'):
        view['unreadable'] = record['unreadable']
    return view


def stale_reason(record, alive, age, stale_after):
    """Why a lock held by another run is stale, or None while it holds."""
    if alive is False:
        return 'its holder process %s on %s is gone' % (record.get('pid'), record.get('hostname'))
    if alive is None and age > stale_after:  # a holder that still runs here keeps its lock, however long
        return 'it is %.0f s old, more than stale_after %s s' % (age, stale_after)
    return None


def _write_temporary(lock_dir, record):
    handle, temporary = tempfile.mkstemp(prefix='.run_lock.', suffix='.tmp', dir=lock_dir)
    try:
        with os.fdopen(handle, 'w') as out:
            json.dump(record, out, sort_keys=True)
            out.write('\n')
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
    except BaseException:
        os.unlink(temporary)
        raise
    return temporary


def create_lock(lock_dir, path, record):
    """Put a new lock in place; False when a lock exists already (link() refuses to replace it)."""
    temporary = _write_temporary(lock_dir, record)
    try:
        os.link(temporary, path)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return False
        raise
    finally:
        os.unlink(temporary)
    return True


def replace_lock(lock_dir, path, record):
    """Replace a lock in one step: readers see the old record or the new one, never a mix."""
    temporary = _write_temporary(lock_dir, record)
    try:
        os.rename(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


class Guard:
    """An exclusive flock on <lock>.guard for the time of one decision (None in check mode: reads only)."""

    def __init__(self, path, enabled):
        self.path = path + '.guard'
        self.enabled = enabled
        self.handle = None

    def __enter__(self):
        if self.enabled:
            self.handle = open(self.path, 'a')
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc_info):
        if self.handle is not None:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()


# ---------------------------------------------------------------------------------------------------------
# run_lock


def check_options(name, run_id, stale_after):
    if not name or not NAME.match(name):
        raise RunLockError('name %r cannot name a lock file: use the host name (letters, digits, ".", "_", "-", '
                           'not starting with "." or "-")' % (name,))
    if not run_id or not str(run_id).strip():
        raise RunLockError('run_id of the lock for %s must not be empty' % name)
    if stale_after <= 0:
        raise RunLockError('stale_after must be more than 0 seconds, got %s' % stale_after)


def ensure_lock_dir(lock_dir, check_mode):
    """Create lock_dir (mode 0700, parents too) unless it exists; never in check mode."""
    if os.path.isdir(lock_dir) or check_mode:
        return
    umask = os.umask(0o077)  # the parents it creates too (makedirs applies its mode to the last one only)
    try:
        os.makedirs(lock_dir, 0o700)
    except OSError as exc:
        if not os.path.isdir(lock_dir):
            raise RunLockError('cannot create the lock directory %s: %s' % (lock_dir, exc))
    finally:
        os.umask(umask)


def _facts(path):
    return dict(acquired=False, holder=None, lock_path=path, took_over_from=None)


def acquire(name, run_id, lock_dir, stale_after, pid, check_mode=False, clock=time.time, proc='/proc'):
    """state=present: hold the lock of `name` for run `run_id`; the RUN_LOCK_RESULT_KEYS plus changed and diff.

    No lock -> create it (changed). A lock of the same run -> acquired, not changed (a rerun of the run); its
    holder process is updated to `pid` when that one differs. A lock of another run whose holder runs and is
    not older than stale_after -> acquired false, holder says who. A stale lock -> replaced (changed),
    took_over_from says whose it was. In check mode nothing is written: the result says what would happen.
    """
    lock_dir = os.path.abspath(os.path.expanduser(lock_dir))
    path = os.path.join(lock_dir, name + '.lock')
    facts = _facts(path)
    try:
        check_options(name, run_id, stale_after)
        ensure_lock_dir(lock_dir, check_mode)
        with Guard(path, enabled=not check_mode and os.path.isdir(lock_dir)):
            now = clock()
            current = read_lock(path) if os.path.isdir(lock_dir) else None
            mine = new_record(run_id, pid, now, proc)
            before = dict(run_id=current['run_id'] if current else None)
            if current is None:
                if not check_mode and not create_lock(lock_dir, path, mine):
                    raise RunLockError('the lock %s appeared while run %s held its guard: is the lock directory '
                                       'shared without flock support (NFS without locking)?' % (path, run_id))
                return _held(facts, mine, now, True, before, proc)
            if current['run_id'] == run_id:
                refreshed = current
                if pid and (current.get('pid'), current.get('hostname')) != (mine['pid'], mine['hostname']):
                    refreshed = dict(current, pid=mine['pid'], pid_start=mine['pid_start'], boot_id=mine['boot_id'],
                                     hostname=mine['hostname'])
                    if not check_mode:
                        replace_lock(lock_dir, path, refreshed)
                return _held(facts, refreshed, now, False, before, proc)
            alive = process_alive(current, proc)
            age = now - float(current['created_ts'])
            reason = stale_reason(current, alive, age, stale_after)
            if reason is None:
                facts['holder'] = holder_view(current, now, alive)
                return dict(changed=False, diff=dict(before=before, after=before), **facts)
            facts['took_over_from'] = dict(holder_view(current, now, alive), stale_reason=reason)
            if not check_mode:
                replace_lock(lock_dir, path, mine)
            return _held(facts, mine, now, True, before, proc)
    except (IOError, OSError) as exc:
        raise RunLockError('cannot use the lock %s for run %s: %s' % (path, run_id, exc), facts)
    except RunLockError as exc:
        exc.facts = dict(facts, **exc.facts)
        raise


def _held(facts, record, now, changed, before, proc):
    facts['acquired'] = True
    facts['holder'] = holder_view(record, now, process_alive(record, proc))
    return dict(changed=changed, diff=dict(before=before, after=dict(run_id=record['run_id'])), **facts)


def release(name, run_id, lock_dir, check_mode=False, clock=time.time, proc='/proc'):
    """state=absent: remove the lock of `name` if run `run_id` holds it (changed). A lock of another run is left
    alone (not changed; holder says whose it is); no lock is not changed either."""
    lock_dir = os.path.abspath(os.path.expanduser(lock_dir))
    path = os.path.join(lock_dir, name + '.lock')
    facts = _facts(path)
    try:
        check_options(name, run_id, 1)
        if not os.path.isdir(lock_dir):
            return dict(changed=False, diff=dict(before=dict(run_id=None), after=dict(run_id=None)), **facts)
        with Guard(path, enabled=not check_mode):
            now = clock()
            current = read_lock(path)
            before = dict(run_id=current['run_id'] if current else None)
            if current is None:
                return dict(changed=False, diff=dict(before=before, after=before), **facts)
            if current['run_id'] != run_id:
                facts['holder'] = holder_view(current, now, process_alive(current, proc))
                return dict(changed=False, diff=dict(before=before, after=before), **facts)
            if not check_mode:
                os.unlink(path)
            return dict(changed=True, diff=dict(before=before, after=dict(run_id=None)), **facts)
    except (IOError, OSError) as exc:
        raise RunLockError('cannot remove the lock %s of run %s: %s' % (path, run_id, exc), facts)
    except RunLockError as exc:
        exc.facts = dict(facts, **exc.facts)
        raise


def held_message(name, result):
    holder = result['holder']
    return ('the lock of %s is held by run %s (pid %s on %s, for %s s): another failover of %s is in progress'
            % (name, holder['run_id'], holder['pid'], holder['hostname'], holder['age'], name))


def default_lock_dir(environ=None):
    """lock_dir when the task gives none: $OPENSTACK_HA_LOCK_DIR if set and not empty, else DEFAULT_LOCK_DIR."""
    return (environ if environ is not None else os.environ).get(LOCK_DIR_ENV) or DEFAULT_LOCK_DIR


def run_run_lock_module(module):
    """The module edge: parameters in, exit_json / fail_json out."""
    params = dict(module.params)
    if not params['lock_dir']:
        params['lock_dir'] = default_lock_dir()
    try:
        if params['state'] == 'present':
            pid = params['holder_pid'] if params['holder_pid'] is not None else holder_pid()
            if params['holder_pid'] is not None and proc_stat(pid) is None:
                lock_path = os.path.join(os.path.abspath(os.path.expanduser(params['lock_dir'])),
                                         params['name'] + '.lock')
                raise RunLockError('holder_pid %s for the lock of %s is no running process'
                                   % (pid, params['name']), _facts(lock_path))
            result = acquire(params['name'], params['run_id'], params['lock_dir'], params['stale_after'], pid,
                             check_mode=module.check_mode)
        else:
            result = release(params['name'], params['run_id'], params['lock_dir'], check_mode=module.check_mode)
    except RunLockError as exc:
        module.fail_json(msg=exc.msg, **exc.facts)
    diff = result.pop('diff')
    if module._diff:
        result['diff'] = diff
    if params['state'] == 'present' and not result['acquired'] and params['fail_when_held']:
        facts = dict((key, result[key]) for key in RUN_LOCK_RESULT_KEYS)
        module.fail_json(msg=held_message(params['name'], result), **facts)
    module.exit_json(**result)
