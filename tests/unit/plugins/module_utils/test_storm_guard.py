"""storm_guard's core against the in-memory Nova: failure domains, down counting, the limits, failover markers."""

import datetime
import json

import pytest

from ansible_collections.openstack_ha.recovery.plugins.module_utils._nova import NovaError
from ansible_collections.openstack_ha.recovery.plugins.module_utils._storm_guard import (
    CLAIM_GRACE,
    STORM_GUARD_RESULT_KEYS,
    StormGuardError,
    format_marker,
    parse_marker,
    recent_failovers,
    refusal_message,
    storm_guard,
)
from ansible_collections.openstack_ha.recovery.tests.unit.plugins.nova_fakes import FakeCloud

NOW = datetime.datetime(2026, 11, 22, 10, 15, 0, tzinfo=datetime.timezone.utc)


def marker(run, seconds_ago, runbook='failover'):
    return format_marker(runbook, run, NOW - datetime.timedelta(seconds=seconds_ago))


@pytest.fixture
def cloud():
    cloud = FakeCloud()
    for name in ('compute1', 'compute2', 'compute3'):
        cloud.add_host(name)
    return cloud


def guard(cloud, host='compute1', **options):
    return storm_guard(cloud, host, now=NOW, **options)


# -- markers ---------------------------------------------------------------------------------------------------

def test_marker_round_trip_in_the_collection_form():
    text = format_marker('failover', '20261122T101500Z-compute1-4711', NOW)
    assert text == 'openstack_ha:failover run=20261122T101500Z-compute1-4711 at=2026-11-22T10:15:00Z'
    parsed = parse_marker(text)
    assert (parsed['runbook'], parsed['run'], parsed['at'], parsed['time']) == (
        'failover', '20261122T101500Z-compute1-4711', '2026-11-22T10:15:00Z', NOW)


def test_marker_from_another_timezone_is_written_in_utc():
    cest = datetime.timezone(datetime.timedelta(hours=2))
    assert format_marker('drain', 'r', NOW.astimezone(cest)).endswith('at=2026-11-22T10:15:00Z')


@pytest.mark.parametrize('reason', [None, '', 'maintenance', 'reserved', 'openstack_ha:failover run=x',
                                    'openstack_ha:failover run=x at=2026-11-22T10:15:00Z extra'])
def test_anything_else_is_no_marker(reason):
    assert parse_marker(reason) is None


def test_a_marker_whose_time_is_not_utc_iso_has_no_time():
    assert parse_marker('openstack_ha:failover run=x at=yesterday')['time'] is None
    assert parse_marker('openstack_ha:failover run=x at=2026-11-22T10:15:00+02:00')['time'] is None


# -- the failure domain ------------------------------------------------------------------------------------------

def test_three_healthy_hosts_and_one_failing_proceed_with_the_evidence(cloud):
    cloud.service('compute1')['state'] = 'down'
    result = guard(cloud)
    assert set(result) == set(STORM_GUARD_RESULT_KEYS) | {'changed'}
    assert result['changed'] is False
    assert result['verdict'] == 'proceed' and result['reasons'] == []
    assert result['domain'] == dict(kind='availability_zone', name='nova', aggregates=[], size=3)
    assert result['down'] == ['compute1']
    assert result['down_percent'] == 33.3
    assert result['hosts'][0] == dict(host='compute1', state='down', forced_down=False, status='enabled',
                                      disabled_reason=None, down=True)
    assert [h['down'] for h in result['hosts']] == [True, False, False]
    assert cloud.sent('compute', 'PUT') == []


def test_the_host_counts_as_down_even_while_nova_still_says_up(cloud):
    result = guard(cloud)
    assert result['hosts'][0]['state'] == 'up' and result['hosts'][0]['down'] is True
    assert result['down'] == ['compute1']


def test_two_of_three_down_are_refused_naming_hosts_and_limit(cloud):
    cloud.service('compute2')['state'] = 'down'
    result = guard(cloud)
    assert result['verdict'] == 'refuse'
    assert result['down'] == ['compute1', 'compute2'] and result['down_percent'] == 66.7
    assert result['reasons'] == [
        '2 of 3 hosts in failure domain availability_zone nova are down or forced down, counting compute1 '
        '(compute1, compute2): 66.7% is more than max_down_percent 34.0%']
    assert refusal_message(result) == 'storm guard refuses the failover of compute1: ' + result['reasons'][0]


