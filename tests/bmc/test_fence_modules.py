"""ipmi_fence and redfish_fence against a simulated BMC over the real protocols (IPMI lanplus on UDP, Redfish on
HTTP), run as a user runs them: by FQCN through the ansible CLI. Each state-changing run follows check mode
(changed, nothing changed on the BMC) -> apply (changed) -> check rerun (not changed) -> rerun (not changed),
and every step is confirmed on the BMC by ipmitool or plain HTTP, and on the host process itself.
"""

import json
import subprocess
import sys

import pytest


pytestmark = pytest.mark.timeout(120)


def ipmi_args(bmc, **extra):
    return dict(dict(address='127.0.0.1', port=bmc.ipmi_port, username=bmc.username, password=bmc.password,
                     poll_interval=0.05), **extra)


def redfish_args(bmc, **extra):
    return dict(dict(address=bmc.redfish_url, username=bmc.username, password=bmc.password, poll_interval=0.05),
                **extra)


MODULES = {
    'ipmi_fence': (ipmi_args, lambda bmc: bmc.ipmitool_power(), ('on', 'off'), 'ipmi'),
    'redfish_fence': (redfish_args, lambda bmc: bmc.http_power(), ('On', 'Off'), 'redfish'),
}


@pytest.mark.parametrize('module', sorted(MODULES))
def test_fence_check_apply_check_apply(bmc, ansible, module):
    args, bmc_power, (on, off), proto = MODULES[module]
    host = bmc.host_pids()
    assert len(host) == 1

    check = ansible(module, check=True, diff=True, **args(bmc))
    assert check['changed'] is True, check.output
    assert check['power'] == check['power_before'] == 'on'  # the real state, not the desired one
    assert check['verified'] is False
    assert '-    "power": "on"\n+    "power": "off"' in check.output  # the diff, before -> after
    assert bmc_power(bmc) == on
    assert bmc.host_pids() == host
    assert bmc.power_commands() == []

    apply = ansible(module, **args(bmc))
    assert apply['changed'] is True, apply.output
    assert (apply['power_before'], apply['power'], apply['verified'], apply['attempts']) == ('on', 'off', True, 1)
    assert bmc_power(bmc) == off
    assert not bmc.alive(host[0])
    assert bmc.host_pids() == []
    commands = bmc.power_commands()
    assert [(event['proto'], event['result'], event['changed']) for event in commands] == [(proto, 'ok', True)]

    check_again = ansible(module, check=True, **args(bmc))
    assert (check_again['changed'], check_again['power'], check_again['verified']) == (False, 'off', True)

    again = ansible(module, **args(bmc))
    assert (again['changed'], again['power'], again['verified'], again['attempts']) == (False, 'off', True, 0)
    assert bmc.power_commands() == commands  # nothing sent to the BMC since the one power off
    assert bmc.host_pids() == []


@pytest.mark.parametrize('module', sorted(MODULES))
def test_unfence_check_apply_check_apply(bmc, ansible, module):
    args, bmc_power, (on, off), dummy = MODULES[module]
    ansible(module, **args(bmc))
    assert bmc.host_pids() == []

    check = ansible(module, check=True, **args(bmc, state='on'))
    assert (check['changed'], check['power']) == (True, 'off')
    assert bmc.host_pids() == []

    apply = ansible(module, **args(bmc, state='on'))
    assert (apply['changed'], apply['power'], apply['verified']) == (True, 'on', True), apply.output
    assert bmc_power(bmc) == on
    assert len(bmc.host_pids()) == 1  # the BMC started the host again

    assert ansible(module, check=True, **args(bmc, state='on'))['changed'] is False
    assert ansible(module, **args(bmc, state='on'))['changed'] is False
    assert len(bmc.host_pids()) == 1


@pytest.mark.parametrize('module', sorted(MODULES))
def test_slow_bmc_is_waited_for_and_verified(bmc, ansible, module):
    args, bmc_power, (on, off), dummy = MODULES[module]
    bmc.fail('slow')  # power off answered at once, carried out 1.5 s later
    host = bmc.host_pids()
    run = ansible(module, **args(bmc, timeout=10))
    assert (run['changed'], run['power'], run['verified']) == (True, 'off', True), run.output
    assert run['elapsed'] >= 1.5
    assert not bmc.alive(host[0])
    assert bmc_power(bmc) == off


