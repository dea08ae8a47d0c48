"""The event source openstack_ha.recovery.alertmanager, served for real on loopback and driven over HTTP.

Each test starts the source's aiohttp server in-process on a free port (port 0), posts to it with an aiohttp
client and looks at the answer and at the queue ansible-rulebook would read. The file is loaded from its path,
as ansible-rulebook loads it (runpy), not through the collection's package.
"""

import asyncio
import contextlib
import hashlib
import hmac
import importlib.util
import json
import logging
import os
import socket
import ssl
import subprocess

import pytest
import yaml

import aiohttp  # noqa: E402  (eda-requirements.txt; make venv installs it)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SOURCE_PATH = os.path.join(REPO, 'extensions', 'eda', 'plugins', 'event_source', 'alertmanager.py')
TOKEN = 'tok-3f9a1c77e2b54d0c8b1e6a2f4d9c0e11'
SECRET = 'hmac-9b2e7d41c6a84f3fa0d5e8b7c1f26a39'
DEADLINE = 10  # seconds any one scenario may take


def load_source():
    spec = importlib.util.spec_from_file_location('openstack_ha_recovery_event_source_alertmanager', SOURCE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SOURCE = load_source()


def notification(*alerts, **fields):
    """An Alertmanager 0.25 webhook body (version 4) carrying these alerts."""
    body = {
        'receiver': 'openstack-ha',
        'status': 'firing' if any(isinstance(a, dict) and a.get('status') == 'firing' for a in alerts) else 'resolved',
        'alerts': list(alerts),
        'groupLabels': {'host': 'compute1'},
        'commonLabels': {'alertname': 'NovaComputeDown'},
        'commonAnnotations': {},
        'externalURL': 'http://alertmanager.example.com:9093',
        'version': '4',
        'groupKey': '{}:{host="compute1"}',
        'truncatedAlerts': 0,
    }
    body.update(fields)
    return body


def alert(host, status='firing', alertname='NovaComputeDown'):
    return {
        'status': status,
        'labels': {'alertname': alertname, 'host': host, 'severity': 'critical'},
        'annotations': {'summary': 'nova-compute on %s is down' % host},
        'startsAt': '2026-01-05T10:00:00.000Z',
        'endsAt': '0001-01-01T00:00:00Z' if status == 'firing' else '2026-01-05T10:05:00.000Z',
        'generatorURL': 'http://prometheus.example.com:9090/graph?g0.expr=up%3D%3D0',
        'fingerprint': hashlib.sha256(host.encode()).hexdigest()[:16],
    }


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, DEADLINE))


class Served:
    def __init__(self, queue, url, addresses):
        self.queue = queue
        self.url = url
        self.addresses = addresses

    def events(self):
        found = []
        while not self.queue.empty():
            found.append(self.queue.get_nowait())
        return found


def url_of(address, port, scheme='http'):
    return '%s://%s:%d' % (scheme, '[%s]' % address if ':' in address else address, port)


@contextlib.asynccontextmanager
async def serving(**args):
    args.setdefault('port', 0)
    if 'hmac_secret' not in args:
        args.setdefault('token', TOKEN)
    args = {name: value for name, value in args.items() if value is not None}
    queue = asyncio.Queue()
    runner, addresses = await SOURCE.start(queue, SOURCE.parse_args(args))
    try:
        address, port = addresses[0]
        yield Served(queue, url_of(address, port, 'https' if 'certfile' in args else 'http'), addresses)
    finally:
        await runner.cleanup()


def bearer(token=TOKEN):
    return {'Authorization': 'Bearer %s' % token}


