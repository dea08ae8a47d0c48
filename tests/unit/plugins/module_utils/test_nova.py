"""The Nova core (_nova.py) against FakeCloud, faked at the openstacksdk boundary: every branch, every message."""

import datetime
import threading
import time

import pytest
from keystoneauth1 import exceptions as ksa_exceptions
from openstack import exceptions as sdk_exceptions

from ansible_collections.openstack_ha.recovery.plugins.module_utils import _nova
from ansible_collections.openstack_ha.recovery.plugins.module_utils._nova import (
    NovaError,
    compute_services,
    ensure_service,
    evacuation_migrations,
    find_service,
    heartbeat_age,
    host_info,
    host_servers,
    instance_needs,
    pending_evacuations,
    resolve_evacuable,
    service_changes,
)
from ansible_collections.openstack_ha.recovery.plugins.module_utils._openstack import RecoveryError
from ansible_collections.openstack_ha.recovery.tests.unit.plugins.nova_fakes import NOW, FakeCloud

UTC = datetime.timezone.utc
NOW_DT = datetime.datetime(2026, 11, 22, 5, 0, 0, tzinfo=UTC)


@pytest.fixture
def cloud():
    cloud = FakeCloud()
    for host in ('compute1', 'compute2', 'compute3'):
        cloud.add_host(host)
    return cloud


def microversions(cloud):
    return sorted(set((r.service, r.path, r.microversion) for r in cloud.requests))


# ---------------------------------------------------------------------------------------------------------
# the SDK boundary: microversions, errors


def test_every_request_kind_names_its_microversion(cloud):
    server = cloud.add_server('compute1', 'vm-1')
    cloud.add_image('image-1')
    cloud.add_server_group('g', 'anti-affinity', [server['id']])
    host_info(cloud, 'compute1', now=NOW_DT)
    evacuation_migrations(cloud, 'compute1')
    assert microversions(cloud) == sorted(set([
        ('compute', '/os-services', '2.53'),
        ('compute', '/servers/detail', '2.73'),
        ('compute', '/os-aggregates', '2.41'),
        ('compute', '/os-server-groups', '2.64'),
        ('image', '/images/image-1', None),
        ('compute', '/os-hypervisors/detail', '2.53'),
        ('compute', '/os-migrations', '2.59'),
    ] + [('placement', '/resource_providers/%s/%s' % (node, kind), '1.0')
         for host in ('compute2', 'compute3') for node in [_node(cloud, host)] for kind in ('inventories', 'usages')]))


def _node(cloud, host):
    return next(h['id'] for h in cloud.hypervisors if h['service']['host'] == host)


def test_service_update_uses_2_53(cloud):
    ensure_service(cloud, 'compute1', forced_down=True)
    assert [(r.path, r.microversion) for r in cloud.sent('compute', 'PUT')] == [
        ('/os-services/%s' % cloud.service('compute1')['id'], '2.53')]


@pytest.mark.parametrize('pinned', ['2.95', 'latest'])
def test_a_pinned_microversion_new_enough_is_used_for_every_compute_request(cloud, pinned):
    cloud.config.microversions['compute'] = pinned
    cloud.add_server('compute1', 'vm-1')
    host_info(cloud, 'compute1')
    assert set(r.microversion for r in cloud.sent('compute')) == {pinned}
    assert set(r.microversion for r in cloud.sent('placement')) == {'1.0'}


def test_a_pinned_microversion_too_old_is_refused_naming_what_needs_more(cloud):
    cloud.config.microversions['compute'] = '2.60'
    with pytest.raises(NovaError) as caught:
        host_info(cloud, 'compute1')
    assert caught.value.msg == ("compute microversion 2.60 is too old to read servers: it needs 2.73 or later; "
                                "unset compute_microversion (and the cloud's compute default microversion) or raise it")
    assert caught.value.facts['service']['host'] == 'compute1'  # the services were read with 2.60 already


def test_a_pinned_microversion_that_is_no_version_is_refused(cloud):
    cloud.config.microversions['compute'] = 'v2'
    with pytest.raises(NovaError, match=r"^compute microversion 'v2' is not a microversion such as 2.73 "
                                        r"\(or latest\)$"):
        compute_services(cloud)
    assert cloud.requests == []


@pytest.mark.parametrize('exception', [ksa_exceptions.ConnectFailure('Unable to establish connection to '
                                                                     'http://192.0.2.1:8774'),
                                       sdk_exceptions.ServiceDisabledException('compute is disabled')])
def test_unreachable_api_says_what_could_not_be_done(cloud, exception):
    cloud.fail('compute', 'GET', '^/os-services$', exception=exception)
    with pytest.raises(NovaError) as caught:
        compute_services(cloud)
    assert caught.value.msg == ('cannot list the nova-compute services: the compute API is unreachable '
                                '(GET /os-services?binary=nova-compute): %s' % exception)


def test_nova_error_message_is_passed_on(cloud):
    cloud.fail('compute', 'GET', '^/os-services$', status=403,
               body={'forbidden': {'code': 403, 'message': 'Policy doesn\'t allow os_compute_api:os-services:list'}})
    with pytest.raises(NovaError) as caught:
        compute_services(cloud)
    assert caught.value.msg == ("cannot list the nova-compute services: the compute API answered HTTP 403 to GET "
                                "/os-services?binary=nova-compute: "
                                "Policy doesn't allow os_compute_api:os-services:list")


@pytest.mark.parametrize('body, text, shown', [
    ({'errors': [{'status': 503, 'title': 'Service Unavailable', 'detail': 'db down'}, {'title': 'again'}]}, None,
     'db down; again'),
    ({'errors': [{'status': 500}]}, 'fallback text', 'fallback text'),
    ({'message': 'top-level message'}, None, 'top-level message'),
    ({'weird': 'shape'}, None, '{"weird": "shape"}'),
    (None, '<html>Bad Gateway</html>', '<html>Bad Gateway</html>'),
    (None, '', 'no details'),
])
def test_error_details_of_every_shape(cloud, body, text, shown):
    cloud.fail('compute', 'GET', '^/os-services$', status=502, body=body, text=text)
    with pytest.raises(NovaError) as caught:
        compute_services(cloud)
    assert caught.value.msg.endswith('answered HTTP 502 to GET /os-services?binary=nova-compute: %s' % shown)


