"""A duplicate alert storm for one failed host: the shipped rulebook in real ansible-rulebook, the real runbook,
the real lab. Twenty identical Alertmanager notifications, posted at once from many threads straight to the
collection's alertmanager source, must make exactly one recovery: one run report, one evacuation per instance.
(The storm of many hosts at once and every rulebook rule are tests/eda's, with a recording playbook.)
"""

import glob
import json
import os
import secrets
import sys
import threading
import time

import pytest
import yaml

from lab_helpers import REPO, wait_for

sys.path.insert(0, os.path.join(REPO, 'tests', 'eda'))
from eda_helpers import Process, collections_dir, free_port, http, listening, probe, tool  # noqa: E402

pytestmark = pytest.mark.timeout(1200, func_only=True)

TOKEN = 'eda-' + secrets.token_hex(16)
STORM = 20


def test_duplicate_alert_storm_makes_one_recovery(scenario):
    scenario.prepare('compute2', servers=3)
    tmp = scenario.dir / 'eda'
    tmp.mkdir()
    inventory = json.loads(json.dumps(scenario.inventory))
    inventory['all']['children']['compute_hosts']['vars'].update(
        host_failover_report_dir=str(scenario.reports), host_failover_lock_dir=str(scenario.locks))
    (tmp / 'inventory.yml').write_text(yaml.safe_dump(inventory))
    port = free_port()
    (tmp / 'vars.yml').write_text(yaml.safe_dump({'openstack_ha_listen_port': port}))
    (tmp / 'private').mkdir()
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
               ANSIBLE_COLLECTIONS_PATH=collections_dir(tmp), ALERTMANAGER_WEBHOOK_TOKEN=TOKEN,
               OS_CLIENT_CONFIG_FILE=scenario.lab['clouds_yaml'], ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_NOCOLOR='1', TMPDIR=str(tmp / 'private'))
    rulebook = Process([tool('ansible-rulebook'), '-r', 'openstack_ha.recovery.host_failover', '-i', 'inventory.yml',
                        '--vars', 'vars.yml', '-E', 'ALERTMANAGER_WEBHOOK_TOKEN', '-v'],
                       str(tmp / 'ansible-rulebook.log'), cwd=str(tmp), env=env)
    try:
        url = 'http://127.0.0.1:%d' % port
        wait_for('the rulebook listening', lambda: listening(port) and probe(url) == 405, 120)
        body = json.dumps({'version': '4', 'receiver': 'openstack-ha-recovery', 'status': 'firing', 'alerts': [
            {'status': 'firing', 'labels': {'alertname': 'ComputeHostDown', 'openstack_ha': 'recover',
                                            'host': scenario.host}}]}).encode()
        answers = []
        started = time.monotonic()
        headers = {'Authorization': 'Bearer ' + TOKEN}
        posts = [threading.Thread(target=lambda: answers.append(http(url + '/alerts', body, headers, 'POST')))
                 for number in range(STORM)]
        for post in posts:
            post.start()
        for post in posts:
            post.join()
        assert [answer[0] for answer in answers] == [200] * STORM, answers
        found = wait_for('a failover report (rulebook log: %s)' % rulebook.log,
                         lambda: glob.glob(str(scenario.reports / '*.json')), 900, interval=0.5)
        # every run the storm started has ended (ansible-rulebook's private run directories are gone)
        wait_for('every run to end', lambda: not glob.glob(str(tmp / 'private' / 'eda*')), 300, interval=0.5)
        scenario.seconds = time.monotonic() - started
        reports = sorted(glob.glob(str(scenario.reports / '*.json')))
    finally:
        rulebook.stop()
    assert len(reports) == 1, 'the storm made %d runs: %s' % (len(reports), reports)
    with open(found[0]) as handle:
        report = json.load(handle)
    scenario.check(report, outcome='%s (1 run of %d alerts)' % (report['outcome'], STORM))