async def post(url, body, headers=None, path='/', method='POST', ssl_context=None):
    """(status, parsed JSON answer or text, headers) of one request; body may be bytes, a dict or None."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url + path, data=data, headers=headers or {}, ssl=ssl_context) as answer:
            text = await answer.text()
            try:
                content = json.loads(text)
            except ValueError:
                content = text
            return answer.status, content, answer.headers


# --- events ------------------------------------------------------------------------------------------------


def test_a_notification_of_two_alerts_becomes_two_events_with_the_alert_fields():
    body = notification(alert('compute1'), alert('compute2'))

    async def scenario():
        async with serving() as served:
            status, answer, dummy = await post(served.url, body, bearer(), path='/alerts')
            return status, answer, served.events()

    status, answer, events = run(scenario())
    assert (status, answer) == (200, {'events': 2})
    assert [event['alert'] for event in events] == body['alerts']
    for index, event in enumerate(events):
        assert event['receiver'] == 'openstack-ha'
        assert event['groupKey'] == '{}:{host="compute1"}'
        assert event['externalURL'] == 'http://alertmanager.example.com:9093'
        assert event['meta'] == {'endpoint': '/alerts', 'group': {
            'status': 'firing', 'groupLabels': {'host': 'compute1'}, 'commonLabels': {'alertname': 'NovaComputeDown'},
            'commonAnnotations': {}, 'truncatedAlerts': 0, 'index': index, 'count': 2}}
    assert [event['alert']['labels']['host'] for event in events] == ['compute1', 'compute2']


def test_resolved_alerts_are_emitted_with_status_resolved_for_the_rules_to_decide():
    body = notification(alert('compute1', status='resolved'))

    async def scenario():
        async with serving() as served:
            return await post(served.url, body, bearer()), served.events()

    (status, dummy, dummy2), events = run(scenario())
    assert status == 200
    assert [event['alert']['status'] for event in events] == ['resolved']
    assert events[0]['meta']['group']['status'] == 'resolved'


def test_keys_alertmanager_leaves_out_are_null_and_annotations_an_empty_object():
    minimal = {'status': 'firing', 'labels': {'host': 'compute7'}}
    event, = SOURCE.alert_events({'version': '4', 'alerts': [minimal]})
    assert event['alert'] == {'status': 'firing', 'labels': {'host': 'compute7'}, 'annotations': {},
                              'startsAt': None, 'endsAt': None, 'fingerprint': None, 'generatorURL': None}
    assert (event['receiver'], event['groupKey'], event['externalURL']) == (None, None, None)
    group = {'status': None, 'groupLabels': None, 'commonLabels': None, 'commonAnnotations': None,
             'truncatedAlerts': None, 'index': 0, 'count': 1}
    assert event['meta'] == {'endpoint': '/', 'group': group}


def test_an_empty_alert_list_is_accepted_and_makes_no_event():
    async def scenario():
        async with serving() as served:
            return await post(served.url, notification(), bearer()), served.events()

    (status, answer, dummy), events = run(scenario())
    assert (status, answer, events) == (200, {'events': 0}, [])


# --- Bearer token ------------------------------------------------------------------------------------------


@pytest.mark.parametrize('headers, reason', [
    ({}, 'missing Authorization header (Bearer token required)'),
    (bearer('wrong-token'), 'invalid Bearer token'),
    (bearer(TOKEN + 'x'), 'invalid Bearer token'),
    (bearer(TOKEN[:-1]), 'invalid Bearer token'),
    (bearer(''), 'invalid Bearer token'),
    ({'Authorization': 'Basic %s' % TOKEN}, 'Authorization scheme must be Bearer'),
    ({'Authorization': TOKEN}, 'Authorization scheme must be Bearer'),
    ({'Authorization': 'Bearer t\u00f6ken'}, 'invalid Bearer token'),
], ids=['missing', 'wrong', 'longer', 'prefix', 'empty', 'basic-scheme', 'no-scheme', 'non-ascii'])
def test_a_missing_or_wrong_token_is_refused_with_401_and_makes_no_event(headers, reason):
    async def scenario():
        async with serving() as served:
            return await post(served.url, notification(alert('compute1')), headers), served.events()

    (status, answer, answer_headers), events = run(scenario())
    assert (status, answer) == (401, {'error': reason})
    assert answer_headers['WWW-Authenticate'] == 'Bearer'
    assert events == []


def test_whitespace_around_the_configured_token_is_ignored():
    async def scenario():
        async with serving(token='\n%s\n' % TOKEN) as served:
            return (await post(served.url, notification(alert('compute1')), bearer()))[0]

    assert run(scenario()) == 200


def test_the_bearer_scheme_is_case_insensitive():
    async def scenario():
        async with serving() as served:
            return await post(served.url, notification(alert('compute1')), {'Authorization': 'bearer ' + TOKEN})

    assert run(scenario())[0] == 200


def test_the_token_is_checked_before_the_body_so_an_unauthenticated_caller_learns_nothing_about_it():
    async def scenario():
        async with serving() as served:
            return await post(served.url, b'{not json', bearer('wrong'))

    status, answer, dummy = run(scenario())
    assert (status, answer) == (401, {'error': 'invalid Bearer token'})


# --- HMAC --------------------------------------------------------------------------------------------------


def signed(body, secret=SECRET, algo='sha256', prefix='', header='X-Hub-Signature-256', upper=False):
    digest = hmac.new(secret.encode(), body, getattr(hashlib, algo)).hexdigest()
    return {header: prefix + (digest.upper() if upper else digest)}


BODY = json.dumps(notification(alert('compute1'))).encode()


@pytest.mark.parametrize('options, headers', [
    ({}, signed(BODY)),
    ({}, signed(BODY, prefix='sha256=')),
    ({}, signed(BODY, upper=True)),
    ({'hmac_algo': 'sha512', 'hmac_header': 'X-Relay-Signature'},
     signed(BODY, algo='sha512', header='X-Relay-Signature')),
    ({'hmac_algo': 'sha384'}, signed(BODY, algo='sha384', prefix='sha384=')),
], ids=['hex', 'prefixed', 'uppercase', 'sha512-own-header', 'sha384-prefixed'])
def test_a_good_hmac_signature_of_the_raw_body_is_accepted(options, headers):
    async def scenario():
        async with serving(hmac_secret=SECRET, **options) as served:
            return await post(served.url, BODY, headers), served.events()

    (status, answer, dummy), events = run(scenario())
    assert (status, answer) == (200, {'events': 1})
    assert events[0]['alert']['labels']['host'] == 'compute1'


@pytest.mark.parametrize('headers, reason', [
    ({}, 'missing X-Hub-Signature-256 header (HMAC signature required)'),
    (signed(BODY, secret='other-secret'), 'invalid X-Hub-Signature-256 signature'),
    (signed(BODY + b' '), 'invalid X-Hub-Signature-256 signature'),
    (signed(BODY, algo='sha512'), 'invalid X-Hub-Signature-256 signature'),
    (signed(BODY, prefix='sha1='), 'invalid X-Hub-Signature-256 signature'),
    (signed(BODY, header='X-Other-Signature'), 'missing X-Hub-Signature-256 header (HMAC signature required)'),
], ids=['missing', 'other-secret', 'other-body', 'other-algo', 'wrong-prefix', 'other-header'])
def test_a_missing_or_bad_hmac_signature_is_refused_with_401_and_makes_no_event(headers, reason):
    async def scenario():
        async with serving(hmac_secret=SECRET) as served:
            return await post(served.url, BODY, headers), served.events()

    (status, answer, answer_headers), events = run(scenario())
    assert (status, answer) == (401, {'error': reason})
    assert answer_headers['WWW-Authenticate'] == 'HMAC'
    assert events == []


def test_with_token_and_hmac_both_are_required():
    async def scenario():
        async with serving(token=TOKEN, hmac_secret=SECRET) as served:
            only_token = await post(served.url, BODY, bearer())
            only_signature = await post(served.url, BODY, signed(BODY))
            both = await post(served.url, BODY, dict(bearer(), **signed(BODY)))
            return only_token[0], only_signature[0], both[0], len(served.events())

    assert run(scenario()) == (401, 401, 200, 1)


# --- malformed and foreign bodies --------------------------------------------------------------------------


@pytest.mark.parametrize('body, reason', [
    (b'{"version": "4", "alerts": [', 'body is not JSON'),
    (b'', 'body is not JSON'),
    (b'\xff\xfe{}', 'body is not JSON'),
    (b'{"version": "4", "alerts": [], "truncatedAlerts": NaN}', 'body is not JSON: NaN is not JSON'),
    (b'[' * 200000 + b']' * 200000, 'body is not JSON: nested too deeply'),
], ids=['truncated', 'empty', 'not-utf8', 'nan', 'deep'])
def test_a_body_that_is_not_json_is_refused_with_400_and_makes_no_event(body, reason):
    async def scenario():
        async with serving() as served:
            return await post(served.url, body, bearer()), served.events()

    (status, answer, dummy), events = run(scenario())
    assert status == 400
    assert answer['error'].startswith(reason)
    assert events == []


NOT_ALERTMANAGER = [
    ([1, 2], 'not an Alertmanager notification: the body is not a JSON object'),
    ({'action': 'opened', 'repository': {}}, 'not an Alertmanager notification: version must be "4", got null'),
    (dict(notification(alert('c1')), version=4), 'not an Alertmanager notification: version must be "4", got 4'),
    (dict(notification(alert('c1')), version='3'), 'not an Alertmanager notification: version must be "4", got "3"'),
    ({'version': '4'}, 'not an Alertmanager notification: alerts must be a list'),
    ({'version': '4', 'alerts': {'status': 'firing'}}, 'not an Alertmanager notification: alerts must be a list'),
    (notification(alert('c1'), 'c2'), 'alerts[1] must be an object'),
    (notification({'labels': {'host': 'c1'}}), 'alerts[0].status must be firing or resolved, got null'),
    (notification({'status': 'pending', 'labels': {}}), 'alerts[0].status must be firing or resolved, got "pending"'),
    (notification({'status': 'firing'}), 'alerts[0] has no labels'),
    (notification({'status': 'firing', 'labels': ['host']}), 'alerts[0].labels must be an object'),
    (notification({'status': 'firing', 'labels': {'host': 7}}), 'alerts[0].labels.host must be a string'),
    (notification({'status': 'firing', 'labels': {}, 'annotations': 'x'}), 'alerts[0].annotations must be an object'),
]


@pytest.mark.parametrize('body, reason', NOT_ALERTMANAGER,
                         ids=['list', 'github-like', 'version-number', 'version-3', 'no-alerts', 'alerts-object',
                              'alert-string', 'no-status', 'bad-status', 'no-labels', 'labels-list',
                              'label-number', 'annotations-string'])
def test_json_that_is_not_an_alertmanager_notification_is_refused_with_400_and_a_reason(body, reason):
    with pytest.raises(SOURCE.Rejected) as caught:
        SOURCE.parse_notification(json.dumps(body).encode())
    assert (caught.value.status, caught.value.message) == (400, reason)


def test_a_foreign_notification_is_refused_over_http_too_and_makes_no_event():
    async def scenario():
        async with serving() as served:
            return await post(served.url, {'text': 'deploy finished'}, bearer()), served.events()

    (status, answer, dummy), events = run(scenario())
    assert (status, answer) == (400, {'error': 'not an Alertmanager notification: version must be "4", got null'})
    assert events == []


def test_one_bad_alert_refuses_the_whole_notification():
    body = notification(alert('compute1'), {'status': 'firing'})

    async def scenario():
        async with serving() as served:
            return await post(served.url, body, bearer()), served.events()

    (status, dummy, dummy2), events = run(scenario())
    assert (status, events) == (400, [])


# --- size, methods -----------------------------------------------------------------------------------------


def test_a_body_larger_than_max_body_bytes_is_refused_with_413_and_makes_no_event():
    body = json.dumps(notification(alert('compute1'))).encode()

    async def scenario():
        async with serving(max_body_bytes=len(body) - 1) as served:
            too_big = await post(served.url, body, bearer())
            events = served.events()
        async with serving(max_body_bytes=len(body)) as served:
            exactly = await post(served.url, body, bearer())
        return too_big, events, exactly

    (status, answer, dummy), events, exactly = run(scenario())
    assert (status, answer) == (413, {'error': 'body of %d bytes is larger than max_body_bytes %d'
                                               % (len(body), len(body) - 1)})
    assert events == []
    assert exactly[0] == 200


def test_a_chunked_body_without_length_is_bounded_too():
    async def chunks():
        for dummy in range(64):
            yield b' ' * 1024
        yield json.dumps(notification(alert('compute1'))).encode()

    async def scenario():
        async with serving(max_body_bytes=16384) as served:
            async with aiohttp.ClientSession() as session:
                async with session.post(served.url, data=chunks(), headers=bearer()) as answer:
                    return answer.status, await answer.json(), served.events()

    assert run(scenario()) == (413, {'error': 'body is larger than max_body_bytes 16384'}, [])


@pytest.mark.parametrize('method', ['GET', 'PUT', 'DELETE', 'PATCH'])
def test_methods_other_than_post_are_refused_with_405_even_before_authentication(method):
    async def scenario():
        async with serving() as served:
            with_token = await post(served.url, None, bearer(), method=method)
            without = await post(served.url, None, {}, method=method)
            return with_token, without, served.events()

    with_token, without, events = run(scenario())
    assert with_token[:2] == (405, {'error': 'only POST is accepted'})
    assert with_token[2]['Allow'] == 'POST'
    assert without[0] == 405
    assert events == []


# --- addresses and TLS -------------------------------------------------------------------------------------


def test_the_default_address_is_ipv4_loopback():
    assert SOURCE.parse_args({'port': 1, 'token': 't'}).host == '127.0.0.1'

    async def scenario():
        async with serving() as served:
            return served.addresses

    (address, port), = run(scenario())
    assert address == '127.0.0.1' and port > 0


def ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(('::1', 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason='no IPv6 loopback on this machine')
@pytest.mark.parametrize('host', ['::1', '[::1]', '0:0:0:0:0:0:0:1'])
def test_an_ipv6_literal_address_is_served(host):
    async def scenario():
        async with serving(host=host) as served:
            answer = await post(served.url, notification(alert('compute1')), bearer())
            return served.url, served.addresses, answer[0], served.events()

    url, addresses, status, events = run(scenario())
    assert url.startswith('http://[::1]:')
    assert [address for address, dummy in addresses] == ['::1']
    assert status == 200
    assert [event['alert']['labels']['host'] for event in events] == ['compute1']


@pytest.fixture(scope='module')
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (openssl), its key in a separate file."""
    directory = tmp_path_factory.mktemp('tls')
    cert, key = directory / 'cert.pem', directory / 'key.pem'
    try:
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
                        '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', str(key), '-out', str(cert)],
                       check=True, capture_output=True, timeout=60)
    except FileNotFoundError:
        pytest.fail('openssl is not installed: make system-deps installs it')
    return str(cert), str(key)