def test_204_is_an_empty_answer_and_a_200_without_json_is_an_error(cloud):
    cloud.fail('compute', 'GET', '^/os-services$', status=204, times=1)
    assert compute_services(cloud) == []
    cloud.fail('compute', 'GET', '^/os-services$', status=200, text='<html>proxy login</html>')
    with pytest.raises(NovaError, match=r'^cannot list the nova-compute services: the compute API answered GET '
                                        r'/os-services\?binary=nova-compute with something that is not JSON$'):
        compute_services(cloud)


def test_domain_errors_are_recovery_errors():
    assert issubclass(NovaError, RecoveryError)


# ---------------------------------------------------------------------------------------------------------
# services


def test_service_records_have_the_documented_fields(cloud):
    cloud.add_host('compute4', status='disabled', disabled_reason='maintenance', forced_down=True, zone='az2')
    services = compute_services(cloud)
    assert find_service(services, 'compute4') == dict(
        id=cloud.service('compute4')['id'], host='compute4', zone='az2', state='down', status='disabled',
        enabled=False, forced_down=True, disabled_reason='maintenance', updated_at=NOW)
    assert cloud.requests[0].query == dict(binary='nova-compute')


def test_unknown_host_names_it_and_the_known_hosts(cloud):
    with pytest.raises(NovaError) as caught:
        find_service(compute_services(cloud), 'compute9')
    assert caught.value.msg == ("no nova-compute service for host 'compute9'; Nova knows the compute hosts "
                                "compute1, compute2, compute3")


def test_unknown_host_differing_only_in_case_gets_a_hint(cloud):
    with pytest.raises(NovaError) as caught:
        find_service(compute_services(cloud), 'Compute2')
    assert caught.value.msg == ("no nova-compute service for host 'Compute2' (host names are case-sensitive: did you "
                                "mean 'compute2'?); Nova knows the compute hosts compute1, compute2, compute3")


def test_cloud_without_computes():
    with pytest.raises(NovaError) as caught:
        find_service(compute_services(FakeCloud()), 'compute1')
    assert caught.value.msg == "no nova-compute service for host 'compute1'; Nova has no nova-compute service at all"


@pytest.mark.parametrize('updated_at, age', [
    ('2026-11-22T04:59:18.500000', 41.5),
    ('2026-11-22T04:59:18Z', 42.0),
    ('2026-11-22T05:59:18+01:00', 42.0),
    ('2026-11-22T05:00:03.000000', -3.0),  # a clock ahead of ours shows as a negative age
    (None, None),
    ('', None),
    ('yesterday', None),
])
def test_heartbeat_age(updated_at, age):
    assert heartbeat_age(dict(updated_at=updated_at), NOW_DT) == age


def test_utc_now_is_aware():
    assert _nova.utc_now().tzinfo is not None


# ---------------------------------------------------------------------------------------------------------
# migrations


def test_evacuation_migrations_of_a_host_follow_the_pages(cloud):
    cloud.page_size = 2
    for index in range(5):
        cloud.add_migration('instance-%d' % index, 'compute1', 'compute2', 'completed')
    cloud.add_migration('instance-x', 'compute2', 'compute1', 'done')
    cloud.add_migration('instance-y', 'compute1', 'compute3', 'done', migration_type='live-migration')
    migrations = evacuation_migrations(cloud, 'compute1')
    assert sorted(m['instance_uuid'] for m in migrations) == ['instance-%d' % i for i in range(5)]
    assert set(migrations[0]) == {'id', 'instance_uuid', 'status', 'source_compute', 'dest_compute', 'created_at',
                                  'updated_at'}
    queries = [r.query for r in cloud.sent('compute')]
    assert all(q['migration_type'] == 'evacuation' and q['source_compute'] == 'compute1' for q in queries)
    assert len(queries) == 3  # 2 + 2 + 1: the last page is short, so no next link


def test_a_full_last_page_costs_one_more_empty_request(cloud):
    cloud.page_size = 2
    for index in range(4):
        cloud.add_migration('instance-%d' % index, 'compute1', 'compute2', 'completed')
    assert len(evacuation_migrations(cloud, 'compute1')) == 4
    assert len(cloud.sent('compute')) == 3


@pytest.mark.parametrize('status, pending', [('completed', False), ('failed', False), ('error', False),
                                             ('done', True), ('accepted', True), ('pre-migrating', True),
                                             ('running', True), ('something-new', True)])
def test_pending_evacuations_are_those_not_finished(status, pending):
    migration = dict(status=status)
    assert pending_evacuations([migration]) == ([migration] if pending else [])


# ---------------------------------------------------------------------------------------------------------
# nova_service: ordering, idempotency, check mode, refusals


@pytest.mark.parametrize('service, wanted, steps', [
    (dict(enabled=True, forced_down=False, disabled_reason=None), dict(), []),
    (dict(enabled=True, forced_down=False, disabled_reason=None),
     dict(enabled=False, forced_down=True, disabled_reason='fenced'),
     [dict(forced_down=True), dict(status='disabled', disabled_reason='fenced')]),
    (dict(enabled=False, forced_down=True, disabled_reason='fenced'), dict(enabled=True, forced_down=False),
     [dict(forced_down=False), dict(status='enabled')]),
    (dict(enabled=True, forced_down=True, disabled_reason=None), dict(enabled=False, forced_down=False),
     [dict(forced_down=False), dict(status='disabled')]),
    (dict(enabled=False, forced_down=False, disabled_reason='a'), dict(enabled=False, disabled_reason='b'),
     [dict(status='disabled', disabled_reason='b')]),
    (dict(enabled=False, forced_down=False, disabled_reason='a'), dict(enabled=False, disabled_reason='a'), []),
    (dict(enabled=False, forced_down=False, disabled_reason='a'), dict(enabled=False), []),
    (dict(enabled=True, forced_down=False, disabled_reason=None), dict(enabled=True, forced_down=False), []),
    (dict(enabled=True, forced_down=False, disabled_reason=None), dict(forced_down=True, enabled=True),
     [dict(forced_down=True)]),
])
def test_service_changes_send_forced_down_first(service, wanted, steps):
    assert service_changes(service, **wanted) == steps


