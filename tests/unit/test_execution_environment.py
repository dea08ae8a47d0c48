"""execution-environment.yml and decision-environment.yml: `ansible-builder create` writes their build contexts
offline (no container engine here to build them), from the collection tarball `make build` writes.

The contexts must install this collection from that tarball (no Galaxy), its Python requirements and system
packages, and for the decision environment ansible-rulebook with Java.
"""

import os
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def galaxy():
    with open(os.path.join(REPO, 'galaxy.yml')) as handle:
        return yaml.safe_load(handle)


def tarball_name():
    info = galaxy()
    return '%s-%s-%s.tar.gz' % (info['namespace'], info['name'], info['version'])


def load(name):
    with open(os.path.join(REPO, name)) as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope='module')
def build_dir(tmp_path_factory):
    """A copy of the files ansible-builder reads, with dist/<tarball> built from this checkout."""
    directory = tmp_path_factory.mktemp('ee')
    for name in ('execution-environment.yml', 'decision-environment.yml', 'requirements.txt', 'bindep.txt',
                 'eda-requirements.txt'):
        shutil.copy(os.path.join(REPO, name), str(directory / name))
    subprocess.run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'build', '--output-path',
                    str(directory / 'dist'), REPO], check=True, capture_output=True, text=True, timeout=300)
    return directory


def create(build_dir, name):
    builder = os.path.join(BIN, 'ansible-builder')
    if not os.path.exists(builder):
        pytest.fail('ansible-builder is missing: pip install -r test-requirements.txt')
    context = build_dir / (name + '.context')
    proc = subprocess.run([builder, 'create', '-f', name, '-c', str(context)], cwd=str(build_dir),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return context


@pytest.mark.parametrize('name', ['execution-environment.yml', 'decision-environment.yml'])
def test_definition_installs_the_tarball_of_this_version(name):
    definition = load(name)
    assert definition['version'] == 3
    source, = definition['additional_build_files']
    assert source['src'] == 'dist/' + tarball_name(), 'the version of galaxy.yml changed: update %s' % name
    collection, = definition['dependencies']['galaxy']['collections']
    assert collection == {'name': '/build/%s/%s' % (source['dest'], tarball_name()), 'type': 'file'}


def test_the_tarball_holds_what_the_environments_need(build_dir):
    with tarfile.open(str(build_dir / 'dist' / tarball_name())) as tarball:
        names = set(tarball.getnames())
    for shipped in ('requirements.txt', 'bindep.txt', 'extensions/eda/plugins/event_source/alertmanager.py',
                    'rulebooks/host_failover.yml', 'rulebooks/host_failover_controller.yml',
                    'playbooks/host_failover.yml', 'roles/host_fence/meta/argument_specs.yml'):
        assert shipped in names, shipped
    assert not [name for name in names if name.startswith(('tests/', '.venv/', 'lab/', 'dist/'))]


def test_execution_environment_context(build_dir):
    context = create(build_dir, 'execution-environment.yml')
    containerfile = (context / 'Dockerfile').read_text() if (context / 'Dockerfile').exists() else \
        (context / 'Containerfile').read_text()
    build = context / '_build'
    # the collection: its tarball in the context, installed by ansible-galaxy in the galaxy stage
    assert (build / 'openstack_ha' / tarball_name()).exists()
    assert yaml.safe_load((build / 'requirements.yml').read_text()) == {'collections': [
        {'name': '/build/openstack_ha/' + tarball_name(), 'type': 'file'}]}
    assert 'ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml' in containerfile
    assert 'COPY _build /build' in containerfile
    # Python and system requirements: the collection's own files
    assert (build / 'requirements.txt').read_text() == open(os.path.join(REPO, 'requirements.txt')).read()
    assert (build / 'bindep.txt').read_text() == open(os.path.join(REPO, 'bindep.txt')).read()
    assert '--user-pip=requirements.txt --user-bindep=bindep.txt' in containerfile
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core>=2.16,<2.20 ansible-runner>=2.4,<2.5"' in containerfile
    assert 'ARG PYCMD="/usr/bin/python3.11"' in containerfile


def test_decision_environment_context(build_dir):
    context = create(build_dir, 'decision-environment.yml')
    containerfile = (context / 'Dockerfile').read_text() if (context / 'Dockerfile').exists() else \
        (context / 'Containerfile').read_text()
    build = context / '_build'
    assert (build / 'openstack_ha' / tarball_name()).exists()
    assert 'ansible-rulebook==' in (build / 'requirements.txt').read_text()
    assert 'aiohttp' in (build / 'requirements.txt').read_text()
    assert 'java-17-openjdk-headless [platform:rpm]' in (build / 'bindep.txt').read_text()
    assert 'ansible-galaxy collection install' in containerfile
    assert 'USER 1000' in containerfile
