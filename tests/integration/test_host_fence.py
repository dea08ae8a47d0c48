"""The host_fence role against the real lab, through ansible-playbook, as an operator runs it.

Each test writes an inventory (fence levels per host, one BMC password vaulted), a playbook that runs the role and
then a stand-in for the next recovery step (it writes a marker file: it must never run for an unfenced host), and
the user-supplied tasks files of the "tasks" levels. Task results come from a small callback plugin that writes
each result (after Ansible's no_log masking) as a JSON line. Every outcome is checked on the lab itself: the BMC's
power state through ipmitool, the host's nova-compute process through /proc, the BMC's own event log.
"""

import json
import os
import socket

import pytest

from lab_helpers import compute_service, ipmitool, labctl, process_alive, wait_for
from playbook_harness import PlaybookDir

# func_only: the session-wide lab start (minutes on a fresh machine) must not count against one test
pytestmark = pytest.mark.timeout(300, func_only=True)

ROLE = 'openstack_ha.recovery.host_fence'

STORAGE_BLOCKLIST = '''
- name: Blocklist the host on the shared storage (lab stand-in, writes a marker)
  ansible.builtin.copy:
    dest: "{{ host_fence_method_vars.marker }}"
    content: "{{ inventory_hostname }} blocklisted on {{ host_fence_method_vars.array }}\\n"
    mode: "0600"
  delegate_to: localhost
'''

STORAGE_UNBLOCK = '''
- name: Lift the storage blocklist (lab stand-in, removes the marker)
  ansible.builtin.file:
    path: "{{ host_fence_method_vars.marker }}"
    state: absent
  delegate_to: localhost
'''

SWITCH_PORT_DOWN = '''
- name: Shut the host's switch port (lab stand-in, the switch does not answer)
  ansible.builtin.fail:
    msg: "switch {{ host_fence_method_vars.switch }} did not answer"
'''


def compute_pid(lab, host):
    with open(os.path.join(lab['hosts'][host]['state_dir'], 'compute.pid')) as pidfile:
        return int(pidfile.read().strip())


def power_events(lab, host, since=0):
    """The power commands the host's BMC logged after the first `since` ones (the log outlives lab resets)."""
    try:
        with open(os.path.join(lab['hosts'][host]['state_dir'], 'bmc-events.log')) as log:
            events = [json.loads(line) for line in log if line.strip()]
    except FileNotFoundError:
        return []
    return [event for event in events if 'power_before' in event][since:]


def chassis_power(lab, host):
    return ipmitool(lab['hosts'][host], 'power', 'status').strip().rsplit(' ', 1)[-1]


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def ipmi_method(lab, host, **extra):
    bmc = lab['hosts'][host]
    return dict(dict(type='ipmi', address=bmc['bmc_address'], port=bmc['ipmi_port'], username=bmc['bmc_username'],
                     password=bmc['bmc_password']), **extra)


def redfish_method(lab, host, **extra):
    bmc = lab['hosts'][host]
    return dict(dict(type='redfish', address=bmc['redfish_url'], username=bmc['bmc_username'],
                     password=bmc['bmc_password']), **extra)


class Playbooks(PlaybookDir):
    """The fence and unfence playbooks and the user-supplied tasks files of the "tasks" levels."""

    def __init__(self, lab, directory):
        super().__init__(lab, directory)
        for name, text in (('storage_blocklist.yml', STORAGE_BLOCKLIST), ('storage_unblock.yml', STORAGE_UNBLOCK),
                           ('switch_port_down.yml', SWITCH_PORT_DOWN)):
            (directory / name).write_text(text)
        self.marker = directory / 'next-step-ran'
        self._write_playbooks()

    def _write_playbooks(self):
        fence = [dict(name='Fence the failed host', hosts='compute_hosts', gather_facts=False, tasks=[
            dict(name='Fence it', **{'ansible.builtin.include_role': dict(name=ROLE)}),
            dict(name='Next recovery step (stand-in), only for a fenced host', check_mode=False,
                 **{'ansible.builtin.copy': dict(dest=str(self.marker), content='{{ inventory_hostname }}\n',
                                                 mode='0600')},
                 delegate_to='localhost'),
        ])]
        unfence = [dict(name='Unfence the repaired host', hosts='compute_hosts', gather_facts=False, tasks=[
            dict(name='Unfence it', **{'ansible.builtin.include_role': dict(name=ROLE, tasks_from='unfence')}),
        ])]
        self.write_yaml('fence.yml', fence)
        self.write_yaml('unfence.yml', unfence)

    def inventory(self, host, levels, vaulted_password=None, **host_vars):
        """One compute host with its fence levels; vaulted_password becomes the vaulted vault_bmc_password."""
        host_vars = dict(dict(ansible_connection='local', host_fence_cloud=self.lab['cloud'],
                              host_fence_report_interval=self.lab['report_interval'], host_fence_verify_timeout=20,
                              host_fence_levels=levels), **host_vars)
        self.write_yaml('inventory.yml', dict(all=dict(children=dict(compute_hosts=dict(hosts={host: host_vars})))))
        (self.dir / 'host_vars').mkdir(exist_ok=True)
        if vaulted_password is not None:
            (self.dir / 'host_vars' / ('%s.yml' % host)).write_text(
                self.vault_string('vault_bmc_password', vaulted_password))

    def play(self, playbook='fence.yml', **kwargs):
        run = super().play(playbook, **kwargs)
        run.role_changes = lambda: run.changes(ROLE)
        return run


