"""bmc_ping's core: the IPMI packet, both probes over real localhost sockets (and fakes for what a local socket
cannot do), target checking, the parallel run and the counts."""

import http.server
import socket
import ssl
import threading
import time
import urllib.error

import pytest

from ansible_collections.openstack_ha.recovery.plugins.module_utils._bmc_ping import (
    BMC_PING_RESULT_KEYS,
    BmcPingError,
    auth_capabilities_request,
    below_minimum_message,
    bmc_ping,
    check_target,
    parse_auth_capabilities_response,
    probe_ipmi,
    probe_redfish,
    redfish_url,
)


def answer(request, completion_code=0x00, framing='1.5'):
    """What an IPMI BMC answers to a Get Channel Authentication Capabilities request (as pyghmi's server does)."""
    request = bytearray(request)
    client_address, sequence = request[17], request[18] >> 2
    head = bytearray([client_address, 0x07 << 2])
    head.append((-sum(head)) & 0xff)
    body = bytearray([0x20, sequence << 2, 0x38, completion_code, 0x01, 0x80, 0x04, 0x00, 0x00, 0x00, 0x00])
    body.append((-sum(body)) & 0xff)
    if framing == '2.0':
        session = bytearray(b'\x06\x00') + bytearray(8) + bytearray([len(head + body), 0])
    elif framing == 'authcode':
        session = bytearray(b'\x02') + bytearray(8) + bytearray(16) + bytearray([len(head + body)])
    else:
        session = bytearray(b'\x00') + bytearray(8) + bytearray([len(head + body)])
    return bytes(bytearray(b'\x06\x00\xff\x07') + session + head + body)


class UdpBmc:
    """A UDP responder on 127.0.0.1 that answers like a BMC: `script` says what to do with each request in turn
    ('answer', 'drop', 'junk', 'other-sequence', or a completion code); then it answers."""

    def __init__(self, script=()):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(('127.0.0.1', 0))
        self.port = self.sock.getsockname()[1]
        self.script = list(script)
        self.requests = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(1024)
            except OSError:
                return
            self.requests.append(data)
            step = self.script.pop(0) if self.script else 'answer'
            if step == 'drop':
                continue
            if step == 'junk':
                self.sock.sendto(b'\x06\x00\xff\x06hello', peer)
                step = 'answer'
            if step == 'other-sequence':
                wrong = bytearray(data)
                wrong[18] = ((wrong[18] >> 2) + 1 & 0x3f) << 2
                self.sock.sendto(answer(bytes(wrong)), peer)
                step = 'answer'
            self.sock.sendto(answer(data, 0 if step == 'answer' else step), peer)

    def close(self):
        self.sock.close()


@pytest.fixture
def udp_bmc():
    made = []

    def make(*script):
        made.append(UdpBmc(script))
        return made[-1]
    yield make
    for bmc in made:
        bmc.close()


# -- the packet ------------------------------------------------------------------------------------------------

def test_the_request_is_the_sessionless_get_channel_auth_capabilities_of_ipmitool():
    packet = auth_capabilities_request(5)
    assert packet.hex() == '0600ff07' '00' '00000000' '00000000' '09' '2018c8' '81' '14' '38' '8e04' 'a1'
    assert (0x81 + 0x14 + 0x38 + 0x8e + 0x04 + 0xa1) & 0xff == 0


@pytest.mark.parametrize('framing', ['1.5', '2.0', 'authcode'])
def test_answers_in_every_session_framing_parse(framing):
    request = auth_capabilities_request(9)
    assert parse_auth_capabilities_response(answer(request, 0xd4, framing), 9) == 0xd4


@pytest.mark.parametrize('data, error', [
    (b'\x06\x00\xff', 'not an RMCP/IPMI packet (3 bytes)'),
    (b'\x06\x00\xff\x06\x00' + bytes(20), 'not an RMCP/IPMI packet (25 bytes)'),
    (b'\x06\x00\xff\x07\x00' + bytes(12), 'IPMI message too short (3 bytes)'),
])
def test_what_is_no_answer_is_rejected(data, error):
    with pytest.raises(ValueError) as caught:
        parse_auth_capabilities_response(data, 9)
    assert str(caught.value) == error


