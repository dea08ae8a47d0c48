"""bmc_ping's edge: arguments in, results and failures out, against a UDP responder on 127.0.0.1."""

import socket

import pytest

from ansible_collections.openstack_ha.recovery.plugins.modules import bmc_ping
from ansible_collections.openstack_ha.recovery.tests.unit.plugins.module_utils.test_bmc_ping import UdpBmc


@pytest.fixture
def bmcs():
    answering, silent = UdpBmc(), UdpBmc(['drop'] * 10)
    yield answering, silent
    answering.close()
    silent.close()


def targets(bmcs):
    answering, silent = bmcs
    return [dict(name='compute1', address='127.0.0.1', port=answering.port),
            dict(name='compute2', address='127.0.0.1', port=silent.port)]


@pytest.mark.parametrize('check_mode', [False, True])
def test_returns_exactly_the_documented_keys_and_never_changes(bmcs, run_module, check_mode):
    outcome = run_module(bmc_ping.main, dict(targets=targets(bmcs), timeout=0.1, retries=0), check_mode=check_mode)
    assert not outcome.failed
    assert set(outcome.result) == set(bmc_ping.RETURNED_KEYS) | {'changed'}
    assert outcome.result['changed'] is False
    assert [t['reachable'] for t in outcome.result['targets']] == [True, False]
    assert (outcome.result['reachable_percent'], outcome.result['below_minimum']) == (50.0, False)


def test_below_the_minimum_is_reported_without_failing_by_default(bmcs, run_module):
    outcome = run_module(bmc_ping.main, dict(targets=targets(bmcs), timeout=0.1, retries=0,
                                             min_reachable_percent=75))
    assert not outcome.failed and outcome.result['below_minimum'] is True


def test_below_the_minimum_fails_when_asked_naming_the_unreachable(bmcs, run_module):
    outcome = run_module(bmc_ping.main, dict(targets=targets(bmcs), timeout=0.1, retries=0,
                                             min_reachable_percent=75, fail_on_below=True))
    assert outcome.failed
    assert set(outcome.result) == set(bmc_ping.RETURNED_KEYS) | {'msg'}
    assert outcome.result['msg'].startswith('this controller reaches only 1 of 2 BMCs (50.0%), below '
                                            'min_reachable_percent 75.0%')
    assert 'Unreachable: compute2 (no answer' in outcome.result['msg']


def test_no_targets_give_zeros_even_with_a_minimum(run_module):
    outcome = run_module(bmc_ping.main, dict(min_reachable_percent=50, fail_on_below=True))
    assert not outcome.failed
    assert (outcome.result['total'], outcome.result['reachable_percent'], outcome.result['targets']) == (0, 0.0, [])


def test_a_bad_target_fails_naming_it_with_the_documented_keys(run_module):
    outcome = run_module(bmc_ping.main, dict(targets=[dict(name='compute1', address='127.0.0.1', port=99999)]))
    assert outcome.failed
    assert outcome.result['msg'] == 'target 0 (compute1): port must be 1-65535, got 99999'
    assert set(outcome.result) == set(bmc_ping.RETURNED_KEYS) | {'msg'}


def test_credentials_are_no_option(run_module):
    outcome = run_module(bmc_ping.main, dict(targets=[dict(address='127.0.0.1', password='x')]))
    assert outcome.failed and 'password' in outcome.result['msg']


def test_the_default_port_is_623(run_module, monkeypatch):
    sent = []

    def resolve(address, port, *args):
        sent.append((address, port))
        raise socket.gaierror(-2, 'Name or service not known')
    monkeypatch.setattr(socket, 'getaddrinfo', resolve)
    outcome = run_module(bmc_ping.main, dict(targets=[dict(address='bmc.invalid')]))
    assert sent == [('bmc.invalid', 623)]
    assert outcome.result['targets'][0]['error'].startswith('cannot resolve bmc.invalid')