def test_force_down_and_disable_in_that_order(cloud):
    result = ensure_service(cloud, 'compute1', enabled=False, forced_down=True, disabled_reason='fenced by test')
    assert cloud.puts() == [dict(forced_down=True), dict(status='disabled', disabled_reason='fenced by test')]
    assert result['changed'] is True
    assert result['service']['forced_down'] is True and result['service']['status'] == 'disabled'
    assert result['service']['state'] == 'down'
    assert result['diff'] == dict(before=dict(enabled=True, forced_down=False, disabled_reason=None),
                                  after=dict(enabled=False, forced_down=True, disabled_reason='fenced by test'))
    assert result['pending_evacuations'] == []
    assert cloud.sent('compute', 'GET')[0].path == '/os-services'
    assert not [r for r in cloud.requests if r.path == '/os-migrations']  # not needed to go down
    stored = cloud.service('compute1')
    assert (stored['forced_down'], stored['status'], stored['disabled_reason']) == (True, 'disabled', 'fenced by test')


def test_check_mode_reads_and_predicts_but_sends_nothing(cloud):
    result = ensure_service(cloud, 'compute1', enabled=False, forced_down=True, disabled_reason='x', check_mode=True)
    assert result['changed'] is True
    assert cloud.puts() == []
    assert result['service']['forced_down'] is False and result['service']['enabled'] is True
    assert result['diff']['after'] == dict(enabled=False, forced_down=True, disabled_reason='x')


def test_a_second_identical_run_changes_nothing(cloud):
    ensure_service(cloud, 'compute1', enabled=False, forced_down=True, disabled_reason='x')
    cloud.requests = []
    for check_mode in (True, False):
        result = ensure_service(cloud, 'compute1', enabled=False, forced_down=True, disabled_reason='x',
                                check_mode=check_mode)
        assert result['changed'] is False
        assert result['diff']['before'] == result['diff']['after']
    assert cloud.puts() == []


def test_no_settings_given_only_reports(cloud):
    result = ensure_service(cloud, 'compute2')
    assert result['changed'] is False and result['service']['host'] == 'compute2'
    assert cloud.puts() == []


def test_bringing_back_lifts_forced_down_before_enabling_once_evacuations_finished(cloud):
    cloud.add_host('compute4', status='disabled', disabled_reason='fenced', forced_down=True)
    for status in ('completed', 'failed', 'error'):
        cloud.add_migration('vm-%s' % status, 'compute4', 'compute1', status)
    cloud.add_migration('vm-elsewhere', 'compute2', 'compute1', 'done')  # another host's: irrelevant
    result = ensure_service(cloud, 'compute4', enabled=True, forced_down=False)
    assert cloud.puts() == [dict(forced_down=False), dict(status='enabled')]
    assert result['service']['enabled'] is True and result['service']['forced_down'] is False
    assert result['service']['disabled_reason'] is None
    assert result['diff']['after'] == dict(enabled=True, forced_down=False, disabled_reason=None)
    assert result['pending_evacuations'] == []


def test_refuses_to_lift_forced_down_while_evacuations_are_not_cleaned_up(cloud):
    cloud.add_host('compute4', status='disabled', disabled_reason='fenced', forced_down=True)
    done = cloud.add_migration('11111111-aaaa', 'compute4', 'compute1', 'done')
    accepted = cloud.add_migration('22222222-bbbb', 'compute4', None, 'accepted')
    cloud.add_migration('33333333-cccc', 'compute4', 'compute2', 'completed')
    for check_mode in (True, False):
        with pytest.raises(NovaError) as caught:
            ensure_service(cloud, 'compute4', enabled=True, forced_down=False, check_mode=check_mode)
        assert caught.value.msg == (
            'refusing forced_down=false for compute4: 2 evacuation(s) from compute4 are not cleaned up yet: '
            'instances 22222222-bbbb (accepted, to no host yet), 11111111-aaaa (done, to compute1). Nova keeps a '
            'forced-down host down until its nova-compute has started and removed what the evacuated instances left '
            'there (their migrations then turn completed); lifting forced_down before that risks the same instances '
            'running on two hosts. Power compute4 on (or restart its nova-compute), wait until these migrations are '
            'completed, then run this again.')
        facts = caught.value.facts
        assert facts['service']['host'] == 'compute4' and facts['service']['forced_down'] is True
        assert [m['id'] for m in facts['pending_evacuations']] == [accepted['uuid'], done['uuid']]
    assert cloud.puts() == []  # not even the enable: the host stays as it was


def test_refusal_lists_ten_instances_and_counts_the_rest(cloud):
    cloud.add_host('compute4', forced_down=True)
    for index in range(12):
        cloud.add_migration('vm-%02d' % index, 'compute4', 'compute1', 'done')
    with pytest.raises(NovaError) as caught:
        ensure_service(cloud, 'compute4', forced_down=False)
    assert '12 evacuation(s) from compute4' in caught.value.msg
    assert 'vm-02 (done, to compute1) and 2 more. Nova keeps' in caught.value.msg
    assert 'vm-01' not in caught.value.msg


def test_lifting_forced_down_of_a_service_not_forced_down_reads_no_migrations(cloud):
    cloud.add_migration('vm-1', 'compute1', 'compute2', 'done')
    result = ensure_service(cloud, 'compute1', forced_down=False, enabled=True)
    assert result['changed'] is False
    assert [r.path for r in cloud.requests] == ['/os-services']


