"""The AWX config-as-code in awx/ against the collection it configures (no AWX needed).

- awx/import.json is exactly what awx/build_import.py makes of awx/controller_config.yml (the two ways to load
  the objects cannot drift apart);
- every survey question is well formed the way AWX validates surveys, and its variable is a real variable: a
  playbook variable the job template's playbook reads (compute_host), or a variable of the role of that name,
  with the type, choices and default of roles/<role>/meta/argument_specs.yml (or defaults/main.yml while a
  role has no argument specs yet);
- the BMC credential type's injectors use only its inputs, every input is injected, and the injected extra vars
  are host_fence's (the password one no_log);
- the example inventory parses with ansible-inventory and its fence levels fit host_fence's argument spec;
- the job templates' references resolve, and the EDA controller rulebook launches the host_failover template;
- configure.yml passes only options the awx.awx modules have (when an awx.awx collection is on this machine).
"""

import glob
import json
import os
import re
import subprocess
import sys

import jinja2
import jinja2.meta
import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AWX = os.path.join(REPO, 'awx')
sys.path.insert(0, AWX)
import build_import  # noqa: E402  (awx/ is not a package)

CONFIG = build_import.load_config()
TEMPLATES = CONFIG['openstack_ha_awx_job_templates']
QUESTIONS = [(template['name'], question) for template in TEMPLATES
             for question in template.get('survey_spec', {}).get('spec', [])]
SURVEY_TYPES = {'text', 'textarea', 'password', 'integer', 'float', 'multiplechoice', 'multiselect'}
# Survey answers are strings for every type but integer and float.
SPEC_TYPES = {'text': {'str'}, 'textarea': {'str'}, 'password': {'str'}, 'integer': {'int'},
              'float': {'float', 'int'}, 'multiplechoice': {'str', 'bool'}, 'multiselect': {'list'}}
# Variables of the playbooks themselves (not of a role): the job templates' playbooks must read them.
PLAYBOOK_VARIABLES = {'compute_host'}


def role_of(variable):
    for role in sorted(os.listdir(os.path.join(REPO, 'roles')), key=len, reverse=True):
        if variable.startswith(role + '_'):
            return role
    return None


def role_options(role):
    """({name: spec} of the role's main entry point, where from), from its argument specs or else its defaults."""
    specs = os.path.join(REPO, 'roles', role, 'meta', 'argument_specs.yml')
    if os.path.exists(specs):
        with open(specs) as handle:
            return yaml.safe_load(handle)['argument_specs']['main']['options'], 'argument_specs'
    defaults = os.path.join(REPO, 'roles', role, 'defaults', 'main.yml')
    if os.path.exists(defaults):
        with open(defaults) as handle:
            return {name: {'default': value} for name, value in (yaml.safe_load(handle) or {}).items()}, 'defaults'
    return None, None


def test_import_json_is_built_from_the_config():
    with open(os.path.join(AWX, 'import.json')) as handle:
        committed = handle.read()
    assert committed == build_import.dumps(build_import.build(CONFIG)), \
        'awx/import.json is out of date: run python3 awx/build_import.py'
    assert build_import.main(['--check']) == 0


def test_the_import_document_has_the_awx_export_shape():
    document = json.loads(build_import.dumps(build_import.build(CONFIG)))
    exportable = {'users', 'organizations', 'teams', 'credential_types', 'credentials', 'notification_templates',
                  'projects', 'inventory', 'inventory_sources', 'job_templates', 'workflow_job_templates',
                  'execution_environments', 'applications', 'schedules'}  # awxkit 24 EXPORTABLE_RESOURCES
    assert set(document) <= exportable
    for resource, assets in document.items():
        for asset in assets:
            assert asset['natural_key']['name'] == asset['name'], (resource, asset['name'])
            assert '{{' not in json.dumps({k: v for k, v in asset.items() if k != 'injectors'}), asset['name']
    template, = [entry for entry in document['job_templates'] if entry['name'].endswith('host_failover')]
    assert template['related']['survey_spec']['spec'][0]['variable'] == 'compute_host'
    assert yaml.safe_load(template['extra_vars']) == {'openstack_ha_cloud': 'devstack'}
    assert template['project'] == {'organization': {'name': 'Default', 'type': 'organization'},
                                   'name': 'openstack_ha.recovery', 'type': 'project'}