def test_tls_serves_https_with_the_certificate_and_refuses_plain_http(certificate):
    cert, key = certificate
    client = ssl.create_default_context(cafile=cert)

    async def scenario():
        async with serving(certfile=cert, keyfile=key) as served:
            secured = await post(served.url, notification(alert('compute1')), bearer(), ssl_context=client)
            plain = served.url.replace('https://', 'http://')
            try:
                await post(plain, notification(alert('compute2')), bearer())
                refused = False
            except aiohttp.ClientError:
                refused = True
            return served.url, secured[0], refused, served.events()

    url, status, refused, events = run(scenario())
    assert url.startswith('https://127.0.0.1:')
    assert status == 200
    assert refused
    assert [event['alert']['labels']['host'] for event in events] == ['compute1']


def test_an_unreadable_certificate_is_a_config_error_naming_the_files(tmp_path):
    missing = str(tmp_path / 'absent.pem')
    settings = SOURCE.parse_args({'port': 0, 'token': TOKEN, 'certfile': missing})
    with pytest.raises(SOURCE.ConfigError, match='cannot load certfile %s / keyfile None' % missing):
        SOURCE.ssl_context(settings)


# --- arguments ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize('args, message', [
    ({'port': 1, 'token': 't', 'tokn': 'x'}, 'unknown argument tokn of openstack_ha.recovery.alertmanager; valid arguments: '
     'certfile, hmac_algo, hmac_header, hmac_secret, host, keyfile, max_body_bytes, port, token'),
    ({'port': 1, 'token': 't', 'skip_resolved': True, 'data_path': 'x'}, 'unknown arguments data_path, skip_resolved of'),
    ({'token': 't'}, 'missing required argument port of openstack_ha.recovery.alertmanager'),
    ({'port': 1}, 'needs token or hmac_secret (or both)'),
    ({'port': 1, 'token': ''}, 'argument token must not be empty (an unset variable?)'),
    ({'port': 1, 'token': ' \n'}, 'argument token must not be empty (an unset variable?)'),
    ({'port': 1, 'token': 12345}, 'argument token must be a string, got int (hidden)'),
    ({'port': 'http', 'token': 't'}, "argument port must be an integer, got 'http'"),
    ({'port': True, 'token': 't'}, 'argument port must be an integer, got bool True'),
    ({'port': 1.5, 'token': 't'}, 'argument port must be an integer, got float 1.5'),
    ({'port': 70000, 'token': 't'}, 'argument port must be between 0 and 65535, got 70000'),
    ({'port': 1, 'token': 't', 'max_body_bytes': 0}, 'argument max_body_bytes must be positive, got 0'),
    ({'port': 1, 'hmac_secret': 's', 'hmac_algo': 'md5'}, "argument hmac_algo must be one of sha256, sha384, sha512, "
     "got 'md5'"),
    ({'port': 1, 'token': 't', 'keyfile': '/k.pem'}, 'argument keyfile requires certfile'),
    ({'port': 1, 'token': 't', 'host': 0}, 'argument host must be a string, got int 0'),
], ids=['unknown', 'unknowns', 'no-port', 'no-auth', 'empty-token', 'blank-token', 'token-int', 'port-word', 'port-bool',
        'port-float', 'port-range', 'body-size', 'md5', 'keyfile-alone', 'host-int'])