def test_nova_refusing_after_our_check_is_reported_with_the_facts(cloud):
    cloud.add_host('compute4', forced_down=True, status='disabled')
    # a migration turning 'done' between our read and our PUT: Nova's own check answers
    cloud.fail('compute', 'GET', '^/os-migrations$', status=200, body={'migrations': []})
    cloud.add_migration('vm-1', 'compute4', 'compute1', 'done')
    with pytest.raises(NovaError) as caught:
        ensure_service(cloud, 'compute4', forced_down=False, enabled=True)
    assert caught.value.msg.startswith(
        'cannot update the nova-compute service of compute4 (forced_down=False): the compute API answered HTTP 400 '
        'to PUT /os-services/%s: Unable to force up host compute4 as `done` evacuation'
        % cloud.service('compute4')['id'])
    assert caught.value.facts['service']['forced_down'] is True
    assert caught.value.facts['service']['enabled'] is False  # the enable was never sent
    assert cloud.puts() == [dict(forced_down=False)]


def test_failure_of_the_second_step_returns_the_state_after_the_first(cloud):
    cloud.fail('compute', 'PUT', '^/os-services/', status=500, body={'computeFault': {'message': 'boom'}})
    cloud.faults[0]['times'] = 0  # armed below, after the first PUT went through
    original = cloud._compute_put

    def put_then_break(path, query, body):
        answer = original(path, query, body)
        cloud.faults[0]['times'] = None  # every later PUT, each try of it included, fails
        return answer
    cloud._compute_put = put_then_break
    with pytest.raises(NovaError) as caught:
        ensure_service(cloud, 'compute1', forced_down=True, enabled=False, disabled_reason='fenced')
    assert caught.value.msg == ('cannot update the nova-compute service of compute1 (disabled_reason=fenced, '
                                'status=disabled): the compute API answered HTTP 500 to PUT /os-services/%s: boom'
                                % cloud.service('compute1')['id'])
    assert caught.value.facts['service']['forced_down'] is True
    assert caught.value.facts['service']['enabled'] is True


@pytest.mark.parametrize('enabled', [None, True])
def test_disabled_reason_needs_enabled_false_and_is_checked_before_any_request(cloud, enabled):
    with pytest.raises(NovaError) as caught:
        ensure_service(cloud, 'compute1', enabled=enabled, disabled_reason='maintenance')
    assert caught.value.msg == ("disabled_reason 'maintenance' for compute1 is the reason of a disabled service: "
                                "give enabled=false with it")
    assert caught.value.facts == dict(service=None, pending_evacuations=[])
    assert cloud.requests == []


def test_disable_without_reason_sends_no_reason(cloud):
    result = ensure_service(cloud, 'compute1', enabled=False)
    assert cloud.puts() == [dict(status='disabled')]
    assert result['service']['disabled_reason'] is None


def test_new_reason_for_a_disabled_service(cloud):
    cloud.add_host('compute4', status='disabled', disabled_reason='old')
    result = ensure_service(cloud, 'compute4', enabled=False, disabled_reason='new')
    assert cloud.puts() == [dict(status='disabled', disabled_reason='new')]
    assert result['diff'] == dict(before=dict(enabled=False, forced_down=False, disabled_reason='old'),
                                  after=dict(enabled=False, forced_down=False, disabled_reason='new'))


def test_unknown_host_fails_with_empty_facts(cloud):
    with pytest.raises(NovaError) as caught:
        ensure_service(cloud, 'compute9', forced_down=True)
    assert caught.value.msg.startswith("no nova-compute service for host 'compute9'")
    assert caught.value.facts == dict(service=None, pending_evacuations=[])


# ---------------------------------------------------------------------------------------------------------
# nova_host_info


def test_instance_needs_as_nova_allocates():
    flavor = dict(vcpus=2, ram=1024, disk=10, ephemeral=5, swap=1536, extra_specs={})
    assert instance_needs(flavor, False) == dict(vcpus=2, memory_mb=1024, disk_gb=17)  # swap 1.5 GiB -> 2
    assert instance_needs(flavor, True) == dict(vcpus=2, memory_mb=1024, disk_gb=7)  # root disk on a volume
    flavor['extra_specs'] = {'resources:VCPU': '0', 'resources:DISK_GB': 'lots', 'resources:MEMORY_MB': '2048'}
    assert instance_needs(flavor, False) == dict(vcpus=0, memory_mb=2048, disk_gb=17)
    assert instance_needs(dict(vcpus=None, ram='', disk='x', swap=''), False) == dict(vcpus=0, memory_mb=0, disk_gb=0)


def aggregate(name, **metadata):
    return dict(name=name, metadata=metadata)


def no_image():
    raise AssertionError('the image must not be read')


@pytest.mark.parametrize('kwargs, expected', [
    (dict(flavor_specs={'evacuable': 'True'}, read_image=no_image), (True, 'flavor')),
    (dict(flavor_specs={'evacuable': 'false'}, read_image=no_image), (False, 'flavor')),
    (dict(flavor_specs={'evacuable': 'maybe'}, read_image=no_image), (False, 'flavor')),
    (dict(read_image=lambda: {'evacuable': 'yes'}), (True, 'image')),
    (dict(read_image=lambda: {'evacuable': '0'}), (False, 'image')),
    (dict(read_image=lambda: None, aggregates=[aggregate('b', evacuable='on'), aggregate('a', evacuable='1')]),
     (True, 'aggregate:a')),
    (dict(read_image=lambda: {}, aggregates=[aggregate('b', evacuable='true'), aggregate('c', evacuable='no')]),
     (False, 'aggregate:c')),
    (dict(read_image=lambda: {'other': 'x'}, aggregates=[aggregate('a', other='true')]), (True, 'default')),
    (dict(read_image=lambda: {}, default=False), (False, 'default')),
    (dict(sources=['aggregate'], flavor_specs={'evacuable': 'false'}, read_image=no_image,
          aggregates=[aggregate('a', evacuable='true')]), (True, 'aggregate:a')),
    (dict(sources=['flavor'], read_image=no_image, aggregates=[aggregate('a', evacuable='true')]), (True, 'default')),
])
def test_evacuable_policy_resolution(kwargs, expected):
    args = dict(tag='evacuable', sources=_nova.EVACUABLE_SOURCES, default=True, flavor_specs={},
                read_image=lambda: None, aggregates=[])
    args.update(kwargs)
    assert resolve_evacuable(**args) == expected


