"""Bad input to the runbook, against a lab whose compute1 holds servers: each run fails with an error that names
the host and what is wrong, and nothing changes (no power action, no service change, no evacuation, every server
where it was). An unknown host is tests/integration's (test_unknown_host_is_a_clear_error); the webhook's foreign
and oversized bodies are the alertmanager source's unit tests (tests/unit/extensions).
"""

import copy

import pytest

from fault_lab import report_of
from invariants import bmc_events, snapshot
from lab_helpers import compute_service, evacuation_migrations

pytestmark = pytest.mark.timeout(1200, func_only=True)


def _inventory_with(scenario, name, host, **host_vars):
    inventory = copy.deepcopy(scenario.inventory)
    hosts = inventory['all']['children']['compute_hosts']['hosts']
    for key, value in host_vars.items():
        if value is None:
            hosts[host].pop(key, None)
        else:
            hosts[host][key] = value
    scenario.write_yaml(name, inventory)
    return name


def test_bad_input_is_a_clear_error_and_changes_nothing(scenario):
    scenario.prepare('compute1', servers=3, crash=False)
    host, conn = scenario.host, scenario.conn
    events = len(bmc_events(scenario.lab, host))
    cases = []

    def case(what, expected, inventory='inventory.yml', crashed=False, **extra):
        run = scenario.play('openstack_ha.recovery.host_failover', extra_vars=scenario.extra(**extra),
                            inventory=inventory, timeout=600)
        report = report_of(run)
        message = report['message'] if report else run.output
        cases.append((what, run.rc, message))
        assert run.rc != 0, '%s: the run succeeded' % what
        assert expected in message, '%s: %r not in %s' % (what, expected, message[-2000:])
        # nothing changed
        service = compute_service(conn, host)
        assert (service.is_forced_down, service.status) == (False, 'enabled'), what
        assert evacuation_migrations(conn, host) == [], what
        assert snapshot(conn, host) == scenario.before, what
        offs = [e for e in bmc_events(scenario.lab, host)[events:] if e.get('action') in ('off', 'cycle')]
        assert offs == [], '%s: the BMC was told %s' % (what, offs)
        return report

    # a host that is up and answering: a partition at worst, never failed over
    up = case('host that is up', 'Refusing to fail over compute1, nothing was changed')
    assert up['outcome'] == 'refused'
    # no host name at all
    case('empty compute_host', 'Say which host to fail over: -e compute_host=NAME', compute_host='')

    scenario.crash(host)  # from here on the host is really down: only the input is wrong
    case('wrong BMC password', 'NOT fenced', inventory=_inventory_with(
        scenario, 'wrong-password.yml', host, bmc_password='not-the-password'), host_fence_retries=0)
    case('missing BMC password', 'password', inventory=_inventory_with(
        scenario, 'no-password.yml', host, bmc_password=None), host_fence_retries=0)
    case('no fence levels', 'it has no fence levels (host_fence_levels)', inventory=_inventory_with(
        scenario, 'no-levels.yml', host, host_fence_levels=[]))
    unknown_type = [dict(name='x', methods=[dict(type='ipmo', address='127.0.0.1')])]
    case('a fence method of an unknown type', 'ipmo', inventory=_inventory_with(
        scenario, 'bad-type.yml', host, host_fence_levels=unknown_type))
    case('a host Nova does not know', "no nova-compute service for host 'nosuchhost'; Nova knows the compute hosts",
         host_failover_nova_host='nosuchhost')
    scenario.record('refused/failed x%d' % len(cases), 'nothing changed (%d cases)' % len(cases))
