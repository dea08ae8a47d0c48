"""tests/integration/runner_harness.py against the lab: a playbook run as AWX runs a job, with the BMC credential of
awx/controller_config.yml injected the way AWX injects it, returns status, rc, events and the set_stats artifacts.

The playbook (tests/integration/runner_project/fence_plan.yml, a job of type "check") reads the host from Nova with
nova_host_info and asks the host_fence role what it would do; its set_stats data must come back as the job's
artifacts. The lab's inventory is used without its BMC user and password, so the credential is the only source.
"""

import json
import os
import sys

import pytest

from helpers_nova import ansible_env
from lab_helpers import REPO, ipmitool
from runner_harness import inventory_from_file, run_like_awx

sys.path.insert(0, os.path.join(REPO, 'awx'))
import build_import  # noqa: E402  (awx/ is not a package)

pytestmark = pytest.mark.timeout(300, func_only=True)
PROJECT = os.path.join(REPO, 'tests', 'integration', 'runner_project')


def bmc_credential_type():
    kind, = [entry for entry in build_import.load_config()['openstack_ha_awx_credential_types']
             if entry['name'] == 'openstack_ha.recovery BMC']
    return kind


def lab_inventory_without_bmc_credentials(lab):
    inventory = inventory_from_file(lab['inventory'])
    for values in inventory['_meta']['hostvars'].values():
        values.pop('bmc_username', None)
        values.pop('bmc_password', None)
    for group in inventory.values():
        if isinstance(group, dict) and 'vars' in group:
            group['vars'].pop('host_fence_bmc_username', None)
            group['vars'].pop('host_fence_bmc_password', None)
    # fence_verify in check mode only reads; keep its wait for a silent heartbeat short
    inventory['_meta']['hostvars']['compute1']['host_fence_verify_timeout'] = 10
    return inventory


def test_a_check_job_returns_the_set_stats_artifacts_and_changes_nothing(lab):
    bmc = lab['hosts']['compute1']
    assert 'Chassis Power is on' in ipmitool(bmc, 'power', 'status')
    inventory = lab_inventory_without_bmc_credentials(lab)
    assert 'ohlab-bmc-secret' not in json.dumps(inventory)
    result = run_like_awx('fence_plan.yml', inventory, extravars={'compute_host': 'compute1'},
                          credentials=[(bmc_credential_type(), {'username': bmc['bmc_username'],
                                                                'password': bmc['bmc_password']})],
                          env=ansible_env(lab), project=PROJECT, check=True)
    assert (result.status, result.rc) == ('successful', 0), result
    plan = result.artifacts['openstack_ha_test_fence_plan']
    assert plan['host'] == 'compute1'
    assert plan['awx_job_id'] == 4711
    assert plan['service']['host'] == 'compute1' and plan['service']['state'] == 'up'
    fence = plan['fence']
    assert (fence['check_mode'], fence['fenced'], fence['outcome'], fence['level']) == (True, False, 'would_fence', 1)
    assert fence['attempts'][0]['evidence']['bmc']['reads'] == ['on']  # read over IPMI with the injected password
    # the events AWX shows: every task, the recap
    assert result.events[-1]['event'] == 'playbook_on_stats'
    assert result.task_results('Read the host\'s service and instances from Nova')[0]['event'] == 'runner_on_ok'
    assert result.stats['failures'] == {}
    # nothing changed, and the password shows nowhere AWX keeps
    assert 'Chassis Power is on' in ipmitool(bmc, 'power', 'status')
    assert bmc['bmc_password'] not in result.stdout
    assert bmc['bmc_password'] not in json.dumps(result.events)


def test_a_failed_job_reports_failed_with_no_artifacts(lab):
    bmc = lab['hosts']['compute1']
    inventory = lab_inventory_without_bmc_credentials(lab)
    result = run_like_awx('fence_plan.yml', inventory, extravars={'compute_host': 'compute1'},
                          credentials=[(bmc_credential_type(), {'username': bmc['bmc_username'],
                                                                'password': 'not-the-password'})],
                          env=ansible_env(lab), project=PROJECT, check=True)
    assert result.status == 'failed' and result.rc != 0, result
    assert result.artifacts == {}
    failed = [data for data in result.task_results() if data['event'] == 'runner_on_failed']
    assert failed and failed[-1]['host'] == 'compute1'
    assert "rejected the login of user '%s'" % bmc['bmc_username'] in failed[-1]['res']['msg']
    assert 'not-the-password' not in result.stdout