def test_an_answer_to_another_command_or_request_is_rejected():
    good = bytearray(answer(auth_capabilities_request(9)))
    other_command = bytearray(good)
    other_command[19] = 0x01
    with pytest.raises(ValueError, match='netfn 0x07 command 0x01, not Get Channel'):
        parse_auth_capabilities_response(bytes(other_command), 9)
    with pytest.raises(ValueError, match=r'answer to another request \(sequence 9, sent 10\)'):
        parse_auth_capabilities_response(bytes(good), 10)


# -- the IPMI probe over real sockets ---------------------------------------------------------------------------

def test_a_bmc_that_answers_is_reachable(udp_bmc):
    bmc = udp_bmc()
    reachable, latency, attempts, answered, error = probe_ipmi('127.0.0.1', bmc.port, 1.0, 1)
    assert (reachable, attempts, answered, error) == (True, 1, 'IPMI completion code 0x00', None)
    assert 0 <= latency < 1000
    assert len(bmc.requests) == 1 and bmc.requests[0][19] == 0x38


def test_any_completion_code_is_an_answer(udp_bmc):
    bmc = udp_bmc(0xcc)
    assert probe_ipmi('127.0.0.1', bmc.port, 1.0, 0)[3] == 'IPMI completion code 0xcc'


def test_a_lost_request_is_sent_again(udp_bmc):
    bmc = udp_bmc('drop')
    reachable, dummy, attempts, dummy, dummy = probe_ipmi('127.0.0.1', bmc.port, 0.2, 1)
    assert (reachable, attempts, len(bmc.requests)) == (True, 2, 2)


def test_packets_that_are_not_the_answer_are_skipped(udp_bmc):
    bmc = udp_bmc('junk', 'other-sequence')
    assert probe_ipmi('127.0.0.1', bmc.port, 1.0, 0)[:3:2] == (True, 1)
    assert probe_ipmi('127.0.0.1', bmc.port, 1.0, 0)[:3:2] == (True, 1)


def test_a_silent_bmc_is_unreachable_after_every_retry(udp_bmc):
    bmc = udp_bmc('drop', 'drop', 'drop')
    started = time.monotonic()
    reachable, latency, attempts, answered, error = probe_ipmi('127.0.0.1', bmc.port, 0.1, 2)
    assert (reachable, latency, attempts, answered) == (False, None, 3, None)
    assert error == 'no answer to IPMI Get Channel Authentication Capabilities within 0.1 s'
    assert 0.3 <= time.monotonic() - started < 3.0


def test_a_port_without_service_is_unreachable_at_once():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    reachable, dummy, attempts, dummy, error = probe_ipmi('127.0.0.1', port, 2.0, 1)
    assert (reachable, attempts) == (False, 2)
    assert error.startswith('no IPMI service at 127.0.0.1 port %d: ' % port)


def test_a_name_that_does_not_resolve_is_unreachable():
    def resolve(*args):
        raise socket.gaierror(-2, 'Name or service not known')
    assert probe_ipmi('bmc.invalid', 623, 1.0, 1, resolve=resolve) == (
        False, None, 0, None, 'cannot resolve bmc.invalid: [Errno -2] Name or service not known')


def test_a_request_that_cannot_be_sent_is_unreachable():
    class NoRoute:
        closed = False

        def connect(self, address):
            pass

        def send(self, data):
            raise OSError(101, 'Network is unreachable')

        def close(self):
            self.closed = True
    sock = NoRoute()
    result = probe_ipmi('192.0.2.1', 623, 1.0, 1, socket_factory=lambda family: sock)
    assert result == (False, None, 2, None, 'cannot send to 192.0.2.1 port 623: [Errno 101] Network is unreachable')
    assert sock.closed


# -- the Redfish probe ---------------------------------------------------------------------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        self.server.paths.append((self.path, self.headers.get('Authorization')))
        self.send_response(self.server.status)
        self.send_header('Content-Length', '2')
        self.end_headers()
        self.wfile.write(b'{}')

    def log_message(self, *args):
        pass


@pytest.fixture
def http_bmc():
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    server.paths = []
    server.status = 200
    threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize('status', [200, 401, 500])