def test_bad_arguments_fail_with_a_message_naming_the_argument(args, message):
    with pytest.raises(SOURCE.ConfigError) as caught:
        SOURCE.parse_args(args)
    assert message in str(caught.value)


def test_templated_integers_are_accepted_and_engine_arguments_ignored():
    settings = SOURCE.parse_args({'port': '9890', 'max_body_bytes': '1024', 'token': TOKEN,
                                  'eda_feedback_queue': asyncio.Queue()})
    assert (settings.port, settings.max_body_bytes, settings.host) == (9890, 1024, '127.0.0.1')
    assert (settings.hmac_algo, settings.hmac_header) == ('sha256', 'X-Hub-Signature-256')


def test_settings_never_show_secrets():
    shown = repr(SOURCE.parse_args({'port': 1, 'token': TOKEN, 'hmac_secret': SECRET}))
    assert TOKEN not in shown and SECRET not in shown
    assert "token='********'" in shown and 'port=1' in shown


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def test_main_serves_until_cancelled_then_frees_the_port():
    port = free_port()

    async def scenario():
        queue = asyncio.Queue()
        task = asyncio.create_task(SOURCE.main(queue, {'port': port, 'token': TOKEN, 'eda_feedback_queue': None}))
        url = 'http://127.0.0.1:%d' % port
        while True:  # readiness: the port answers
            try:
                answer = await post(url, notification(alert('compute1')), bearer())
                break
            except aiohttp.ClientConnectionError:
                assert not task.done(), task.exception()
                await asyncio.sleep(0.01)
        event = await queue.get()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with socket.socket() as again:  # the listener is gone
            again.bind(('127.0.0.1', port))
        return answer[0], event

    status, event = run(scenario())
    assert status == 200
    assert event['alert']['labels']['host'] == 'compute1'


