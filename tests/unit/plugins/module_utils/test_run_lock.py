"""run_lock's core with real files and real processes: create, rerun, held, stale (gone, reused pid, rebooted,
too old, another controller, unreadable), check mode, release, races between processes, and the holder process
found by walking /proc (a real process chain, and a made-up /proc for the corner cases)."""

import json
import multiprocessing
import os
import socket
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from ansible_collections.openstack_ha.recovery.plugins.module_utils import _run_lock
from ansible_collections.openstack_ha.recovery.plugins.module_utils._run_lock import (
    RUN_LOCK_RESULT_KEYS,
    RunLockError,
    acquire,
    command_name,
    holder_pid,
    proc_stat,
    process_alive,
    read_lock,
    release,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


@pytest.fixture
def lock_dir(tmp_path):
    return str(tmp_path / 'home' / '.ansible' / 'openstack_ha' / 'locks')


@pytest.fixture
def sleeper():
    """sleeper() -> pid of a live process (killed after the test)."""
    procs = []

    def start():
        procs.append(subprocess.Popen(['sleep', '300']))
        return procs[-1].pid
    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def dead_pid():
    proc = subprocess.Popen(['true'])
    proc.wait()
    return proc.pid


def lock_file(lock_dir, name='compute1'):
    return os.path.join(lock_dir, name + '.lock')


def write_record(lock_dir, **record):
    os.makedirs(lock_dir, exist_ok=True)
    base = dict(run_id='run-a', pid=None, pid_start=None, boot_id=None, hostname=socket.gethostname(),
                created='2026-11-22T10:00:00Z', created_ts=time.time())
    base.update(record)
    with open(lock_file(lock_dir), 'w') as out:
        json.dump(base, out)
    return base


def record_of(pid, **extra):
    fields = proc_stat(pid)
    return dict(dict(pid=pid, pid_start=fields[2], boot_id=_run_lock.boot_id()), **extra)


# -- acquire ----------------------------------------------------------------------------------------------------

def test_a_free_lock_is_created_with_the_holder_record(lock_dir, sleeper):
    pid = sleeper()
    result = acquire('compute1', 'run-a', lock_dir, 3600, pid)
    assert set(result) == set(RUN_LOCK_RESULT_KEYS) | {'changed', 'diff'}
    assert (result['changed'], result['acquired'], result['took_over_from']) == (True, True, None)
    assert result['lock_path'] == lock_file(lock_dir)
    assert result['holder']['run_id'] == 'run-a' and result['holder']['pid'] == pid
    assert result['holder']['alive'] is True and result['holder']['hostname'] == socket.gethostname()
    assert result['diff'] == dict(before=dict(run_id=None), after=dict(run_id='run-a'))
    with open(lock_file(lock_dir)) as handle:
        record = json.load(handle)
    assert record['run_id'] == 'run-a' and record['pid'] == pid and record['pid_start'] == proc_stat(pid)[2]
    assert record['created'].endswith('Z') and abs(record['created_ts'] - time.time()) < 5
    assert stat.S_IMODE(os.stat(lock_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.dirname(lock_dir)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(lock_file(lock_dir)).st_mode) == 0o644
    assert sorted(os.listdir(lock_dir)) == ['compute1.lock', 'compute1.lock.guard']  # no temporary file left


def test_an_existing_lock_dir_keeps_its_mode(tmp_path, sleeper):
    shared = tmp_path / 'shared'
    shared.mkdir(mode=0o775)
    os.chmod(str(shared), 0o775)
    acquire('compute1', 'run-a', str(shared), 3600, sleeper())
    assert stat.S_IMODE(os.stat(str(shared)).st_mode) == 0o775


def test_the_same_run_acquires_again_without_a_change(lock_dir, sleeper):
    pid = sleeper()
    acquire('compute1', 'run-a', lock_dir, 3600, pid)
    with open(lock_file(lock_dir)) as handle:
        before = handle.read()
    result = acquire('compute1', 'run-a', lock_dir, 3600, pid)
    assert (result['changed'], result['acquired'], result['holder']['pid']) == (False, True, pid)
    with open(lock_file(lock_dir)) as handle:
        assert handle.read() == before


def test_a_rerun_of_the_same_run_becomes_the_holder_process(lock_dir, sleeper):
    write_record(lock_dir, run_id='run-a', pid=dead_pid(), created_ts=time.time() - 100)
    pid = sleeper()
    result = acquire('compute1', 'run-a', lock_dir, 3600, pid)
    assert (result['changed'], result['acquired'], result['holder']['alive']) == (False, True, True)
    record = read_lock(lock_file(lock_dir))
    assert record['pid'] == pid and record['pid_start'] == proc_stat(pid)[2]
    assert 99 < time.time() - record['created_ts'] < 110  # the run's age is kept


def test_a_lock_of_a_live_run_is_not_acquired_and_names_its_holder(lock_dir, sleeper):
    holder = sleeper()
    acquire('compute1', 'run-a', lock_dir, 3600, holder)
    with open(lock_file(lock_dir)) as handle:
        before = handle.read()
    result = acquire('compute1', 'run-b', lock_dir, 3600, sleeper())
    assert (result['changed'], result['acquired'], result['took_over_from']) == (False, False, None)
    assert result['holder']['run_id'] == 'run-a' and result['holder']['pid'] == holder
    assert result['holder']['alive'] is True and 0 <= result['holder']['age'] < 5
    assert result['diff'] == dict(before=dict(run_id='run-a'), after=dict(run_id='run-a'))
    with open(lock_file(lock_dir)) as handle:
        assert handle.read() == before


def test_locks_of_different_hosts_are_independent(lock_dir, sleeper):
    assert acquire('compute1', 'run-a', lock_dir, 3600, sleeper())['acquired']
    assert acquire('compute2', 'run-b', lock_dir, 3600, sleeper())['acquired']


@pytest.mark.parametrize('make_record, reason', [
    (lambda sleeper: dict(pid=dead_pid()), 'its holder process %(pid)s on %(host)s is gone'),
    (lambda sleeper: record_of(sleeper(), pid_start=1), 'its holder process %(pid)s on %(host)s is gone'),
    (lambda sleeper: record_of(sleeper(), boot_id='another-boot'), 'its holder process %(pid)s on %(host)s is gone'),
    (lambda sleeper: dict(hostname='controller-2', pid=4711, created_ts=time.time() - 7300),
     'it is 7300 s old, more than stale_after 7200.0 s'),
])
def test_a_stale_lock_is_taken_over(lock_dir, sleeper, make_record, reason):
    old = write_record(lock_dir, run_id='run-old', **make_record(sleeper))
    pid = sleeper()
    result = acquire('compute1', 'run-new', lock_dir, 7200.0, pid)
    assert (result['changed'], result['acquired'], result['holder']['run_id']) == (True, True, 'run-new')
    taken = result['took_over_from']
    assert taken['run_id'] == 'run-old' and taken['pid'] == old['pid']
    assert taken['stale_reason'] == reason % dict(pid=old['pid'], host=old['hostname'])
    assert read_lock(lock_file(lock_dir))['pid'] == pid
    assert result['diff'] == dict(before=dict(run_id='run-old'), after=dict(run_id='run-new'))


def test_an_old_lock_whose_holder_still_runs_here_holds(lock_dir, sleeper):
    # a long evacuation must not lose its lock to a second run just because it outlived stale_after
    write_record(lock_dir, run_id='run-old', **record_of(sleeper(), created_ts=time.time() - 7300))
    result = acquire('compute1', 'run-new', lock_dir, 7200.0, sleeper())
    assert result['acquired'] is False and result['holder']['alive'] is True
    assert result['holder']['run_id'] == 'run-old' and result['took_over_from'] is None


def test_another_controllers_young_lock_holds(lock_dir, sleeper):
    write_record(lock_dir, run_id='run-old', hostname='controller-2', pid=4711, created_ts=time.time() - 60)
    result = acquire('compute1', 'run-new', lock_dir, 3600, sleeper())
    assert result['acquired'] is False
    assert (result['holder']['hostname'], result['holder']['alive']) == ('controller-2', None)


def test_a_lock_without_holder_process_lasts_its_ttl(lock_dir):
    acquire('compute1', 'run-a', lock_dir, 3600, None)
    assert read_lock(lock_file(lock_dir))['pid'] is None
    result = acquire('compute1', 'run-b', lock_dir, 3600, None)
    assert result['acquired'] is False and result['holder']['alive'] is None


def test_an_unreadable_lock_holds_by_its_file_time_then_is_taken_over(lock_dir, sleeper):
    os.makedirs(lock_dir)
    with open(lock_file(lock_dir), 'w') as out:
        out.write('{"run_id": ')
    result = acquire('compute1', 'run-b', lock_dir, 3600, sleeper())
    assert result['acquired'] is False
    assert result['holder']['run_id'] is None and result['holder']['unreadable'].startswith('Expecting value')
    old = time.time() - 4000
    os.utime(lock_file(lock_dir), (old, old))
    result = acquire('compute1', 'run-b', lock_dir, 3600, sleeper())
    assert result['acquired'] is True and result['took_over_from']['stale_reason'].startswith('it is 4000 s old')


@pytest.mark.parametrize('content', ['[]', '{"run_id": ""}', '{"run_id": "r", "created_ts": null}'])
def test_json_that_is_no_lock_record_is_unreadable(lock_dir, content):
    os.makedirs(lock_dir)
    with open(lock_file(lock_dir), 'w') as out:
        out.write(content)
    assert read_lock(lock_file(lock_dir))['unreadable']


def test_check_mode_writes_nothing_and_says_what_would_happen(lock_dir, sleeper):
    result = acquire('compute1', 'run-a', lock_dir, 3600, sleeper(), check_mode=True)
    assert (result['changed'], result['acquired']) == (True, True)
    assert not os.path.exists(os.path.dirname(lock_dir))
    write_record(lock_dir, run_id='run-old', pid=dead_pid())
    with open(lock_file(lock_dir)) as handle:
        before = handle.read()
    result = acquire('compute1', 'run-a', lock_dir, 3600, sleeper(), check_mode=True)
    assert (result['changed'], result['acquired'], result['took_over_from']['run_id']) == (True, True, 'run-old')
    result = acquire('compute1', 'run-old', lock_dir, 3600, sleeper(), check_mode=True)
    assert (result['changed'], result['acquired']) == (False, True)
    with open(lock_file(lock_dir)) as handle:
        assert handle.read() == before
    assert os.listdir(lock_dir) == ['compute1.lock']  # not even a guard file


@pytest.mark.parametrize('name, run_id, stale_after, message', [
    ('../etc/x', 'r', 1, "name '../etc/x' cannot name a lock file"),
    ('.hidden', 'r', 1, "name '.hidden' cannot name a lock file"),
    ('', 'r', 1, "name '' cannot name a lock file"),
    ('compute1', ' ', 1, 'run_id of the lock for compute1 must not be empty'),
    ('compute1', 'r', 0, 'stale_after must be more than 0 seconds, got 0'),
])
def test_bad_options_fail_before_touching_anything(lock_dir, name, run_id, stale_after, message):
    with pytest.raises(RunLockError) as caught:
        acquire(name, run_id, lock_dir, stale_after, None)
    assert caught.value.msg.startswith(message)
    assert set(caught.value.facts) == set(RUN_LOCK_RESULT_KEYS)
    assert not os.path.exists(lock_dir)


def test_a_lock_dir_that_cannot_be_made_fails_naming_it(tmp_path):
    (tmp_path / 'file').write_text('')
    with pytest.raises(RunLockError) as caught:
        acquire('compute1', 'run-a', str(tmp_path / 'file' / 'locks'), 3600, None)
    assert caught.value.msg.startswith('cannot create the lock directory %s: ' % (tmp_path / 'file' / 'locks'))


def test_a_lock_that_cannot_be_read_fails_naming_it(lock_dir):
    os.makedirs(lock_file(lock_dir))  # a directory where the lock file should be
    with pytest.raises(RunLockError) as caught:
        acquire('compute1', 'run-a', lock_dir, 3600, None)
    assert caught.value.msg.startswith('cannot read the lock %s: ' % lock_file(lock_dir))
    assert caught.value.facts['lock_path'] == lock_file(lock_dir)


def test_a_lock_appearing_under_the_guard_is_an_error_not_a_second_holder(lock_dir, monkeypatch):
    write_record(lock_dir, run_id='run-a')
    monkeypatch.setattr(_run_lock, 'read_lock', lambda path: None)  # as if flock did not serialise
    with pytest.raises(RunLockError) as caught:
        acquire('compute1', 'run-b', lock_dir, 3600, None)
    assert 'appeared while run run-b held its guard' in caught.value.msg
    with open(lock_file(lock_dir)) as handle:
        assert json.load(handle)['run_id'] == 'run-a'
    assert sorted(os.listdir(lock_dir)) == ['compute1.lock', 'compute1.lock.guard']


def test_write_errors_fail_naming_the_lock(lock_dir, monkeypatch):
    def broken(*args):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(_run_lock.os, 'link', broken)
    with pytest.raises(RunLockError) as caught:
        acquire('compute1', 'run-a', lock_dir, 3600, None)
    assert caught.value.msg == ('cannot use the lock %s for run run-a: [Errno 28] No space left on device'
                                % lock_file(lock_dir))
    assert sorted(os.listdir(lock_dir)) == ['compute1.lock.guard']


# -- release -------------------------------------------------------------------------------------------------

def test_the_holder_releases_its_lock(lock_dir, sleeper):
    acquire('compute1', 'run-a', lock_dir, 3600, sleeper())
    check = release('compute1', 'run-a', lock_dir, check_mode=True)
    assert (check['changed'], os.path.exists(lock_file(lock_dir))) == (True, True)
    result = release('compute1', 'run-a', lock_dir)
    assert (result['changed'], result['acquired'], result['holder']) == (True, False, None)
    assert result['diff'] == dict(before=dict(run_id='run-a'), after=dict(run_id=None))
    assert not os.path.exists(lock_file(lock_dir))
    assert release('compute1', 'run-a', lock_dir)['changed'] is False


def test_another_runs_lock_is_left_alone(lock_dir, sleeper):
    holder = sleeper()
    acquire('compute1', 'run-a', lock_dir, 3600, holder)
    result = release('compute1', 'run-b', lock_dir)
    assert (result['changed'], result['holder']['run_id'], result['holder']['alive']) == (False, 'run-a', True)
    assert read_lock(lock_file(lock_dir))['run_id'] == 'run-a'


def test_release_without_lock_dir_changes_nothing(lock_dir):
    result = release('compute1', 'run-a', lock_dir)
    assert (result['changed'], result['holder']) == (False, None)
    assert not os.path.exists(lock_dir)


def test_release_errors_fail_naming_the_lock(lock_dir, sleeper, monkeypatch):
    acquire('compute1', 'run-a', lock_dir, 3600, sleeper())

    def broken(path):
        raise OSError(30, 'Read-only file system')
    monkeypatch.setattr(_run_lock.os, 'unlink', broken)
    with pytest.raises(RunLockError) as caught:
        release('compute1', 'run-a', lock_dir)
    assert caught.value.msg == ('cannot remove the lock %s of run run-a: [Errno 30] Read-only file system'
                                % lock_file(lock_dir))
    with pytest.raises(RunLockError):
        release('compute1', '', lock_dir)


# -- races between processes ------------------------------------------------------------------------------------

def _race(lock_dir, run_id, holder, start, results):
    while time.time() < start:
        pass
    result = acquire('compute1', run_id, lock_dir, 3600, holder)
    results.put((run_id, result['acquired'], (result['took_over_from'] or {}).get('run_id')))


def race(lock_dir, holders):
    context = multiprocessing.get_context('fork')
    results = context.Queue()
    start = time.time() + 0.3
    procs = [context.Process(target=_race, args=(lock_dir, 'run-%d' % n, holder, start, results))
             for n, holder in enumerate(holders)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=30) for dummy in procs]
    for proc in procs:
        proc.join(10)
    return outcomes


def test_of_many_racing_runs_exactly_one_acquires(lock_dir, sleeper):
    os.makedirs(lock_dir)
    outcomes = race(lock_dir, [sleeper() for dummy in range(8)])
    winners = [run for run, acquired, dummy in outcomes if acquired]
    assert len(winners) == 1
    assert read_lock(lock_file(lock_dir))['run_id'] == winners[0]


def test_of_many_runs_racing_for_a_stale_lock_exactly_one_takes_it_over(lock_dir, sleeper):
    write_record(lock_dir, run_id='run-old', pid=dead_pid())
    outcomes = race(lock_dir, [sleeper() for dummy in range(8)])
    winners = [(run, taken) for run, acquired, taken in outcomes if acquired]
    assert len(winners) == 1 and winners[0][1] == 'run-old'
    assert read_lock(lock_file(lock_dir))['run_id'] == winners[0][0]


# -- the holder process -----------------------------------------------------------------------------------------

@pytest.mark.parametrize('argv, name', [
    ([b'/usr/bin/ansible-playbook', b'site.yml'], 'ansible-playbook'),
    ([b'/opt/venv/bin/python3.11', b'/opt/venv/bin/ansible-playbook', b'-i', b'inv'], 'ansible-playbook'),
    ([b'python', b'-c', b'pass'], '-c'),
    ([b'python'], 'python'),
    ([], None),
])
def test_command_names(argv, name):
    assert command_name(b'\0'.join(argv) + b'\0' if argv else b'') == name


def fake_proc(tmp_path, processes):
    """A /proc with processes {pid: (ppid, argv)}."""
    root = tmp_path / 'proc'
    for pid, (ppid, argv) in processes.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / 'stat').write_text('%d (x y) S %d %d 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 0 %d 0\n'
                                              % (pid, ppid, pid, 1000 + pid))
        (root / str(pid) / 'cmdline').write_bytes(b'\0'.join(argv) + b'\0')
    return str(root)