def test_forced_down_counts_as_down_though_nova_would_say_so_anyway(cloud):
    cloud.service('compute3')['forced_down'] = True
    cloud.service('compute3')['state'] = 'up'  # the fake reports forced-down services down, as Nova does
    result = guard(cloud, max_down_percent=70.0)
    assert result['down'] == ['compute1', 'compute3'] and result['verdict'] == 'proceed'
    assert result['hosts'][2]['forced_down'] is True


def test_the_comparison_is_strictly_more_than(cloud):
    cloud.add_host('compute4')
    cloud.service('compute2')['state'] = 'down'
    assert guard(cloud, max_down_percent=50.0)['verdict'] == 'proceed'  # 2 of 4 = 50.0 is not more than 50
    assert guard(cloud, max_down_percent=49.9)['verdict'] == 'refuse'


def test_the_percent_is_compared_unrounded(cloud):
    # 1 of 3 = 33.333...: more than 33.33 though it shows as 33.3
    result = guard(cloud, max_down_percent=33.33)
    assert result['verdict'] == 'refuse' and result['down_percent'] == 33.3


def test_max_down_hosts_refuses_alone(cloud):
    for name in ('compute4', 'compute5', 'compute6', 'compute7'):
        cloud.add_host(name)
    cloud.service('compute2')['state'] = 'down'
    result = guard(cloud, max_down_hosts=1)
    assert result['down_percent'] == 28.6
    assert result['reasons'] == ['2 hosts in failure domain availability_zone nova are down or forced down, '
                                 'counting compute1 (compute1, compute2): more than max_down_hosts 1']
    assert guard(cloud, max_down_hosts=2)['verdict'] == 'proceed'


def test_both_limits_give_two_reasons(cloud):
    cloud.service('compute2')['state'] = 'down'
    assert len(guard(cloud, max_down_hosts=1)['reasons']) == 2


def test_availability_zone_domain_leaves_other_zones_out(cloud):
    cloud.add_host('compute4', zone='az2', state='down')
    cloud.add_host('compute5', zone='az2')
    result = guard(cloud, host='compute5')
    assert result['domain'] == dict(kind='availability_zone', name='az2', aggregates=[], size=2)
    assert result['down'] == ['compute4', 'compute5'] and result['verdict'] == 'refuse'
    assert guard(cloud)['domain']['size'] == 3
    assert cloud.sent('compute', 'GET')[-1].path == '/os-services'  # no aggregates read for a zone


def test_all_domain_takes_every_host(cloud):
    cloud.add_host('compute4', zone='az2', state='down')
    result = guard(cloud, failure_domain_kind='all')
    assert result['domain'] == dict(kind='all', name='all', aggregates=[], size=4)
    assert result['down'] == ['compute1', 'compute4'] and result['down_percent'] == 50.0


def test_aggregate_domain_is_the_union_of_the_hosts_aggregates(cloud):
    cloud.add_host('compute4', state='down')
    cloud.add_host('compute5', state='down')
    cloud.add_aggregate('rack-a', ['compute1', 'compute2'])
    cloud.add_aggregate('pdu-1', ['compute1', 'compute4', 'ghost'])  # ghost: no nova-compute service
    cloud.add_aggregate('rack-b', ['compute3', 'compute5'])
    result = guard(cloud, failure_domain_kind='aggregate', max_down_percent=70.0)
    assert result['domain'] == dict(kind='aggregate', name='pdu-1, rack-a', aggregates=['pdu-1', 'rack-a'], size=3)
    assert [h['host'] for h in result['hosts']] == ['compute1', 'compute2', 'compute4']
    assert result['down'] == ['compute1', 'compute4'] and result['verdict'] == 'proceed'
    assert any(r.path == '/os-aggregates' and r.microversion == '2.41' for r in cloud.requests)


def test_a_named_aggregate_is_the_domain(cloud):
    cloud.add_aggregate('rack-a', ['compute1', 'compute2'])
    cloud.add_aggregate('rack-big', ['compute1', 'compute2', 'compute3'])
    cloud.service('compute2')['state'] = 'down'
    result = guard(cloud, failure_domain_kind='aggregate', aggregate='rack-big', max_down_percent=70.0)
    assert result['domain'] == dict(kind='aggregate', name='rack-big', aggregates=['rack-big'], size=3)
    assert result['verdict'] == 'proceed'


