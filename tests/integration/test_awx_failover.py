"""The host_failover job template as AWX runs it (tests/integration/runner_harness.py: ansible-runner, a private data
dir with the project, an inventory script, extra vars and the BMC credential injected as AWX injects it), against
the lab: the job recovers a crashed host and its artifacts carry the recovery report (set_stats)."""

import json
import os
import sys

import pytest

from helpers_nova import ansible_env
from lab_helpers import REPO, compute_service, labctl, wait_for
from runner_harness import inventory_from_file, run_like_awx

sys.path.insert(0, os.path.join(REPO, 'awx'))
import build_import  # noqa: E402  (awx/ is not a package)

pytestmark = pytest.mark.timeout(900, func_only=True)


def test_failover_job_recovers_and_its_artifacts_carry_the_report(fresh_lab, conn, tmp_path):
    lab, host = fresh_lab, 'compute3'
    labctl('boot', '--count', '2', '--host', host, '--prefix', 'awx-fo', timeout=600)
    labctl('crash', host)
    wait_for('Nova to report %s down' % host, lambda: compute_service(conn, host).state == 'down', 60)

    inventory = inventory_from_file(lab['inventory'])
    for group in inventory.values():  # the BMC credential must be the only source of the BMC login
        if isinstance(group, dict) and 'vars' in group:
            group['vars'].pop('host_fence_bmc_username', None)
            group['vars'].pop('host_fence_bmc_password', None)
            group['vars'].update(host_failover_report_dir=str(tmp_path / 'reports'),
                                 host_failover_lock_dir=str(tmp_path / 'locks'))
    for values in inventory['_meta']['hostvars'].values():
        values.pop('bmc_username', None)
        values.pop('bmc_password', None)
    kind, = [entry for entry in build_import.load_config()['openstack_ha_awx_credential_types']
             if entry['name'] == 'openstack_ha.recovery BMC']
    bmc = lab['hosts'][host]
    job = run_like_awx('playbooks/host_failover.yml', inventory, extravars={'compute_host': host},
                       credentials=[(kind, {'username': bmc['bmc_username'], 'password': bmc['bmc_password']})],
                       env=ansible_env(lab))
    assert (job.status, job.rc) == ('successful', 0), job
    report = job.artifacts['openstack_ha_recovery_report']
    assert report['outcome'] == 'recovered' and report['run_id'] == 'awx-4711'
    assert report['evacuation']['totals']['moved'] == 2
    placed = {s.name: s.compute_host for s in conn.compute.servers(details=True, all_projects=True)
              if s.name.startswith('awx-fo')}
    assert len(placed) == 2 and host not in placed.values()
    assert compute_service(conn, host).disabled_reason.startswith('openstack_ha:failover run=awx-4711 ')
    assert bmc['bmc_password'] not in json.dumps(job.artifacts) + job.stdout
