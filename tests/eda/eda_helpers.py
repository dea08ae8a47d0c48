"""Helpers of the end-to-end tests in tests/eda: processes in their own session (lab/session_process.py), free ports, polling with the
process's log on failure, plain HTTP, and the shipped Alertmanager configuration adapted to a test.

Import from here (`from eda_helpers import ...`), never from a conftest or another test module.
"""

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, 'lab'))

# A process started by a test, in its own session; stop() ends that session's process group only (shared with
# bench/recovery.py: lab/session_process.py).
from session_process import SessionProcess as Process  # noqa: E402,F401  (after the path above; re-exported)
BIN = os.path.dirname(sys.executable)
SHIPPED_ALERTMANAGER_CONFIG = os.path.join(REPO, 'docs', 'monitoring', 'alertmanager.yml')
STARTUP = 90  # seconds: Alertmanager ~0.2 s, ansible-rulebook (JVM, Drools) 3-4 s on this machine kind


def tool(name):
    found = shutil.which(name, path=BIN + os.pathsep + os.environ.get('PATH', ''))
    if not found:
        pytest.fail('%s is not installed: the end-to-end tests need Debian prometheus-alertmanager (amtool), '
                    'Java 17 and pip install -r eda-requirements.txt' % name)
    return found


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def listening(port):
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(('127.0.0.1', port)) == 0


def read(path):
    with open(path, errors='replace') as handle:
        return handle.read()


def wait_for(what, check, process, log, timeout, interval=0.02):
    """Poll check() until it returns a true value; fail early, with the log, if the process died."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if process is not None and process.poll() is not None:
            pytest.fail('%s: the process exited with %s before that. Its output:\n%s'
                        % (what, process.returncode, read(log)[-6000:]))
        if time.monotonic() > deadline:
            pytest.fail('%s: not within %s s. Output:\n%s' % (what, timeout, read(log)[-6000:] if log else ''))
        time.sleep(interval)


def http(url, body=None, headers=None, method=None, timeout=5):
    """(status, text) of one request, 4xx/5xx included."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def probe(url):
    """Status of a GET, or None while the server does not answer yet."""
    try:
        return http(url, timeout=2)[0]
    except (OSError, urllib.error.URLError):
        return None


def collections_dir(tmp):
    """TMP/collections holding ansible_collections/openstack_ha/recovery -> this checkout (FQCN names resolve)."""
    namespace = os.path.join(str(tmp), 'collections', 'ansible_collections', 'openstack_ha')
    os.makedirs(namespace, exist_ok=True)
    os.symlink(REPO, os.path.join(namespace, 'recovery'))
    return os.path.join(str(tmp), 'collections')


