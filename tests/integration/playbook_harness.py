"""Run the collection's playbooks and roles with ansible-playbook, as an operator does, and read every task result.

A `PlaybookDir` is a test's directory holding an inventory, playbooks and a vault password, with this checkout
on ANSIBLE_COLLECTIONS_PATH as openstack_ha.recovery. Task results come from a small callback plugin that
writes each result (after Ansible's no_log masking) as a JSON line; `play()` returns them as a `PlayRun`.

Import from here (`from playbook_harness import ...`), never from a conftest.
"""

import json
import os
import subprocess
import sys
import textwrap

import yaml

from lab_helpers import REPO

VAULT_PASSWORD = 'lab-vault-pw'

CALLBACK = textwrap.dedent('''
    import json
    import os

    from ansible.plugins.callback import CallbackBase


    class CallbackModule(CallbackBase):
        """Every task result, as Ansible hands it to callbacks (no_log already applied), one JSON line each."""

        CALLBACK_VERSION = 2.0
        CALLBACK_TYPE = 'aggregate'
        CALLBACK_NAME = 'task_results'
        CALLBACK_NEEDS_ENABLED = True

        def _write(self, record):
            with open(os.environ['TASK_RESULTS_FILE'], 'a') as out:
                out.write(json.dumps(record, default=str) + '\\n')

        def _result(self, status, result):
            self._write(dict(status=status, task=result._task.get_name(), host=result._host.get_name(),
                             result=result._result))

        def v2_runner_on_ok(self, result):
            self._result('ok', result)

        def v2_runner_on_failed(self, result, ignore_errors=False):
            self._result('failed', result)

        def v2_runner_on_skipped(self, result):
            self._result('skipped', result)

        def v2_playbook_on_stats(self, stats):
            self._write(dict(stats={host: stats.summarize(host) for host in stats.processed}))
''')


class PlayRun:
    """One ansible-playbook run: exit code, whole output, task results (records) and the play recap (stats)."""

    def __init__(self, proc, records):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.records = [record for record in records if 'task' in record]
        stats = [record['stats'] for record in records if 'stats' in record]
        self.stats = stats[-1] if stats else {}

    def results(self, task):
        return [record for record in self.records if record['task'].endswith(task)]

    def changes(self, role):
        """Names of ROLE's tasks that reported a change."""
        return [record['task'].split(' : ', 1)[1] for record in self.records
                if record['task'].startswith(role + ' : ') and record['result'].get('changed')]

    def fact(self, name):
        found = [record['result']['ansible_facts'][name] for record in self.records
                 if name in record['result'].get('ansible_facts', {})]
        assert found, 'no task set %s:\n%s' % (name, self.output[-3000:])
        return found[-1]


class PlaybookDir:
    """A test directory with the collection on its collections path; play() runs ansible-playbook there."""

    def __init__(self, lab, directory):
        self.lab = lab
        self.dir = directory
        self.runs = 0
        collections = directory / 'collections' / 'ansible_collections' / 'openstack_ha'
        collections.mkdir(parents=True)
        (collections / 'recovery').symlink_to(REPO)
        (directory / 'callback_plugins').mkdir()
        (directory / 'callback_plugins' / 'task_results.py').write_text(CALLBACK)
        (directory / 'vault-password').write_text(VAULT_PASSWORD)
        self.bin_dir = os.path.dirname(sys.executable)
        self.env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(directory / 'collections'),
                        ANSIBLE_CALLBACK_PLUGINS=str(directory / 'callback_plugins'),
                        ANSIBLE_CALLBACKS_ENABLED='task_results', ANSIBLE_PYTHON_INTERPRETER=sys.executable,
                        ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
                        ANSIBLE_RETRY_FILES_ENABLED='0', OS_CLIENT_CONFIG_FILE=self.lab['clouds_yaml'],
                        PATH=self.bin_dir + os.pathsep + os.environ.get('PATH', ''))

    def write_yaml(self, name, data):
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def vault_string(self, name, secret):
        """`name: !vault |...` text, the secret encrypted with the directory's vault password."""
        proc = subprocess.run([os.path.join(self.bin_dir, 'ansible-vault'), 'encrypt_string',
                               '--vault-password-file', str(self.dir / 'vault-password'), '--name', name, '--', secret],
                              env=self.env, capture_output=True, text=True, timeout=60, check=True)
        assert secret not in proc.stdout
        return proc.stdout

    def play(self, playbook, check=False, verbose=False, timeout=180, extra_vars=None, inventory='inventory.yml',
             tags=None, env=None):
        """ansible-playbook PLAYBOOK (a file of the directory, or a collection playbook's FQCN)."""
        self.runs += 1
        results = self.dir / ('results-%d.jsonl' % self.runs)
        target = playbook if playbook.startswith('openstack_ha.') else str(self.dir / playbook)
        argv = [os.path.join(self.bin_dir, 'ansible-playbook'), '-i', str(self.dir / inventory),
                '--vault-password-file', str(self.dir / 'vault-password'), target]
        argv += ['--check'] if check else []
        argv += ['-vvv'] if verbose else []
        argv += ['--tags', tags] if tags else []
        if extra_vars:
            argv += ['-e', json.dumps(extra_vars)]
        proc = subprocess.run(argv, env=dict(self.env, TASK_RESULTS_FILE=str(results), **(env or {})),
                              capture_output=True, text=True, timeout=timeout, check=False, cwd=str(self.dir),
                              stdin=subprocess.DEVNULL)
        records = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
        return PlayRun(proc, records)
