"""nova_service against the real lab, run through the ansible CLI; every outcome read back from Nova itself.

Each state change follows check mode (changed, Nova unchanged) -> apply (changed, Nova changed) -> check rerun
(not changed) -> rerun (not changed).
"""

from helpers_nova import provider_traits, run_module, service_settings
from lab_helpers import evacuation_migrations, ipmitool, labctl, wait_for

# Microversion 2.95 and later land evacuated servers STOPPED; 2.94 keeps them running.
EVACUATE_MICROVERSION = '2.94'
REASON = 'fenced by the nova_service integration test'


def assert_four_step_sequence(lab, conn, host, before, after, **options):
    """check -> apply -> check -> rerun, with Nova read after each step. Returns the apply run."""
    check = run_module(lab, 'nova_service', check=True, diff=True, host=host, **options)
    assert not check.failed, check
    assert check['changed'] is True
    assert '--- before' in check.output and '+++ after' in check.output
    assert dict((k, service_settings(conn, host)[k]) for k in before) == before, 'check mode changed Nova'

    apply = run_module(lab, 'nova_service', host=host, **options)
    assert not apply.failed, apply
    assert apply['changed'] is True
    assert dict((k, service_settings(conn, host)[k]) for k in after) == after
    assert dict((k, apply['service'][k]) for k in after if k != 'state') == dict(
        (k, v) for k, v in after.items() if k != 'state')

    for check_mode in (True, False):
        again = run_module(lab, 'nova_service', check=check_mode, host=host, **options)
        assert not again.failed, again
        assert again['changed'] is False, again
    assert dict((k, service_settings(conn, host)[k]) for k in after) == after
    return apply


def test_crashed_host_forced_down_then_disabled_without_waiting_for_it(fresh_lab, conn):
    host = 'compute2'
    options = dict(forced_down=True, enabled=False, disabled_reason=REASON)
    up = dict(enabled=True, forced_down=False, disabled_reason=None, state='up')
    check = run_module(fresh_lab, 'nova_service', check=True, diff=True, host=host, **options)
    assert check['changed'] is True and not check.failed
    assert check['service']['forced_down'] is False  # check mode shows the service as read
    assert service_settings(conn, host) == up

    labctl('crash', host)
    # For service_down_time after its last heartbeat Nova still believes the host up, and a disable sent first
    # would make nova-api call the dead compute and wait for the RPC timeout (60 s) before answering. The module
    # runs at once, so its requests normally land inside that window (the unit tests pin the order itself).
    seen_before = service_settings(conn, host)['state']
    apply = run_module(fresh_lab, 'nova_service', host=host, **options)
    assert not apply.failed, apply
    assert apply['changed'] is True
    assert apply.seconds < 30, 'force down + disable of a host Nova saw %s took %.1f s: was the disable sent first?' % (
        seen_before, apply.seconds)
    assert service_settings(conn, host) == dict(enabled=False, forced_down=True, disabled_reason=REASON,
                                                state='down')
    assert apply['service']['state'] == 'down' and apply['service']['status'] == 'disabled'
    for check_mode in (True, False):
        again = run_module(fresh_lab, 'nova_service', check=check_mode, host=host, **options)
        assert again['changed'] is False and not again.failed, again


def test_alive_host_disabled_forced_down_and_brought_back(fresh_lab, conn):
    host = 'compute3'
    # disable an alive host (maintenance): Nova calls its compute, which sets COMPUTE_STATUS_DISABLED at once
    assert_four_step_sequence(
        fresh_lab, conn, host,
        before=dict(enabled=True, forced_down=False, disabled_reason=None),
        after=dict(enabled=False, forced_down=False, disabled_reason='maintenance', state='up'),
        enabled=False, disabled_reason='maintenance')
    wait_for('COMPUTE_STATUS_DISABLED on %s' % host, lambda: 'COMPUTE_STATUS_DISABLED' in provider_traits(conn, host),
             10, interval=0.2)

    # force it down, leaving the disabled state and its reason alone
    down = run_module(fresh_lab, 'nova_service', host=host, forced_down=True)
    assert down['changed'] is True and not down.failed, down
    assert service_settings(conn, host) == dict(enabled=False, forced_down=True, disabled_reason='maintenance',
                                                state='down')

    # Coming back, forced_down is lifted first, so the enable reaches the live compute, which drops the trait at
    # once; an enable sent while still forced down leaves it until the compute's next periodic update (~60 s).
    apply = assert_four_step_sequence(
        fresh_lab, conn, host,
        before=dict(enabled=False, forced_down=True, disabled_reason='maintenance'),
        after=dict(enabled=True, forced_down=False, disabled_reason=None, state='up'),
        forced_down=False, enabled=True)
    assert apply['pending_evacuations'] == []
    wait_for('COMPUTE_STATUS_DISABLED gone from %s' % host,
             lambda: 'COMPUTE_STATUS_DISABLED' not in provider_traits(conn, host), 10, interval=0.2)


