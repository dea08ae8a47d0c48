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

* Guests survive a power cut the way a real host's disks do: every guest (uuid, name, power state, the resources
  it claims) is written to ``<state_path>/guests.json`` when it is spawned, destroyed, powered on or off, rebooted
  or crashed (and by a watcher thread, within half a second, after any other change). A compute that starts
  reloads them POWERED OFF, as after a power cut or a host crash: Nova's power-state sync
  (``sync_power_state_interval``) then sees them SHUTDOWN and stops them itself (vm_state stopped, a 'stop'
  instance action with no user), and Nova's start-up clean-up destroys those that were evacuated meanwhile.

* One guest can crash, as a guest that panicked or powered itself off: ``labctl crash-instance SERVER`` appends
  the server's uuid to the file ``crash-instances`` in the host's lab directory; the watcher thread of this
  process takes the file, marks each listed guest SHUTDOWN, and nothing tells Nova: its power-state sync finds out.
"""

import json
import os
import threading
import time

from oslo_log import log as logging

import nova.conf
from nova import exception
from nova.virt import fake
from nova.compute import power_state
from nova.virt import node

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)
LIVE_MIGRATION_FAIL_FILE = 'live-migration-fail'
CRASH_INSTANCES_FILE = 'crash-instances'  # in the host's lab directory, written by labctl crash-instance
GUESTS_FILE = 'guests.json'               # in the compute's state_path
WATCH_INTERVAL = 0.5


def _env_int(name, default):
    value = os.environ.get(name)
    return int(value) if value else default


def _host_dir():
    return os.path.dirname(os.path.normpath(CONF.state_path))


def _live_migration_fail_mode():
    """'abort', 'precheck' or None: the content of the host directory's live-migration-fail file."""
    try:
        with open(os.path.join(_host_dir(), LIVE_MIGRATION_FAIL_FILE)) as f:
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
        self._guests_lock = threading.RLock()
        self._claims = {}  # uuid -> {vcpus, mem, disk}: what the guest claims, to reload it with its claim
        self._saved = None
        self._reload_guests()
        threading.Thread(target=self._watch, name='ohlab-guests', daemon=True).start()

    # -- guests on "disk": reloaded powered off at start, written at every change

    def _guests_file(self):
        return os.path.join(CONF.state_path, GUESTS_FILE)

    def _snapshot(self):
        return {uuid: {'name': guest.name, 'state': guest.state, 'claim': self._claims.get(uuid)}
                for uuid, guest in self.instances.items()}

    def _save_guests(self):
        with self._guests_lock:
            snapshot = self._snapshot()
            if snapshot == self._saved:
                return
            fname = self._guests_file()
            with open(fname + '.tmp', 'w') as f:
                json.dump(snapshot, f, indent=1, sort_keys=True)
            os.replace(fname + '.tmp', fname)
            self._saved = snapshot

    def _reload_guests(self):
        try:
            with open(self._guests_file()) as f:
                saved = json.load(f)
        except FileNotFoundError:
            return
        with self._guests_lock:
            for uuid, guest in saved.items():
                claim = guest.get('claim')
                if claim:
                    self.resources.claim(**claim)
                    self._claims[uuid] = claim
                # the power went away with the host: every guest comes back powered off
                self.instances[uuid] = fake.FakeInstance(guest['name'], power_state.SHUTDOWN, uuid)
            LOG.warning('ohlab: reloaded %d guest(s) from %s, all powered off (the host lost power or crashed)',
                        len(saved), self._guests_file())
            self._save_guests()

    def _crash_listed_guests(self):
        """Take the host directory's crash-instances file and power off the guests it lists, telling nobody."""
        fname = os.path.join(_host_dir(), CRASH_INSTANCES_FILE)
        taken = '%s.%d' % (fname, os.getpid())
        try:
            os.rename(fname, taken)
        except FileNotFoundError:
            return
        with open(taken) as f:
            uuids = [line.strip() for line in f if line.strip()]
        os.unlink(taken)
        with self._guests_lock:
            for uuid in uuids:
                guest = self.instances.get(uuid)
                if guest is None:
                    LOG.warning('ohlab: crash-instances names %s, which is not a guest of this host', uuid)
                    continue
                guest.state = power_state.SHUTDOWN
                LOG.warning('ohlab: guest %s (%s) crashed: powered off without any API call', guest.name, uuid)
            self._save_guests()

    def _watch(self):
        while True:
            time.sleep(WATCH_INTERVAL)
            try:
                self._crash_listed_guests()
                self._save_guests()
            except Exception:  # the watcher must outlive a bad file
                LOG.exception('ohlab: the guests watcher failed once')

    def spawn(self, context, instance, image_meta, injected_files, admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        super().spawn(context, instance, image_meta, injected_files, admin_password, allocations,
                      network_info=network_info, block_device_info=block_device_info, power_on=power_on,
                      accel_info=accel_info)
        flavor = instance.flavor
        with self._guests_lock:
            self._claims[instance.uuid] = {'vcpus': flavor.vcpus, 'mem': flavor.memory_mb, 'disk': flavor.root_gb}
            self._save_guests()

    def destroy(self, context, instance, network_info, block_device_info=None, destroy_disks=True,
                destroy_secrets=True):
        super().destroy(context, instance, network_info, block_device_info=block_device_info,
                        destroy_disks=destroy_disks, destroy_secrets=destroy_secrets)
        with self._guests_lock:
            self._claims.pop(instance.uuid, None)
            self._save_guests()

    def power_off(self, instance, timeout=0, retry_interval=0):
        super().power_off(instance, timeout=timeout, retry_interval=retry_interval)
        self._save_guests()

    def power_on(self, context, instance, network_info, block_device_info=None, accel_info=None, share_info=None):
        super().power_on(context, instance, network_info, block_device_info=block_device_info,
                         accel_info=accel_info, share_info=share_info)
        self._save_guests()

    def reboot(self, context, instance, network_info, reboot_type, block_device_info=None,
               bad_volumes_callback=None, accel_info=None, share_info=None):
        super().reboot(context, instance, network_info, reboot_type, block_device_info=block_device_info,
                       bad_volumes_callback=bad_volumes_callback, accel_info=accel_info, share_info=share_info)
        self._save_guests()

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