def test_any_http_answer_is_reachable_and_no_credentials_are_sent(http_bmc, status):
    http_bmc.status = status
    url = 'http://127.0.0.1:%d/redfish/v1' % http_bmc.server_address[1]
    reachable, latency, attempts, answered, error = probe_redfish(url, 1.0, 1, True)
    assert (reachable, attempts, answered, error) == (True, 1, 'HTTP %d' % status, None)
    assert http_bmc.paths == [('/redfish/v1', None)]


def test_no_http_server_is_unreachable_after_the_retries():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    reachable, dummy, attempts, dummy, error = probe_redfish('http://127.0.0.1:%d/redfish/v1' % port, 1.0, 2, True)
    assert (reachable, attempts) == (False, 3)
    assert error.startswith('no HTTP answer from http://127.0.0.1:%d/redfish/v1: ' % port)
    assert 'refused' in error


def test_a_silent_http_server_times_out():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        sock.listen(5)  # accepts connections, never answers
        port = sock.getsockname()[1]
        started = time.monotonic()
        result = probe_redfish('http://127.0.0.1:%d/redfish/v1' % port, 0.2, 0, True)
    assert result[:4] == (False, None, 1, None) and 'timed out' in result[4]
    assert time.monotonic() - started < 3.0


def fake_opener(*outcomes):
    calls = []

    def opener(url, timeout, validate_certs):
        calls.append((url, timeout, validate_certs))
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
    opener.calls = calls
    return opener


def cert_error():
    error = ssl.SSLCertVerificationError(1, 'certificate verify failed')
    error.verify_message = 'self-signed certificate'
    return error


@pytest.mark.parametrize('failure', [cert_error(), urllib.error.URLError(cert_error())])
def test_an_untrusted_certificate_is_no_answer_and_not_retried(failure):
    opener = fake_opener(failure)
    result = probe_redfish('https://bmc/redfish/v1', 1.0, 3, True, opener=opener)
    assert result == (False, None, 1, None, 'TLS certificate of https://bmc/redfish/v1 not trusted (self-signed '
                                            'certificate): make the controller trust it or set validate_certs: false')
    assert opener.calls == [('https://bmc/redfish/v1', 1.0, True)]


def test_http_errors_are_answers_and_failures_are_retried():
    opener = fake_opener(socket.timeout('timed out'), urllib.error.HTTPError('u', 404, 'Not Found', {}, None))
    result = probe_redfish('https://bmc/redfish/v1', 0.5, 1, False, opener=opener)
    assert result[0] is True and result[2:] == (2, 'HTTP 404', None)
    assert opener.calls[1] == ('https://bmc/redfish/v1', 0.5, False)


@pytest.mark.parametrize('address, port, url', [
    ('bmc.example.com', None, 'https://bmc.example.com/redfish/v1'),
    ('bmc.example.com', 8443, 'https://bmc.example.com:8443/redfish/v1'),
    ('fd00::17', None, 'https://[fd00::17]/redfish/v1'),
    ('http://127.0.0.1:8000', None, 'http://127.0.0.1:8000/redfish/v1'),
    ('https://bmc/', 8443, 'https://bmc:8443/redfish/v1'),
    ('https://bmc:443', 8443, 'https://bmc:443/redfish/v1'),
    ('https://root:calvin@bmc', None, 'https://bmc/redfish/v1'),
    ('https://bmc/prefix', None, 'https://bmc/prefix/redfish/v1'),
])
def test_redfish_urls(address, port, url):
    assert redfish_url(address, port) == url


# -- targets and the run -------------------------------------------------------------------------------------------

def test_targets_are_completed():
    assert check_target(0, dict(address='10.0.0.5')) == dict(name='10.0.0.5', protocol='ipmi', address='10.0.0.5',
                                                             port=623, url=None)
    assert check_target(1, dict(name='c1', address='https://u:p@bmc:8443/', protocol='redfish')) == dict(
        name='c1', protocol='redfish', address='https://bmc:8443', port=8443, url='https://bmc:8443/redfish/v1')