def test_server_metadata_never_decides(cloud):
    cloud.add_server('compute1', 'tenant-says-yes', metadata={'evacuable': 'true'})
    cloud.add_image('image-1')
    info = host_info(cloud, 'compute1', evacuable_default=False)
    assert (info['instances'][0]['evacuable'], info['instances'][0]['evacuable_source']) == (False, 'default')


@pytest.fixture
def busy_cloud(cloud):
    """compute1 in aggregate rack-a (evacuable metadata) with compute2 and compute4 (zone az2); compute3 in nova,
    compute5 disabled, compute6 forced down, compute7 down, compute8 in az2 alone, compute9 in nova with two nodes."""
    cloud.add_host('compute4', zone='az2', usages=dict(VCPU=4, MEMORY_MB=1024, DISK_GB=10))
    cloud.add_host('compute5', status='disabled', disabled_reason='reserved')
    cloud.add_host('compute6', forced_down=True, status='disabled', disabled_reason='fenced')
    cloud.add_host('compute7', state='down')
    cloud.add_host('compute8', zone='az2')
    cloud.add_host('compute9', nodes=2)
    cloud.add_aggregate('rack-a', ['compute1', 'compute2', 'compute4'], metadata=dict(evacuable='true'))
    cloud.add_aggregate('az2', ['compute4', 'compute8'], availability_zone='az2')
    cloud.add_image('image-1', evacuable='false', os_distro='debian')
    cloud.add_image('image-2')
    db = cloud.add_server('compute1', 'db-1', flavor='m1.large', vcpus=4, ram=4096, disk=40, ephemeral=10, swap=512,
                          extra_specs={'evacuable': 'true', 'hw:cpu_policy': 'shared'}, locked=True,
                          locked_reason='being evacuated')
    web = cloud.add_server('compute1', 'web-1', image_id='image-1', status='SHUTOFF', vm_state='stopped')
    vol = cloud.add_server('compute1', 'vol-1', image_id=None, task_state='rebuilding')
    cloud.add_server('compute1', 'app-1', image_id='image-2')
    cloud.add_server('compute1', 'gone-image', image_id='image-deleted')
    cloud.add_server('compute2', 'elsewhere')
    cloud.add_server_group('db', 'anti-affinity', [db['id'], web['id']])
    cloud.add_server_group('web', 'soft-affinity', [web['id']])
    cloud.busy = dict(db=db, web=web, vol=vol)
    return cloud


def by_name(info):
    return dict((i['name'], i) for i in info['instances'])


def test_host_info_reads_everything_about_the_host(busy_cloud):
    cloud = busy_cloud
    info = host_info(cloud, 'compute1', now=NOW_DT + datetime.timedelta(seconds=12.34))
    assert set(info) == set(_nova.HOST_INFO_RESULT_KEYS) | {'changed'}
    assert info['changed'] is False and info['host'] == 'compute1'
    assert info['service']['heartbeat_age'] == 12.3
    assert info['service']['state'] == 'up' and info['availability_zone'] == 'nova'
    assert [a['name'] for a in info['aggregates']] == ['rack-a']
    assert info['aggregates'][0]['hosts'] == ['compute1', 'compute2', 'compute4']

    instances = by_name(info)
    assert list(instances) == ['app-1', 'db-1', 'gone-image', 'vol-1', 'web-1']  # sorted by name
    db = instances['db-1']
    assert db == dict(
        id=cloud.busy['db']['id'], name='db-1', project_id=cloud.busy['db']['tenant_id'], status='ACTIVE',
        vm_state='active', task_state=None,
        flavor=dict(name='m1.large', vcpus=4, ram=4096, disk=40, ephemeral=10, swap=512,
                    extra_specs={'evacuable': 'true', 'hw:cpu_policy': 'shared'}),
        image_id='image-1', boot_from_volume=False, locked=True, locked_reason='being evacuated',
        server_groups=[dict(id=cloud.server_groups[0]['id'], name='db', policy='anti-affinity')],
        evacuable=True, evacuable_source='flavor', needs=dict(vcpus=4, memory_mb=4096, disk_gb=51))
    web = instances['web-1']
    assert (web['status'], web['vm_state'], web['evacuable'], web['evacuable_source']) == (
        'SHUTOFF', 'stopped', False, 'image')
    assert [g['name'] for g in web['server_groups']] == ['db', 'web']
    vol = instances['vol-1']
    assert (vol['image_id'], vol['boot_from_volume'], vol['task_state']) == (None, True, 'rebuilding')
    assert vol['needs'] == dict(vcpus=2, memory_mb=512, disk_gb=0)
    assert (vol['evacuable'], vol['evacuable_source']) == (True, 'aggregate:rack-a')
    assert (instances['app-1']['evacuable'], instances['app-1']['evacuable_source']) == (True, 'aggregate:rack-a')
    assert instances['gone-image']['evacuable_source'] == 'aggregate:rack-a'  # a deleted image sets nothing
    assert instances['app-1']['server_groups'] == []

    # each image read once at most, and not for db-1 whose flavor decides
    assert sorted(r.path for r in cloud.sent('image')) == ['/images/image-1', '/images/image-2',
                                                           '/images/image-deleted']