@pytest.mark.parametrize('template', TEMPLATES, ids=[entry['name'] for entry in TEMPLATES])
def test_job_template_references_resolve(template):
    names = {key: {entry['name'] for entry in CONFIG[key]} for key in (
        'openstack_ha_awx_projects', 'openstack_ha_awx_inventories', 'openstack_ha_awx_execution_environments')}
    assert template['project'] in names['openstack_ha_awx_projects']
    assert template['inventory'] in names['openstack_ha_awx_inventories']
    assert template['execution_environment'] in names['openstack_ha_awx_execution_environments']
    assert template['job_type'] == 'run' and template['ask_job_type_on_launch'] is True  # check mode on launch
    assert template['playbook'].startswith('playbooks/') and template['playbook'].endswith('.yml')
    assert template['survey_enabled'] is True
    variables = [question['variable'] for question in template['survey_spec']['spec']]
    assert len(variables) == len(set(variables)), 'a variable asked twice in %s' % template['name']
    assert variables[0] == 'compute_host'


@pytest.mark.parametrize('template', TEMPLATES, ids=[entry['name'] for entry in TEMPLATES])
def test_the_playbook_reads_the_playbook_variables_of_its_survey(template):
    path = os.path.join(REPO, template['playbook'])
    assert os.path.exists(path), 'job template %s names %s, which does not exist' % (template['name'],
                                                                                     template['playbook'])
    with open(path) as handle:
        text = handle.read()
    for question in template['survey_spec']['spec']:
        if question['variable'] in PLAYBOOK_VARIABLES:
            assert re.search(r'\b%s\b' % question['variable'], text), (template['playbook'], question['variable'])
    # The role the playbook runs is the one whose variables the survey sets.
    roles = {role_of(question['variable']) for question in template['survey_spec']['spec']} - {None}
    for role in roles:
        assert 'openstack_ha.recovery.%s' % role in text, '%s does not run the role %s' % (template['playbook'], role)


@pytest.mark.parametrize('template_name,question', QUESTIONS,
                         ids=['%s:%s' % (name.split()[-1], question['variable']) for name, question in QUESTIONS])
def test_survey_question_is_well_formed(template_name, question):
    """What AWX's survey validation checks, so that an import or the awx.awx module does not fail on it."""
    assert question['question_name'] and question['variable'] and isinstance(question['required'], bool)
    assert question['type'] in SURVEY_TYPES
    assert re.match(r'^[A-Za-z_][A-Za-z0-9_]*$', question['variable'])
    default = question.get('default')
    if question['type'] in ('integer', 'float'):
        assert question['min'] <= question['max']
        if default is not None:
            assert isinstance(default, (int, float)) and not isinstance(default, bool)
            assert question['min'] <= default <= question['max']
    if question['type'] in ('text', 'textarea', 'password'):
        assert 0 <= question.get('min', 0) <= question.get('max', 1024)
        if default is not None:
            assert isinstance(default, str) and question.get('min', 0) <= len(default) <= question.get('max', 1024)
    if question['type'] == 'multiplechoice':
        assert isinstance(question['choices'], list) and all(isinstance(c, str) for c in question['choices'])
        assert default in question['choices']
    if question['type'] == 'password':
        pytest.fail('survey passwords end up in the job\'s extra vars; use a credential instead')


@pytest.mark.parametrize('template_name,question', QUESTIONS,
                         ids=['%s:%s' % (name.split()[-1], question['variable']) for name, question in QUESTIONS])