PLAYBOOK = [b'/venv/bin/python3', b'/venv/bin/ansible-playbook', b'site.yml']


def test_the_holder_is_the_play_not_its_forked_task_worker(tmp_path):
    proc = fake_proc(tmp_path, {
        1: (0, [b'/sbin/init']),
        10: (1, [b'bash']),
        20: (10, PLAYBOOK),                     # the play
        30: (20, PLAYBOOK),                     # its task worker (forked: same command line)
        40: (30, [b'/bin/sh', b'-c', b'python3 AnsiballZ_run_lock.py']),
        50: (40, [b'python3', b'/root/.ansible/tmp/AnsiballZ_run_lock.py']),
    })
    assert holder_pid(50, proc) == 20


def test_the_holder_under_ansible_runner_is_the_playbook(tmp_path):
    proc = fake_proc(tmp_path, {
        5: (1, [b'/venv/bin/python3', b'/venv/bin/ansible-runner', b'run', b'/tmp/private']),
        20: (5, PLAYBOOK), 30: (20, PLAYBOOK), 50: (30, [b'python3', b'AnsiballZ_run_lock.py'])})
    assert holder_pid(50, proc) == 20


def test_without_an_ansible_ancestor_there_is_no_holder(tmp_path):
    proc = fake_proc(tmp_path, {1: (0, [b'/sbin/init']), 10: (1, [b'sshd']), 50: (10, [b'python3', b'x.py'])})
    assert holder_pid(50, proc) is None
    assert holder_pid(77, proc) is None  # gone