def test_capacity_counts_usable_hosts_of_the_zone_and_the_aggregates(busy_cloud):
    info = host_info(busy_cloud, 'compute1', now=NOW_DT)
    capacity = info['capacity']
    # compute2 (zone, rack-a), compute3 (zone), compute4 (rack-a, other zone, with usage), compute9 (zone, 2 nodes)
    default_free = dict(vcpus=64, memory_mb=32256, disk_gb=100)
    assert capacity['hosts'] == [
        dict(host='compute2', free=default_free),
        dict(host='compute3', free=default_free),
        dict(host='compute4', free=dict(vcpus=60, memory_mb=31232, disk_gb=90)),
        dict(host='compute9', free=dict(vcpus=128, memory_mb=64512, disk_gb=200)),
    ]
    assert capacity['excluded_hosts'] == [
        dict(host='compute5', reason='disabled', disabled_reason='reserved'),
        dict(host='compute6', reason='forced down', disabled_reason='fenced'),
        dict(host='compute7', reason='down', disabled_reason=None),
    ]  # compute8: other zone, no shared aggregate: not in scope at all
    assert capacity['needed'] == dict(vcpus=12, memory_mb=6144, disk_gb=54)
    # web-1 (image says no) is the only one not evacuable
    assert capacity['needed_evacuable'] == dict(vcpus=10, memory_mb=5632, disk_gb=53)
    assert capacity['free'] == dict(vcpus=316, memory_mb=160256, disk_gb=490)
    assert capacity['shortfall'] == capacity['shortfall_evacuable'] == dict(vcpus=0, memory_mb=0, disk_gb=0)
    assert capacity['sufficient'] is True and capacity['sufficient_evacuable'] is True
    placement = [r.path for r in busy_cloud.sent('placement')]
    assert len(placement) == 2 * 5  # two reads per node of the counted hosts, none for excluded ones


def test_capacity_shortfall():
    tight = dict(VCPU=dict(total=4, reserved=1, allocation_ratio=1.0), MEMORY_MB=dict(total=2048, reserved=0,
                                                                                      allocation_ratio=1.5))
    cloud = FakeCloud()
    cloud.add_host('compute1')
    cloud.add_host('compute2', inventories=tight, usages=dict(VCPU=1, MEMORY_MB=1000))
    cloud.add_server('compute1', 'big', vcpus=4, ram=4096, disk=20, extra_specs={'evacuable': 'no'})
    cloud.add_server('compute1', 'small', vcpus=1, ram=1024, disk=1)
    cloud.add_image('image-1')
    capacity = host_info(cloud, 'compute1')['capacity']
    assert capacity['free'] == dict(vcpus=2, memory_mb=2072, disk_gb=0)  # no DISK_GB inventory: nothing free
    assert capacity['shortfall'] == dict(vcpus=3, memory_mb=3048, disk_gb=21)
    assert capacity['shortfall_evacuable'] == dict(vcpus=0, memory_mb=0, disk_gb=1)
    assert (capacity['sufficient'], capacity['sufficient_evacuable']) == (False, False)


def test_no_usable_host_reads_no_placement():
    cloud = FakeCloud()
    cloud.add_host('compute1')
    cloud.add_host('compute2', status='disabled')
    cloud.add_server('compute1', 'vm', extra_specs={'evacuable': 'true'})
    capacity = host_info(cloud, 'compute1')['capacity']
    assert capacity['hosts'] == [] and capacity['free'] == dict(vcpus=0, memory_mb=0, disk_gb=0)
    assert capacity['sufficient'] is False
    assert cloud.sent('placement') == []


def test_a_usable_host_without_hypervisor_record_has_nothing_free(cloud):
    cloud.hypervisors = [h for h in cloud.hypervisors if h['service']['host'] != 'compute3']
    capacity = host_info(cloud, 'compute1')['capacity']
    assert capacity['hosts'][1] == dict(host='compute3', free=dict(vcpus=0, memory_mb=0, disk_gb=0))


def test_host_without_instances_gives_empty_lists_and_skips_per_instance_reads(cloud):
    info = host_info(cloud, 'compute2', now=NOW_DT)
    assert info['instances'] == [] and info['aggregates'] == []
    assert info['capacity']['needed'] == dict(vcpus=0, memory_mb=0, disk_gb=0)
    assert info['capacity']['sufficient'] is True
    assert cloud.sent('image') == []


def test_unknown_host_fails_naming_it_with_empty_facts(cloud):
    with pytest.raises(NovaError) as caught:
        host_info(cloud, 'compute9')
    assert caught.value.msg.startswith("no nova-compute service for host 'compute9'; Nova knows")
    assert caught.value.facts == dict(host='compute9', service=None, instances=[], aggregates=[],
                                      availability_zone=None, capacity=None, waited=0.0)


def test_failure_midway_returns_what_was_read(busy_cloud):
    busy_cloud.fail('placement', 'GET', 'usages$', status=503, body={'errors': [{'detail': 'placement is down'}]})
    with pytest.raises(NovaError) as caught:
        host_info(busy_cloud, 'compute1')
    assert caught.value.msg == ('cannot read the Placement usages of compute2: the placement API answered HTTP 503 to '
                                'GET /resource_providers/%s/usages: placement is down' % _node(busy_cloud, 'compute2'))
    facts = caught.value.facts
    assert facts['service']['host'] == 'compute1' and len(facts['instances']) == 5
    assert facts['capacity'] is None and facts['availability_zone'] == 'nova'


def test_image_sources_can_be_left_out_and_default_turned_off(busy_cloud):
    info = host_info(busy_cloud, 'compute1', evacuable_sources=['flavor'], evacuable_default=False)
    assert busy_cloud.sent('image') == []
    instances = by_name(info)
    assert [(n, i['evacuable'], i['evacuable_source']) for n, i in sorted(instances.items())] == [
        ('app-1', False, 'default'), ('db-1', True, 'flavor'), ('gone-image', False, 'default'),
        ('vol-1', False, 'default'), ('web-1', False, 'default')]


def test_another_tag_name(busy_cloud):
    busy_cloud.add_image('image-2', ha='true')
    info = host_info(busy_cloud, 'compute1', evacuable_tag='ha', evacuable_default=False)
    assert [n for n, i in sorted(by_name(info).items()) if i['evacuable']] == ['app-1']


