# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""bmc_ping core: does each BMC answer, without credentials? Plain functions over sockets and urllib.

IPMI: one RMCP / IPMI 1.5 "Get Channel Authentication Capabilities" request over UDP, sessionless (no user,
no password, no session is opened). Every IPMI-over-LAN BMC answers it: it is the first packet of every
session, the one ipmitool and pyghmi send before anything else. Any well-formed answer counts, whatever its
completion code: the BMC is there and speaks IPMI.

Redfish: GET <base URL>/redfish/v1, the service root, which Redfish serves without authentication. Any HTTP
answer counts, even 401 or 500: the BMC's web server is there.

The probes run in threads, one per target (at most `parallel` at a time); each waits `timeout` seconds for its
answer and is sent again `retries` times when none came. Unit tests inject the transports (the two probe
functions take a socket factory and an opener) and a clock.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import concurrent.futures
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request

from urllib.parse import urlsplit, urlunsplit

IPMI_PORT = 623
PROTOCOLS = ('ipmi', 'redfish')
SERVICE_ROOT = '/redfish/v1'

BMC_PING_RESULT_KEYS = ('below_minimum', 'reachable', 'reachable_percent', 'targets', 'total', 'unreachable')

# RMCP header: version 6, reserved, sequence 0xff (no RMCP ack wanted), class 7 (IPMI).
RMCP_HEADER = b'\x06\x00\xff\x07'
BMC_ADDRESS = 0x20           # responder: the BMC
REMOTE_CONSOLE_ADDRESS = 0x81  # requester: a remote console software id
NETFN_APP_REQUEST = 0x06
NETFN_APP_RESPONSE = 0x07
CMD_GET_CHANNEL_AUTH_CAPABILITIES = 0x38
# Request data: bit 7 asks for the IPMI 2.0 extended data (as ipmitool -I lanplus does; pyghmi's BMC answers only
# such requests), channel 0xE = the channel this request arrives on; privilege level 4 = administrator.
AUTH_CAP_REQUEST_DATA = b'\x8e\x04'


class BmcPingError(Exception):
    """A bad target or option: msg names it."""

    def __init__(self, msg):
        super(BmcPingError, self).__init__(msg)
        self.msg = msg


def _checksum(data):
    """IPMI 2's-complement checksum: the bytes plus it sum to 0 modulo 256."""
    return (-sum(bytearray(data))) & 0xff


def auth_capabilities_request(sequence):
    """The RMCP / IPMI 1.5 Get Channel Authentication Capabilities request, `sequence` in 0..63."""
    header = bytes(bytearray([BMC_ADDRESS, NETFN_APP_REQUEST << 2]))
    body = bytes(bytearray([REMOTE_CONSOLE_ADDRESS, (sequence & 0x3f) << 2, CMD_GET_CHANNEL_AUTH_CAPABILITIES]))
    body += AUTH_CAP_REQUEST_DATA
    message = header + bytes(bytearray([_checksum(header)])) + body + bytes(bytearray([_checksum(body)]))
    # IPMI 1.5 session header: auth type none, session sequence 0, session id 0, message length.
    session = b'\x00' + b'\x00' * 4 + b'\x00' * 4 + bytes(bytearray([len(message)]))
    return RMCP_HEADER + session + message


def parse_auth_capabilities_response(data, sequence):
    """The completion code of an answer to auth_capabilities_request(sequence); ValueError naming what is wrong."""
    data = bytearray(data)
    if len(data) < 5 or bytes(data[:4]) != RMCP_HEADER:
        raise ValueError('not an RMCP/IPMI packet (%d bytes)' % len(data))
    auth_type = data[4]
    if auth_type == 0x06:      # RMCP+ (IPMI 2.0) session header: payload type, 2 ids, 2-byte length
        start = 16
    elif auth_type == 0x00:    # IPMI 1.5, no authentication code
        start = 14
    else:                      # IPMI 1.5 with a 16-byte authentication code
        start = 30
    message = data[start:]
    if len(message) < 8:
        raise ValueError('IPMI message too short (%d bytes)' % len(message))
    netfn, cmd = message[1] >> 2, message[5]
    if (netfn, cmd) != (NETFN_APP_RESPONSE, CMD_GET_CHANNEL_AUTH_CAPABILITIES):
        raise ValueError('answer is netfn 0x%02x command 0x%02x, not Get Channel Authentication Capabilities'
                         % (netfn, cmd))
    if message[4] >> 2 != (sequence & 0x3f):
        raise ValueError('answer to another request (sequence %d, sent %d)' % (message[4] >> 2, sequence & 0x3f))
    return message[6]


def _udp_socket(family):
    return socket.socket(family, socket.SOCK_DGRAM)