def test_an_unknown_aggregate_fails_naming_the_known_ones(cloud):
    cloud.add_aggregate('rack-a', ['compute1'])
    with pytest.raises(StormGuardError) as caught:
        guard(cloud, failure_domain_kind='aggregate', aggregate='rack-z')
    assert caught.value.msg == "no host aggregate named 'rack-z' (Nova has rack-a)"
    assert set(caught.value.facts) == set(STORM_GUARD_RESULT_KEYS)
    with pytest.raises(StormGuardError) as caught:
        guard(cloud_with_one_host(), failure_domain_kind='aggregate', aggregate='rack-z')
    assert caught.value.msg == "no host aggregate named 'rack-z' (Nova has no aggregates)"


def cloud_with_one_host():
    cloud = FakeCloud()
    cloud.add_host('compute1')
    return cloud


def test_a_named_aggregate_without_the_host_fails(cloud):
    cloud.add_aggregate('rack-b', ['compute2', 'compute3'])
    with pytest.raises(StormGuardError) as caught:
        guard(cloud, failure_domain_kind='aggregate', aggregate='rack-b')
    assert caught.value.msg == ("host compute1 is not in host aggregate 'rack-b' (its hosts: compute2, compute3): "
                                "name an aggregate of compute1, or leave aggregate unset to use all of its "
                                "aggregates")


def test_a_host_in_no_aggregate_fails_for_the_aggregate_domain(cloud):
    cloud.add_aggregate('rack-b', ['compute2'])
    with pytest.raises(StormGuardError) as caught:
        guard(cloud, failure_domain_kind='aggregate')
    assert 'host compute1 is in no host aggregate' in caught.value.msg


def test_unknown_host_fails_naming_the_known_hosts(cloud):
    with pytest.raises(NovaError) as caught:
        guard(cloud, host='compute9')
    assert caught.value.msg == ("no nova-compute service for host 'compute9'; Nova knows the compute hosts "
                                "compute1, compute2, compute3")
    assert caught.value.facts['verdict'] is None and caught.value.facts['host'] == 'compute9'


def test_api_failure_fails_with_the_facts(cloud):
    cloud.fail('compute', 'GET', '^/os-services$', status=503, text='busy')
    with pytest.raises(NovaError) as caught:
        guard(cloud)
    assert 'HTTP 503' in caught.value.msg and set(caught.value.facts) == set(STORM_GUARD_RESULT_KEYS)


@pytest.mark.parametrize('options, message', [
    (dict(max_down_percent=101.0), 'max_down_percent must be between 0 and 100, got 101.0'),
    (dict(max_down_percent=-1.0), 'max_down_percent must be between 0 and 100, got -1.0'),
    (dict(max_down_hosts=-1), 'max_down_hosts must not be negative, got -1'),
    (dict(window=-5), 'window must not be negative, got -5'),
    (dict(max_failovers=-1), 'max_failovers must not be negative, got -1'),
    (dict(failure_domain_kind='rack'), "failure_domain must be one of availability_zone, aggregate, all, got 'rack'"),
    (dict(aggregate='rack-a'), "aggregate 'rack-a' is only used with failure_domain=aggregate, not availability_zone"),
])
def test_bad_options_fail_before_any_request(cloud, options, message):
    with pytest.raises(StormGuardError) as caught:
        guard(cloud, **options)
    assert caught.value.msg == message
    assert cloud.requests == []


# -- the failover rate ----------------------------------------------------------------------------------------

def test_recent_failover_markers_count_and_old_ones_do_not(cloud):
    cloud.service('compute2').update(status='disabled', disabled_reason=marker('run-2', 600))
    cloud.service('compute3').update(status='disabled', disabled_reason=marker('run-3', 3601))
    result = guard(cloud, max_failovers=1)
    assert result['recent_failovers'] == [dict(host='compute2', run='run-2', at='2026-11-22T10:05:00Z', source='nova')]
    assert result['reasons'] == ['1 failover(s) within the last 3600 s (compute2 (run run-2 at 2026-11-22T10:05:00Z)):'
                                 ' another one would be more than max_failovers 1']
    assert guard(cloud, max_failovers=2)['verdict'] == 'proceed'
    assert guard(cloud, max_failovers=1, window=300)['verdict'] == 'proceed'