def test_survey_variable_is_a_real_role_variable(template_name, question):
    variable = question['variable']
    if variable in PLAYBOOK_VARIABLES:
        return
    role = role_of(variable)
    assert role is not None, '%s: %s is neither a playbook variable nor of a role of this collection' % (
        template_name, variable)
    options, source = role_options(role)
    assert options is not None, 'roles/%s has neither meta/argument_specs.yml nor defaults/main.yml' % role
    assert variable in options, '%s: %s is not a variable of the role %s (%s)' % (
        template_name, variable, role, source)
    spec = options[variable]
    default = spec.get('default')
    if source == 'argument_specs':
        spec_type = spec.get('type', 'str')
        assert spec_type in SPEC_TYPES[question['type']], '%s: survey type %s for a %s variable' % (
            variable, question['type'], spec_type)
        if spec.get('no_log'):
            assert question['type'] == 'password', variable
        if spec.get('choices'):
            assert question['type'] == 'multiplechoice'
            assert set(question['choices']) <= set(spec['choices']), (variable, spec['choices'])
    if isinstance(default, bool):
        # AWX answers a multiple choice with a string: the survey's "true"/"false" for a boolean variable.
        assert question['type'] == 'multiplechoice' and sorted(question['choices']) == ['false', 'true'], variable
        assert question['default'] == str(default).lower(), (variable, default)
        assert_used_as_bool(role, variable)
    elif default is not None and not (isinstance(default, str) and '{{' in default):
        assert question.get('default') == default, '%s: survey default %r, role default %r' % (
            variable, question.get('default'), default)


def assert_used_as_bool(role, variable):
    """A survey answers "false" (a string): the role must test the variable through `| bool`, never bare."""
    uses = []
    for path in glob.glob(os.path.join(REPO, 'roles', role, 'tasks', '*.yml')):
        with open(path) as handle:
            for number, line in enumerate(handle, 1):
                if re.search(r'\b%s\b' % variable, line):
                    uses.append((os.path.relpath(path, REPO), number, line.strip()))
    assert uses, 'a survey asks for %s, which no task of roles/%s uses' % (variable, role)
    bare = [use for use in uses if re.search(r'^(when|that|- )?:?\s*(not\s+)?%s\s*$' % variable, use[2].lstrip('- '))
            or re.search(r'\bwhen:\s*(not\s+)?%s\s*$' % variable, use[2])]
    assert not bare, 'tested without | bool (a survey gives the string "false"): %s' % bare
    assert any(re.search(r'\b%s\s*\|\s*bool\b' % variable, use[2]) for use in uses), uses


def credential_type():
    found, = [entry for entry in CONFIG['openstack_ha_awx_credential_types']
              if entry['name'] == 'openstack_ha.recovery BMC']
    return found


def test_bmc_credential_type_injects_exactly_its_inputs_into_host_fence_variables():
    kind = credential_type()
    assert kind['kind'] in ('cloud', 'net')  # the kinds AWX allows for custom credential types
    fields = {field['id']: field for field in kind['inputs']['fields']}
    assert set(kind['inputs']['required']) <= set(fields)
    assert fields['password'].get('secret') is True
    assert not fields['username'].get('secret')
    injected = kind['injectors']['extra_vars']
    used = set()
    env = jinja2.Environment()
    for variable, template in injected.items():
        names = jinja2.meta.find_undeclared_variables(env.parse(template))
        assert names and names <= set(fields), '%s: %s uses %s, inputs are %s' % (
            kind['name'], variable, sorted(names), sorted(fields))
        used |= names
    assert used == set(fields), 'inputs never injected: %s' % sorted(set(fields) - used)
    options, source = role_options('host_fence')
    assert source == 'argument_specs'
    assert set(injected) == {'host_fence_bmc_username', 'host_fence_bmc_password'}
    for variable in injected:
        assert variable in options
    assert options['host_fence_bmc_password'].get('no_log') is True
    # the secret input goes to the no_log variable, the plain one to the other
    assert injected['host_fence_bmc_password'].replace(' ', '') == '{{password}}'
    assert injected['host_fence_bmc_username'].replace(' ', '') == '{{username}}'


