"""bmc_ping against the lab's simulated BMCs (pyghmi's IPMI server, bmcsim's Redfish), through the ansible CLI:
the sessionless IPMI request and the unauthenticated Redfish GET reach real BMCs, a BMC in "unreachable" mode and
ports without a service count as unreachable, the minimum gate fails naming them - and no probe ever changes a
BMC's power or needs a password.
"""

import json
import os
import socket
import subprocess
import time

import pytest

from helpers_nova import BIN, RESULT_LINE, Run, ansible_env
from lab_helpers import labctl

HOSTS = ('compute1', 'compute2', 'compute3')


def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run_module(lab, module, check=False, **args):
    """openstack_ha.recovery.MODULE through `ansible localhost -m`, without cloud options (helpers_nova adds them)."""
    argv = [os.path.join(BIN, 'ansible'), 'localhost', '-c', 'local', '-i', 'localhost,',
            '-m', 'openstack_ha.recovery.' + module, '-a', json.dumps(args)] + (['--check'] if check else [])
    started = time.monotonic()
    proc = subprocess.run(argv, env=ansible_env(lab), capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)
    found = RESULT_LINE.search(proc.stdout)
    assert found, 'ansible gave no result (rc %d):\n%s' % (proc.returncode, proc.stdout + proc.stderr)
    result = json.JSONDecoder().raw_decode(proc.stdout[found.end():])[0]
    return Run(result, found.group(1) == 'FAILED', proc.stdout + proc.stderr, time.monotonic() - started)


def read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return ''


@pytest.mark.timeout(180, func_only=True)
def test_bmc_ping_tells_answering_bmcs_from_silent_ones(lab):
    hosts = lab['hosts']
    targets = []
    for host in HOSTS:
        targets.append(dict(name=host + '-ipmi', address=hosts[host]['bmc_address'], port=hosts[host]['ipmi_port']))
        targets.append(dict(name=host + '-redfish', address=hosts[host]['redfish_url'], protocol='redfish'))
    targets.append(dict(name='no-ipmi', address='127.0.0.1', port=free_port(socket.SOCK_DGRAM)))
    targets.append(dict(name='no-redfish', address='http://127.0.0.1:%d' % free_port(socket.SOCK_STREAM),
                        protocol='redfish'))
    events = dict((host, read(os.path.join(hosts[host]['state_dir'], 'bmc-events.log'))) for host in HOSTS)
    redfish_log = os.path.join(lab['logs'], 'bmc-compute1.log')
    logged = len(read(redfish_log))

    labctl('bmc', 'compute3', '--fail', 'unreachable')
    try:
        gated = run_module(lab, 'bmc_ping', targets=targets, timeout=0.5, retries=1, min_reachable_percent=60,
                           fail_on_below=True)
    finally:
        labctl('bmc', 'compute3', '--ok')
    assert gated.failed, gated
    reachable = dict((t['name'], t['reachable']) for t in gated['targets'])
    assert reachable == {'compute1-ipmi': True, 'compute1-redfish': True, 'compute2-ipmi': True,
                         'compute2-redfish': True, 'compute3-ipmi': False, 'compute3-redfish': False,
                         'no-ipmi': False, 'no-redfish': False}
    assert (gated['total'], gated['reachable'], gated['unreachable'], gated['reachable_percent']) == (8, 4, 4, 50.0)
    assert gated.result['msg'].startswith('this controller reaches only 4 of 8 BMCs (50.0%), below '
                                          'min_reachable_percent 60.0%')
    for name in ('compute3-ipmi', 'compute3-redfish', 'no-ipmi', 'no-redfish'):
        assert name + ' (' in gated.result['msg']
    by_name = dict((t['name'], t) for t in gated['targets'])
    assert by_name['compute1-ipmi']['answer'] == 'IPMI completion code 0x00'
    assert by_name['compute1-redfish']['answer'] == 'HTTP 200'
    assert by_name['compute3-ipmi']['attempts'] == 2
    assert by_name['compute3-ipmi']['error'] == 'no answer to IPMI Get Channel Authentication Capabilities within 0.5 s'
    assert gated.seconds < 30  # the silent BMC costs (1 + retries) x timeout, in parallel with the others

    # compute3's BMC answers again; checked in check mode, which probes the same way
    healed = run_module(lab, 'bmc_ping', check=True, targets=targets[:6], timeout=0.5, min_reachable_percent=100,
                        fail_on_below=True)
    assert not healed.failed, healed
    assert (healed['reachable'], healed['reachable_percent'], healed['below_minimum']) == (6, 100.0, False)
    assert all(t['latency_ms'] < 500 for t in healed['targets'])

    # The BMCs saw the probes, unauthenticated, and no power action came of them.
    assert read(redfish_log)[logged:].count('"GET /redfish/v1 HTTP/1.1" 200') >= 2
    for host in HOSTS:
        assert read(os.path.join(hosts[host]['state_dir'], 'bmc-events.log')) == events[host]
    assert 'ohlab-bmc-secret' not in gated.output + healed.output
