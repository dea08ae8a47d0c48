"""Real Masakari (PyPI masakari 22.0.0) against the lab, for bench/recovery.py.

    MasakariSystem(bench, minimal_waits=False).setup()   # venv, database, Keystone user/service/endpoint, config,
                                                         # masakari-api + masakari-engine, a segment of the lab hosts
    handle = system.start('compute1', workdir)           # POST the COMPUTE_HOST host-down notification (time 0)

Masakari runs from a venv of its own, $OHLAB_HOME/masakari-venv (made on first use from
bench/masakari-requirements.txt; never the lab's venv or the test venv), with its own database `masakari` in the
lab's MariaDB, the lab's RabbitMQ, and a Keystone user `masakari` (admin in project service), a service of type
`instance-ha` and its endpoints. It reaches Nova through the catalog (`compute:nova:publicURL`) with that user.

The notification is the one masakari-monitors' host monitor posts when pacemaker reports a node offline and
fenced: type COMPUTE_HOST, payload {event: STOPPED, cluster_status: OFFLINE, host_status: NORMAL}, through the
instance-ha API (openstacksdk's instance_ha proxy, as masakari-monitors uses).

Masakari's options, [DEFAULT] unless named (masakari/conf/engine.py, engine_driver.py):

    option                                      default   here (defaults)   here (minimal waits)
    wait_period_after_service_update            180 s     180               0      sleep after disabling the service
    verify_interval                             1 s       1                 1      evacuation poll (an int: 1 is its floor)
    wait_period_after_evacuation                90 s      90                90     a timeout per instance, not a wait
    host_failure_recovery_threads               3         3                 3      concurrency, not a wait: unchanged
    duplicate_notification_detection_interval   180 s     0                 0      changed in BOTH: runs follow each
                                                                                   other within 180 s for the same
                                                                                   host, and Masakari would drop the
                                                                                   next run's notification
    retry_notification_new_status_interval      60 s      60                1      re-run of a notification left 'new'
    process_unfinished_notifications_interval   120 s     120               5      periodic retry of 'error' ones

With the 180 s wait Nova has long noticed the dead compute (the lab's service_down_time is 8 s). With no wait,
Masakari (which only disables the service, it never forces it down) evacuates before Nova reports the host down,
Nova answers 400 "Compute service of compute1 is still in use", and the notification goes to 'error' until the
periodic task retries it: the result shows what its minimum really costs.
"""

import datetime
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HOME = os.environ.get('OHLAB_HOME', '/var/tmp/ohlab')
BASE = int(os.environ.get('OHLAB_BASE_PORT', '28000'))
VENV = os.path.join(HOME, 'masakari-venv')
PORT = BASE + 868  # Masakari's default port is 15868
SECRET = 'ohlab-secret'  # the lab's own (loopback-only) service password, see lab/labctl.py
SEGMENT = 'bench-segment'

DEFAULT_WAITS = {'wait_period_after_service_update': 180, 'verify_interval': 1, 'wait_period_after_evacuation': 90,
                 'host_failure_recovery_threads': 3, 'duplicate_notification_detection_interval': 0,
                 'retry_notification_new_status_interval': 60, 'process_unfinished_notifications_interval': 120}
MINIMAL_WAITS = dict(DEFAULT_WAITS, wait_period_after_service_update=0, retry_notification_new_status_interval=1,
                     process_unfinished_notifications_interval=5)


def say(msg):
    print('[%s] masakari: %s' % (time.strftime('%H:%M:%S'), msg), file=sys.stderr, flush=True)


def ini(sections):
    lines = []
    for section, options in sections.items():
        lines.append('[%s]' % section)
        lines.extend('%s = %s' % (key, value) for key, value in options.items())
        lines.append('')
    return '\n'.join(lines)