def test_main_refuses_unknown_arguments_before_listening():
    with pytest.raises(SOURCE.ConfigError, match='unknown argument bind'):
        run(SOURCE.main(asyncio.Queue(), {'port': 0, 'token': TOKEN, 'bind': '0.0.0.0'}))


# --- secrets never logged ----------------------------------------------------------------------------------


def test_neither_the_token_nor_the_hmac_secret_ever_reaches_the_logs(caplog):
    caplog.set_level(logging.DEBUG)
    body = json.dumps(notification(alert('compute1'))).encode()

    async def scenario():
        async with serving(token=TOKEN, hmac_secret=SECRET) as served:
            good = dict(bearer(), **signed(body))
            await post(served.url, body, good)
            await post(served.url, body, dict(bearer(), **signed(body, secret=TOKEN)))
            await post(served.url, body, bearer(TOKEN + 'x'))
            await post(served.url, body, {'Authorization': 'Basic ' + TOKEN})
            await post(served.url, b'{broken', dict(bearer(), **signed(b'{broken')))
            await post(served.url, None, good, method='GET')
            await post(served.url, body, dict(good, **{'X-Debug': SECRET}), path='/%s' % 'x')
            return served.events()

    events = run(scenario())
    for args in ({'port': 0, 'token': TOKEN, 'hmac_secret': SECRET, 'hmac_algo': 'md5'},
                 {'port': 0, 'token': 99, 'hmac_secret': SECRET}, {'port': 'x', 'token': TOKEN}):
        with pytest.raises(SOURCE.ConfigError) as caught:
            SOURCE.parse_args(args)
        logging.getLogger('test').error('config error: %s', caught.value)
    assert len(events) == 2
    assert 'queued 1 alert event(s) from receiver openstack-ha' in caplog.text
    assert 'rejected POST / from 127.0.0.1: 401 invalid Bearer token' in caplog.text
    assert 'listening for Alertmanager webhooks on http://127.0.0.1:' in caplog.text
    assert TOKEN not in caplog.text
    assert SECRET not in caplog.text
    assert not any(TOKEN in str(event) or SECRET in str(event) for event in events)


