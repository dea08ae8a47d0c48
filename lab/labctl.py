"""labctl: a real OpenStack control plane with fake hypervisors and simulated BMCs, on 127.0.0.1.

Run through the ``labctl`` wrapper next to this file, which installs what the lab needs and then runs
this module in the lab's own venv. Commands (each accepts --json):

  up [--computes N]   start MariaDB, RabbitMQ, Keystone, Placement, Glance, Neutron, Nova API/conductor/
                      scheduler, one BMC simulator per compute host, and power the hosts on through their BMCs.
                      The first run initialises databases and the catalog; later runs reuse them.
  down                stop everything (state is kept; `up --fresh` wipes it)
  status              services and, per host: nova service state, forced_down, disabled, BMC power,
                      compute process alive/frozen
  env                 paths of clouds.yaml (cloud name), an Ansible inventory of the compute hosts, BMC access
  boot --count N --host HOST [--port]   boot tiny servers on HOST (no network, or one port each)
  crash HOST          kill HOST's nova-compute (the BMC still says power on: a kernel panic)
  freeze HOST / thaw HOST   SIGSTOP / SIGCONT HOST's nova-compute (alive but silent: the split-brain case)
  bmc HOST --fail MODE [--delay S] / bmc HOST --ok   make HOST's BMC misbehave, or behave again
  reset               delete all servers, every BMC behaving, every host powered on, up, enabled, at its default
                      size, live migration from it working
  resize HOST [--vcpus N] [--memory-mb N] [--disk-gb N] / resize HOST --default
                      give an empty HOST another fake capacity (state/hosts/HOST/size.json), restarting its compute
  live-migration HOST --fail abort|precheck / live-migration HOST --ok
                      make live migrations from HOST fail (see lab/ohlab_fake.py), or work again
  wait-up [HOST ...]  wait until the hosts' nova-compute services report up
  service HOST [--stop | --start | --restart | --broken | --ok]
                      HOST's nova-compute service, the host staying up (lab/ohlab_host.py): stop it (its process
                      dies, sshd and the BMC's power stay on), start or restart it, say whether it runs; --broken:
                      every start from now on fails at once (escalation tests), --ok: starts work again.
                      Without a flag: the service's state. A host's sshd runs `systemctl` here (systemctl_main).
  crash-instance SERVER [--no-wait]   crash one guest (name or id): its fake hypervisor powers it off without any
                      API call (see lab/ohlab_fake.py); waits until Nova's power-state sync shows it SHUTOFF
  site-outage         power every host off through its BMC (ipmitool), as a site-wide power loss; the control
                      plane stays up. The hosts' guests come back powered off when the hosts are powered on
  restart SERVICE     stop a control-plane service (rabbitmq, nova-conductor, nova-scheduler, nova-api) and
                      start it again, as an operator's restart or a crash and its supervisor would

Design notes: every service is a plain child process in its own session (no systemd), with a pid file and a
log under $OHLAB_HOME/state; all listeners are on 127.0.0.1 and on ports of the lab's own (base port
$OHLAB_BASE_PORT, default 28000), so the lab runs beside a MariaDB or RabbitMQ the machine may have.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HOME = os.environ.get('OHLAB_HOME', '/var/tmp/ohlab')
STATE = os.path.join(HOME, 'state')
VENV = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))
BIN = os.path.join(VENV, 'bin')
LAB_DIR = os.path.dirname(os.path.abspath(__file__))
BASE = int(os.environ.get('OHLAB_BASE_PORT', '28000'))
ADDR = '127.0.0.1'

PORTS = {
    'mariadb': BASE + 306,
    'rabbit': BASE + 672,
    'rabbit_dist': BASE + 673,
    'epmd': BASE + 369,
    'keystone': BASE + 500,
    'glance': BASE + 292,
    'neutron': BASE + 696,
    'placement': BASE + 778,
    'nova': BASE + 774,
}
IPMI_PORT_BASE = BASE + 1000     # compute1 -> BASE+1001
REDFISH_PORT_BASE = BASE + 1100  # compute1 -> BASE+1101
SSH_PORT_BASE = BASE + 1200      # compute1 -> BASE+1201: the host's real OpenSSH sshd (lab/ohlab_host.py)
SSHD_CONFIG = 'sshd_config'      # in the host's directory, with its host key ssh_host_ed25519_key
SSH_USER = 'root'                # the lab's Ansible logs in as root with the lab's key (path('ssh', 'id_ed25519'))
SERVICE_BROKEN_FILE = 'service-broken'  # in the host's directory, read by lab/ohlab_host.py at every start

# Lab-only credentials: the lab is reachable only on 127.0.0.1 and holds no data.
SECRET = 'ohlab-secret'
DB_URL = 'mysql+pymysql://ohlab:%s@%s:%d/%%s?charset=utf8' % (SECRET, ADDR, PORTS['mariadb'])
RABBIT_URL = 'rabbit://guest:guest@%s:%d/' % (ADDR, PORTS['rabbit'])
KEYSTONE_URL = 'http://%s:%d/v3' % (ADDR, PORTS['keystone'])
CLOUD_NAME = 'ohlab'
REGION = 'RegionOne'
SERVICE_USERS = ('nova', 'placement', 'glance', 'neutron')
BMC_USER = 'admin'
BMC_PASSWORD = 'ohlab-bmc-secret'

# Heartbeat timings: a compute reports every REPORT_INTERVAL s and is "down" after SERVICE_DOWN_TIME s.
REPORT_INTERVAL = int(os.environ.get('OHLAB_REPORT_INTERVAL', '2'))
SERVICE_DOWN_TIME = int(os.environ.get('OHLAB_SERVICE_DOWN_TIME', '8'))

FAIL_MODES = ('slow', 'unreachable', 'bad_credentials', 'already_off_error', 'lying')
# A fake host's capacity: size.json key -> the environment variable lab/ohlab_fake.py reads, and the default.
SIZE_ENV = {'vcpus': 'OHLAB_VCPUS', 'memory_mb': 'OHLAB_MEMORY_MB', 'disk_gb': 'OHLAB_DISK_GB'}
DEFAULT_SIZE = {'vcpus': 1000, 'memory_mb': 800000, 'disk_gb': 600000}
LIVE_MIGRATION_FAIL_MODES = ('abort', 'precheck')
LIVE_MIGRATION_FAIL_FILE = 'live-migration-fail'  # in the host's directory, read by lab/ohlab_fake.py
CRASH_INSTANCES_FILE = 'crash-instances'  # in the host's directory, taken by lab/ohlab_fake.py
# How often each compute compares its guests' power states with Nova's (Nova's default is 600 s).
SYNC_POWER_STATE_INTERVAL = int(os.environ.get('OHLAB_SYNC_POWER_STATE_INTERVAL', '5'))


class LabError(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------
# small helpers


def path(*parts):
    return os.path.join(STATE, *parts)


def write(fname, text, mode=0o644):
    os.makedirs(os.path.dirname(fname), exist_ok=True)
    tmp = fname + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, fname)


def read(fname, default=None):
    try:
        with open(fname) as f:
            return f.read()
    except FileNotFoundError:
        return default


def ini(sections):
    out = []
    for section, values in sections.items():
        out.append('[%s]' % section)
        out.extend('%s = %s' % (k, v) for k, v in values.items())
        out.append('')
    return '\n'.join(out)


def log(msg):
    print('labctl: %s' % msg, file=sys.stderr, flush=True)


def run(argv, env=None, check=True, quiet=True):
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise LabError('%s failed (exit %d): %s' % (' '.join(argv[:3]), proc.returncode,
                                                     (proc.stderr or proc.stdout)[-2000:]))
    return proc


def wait_for(what, predicate, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise LabError('timed out after %ss waiting for %s' % (timeout, what))
        time.sleep(interval)


def port_open(port, host=ADDR):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status < 500
    except urllib.error.HTTPError as e:
        return e.code < 500
    except OSError:
        return False


def proc_state(pid):
    """'R'/'S'/'T'/... from /proc, or None when the process does not exist (zombies count as gone)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            state = f.read().rsplit(')', 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None
    return None if state in ('Z', 'X') else state


def pid_of(pidfile):
    text = read(pidfile)
    if not text or not text.strip().isdigit():
        return None
    pid = int(text.strip())
    return pid if proc_state(pid) else None


# ---------------------------------------------------------------------------------------------------------
# processes


def spawn(name, argv, env=None, cwd=None):
    """Start a long-running service in its own session, output to state/log/NAME.log, pid to state/run."""
    pidfile = path('run', name + '.pid')
    if pid_of(pidfile):
        return pid_of(pidfile)
    os.makedirs(path('log'), exist_ok=True)
    os.makedirs(path('run'), exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(path('log', name + '.log'), 'ab') as logf:
        proc = subprocess.Popen(argv, env=full_env, cwd=cwd or STATE, stdin=subprocess.DEVNULL,
                                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    write(pidfile, str(proc.pid))
    return proc.pid


def stop_group(pid, timeout=20):
    """SIGTERM a process group, then SIGKILL what is left after `timeout` seconds."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc_state(pid) is None:
                return
            try:
                os.killpg(pid, signal.SIGCONT)  # a frozen process cannot handle SIGTERM
            except OSError:
                pass
            time.sleep(0.2)


def uwsgi(name, module, port, env, processes=1, threads=8):
    argv = [os.path.join(BIN, 'uwsgi'), '--http-socket', '%s:%d' % (ADDR, port), '--module', module,
            '--master', '--processes', str(processes), '--threads', str(threads), '--enable-threads',
            '--die-on-term', '--lazy-apps', '--buffer-size', '65535', '--need-app', '--hook-master-start',
            'unix_signal:15 gracefully_kill_them_all', '--thunder-lock', '--disable-logging',
            # uwsgi's http-socket closes the connection after each response; without this header clients
            # reuse pooled connections and get "Connection reset by peer" on the next request
            '--add-header', 'Connection: close']
    return spawn(name, argv, env=env)


# ---------------------------------------------------------------------------------------------------------
# configuration


def keystone_authtoken(user):
    return {
        'www_authenticate_uri': KEYSTONE_URL,
        'auth_url': KEYSTONE_URL,
        'auth_type': 'password',
        'project_domain_name': 'Default',
        'user_domain_name': 'Default',
        'project_name': 'service',
        'username': user,
        'password': SECRET,
        'region_name': REGION,
        'service_token_roles_required': 'true',
    }


def service_auth(user):
    auth = {k: v for k, v in keystone_authtoken(user).items()
            if k not in ('www_authenticate_uri', 'service_token_roles_required')}
    return auth


def write_configs():
    etc = path('etc')
    write(os.path.join(etc, 'keystone', 'keystone.conf'), ini({
        'DEFAULT': {'log_file': path('log', 'keystone-app.log')},
        'database': {'connection': DB_URL % 'keystone'},
        'token': {'provider': 'fernet'},
        'fernet_tokens': {'key_repository': path('keystone', 'fernet-keys')},
        'credential': {'key_repository': path('keystone', 'credential-keys')},
        # A real Keystone caches (memcached); without a cache every token validation here costs ~0.6-1 s of
        # database queries, one at a time, and a burst of new tokens stalls every service behind it. One
        # Keystone process, so an in-process cache stays coherent.
        'cache': {'enabled': 'true', 'backend': 'dogpile.cache.memory'},
    }))
    write(os.path.join(etc, 'placement', 'placement.conf'), ini({
        'DEFAULT': {'log_file': path('log', 'placement-app.log')},
        'placement_database': {'connection': DB_URL % 'placement'},
        'api': {'auth_strategy': 'keystone'},
        'keystone_authtoken': keystone_authtoken('placement'),
    }))
    os.makedirs(os.path.join(etc, 'glance'), exist_ok=True)
    shutil.copy(os.path.join(VENV, 'etc', 'glance', 'glance-api-paste.ini'),
                os.path.join(etc, 'glance', 'glance-api-paste.ini'))
    write(os.path.join(etc, 'glance', 'glance-api.conf'), ini({
        'DEFAULT': {'log_file': path('log', 'glance-app.log'), 'enabled_backends': 'fs:file'},
        'database': {'connection': DB_URL % 'glance'},
        'glance_store': {'default_backend': 'fs'},
        'fs': {'filesystem_store_datadir': path('glance', 'images')},
        'os_glance_staging_store': {'filesystem_store_datadir': path('glance', 'staging')},
        'os_glance_tasks_store': {'filesystem_store_datadir': path('glance', 'tasks')},
        'keystone_authtoken': keystone_authtoken('glance'),
        'paste_deploy': {'flavor': 'keystone',
                         'config_file': os.path.join(etc, 'glance', 'glance-api-paste.ini')},
        'oslo_concurrency': {'lock_path': path('glance', 'lock')},
    }))
    write(os.path.join(etc, 'neutron', 'neutron.conf'), ini({
        'DEFAULT': {
            'log_file': path('log', 'neutron-app.log'),
            'core_plugin': 'ml2',
            'service_plugins': '',
            'auth_strategy': 'keystone',
            'transport_url': RABBIT_URL,
            'api_paste_config': os.path.join(VENV, 'etc', 'neutron', 'api-paste.ini'),
            'notify_nova_on_port_status_changes': 'false',
            'notify_nova_on_port_data_changes': 'false',
            'state_path': path('neutron'),
        },
        'database': {'connection': DB_URL % 'neutron'},
        'keystone_authtoken': keystone_authtoken('neutron'),
        'oslo_concurrency': {'lock_path': path('neutron', 'lock')},
        'oslo_messaging_notifications': {'driver': 'noop'},
    }))
    write(os.path.join(etc, 'neutron', 'ml2_conf.ini'), ini({
        'ml2': {'type_drivers': 'local,flat', 'tenant_network_types': 'local',
                'mechanism_drivers': 'ohlab', 'extension_drivers': 'port_security'},
        'ml2_type_flat': {'flat_networks': '*'},
    }))
    nova = {
        'DEFAULT': {
            'transport_url': RABBIT_URL,
            'state_path': path('nova'),
            'my_ip': ADDR,
            'host': 'controller',
            'report_interval': REPORT_INTERVAL,
            'service_down_time': SERVICE_DOWN_TIME,
            'compute_driver': 'ohlab_fake.LabFakeDriver',
            'vif_plugging_timeout': 0,
            'sync_power_state_interval': SYNC_POWER_STATE_INTERVAL,
            'vif_plugging_is_fatal': 'false',
            'heal_instance_info_cache_interval': -1,
            'instance_usage_audit': 'false',
            'use_rootwrap_daemon': 'false',
        },
        'api': {'auth_strategy': 'keystone'},
        'wsgi': {'api_paste_config': os.path.join(VENV, 'etc', 'nova', 'api-paste.ini')},
        'keystone_authtoken': keystone_authtoken('nova'),
        'placement': service_auth('placement'),
        'neutron': service_auth('neutron'),
        'glance': {'region_name': REGION},
        'service_user': dict(service_auth('nova'), send_service_user_token='true'),
        'scheduler': {'discover_hosts_in_cells_interval': 2},
        'quota': {'driver': 'nova.quota.NoopQuotaDriver'},
        'oslo_concurrency': {'lock_path': path('nova', 'lock')},
        'oslo_messaging_notifications': {'driver': 'noop'},
        'conductor': {'workers': 1},
        'os_vif_linux_bridge': {},
        'vnc': {'enabled': 'false'},
        'spice': {'enabled': 'false'},
    }
    nova['neutron'].update({'service_metadata_proxy': 'false'})
    write(os.path.join(etc, 'nova', 'nova.conf'), ini(nova))
    shutil.copy(os.path.join(VENV, 'etc', 'nova', 'api-paste.ini'), os.path.join(etc, 'nova', 'api-paste.ini'))
    # Only api, conductor, scheduler and nova-manage read the database settings (nova-compute refuses them).
    write(os.path.join(etc, 'nova', 'nova-db.conf'), ini({
        'database': {'connection': DB_URL % 'nova'},
        'api_database': {'connection': DB_URL % 'nova_api'},
    }))


def nova_args(with_db=True):
    args = ['--config-file', path('etc', 'nova', 'nova.conf')]
    if with_db:
        args += ['--config-file', path('etc', 'nova', 'nova-db.conf')]
    return args


# ---------------------------------------------------------------------------------------------------------
# infrastructure services


def start_mariadb():
    datadir = path('mariadb', 'data')
    sock = path('mariadb', 'mysqld.sock')
    fresh = not os.path.isdir(os.path.join(datadir, 'mysql'))
    if fresh:
        os.makedirs(datadir, exist_ok=True)
        run(['mariadb-install-db', '--no-defaults', '--datadir=' + datadir, '--user=root',
             '--auth-root-authentication-method=socket', '--skip-test-db'])
    spawn('mariadb', ['mariadbd', '--no-defaults', '--datadir=' + datadir, '--socket=' + sock,
                      '--port=%d' % PORTS['mariadb'], '--bind-address=' + ADDR, '--user=root',
                      '--pid-file=' + path('mariadb', 'mariadb.pid'), '--skip-log-bin',
                      '--skip-name-resolve', '--max-connections=2000', '--innodb-buffer-pool-size=256M',
                      '--innodb-flush-log-at-trx-commit=0', '--character-set-server=utf8mb3',
                      '--collation-server=utf8mb3_general_ci', '--log-error=' + path('log', 'mariadb-error.log')])
    wait_for('MariaDB', lambda: os.path.exists(sock) and port_open(PORTS['mariadb']), 60)
    if fresh:
        dbs = ('keystone', 'placement', 'glance', 'neutron', 'nova', 'nova_api', 'nova_cell0')
        sql = ["CREATE USER IF NOT EXISTS 'ohlab'@'127.0.0.1' IDENTIFIED BY '%s';" % SECRET]
        for db in dbs:
            sql.append('CREATE DATABASE IF NOT EXISTS %s;' % db)
            sql.append("GRANT ALL PRIVILEGES ON %s.* TO 'ohlab'@'127.0.0.1';" % db)
        run(['mariadb', '--no-defaults', '--socket=' + sock, '-uroot', '-e', ' '.join(sql)])


def rabbit_env():
    rhome = path('rabbitmq')
    return {
        'HOME': rhome,
        'RABBITMQ_NODENAME': 'ohlab@localhost',
        'RABBITMQ_NODE_IP_ADDRESS': ADDR,
        'RABBITMQ_NODE_PORT': str(PORTS['rabbit']),
        'RABBITMQ_DIST_PORT': str(PORTS['rabbit_dist']),
        'ERL_EPMD_PORT': str(PORTS['epmd']),
        'ERL_EPMD_ADDRESS': ADDR,
        'RABBITMQ_MNESIA_BASE': os.path.join(rhome, 'mnesia'),
        'RABBITMQ_LOG_BASE': path('log'),
        'RABBITMQ_ENABLED_PLUGINS_FILE': os.path.join(rhome, 'enabled_plugins'),
        'RABBITMQ_CONFIG_FILE': os.path.join(rhome, 'rabbitmq'),
        'RABBITMQ_ADVANCED_CONFIG_FILE': os.path.join(rhome, 'advanced.config'),
        'RABBITMQ_CONF_ENV_FILE': os.path.join(rhome, 'rabbitmq-env.conf'),
        'RABBITMQ_PID_FILE': os.path.join(rhome, 'rabbitmq.pid'),
        # keep Erlang distribution (inter-node traffic) on loopback too
        'RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS': '-kernel inet_dist_use_interface {127,0,0,1}',
        'RABBITMQ_CTL_ERL_ARGS': '-kernel inet_dist_use_interface {127,0,0,1}',
    }


def start_rabbitmq():
    env = rabbit_env()
    rhome = env['HOME']
    os.makedirs(rhome, exist_ok=True)
    write(env['RABBITMQ_ENABLED_PLUGINS_FILE'], '[].\n')
    write(env['RABBITMQ_CONFIG_FILE'] + '.conf', 'loopback_users = none\nlog.console = false\n')
    write(env['RABBITMQ_ADVANCED_CONFIG_FILE'], '[].\n')
    write(env['RABBITMQ_CONF_ENV_FILE'], '')
    server = '/usr/lib/rabbitmq/bin/rabbitmq-server'  # the /usr/sbin wrapper would switch to the rabbitmq user
    if not os.path.exists(server):
        server = shutil.which('rabbitmq-server')
    spawn('rabbitmq', [server], env=env)
    wait_for('RabbitMQ', lambda: port_open(PORTS['rabbit']), 90)


# ---------------------------------------------------------------------------------------------------------
# OpenStack services


def svc_env(service):
    etc = path('etc', service)
    return {
        'keystone': {'OS_KEYSTONE_CONFIG_FILES': os.path.join(etc, 'keystone.conf')},
        'placement': {'OS_PLACEMENT_CONFIG_DIR': etc},
        'glance': {'OS_GLANCE_CONFIG_DIR': etc},
        'neutron': {'OS_NEUTRON_CONFIG_DIR': etc, 'OS_NEUTRON_CONFIG_FILES': 'neutron.conf;ml2_conf.ini'},
        # nova-api takes its paste pipeline from the first file
        'nova': {'OS_NOVA_CONFIG_DIR': etc, 'OS_NOVA_CONFIG_FILES': 'api-paste.ini;nova.conf;nova-db.conf'},
    }[service]


def initialised(step):
    return os.path.exists(path('init', step))


def mark(step):
    write(path('init', step), time.strftime('%Y-%m-%dT%H:%M:%S\n'))


def init_keystone():
    if initialised('keystone'):
        return
    conf = ['--config-file', path('etc', 'keystone', 'keystone.conf')]
    km = os.path.join(BIN, 'keystone-manage')
    for d in ('fernet-keys', 'credential-keys'):
        os.makedirs(path('keystone', d), mode=0o700, exist_ok=True)
    run([km] + conf + ['db_sync'])
    run([km] + conf + ['fernet_setup', '--keystone-user', 'root', '--keystone-group', 'root'])
    run([km] + conf + ['credential_setup', '--keystone-user', 'root', '--keystone-group', 'root'])
    run([km] + conf + ['bootstrap', '--bootstrap-password', SECRET, '--bootstrap-admin-url', KEYSTONE_URL,
                       '--bootstrap-public-url', KEYSTONE_URL, '--bootstrap-internal-url', KEYSTONE_URL,
                       '--bootstrap-region-id', REGION])
    mark('keystone')


def init_dbs():
    if not initialised('placement'):
        run([os.path.join(BIN, 'placement-manage'), '--config-file', path('etc', 'placement', 'placement.conf'),
             'db', 'sync'])
        mark('placement')
    if not initialised('glance'):
        run([os.path.join(BIN, 'glance-manage'), '--config-file', path('etc', 'glance', 'glance-api.conf'),
             'db_sync'])
        mark('glance')
    if not initialised('neutron'):
        run([os.path.join(BIN, 'neutron-db-manage'), '--config-file', path('etc', 'neutron', 'neutron.conf'),
             '--config-file', path('etc', 'neutron', 'ml2_conf.ini'), 'upgrade', 'heads'])
        mark('neutron')
    if not initialised('nova'):
        nm = [os.path.join(BIN, 'nova-manage')] + nova_args()
        run(nm + ['api_db', 'sync'])
        run(nm + ['cell_v2', 'map_cell0', '--database_connection', DB_URL % 'nova_cell0'])
        if 'cell1' not in run(nm + ['cell_v2', 'list_cells']).stdout:
            run(nm + ['cell_v2', 'create_cell', '--name', 'cell1', '--transport-url', RABBIT_URL,
                      '--database_connection', DB_URL % 'nova'])
        run(nm + ['db', 'sync'])
        mark('nova')


def write_clouds_yaml():
    text = (
        'clouds:\n'
        '  %s:\n'
        '    auth:\n'
        '      auth_url: %s\n'
        '      username: admin\n'
        '      password: %s\n'
        '      project_name: admin\n'
        '      user_domain_name: Default\n'
        '      project_domain_name: Default\n'
        '    region_name: %s\n'
        '    interface: public\n'
        '    identity_api_version: 3\n'
    ) % (CLOUD_NAME, KEYSTONE_URL, SECRET, REGION)
    write(path('clouds.yaml'), text, mode=0o600)


def connect():
    import openstack
    return openstack.connect(
        auth_url=KEYSTONE_URL, username='admin', password=SECRET, project_name='admin',
        user_domain_name='Default', project_domain_name='Default', region_name=REGION,
        identity_api_version='3', interface='public')


def init_catalog(conn):
    if initialised('catalog'):
        return
    ident = conn.identity
    service_project = ident.find_project('service') or ident.create_project(name='service', domain_id='default')
    roles = {}
    for role_name in ('admin', 'service'):
        roles[role_name] = ident.find_role(role_name) or ident.create_role(name=role_name)
    for user_name in SERVICE_USERS:
        user = ident.find_user(user_name) or ident.create_user(name=user_name, password=SECRET,
                                                               domain_id='default')
        for role in roles.values():
            ident.assign_project_role_to_user(service_project, user, role)
    endpoints = {
        ('nova', 'compute'): 'http://%s:%d/v2.1' % (ADDR, PORTS['nova']),
        ('placement', 'placement'): 'http://%s:%d' % (ADDR, PORTS['placement']),
        ('glance', 'image'): 'http://%s:%d' % (ADDR, PORTS['glance']),
        ('neutron', 'network'): 'http://%s:%d' % (ADDR, PORTS['neutron']),
    }
    for (name, stype), url in endpoints.items():
        svc = ident.find_service(name) or ident.create_service(name=name, type=stype)
        for interface in ('public', 'internal', 'admin'):
            ident.create_endpoint(service_id=svc.id, interface=interface, url=url, region_id=REGION)
    mark('catalog')


def init_resources(conn):
    """The flavors, image and network every test uses."""
    if initialised('resources'):
        return
    if not conn.compute.find_flavor('ohlab.tiny'):
        conn.compute.create_flavor(name='ohlab.tiny', ram=64, vcpus=1, disk=1, is_public=True)
    if not conn.compute.find_flavor('ohlab.small'):
        conn.compute.create_flavor(name='ohlab.small', ram=512, vcpus=2, disk=1, is_public=True)
    img = conn.image.find_image('ohlab-image')
    if not img:
        img = conn.image.post('/images', json={
            'name': 'ohlab-image', 'disk_format': 'raw', 'container_format': 'bare',
            'visibility': 'public'}).json()
        img = conn.image.get_image(img['id'])
    if img.status != 'active':
        conn.image.put('/images/%s/file' % img.id, data=b'\0' * 1024,
                       headers={'Content-Type': 'application/octet-stream'})
        wait_for('image ohlab-image active', lambda: conn.image.get_image(img.id).status == 'active', 30)
    net = conn.network.find_network('ohlab-net')
    if not net:
        net = conn.network.create_network(name='ohlab-net', provider_network_type='flat',
                                          provider_physical_network='physnet1', shared=True)
        conn.network.create_subnet(network_id=net.id, name='ohlab-subnet', ip_version=4,
                                   cidr='10.99.0.0/16', enable_dhcp=False, gateway_ip=None)
    mark('resources')


def start_openstack(conn_holder):
    write_configs()
    init_keystone()
    uwsgi('keystone', 'keystone.wsgi.api:application', PORTS['keystone'], svc_env('keystone'), threads=8)
    wait_for('Keystone', lambda: http_ok(KEYSTONE_URL), 60)
    write_clouds_yaml()
    conn = connect()
    if not initialised('catalog'):
        init_catalog(conn)
        conn = connect()  # the first token's catalog had no endpoints yet
    init_dbs()
    uwsgi('placement', 'placement.wsgi.api:application', PORTS['placement'], svc_env('placement'))
    uwsgi('glance', 'glance.wsgi.api:application', PORTS['glance'], svc_env('glance'))
    uwsgi('neutron', 'ohlab_plugins.neutron_wsgi:application', PORTS['neutron'], svc_env('neutron'))
    uwsgi('nova-api', 'nova.wsgi.osapi_compute:application', PORTS['nova'], svc_env('nova'), threads=16)
    spawn('nova-conductor', [os.path.join(BIN, 'nova-conductor')] + nova_args())
    spawn('nova-scheduler', [os.path.join(BIN, 'nova-scheduler')] + nova_args())
    for name in ('placement', 'glance', 'neutron', 'nova'):
        wait_for(name, lambda p=PORTS[name]: http_ok('http://%s:%d/' % (ADDR, p)), 90)
    conn_holder.append(conn)
    return conn


# ---------------------------------------------------------------------------------------------------------
# compute hosts and their BMCs


def host_names():
    hosts = read(path('hosts.json'))
    return json.loads(hosts) if hosts else []


def host_dir(host):
    return path('hosts', host)


def check_host(host):
    if host not in host_names():
        raise LabError('unknown host %r: the lab has %s' % (host, ', '.join(host_names()) or 'no hosts'))


def bmc_config(host):
    return json.loads(read(os.path.join(host_dir(host), 'bmc.json')))


def setup_hosts(count, sizes):
    hosts = ['compute%d' % i for i in range(1, count + 1)]
    write(path('hosts.json'), json.dumps(hosts))
    for i, host in enumerate(hosts, start=1):
        hdir = host_dir(host)
        os.makedirs(os.path.join(hdir, 'state'), exist_ok=True)
        write(os.path.join(hdir, 'nova-compute.conf'), ini({
            'DEFAULT': {'host': host, 'state_path': os.path.join(hdir, 'state'),
                        'instances_path': os.path.join(hdir, 'state', 'instances')},
            'oslo_concurrency': {'lock_path': os.path.join(hdir, 'state', 'lock')},
        }))
        env = {'OHLAB_VCPUS': str(sizes.get('vcpus', 1000)),
               'OHLAB_MEMORY_MB': str(sizes.get('memory_mb', 800000)),
               'OHLAB_DISK_GB': str(sizes.get('disk_gb', 600000))}
        write_sshd_config(host, hdir, SSH_PORT_BASE + i)
        override = read(os.path.join(hdir, 'size.json'))
        if override:
            # {"vcpus": .., "memory_mb": .., "disk_gb": ..} (the environment variable names work too)
            env.update({SIZE_ENV.get(k, k): str(v) for k, v in json.loads(override).items()})
        write(os.path.join(hdir, 'compute.json'), json.dumps({
            # the host's OS (lab/ohlab_host.py: its sshd, then nova-compute as a service), all in one process
            # group that the BMC starts at power on and kills at power off
            'argv': [sys.executable, os.path.join(LAB_DIR, 'ohlab_host.py'), '--host-dir', hdir,
                     '--sshd-config', os.path.join(hdir, SSHD_CONFIG), '--',
                     os.path.join(BIN, 'nova-compute')] + nova_args(with_db=False) +
                    ['--config-file', os.path.join(hdir, 'nova-compute.conf')],
            'env': dict(os.environ, **env),
            'cwd': hdir,
            'log': path('log', 'nova-compute-%s.log' % host),
        }, indent=1))
        previous = json.loads(read(os.path.join(hdir, 'bmc.json')) or '{}')
        write(os.path.join(hdir, 'bmc.json'), json.dumps({
            'name': host, 'address': ADDR,
            'ipmi_port': IPMI_PORT_BASE + i, 'redfish_port': REDFISH_PORT_BASE + i,
            'username': BMC_USER, 'password': BMC_PASSWORD,
            'fail_mode': previous.get('fail_mode'), 'slow_delay': previous.get('slow_delay', 5),
        }, indent=1), mode=0o600)
        if read(os.path.join(hdir, 'power')) is None:
            write(os.path.join(hdir, 'power'), 'off')
    return hosts


def ssh_keygen(key_file):
    if not os.path.exists(key_file):
        os.makedirs(os.path.dirname(key_file), exist_ok=True)
        run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'ohlab', '-f', key_file])


SYSTEMCTL_SHIM = '''#!%(python)s
# `systemctl` on the lab's compute hosts: the first command in PATH of every SSH session of a host (sshd's SetEnv
# gives OHLAB_HOST and PATH). It drives that host's nova-compute service through labctl (labctl.systemctl_main).
import os
import sys

os.environ.setdefault('OHLAB_HOME', %(home)r)
os.environ.setdefault('OHLAB_BASE_PORT', %(base)r)
sys.path.insert(0, %(lab_dir)r)
import labctl  # noqa: E402

sys.exit(labctl.systemctl_main(os.environ.get('OHLAB_HOST', ''), sys.argv[1:]))
'''


def write_sshd_config(host, hdir, port):
    """The host's sshd: its port on 127.0.0.1, its own host key, root login with the lab's key only, and for
    every session OHLAB_HOST and a PATH that starts with the lab's host bin dir (the systemctl shim)."""
    ssh_keygen(path('ssh', 'id_ed25519'))
    ssh_keygen(os.path.join(hdir, 'ssh_host_ed25519_key'))
    bin_dir = path('host-bin')
    write(os.path.join(bin_dir, 'systemctl'), SYSTEMCTL_SHIM % {
        'python': sys.executable, 'home': HOME, 'base': str(BASE), 'lab_dir': LAB_DIR}, mode=0o755)
    write(os.path.join(hdir, SSHD_CONFIG), '\n'.join([
        '# sshd of the lab host %s (written by labctl; run by lab/ohlab_host.py)' % host,
        'ListenAddress %s:%d' % (ADDR, port),
        'HostKey %s' % os.path.join(hdir, 'ssh_host_ed25519_key'),
        'PidFile none',
        'AuthorizedKeysFile %s' % path('ssh', 'id_ed25519.pub'),
        'PermitRootLogin prohibit-password',
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',  # the key lives in the lab's state dir, not in ~root/.ssh
        'Subsystem sftp internal-sftp',  # Ansible copies its modules with sftp
        'SetEnv OHLAB_HOST=%s PATH=%s:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
        % (host, bin_dir),
        '']))


def start_bmcs(hosts):
    for host in hosts:
        hdir = host_dir(host)
        spawn('bmc-%s' % host, [sys.executable, os.path.join(LAB_DIR, 'bmcsim.py'), '--host-dir', hdir])
    for host in hosts:
        cfg = bmc_config(host)
        wait_for('BMC of %s' % host, lambda c=cfg: http_ok('http://%s:%d/redfish/v1' % (ADDR, c['redfish_port'])),
                 30)


def ipmitool(host, *args, check=True):
    cfg = bmc_config(host)
    argv = ['ipmitool', '-I', 'lanplus', '-C', '3', '-N', '1', '-R', '2', '-H', cfg['address'],
            '-p', str(cfg['ipmi_port']), '-U', cfg['username'], '-E'] + list(args)
    return run(argv, env=dict(os.environ, IPMI_PASSWORD=cfg['password']), check=check)


def bmc_power(host):
    proc = ipmitool(host, 'power', 'status', check=False)
    if proc.returncode != 0:
        return 'unknown'
    return 'on' if 'is on' in proc.stdout else 'off' if 'is off' in proc.stdout else 'unknown'


def compute_pid(host):
    return pid_of(os.path.join(host_dir(host), 'compute.pid'))


def service_state(host):
    """HOST's nova-compute service as its init (lab/ohlab_host.py) sees it: 'active', 'inactive', 'failed', or
    'host-down' when the host's OS does not run (powered off, crashed), 'host-frozen' when it is frozen, and
    'booting' until the init of the running OS has started the service once."""
    state = compute_state(host)
    if state != 'alive':
        return 'host-down' if state == 'dead' else 'host-frozen'
    record = json.loads(read(os.path.join(host_dir(host), 'service.json')) or '{}')
    if record.get('init_pid') != compute_pid(host):
        return 'booting'  # the record is from before the last boot: the init has not started the service yet
    if pid_of(os.path.join(host_dir(host), 'nova-compute.pid')):
        return 'active'
    return 'failed' if record.get('state') == 'failed' else 'inactive'


def service_starts(host):
    return json.loads(read(os.path.join(host_dir(host), 'service.json')) or '{}').get('starts', 0)


def wait_booted(host):
    wait_for('the init of %s to boot' % host, lambda: service_state(host) != 'booting', 10, interval=0.05)
    return service_state(host)


def service_stop(host):
    if wait_booted(host) != 'active':
        return False
    os.kill(compute_pid(host), signal.SIGUSR2)
    wait_for('nova-compute of %s to stop' % host, lambda: service_state(host) != 'active', 10, interval=0.05)
    return True


def service_start(host):
    """Start HOST's nova-compute unless it runs; LabError when it fails to come up (exits within a second)."""
    if wait_booted(host) == 'active':
        return False
    starts = service_starts(host)
    os.kill(compute_pid(host), signal.SIGUSR1)
    # started now, or found running (the init ignores a start of a running service and records nothing)
    wait_for('the init of %s to start nova-compute' % host,
             lambda: service_starts(host) > starts or service_state(host) == 'active', 10, interval=0.05)
    deadline = time.monotonic() + 1.0  # a service that cannot start exits at once
    while time.monotonic() < deadline and service_state(host) == 'active':
        time.sleep(0.05)
    if service_state(host) != 'active':
        # the init records the exit status once it has reaped the process
        record = wait_for('the init of %s to record how nova-compute ended' % host, lambda: json.loads(
            read(os.path.join(host_dir(host), 'service.json')) or '{}') if service_state(host) == 'failed' else None,
            5, interval=0.05)
        raise LabError('nova-compute on %s failed to start (exit status %s; see %s)%s' % (
            host, record.get('exit_status'), path('log', 'nova-compute-%s.log' % host),
            ': the lab made it broken (labctl service %s --ok repairs it)' % host
            if os.path.exists(os.path.join(host_dir(host), SERVICE_BROKEN_FILE)) else ''))
    return True


def cmd_service(args):
    check_host(args.host)
    host, hdir = args.host, host_dir(args.host)
    broken_file = os.path.join(hdir, SERVICE_BROKEN_FILE)
    if args.broken:
        write(broken_file, 'every start of nova-compute fails (labctl service %s --broken)\n' % host)
    elif args.ok and os.path.exists(broken_file):
        os.unlink(broken_file)
    elif args.stop or args.start or args.restart:
        state = service_state(host)
        if state.startswith('host-'):
            raise LabError('%s: its OS does not run (%s): only a running host has services to %s (labctl status)'
                           % (host, 'powered off or crashed' if state == 'host-down' else 'frozen',
                              'stop' if args.stop else 'start'))
        changed = False
        if args.stop or args.restart:
            changed = service_stop(host)
        if args.start or args.restart:
            changed = service_start(host) or changed
        return {'host': host, 'service': service_state(host), 'changed': changed,
                'broken': os.path.exists(broken_file)}
    return {'host': host, 'service': service_state(host), 'broken': os.path.exists(broken_file)}


# unit names the systemctl shim knows: nova-compute (and its RDO name), and libvirt's, which the fake hypervisor
# does not have: restarting those succeeds and does nothing, is-active says active.
NOVA_UNITS = ('nova-compute', 'openstack-nova-compute')
NOOP_UNITS = ('libvirtd', 'libvirt', 'virtqemud')


def systemctl_main(host, argv):
    """`systemctl [options] ACTION UNIT...` on lab host HOST: start, stop, restart, is-active, status. Exit codes
    as systemctl's: 0 done/active, 1 a start failed, 3 inactive, 5 unknown unit."""
    words = [a for a in argv if not a.startswith('-')]
    quiet = '-q' in argv or '--quiet' in argv
    if not host or len(words) < 2:
        print('systemctl (ohlab %s): usage: systemctl start|stop|restart|is-active|status UNIT...' % (host or '?'),
              file=sys.stderr)
        return 1
    action, units = words[0], [u[:-len('.service')] if u.endswith('.service') else u for u in words[1:]]
    if action not in ('start', 'stop', 'restart', 'try-restart', 'is-active', 'status'):
        print('systemctl (ohlab %s): unsupported action %r' % (host, action), file=sys.stderr)
        return 1
    rc = 0
    for unit in units:
        if unit not in NOVA_UNITS + NOOP_UNITS:
            if action in ('is-active', 'status'):
                print('inactive' if action == 'is-active' else 'Unit %s.service could not be found.' % unit)
                rc = max(rc, 3 if action == 'is-active' else 4)
            else:
                print('Failed to %s %s.service: Unit %s.service not found.' % (action, unit, unit), file=sys.stderr)
                rc = max(rc, 5)
            continue
        if unit in NOOP_UNITS:
            if action in ('is-active', 'status') and not quiet:
                print('active' if action == 'is-active' else '%s.service (ohlab: no hypervisor daemon here, '
                      'nothing to do)\n     Active: active' % unit)
            continue
        try:
            if action in ('stop', 'restart', 'try-restart'):
                if action != 'try-restart' or service_state(host) == 'active':
                    cmd_service(argparse.Namespace(host=host, broken=False, ok=False, stop=action == 'stop',
                                                   start=False, restart=action != 'stop'))
            elif action == 'start':
                cmd_service(argparse.Namespace(host=host, broken=False, ok=False, stop=False, start=True,
                                               restart=False))
        except LabError as e:
            print('Job for %s.service failed: %s' % (unit, e), file=sys.stderr)
            rc = max(rc, 1)
            continue
        state = service_state(host)
        if action == 'is-active':
            if not quiet:
                print('active' if state == 'active' else 'failed' if state == 'failed' else 'inactive')
            rc = max(rc, 0 if state == 'active' else 3)
        elif action == 'status':
            pid = pid_of(os.path.join(host_dir(host), 'nova-compute.pid'))
            print('%s.service - OpenStack Compute (ohlab %s)\n     Active: %s%s' % (
                unit, host, state, '\n   Main PID: %d' % pid if pid else ''))
            rc = max(rc, 0 if state == 'active' else 3)
    return rc


def compute_state(host):
    pid = compute_pid(host)
    if not pid:
        return 'dead'
    return 'frozen' if proc_state(pid) == 'T' else 'alive'


def power_on(host):
    """Power a host on through its BMC, as an operator would; a crashed host gets a power cycle."""
    if compute_pid(host):
        return
    if read(os.path.join(host_dir(host), 'power')) == 'on':
        ipmitool(host, 'power', 'off')  # power is on but the OS is dead: cut power first
    ipmitool(host, 'power', 'on')
    wait_for('compute process of %s' % host, lambda: compute_pid(host), 15)


def compute_services(conn):
    return {s.host: s for s in conn.compute.services(binary='nova-compute')}


def wait_up(conn, hosts, timeout=90):
    def all_up():
        services = compute_services(conn)
        return all(h in services and services[h].state == 'up' for h in hosts)
    wait_for('nova-compute up on %s' % ', '.join(hosts), all_up, timeout, interval=0.5)


def discover_hosts(conn, hosts):
    """Map new computes to cell1 now instead of waiting for the scheduler's periodic discovery."""
    def hypervisors_known():
        names = {h.name for h in conn.compute.hypervisors()}
        return all(h in names for h in hosts)
    wait_for('hypervisors registered', hypervisors_known, 60, interval=0.5)
    run([os.path.join(BIN, 'nova-manage')] + nova_args() + ['cell_v2', 'discover_hosts'])


# ---------------------------------------------------------------------------------------------------------
# commands


def cmd_up(args):
    t0 = time.monotonic()
    if args.fresh:
        cmd_down(args)
        shutil.rmtree(STATE, ignore_errors=True)
    os.makedirs(STATE, exist_ok=True)
    existing = host_names()
    count = args.computes or len(existing) or 3
    start_mariadb()
    start_rabbitmq()
    holder = []
    conn = start_openstack(holder)
    hosts = setup_hosts(count, {})
    start_bmcs(hosts)
    for host in hosts:
        power_on(host)
    wait_up(conn, hosts)
    discover_hosts(conn, hosts)
    init_resources(conn)
    for host, svc in compute_services(conn).items():
        if host not in hosts:
            continue  # a host from a larger earlier lab: left alone
    elapsed = time.monotonic() - t0
    return {'status': 'up', 'hosts': hosts, 'seconds': round(elapsed, 1), 'clouds_yaml': path('clouds.yaml'),
            'cloud': CLOUD_NAME}


SERVICE_ORDER = ['nova-scheduler', 'nova-conductor', 'nova-api', 'neutron', 'glance', 'placement',
                 'keystone', 'rabbitmq', 'mariadb']


def cmd_down(args):
    stopped = []
    hosts = host_names()
    for host in hosts:
        for pidfile in (os.path.join(host_dir(host), 'compute.pid'), path('run', 'bmc-%s.pid' % host)):
            pid = pid_of(pidfile)
            if pid:
                # a host's compute is killed outright, as a power cut would; so is its BMC
                stop_group(pid, timeout=0)
                stopped.append(os.path.basename(pidfile))
    for name in SERVICE_ORDER:
        pid = pid_of(path('run', name + '.pid'))
        if pid:
            stop_group(pid, timeout=20 if name in ('mariadb', 'rabbitmq') else 10)
            stopped.append(name)
    # epmd is started on demand by Erlang and outlives RabbitMQ
    if shutil.which('epmd'):
        subprocess.run(['epmd', '-kill'], env=dict(os.environ, ERL_EPMD_PORT=str(PORTS['epmd'])),
                       capture_output=True)
    for host in hosts:
        if read(os.path.join(host_dir(host), 'power')) is not None:
            write(os.path.join(host_dir(host), 'power'), 'off')
    return {'status': 'down', 'stopped': stopped}


def cmd_status(args):
    services = {}
    for name in SERVICE_ORDER[::-1]:
        services[name] = 'running' if pid_of(path('run', name + '.pid')) else 'stopped'
    hosts = {}
    nova = {}
    if services['nova-api'] == 'running' and services['keystone'] == 'running':
        try:
            nova = compute_services(connect())
        except Exception as e:  # status must still report the rest
            services['nova-api'] = 'error: %s' % e
    for host in host_names():
        svc = nova.get(host)
        hosts[host] = {
            'nova_state': svc.state if svc else None,
            'forced_down': svc.is_forced_down if svc else None,
            'disabled': (svc.status == 'disabled') if svc else None,
            'disabled_reason': svc.disabled_reason if svc else None,
            'bmc_power': bmc_power(host) if pid_of(path('run', 'bmc-%s.pid' % host)) else 'bmc-stopped',
            'bmc_fail_mode': bmc_config(host).get('fail_mode'),
            'live_migration_fail': (read(live_migration_fail_file(host)) or '').strip() or None,
            'compute': compute_state(host),
            'service': service_state(host),
        }
    return {'services': services, 'hosts': hosts}


# Group vars of the lab inventory's compute_hosts: what an operator puts in group_vars for the runbooks. Two fence
# levels per host (IPMI, then Redfish) built from each host's BMC variables, and the lab's cloud for every role.
RUNBOOK_VARS = {
    'openstack_ha_cloud': CLOUD_NAME,
    'host_fence_cloud': CLOUD_NAME,
    'host_fence_report_interval': REPORT_INTERVAL,
    'host_fence_bmc_username': '{{ bmc_username }}',
    'host_fence_bmc_password': '{{ bmc_password }}',
    # the host's sshd, probed before a failover: a host whose sshd still sends its banner is not failed over.
    # Not a fence_verify probe here: fence_verify counts a refused connection as a living network stack, true on a
    # real network, but in the lab every "host" is 127.0.0.1 and the refusal comes from the controller itself.
    'host_failover_probes': [{'host': '{{ host_ssh_address }}', 'port': '{{ host_ssh_port }}'}],
    'host_fence_levels': [
        {'name': 'ipmi', 'methods': [{'type': 'ipmi', 'address': '{{ bmc_address }}', 'port': '{{ bmc_ipmi_port }}'}]},
        {'name': 'redfish', 'methods': [{'type': 'redfish', 'address': '{{ bmc_redfish_url }}'}]},
    ],
}


def cmd_env(args):
    hosts = {}
    for host in host_names():
        cfg = bmc_config(host)
        hosts[host] = {
            'bmc_address': cfg['address'], 'ipmi_port': cfg['ipmi_port'],
            'redfish_url': 'http://%s:%d' % (cfg['address'], cfg['redfish_port']),
            'bmc_username': cfg['username'], 'bmc_password': cfg['password'],
            'ssh_address': ADDR, 'ssh_port': SSH_PORT_BASE + host_names().index(host) + 1,
            'ssh_user': SSH_USER, 'ssh_private_key_file': path('ssh', 'id_ed25519'),
            'state_dir': host_dir(host),
        }
    inventory = {'all': {'children': {'compute_hosts': {'hosts': {
        h: {'ansible_connection': 'local', 'bmc_address': v['bmc_address'], 'bmc_ipmi_port': v['ipmi_port'],
            'bmc_redfish_url': v['redfish_url'], 'bmc_username': v['bmc_username'],
            'bmc_password': v['bmc_password'], 'host_ssh_address': v['ssh_address'],
            'host_ssh_port': v['ssh_port'],
            # how Ansible reaches the host itself over SSH (the runbooks run on the controller - connection
            # local - except a task that sets ansible_connection: ssh, such as service_recover's restart)
            'ansible_host': v['ssh_address'], 'ansible_port': v['ssh_port'], 'ansible_user': v['ssh_user'],
            'ansible_ssh_private_key_file': v['ssh_private_key_file'],
            # the lab's host keys are new with every fresh lab: no host key checking; no SSH master connection
            # left behind (it would outlive the host's power off: sshd's session processes are not in its group)
            'ansible_ssh_common_args': '-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null',
            'ansible_ssh_args': '-o ControlMaster=no -o ControlPersist=no'}
        for h, v in hosts.items()}, 'vars': RUNBOOK_VARS}}}}
    write(path('inventory.json'), json.dumps(inventory, indent=1), mode=0o600)
    return {'clouds_yaml': path('clouds.yaml'), 'cloud': CLOUD_NAME, 'inventory': path('inventory.json'),
            'hosts': hosts, 'state_dir': STATE, 'logs': path('log'), 'venv': VENV,
            'report_interval': REPORT_INTERVAL, 'service_down_time': SERVICE_DOWN_TIME}


def cmd_boot(args):
    check_host(args.host)
    conn = connect()
    flavor = conn.compute.find_flavor(args.flavor, ignore_missing=False)
    image = conn.image.find_image('ohlab-image', ignore_missing=False)
    net = conn.network.find_network('ohlab-net', ignore_missing=False) if args.port else None
    created = []
    for i in range(args.count):
        name = '%s-%s-%d-%d' % (args.prefix, args.host, int(time.time() * 1000) % 100000000, i)
        kwargs = {'name': name, 'flavor_id': flavor.id, 'image_id': image.id,
                  'availability_zone': 'nova:%s' % args.host}
        if net:
            port = conn.network.create_port(network_id=net.id, name=name + '-port')
            kwargs['networks'] = [{'port': port.id}]
        else:
            kwargs['networks'] = 'none'
        created.append(conn.compute.create_server(**kwargs))
    servers = []
    for server in created:
        server = conn.compute.wait_for_server(server, status='ACTIVE', failures=['ERROR'], interval=0.5,
                                              wait=max(120, args.count * 3))
        servers.append({'id': server.id, 'name': server.name, 'host': server.compute_host,
                        'status': server.status})
    return {'servers': servers}


def cmd_crash(args):
    check_host(args.host)
    pid = compute_pid(args.host)
    if not pid:
        return {'host': args.host, 'crashed': False, 'reason': 'compute process already dead'}
    os.killpg(pid, signal.SIGKILL)
    wait_for('compute of %s to die' % args.host, lambda: not compute_pid(args.host), 10)
    return {'host': args.host, 'crashed': True, 'pid': pid}


def cmd_freeze(args, sig=signal.SIGSTOP):
    check_host(args.host)
    pid = compute_pid(args.host)
    if not pid:
        raise LabError('the compute process of %s is not running' % args.host)
    os.killpg(pid, sig)
    want = 'frozen' if sig == signal.SIGSTOP else 'alive'
    wait_for('%s to be %s' % (args.host, want), lambda: compute_state(args.host) == want, 5, interval=0.05)
    return {'host': args.host, 'compute': want, 'pid': pid}


def cmd_bmc(args):
    check_host(args.host)
    if bool(args.fail) == bool(args.ok):
        raise LabError('bmc %s: give exactly one of --fail MODE or --ok' % args.host)
    fname = os.path.join(host_dir(args.host), 'bmc.json')
    cfg = json.loads(read(fname))
    cfg['fail_mode'] = args.fail
    if args.delay is not None:
        cfg['slow_delay'] = args.delay
    write(fname, json.dumps(cfg, indent=1), mode=0o600)
    return {'host': args.host, 'fail_mode': args.fail, 'slow_delay': cfg['slow_delay']}


def unforce(conn, svc, host, timeout=240):
    """Lift forced_down. Nova refuses it while evacuation migrations from the host are still 'done': the
    host's restarted compute marks them 'completed' within seconds, so retry until then. A compute start completes
    one evacuation migration per instance, so an instance with two (nova_evacuate repeated its lost evacuation)
    needs a second start; and a compute that started while its host's evacuations were still under way (the host
    powered on mid-failover) never completes them either. So while Nova refuses, the compute is restarted - each
    time only once the running one has reported to Nova after its start (its start-up clean-up is over), at most
    three times."""
    import datetime
    import openstack.exceptions
    since = [datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)]
    restarts = []

    def reported_since_start():
        # nova-compute reports only after init_host, whose _destroy_evacuated_instances is the clean-up
        updated = getattr(compute_services(conn).get(host), 'updated_at', None)
        if not updated:
            return False
        stamp = datetime.datetime.fromisoformat(str(updated).replace('Z', '').split('+')[0])
        return stamp > since[0] + datetime.timedelta(seconds=2)

    def attempt():
        try:
            conn.compute.update_service_forced_down(svc, host, 'nova-compute', False)
        except openstack.exceptions.BadRequestException:
            if len(restarts) < 3 and reported_since_start():
                restarts.append(host)
                restart_compute(host)
                since[0] = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
            return False
        return True
    wait_for('Nova to accept forced_down=false for %s (evacuations cleaned up)' % host, attempt, timeout,
             interval=1)


def cmd_reset(args):
    t0 = time.monotonic()
    conn = connect()
    hosts = host_names()
    # Hosts first, servers after: a host that was evacuated must come back while its evacuated instances still
    # exist, because its restarted compute completes the 'done' evacuation migrations only for existing
    # instances, and Nova refuses forced_down=false while any 'done' one remains.
    for host in hosts:
        fname = os.path.join(host_dir(host), 'bmc.json')
        cfg = json.loads(read(fname))
        if cfg.get('fail_mode'):
            cfg['fail_mode'] = None
            write(fname, json.dumps(cfg, indent=1), mode=0o600)
        if os.path.exists(live_migration_fail_file(host)):
            os.unlink(live_migration_fail_file(host))
        if os.path.exists(os.path.join(host_dir(host), SERVICE_BROKEN_FILE)):
            os.unlink(os.path.join(host_dir(host), SERVICE_BROKEN_FILE))
        if os.path.exists(os.path.join(host_dir(host), CRASH_INSTANCES_FILE)):
            os.unlink(os.path.join(host_dir(host), CRASH_INSTANCES_FILE))
        pid = compute_pid(host)
        if pid and compute_state(host) == 'frozen':
            os.killpg(pid, signal.SIGCONT)
        if pid:
            # a lying BMC may have written "off" while the host kept running: the chassis is on
            write(os.path.join(host_dir(host), 'power'), 'on')
        power_on(host)
        if wait_booted(host) in ('inactive', 'failed'):  # labctl service HOST --stop: the host is up, not it
            service_start(host)
    services = compute_services(conn)
    for host in hosts:
        svc = services.get(host)
        if svc and svc.is_forced_down:
            unforce(conn, svc, host)
    wait_up(conn, hosts)
    services = compute_services(conn)
    for host in hosts:
        svc = services.get(host)
        if svc and svc.status == 'disabled':
            conn.compute.enable_service(svc, host, 'nova-compute')
    from openstack import exceptions as sdk_exceptions  # the lab venv's openstacksdk, as conn's
    servers = list(conn.compute.servers(all_projects=True))
    for server in servers:
        try:
            conn.compute.delete_server(server, force=True)
        except sdk_exceptions.NotFoundException:
            pass  # gone since the list (seen once: a reset right after another one, its deletes still finishing)
    for server in servers:
        conn.compute.wait_for_delete(server, interval=0.5, wait=120)
    for port in conn.network.ports(network_id=conn.network.find_network('ohlab-net').id):
        conn.network.delete_port(port)
    resized = [host for host in hosts if os.path.exists(os.path.join(host_dir(host), 'size.json'))]
    if resized:  # now empty: back to the default size
        set_sizes(conn, dict((host, None) for host in resized))
    return {'status': 'reset', 'servers_deleted': len(servers), 'sizes_restored': resized,
            'seconds': round(time.monotonic() - t0, 1)}


def restart_compute(host):
    """Kill HOST's compute and start it again through its BMC (power cycle), as after a crash."""
    pid = compute_pid(host)
    if pid:
        os.killpg(pid, signal.SIGKILL)
        wait_for('compute of %s to die' % host, lambda: not compute_pid(host), 10)
    power_on(host)


def provider_inventory(conn, host):
    """{vcpus, memory_mb, disk_gb} totals of the host's resource provider in Placement."""
    classes = {'VCPU': 'vcpus', 'MEMORY_MB': 'memory_mb', 'DISK_GB': 'disk_gb'}
    totals = {}
    for provider in conn.placement.resource_providers(name=host):
        for inventory in conn.placement.resource_provider_inventories(provider):
            if inventory.resource_class in classes:
                totals[classes[inventory.resource_class]] = inventory.total
    return totals


def set_sizes(conn, sizes_by_host):
    """Give hosts another fake capacity: {host: {vcpus, memory_mb, disk_gb} (any of them), or None for the
    default}. Writes each host's size.json (removed for the default) and the size into its compute.json, restarts
    their computes and waits until Placement has the new inventories. The hosts must hold no server: the fake
    driver keeps guests in memory, a restarted compute comes back without them. -> {host: size}"""
    for host in sizes_by_host:
        servers = [s.name for s in conn.compute.servers(all_projects=True, host=host)]
        if servers:
            raise LabError('resize %s: it holds %d server(s) (%s); the fake driver forgets its guests when its '
                           'compute restarts: resize an empty host (labctl reset deletes every server)'
                           % (host, len(servers), ', '.join(sorted(servers)[:5])))
    done = {}
    for host, sizes in sizes_by_host.items():
        hdir = host_dir(host)
        fname = os.path.join(hdir, 'size.json')
        if sizes is None:
            if os.path.exists(fname):
                os.unlink(fname)
        else:
            write(fname, json.dumps(sizes))
        done[host] = size = dict(DEFAULT_SIZE, **(sizes or {}))
        cfg_file = os.path.join(hdir, 'compute.json')
        cfg = json.loads(read(cfg_file))
        cfg['env'].update({SIZE_ENV[key]: str(value) for key, value in size.items()})
        write(cfg_file, json.dumps(cfg, indent=1))
    for host in sizes_by_host:
        restart_compute(host)
    for host, size in done.items():
        wait_for('Placement inventory of %s to be %s' % (host, size),
                 lambda h=host, s=size: provider_inventory(conn, h) == s, 120, interval=0.5)
    wait_up(conn, list(sizes_by_host))
    return done


def cmd_resize(args):
    check_host(args.host)
    sizes = {key: getattr(args, key) for key in SIZE_ENV if getattr(args, key) is not None}
    if bool(sizes) == bool(args.default):
        raise LabError('resize %s: give --vcpus, --memory-mb and/or --disk-gb, or --default' % args.host)
    size = set_sizes(connect(), {args.host: None if args.default else sizes})[args.host]
    return {'host': args.host, 'size': size}


def live_migration_fail_file(host):
    return os.path.join(host_dir(host), LIVE_MIGRATION_FAIL_FILE)


def cmd_live_migration(args):
    check_host(args.host)
    if bool(args.fail) == bool(args.ok):
        raise LabError('live-migration %s: give exactly one of --fail MODE or --ok' % args.host)
    fname = live_migration_fail_file(args.host)
    if args.fail:
        write(fname, args.fail + '\n')
    elif os.path.exists(fname):
        os.unlink(fname)
    return {'host': args.host, 'live_migration_fail': args.fail}


def cmd_wait_up(args):
    hosts = args.hosts or host_names()
    for host in hosts:
        check_host(host)
    wait_up(connect(), hosts, timeout=args.timeout)
    return {'up': hosts}


def find_server(conn, name_or_id):
    server = conn.compute.find_server(name_or_id, ignore_missing=True, all_projects=True)
    if server is None:
        raise LabError('no server named or with the id %r' % name_or_id)
    return conn.compute.get_server(server.id)


def cmd_crash_instance(args):
    conn = connect()
    server = find_server(conn, args.server)
    host = server.compute_host
    if host not in host_names():
        raise LabError('server %s (%s) is on %r, not on a host of the lab' % (server.name, server.id, host))
    if not compute_pid(host) or compute_state(host) != 'alive':
        raise LabError('server %s is on %s, whose compute is %s: its guests cannot crash one by one'
                       % (server.name, host, compute_state(host)))
    t0 = time.monotonic()
    fname = os.path.join(host_dir(host), CRASH_INSTANCES_FILE)
    with open(fname, 'a') as f:
        f.write(server.id + '\n')
    wait_for('the fake hypervisor of %s to crash %s' % (host, server.name), lambda: not os.path.exists(fname), 10,
             interval=0.1)
    result = {'server': server.name, 'id': server.id, 'host': host, 'status_before': server.status, 'crashed': True}
    if not args.no_wait:
        wait_for('Nova to show %s SHUTOFF (power-state sync every %d s)' % (server.name, SYNC_POWER_STATE_INTERVAL),
                 lambda: conn.compute.get_server(server.id).status == 'SHUTOFF',
                 SYNC_POWER_STATE_INTERVAL * 4 + 30, interval=0.5)
        result['status_after'] = 'SHUTOFF'
        result['seconds_to_shutoff'] = round(time.monotonic() - t0, 1)
    return result


def cmd_site_outage(args):
    """Every host off through its BMC at once, as when the site loses power; the control plane stays up."""
    hosts = host_names()
    for host in hosts:
        ipmitool(host, 'power', 'off')
    for host in hosts:
        wait_for('compute of %s to die' % host, lambda h=host: not compute_pid(h), 15)
    return {'powered_off': hosts, 'bmc_power': {host: bmc_power(host) for host in hosts}}


RESTARTABLE = ('rabbitmq', 'nova-conductor', 'nova-scheduler', 'nova-api')


def cmd_restart(args):
    """Stop SERVICE (SIGTERM, SIGKILL after 10 s) and start it again; returns when it answers again."""
    t0 = time.monotonic()
    pid = pid_of(path('run', args.service + '.pid'))
    if pid:
        stop_group(pid, timeout=10)
    stopped = time.monotonic()
    if args.service == 'rabbitmq':
        start_rabbitmq()
    elif args.service == 'nova-api':
        uwsgi('nova-api', 'nova.wsgi.osapi_compute:application', PORTS['nova'], svc_env('nova'), threads=16)
        wait_for('nova-api', lambda: http_ok('http://%s:%d/' % (ADDR, PORTS['nova'])), 90)
    else:
        spawn(args.service, [os.path.join(BIN, args.service)] + nova_args())
    return {'service': args.service, 'old_pid': pid, 'pid': pid_of(path('run', args.service + '.pid')),
            'stop_seconds': round(stopped - t0, 1), 'seconds': round(time.monotonic() - t0, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog='labctl', description=__doc__.split('\n')[0])
    parser.add_argument('--json', action='store_true', help='machine-readable output')
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('up')
    p.add_argument('--computes', type=int)
    p.add_argument('--fresh', action='store_true', help='wipe the lab state first')
    sub.add_parser('down')
    sub.add_parser('status')
    sub.add_parser('env')
    p = sub.add_parser('boot')
    p.add_argument('--count', type=int, default=1)
    p.add_argument('--host', required=True)
    p.add_argument('--port', action='store_true', help='give each server a port on ohlab-net')
    p.add_argument('--flavor', default='ohlab.tiny')
    p.add_argument('--prefix', default='vm')
    for name in ('crash', 'freeze', 'thaw'):
        sub.add_parser(name).add_argument('host')
    p = sub.add_parser('bmc')
    p.add_argument('host')
    p.add_argument('--fail', choices=FAIL_MODES)
    p.add_argument('--ok', action='store_true')
    p.add_argument('--delay', type=float, help='seconds, for --fail slow')
    sub.add_parser('reset')
    p = sub.add_parser('resize')
    p.add_argument('host')
    p.add_argument('--vcpus', type=int)
    p.add_argument('--memory-mb', dest='memory_mb', type=int)
    p.add_argument('--disk-gb', dest='disk_gb', type=int)
    p.add_argument('--default', action='store_true', help='back to the default size')
    p = sub.add_parser('live-migration')
    p.add_argument('host')
    p.add_argument('--fail', choices=LIVE_MIGRATION_FAIL_MODES)
    p.add_argument('--ok', action='store_true')
    p = sub.add_parser('service')
    p.add_argument('host')
    action = p.add_mutually_exclusive_group()
    for flag in ('stop', 'start', 'restart', 'broken', 'ok'):
        action.add_argument('--' + flag, action='store_true')
    p = sub.add_parser('crash-instance')
    p.add_argument('server', help='name or id')
    p.add_argument('--no-wait', dest='no_wait', action='store_true',
                   help='return when the guest is off, before Nova notices')
    sub.add_parser('site-outage')
    p = sub.add_parser('wait-up')
    p.add_argument('hosts', nargs='*')
    p.add_argument('--timeout', type=float, default=90)
    sub.add_parser('restart').add_argument('service', choices=RESTARTABLE)
    args = parser.parse_args(argv)
    # json flag may also come after the sub-command
    handlers = {'up': cmd_up, 'down': cmd_down, 'status': cmd_status, 'env': cmd_env, 'boot': cmd_boot,
                'crash': cmd_crash, 'freeze': cmd_freeze, 'thaw': lambda a: cmd_freeze(a, signal.SIGCONT),
                'bmc': cmd_bmc, 'reset': cmd_reset, 'wait-up': cmd_wait_up, 'resize': cmd_resize,
                'live-migration': cmd_live_migration, 'service': cmd_service,
                'crash-instance': cmd_crash_instance, 'site-outage': cmd_site_outage, 'restart': cmd_restart}
    try:
        result = handlers[args.command](args)
    except LabError as e:
        print('labctl %s: %s' % (args.command, e), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        print(human(args.command, result))
    return 0


def human(command, result):
    if command == 'status':
        lines = ['services: ' + ', '.join('%s=%s' % kv for kv in result['services'].items())]
        for host, h in result['hosts'].items():
            lines.append('%-10s nova=%-5s forced_down=%-5s disabled=%-5s bmc=%-8s compute=%s service=%s%s' % (
                host, h['nova_state'], h['forced_down'], h['disabled'], h['bmc_power'], h['compute'], h['service'],
                ' (bmc fail mode: %s)' % h['bmc_fail_mode'] if h['bmc_fail_mode'] else ''))
        return '\n'.join(lines)
    if command == 'env':
        result = dict(result)
        result['hosts'] = {h: dict(v, bmc_password='********') for h, v in result['hosts'].items()}
    return json.dumps(result, indent=1, default=str)


if __name__ == '__main__':
    sys.exit(main())
