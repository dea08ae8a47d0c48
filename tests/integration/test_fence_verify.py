"""fence_verify against the real lab: real Nova heartbeats, real IPMI and Redfish BMCs, run by FQCN through the
ansible CLI as a user runs it.

Every verdict is checked against what the lab itself shows, independently of the module: the BMC's power state
through Debian's ipmitool, the host's nova-compute process through /proc, the service through the Nova API, and
the BMC's own event log (fence_verify must never send it a power command).
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from lab_helpers import REPO, compute_service, ipmitool, labctl, process_alive, wait_for

# func_only: the session-wide lab start (minutes on a fresh machine) must not count against one test
pytestmark = pytest.mark.timeout(180, func_only=True)

RESULT_LINE = re.compile(r'^localhost \| ([A-Z]+)!? => ', re.MULTILINE)


@pytest.fixture(scope='module')
def ansible(lab, tmp_path_factory):
    """ansible(module, check=False, **args) -> (failed, result, output): the module through the ansible CLI."""
    root = tmp_path_factory.mktemp('collections')
    (root / 'ansible_collections' / 'openstack_ha').mkdir(parents=True)
    (root / 'ansible_collections' / 'openstack_ha' / 'recovery').symlink_to(REPO)
    bin_dir = os.path.dirname(sys.executable)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(root), ANSIBLE_STDOUT_CALLBACK='minimal',
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_NOCOLOR='1',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='0', OS_CLIENT_CONFIG_FILE=lab['clouds_yaml'],
               PATH=bin_dir + os.pathsep + os.environ.get('PATH', ''))

    def run(module, check=False, **args):
        argv = [os.path.join(bin_dir, 'ansible'), 'localhost', '-c', 'local', '-i', 'localhost,',
                '-m', 'openstack_ha.recovery.' + module, '-a', json.dumps(args)] + (['--check'] if check else [])
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
        found = RESULT_LINE.search(proc.stdout)
        assert found, 'ansible gave no result (rc %d):\n%s%s' % (proc.returncode, proc.stdout, proc.stderr)
        result = json.JSONDecoder().raw_decode(proc.stdout[found.end():])[0]
        return found.group(1) == 'FAILED', result, proc.stdout + proc.stderr
    return run


def verify_args(lab, host, protocol='ipmi', **extra):
    bmc = lab['hosts'][host]
    args = dict(host=host, cloud=lab['cloud'], protocol=protocol, username=bmc['bmc_username'],
                password=bmc['bmc_password'], report_interval=lab['report_interval'], timeout=30, poll_interval=0.05)
    if protocol == 'ipmi':
        args.update(address=bmc['bmc_address'], port=bmc['ipmi_port'])
    else:
        args.update(address=bmc['redfish_url'])
    args.update(extra)
    return args


def compute_pid(lab, host):
    with open(os.path.join(lab['hosts'][host]['state_dir'], 'compute.pid')) as pidfile:
        return int(pidfile.read().strip())


def power_events(lab, host):
    """The power commands the host's BMC received, from its own event log."""
    try:
        with open(os.path.join(lab['hosts'][host]['state_dir'], 'bmc-events.log')) as log:
            events = [json.loads(line) for line in log if line.strip()]
    except FileNotFoundError:
        return []
    return [event for event in events if 'power_before' in event]


def chassis_power(lab, host):
    return ipmitool(lab['hosts'][host], 'power', 'status').strip()


