"""The poll counts of the restore roles' waits (vars/main.yml), rendered by real Ansible with the timeouts given as
`-e NAME=VALUE` extra vars, which arrive as strings (a division of two strings failed the whole role)."""

import json
import os
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXTRA = {'host_restore_up_timeout': '300', 'host_restore_cleanup_timeout': '61', 'host_restore_poll_interval': '5',
         'site_restore_up_timeout': '600', 'site_restore_down_wait': '90', 'site_restore_poll_interval': '4'}
EXPECTED = {'_host_restore_up_retries': 60, '_host_restore_cleanup_retries': 13, '_site_restore_up_retries': 150,
            '_site_restore_down_retries': 23}


def test_retries_render_from_string_extra_vars(tmp_path):
    playbook = tmp_path / 'render.yml'
    playbook.write_text(yaml.safe_dump([{
        'hosts': 'localhost', 'gather_facts': False,
        'vars_files': [os.path.join(REPO, 'roles', role, 'vars', 'main.yml')
                       for role in ('host_restore', 'site_restore')],
        'tasks': [{'name': 'Render', 'ansible.builtin.copy': {
            'dest': str(tmp_path / 'rendered.json'),
            'content': '{{ %s | to_json }}' % ('{' + ', '.join("'%s': %s | int" % (n, n) for n in EXPECTED) + '}')}}],
    }]))
    argv = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
            str(playbook)]
    for name, value in EXTRA.items():
        argv += ['-e', '%s=%s' % (name, value)]
    env = dict(os.environ, ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'))
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((tmp_path / 'rendered.json').read_text()) == EXPECTED