@pytest.mark.parametrize('module', sorted(MODULES))
def test_slow_bmc_beyond_the_timeout_fails_as_not_fenced(bmc, ansible, module):
    args, dummy, dummy_states, dummy_proto = MODULES[module]
    bmc.fail('slow')
    run = ansible(module, **args(bmc, timeout=0.5))
    assert run.failed
    assert 'NOT fenced' in run['msg']
    assert run['verified'] is False
    assert run['power'] == 'on'


@pytest.mark.parametrize('module, names', [('ipmi_fence', 'IPMI BMC 127.0.0.1:%(ipmi_port)d'),
                                           ('redfish_fence', 'Redfish BMC http://127.0.0.1:%(redfish_port)d')])
def test_rejected_credentials_fail_at_once_naming_the_bmc_never_the_password(bmc, ansible, module, names):
    args = MODULES[module][0]
    bmc.fail('bad_credentials')
    run = ansible(module, **args(bmc, retries=5))
    assert run.failed
    assert run['msg'].startswith(names % bmc.config), run['msg']
    assert 'rejected' in run['msg']
    assert bmc.password not in run.output
    assert run.seconds < 10  # no retries
    assert len(bmc.host_pids()) == 1


@pytest.mark.parametrize('module', sorted(MODULES))
def test_unreachable_bmc_fails_after_the_retries(bmc, ansible, module):
    args = MODULES[module][0]
    bmc.fail('unreachable')
    run = ansible(module, **args(bmc, retries=0, timeout=2))
    assert run.failed
    assert 'did not answer (read the power state) after 1 tries' in run['msg'], run['msg']
    assert run['power'] is None
    assert len(bmc.host_pids()) == 1


@pytest.mark.parametrize('module', sorted(MODULES))
def test_lying_bmc_passes_the_module_alone(bmc, ansible, module):
    """A BMC that says off while the host runs is verified by its own reads: fence_verify must catch it."""
    args = MODULES[module][0]
    bmc.fail('lying')
    run = ansible(module, **args(bmc))
    assert (run['changed'], run['power'], run['verified']) == (True, 'off', True)
    assert len(bmc.host_pids()) == 1  # the host still runs


ALREADY_OFF_PROBE = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.openstack_ha.recovery.plugins.module_utils._bmc import BmcAlreadyInState, PowerController
from ansible_collections.openstack_ha.recovery.plugins.module_utils._ipmi import IpmiClient
from ansible_collections.openstack_ha.recovery.plugins.module_utils._redfish import RedfishClient
kind, address, port, user, password = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
client = (IpmiClient(address, user, password, port=port) if kind == 'ipmi'
          else RedfishClient(address, user, password))
try:
    client.set_power('off')
    refusal = None
except BmcAlreadyInState as exc:
    refusal = exc.msg


class StaleFirstRead:
    """The client, except that its first read still says on: the BMC lags behind its own power state."""
    def __init__(self, client):
        self.client, self.name, self.stale = client, client.name, True
    def get_power(self):
        if self.stale:
            self.stale = False
            return 'on'
        return self.client.get_power()
    def set_power(self, state):
        return self.client.set_power(state)
    def close(self):
        self.client.close()


result = PowerController(StaleFirstRead(client), poll_interval=0.05).ensure('off')
client.close()
print(json.dumps(dict(refusal=refusal, result=result)))
'''


@pytest.mark.parametrize('kind', ['ipmi', 'redfish'])
def test_already_off_error_reply_is_recognised_and_confirmed(bmc, ansible, collections_path, kind):
    args = MODULES['%s_fence' % kind][0]
    ansible('%s_fence' % kind, **args(bmc))
    bmc.fail('already_off_error')  # power off when off: IPMI 0xD5, Redfish 409, as iLO / iDRAC answer
    address, port = ('127.0.0.1', bmc.ipmi_port) if kind == 'ipmi' else (bmc.redfish_url, 0)
    probe = subprocess.run([sys.executable, '-c', ALREADY_OFF_PROBE, str(collections_path), kind, address, str(port),
                            bmc.username, bmc.password], capture_output=True, text=True, timeout=60, check=False)
    assert probe.returncode == 0, probe.stderr
    outcome = json.loads(probe.stdout)
    assert outcome['refusal'] and ('0xD5' in outcome['refusal'] or 'HTTP 409' in outcome['refusal'])
    assert outcome['result']['verified'] is True
    assert outcome['result']['attempts'] == 1
    refused = [event for event in bmc.power_commands() if event['result'] == 'error']
    assert [event['proto'] for event in refused] == [kind, kind]  # the probe's own try, then the controller's