def test_long_lists_are_read_page_by_page(cloud):
    cloud.page_size = 2
    for index in range(5):
        cloud.add_server('compute1', 'vm-%d' % index)
    groups = [cloud.add_server_group('g%d' % index, 'affinity', []) for index in range(3)]
    groups[2]['members'].append(cloud.servers[4]['id'])
    cloud.add_image('image-1')
    info = host_info(cloud, 'compute1')
    assert [i['name'] for i in info['instances']] == ['vm-%d' % i for i in range(5)]
    assert [g['name'] for g in by_name(info)['vm-4']['server_groups']] == ['g2']
    assert [r.query.get('marker') for r in cloud.requests if r.path == '/servers/detail'] == [
        None, cloud.servers[1]['id'], cloud.servers[3]['id']]
    assert [r.query.get('offset') for r in cloud.requests if r.path == '/os-server-groups'] == [None, '2', '3']
    assert len(info['capacity']['hosts']) == 2  # hypervisors over two pages as well
    assert [r.query.get('marker') for r in cloud.requests if r.path == '/os-hypervisors/detail'] == [
        None, cloud.hypervisors[1]['id']]


def test_server_groups_paging_stops_on_a_page_with_nothing_new(cloud):
    cloud.add_server('compute1', 'vm')
    cloud.add_server_group('g', 'affinity', [])
    original = cloud._compute_get

    def ignoring_offset(path, query, body):
        query.pop('offset', None)  # a Nova that ignores offset must not loop forever
        return original(path, query, body)
    cloud._compute_get = ignoring_offset
    host_info(cloud, 'compute1', evacuable_sources=['flavor'])
    assert len([r for r in cloud.requests if r.path == '/os-server-groups']) == 2


def test_host_servers_lists_all_projects_of_the_host(cloud):
    cloud.add_server('compute1', 'a', project_id='p1')
    cloud.add_server('compute1', 'b', project_id='p2')
    cloud.add_server('compute2', 'c')
    assert sorted(s['name'] for s in host_servers(cloud, 'compute1')) == ['a', 'b']
    assert cloud.requests[0].query == dict(all_tenants='True', host='compute1')


def test_a_hypervisor_without_service_is_ignored(cloud):
    cloud.hypervisors.append(dict(id='orphan-node', hypervisor_hostname='orphan', service=None))
    assert _nova.hypervisor_nodes(cloud) == dict((h, [_node(cloud, h)]) for h in ('compute1', 'compute2', 'compute3'))


