"""Write awx/import.json, the `awx import` form of awx/controller_config.yml (the file awx/configure.yml reads).

    python3 awx/build_import.py            # rewrite awx/import.json
    python3 awx/build_import.py --check    # exit 1 when awx/import.json is not what the config says

The output is what `awx export` writes (awxkit 24): one list per resource, foreign keys and each object's identity
as natural keys, a job template's survey under related.survey_spec, extra_vars as YAML text. Strings of the
config are rendered with Jinja2 against its own top-level scalar variables, as Ansible would ({% raw %} keeps the
credential type's injector templates literal). Needs PyYAML and Jinja2 (both come with ansible-core).
Credentials are not part of it: their secrets are set in AWX (docs/awx.md).
"""

import argparse
import json
import os
import sys

import jinja2
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, 'controller_config.yml')
OUTPUT = os.path.join(HERE, 'import.json')


def render(value, context):
    if isinstance(value, str):
        return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True) \
            .from_string(value).render(context)
    if isinstance(value, list):
        return [render(item, context) for item in value]
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    return value


def load_config(path=CONFIG):
    """The config with every string rendered, as the playbook sees it."""
    with open(path) as handle:
        raw = yaml.safe_load(handle)
    context = {key: value for key, value in raw.items() if not isinstance(value, (list, dict))}
    return render(raw, context)


def organization_key(name):
    return {'name': name, 'type': 'organization'}


def project_key(config, name):
    project, = [entry for entry in config['openstack_ha_awx_projects'] if entry['name'] == name]
    return {'organization': organization_key(project['organization']), 'name': name, 'type': 'project'}


def inventory_key(config, name):
    inventory, = [entry for entry in config['openstack_ha_awx_inventories'] if entry['name'] == name]
    return {'organization': organization_key(inventory['organization']), 'name': name, 'type': 'inventory'}


def environment_key(name):
    return {'name': name, 'type': 'execution_environment'}


def build(config):
    """The `awx import` document of a loaded config."""
    environments = [dict(entry, organization=organization_key(entry['organization']),
                         natural_key=environment_key(entry['name']))
                    for entry in config['openstack_ha_awx_execution_environments']]
    credential_types = [dict(entry, natural_key={'name': entry['name'], 'kind': entry['kind'],
                                                 'type': 'credential_type'})
                        for entry in config['openstack_ha_awx_credential_types']]
    projects = []
    for entry in config['openstack_ha_awx_projects']:
        project = dict(entry, organization=organization_key(entry['organization']),
                       natural_key=project_key(config, entry['name']))
        if 'default_environment' in entry:
            project['default_environment'] = environment_key(entry['default_environment'])
        projects.append(project)
    inventories = [dict(entry, organization=organization_key(entry['organization']),
                        natural_key=inventory_key(config, entry['name']))
                   for entry in config['openstack_ha_awx_inventories']]
    sources = []
    for entry in config['openstack_ha_awx_inventory_sources']:
        source = {key: value for key, value in entry.items() if key != 'organization'}
        source.update(inventory=inventory_key(config, entry['inventory']),
                      natural_key={'name': entry['name'], 'inventory': inventory_key(config, entry['inventory']),
                                   'type': 'inventory_source'})
        if 'source_project' in entry:
            source['source_project'] = project_key(config, entry['source_project'])
        sources.append(source)
    templates = []
    for entry in config['openstack_ha_awx_job_templates']:
        template = {key: value for key, value in entry.items() if key not in ('survey_spec', 'organization')}
        template.update(
            inventory=inventory_key(config, entry['inventory']),
            project=project_key(config, entry['project']),
            extra_vars=yaml.safe_dump(entry.get('extra_vars') or {}, default_flow_style=False, sort_keys=True),
            natural_key={'organization': organization_key(entry['organization']), 'name': entry['name'],
                         'type': 'job_template'},
            related={'survey_spec': entry['survey_spec']} if 'survey_spec' in entry else {})
        if 'execution_environment' in entry:
            template['execution_environment'] = environment_key(entry['execution_environment'])
        templates.append(template)
    return {'credential_types': credential_types, 'execution_environments': environments, 'projects': projects,
            'inventory': inventories, 'inventory_sources': sources, 'job_templates': templates}


def dumps(document):
    return json.dumps(document, indent=2, sort_keys=True) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true', help='only compare awx/import.json with the config')
    args = parser.parse_args(argv)
    text = dumps(build(load_config()))
    if args.check:
        with open(OUTPUT) as handle:
            if handle.read() != text:
                sys.stderr.write('awx/import.json is out of date: run python3 awx/build_import.py\n')
                return 1
        return 0
    with open(OUTPUT, 'w') as out:
        out.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
