"""`make demo`: a compute host dies in the lab and its servers come back elsewhere, step by step.

What it does, with what the collection has today:
  1. starts the lab (lab/labctl up) and boots servers on compute1 (with and without a network port);
  2. crashes compute1 (its nova-compute is killed; the BMC still reports power on, like a kernel panic);
  3. waits until Nova itself reports the host down (heartbeats stopped);
  4. fences compute1 with the collection's `openstack_ha.recovery.ipmi_fence` module over real IPMI, which
     powers it off and verifies the power state before anything else happens;
  5. forces the nova-compute service down, disables it with a reason, and evacuates every server
     (openstacksdk directly for now: the collection's nova modules are the next piece of work);
  6. waits until each server is ACTIVE on another host, and prints where each one went and how long it took.
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


def fence(env):
    """Run demo/fence.yml (the ipmi_fence module) through ansible-runner, as AWX would; return the task result."""
    import ansible_runner
    run = ansible_runner.run(
        private_data_dir=tempfile.mkdtemp(prefix='ohdemo-runner-'),
        playbook=os.path.join(REPO, 'demo', 'fence.yml'), inventory=env['inventory'],
        extravars={'target': HOST}, quiet=True,
        envvars={'ANSIBLE_COLLECTIONS_PATH': collection_path(), 'PATH': VENV_BIN + os.pathsep + os.environ['PATH']})
    results = [e['event_data']['res'] for e in run.events
               if e.get('event') in ('runner_on_ok', 'runner_on_failed', 'runner_on_unreachable')]
    if not results:
        sys.exit('demo: the fence playbook did not run (%s):\n%s' % (run.status, run.stdout.read()[-3000:]))
    result = results[-1]
    if run.rc != 0 or not result.get('verified'):
        sys.exit('demo: fencing %s failed: %s' % (HOST, result.get('msg', result)))
    return result


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

    def service():
        return next(iter(conn.compute.services(binary='nova-compute', host=HOST)))
    wait_for('Nova to notice', lambda: service().state == 'down', 60)
    say('Nova reports %s down (heartbeats stopped; %.1fs after the crash)' % (HOST, time.monotonic() - t_crash))

    t_fence = time.monotonic()
    result = fence(env)
    say('FENCED with openstack_ha.recovery.ipmi_fence: power %s -> %s, verified=%s in %.2fs (module %ss)' % (
        result.get('power_before'), result.get('power'), result.get('verified'),
        time.monotonic() - t_fence, result.get('elapsed')))

    svc = service()
    conn.compute.update_service_forced_down(svc, HOST, 'nova-compute', True)
    conn.compute.disable_service(svc, HOST, 'nova-compute',
                                 disabled_reason='openstack_ha demo: host failed, fenced by IPMI')
    say('nova-compute on %s forced down, then disabled with a reason' % HOST)

    started = {}
    for s in servers:
        resp = conn.compute.post('/servers/%s/action' % s['id'], json={'evacuate': {}},
                                 microversion=EVACUATE_MICROVERSION)
        if resp.status_code != 200:
            sys.exit('demo: evacuate of %s refused: %s %s' % (s['name'], resp.status_code, resp.text))
        started[s['id']] = time.monotonic()
    say('evacuation requested for %d servers' % len(servers))

    pending = {s['id']: s for s in servers}
    while pending:
        for sid in list(pending):
            srv = conn.compute.get_server(sid)
            if srv.status == 'ACTIVE' and srv.task_state is None and srv.compute_host != HOST:
                say('  %-28s ACTIVE on %s (%.1fs)' % (srv.name, srv.compute_host, time.monotonic() - started[sid]))
                del pending[sid]
            elif srv.status == 'ERROR':
                sys.exit('demo: %s went to ERROR: %s' % (srv.name, srv.fault))
        if time.monotonic() - t_crash > 180:
            sys.exit('demo: servers not recovered within 180 s: %s' % ', '.join(s['name'] for s in pending.values()))
        time.sleep(0.25)
    say('RECOVERED: all %d servers ACTIVE on other hosts, %.1fs after the crash' % (
        len(servers), time.monotonic() - t_crash))
    print(json.dumps({'host': HOST, 'servers': len(servers), 'fence_verified': result.get('verified'),
                      'seconds_crash_to_recovered': round(time.monotonic() - t_crash, 1)}))


if __name__ == '__main__':
    main()