def test_a_parent_loop_ends_the_walk(tmp_path):
    proc = fake_proc(tmp_path, {10: (20, [b'a']), 20: (10, [b'b'])})
    assert holder_pid(10, proc) is None


def test_a_real_process_chain_finds_the_play(tmp_path):
    """A program named ansible-playbook that forks a worker, which runs the module's process through sh."""
    script = tmp_path / 'ansible-playbook'
    script.write_text(textwrap.dedent('''\
        import os, subprocess, sys
        if os.fork() == 0:
            code = ("import sys; sys.path.insert(0, 'COLLECTIONS_ROOT'); "
                    "from ansible_collections.openstack_ha.recovery.plugins.module_utils._run_lock import holder_pid; "
                    "print(holder_pid())")
            subprocess.run(['/bin/sh', '-c', '%s -c "%s"' % (sys.executable, code)], check=True)
            os._exit(0)
        os.wait()
        print('play', os.getpid())
        ''').replace('COLLECTIONS_ROOT', _collections_root()))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True)
    found, play = out.stdout.split('\n')[:2]
    assert play == 'play %s' % found


def _collections_root():
    import ansible_collections
    return os.path.dirname(list(ansible_collections.__path__)[0])


def test_process_alive_for_this_and_other_controllers(sleeper):
    pid = sleeper()
    here = dict(record_of(pid), hostname=socket.gethostname())
    assert process_alive(here) is True
    assert process_alive(dict(here, hostname='elsewhere')) is None
    assert process_alive(dict(here, pid=None)) is None
    assert process_alive(dict(here, pid=dead_pid())) is False
    assert process_alive(dict(here, pid_start=None, boot_id=None)) is True  # older records: pid only