def test_crashed_host_is_fenced_only_once_its_power_is_off(fresh_lab, ansible, conn):
    lab, host = fresh_lab, 'compute1'
    pid = compute_pid(lab, host)
    labctl('crash', host)
    assert not process_alive(pid)
    assert chassis_power(lab, host) == 'Chassis Power is on'  # a crash keeps power on, like a kernel panic

    # nova-compute died, but nobody cut the power: its guests could still run. Not fenced, and said so at once.
    started = time.monotonic()
    failed, result, output = ansible('fence_verify', **verify_args(lab, host))
    assert failed and result['fenced'] is False, output
    assert result['evidence']['bmc']['verdict'] == 'not_off'
    assert result['evidence']['bmc']['reads'] == ['on']
    assert result['evidence']['nova']['waited'] is False
    assert result['msg'].startswith('%s is NOT provably fenced: IPMI BMC 127.0.0.1:%d does not say off'
                                    % (host, lab['hosts'][host]['ipmi_port']))
    assert time.monotonic() - started < 20

    events = power_events(lab, host)
    ipmitool(lab['hosts'][host], 'power', 'off')  # the fence, by an independent client
    assert chassis_power(lab, host) == 'Chassis Power is off'
    events = power_events(lab, host)

    for check in (True, False):
        failed, result, output = ansible('fence_verify', check=check, **verify_args(lab, host))
        assert not failed and result['fenced'] is True, output
        assert result['changed'] is False and result['reasons'] == []
        bmc, nova = result['evidence']['bmc'], result['evidence']['nova']
        assert (bmc['verdict'], bmc['reads'], bmc['protocol']) == ('off', ['off', 'off', 'off'], 'ipmi')
        assert nova['verdict'] == 'silent'
        assert nova['heartbeat_age'] >= nova['stale_after'] == 3 * lab['report_interval']
        assert nova['watched'] >= nova['observe_for'] == 1.5 * lab['report_interval']
        assert result['evidence']['probes'] == []
    assert power_events(lab, host) == events  # read only: no power command reached the BMC
    assert chassis_power(lab, host) == 'Chassis Power is off'
    assert not process_alive(pid)
    assert compute_service(conn, host).updated_at == nova['updated_at']  # no heartbeat since

    # The same host over Redfish: the same verdict.
    failed, result, output = ansible('fence_verify', **verify_args(lab, host, protocol='redfish'))
    assert not failed and result['fenced'] is True, output
    assert result['evidence']['bmc']['bmc'] == 'Redfish BMC %s' % lab['hosts'][host]['redfish_url']

    # Something still answers on an address given as the host's: not fenced, and the probe is named.
    with socket.socket() as listener:
        listener.bind(('127.0.0.1', 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        probes = [dict(host='127.0.0.1', port=port)]
        failed, result, output = ansible('fence_verify', **verify_args(lab, host, probes=probes))
    assert failed and result['fenced'] is False, output
    assert result['evidence']['probes'][0]['verdict'] == 'answered'
    assert result['reasons'][0] == ('probe 127.0.0.1:%d answered (connection accepted): the host is still on that '
                                    'network' % port)


@pytest.mark.parametrize('protocol', ['ipmi', 'redfish'])
def test_lying_bmc_is_not_fenced_because_the_host_keeps_heartbeating(fresh_lab, ansible, conn, protocol):
    lab, host = fresh_lab, 'compute2'
    pid = compute_pid(lab, host)
    labctl('bmc', host, '--fail', 'lying')
    ipmitool(lab['hosts'][host], 'power', 'off')
    assert chassis_power(lab, host) == 'Chassis Power is off'  # the lie
    assert process_alive(pid)  # the truth

    started = time.monotonic()
    failed, result, output = ansible('fence_verify', **verify_args(lab, host, protocol=protocol))
    assert failed and result['fenced'] is False, output
    assert result['evidence']['bmc']['verdict'] == 'off'
    nova = result['evidence']['nova']
    assert nova['verdict'] == 'alive'
    assert nova['heartbeat_age'] < nova['stale_after']
    assert result['reasons'] == [
        'nova-compute on %s wrote a heartbeat while fence_verify watched (updated_at %s): the host runs after the '
        'fence; a BMC that says off is wrong about this host' % (host, nova['updated_at'])]
    assert 'Do not evacuate it.' in result['msg']
    assert lab['hosts'][host]['bmc_password'] not in output
    assert time.monotonic() - started < 20  # caught by the next heartbeat, not by a timeout

    assert process_alive(pid)
    wait_for('Nova to still see %s up' % host, lambda: compute_service(conn, host).state == 'up', 10)