def test_example_inventory_parses_and_its_fence_levels_fit_host_fence():
    source, = CONFIG['openstack_ha_awx_inventory_sources']
    assert source['source'] == 'scm'
    assert source['source_project'] in {entry['name'] for entry in CONFIG['openstack_ha_awx_projects']}
    assert source['inventory'] in {entry['name'] for entry in CONFIG['openstack_ha_awx_inventories']}
    path = os.path.join(REPO, source['source_path'])
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-inventory'), '-i', path, '--list',
                           '--export'], capture_output=True, text=True, timeout=120, check=False,
                          env=dict(os.environ, ANSIBLE_INVENTORY_UNPARSED_FAILED='1'))
    assert proc.returncode == 0, proc.stderr
    inventory = json.loads(proc.stdout)
    hosts = inventory['compute_hosts']['hosts']
    assert hosts == ['compute1', 'compute2', 'compute3']
    group_vars = inventory['compute_hosts']['vars']
    options, dummy = role_options('host_fence')
    method_types = options['host_fence_levels']['options']['methods']['options']['type']['choices']
    for level in group_vars['host_fence_levels']:
        for method in level['methods']:
            assert method['type'] in method_types
            assert set(method) <= set(options['host_fence_levels']['options']['methods']['options'])
            assert 'password' not in method and 'username' not in method  # they come from the BMC credential
    for variable in group_vars:
        role = role_of(variable)
        if role:
            role_vars, dummy = role_options(role)
            assert variable in role_vars, '%s is not a variable of %s' % (variable, role)


def test_the_controller_rulebook_launches_the_host_failover_job_template():
    with open(os.path.join(REPO, 'rulebooks', 'host_failover_controller.yml')) as handle:
        ruleset, = yaml.safe_load(handle)
    action, = [rule['action']['run_job_template'] for rule in ruleset['rules'] if 'run_job_template' in rule['action']]
    template, = [entry for entry in TEMPLATES if entry['playbook'] == 'playbooks/host_failover.yml']
    assert "default('%s')" % template['name'] in action['name']
    assert "default('%s')" % template['organization'] in action['organization']
    assert template['ask_variables_on_launch'] is True  # EDA sends compute_host, host_failover_alert, ansible_eda


def awx_collection():
    """An awx.awx collection on this machine (ANSIBLE_COLLECTIONS_PATH, AWX_COLLECTION_DIR or ~/.ansible)."""
    candidates = [os.environ.get('AWX_COLLECTION_DIR', '')]
    for root in (os.environ.get('ANSIBLE_COLLECTIONS_PATH', '') + ':' + os.path.expanduser('~/.ansible/collections')
                 + ':/usr/share/ansible/collections').split(':'):
        if root:
            candidates.append(os.path.join(root, 'ansible_collections', 'awx', 'awx'))
    for candidate in candidates:
        if candidate and os.path.isdir(os.path.join(candidate, 'plugins', 'modules')):
            return candidate
    return None


def test_configure_playbook_passes_only_options_of_the_awx_modules():
    with open(os.path.join(AWX, 'configure.yml')) as handle:
        play, = yaml.safe_load(handle)
    assert play['vars_files'] == ['controller_config.yml']
    used = {}
    for task in play['tasks']:
        module, = [key for key in task if key.startswith('awx.awx.')]
        used.setdefault(module.split('.')[-1], set()).update(task[module])
        if 'loop' in task:
            assert task['loop'].strip('{} ') in CONFIG, task['loop']
    collection = awx_collection()
    if collection is None:
        pytest.skip('no awx.awx collection on this machine (Galaxy is unreachable): set AWX_COLLECTION_DIR to check')
    for module, options in used.items():
        with open(os.path.join(collection, 'plugins', 'modules', module + '.py')) as handle:
            source = handle.read()
        documentation = yaml.safe_load(re.search(r"DOCUMENTATION = r?'''(.*?)'''", source, re.S).group(1))
        known = set(documentation['options']) | {'controller_host', 'controller_username', 'controller_password',
                                                 'controller_oauthtoken', 'validate_certs', 'controller_config_file'}
        assert options <= known, '%s: unknown options %s' % (module, sorted(options - known))
