"""run_lock in real ansible-playbook processes on this controller (no lab needed): two concurrent runs for one
host with different run ids get exactly one lock; the lock's holder is the ansible-playbook process itself (not
the worker it forks for the task), so the lock outlives the task and goes stale when the play ends."""

import json
import os
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)

PLAYBOOK = '''
- name: Hold the failover lock of compute1 until the test lets go
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Take the lock
      openstack_ha.recovery.run_lock:
        name: compute1
        run_id: "{{ run_id }}"
        lock_dir: "{{ lock_dir }}"
      register: lock

    - name: Hand the result to the test
      ansible.builtin.copy:
        content: "{{ lock | to_json }}"
        dest: "{{ out }}"
        mode: "0600"

    - name: Keep the play running until the test lets it end
      ansible.builtin.wait_for:
        path: "{{ release }}"
        timeout: 120
'''

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def workdir(tmp_path):
    root = tmp_path / 'collections' / 'ansible_collections' / 'openstack_ha'
    root.mkdir(parents=True)
    (root / 'recovery').symlink_to(REPO)
    (tmp_path / 'play.yml').write_text(PLAYBOOK)
    return tmp_path


def start(workdir, run_id):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(workdir / 'collections'), ANSIBLE_LOCALHOST_WARNING='0',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='0', ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR='1',
               PATH=BIN + os.pathsep + os.environ.get('PATH', ''))
    extra = dict(run_id=run_id, lock_dir=str(workdir / 'locks'), out=str(workdir / (run_id + '.json')),
                 release=str(workdir / 'release'))
    return subprocess.Popen([os.path.join(BIN, 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
                             str(workdir / 'play.yml'), '-e', json.dumps(extra)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def result(workdir, run_id, proc):
    path = workdir / (run_id + '.json')
    deadline = time.monotonic() + 120
    while not path.exists():
        assert proc.poll() is None, 'ansible-playbook for %s ended early:\n%s' % (run_id, proc.stdout.read())
        assert time.monotonic() < deadline, 'no result from the run %s' % run_id
        time.sleep(0.1)
    time.sleep(0.1)  # copy writes through a temporary file and renames it: complete once it exists
    return json.loads(path.read_text())


def finish(workdir, *procs):
    (workdir / 'release').write_text('')
    outputs = []
    for proc in procs:
        output = proc.communicate(timeout=120)[0]
        assert proc.returncode == 0, output
        outputs.append(output)
    return outputs


def test_two_concurrent_runs_get_one_lock_held_by_the_play(workdir):
    first, second = start(workdir, 'run-a'), start(workdir, 'run-b')
    try:
        results = {'run-a': result(workdir, 'run-a', first), 'run-b': result(workdir, 'run-b', second)}
        winners = [run for run, outcome in results.items() if outcome['acquired']]
        assert len(winners) == 1, results
        winner = winners[0]
        loser = 'run-b' if winner == 'run-a' else 'run-a'
        play = {'run-a': first, 'run-b': second}[winner]
        assert results[winner]['changed'] is True
        assert results[loser]['changed'] is False and results[loser]['holder']['run_id'] == winner

        record = json.loads((workdir / 'locks' / 'compute1.lock').read_text())
        assert record['run_id'] == winner
        assert record['pid'] == play.pid  # the ansible-playbook process, alive for the whole play
        assert results[loser]['holder']['pid'] == play.pid and results[loser]['holder']['alive'] is True
    finally:
        finish(workdir, first, second)

    # the play has ended: its lock is stale, and the next run takes it over
    third = start(workdir, 'run-c')
    try:
        taken = result(workdir, 'run-c', third)
        assert (taken['acquired'], taken['changed']) == (True, True)
        assert taken['took_over_from']['run_id'] == winner
        assert taken['took_over_from']['stale_reason'] == 'its holder process %d on %s is gone' % (
            play.pid, record['hostname'])
    finally:
        finish(workdir, third)