def localhost_inventory(path):
    with open(str(path), 'w') as out:
        yaml.safe_dump({'all': {'hosts': {'localhost': {
            'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}}}}, out)


def alertmanager_config(source_url, token_file, wrong_token, receiver_name='openstack-ha-recovery'):
    """The shipped alertmanager.yml with the test's URL, token file and timings for RECEIVER_NAME's route, plus a
    receiver holding a wrong token for alerts labelled token="wrong"."""
    with open(SHIPPED_ALERTMANAGER_CONFIG) as handle:
        config = yaml.safe_load(handle)
    recovery_route, = [route for route in config['route']['routes'] if route['receiver'] == receiver_name]
    recovery_route.update(group_wait='0s', group_interval='1s')
    receiver, = [entry for entry in config['receivers'] if entry['name'] == receiver_name]
    webhook, = receiver['webhook_configs']
    webhook['url'] = source_url
    webhook['http_config']['authorization']['credentials_file'] = token_file
    wrong = {'name': 'wrong-token', 'webhook_configs': [dict(webhook, http_config={
        'authorization': {'type': 'Bearer', 'credentials': wrong_token}})]}
    config['receivers'].append(wrong)
    config['route']['routes'].insert(0, {'receiver': 'wrong-token', 'matchers': ['token="wrong"'],
                                         'group_by': ['host'], 'group_wait': '0s', 'group_interval': '1s'})
    return config


def start_alertmanager(tmp, source_url, token, wrong_token, receiver_name='openstack-ha-recovery'):
    """Alertmanager (Debian prometheus-alertmanager) on a free loopback port, ready, sending RECEIVER_NAME's alerts
    to SOURCE_URL; returns (process, url)."""
    token_file = os.path.join(str(tmp), 'alertmanager.token')
    with open(token_file, 'w') as out:
        out.write(token)
    config = os.path.join(str(tmp), 'alertmanager.yml')
    with open(config, 'w') as out:
        yaml.safe_dump(alertmanager_config(source_url, token_file, wrong_token, receiver_name), out)
    port = free_port()
    process = Process([tool('prometheus-alertmanager'), '--config.file=%s' % config,
                       '--storage.path=%s' % os.path.join(str(tmp), 'alertmanager-data'),
                       '--web.listen-address=127.0.0.1:%d' % port, '--cluster.listen-address=', '--log.level=debug'],
                      os.path.join(str(tmp), 'alertmanager.log'))
    url = 'http://127.0.0.1:%d' % port
    wait_for('Alertmanager ready', lambda: listening(port) and probe(url + '/-/ready') == 200,
             process.popen, process.log, STARTUP)
    return process, url


class RulebookRun:
    """ansible-rulebook running the shipped rulebook openstack_ha.recovery.NAME in directory TMP (its inventory.yml,
    vars.yml with PORT_VARIABLE set to a free port, this checkout as the collection), and Alertmanager with the
    shipped alertmanager.yml sending RECEIVER's alerts to it with TOKEN; both ready when this returns. ENV: more
    environment for the rulebook (e.g. OS_CLIENT_CONFIG_FILE). stop() ends both."""

    def __init__(self, tmp, name, inventory, port_variable, token, receiver='openstack-ha-recovery', env=None):
        self.tmp = str(tmp)
        with open(os.path.join(self.tmp, 'inventory.yml'), 'w') as out:
            yaml.safe_dump(inventory, out)
        port = free_port()
        with open(os.path.join(self.tmp, 'vars.yml'), 'w') as out:
            yaml.safe_dump({port_variable: port}, out)
        environment = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''),
                           ANSIBLE_COLLECTIONS_PATH=collections_dir(self.tmp), ALERTMANAGER_WEBHOOK_TOKEN=token,
                           ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR='1', TMPDIR=self.tmp,
                           **(env or {}))
        self.processes = []
        try:
            self.rulebook = Process([tool('ansible-rulebook'), '-r', 'openstack_ha.recovery.' + name, '-i',
                                     'inventory.yml', '--vars', 'vars.yml', '-E', 'ALERTMANAGER_WEBHOOK_TOKEN', '-v'],
                                    os.path.join(self.tmp, 'ansible-rulebook.log'), cwd=self.tmp, env=environment)
            self.processes.append(self.rulebook)
            url = 'http://127.0.0.1:%d' % port
            alertmanager, self.am_url = start_alertmanager(self.tmp, url + '/alerts', token, 'eda-wrong', receiver)
            self.processes.append(alertmanager)
            wait_for('the rulebook listening', lambda: listening(port) and probe(url) == 405, self.rulebook.popen,
                     self.rulebook.log, STARTUP)
        except BaseException:
            self.stop()
            raise

    def alert(self, *labels):
        """Fire an alert with LABELS through Alertmanager (amtool); -> the time it was sent (before amtool ran)."""
        sent = time.time()
        subprocess.run([tool('amtool'), 'alert', 'add'] + list(labels) + ['--alertmanager.url=' + self.am_url],
                       check=True, capture_output=True, timeout=30)
        return sent

    def json_files(self, pattern, count=1, timeout=300):
        """The JSON files matching PATTERN (in TMP), once COUNT exist, loaded (sorted by name). The runbooks write
        their reports with ansible.builtin.copy, which renames a whole file into place."""
        def found():
            paths = sorted(glob.glob(os.path.join(self.tmp, pattern)))
            return paths if len(paths) >= count else None
        loaded = []
        for path in wait_for('%d file(s) %s' % (count, pattern), found, self.rulebook.popen, self.rulebook.log,
                             timeout, interval=0.5):
            with open(path) as handle:
                loaded.append(json.load(handle))
        return loaded

    def log(self):
        return read(self.rulebook.log)

    def stop(self):
        for process in reversed(self.processes):
            process.stop()
