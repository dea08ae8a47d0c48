"""Run a playbook the way AWX (automation controller) runs a job: through ansible-runner, in a private data dir.

AWX prepares, per job, a private data dir holding the project checkout (`project/`), the inventory
(`inventory/hosts`, an executable script printing the inventory as JSON), the extra variables (`env/extravars`:
the job template's and the survey's, the launch's, the `awx_*` job variables and the extra_vars injectors of the
job's credentials) and the environment (credential env injectors), then calls ansible-runner, which runs
ansible-playbook and writes every event and `artifacts/<ident>/`. `run_like_awx()` does the same and returns
what AWX keeps of a job: status, rc, the events, stdout, and the artifacts that `set_stats` produced (AWX stores
them as the job's `artifacts`, read from the `playbook_on_stats` event's `artifact_data`).

    result = run_like_awx('playbooks/host_failover.yml', inventory=..., extravars={'compute_host': 'compute1'},
                          credentials=[(bmc_credential_type, {'username': 'admin', 'password': '...'})],
                          env=ansible_env(lab))
    assert result.status == 'successful'
    report = result.artifacts['openstack_ha_recovery_report']

Import from here (`from runner_harness import ...`), never from a conftest.
"""

import json
import os
import shutil
import stat
import sys
import tempfile

import ansible_runner
import jinja2.sandbox

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)

INVENTORY_SCRIPT = '''#!%(python)s
# Written by tests/integration/runner_harness.py, as AWX writes a job's inventory: a script printing JSON.
import json
import sys

INVENTORY = json.loads(%(inventory)r)

if '--host' in sys.argv:
    print(json.dumps(INVENTORY['_meta']['hostvars'].get(sys.argv[-1], {})))
else:
    print(json.dumps(INVENTORY))
'''


class AwxRun:
    """What AWX keeps of a job: status, rc, events, stdout, the set_stats artifacts, the artifact directory."""

    def __init__(self, runner, private_data_dir):
        self.status = runner.status
        self.rc = runner.rc
        self.events = list(runner.events)
        self.stats = runner.stats
        self.private_data_dir = private_data_dir
        self.artifact_dir = runner.config.artifact_dir
        with open(os.path.join(self.artifact_dir, 'stdout'), errors='replace') as handle:
            self.stdout = handle.read()
        stats_events = [event for event in self.events if event['event'] == 'playbook_on_stats']
        self.artifacts = stats_events[-1]['event_data'].get('artifact_data', {}) if stats_events else {}

    def task_results(self, task=None, host=None):
        """event_data of the runner_on_* events (ok, failed, skipped, unreachable) of TASK (name) on HOST."""
        found = []
        for event in self.events:
            if not event['event'].startswith('runner_on_') or event['event'] == 'runner_on_start':
                continue
            data = event['event_data']
            if task is not None and data.get('task') != task:
                continue
            if host is not None and data.get('host') != host:
                continue
            found.append(dict(data, event=event['event']))
        return found

    def __repr__(self):
        return 'AwxRun(status=%s, rc=%s, artifacts=%s)\n%s' % (self.status, self.rc, json.dumps(self.artifacts),
                                                              self.stdout[-4000:])


def inventory_data(hosts=None, groups=None, all_vars=None):
    """An AWX-style JSON inventory: HOSTS {name: vars}, GROUPS {name: {'hosts': [...], 'vars': {...}}}."""
    data = {'all': {'hosts': sorted(hosts or {}), 'vars': dict(all_vars or {}), 'children': sorted(groups or {})},
            '_meta': {'hostvars': {name: dict(values or {}) for name, values in (hosts or {}).items()}}}
    for name, group in (groups or {}).items():
        data[name] = {'hosts': list(group.get('hosts', [])), 'vars': dict(group.get('vars', {})),
                      'children': list(group.get('children', []))}
    return data


def inventory_from_file(path):
    """The AWX-style inventory of an ansible-inventory JSON file (`ansible-inventory --list` output, or the lab's
    state/inventory.json in YAML-inventory-as-JSON form)."""
    with open(path) as handle:
        data = json.load(handle)
    if '_meta' in data:
        return data
    hosts, groups = {}, {}

    def walk(name, group):
        for host, values in (group.get('hosts') or {}).items():
            hosts.setdefault(host, {}).update(values or {})
        groups[name] = {'hosts': sorted(group.get('hosts') or {}), 'vars': group.get('vars') or {},
                        'children': sorted(group.get('children') or {})}
        for child, child_group in (group.get('children') or {}).items():
            walk(child, child_group or {})

    walk('all', data.get('all', {}))
    top = groups.pop('all')
    result = inventory_data(hosts, groups, top['vars'])
    result['all']['children'] = top['children']
    return result