def probe_ipmi(address, port, timeout, retries, clock=time.monotonic, socket_factory=_udp_socket, resolve=None):
    """(reachable, latency_ms, attempts, answer, error) of one sessionless IPMI request, sent up to 1 + retries times.

    Each attempt waits `timeout` seconds for an answer from the BMC's address (the socket is connected, so the
    kernel drops packets from anyone else); packets that are not the answer are ignored until then.
    """
    resolve = resolve or socket.getaddrinfo
    try:
        family, dummy, dummy, dummy, sockaddr = resolve(address, port, 0, socket.SOCK_DGRAM)[0]
    except (OSError, UnicodeError) as exc:
        return False, None, 0, None, 'cannot resolve %s: %s' % (address, exc)
    sock = socket_factory(family)
    error = None
    attempts = 0
    try:
        sock.connect(sockaddr)
        # One sequence number for every attempt: a late answer to an earlier attempt proves the BMC is there too.
        sequence = os.getpid() & 0x3f
        for dummy in range(retries + 1):
            attempts += 1
            started = clock()
            deadline = started + timeout
            try:
                sock.send(auth_capabilities_request(sequence))
            except OSError as exc:
                error = 'cannot send to %s port %d: %s' % (address, port, exc)
                continue
            while True:
                remaining = deadline - clock()
                if remaining <= 0:
                    error = 'no answer to IPMI Get Channel Authentication Capabilities within %s s' % timeout
                    break
                sock.settimeout(remaining)
                try:
                    data = sock.recv(1024)
                except socket.timeout:
                    continue
                except OSError as exc:  # ICMP port unreachable shows as ECONNREFUSED on a connected UDP socket
                    error = 'no IPMI service at %s port %d: %s' % (address, port, exc)
                    break
                try:
                    code = parse_auth_capabilities_response(data, sequence)
                except ValueError as exc:
                    error = 'ignored a packet that is not the answer: %s' % exc
                    continue
                latency = round((clock() - started) * 1000.0, 1)
                return True, latency, attempts, 'IPMI completion code 0x%02x' % code, None
    finally:
        sock.close()
    return False, None, attempts, None, error


def redfish_url(address, port):
    """The service root URL of a Redfish BMC given as a base URL (scheme://host[:port]) or a host name.

    A host name becomes https://host[:port]. User name or password written into a URL are dropped: this
    probe sends no credentials and never returns them.
    """
    if '://' not in address:
        host = '[%s]' % address if ':' in address else address
        return 'https://%s%s%s' % (host, ':%d' % port if port else '', SERVICE_ROOT)
    parts = urlsplit(address)
    if parts.scheme not in ('http', 'https') or not parts.hostname:
        raise ValueError('%r is not an http(s) URL' % address)
    netloc = parts.netloc.rsplit('@', 1)[-1]
    if port and parts.port is None:
        netloc = '%s:%d' % (netloc, port)
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip('/') + SERVICE_ROOT, '', ''))


_CONTEXTS = {}
_CONTEXTS_LOCK = threading.Lock()


def _tls_context(validate_certs):
    """One TLS context per setting, made once: loading the system's CA certificates takes ~20 ms."""
    with _CONTEXTS_LOCK:
        if validate_certs not in _CONTEXTS:
            context = ssl.create_default_context()
            if not validate_certs:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            _CONTEXTS[validate_certs] = context
        return _CONTEXTS[validate_certs]


def _open(url, timeout, validate_certs):
    context = _tls_context(validate_certs)
    request = urllib.request.Request(url, headers={'Accept': 'application/json'})
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
    with opener.open(request, timeout=timeout) as response:
        return response.status


def probe_redfish(url, timeout, retries, validate_certs, clock=time.monotonic, opener=_open):
    """(reachable, latency_ms, attempts, answer, error) of GET url, sent up to 1 + retries times.

    Any HTTP status is an answer. A TLS certificate the controller does not trust is not: no HTTP answer came.
    """
    error = None
    attempts = 0
    for dummy in range(retries + 1):
        attempts += 1
        started = clock()
        try:
            status = opener(url, timeout, validate_certs)
        except urllib.error.HTTPError as exc:
            status = exc.code
        except ssl.SSLCertVerificationError as exc:
            return False, None, attempts, None, ('TLS certificate of %s not trusted (%s): make the controller trust '
                                                 'it or set validate_certs: false' % (url, exc.verify_message))
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLCertVerificationError):
                return False, None, attempts, None, ('TLS certificate of %s not trusted (%s): make the controller '
                                                     'trust it or set validate_certs: false'
                                                     % (url, exc.reason.verify_message))
            error = 'no HTTP answer from %s: %s' % (url, exc.reason)
            continue
        except (OSError, ValueError) as exc:  # socket.timeout, connection reset, malformed answers
            error = 'no HTTP answer from %s: %s' % (url, exc or exc.__class__.__name__)
            continue
        latency = round((clock() - started) * 1000.0, 1)
        return True, latency, attempts, 'HTTP %d' % status, None
    return False, None, attempts, None, error


