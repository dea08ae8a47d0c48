"""`make demo`: a compute host dies in the lab and its servers come back elsewhere, step by step.

  1. starts the lab (lab/labctl up) and boots servers on compute1 (with and without a network port);
  2. crashes compute1 (its nova-compute is killed; the BMC still reports power on, like a kernel panic);
  3. waits until Nova itself reports the host down (heartbeats stopped);
  4. runs the host_failover runbook (playbooks/host_failover.yml, through ansible-runner as AWX would) with the
     lab's inventory: the gates (corroboration, observer, storm guard, capacity), the fence through the host's
     BMC (IPMI, verified), the service forced down and disabled with a structured reason, every server evacuated
     and read back from Nova;
  5. prints the runbook's report (evidence, gate decisions, fence, each server's outcome) from the job's
     artifacts, and checks the outcome through Nova itself.
The lab is left running (`lab/labctl down` stops it; `lab/labctl reset` cleans it).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABCTL = os.path.join(REPO, 'lab', 'labctl')
VENV_BIN = os.path.dirname(sys.executable)
HOST = 'compute1'
T0 = time.monotonic()


def say(msg):
    print('[%6.1fs] %s' % (time.monotonic() - T0, msg), flush=True)


def labctl(*args):
    proc = subprocess.run([LABCTL, '--json'] + list(args), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit('demo: labctl %s failed:\n%s' % (' '.join(args), proc.stderr[-3000:]))
    return json.loads(proc.stdout)


def wait_for(what, predicate, timeout, interval=0.25):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit('demo: timed out after %ss waiting for %s' % (timeout, what))
        time.sleep(interval)


def collection_path():
    """A directory with ansible_collections/openstack_ha/recovery pointing at this checkout."""
    root = tempfile.mkdtemp(prefix='ohdemo-')
    os.makedirs(os.path.join(root, 'ansible_collections', 'openstack_ha'))
    os.symlink(REPO, os.path.join(root, 'ansible_collections', 'openstack_ha', 'recovery'))
    return root


def recover(env, report_dir):
    """Run the host_failover runbook through ansible-runner; return its report (the job's set_stats artifact)."""
    import ansible_runner
    run = ansible_runner.run(
        private_data_dir=tempfile.mkdtemp(prefix='ohdemo-runner-'),
        playbook=os.path.join(REPO, 'playbooks', 'host_failover.yml'), inventory=env['inventory'],
        extravars={'compute_host': HOST, 'host_failover_report_dir': report_dir}, quiet=True,
        envvars={'ANSIBLE_COLLECTIONS_PATH': collection_path(), 'OS_CLIENT_CONFIG_FILE': env['clouds_yaml'],
                 'PATH': VENV_BIN + os.pathsep + os.environ['PATH']})
    stats = [event for event in run.events if event.get('event') == 'playbook_on_stats']
    report = stats[-1]['event_data'].get('artifact_data', {}).get('openstack_ha_recovery_report') if stats else None
    if run.rc != 0 or not report:
        sys.exit('demo: the host_failover runbook failed (%s): %s\n%s' % (
            run.status, report['message'] if report else 'no report', run.stdout.read()[-3000:]))
    return report


def main():
    say('starting the lab (the first run on a new machine installs OpenStack: a few minutes)')
    up = labctl('up')
    say('lab up: hosts %s' % ', '.join(up['hosts']))
    labctl('reset')
    env = labctl('env')

    import openstack.config
    import openstack.connection
    conn = openstack.connection.Connection(
        config=openstack.config.OpenStackConfig(config_files=[env['clouds_yaml']]).get_one(cloud=env['cloud']))

    servers = labctl('boot', '--count', '4', '--host', HOST)['servers']
    servers += labctl('boot', '--count', '2', '--host', HOST, '--port', '--prefix', 'vm-port')['servers']
    say('booted %d servers on %s (2 of them with a Neutron port)' % (len(servers), HOST))

    labctl('crash', HOST)
    t_crash = time.monotonic()
    say('CRASH: %s nova-compute killed (BMC still says power on)' % HOST)

    def nova_state():
        return next(iter(conn.compute.services(binary='nova-compute', host=HOST))).state
    wait_for('Nova to notice', lambda: nova_state() == 'down', 60)
    say('Nova reports %s down (heartbeats stopped; %.1fs after the crash)' % (HOST, time.monotonic() - t_crash))

    t_recover = time.monotonic()
    report_dir = tempfile.mkdtemp(prefix='ohdemo-reports-')
    say('running the host_failover runbook (ansible-playbook openstack_ha.recovery.host_failover '
        '-e compute_host=%s)' % HOST)
    report = recover(env, report_dir)
    for signal in report['signals']:
        say('  evidence %-6s %-8s %s' % (signal['signal'], 'DOWN' if signal['down'] else 'not down',
                                          signal['detail'].strip()))
    for gate in report['gates']:
        say('  gate %-13s %-7s %s' % (gate['gate'], gate['verdict'].upper(), gate['reason'].strip()))
    fence = report['fence']
    say('FENCED: level %s (%s), outcome %s; fence_verify: BMC %s, Nova heartbeat %s' % (
        fence['level'], fence['level_name'], fence['outcome'], fence['evidence']['bmc']['verdict'],
        fence['evidence']['nova']['verdict']))
    service = report['service']['after']
    say('nova_service: %s forced_down=%s, %s (%s)' % (
        HOST, service['forced_down'], service['status'], service['disabled_reason']))
    evacuation = report['evacuation']
    for record in evacuation['instances']:
        say('  %-28s %-7s %s -> %s, %s, attempt(s) %s, %.1fs' % (
            record['name'], record['outcome'], record['from'], record['to'], record['status_after'],
            record['attempts'], record['seconds'] or 0))
    say('runbook outcome %s: %s (runbook %.1fs; phases: %s)' % (
        report['outcome'], evacuation['totals'], time.monotonic() - t_recover,
        ', '.join('%s %.1fs' % (phase['phase'], phase['at_seconds']) for phase in report['phases'])))
    say('report written to %s' % report_dir)

    # Do not take the modules' word for it: read Nova.
    for s in servers:
        srv = conn.compute.get_server(s['id'])
        if srv.status != 'ACTIVE' or srv.compute_host == HOST:
            sys.exit('demo: Nova says %s is %s on %s' % (srv.name, srv.status, srv.compute_host))
    say('RECOVERED: all %d servers ACTIVE on other hosts, %.1fs after the crash' % (
        len(servers), time.monotonic() - t_crash))
    print(json.dumps({'host': HOST, 'servers': len(servers), 'fence_verified': fence['fenced'],
                      'outcome': report['outcome'],
                      'seconds_crash_to_recovered': round(time.monotonic() - t_crash, 1)}))


if __name__ == '__main__':
    main()
