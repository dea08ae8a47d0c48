"""Nova's fake virt driver, made restartable: the lab's compute_driver (``ohlab_fake.LabFakeDriver``).

Installed into the lab venv as ``nova/virt/ohlab_fake.py`` because Nova imports the driver only as
``nova.virt.<compute_driver>``. Two differences from ``nova.virt.fake.FakeDriver``:

* The node UUID is persisted in ``<state_path>/compute_id`` (like the libvirt driver does), instead
  of a new random UUID at every process start. Without it Nova >= 2023.1 refuses to restart a compute
  that crashed ("No local node identity found, but this is not our first startup on this host"), and a
  crashed host could never come back to clean up its evacuated instances.
* The host's capacity comes from the environment (OHLAB_VCPUS, OHLAB_MEMORY_MB, OHLAB_DISK_GB), so
  the lab can give hosts different sizes and tests can provoke a capacity shortfall.

* Live migration away from the host can be made to fail, as on a real hypervisor, with a file
  ``live-migration-fail`` in the host's lab directory (the parent of the compute's state_path; written by
  ``labctl live-migration HOST --fail MODE``), read at every live migration:

  ``abort``     the migration starts and fails, as when the libvirt driver's migration job fails (a libvirtError
                in its migration thread): the driver calls Nova's rollback (recover_method) and Nova marks the
                migration 'failed'; the instance stays ACTIVE on this host, with no task state.
  ``precheck``  the source's pre-check refuses, as the libvirt driver does with MigrationPreCheckError (e.g.
                shared storage or CPU checks): the conductor marks the migration 'error', trying other
                destinations first when the scheduler chose; the instance stays ACTIVE on this host.

Guests still live only in memory: a restarted compute comes back with no guests, as a real host
whose hypervisor lost its VMs in a power cut.
"""

import os

from oslo_log import log as logging

import nova.conf
from nova import exception
from nova.virt import fake
from nova.virt import node

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)
LIVE_MIGRATION_FAIL_FILE = 'live-migration-fail'


def _env_int(name, default):
    value = os.environ.get(name)
    return int(value) if value else default


def _live_migration_fail_mode():
    """'abort', 'precheck' or None: the content of the host directory's live-migration-fail file."""
    host_dir = os.path.dirname(os.path.normpath(CONF.state_path))
    try:
        with open(os.path.join(host_dir, LIVE_MIGRATION_FAIL_FILE)) as f:
            return f.read().strip() or 'abort'
    except FileNotFoundError:
        return None


class LabFakeDriver(fake.FakeDriver):
    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only=read_only)
        # the Placement inventory (FakeDriver.update_provider_tree) reads these three, the claims self.resources
        self.vcpus = _env_int('OHLAB_VCPUS', self.vcpus)
        self.memory_mb = _env_int('OHLAB_MEMORY_MB', self.memory_mb)
        self.local_gb = _env_int('OHLAB_DISK_GB', self.local_gb)
        self.resources = fake.Resources(vcpus=self.vcpus, memory_mb=self.memory_mb, local_gb=self.local_gb)
        self._node_uuid = None

    def _local_node_uuid(self):
        if self._node_uuid is None:
            self._node_uuid = node.get_local_node_uuid()
        return self._node_uuid

    def get_available_resource(self, nodename):
        status = super().get_available_resource(nodename)
        if status:
            status['uuid'] = self._local_node_uuid()
        return status

    def get_nodenames_by_uuid(self, refresh=False):
        return {self._local_node_uuid(): name for name in self.get_available_nodes()}

    def check_can_live_migrate_source(self, context, instance, dest_check_data, block_device_info=None):
        if _live_migration_fail_mode() == 'precheck':
            raise exception.MigrationPreCheckError(
                reason='ohlab: live migration from %s refused by its pre-check (labctl live-migration %s '
                       '--fail precheck)' % (CONF.host, CONF.host))
        return super().check_can_live_migrate_source(context, instance, dest_check_data,
                                                     block_device_info=block_device_info)

    def live_migration(self, context, instance, dest, post_method, recover_method, block_migration=False,
                       migrate_data=None):
        if _live_migration_fail_mode() == 'abort':
            LOG.error('ohlab: live migration to %s failed: operation failed: migration job: unexpectedly failed '
                      '(labctl live-migration %s --fail abort); Migration operation has aborted', dest, CONF.host,
                      instance=instance)
            recover_method(context, instance, dest, migrate_data)
            return
        return super().live_migration(context, instance, dest, post_method, recover_method,
                                      block_migration=block_migration, migrate_data=migrate_data)
