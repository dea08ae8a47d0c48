"""run_lock's edge: arguments in, results and failures out, on real lock files."""

import json
import os
import subprocess

import pytest

from ansible_collections.openstack_ha.recovery.plugins.modules import run_lock


@pytest.fixture
def holder():
    proc = subprocess.Popen(['sleep', '300'])
    yield proc.pid
    proc.kill()
    proc.wait()


def args(tmp_path, **extra):
    return dict(dict(name='compute1', run_id='run-a', lock_dir=str(tmp_path / 'locks')), **extra)


def test_check_apply_check_apply_then_release(tmp_path, run_module, holder):
    lock = tmp_path / 'locks' / 'compute1.lock'
    check = run_module(run_lock.main, args(tmp_path, holder_pid=holder), check_mode=True, diff=True)
    assert not check.failed
    assert set(check.result) == set(run_lock.RETURNED_KEYS) | {'changed', 'diff'}
    assert (check.result['changed'], check.result['acquired']) == (True, True)
    assert check.result['diff'] == dict(before=dict(run_id=None), after=dict(run_id='run-a'))
    assert not lock.exists()

    apply = run_module(run_lock.main, args(tmp_path, holder_pid=holder))
    assert set(apply.result) == set(run_lock.RETURNED_KEYS) | {'changed'}
    assert (apply.result['changed'], apply.result['acquired'], apply.result['holder']['pid']) == (True, True, holder)
    assert json.loads(lock.read_text())['run_id'] == 'run-a'

    assert run_module(run_lock.main, args(tmp_path, holder_pid=holder), check_mode=True).result['changed'] is False
    again = run_module(run_lock.main, args(tmp_path, holder_pid=holder))
    assert (again.result['changed'], again.result['acquired']) == (False, True)

    gone = run_module(run_lock.main, args(tmp_path, state='absent'))
    assert (gone.result['changed'], gone.result['acquired']) == (True, False)
    assert not lock.exists()
    assert run_module(run_lock.main, args(tmp_path, state='absent')).result['changed'] is False


def test_a_held_lock_is_reported_without_failing_by_default(tmp_path, run_module, holder):
    run_module(run_lock.main, args(tmp_path, holder_pid=holder))
    outcome = run_module(run_lock.main, args(tmp_path, run_id='run-b', holder_pid=holder))
    assert not outcome.failed
    assert (outcome.result['acquired'], outcome.result['holder']['run_id']) == (False, 'run-a')


def test_a_held_lock_fails_when_asked_naming_the_holder(tmp_path, run_module, holder):
    run_module(run_lock.main, args(tmp_path, holder_pid=holder))
    outcome = run_module(run_lock.main, args(tmp_path, run_id='run-b', fail_when_held=True))
    assert outcome.failed
    assert set(outcome.result) == set(run_lock.RETURNED_KEYS) | {'msg'}
    assert outcome.result['msg'].startswith('the lock of compute1 is held by run run-a (pid %d on ' % holder)
    assert outcome.result['msg'].endswith('another failover of compute1 is in progress')


def test_without_holder_pid_the_ansible_process_is_looked_up(tmp_path, run_module):
    # pytest is no Ansible process: the lock has no holder process and lasts its stale_after
    outcome = run_module(run_lock.main, args(tmp_path))
    assert outcome.result['acquired'] is True and outcome.result['holder']['pid'] is None


def test_bad_name_fails_with_the_documented_keys(tmp_path, run_module):
    outcome = run_module(run_lock.main, args(tmp_path, name='a/b'))
    assert outcome.failed and outcome.result['msg'].startswith("name 'a/b' cannot name a lock file")
    assert set(outcome.result) == set(run_lock.RETURNED_KEYS) | {'msg'}
    assert not os.path.exists(str(tmp_path / 'locks'))


def test_the_default_lock_dir_is_under_the_users_home(tmp_path, run_module, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.delenv('OPENSTACK_HA_LOCK_DIR', raising=False)
    outcome = run_module(run_lock.main, dict(name='compute1', run_id='run-a'))
    assert outcome.result['lock_path'] == str(tmp_path / '.ansible' / 'openstack_ha' / 'locks' / 'compute1.lock')


def test_the_environment_moves_the_default_lock_dir_but_not_a_given_one(tmp_path, run_module, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    monkeypatch.setenv('OPENSTACK_HA_LOCK_DIR', str(tmp_path / 'shared'))
    outcome = run_module(run_lock.main, dict(name='compute1', run_id='run-a'))
    assert outcome.result['lock_path'] == str(tmp_path / 'shared' / 'compute1.lock')
    assert os.path.exists(str(tmp_path / 'shared' / 'compute1.lock'))
    outcome = run_module(run_lock.main, args(tmp_path, run_id='run-b'))
    assert outcome.result['lock_path'] == str(tmp_path / 'locks' / 'compute1.lock') and outcome.result['acquired']
    # an empty variable is no setting
    monkeypatch.setenv('OPENSTACK_HA_LOCK_DIR', '')
    outcome = run_module(run_lock.main, dict(name='compute2', run_id='run-c'))
    assert outcome.result['lock_path'] == str(tmp_path / 'home' / '.ansible' / 'openstack_ha' / 'locks' / 'compute2.lock')


def test_a_holder_pid_that_runs_nothing_fails(tmp_path, run_module):
    dead = subprocess.Popen(['true'])
    dead.wait()
    outcome = run_module(run_lock.main, args(tmp_path, holder_pid=dead.pid))
    assert outcome.failed
    assert outcome.result['msg'] == 'holder_pid %d for the lock of compute1 is no running process' % dead.pid
    assert set(outcome.result) == set(run_lock.RETURNED_KEYS) | {'msg'}
    assert outcome.result['lock_path'] == str(tmp_path / 'locks' / 'compute1.lock')
    assert not os.path.exists(str(tmp_path / 'locks'))