def test_the_window_edge_counts(cloud):
    cloud.service('compute2').update(status='disabled', disabled_reason=marker('run-2', 3600))
    assert len(guard(cloud)['recent_failovers']) == 1


def test_other_runbooks_markers_and_reasons_do_not_count(cloud):
    cloud.service('compute2').update(status='disabled', disabled_reason=marker('run-2', 10, runbook='drain'))
    cloud.service('compute3').update(status='disabled', disabled_reason='reserved: spare for rack a')
    assert guard(cloud, max_failovers=1)['recent_failovers'] == []


def test_a_rerun_of_the_same_failover_is_not_another_one(cloud):
    cloud.service('compute1').update(status='disabled', forced_down=True, disabled_reason=marker('run-1', 60))
    cloud.service('compute2').update(status='disabled', disabled_reason=marker('run-1', 60))  # same id elsewhere
    result = guard(cloud, max_failovers=1, run_id='run-1', max_down_percent=100.0)
    assert result['recent_failovers'] == [dict(host='compute2', run='run-1', at='2026-11-22T10:14:00Z', source='nova')]
    result = guard(cloud, max_failovers=2, run_id='run-1', max_down_percent=100.0)
    assert result['verdict'] == 'proceed'
    # a rerun under another run id is still the same host's failover: its own marker never counts (else the
    # rerun of a half-done recovery could be refused by the first run's marker and leave instances stuck)
    assert guard(cloud, run_id='run-9', max_down_percent=100.0)['recent_failovers'] == [
        dict(host='compute2', run='run-1', at='2026-11-22T10:14:00Z', source='nova')]
    assert len(guard(cloud, max_down_percent=100.0)['recent_failovers']) == 1


def test_unparsable_failover_markers_count_as_recent(cloud):
    cloud.service('compute2').update(status='disabled', disabled_reason='openstack_ha:failover run=r at=someday')
    cloud.service('compute3').update(status='disabled', disabled_reason='openstack_ha:failover by hand')
    result = guard(cloud)
    assert result['recent_failovers'] == [dict(host='compute3', run=None, at=None, source='nova'),
                                          dict(host='compute2', run='r', at='someday', source='nova')]


def test_markers_in_the_future_count_and_are_sorted_by_time():
    services = [dict(host='a', disabled_reason=marker('r-a', -120)), dict(host='b', disabled_reason=marker('r-b', 5)),
                dict(host='c', disabled_reason=None)]
    assert [f['host'] for f in recent_failovers(services, 'x', None, 3600, NOW)] == ['b', 'a']


def test_failovers_anywhere_in_the_cloud_count(cloud):
    cloud.add_host('compute4', zone='az2', status='disabled', disabled_reason=marker('run-4', 5))
    assert guard(cloud)['recent_failovers'][0]['host'] == 'compute4'


def test_max_failovers_zero_refuses_every_failover(cloud):
    result = guard(cloud, max_failovers=0)
    assert result['verdict'] == 'refuse'
    assert result['reasons'] == ['max_failovers is 0: no failover may run']


# -- claims: two failovers racing through the gate ------------------------------------------------------------

def test_a_claim_makes_the_second_of_two_racing_failovers_count_the_first(cloud, tmp_path):
    cloud.service('compute2').update(state='down')
    cloud.service('compute3').update(state='down')
    first = guard(cloud, 'compute2', max_failovers=1, max_down_percent=100.0, run_id='run-2',
                  lock_dir=str(tmp_path), claim=True)
    assert (first['verdict'], first['claimed'], first['changed']) == ('proceed', True, True)
    # Nova shows no failover marker of compute2 yet (it is written after the fence): only the claim tells
    second = guard(cloud, 'compute3', max_failovers=1, max_down_percent=100.0, run_id='run-3',
                   lock_dir=str(tmp_path), claim=True)
    assert second['verdict'] == 'refuse' and not second['claimed']
    assert second['recent_failovers'] == [dict(host='compute2', run='run-2', at='2026-11-22T10:15:00Z',
                                               source='claim')]
    assert 'another one would be more than max_failovers 1' in second['reasons'][0]
    # without the claims (lock_dir unset) the gate sees Nova only, as before
    assert guard(cloud, 'compute3', max_failovers=1, max_down_percent=100.0)['verdict'] == 'proceed'
    # the first host's failover again (a rerun): proceeds, claimed by the claim already there, nothing written
    again = guard(cloud, 'compute2', max_failovers=1, max_down_percent=100.0, run_id='run-2b',
                  lock_dir=str(tmp_path), claim=True)
    assert (again['verdict'], again['claimed'], again['changed']) == ('proceed', True, False)
    claims = json.loads((tmp_path / 'failover-claims.json').read_text())
    assert claims == [dict(host='compute2', run='run-2', at='2026-11-22T10:15:00Z')]


