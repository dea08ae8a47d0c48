"""Nova's API failing while a host is failed over: 503s and 500s from the first evacuation request on, and slow
answers for the whole run, injected by a proxy in front of nova-api (nova_proxy.py). The runbook must ride them
out: every instance recovered exactly once, the report true to Nova.
"""

import pytest

from fault_lab import report_of
from nova_proxy import is_evacuate

pytestmark = pytest.mark.timeout(1200, func_only=True)


def test_nova_api_503_for_5s_from_the_first_evacuation(scenario):
    scenario.prepare('compute1', servers=4, stopped=1)
    proxy, env = scenario.proxied_env()
    proxy.arm(trigger=is_evacuate, fail_for=5.0, status=503)
    run = scenario.failover(env=env)
    assert proxy.injected(), 'the fault never fired'
    scenario.check(report_of(run))
    assert run.rc == 0, run.output[-3000:]


def test_nova_api_500_on_the_next_6_requests_from_the_first_evacuation(scenario):
    scenario.prepare('compute2', servers=4)
    proxy, env = scenario.proxied_env()
    proxy.arm(trigger=is_evacuate, fail_next=6, status=500)
    run = scenario.failover(env=env)
    assert len(proxy.injected()) == 6
    scenario.check(report_of(run))
    assert run.rc == 0, run.output[-3000:]


def test_nova_api_slow_answers(scenario):
    scenario.prepare('compute3', servers=3)
    proxy, env = scenario.proxied_env()
    proxy.latency = 1.0
    run = scenario.failover(env=env)
    scenario.check(report_of(run))
    assert run.rc == 0, run.output[-3000:]