@pytest.fixture
def playbooks(fresh_lab, tmp_path):
    return Playbooks(fresh_lab, tmp_path)


def test_level_1_ipmi_check_apply_check_apply(fresh_lab, playbooks):
    lab, host = fresh_lab, 'compute1'
    pid = compute_pid(lab, host)
    logged = len(power_events(lab, host))
    levels = [dict(name='ipmi', methods=[ipmi_method(lab, host, password='{{ vault_bmc_password }}')]),
              dict(name='redfish', methods=[redfish_method(lab, host, password='{{ vault_bmc_password }}')])]
    playbooks.inventory(host, levels, vaulted_password=lab['hosts'][host]['bmc_password'])

    check = playbooks.play(check=True)
    assert check.rc == 0, check.output
    result = check.fact('host_fence_result')
    assert (result['check_mode'], result['fenced']) == (True, False)
    assert (result['outcome'], result['level']) == ('would_fence', 1)
    assert [attempt['outcome'] for attempt in result['attempts']] == ['would_fence']
    assert result['attempts'][0]['evidence']['bmc']['reads'] == ['on']  # the real state, read in check mode
    assert check.role_changes() == ['Power the host off over IPMI']  # would power off
    assert chassis_power(lab, host) == 'on' and process_alive(pid)
    assert power_events(lab, host, since=logged) == []  # nothing reached the BMC
    assert playbooks.marker.exists()  # a would-be fence lets check mode go on
    playbooks.marker.unlink()

    apply = playbooks.play()
    assert apply.rc == 0, apply.output
    result = apply.fact('host_fence_result')
    assert (result['fenced'], result['outcome'], result['level'], result['level_name']) == (True, 'fenced', 1,
                                                                                            'ipmi')
    evidence = result['attempts'][0]['evidence']
    assert (evidence['bmc']['verdict'], evidence['nova']['verdict']) == ('off', 'silent')
    assert apply.role_changes() == ['Power the host off over IPMI'] and apply.stats[host]['failures'] == 0
    assert chassis_power(lab, host) == 'off'
    assert not process_alive(pid)
    events = power_events(lab, host, since=logged)
    assert [(event['proto'], event['action'], event['result']) for event in events] == [('ipmi', 'off', 'ok')]
    assert playbooks.marker.read_text() == host + '\n'
    playbooks.marker.unlink()

    for check_mode in (True, False):
        again = playbooks.play(check=check_mode)
        assert again.rc == 0, again.output
        assert again.role_changes() == []
        assert again.stats[host]['changed'] == 1  # the stand-in step after the role only
        result = again.fact('host_fence_result')
        assert (result['fenced'], result['outcome'], result['level']) == (True, 'fenced', 1)
        assert playbooks.marker.exists()
        playbooks.marker.unlink()
    assert power_events(lab, host, since=logged) == events  # the reruns sent nothing
    assert chassis_power(lab, host) == 'off' and not process_alive(pid)


def test_ipmi_unreachable_falls_back_to_redfish_then_unfence(fresh_lab, playbooks, conn):
    # The lab's "unreachable" fail mode silences both protocols of a BMC; on real hardware IPMI alone is often
    # what fails (IPMI over LAN disabled, UDP 623 filtered) while Redfish still answers. Level 1 is therefore
    # given a UDP port where nothing listens: a real IPMI client, really unanswered.
    lab, host = fresh_lab, 'compute2'
    pid = compute_pid(lab, host)
    logged = len(power_events(lab, host))
    dead_port = free_udp_port()
    marker = playbooks.dir / 'storage-blocklist'
    levels = [
        dict(name='ipmi', methods=[ipmi_method(lab, host, port=dead_port, retries=0, timeout=10)]),
        dict(name='redfish and storage', methods=[
            redfish_method(lab, host),
            dict(type='tasks', tasks_file=str(playbooks.dir / 'storage_blocklist.yml'),
                 unfence_tasks_file=str(playbooks.dir / 'storage_unblock.yml'),
                 vars=dict(marker=str(marker), array='lab-array-1')),
        ]),
    ]
    playbooks.inventory(host, levels)

    run = playbooks.play()
    assert run.rc == 0, run.output
    result = run.fact('host_fence_result')
    assert (result['fenced'], result['level'], result['level_name']) == (True, 2, 'redfish and storage')
    first, second = result['attempts']
    assert (first['outcome'], first['evidence']) == ('act_failed', None)
    assert first['reason'].startswith('ipmi method failed: IPMI BMC 127.0.0.1:%d did not answer' % dead_port)
    assert (second['outcome'], second['methods']) == ('fenced', ['redfish', 'tasks'])
    assert second['evidence']['bmc']['protocol'] == 'redfish'
    assert chassis_power(lab, host) == 'off'
    assert not process_alive(pid)
    assert [(event['proto'], event['action']) for event in power_events(lab, host, since=logged)] == [
        ('redfish', 'ForceOff')]
    assert marker.read_text() == '%s blocklisted on lab-array-1\n' % host
    assert playbooks.marker.exists()

    # Unfence, explicitly: the storage blocklist is lifted, then the first power method that works (IPMI on its
    # dead port does not; Redfish does) powers the host on.
    unfence = playbooks.play('unfence.yml')
    assert unfence.rc == 0, unfence.output
    result = unfence.fact('host_fence_unfence_result')
    assert result['powered_on'] is True
    assert [(attempt['method'], attempt['reason'] is None) for attempt in result['attempts']] == [
        ('ipmi', False), ('redfish', True)]
    assert not marker.exists()
    assert chassis_power(lab, host) == 'on'
    new_pid = wait_for('the compute process of %s' % host, lambda: process_alive(compute_pid(lab, host))
                       and compute_pid(lab, host), 30)
    assert new_pid != pid
    wait_for('nova-compute on %s up again' % host, lambda: compute_service(conn, host).state == 'up', 60)


