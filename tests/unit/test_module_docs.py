"""Documentation that cannot drift: for every module, DOCUMENTATION (with its doc fragments), the argument
spec, RETURN, the keys the module returns, EXAMPLES and the action groups of meta/runtime.yml agree.

Every module must define RETURNED_KEYS (the keys it returns besides changed, diff and msg), taken from the
module_utils code that builds its result; the module's own unit tests assert that its results carry exactly
those keys. A new module without them fails here.
"""

import glob
import importlib
import os

import pytest
import yaml
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.openstack_ha.recovery.plugins.module_utils._bmc import BMC_ARGUMENT_SPEC
from ansible_collections.openstack_ha.recovery.plugins.module_utils._openstack import OPENSTACK_ARGUMENT_SPEC

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTION = 'openstack_ha.recovery'
PACKAGE = 'ansible_collections.openstack_ha.recovery.plugins'
MODULES = sorted(os.path.basename(path)[:-3] for path in glob.glob(os.path.join(REPO, 'plugins', 'modules', '*.py'))
                 if not os.path.basename(path).startswith('_'))
# Option attributes that DOCUMENTATION and the argument spec must both state the same way.
COMPARED = ('type', 'default', 'required', 'choices', 'aliases', 'elements')
SECRET_WORDS = ('password', 'secret', 'token', 'key')


def load_module(name):
    return importlib.import_module('%s.modules.%s' % (PACKAGE, name))


def fragment_options(reference):
    """Options of a doc fragment reference, `openstack_ha.recovery.NAME` or `openstack_ha.recovery.NAME.SECTION`."""
    assert reference.startswith(COLLECTION + '.'), 'only this collection\'s fragments are allowed: %s' % reference
    name, dummy, section = reference[len(COLLECTION) + 1:].partition('.')
    fragment = importlib.import_module('%s.doc_fragments.%s' % (PACKAGE, name)).ModuleDocFragment
    return yaml.safe_load(getattr(fragment, section.upper() or 'DOCUMENTATION')).get('options', {})


def documented_options(module):
    doc = yaml.safe_load(module.DOCUMENTATION)
    options = {}
    for reference in doc.get('extends_documentation_fragment', []):
        options.update(fragment_options(reference))
    options.update(doc.get('options') or {})
    return options


class _Captured(Exception):
    def __init__(self, kwargs):
        super(_Captured, self).__init__()
        self.kwargs = kwargs


def argument_spec(module, monkeypatch):
    """The argument spec main() gives AnsibleModule, captured before anything else runs."""
    def capture(self, **kwargs):
        raise _Captured(kwargs)
    monkeypatch.setattr(AnsibleModule, '__init__', capture)
    with pytest.raises(_Captured) as caught:
        module.main()
    return caught.value.kwargs['argument_spec']


def normalized(option, documented):
    """An option's compared attributes with AnsibleModule's defaults filled in."""
    values = dict(type='str', default=None, required=False, choices=None, aliases=None, elements=None)
    values.update((key, option[key]) for key in COMPARED if key in option)
    if values['aliases'] is not None:
        values['aliases'] = sorted(values['aliases'])
    if values['type'] == 'float' and values['default'] is not None:
        values['default'] = float(values['default'])
    if documented and 'suboptions' in option:
        values['suboptions'] = {name: normalized(sub, True) for name, sub in option['suboptions'].items()}
    elif not documented and 'options' in option:
        values['suboptions'] = {name: normalized(sub, False) for name, sub in option['options'].items()}
    return values


def assert_same_options(documented, spec, where):
    assert sorted(documented) == sorted(spec), '%s: documented options differ from the argument spec' % where
    for name in spec:
        assert normalized(documented[name], True) == normalized(spec[name], False), '%s: option %s' % (where, name)
        if any(word in name for word in SECRET_WORDS) and spec[name].get('type', 'str') in ('str', 'dict'):
            assert spec[name].get('no_log') is True, '%s: option %s must be no_log' % (where, name)


def test_there_are_modules():
    assert 'ipmi_fence' in MODULES and 'redfish_fence' in MODULES


@pytest.mark.parametrize('name', MODULES)
def test_documented_options_match_the_argument_spec(name, monkeypatch):
    module = load_module(name)
    assert_same_options(documented_options(module), argument_spec(module, monkeypatch), name)


@pytest.mark.parametrize('name', MODULES)
def test_returned_keys_are_exactly_the_documented_ones(name):
    module = load_module(name)
    assert hasattr(module, 'RETURNED_KEYS'), '%s must define RETURNED_KEYS from its module_utils' % name
    documented = yaml.safe_load(module.RETURN) or {}
    assert sorted(documented) == sorted(module.RETURNED_KEYS)
    for key, entry in documented.items():
        assert entry.get('description') and entry.get('returned') and entry.get('type'), '%s: %s' % (name, key)


@pytest.mark.parametrize('name', MODULES)
def test_documentation_names_the_module_and_supports_check_mode_honestly(name):
    doc = yaml.safe_load(load_module(name).DOCUMENTATION)
    assert doc['module'] == name
    assert doc['short_description'] and doc['description'] and doc['version_added']
    assert doc['attributes']['check_mode']['support'] in ('full', 'none', 'partial')


@pytest.mark.parametrize('name', MODULES)
def test_examples_are_tasks_a_user_can_paste(name):
    tasks = yaml.safe_load(load_module(name).EXAMPLES)
    fqcn = '%s.%s' % (COLLECTION, name)
    assert isinstance(tasks, list) and tasks

    def uses(task):
        return fqcn in task or any(uses(inner) for inner in task.get('block', []))
    for task in tasks:
        assert task.get('name'), '%s: every example task has a name' % name
    assert all(uses(task) for task in tasks), '%s: every example uses the module by FQCN' % name


@pytest.mark.parametrize('fragment, spec', [('bmc', BMC_ARGUMENT_SPEC), ('openstack', OPENSTACK_ARGUMENT_SPEC)])
def test_doc_fragments_match_the_shared_specs(fragment, spec):
    assert_same_options(fragment_options('%s.%s' % (COLLECTION, fragment)), spec, 'doc fragment %s' % fragment)


@pytest.mark.parametrize('name', MODULES)
def test_action_groups_list_exactly_the_modules_with_shared_options(name, monkeypatch):
    with open(os.path.join(REPO, 'meta', 'runtime.yml')) as runtime:
        groups = yaml.safe_load(runtime)['action_groups']
    spec = argument_spec(load_module(name), monkeypatch)
    for group, shared in (('bmc', BMC_ARGUMENT_SPEC), ('openstack', OPENSTACK_ARGUMENT_SPEC)):
        assert (name in (groups[group] or [])) == set(shared).issubset(spec), '%s in group %s' % (name, group)


def test_fence_documentation_sends_users_to_fence_verify():
    notes = ' '.join(yaml.safe_load(importlib.import_module(PACKAGE + '.doc_fragments.bmc')
                                    .ModuleDocFragment.DOCUMENTATION)['notes'])
    assert 'fence_verify' in notes and "BMC's word only" in notes
    for name in ('ipmi_fence', 'redfish_fence'):
        assert 'fence_verify' in yaml.safe_load(load_module(name).RETURN)['verified']['description'][1]