def test_refuses_to_lift_forced_down_until_the_host_cleaned_up_its_evacuations(fresh_lab, conn):
    host = 'compute1'
    booted = labctl('boot', '--count', '2', '--host', host)['servers']
    moved, stayed = booted[0]['id'], booted[1]['id']
    labctl('crash', host)
    down = run_module(fresh_lab, 'nova_service', host=host, forced_down=True, enabled=False, disabled_reason=REASON)
    assert down['changed'] is True and not down.failed, down

    response = conn.compute.post('/servers/%s/action' % moved, json={'evacuate': {}},
                                 microversion=EVACUATE_MICROVERSION)
    assert response.status_code == 200, response.text
    wait_for('the evacuation of %s done' % moved,
             lambda: [m['status'] for m in evacuation_migrations(conn, host)
                      if m['instance_uuid'] == moved] == ['done'], 120)
    wait_for('%s ACTIVE on another host' % moved, lambda: conn.compute.get_server(moved).status == 'ACTIVE'
             and conn.compute.get_server(moved).compute_host != host, 120)

    back = dict(forced_down=False, enabled=True)
    for check_mode in (True, False):
        refused = run_module(fresh_lab, 'nova_service', check=check_mode, host=host, **back)
        assert refused.failed, refused
        msg = refused['msg']
        assert msg.startswith('refusing forced_down=false for %s: 1 evacuation(s) from %s are not cleaned up yet'
                              % (host, host)), msg
        assert moved in msg and '(done, to compute' in msg and stayed not in msg
        assert 'Power %s on' % host in msg
        assert [m['instance_uuid'] for m in refused['pending_evacuations']] == [moved]
        assert refused['service']['forced_down'] is True
        # nothing was sent: still forced down AND still disabled
        assert service_settings(conn, host) == dict(enabled=False, forced_down=True, disabled_reason=REASON,
                                                    state='down')

    # The operator powers the host on through its BMC (power is still on after a crash: off, then on); its
    # nova-compute starts, removes the evacuated instance's leftovers and completes the migration.
    bmc = fresh_lab['hosts'][host]
    ipmitool(bmc, 'power', 'off')
    ipmitool(bmc, 'power', 'on')
    wait_for('the evacuation of %s completed' % moved,
             lambda: [m['status'] for m in evacuation_migrations(conn, host)
                      if m['instance_uuid'] == moved] == ['completed'], 120)

    apply = run_module(fresh_lab, 'nova_service', host=host, diff=True, **back)
    assert not apply.failed, apply
    assert apply['changed'] is True and apply['pending_evacuations'] == []
    wait_for('%s up' % host, lambda: service_settings(conn, host)['state'] == 'up', 60)
    assert service_settings(conn, host) == dict(enabled=True, forced_down=False, disabled_reason=None, state='up')
    for check_mode in (True, False):
        again = run_module(fresh_lab, 'nova_service', check=check_mode, host=host, **back)
        assert again['changed'] is False and not again.failed, again


def test_unknown_host_fails_naming_it(lab, conn):
    run = run_module(lab, 'nova_service', host='compute-nowhere', forced_down=True)
    assert run.failed
    assert run['msg'].startswith("no nova-compute service for host 'compute-nowhere'; Nova knows the compute hosts ")
    assert 'compute1' in run['msg']
    assert run['service'] is None
