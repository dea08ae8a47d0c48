"""storm_guard against the real lab, through the ansible CLI. One scenario, several verdicts: one crashed host of
three proceeds; failover markers written into Nova's disabled reasons are counted (recent ones, not old ones, not
the run's own); a second crashed host makes the guard refuse, naming the down hosts and the limit. Nova is read
back after each run: the guard never changes a service.
"""

import datetime

import pytest

from helpers_nova import run_module, service_settings
from lab_helpers import compute_service, labctl, wait_for

HOSTS = ('compute1', 'compute2', 'compute3')


def marker(run, seconds_ago):
    at = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds_ago)
    return 'openstack_ha:failover run=%s at=%s' % (run, at.strftime('%Y-%m-%dT%H:%M:%SZ'))


def disable(conn, host, reason):
    """Disable a service with a reason through openstacksdk (not the collection): PUT /os-services/{id}."""
    service = compute_service(conn, host)
    response = conn.compute.put('/os-services/%s' % service.id, json=dict(status='disabled', disabled_reason=reason),
                                microversion='2.53')
    response.raise_for_status()


def crash_and_wait_down(conn, host):
    labctl('crash', host)
    wait_for('Nova to report %s down' % host, lambda: compute_service(conn, host).state == 'down', 60, interval=0.5)


def settings(conn):
    """What a module could change on each service (its state follows the host's heartbeats alone)."""
    return dict((host, dict((key, value) for key, value in service_settings(conn, host).items() if key != 'state'))
                for host in HOSTS)


def guard(lab, conn, check=False, **options):
    before = settings(conn)
    run = run_module(lab, 'storm_guard', check=check, **options)
    assert settings(conn) == before, 'storm_guard changed a service'
    assert 'changed' not in run.result or run['changed'] is False
    return run


@pytest.mark.timeout(240, func_only=True)
def test_storm_guard_counts_down_hosts_and_recent_failovers(fresh_lab, conn):
    lab = fresh_lab
    crash_and_wait_down(conn, 'compute1')

    one_down = guard(lab, conn, check=True, host='compute1')
    assert not one_down.failed, one_down
    assert (one_down['verdict'], one_down['reasons']) == ('proceed', [])
    assert one_down['domain'] == dict(kind='availability_zone', name='nova', aggregates=[], size=3)
    assert (one_down['down'], one_down['down_percent']) == (['compute1'], 33.3)
    assert [(h['host'], h['state'], h['down']) for h in one_down['hosts']] == [
        ('compute1', 'down', True), ('compute2', 'up', False), ('compute3', 'up', False)]

    # Failovers recorded in Nova: this run's own marker on compute1, a recent one, an old one. Disabled while
    # compute2 still runs: a disable of a dead host that Nova still believes up waits for the RPC timeout.
    recent = marker('run-2', 120)
    disable(conn, 'compute1', marker('run-1', 30))
    disable(conn, 'compute2', recent)
    disable(conn, 'compute3', marker('run-3', 7200))
    labctl('crash', 'compute2')  # Nova notices it while the rate limit is checked (the down share is not limited)
    limited = guard(lab, conn, host='compute1', run_id='run-1', max_failovers=1, max_down_percent=100)
    assert limited.failed
    assert limited['recent_failovers'] == [dict(host='compute2', run='run-2', at=recent.split(' at=')[1],
                                                source='nova')]
    assert limited['verdict'] == 'refuse' and len(limited['reasons']) == 1
    assert limited.result['msg'].startswith('storm guard refuses the failover of compute1: 1 failover(s) within the '
                                            'last 3600 s (compute2 (run run-2 at ')
    assert limited.result['msg'].endswith('another one would be more than max_failovers 1')
    assert [h['disabled_reason'][:26] for h in limited['hosts']] == ['openstack_ha:failover run='] * 3
    allowed = guard(lab, conn, host='compute1', run_id='run-1', max_failovers=2, max_down_percent=100)
    assert not allowed.failed and allowed['verdict'] == 'proceed'

    wait_for('Nova to report compute2 down', lambda: compute_service(conn, 'compute2').state == 'down', 60,
             interval=0.5)
    refused = guard(lab, conn, host='compute1', run_id='run-1', max_failovers=2)
    assert refused.failed
    assert (refused['down'], refused['down_percent'], refused['verdict']) == (['compute1', 'compute2'], 66.7, 'refuse')
    assert refused.result['msg'] == (
        'storm guard refuses the failover of compute1: 2 of 3 hosts in failure domain availability_zone nova are down '
        'or forced down, counting compute1 (compute1, compute2): 66.7% is more than max_down_percent 34.0%')

    by_count = guard(lab, conn, host='compute1', run_id='run-1', max_failovers=2, max_down_percent=70,
                     max_down_hosts=1, fail_on_refuse=False)
    assert not by_count.failed
    assert by_count['verdict'] == 'refuse' and len(by_count['reasons']) == 1
    assert by_count['reasons'][0].endswith('more than max_down_hosts 1')

    unknown = guard(lab, conn, host='compute9')
    assert unknown.failed
    assert unknown.result['msg'] == ("no nova-compute service for host 'compute9'; Nova knows the compute hosts "
                                     "compute1, compute2, compute3")
