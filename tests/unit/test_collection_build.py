"""`ansible-galaxy collection build` ships the collection and nothing of the development tree."""

import json
import os
import subprocess
import sys
import tarfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Development files and directories that must never reach the tarball (galaxy.yml build_ignore).
NEVER_SHIPPED = ('.ansible-lint', '.ci/', '.git/', '.gitignore', '.pytest_cache/', '.venv/', 'Makefile', 'bench/', 'demo/',
                 'dist/', 'lab/', 'molecule/', 'test-requirements.txt', 'tests/')


def build(tmp_path):
    galaxy = os.path.join(os.path.dirname(sys.executable), 'ansible-galaxy')
    subprocess.run([galaxy, 'collection', 'build', '--output-path', str(tmp_path), REPO],
                   check=True, capture_output=True, text=True, timeout=300)
    return tmp_path / 'openstack_ha-recovery-0.1.0.tar.gz'


def test_tarball_holds_the_collection_and_no_development_files(tmp_path):
    with tarfile.open(build(tmp_path)) as tarball:
        names = tarball.getnames()
        manifest = json.load(tarball.extractfile('MANIFEST.json'))
    for name in names:
        assert not any(name == entry.rstrip('/') or name.startswith(entry) for entry in NEVER_SHIPPED), name
        assert '__pycache__' not in name and not name.endswith(('.pyc', '.retry', '.tar.gz')), name
    # galaxy.yml itself never ships: ansible-galaxy turns it into MANIFEST.json.
    info = manifest['collection_info']
    assert (info['namespace'], info['name'], info['version']) == ('openstack_ha', 'recovery', '0.1.0')
    assert info['dependencies'] == {}
    for shipped in ('meta/runtime.yml', 'plugins/modules/ipmi_fence.py', 'plugins/modules/redfish_fence.py',
                    'plugins/module_utils/_bmc.py', 'plugins/doc_fragments/bmc.py', 'requirements.txt',
                    'bindep.txt'):
        assert shipped in names, shipped
