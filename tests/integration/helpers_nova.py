"""Helpers for the nova module integration tests: run the collection's modules the way users do, and read
Nova and Placement independently of the collection's code (plain openstacksdk resources), to assert on them.

Import them from here (`from helpers_nova import ...`), like lab_helpers: never from a conftest.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
RESULT_LINE = re.compile(r'^localhost \| ([A-Z]+)!? => ', re.MULTILINE)


def collections_path():
    """A directory holding ansible_collections/openstack_ha/recovery -> this checkout (made once, reused)."""
    digest = hashlib.sha256(REPO.encode()).hexdigest()[:12]
    root = os.path.join(tempfile.gettempdir(), 'openstack_ha.recovery-it-%d-%s' % (os.getuid(), digest))
    namespace = os.path.join(root, 'ansible_collections', 'openstack_ha')
    os.makedirs(namespace, exist_ok=True)
    link = os.path.join(namespace, 'recovery')
    if not os.path.islink(link):
        try:
            os.symlink(REPO, link)
        except FileExistsError:  # made at the same moment by a parallel run
            pass
    return root


def ansible_env(lab):
    """Environment of an ansible run against the lab: the collection, and the lab's clouds.yaml."""
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), OS_CLIENT_CONFIG_FILE=lab['clouds_yaml'],
                ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_NOCOLOR='1',
                ANSIBLE_INVENTORY_UNPARSED_WARNING='0', ANSIBLE_STDOUT_CALLBACK='minimal',
                PATH=BIN + os.pathsep + os.environ.get('PATH', ''))


class Run:
    """One module run: result (the module's JSON as ansible printed it), failed, the whole output, seconds."""

    def __init__(self, result, failed, output, seconds):
        self.result = result
        self.failed = failed
        self.output = output
        self.seconds = seconds

    def __getitem__(self, key):
        return self.result[key]

    def __repr__(self):
        return 'Run(failed=%s, seconds=%.1f, result=%s)' % (self.failed, self.seconds, json.dumps(self.result)[:2000])


def run_module(lab, module, check=False, diff=False, **args):
    """openstack_ha.recovery.MODULE through `ansible localhost -m`, with cloud: <the lab's cloud>."""
    args = dict(dict(cloud=lab['cloud']), **args)
    argv = [os.path.join(BIN, 'ansible'), 'localhost', '-c', 'local', '-i', 'localhost,',
            '-m', 'openstack_ha.recovery.' + module, '-a', json.dumps(args)]
    argv += ['--check'] if check else []
    argv += ['--diff'] if diff else []
    started = time.monotonic()
    proc = subprocess.run(argv, env=ansible_env(lab), capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    output = proc.stdout + proc.stderr
    found = RESULT_LINE.search(proc.stdout)
    if found is None:
        raise AssertionError('ansible gave no result (rc %d):\n%s' % (proc.returncode, output))
    result = json.JSONDecoder().raw_decode(proc.stdout[found.end():])[0]
    return Run(result, found.group(1) == 'FAILED', output, seconds)


def run_playbook(lab, path, check=False):
    """ansible-playbook PATH against localhost -> (exit code, output). ansible-core 2.19 has no json callback
    of its own (it moved to ansible.posix): a playbook that must hand results back writes them to a file."""
    argv = [os.path.join(BIN, 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', path]
    argv += ['--check'] if check else []
    proc = subprocess.run(argv, env=ansible_env(lab), capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout + proc.stderr


def nova_service(conn, host):
    """The host's nova-compute service as openstacksdk's own Service resource reads it."""
    for service in conn.compute.services(binary='nova-compute', host=host):
        return service
    raise AssertionError('no nova-compute service for host %s' % host)


def service_settings(conn, host):
    service = nova_service(conn, host)
    return dict(enabled=service.status == 'enabled', forced_down=service.is_forced_down,
                disabled_reason=service.disabled_reason, state=service.state)


def placement_free(conn, host):
    """What the host's resource provider (found by name) has free: (total - reserved) * ratio - used."""
    providers = list(conn.placement.resource_providers(name=host))
    assert len(providers) == 1, 'expected one resource provider named %s, got %s' % (host, providers)
    inventories = dict((inv.resource_class, inv) for inv in conn.placement.resource_provider_inventories(providers[0]))
    usages = conn.placement.fetch_resource_provider_usages(providers[0]).usages
    free = {}
    for key, resource_class in (('vcpus', 'VCPU'), ('memory_mb', 'MEMORY_MB'), ('disk_gb', 'DISK_GB')):
        inv = inventories[resource_class]
        free[key] = int((inv.total - inv.reserved) * inv.allocation_ratio) - usages.get(resource_class, 0)
    return free


def provider_traits(conn, host):
    provider = list(conn.placement.resource_providers(name=host))[0]
    response = conn.placement.get('/resource_providers/%s/traits' % provider.id, microversion='1.6')
    response.raise_for_status()
    return set(response.json()['traits'])