class MasakariSystem:
    """masakari-api and masakari-engine for one configuration (defaults or minimal waits); the engine is
    restarted when the configuration changes."""

    # The engine and API are shared by both configurations: one process pair at a time, the config of the system
    # that runs now.
    _running = {'config': None, 'api': None, 'engine': None, 'ready': False}

    def __init__(self, bench, minimal_waits=False):
        self.bench = bench
        self.waits = MINIMAL_WAITS if minimal_waits else DEFAULT_WAITS
        self.name = 'masakari-min' if minimal_waits else 'masakari'
        self.dir = os.path.join(HOME, 'masakari')
        self.config = {'masakari_version': None, 'options': dict(self.waits)}
        self.notification = None

    # -- one-time set-up ------------------------------------------------------------------------------------
    def setup(self):
        state = self._running
        if state['ready']:
            self.config['masakari_version'] = state['version']
            return
        self._venv()
        os.makedirs(os.path.join(self.dir, 'log'), exist_ok=True)
        self._database()
        self._keystone()
        self._write_config(self.waits)
        self._run(['masakari-manage', '--config-file', self.conf, 'db', 'sync'])
        state['version'] = subprocess.run([os.path.join(VENV, 'bin', 'python'), '-c',
                                           'import masakari.version as v; print(v.version_string())'],
                                          capture_output=True, text=True, check=True).stdout.strip()
        self.config['masakari_version'] = state['version']
        state['ready'] = True

    def _venv(self):
        python = os.path.join(VENV, 'bin', 'python')
        if os.path.exists(python) and subprocess.run([python, '-c', 'import masakari, pymysql'],
                                                     capture_output=True).returncode == 0:
            return
        say('making %s (pip install -r bench/masakari-requirements.txt, a few minutes)' % VENV)
        subprocess.run(['python3', '-m', 'venv', VENV], check=True)
        subprocess.run([python, '-m', 'pip', 'install', '-q', '-r', os.path.join(HERE, 'masakari-requirements.txt')],
                       check=True)

    @property
    def conf(self):
        return os.path.join(self.dir, 'masakari.conf')

    def _run(self, argv):
        proc = subprocess.run([os.path.join(VENV, 'bin', argv[0])] + argv[1:], capture_output=True, text=True,
                              timeout=600)
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr)[-4000:]
            raise RuntimeError('%s failed (rc %d):\n%s' % (' '.join(argv), proc.returncode, output))
        return proc.stdout

    def _sql(self, sql):
        """Run SQL as root through the lab MariaDB's socket; -> its output (no column names)."""
        sock = os.path.join(self.bench.env['state_dir'], 'mariadb', 'mysqld.sock')
        return subprocess.run(['mariadb', '--no-defaults', '--socket=' + sock, '-uroot', '-N', '-e', sql],
                              check=True, capture_output=True, text=True, timeout=60).stdout

    def _database(self):
        self._sql("CREATE DATABASE IF NOT EXISTS masakari; GRANT ALL PRIVILEGES ON masakari.* TO 'ohlab'@'127.0.0.1';")

    def _close_stale_notifications(self):
        """Mark failed the notifications an interrupted earlier run left new, running or error: while one exists,
        Masakari refuses to take the segment's hosts off maintenance ("in-use to process notifications") and every
        later run fails in its set-up. Masakari's API cannot close a notification; its database can. Returns how
        many were closed."""
        out = self._sql("UPDATE masakari.notifications SET status = 'failed' "
                        "WHERE status IN ('new', 'running', 'error') AND deleted = 0; SELECT ROW_COUNT();")
        return int(out.split()[-1])

    def _keystone(self):
        from recovery import connect
        conn = connect(self.bench.env)
        ident = conn.identity
        project = ident.find_project('service', ignore_missing=False)
        user = ident.find_user('masakari')
        if user is None:
            user = ident.create_user(name='masakari', password=SECRET, domain_id='default')
        for role_name in ('admin', 'service'):
            ident.assign_project_role_to_user(project, user, ident.find_role(role_name, ignore_missing=False))
        service = ident.find_service('masakari') or ident.create_service(name='masakari', type='instance-ha')
        url = 'http://127.0.0.1:%d/v1/$(tenant_id)s' % PORT
        have = {e.interface for e in ident.endpoints(service_id=service.id)}
        for interface in ('public', 'internal', 'admin'):
            if interface not in have:
                ident.create_endpoint(service_id=service.id, interface=interface, url=url, region_id='RegionOne')

    def _write_config(self, waits):
        ports = {'mariadb': BASE + 306, 'rabbit': BASE + 672, 'keystone': BASE + 500}  # lab/labctl.py's PORTS
        keystone = 'http://127.0.0.1:%d/v3' % ports['keystone']
        db = 'mysql+pymysql://ohlab:%s@127.0.0.1:%d/masakari?charset=utf8' % (SECRET, ports['mariadb'])
        default = {
            'transport_url': 'rabbit://guest:guest@127.0.0.1:%d/' % ports['rabbit'],
            'masakari_api_listen': '127.0.0.1', 'masakari_api_listen_port': PORT, 'masakari_api_workers': 1,
            'auth_strategy': 'keystone',
            'os_privileged_user_name': 'masakari', 'os_privileged_user_password': SECRET,
            'os_privileged_user_tenant': 'service', 'os_privileged_user_auth_url': keystone,
            'os_user_domain_name': 'Default', 'os_project_domain_name': 'Default', 'os_region_name': 'RegionOne',
            'nova_catalog_admin_info': 'compute:nova:publicURL',
            'log_dir': os.path.join(self.dir, 'log'), 'debug': 'true',
        }
        default.update({key: value for key, value in waits.items()})
        with open(self.conf, 'w') as out:
            out.write(ini({
                'DEFAULT': default,
                'database': {'connection': db},
                'taskflow': {'connection': db},
                'keystone_authtoken': {
                    'www_authenticate_uri': keystone, 'auth_url': keystone, 'auth_type': 'password',
                    'project_domain_name': 'Default', 'user_domain_name': 'Default', 'project_name': 'service',
                    'username': 'masakari', 'password': SECRET, 'region_name': 'RegionOne'},
                'oslo_messaging_notifications': {'driver': 'noop'},
                'oslo_concurrency': {'lock_path': os.path.join(self.dir, 'lock')},
                'host_failure': {'evacuate_all_instances': 'true'},
            }))
        with open(os.path.join(self.dir, 'api-paste.ini'), 'w') as out:
            with open(os.path.join(VENV, 'etc', 'masakari', 'api-paste.ini')) as shipped:
                out.write(shipped.read())

    # -- processes --------------------------------------------------------------------------------------------
    def _ensure_running(self):
        state = self._running
        if state['config'] == self.name and state['api'].poll() is None and state['engine'].poll() is None:
            return
        self._stop_processes()
        self._write_config(self.waits)
        from recovery import Proc
        env = dict(os.environ, OS_MASAKARI_CONFIG_DIR=self.dir)
        state['api'] = Proc([os.path.join(VENV, 'bin', 'masakari-api'), '--config-file', self.conf],
                            os.path.join(self.dir, 'log', 'api.out'), env=env)
        state['engine'] = Proc([os.path.join(VENV, 'bin', 'masakari-engine'), '--config-file', self.conf],
                               os.path.join(self.dir, 'log', 'engine.out'), env=env)
        state['config'] = self.name
        conn = self.connection()
        deadline = time.monotonic() + 120
        while True:
            for proc in (state['api'], state['engine']):
                if proc.poll() is not None:
                    raise RuntimeError('%s exited with %s:\n%s' % (proc.popen.args[0], proc.poll(), proc.tail()))
            try:
                list(conn.instance_ha.segments())
                break
            except Exception as error:  # not answering yet
                if time.monotonic() > deadline:
                    raise RuntimeError('masakari-api not answering after 120 s: %s\n%s'
                                       % (error, state['api'].tail()))
                time.sleep(0.5)
        time.sleep(3)  # the engine's RPC consumer: no readiness signal; its log says when it listens
        self._segment(conn)

    def _stop_processes(self):
        state = self._running
        for key in ('engine', 'api'):
            if state[key] is not None:
                state[key].stop()
                state[key] = None
        state['config'] = None

    def connection(self):
        from recovery import connect
        return connect(self.bench.env)

    def _segment(self, conn):
        """A failover segment (recovery method auto: Nova's scheduler picks targets) holding every lab host, none
        on maintenance."""
        ha = conn.instance_ha
        segment = next((s for s in ha.segments() if s.name == SEGMENT), None)
        if segment is None:
            segment = ha.create_segment(name=SEGMENT, recovery_method='auto', service_type='COMPUTE')
        hosts = {h.name: h for h in ha.hosts(segment.uuid)}
        for name in self.bench.env['hosts']:
            if name not in hosts:
                ha.create_host(segment.uuid, name=name, type='COMPUTE', control_attributes='SSH')
            elif hosts[name].on_maintenance:
                ha.update_host(hosts[name].uuid, segment.uuid, on_maintenance=False)

    # -- the benchmark interface ------------------------------------------------------------------------------
    def prepare(self, host, workdir):
        self._ensure_running()
        closed = self._close_stale_notifications()
        if closed:
            print('masakari: marked %d unfinished notification(s) of an earlier run failed' % closed, flush=True)
        self._segment(self.connection())
        self.conn = self.connection()
        list(self.conn.instance_ha.segments())  # authenticated now, not at time 0 (masakari-monitors holds a session)

    def start(self, host, workdir):
        now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%f')
        self.notification = self.conn.instance_ha.create_notification(
            type='COMPUTE_HOST', hostname=host, generated_time=now,
            payload={'event': 'STOPPED', 'cluster_status': 'OFFLINE', 'host_status': 'NORMAL'})
        return NotificationRun(self)

    def details(self, handle, workdir):
        notification = self.conn.instance_ha.get_notification(self.notification.notification_uuid)
        return {'notification': notification.notification_uuid, 'status': notification.status,
                'recovery_workflow_details': [
                    {'name': step.get('name'), 'state': step.get('state'),
                     'progress': [p.get('message') for p in step.get('progress_details') or []][-3:]}
                    for step in (getattr(notification, 'recovery_workflow_details', None) or [])]}

    def after(self, host):
        pass

    def close(self):
        self._stop_processes()


class NotificationRun:
    """Masakari's recovery of one notification: running until the notification is finished, failed or ignored."""

    def __init__(self, system):
        self.system = system
        self.started = time.monotonic()
        self.ended = None
        self.status = None
        self._last = 0

    def poll(self):
        if self.ended is not None:
            return 0 if self.status == 'finished' else 1
        if time.monotonic() - self._last < 1:
            return None
        self._last = time.monotonic()
        notification = self.system.conn.instance_ha.get_notification(self.system.notification.notification_uuid)
        self.status = notification.status
        if self.status in ('finished', 'failed', 'ignored'):
            self.ended = time.monotonic()
            return 0 if self.status == 'finished' else 1
        return None

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        return self.poll()

    def stop(self):
        pass

    def tail(self):
        engine = self.system._running['engine']
        return 'notification %s: %s\n%s' % (self.system.notification.notification_uuid, self.status,
                                            engine.tail() if engine else '')