def test_all_levels_failing_fail_the_role_and_stop_the_play(fresh_lab, playbooks, conn):
    lab, host = fresh_lab, 'compute3'
    pid = compute_pid(lab, host)
    password = lab['hosts'][host]['bmc_password']
    labctl('bmc', host, '--fail', 'lying')  # says off, leaves the host running: levels 1 and 2 are not verified
    levels = [
        dict(name='ipmi', methods=[ipmi_method(lab, host)]),
        dict(name='redfish', methods=[redfish_method(lab, host)]),
        dict(name='switch port', methods=[dict(type='tasks', tasks_file=str(playbooks.dir / 'switch_port_down.yml'),
                                               vars=dict(switch='lab-tor-1', port='Ethernet1/3'))],
             verify=dict(protocol='ipmi', address=lab['hosts'][host]['bmc_address'],
                         port=lab['hosts'][host]['ipmi_port'], username='admin', password=password)),
    ]
    playbooks.inventory(host, levels)

    run = playbooks.play(verbose=True)
    assert run.rc != 0
    assert not playbooks.marker.exists(), 'the next recovery step ran for an unfenced host'
    assert run.results('Next recovery step (stand-in), only for a fenced host') == []
    assert run.stats[host]['failures'] == 1

    result = run.fact('host_fence_result')
    assert (result['fenced'], result['outcome'], result['level']) == (False, 'not_fenced', None)
    assert [attempt['outcome'] for attempt in result['attempts']] == ['not_verified', 'not_verified', 'act_failed']
    for attempt in result['attempts'][:2]:
        assert attempt['evidence']['bmc']['verdict'] == 'off'  # the lie
        assert attempt['evidence']['nova']['verdict'] == 'alive'  # the truth
        assert 'wrote a heartbeat while fence_verify watched' in attempt['reason']
    assert result['attempts'][2]['reason'] == 'tasks method failed: switch lab-tor-1 did not answer'

    failure = run.results('Fail when no fence level fenced the host')
    assert [record['status'] for record in failure] == ['failed']
    message = failure[0]['result']['msg']
    assert message.startswith('%s is NOT fenced: every fence level failed.' % host)
    assert 'Level 1 (ipmi, ipmi): not_verified: nova-compute on %s wrote a heartbeat' % host in message
    assert '[evidence: bmc off, nova alive, probes none]' in message
    assert 'Level 3 (switch port, tasks): act_failed: tasks method failed: switch lab-tor-1 did not answer' in message

    assert password not in run.output  # -vvv, with passwords in the levels and in a level's verify
    assert password not in json.dumps(run.records)

    assert chassis_power(lab, host) == 'off'  # the BMC still lies
    assert process_alive(pid)  # and the host still runs: nothing may evacuate it
    assert compute_service(conn, host).state == 'up'


def test_preflight_refuses_incomplete_levels_before_contacting_anything(fresh_lab, playbooks):
    lab, host = fresh_lab, 'compute1'
    logged = len(power_events(lab, host))
    levels = [dict(name='ipmi', methods=[dict(type='ipmi', address=lab['hosts'][host]['bmc_address'])]),
              dict(name='switch port', methods=[dict(type='tasks', tasks_file='/nonexistent.yml')])]
    playbooks.inventory(host, levels, host_fence_verify_nova=False)
    run = playbooks.play()
    assert run.rc != 0
    failed = [record for record in run.records if record['status'] == 'failed']
    assert [record['task'].split(' : ')[-1] for record in failed] == [
        'Assert that every level has methods, each with what it needs']
    assert not playbooks.marker.exists()
    assert power_events(lab, host, since=logged) == []