def test_a_claim_and_the_marker_of_the_same_host_count_once_and_old_claims_not_at_all(cloud, tmp_path):
    (tmp_path / 'failover-claims.json').write_text(json.dumps([
        dict(host='compute2', run='run-2', at='2026-11-22T10:14:00Z'),
        dict(host='compute3', run='run-3', at='2026-11-22T08:00:00Z')]))
    cloud.service('compute2').update(status='disabled', disabled_reason=marker('run-2', 50))
    result = guard(cloud, max_failovers=2, lock_dir=str(tmp_path))
    assert [(f['host'], f['source']) for f in result['recent_failovers']] == [('compute2', 'nova')]
    assert (result['verdict'], result['claimed'], result['changed']) == ('proceed', False, False)


def test_check_mode_says_it_would_claim_and_writes_nothing(cloud, tmp_path):
    lock_dir = tmp_path / 'not-yet'
    result = guard(cloud, run_id='run-1', lock_dir=str(lock_dir), claim=True, check_mode=True)
    assert (result['verdict'], result['claimed']) == ('proceed', True)
    assert result['claim_path'] == str(lock_dir / 'failover-claims.json')
    assert not lock_dir.exists()


def test_a_refused_failover_claims_nothing(cloud, tmp_path):
    cloud.service('compute2').update(state='down')
    result = guard(cloud, run_id='run-1', lock_dir=str(tmp_path), claim=True)
    assert (result['verdict'], result['claimed'], result['changed']) == ('refuse', False, False)
    assert not (tmp_path / 'failover-claims.json').exists()


def test_damaged_claims_and_claim_without_its_options_are_clear_errors(cloud, tmp_path):
    (tmp_path / 'failover-claims.json').write_text('{"host": "compute2"}')
    with pytest.raises(StormGuardError, match='failover claims .*failover-claims.json are damaged'):
        guard(cloud, lock_dir=str(tmp_path))
    with pytest.raises(StormGuardError, match='claim needs run_id, the run the claim of compute1'):
        guard(cloud, lock_dir=str(tmp_path), claim=True)


def test_claim_without_lock_dir_uses_the_run_locks_directory(cloud, tmp_path, monkeypatch):
    monkeypatch.setenv('OPENSTACK_HA_LOCK_DIR', str(tmp_path / 'locks'))
    result = guard(cloud, run_id='run-1', claim=True)
    assert result['claim_path'] == str(tmp_path / 'locks' / 'failover-claims.json')
    assert json.loads((tmp_path / 'locks' / 'failover-claims.json').read_text())[0]['host'] == 'compute1'


def test_a_claim_of_a_host_back_in_service_stops_counting_after_the_grace(cloud, tmp_path):
    def claims_at(seconds_ago):
        at = (NOW - datetime.timedelta(seconds=seconds_ago)).strftime('%Y-%m-%dT%H:%M:%SZ')
        (tmp_path / 'failover-claims.json').write_text(json.dumps([dict(host='compute2', run='run-2', at=at)]))
        return guard(cloud, max_failovers=1, max_down_percent=100.0, lock_dir=str(tmp_path))['verdict']
    # compute2 is enabled and up: restored, or its failover started on an alert before Nova saw it down
    assert claims_at(CLAIM_GRACE - 10) == 'refuse'
    assert claims_at(CLAIM_GRACE + 10) == 'proceed'
    # still down (its failover has not marked it yet, or failed): the claim counts for the whole window
    cloud.service('compute2').update(state='down')
    assert claims_at(CLAIM_GRACE + 10) == 'refuse'
    assert claims_at(3601) == 'proceed'
