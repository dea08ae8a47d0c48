"""`make demo`: a compute host dies in the lab and its servers come back elsewhere, step by step.

What it does, with what the collection has today:
  1. starts the lab (lab/labctl up) and boots servers on compute1 (with and without a network port);
  2. crashes compute1 (its nova-compute is killed; the BMC still reports power on, like a kernel panic);
  3. waits until Nova itself reports the host down (heartbeats stopped);
  4. runs demo/recover.yml (through ansible-runner, as AWX would): the collection's `ipmi_fence` powers the host
     off over real IPMI and verifies it, `nova_service` forces the service down and then disables it with a
     reason, `nova_evacuate` moves every server and tracks each one to ACTIVE on another host;
  5. prints each step's result, where each server went and how long it took, and checks it through Nova.
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
EVACUATE_MICROVERSION = '2.94'  # 2.95+ would land the servers stopped
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


def recover(env):
    """Run demo/recover.yml through ansible-runner; return {task name: result} for the target host."""
    import ansible_runner
    run = ansible_runner.run(
        private_data_dir=tempfile.mkdtemp(prefix='ohdemo-runner-'),
        playbook=os.path.join(REPO, 'demo', 'recover.yml'), inventory=env['inventory'],
        extravars={'target': HOST, 'cloud': env['cloud']}, quiet=True,
        envvars={'ANSIBLE_COLLECTIONS_PATH': collection_path(), 'OS_CLIENT_CONFIG_FILE': env['clouds_yaml'],
                 'PATH': VENV_BIN + os.pathsep + os.environ['PATH']})
    results = {}
    for event in run.events:
        if event.get('event') in ('runner_on_ok', 'runner_on_failed', 'runner_on_unreachable'):
            results[event['event_data']['task']] = event['event_data']['res']
    if run.rc != 0:
        failed = {task: res.get('msg') for task, res in results.items() if res.get('failed')}
        sys.exit('demo: the recovery playbook failed (%s): %s\n%s' % (
            run.status, failed or 'no task result', run.stdout.read()[-3000:] if not failed else ''))
    return results


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
    results = recover(env)
    fence = results['Fence the host through its BMC and verify it is off']
    say('FENCED by ipmi_fence: power %s -> %s, verified=%s after %d attempt(s), %.2fs in the module' % (
        fence['power_before'], fence['power'], fence['verified'], fence['attempts'], fence['elapsed']))
    service = results['Force the nova-compute service down, then disable it with a reason']['service']
    say('nova_service: %s forced_down=%s, %s (%s)' % (
        HOST, service['forced_down'], service['status'], service['disabled_reason']))
    evacuation = results['Evacuate every instance to healthy hosts']
    for record in evacuation['instances']:
        say('  %-28s %-7s %s -> %s, %s, attempt(s) %s, %.1fs' % (
            record['name'], record['outcome'], record['from'], record['to'], record['status_after'],
            record['attempts'], record['seconds'] or 0))
    say('nova_evacuate totals: %s (playbook %.1fs)' % (evacuation['totals'], time.monotonic() - t_recover))

    # Do not take the modules' word for it: read Nova.
    for s in servers:
        srv = conn.compute.get_server(s['id'])
        if srv.status != 'ACTIVE' or srv.compute_host == HOST:
            sys.exit('demo: Nova says %s is %s on %s' % (srv.name, srv.status, srv.compute_host))
    say('RECOVERED: all %d servers ACTIVE on other hosts, %.1fs after the crash' % (
        len(servers), time.monotonic() - t_crash))
    print(json.dumps({'host': HOST, 'servers': len(servers), 'fence_verified': fence['verified'],
                      'seconds_crash_to_recovered': round(time.monotonic() - t_crash, 1)}))


if __name__ == '__main__':
    main()