def test_without_openstacksdk_the_core_still_imports(monkeypatch):
    import importlib.util
    import sys
    monkeypatch.setitem(sys.modules, 'keystoneauth1', None)
    spec = importlib.util.spec_from_file_location('_nova_without_sdk', _nova.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.TRANSPORT_ERRORS == ()


@pytest.mark.parametrize('reason, reserved', [
    ('reserved', True), ('reserved: spare for rack 4', True), ('reserved for the next failover', True),
    ('reservedx', False), ('Reserved', False), (' reserved', False), ('maintenance', False), ('', False),
    (None, False), ('openstack_ha:failover run=20261122T101500Z-compute1-4711 at=2026-11-22T10:15:00Z', False),
])
def test_reserved_reasons(reason, reserved):
    assert _nova.is_reserved_reason(reason) is reserved


def test_neighbour_services_share_the_zone_or_an_aggregate(cloud):
    cloud.add_host('compute4', zone='az2')
    cloud.add_host('compute5', zone='az2')
    cloud.add_aggregate('rack', ['compute1', 'compute5'])
    services = compute_services(cloud)
    aggregates = _nova.list_aggregates(cloud)
    assert [s['host'] for s in _nova.neighbour_services('compute1', 'nova', services, aggregates)] == [
        'compute2', 'compute3', 'compute5']


# --- transient failures: an idempotent request is sent again ---------------------------------------------------

@pytest.mark.parametrize('status', [500, 502, 503, 504])
def test_a_read_answered_by_a_restarting_api_is_sent_again_until_it_answers(cloud, retry_pauses, status):
    cloud.fail('compute', 'GET', '^/os-services$', status=status, text='restarting', times=3)
    assert [s['host'] for s in compute_services(cloud)] == sorted(s['host'] for s in cloud.services)
    assert len(cloud.sent('compute', 'GET')) == 4
    assert retry_pauses == [0.5, 1, 2]


def test_a_read_that_gets_no_answer_is_sent_again(cloud, retry_pauses):
    cloud.fail('compute', 'GET', '^/os-services$', exception=ksa_exceptions.ConnectFailure('refused'), times=2)
    assert len(compute_services(cloud)) == len(cloud.services)
    assert len(cloud.sent('compute', 'GET')) == 3 and retry_pauses == [0.5, 1]


def test_a_read_fails_once_every_pause_is_spent(cloud, retry_pauses):
    cloud.fail('compute', 'GET', '^/os-services$', status=503, text='still restarting')
    with pytest.raises(NovaError) as caught:
        compute_services(cloud)
    assert caught.value.msg == ('cannot list the nova-compute services: the compute API answered HTTP 503 to GET '
                                '/os-services?binary=nova-compute: still restarting')
    assert len(cloud.sent('compute', 'GET')) == len(_nova.RETRY_DELAYS) + 1
    assert retry_pauses == list(_nova.RETRY_DELAYS) and sum(retry_pauses) == 31.5


@pytest.mark.parametrize('fault', [dict(status=400, text='bad'), dict(status=404, text='gone'),
                                   dict(exception=sdk_exceptions.ServiceDisabledException('compute is disabled'))])
def test_a_final_answer_is_never_sent_again(cloud, retry_pauses, fault):
    cloud.fail('compute', 'GET', '^/os-services$', **fault)
    with pytest.raises(NovaError):
        compute_services(cloud)
    assert len(cloud.sent('compute', 'GET')) == 1 and retry_pauses == []


def test_only_idempotent_requests_are_sent_again(retry_pauses):
    answers = []

    class Proxy:
        def post(self, url, microversion=None, json=None):
            answers.append(url)
            return type('Answer', (), dict(status_code=503))()

    conn = type('Conn', (), dict(compute=Proxy()))()
    assert _nova._send(conn, 'compute', 'post', '/servers/x/action', '2.94', {'evacuate': {}}).status_code == 503
    assert len(answers) == 1 and retry_pauses == []
    assert _nova._send(conn, 'compute', 'post', '/servers/x/action', '2.73', {'unlock': None},
                       idempotent=True).status_code == 503
    assert len(answers) == 1 + 1 + len(_nova.RETRY_DELAYS)


# ---------------------------------------------------------------------------------------------------------
# reads at once


def test_host_info_sends_its_lists_at_once_and_each_once(cloud):
    gate = threading.Barrier(4, timeout=5)
    original = cloud.request

    def meet(service, method, url, microversion, body):
        # the four lists after the service list wait for each other: they pass only if sent at once
        if any(url.startswith(p) for p in ('/servers/detail', '/os-aggregates', '/os-server-groups',
                                           '/os-hypervisors/detail')):
            gate.wait()
        return original(service, method, url, microversion, body)
    cloud.request = meet
    info = host_info(cloud, 'compute1')
    assert info['capacity']['hosts'] and not gate.broken
    paths = [r.path for r in cloud.requests if r.service == 'compute']
    assert paths[0] == '/os-services' and sorted(paths[1:]) == sorted(
        ['/servers/detail', '/os-aggregates', '/os-server-groups', '/os-hypervisors/detail'])
    # two Placement reads per provider of the usable hosts, once each
    providers = [h['id'] for h in cloud.hypervisors if h['service']['host'] in ('compute2', 'compute3')]
    assert sorted(r.path for r in cloud.sent('placement')) == sorted(
        '/resource_providers/%s/%s' % (p, kind) for p in providers for kind in ('inventories', 'usages'))


def test_read_concurrently_keeps_the_order_and_raises_the_first_failure_after_all_ended():
    touched = []

    class Conn:
        @property
        def placement(self):
            touched.append(threading.current_thread().name)
            return 'proxy'
    ended = []

    def slow(value):
        time.sleep(0.05)
        ended.append(value)
        return value

    def fail(msg):
        raise NovaError(msg)
    assert _nova.read_concurrently(Conn(), [lambda: slow(1), lambda: 2, lambda: slow(3)], ('placement',)) == [1, 2, 3]
    assert touched == [threading.current_thread().name]  # the proxy made before the threads
    ended.clear()
    with pytest.raises(NovaError) as caught:
        _nova.read_concurrently(Conn(), [lambda: slow('a'), lambda: fail('first'), lambda: fail('second'),
                                         lambda: slow('b')])
    assert caught.value.msg == 'first' and sorted(ended) == ['a', 'b']
    assert _nova.read_concurrently(Conn(), []) == [] and _nova.read_concurrently(Conn(), [lambda: 7]) == [7]


def test_capacity_reads_fail_naming_the_host(cloud):
    cloud.fail('placement', 'GET', '/usages$', status=403)
    with pytest.raises(NovaError) as caught:
        host_info(cloud, 'compute1')
    assert caught.value.msg.startswith('cannot read the Placement usages of compute2: the placement API answered '
                                       'HTTP 403')


# ---------------------------------------------------------------------------------------------------------
# host_info's wait for Nova to see the host down


class WaitClock:
    """A clock that a sleep moves forward; `on_read` is called with the number of service reads so far."""

    def __init__(self, cloud, down_after_reads=None):
        self.now, self.sleeps, self.cloud, self.down_after = 100.0, [], cloud, down_after_reads

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds
        reads = len([r for r in self.cloud.requests if r.path == '/os-services'])
        if self.down_after is not None and reads >= self.down_after:
            self.cloud.service('compute1')['state'] = 'down'


def service_reads(cloud):
    return len([r for r in cloud.requests if r.path == '/os-services'])


def test_wait_down_reads_the_service_again_until_nova_sees_it_down_then_reads_the_rest_once(cloud):
    cloud.add_server('compute1', 'vm-1')
    clock = WaitClock(cloud, down_after_reads=3)
    info = host_info(cloud, 'compute1', wait_down=60, wait_interval=2, clock=clock, sleep=clock.sleep, now=NOW_DT)
    assert info['service']['state'] == 'down'
    assert service_reads(cloud) == 4 and clock.sleeps == [2, 2, 2]
    assert info['waited'] == 6.0
    assert [i['name'] for i in info['instances']] == ['vm-1']
    assert len([r for r in cloud.requests if r.path == '/servers/detail']) == 1  # after the wait, once


def test_wait_down_gives_up_within_its_time_and_returns_the_service_as_nova_still_sees_it(cloud):
    clock = WaitClock(cloud)
    info = host_info(cloud, 'compute1', wait_down=7, wait_interval=2, clock=clock, sleep=clock.sleep)
    assert info['service']['state'] == 'up'
    assert clock.sleeps == [2, 2, 2] and info['waited'] == 6.0  # a fourth sleep would end after 7 s


def test_no_wait_for_a_host_nova_sees_down_or_without_wait_down(cloud):
    cloud.service('compute1')['state'] = 'down'
    clock = WaitClock(cloud)
    assert host_info(cloud, 'compute1', wait_down=60, clock=clock, sleep=clock.sleep)['waited'] == 0.0
    cloud.service('compute1')['state'] = 'up'
    assert host_info(cloud, 'compute1', clock=clock, sleep=clock.sleep)['waited'] == 0.0
    assert clock.sleeps == [] and service_reads(cloud) == 2


@pytest.mark.parametrize('kwargs', [dict(wait_down=-1), dict(wait_down=10, wait_interval=0)])
def test_a_negative_wait_or_no_interval_is_refused_naming_the_host(cloud, kwargs):
    with pytest.raises(NovaError) as caught:
        host_info(cloud, 'compute1', **kwargs)
    assert 'host compute1: wait_down' in caught.value.msg and cloud.requests == []