# --- documentation that cannot drift -----------------------------------------------------------------------


def test_documentation_options_are_exactly_the_arguments_the_code_reads():
    doc = yaml.safe_load(SOURCE.DOCUMENTATION)
    options = doc['options']
    assert sorted(options) == sorted(SOURCE.ARGS)
    assert list(options) == sorted(options), 'options are sorted'
    for name, spec in SOURCE.ARGS.items():
        option = options[name]
        assert option['description'], name
        assert option.get('type', 'str') == spec['type'], name
        assert option.get('default') == spec.get('default'), name
        assert option.get('required', False) == spec.get('required', False), name
        assert option.get('choices') == spec.get('choices'), name


def test_the_documented_defaults_are_the_ones_in_force():
    settings = SOURCE.parse_args({'port': 0, 'token': TOKEN})
    for name, option in yaml.safe_load(SOURCE.DOCUMENTATION)['options'].items():
        if 'default' in option:
            assert getattr(settings, name) == option['default'], name


def test_the_examples_are_rulebooks_whose_source_arguments_are_accepted():
    rulebook = yaml.safe_load(SOURCE.EXAMPLES)
    for ruleset in rulebook:
        source, = ruleset['sources']
        args = source['openstack_ha.recovery.alertmanager']
        assert set(args) <= set(SOURCE.ARGS)
        rendered = {name: 'value' if isinstance(value, str) and '{{' in value else value
                    for name, value in args.items()}
        rendered.pop('certfile', None)
        rendered.pop('keyfile', None)
        SOURCE.parse_args(rendered)


def documented_keys(doc):
    return {name: documented_keys(entry['contains']) if 'contains' in entry else None for name, entry in doc.items()}


def produced_keys(value, documented):
    return {name: produced_keys(value[name], documented[name]) if documented.get(name) else None for name in value}


def test_events_carry_exactly_the_documented_keys():
    documented = documented_keys(yaml.safe_load(SOURCE.EVENT))
    event = SOURCE.alert_events(notification(alert('compute1')), '/')[0]
    assert produced_keys(event, documented) == documented
    # ansible-rulebook's own insert_meta_info filter adds these to meta afterwards; none of ours collides.
    assert not {'source', 'received_at', 'uuid', 'hosts'} & set(event['meta'])