def render_injectors(credential_type, inputs):
    """(extra_vars, env, files) a credential of CREDENTIAL_TYPE (its `inputs` and `injectors`, as in AWX) with
    INPUTS injects into a job. Templates are rendered the way AWX renders them: sandboxed Jinja2, the inputs as
    variables, `tower.filename.<id>` / `awx.filename` for the injected files. Every input the credential type
    declares as required must be given, and no other input."""
    fields = {field['id']: field for field in credential_type['inputs'].get('fields', [])}
    unknown = sorted(set(inputs) - set(fields))
    if unknown:
        raise ValueError('credential type %s has no input %s' % (credential_type['name'], ', '.join(unknown)))
    missing = sorted(set(credential_type['inputs'].get('required', [])) - set(inputs))
    if missing:
        raise ValueError('credential type %s needs input %s' % (credential_type['name'], ', '.join(missing)))
    context = {name: inputs.get(name, field.get('default', '')) for name, field in fields.items()}
    env_sandbox = jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)
    injectors = credential_type.get('injectors') or {}
    files = {}
    file_paths = {}
    for key, template in (injectors.get('file') or {}).items():
        name = key.split('.', 1)[1] if '.' in key else 'filename'
        handle, path = tempfile.mkstemp(prefix='awx-credential-')
        with os.fdopen(handle, 'w') as out:
            out.write(env_sandbox.from_string(template).render(**context))
        files[name] = path
        file_paths[name] = path
    if file_paths:
        single = file_paths.get('filename')
        context['tower'] = context['awx'] = {'filename': single if single and len(file_paths) == 1 else file_paths}

    def render(values):
        return {key: env_sandbox.from_string(value).render(**context) for key, value in (values or {}).items()}

    return render(injectors.get('extra_vars')), render(injectors.get('env')), files


def run_like_awx(playbook, inventory, extravars=None, credentials=(), env=None, project=REPO, check=False,
                 limit=None, tags=None, verbosity=0, job_template_name='openstack_ha.recovery test', timeout=900,
                 keep=False):
    """Run PLAYBOOK (a path relative to PROJECT, as a job template names it) like an AWX job and return an AwxRun.

    INVENTORY is an AWX-style JSON inventory (inventory_data(), inventory_from_file()); EXTRAVARS the job's
    extra variables (template, survey and launch ones); CREDENTIALS (credential_type, inputs) pairs whose
    injectors add extra vars and environment variables; ENV the process environment (PATH must reach
    ansible-playbook); CHECK is the job type "check". The private data dir is removed afterwards unless KEEP.
    """
    private_data_dir = tempfile.mkdtemp(prefix='awx-job-')
    credential_files = []
    try:
        # project/: AWX's project checkout (a symlink to it is enough for ansible-playbook)
        os.symlink(os.path.abspath(project), os.path.join(private_data_dir, 'project'))
        os.mkdir(os.path.join(private_data_dir, 'inventory'))
        script = os.path.join(private_data_dir, 'inventory', 'hosts')
        with open(script, 'w') as out:
            out.write(INVENTORY_SCRIPT % {'python': sys.executable, 'inventory': json.dumps(inventory)})
        os.chmod(script, stat.S_IRWXU)

        job_vars = {'awx_job_id': 4711, 'awx_job_launch_type': 'manual', 'awx_job_template_name': job_template_name,
                    'tower_job_id': 4711, 'tower_job_launch_type': 'manual',
                    'tower_job_template_name': job_template_name}
        envvars = dict(env or os.environ)
        variables = dict(extravars or {})
        for credential_type, inputs in credentials:
            injected_vars, injected_env, files = render_injectors(credential_type, inputs)
            variables.update(injected_vars)
            envvars.update(injected_env)
            credential_files.extend(files.values())
        variables.update(job_vars)
        os.mkdir(os.path.join(private_data_dir, 'env'))
        with open(os.path.join(private_data_dir, 'env', 'extravars'), 'w') as out:
            json.dump(variables, out)

        cmdline = []
        if check:
            cmdline.append('--check')
        if tags:
            cmdline += ['--tags', ','.join(tags)]
        runner = ansible_runner.run(
            private_data_dir=private_data_dir, playbook=playbook, envvars=envvars, limit=limit,
            verbosity=verbosity or None, cmdline=' '.join(cmdline) or None, quiet=True, ident='job',
            settings={'job_timeout': timeout, 'suppress_ansible_output': True})
        return AwxRun(runner, private_data_dir)
    finally:
        for path in credential_files:
            os.unlink(path)
        if not keep:
            shutil.rmtree(private_data_dir, ignore_errors=True)