@pytest.mark.parametrize('target, message', [
    (dict(name='c1', address=' '), 'target 2 (c1) has no address'),
    (dict(address=None), 'target 2 has no address'),
    (dict(address='bmc', protocol='ssh'), "target 2 (bmc): protocol must be one of ipmi, redfish, got 'ssh'"),
    (dict(address='bmc', port=0), 'target 2 (bmc): port must be 1-65535, got 0'),
    (dict(address='bmc', port=70000), 'target 2 (bmc): port must be 1-65535, got 70000'),
    (dict(address='https://bmc'), 'target 2 (https://bmc): an IPMI address is a host name or IP address, not a URL '
                                  '(https://bmc)'),
    (dict(address='ftp://bmc', protocol='redfish'), "target 2 (ftp://bmc): address must be a host name or the base "
                                                    "URL of the Redfish service, like https://host[:port]: "
                                                    "'ftp://bmc' is not an http(s) URL"),
])
def test_bad_targets_fail_naming_them(target, message):
    with pytest.raises(BmcPingError) as caught:
        check_target(2, target)
    assert caught.value.msg == message


def test_no_targets_give_zeros():
    result = bmc_ping([], min_reachable_percent=100.0)
    assert result == dict(changed=False, targets=[], total=0, reachable=0, unreachable=0, reachable_percent=0.0,
                          below_minimum=False)
    assert set(result) == set(BMC_PING_RESULT_KEYS) | {'changed'}


def test_a_run_over_real_sockets_counts_both_protocols(udp_bmc, http_bmc):
    silent = udp_bmc('drop', 'drop')
    targets = [dict(name='c1', address='127.0.0.1', port=udp_bmc().port),
               dict(name='c2', address='http://127.0.0.1:%d' % http_bmc.server_address[1], protocol='redfish'),
               dict(name='c3', address='127.0.0.1', port=silent.port)]
    result = bmc_ping(targets, timeout=0.1, retries=1, min_reachable_percent=67.0)
    assert [(t['name'], t['reachable'], t['attempts']) for t in result['targets']] == [
        ('c1', True, 1), ('c2', True, 1), ('c3', False, 2)]
    assert (result['total'], result['reachable'], result['unreachable'], result['reachable_percent']) == (3, 2, 1, 66.7)
    assert result['below_minimum'] is True
    assert result['targets'][2]['error'].startswith('no answer to IPMI')
    assert result['targets'][1]['url'].endswith('/redfish/v1') and result['targets'][0]['url'] is None
    assert bmc_ping(targets, timeout=0.1, retries=0, min_reachable_percent=66.6)['below_minimum'] is False
    message = below_minimum_message(result, 67.0)
    assert message.startswith('this controller reaches only 2 of 3 BMCs (66.7%), below min_reachable_percent 67.0%')
    assert message.endswith('Unreachable: c3 (no answer to IPMI Get Channel Authentication Capabilities within 0.1 s)')


def test_probes_run_in_parallel_up_to_the_limit():
    running = []
    peak = []
    lock = threading.Lock()

    def slow(address, port, timeout, retries):
        with lock:
            running.append(address)
            peak.append(len(running))
        time.sleep(0.1)
        with lock:
            running.remove(address)
        return True, 100.0, 1, 'IPMI completion code 0x00', None
    targets = [dict(address='10.0.0.%d' % n) for n in range(8)]
    started = time.monotonic()
    result = bmc_ping(targets, parallel=4, probes=dict(ipmi=slow))
    assert max(peak) == 4 and time.monotonic() - started < 0.75  # one after the other: 0.8 s
    assert [t['address'] for t in result['targets']] == ['10.0.0.%d' % n for n in range(8)]  # order kept


@pytest.mark.parametrize('options, message', [
    (dict(timeout=0), 'timeout must be at least 0.001, got 0'),
    (dict(retries=-1), 'retries must be at least 0, got -1'),
    (dict(parallel=0), 'parallel must be at least 1, got 0'),
    (dict(min_reachable_percent=101), 'min_reachable_percent must be between 0 and 100, got 101'),
])
def test_bad_options_fail(options, message):
    with pytest.raises(BmcPingError) as caught:
        bmc_ping([dict(address='bmc')], **options)
    assert caught.value.msg == message


def test_tls_contexts_verify_unless_told_not_to_and_are_made_once():
    from ansible_collections.openstack_ha.recovery.plugins.module_utils._bmc_ping import _tls_context
    assert _tls_context(True).verify_mode == ssl.CERT_REQUIRED and _tls_context(True).check_hostname
    assert _tls_context(False).verify_mode == ssl.CERT_NONE and not _tls_context(False).check_hostname
    assert _tls_context(True) is _tls_context(True)