def check_target(index, target):
    """A target's settings checked and completed: name, address, port, protocol, url; BmcPingError otherwise."""
    address = (target.get('address') or '').strip()
    name = target.get('name') or address
    where = 'target %s (%s)' % (index, name) if name else 'target %s' % index
    if not address:
        raise BmcPingError('%s has no address' % where)
    protocol = target.get('protocol') or 'ipmi'
    if protocol not in PROTOCOLS:
        raise BmcPingError('%s: protocol must be one of %s, got %r' % (where, ', '.join(PROTOCOLS), protocol))
    port = target.get('port')
    if port is not None and not 0 < port < 65536:
        raise BmcPingError('%s: port must be 1-65535, got %s' % (where, port))
    checked = dict(name=name, protocol=protocol, port=port, url=None)
    if protocol == 'ipmi':
        if '://' in address:
            raise BmcPingError('%s: an IPMI address is a host name or IP address, not a URL (%s)' % (where, address))
        checked.update(address=address, port=port or IPMI_PORT)
    else:
        try:
            checked['url'] = redfish_url(address, port)
        except ValueError as exc:
            raise BmcPingError('%s: address must be a host name or the base URL of the Redfish service, like '
                               'https://host[:port]: %s' % (where, exc))
        parts = urlsplit(checked['url'])
        checked.update(address=urlunsplit((parts.scheme, parts.netloc, '', '', '')), port=parts.port or port)
    return checked


def _probe(target, timeout, retries, validate_certs, probes):
    if target['protocol'] == 'ipmi':
        outcome = probes['ipmi'](target['address'], target['port'], timeout, retries)
    else:
        outcome = probes['redfish'](target['url'], timeout, retries, validate_certs)
    reachable, latency, attempts, answer, error = outcome
    return dict(name=target['name'], protocol=target['protocol'], address=target['address'], port=target['port'],
                url=target['url'], reachable=reachable, latency_ms=latency, attempts=attempts, answer=answer,
                error=None if reachable else error)


def bmc_ping(targets, timeout=1.0, retries=1, validate_certs=True, parallel=16, min_reachable_percent=0.0,
             probes=None):
    """bmc_ping: probe every target in threads; the BMC_PING_RESULT_KEYS. Raises BmcPingError on bad input."""
    for option, value, minimum in (('timeout', timeout, 0.001), ('retries', retries, 0), ('parallel', parallel, 1)):
        if value < minimum:
            raise BmcPingError('%s must be at least %s, got %s' % (option, minimum, value))
    if not 0 <= min_reachable_percent <= 100:
        raise BmcPingError('min_reachable_percent must be between 0 and 100, got %s' % min_reachable_percent)
    checked = [check_target(index, target) for index, target in enumerate(targets or [])]
    probes = probes or dict(ipmi=probe_ipmi, redfish=probe_redfish)
    results = []
    if checked:
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(parallel, len(checked))) as pool:
            results = list(pool.map(lambda target: _probe(target, timeout, retries, validate_certs, probes), checked))
    reachable = sum(1 for result in results if result['reachable'])
    percent = round(100.0 * reachable / len(results), 1) if results else 0.0
    below = bool(results) and 100.0 * reachable / len(results) < min_reachable_percent
    return dict(changed=False, targets=results, total=len(results), reachable=reachable,
                unreachable=len(results) - reachable, reachable_percent=percent, below_minimum=below)


def below_minimum_message(result, min_reachable_percent):
    unreachable = ['%s (%s)' % (t['name'], t['error']) for t in result['targets'] if not t['reachable']]
    return ('this controller reaches only %d of %d BMCs (%s%%), below min_reachable_percent %s%%: it may be the '
            'isolated one and must not act. Unreachable: %s'
            % (result['reachable'], result['total'], result['reachable_percent'], min_reachable_percent,
               '; '.join(unreachable)))


def run_bmc_ping_module(module):
    """The module edge: parameters in, exit_json / fail_json out."""
    params = module.params
    try:
        result = bmc_ping(params['targets'], timeout=params['timeout'], retries=params['retries'],
                          validate_certs=params['validate_certs'], parallel=params['parallel'],
                          min_reachable_percent=params['min_reachable_percent'])
    except BmcPingError as exc:
        module.fail_json(msg=exc.msg, **empty_result())
    if result['below_minimum'] and params['fail_on_below']:
        facts = dict((key, result[key]) for key in BMC_PING_RESULT_KEYS)
        module.fail_json(msg=below_minimum_message(result, params['min_reachable_percent']), **facts)
    module.exit_json(**result)


def empty_result():
    return dict(targets=[], total=0, reachable=0, unreachable=0, reachable_percent=0.0, below_minimum=False)
