# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""fence_verify's core: independent evidence that a host is fenced, and the verdict drawn from it.

Three signals, each read by a small function that takes plain values:

    bmc     the BMC's power state, read only: several consecutive reads must say off
            (read_bmc, over the power controller of _bmc.py in check mode, with a client that cannot send
            a power command)
    nova    the nova-compute service's heartbeat: the last one must be old, and none may be written while
            fence_verify watches (watch_heartbeat, over a `read` callable; read_compute_service is the one
            openstacksdk call behind it)
    probes  TCP connections to addresses of the host on its other networks: none may answer (probe_tcp)

"Provably fenced" (verify): every signal in use gives its fenced verdict, and at least two signals are in use,
so that the BMC's word is never taken alone. Each signal catches what the others cannot:

    a BMC that says off while the host runs (firmware bug, wrong chassis)   nova heartbeat, probes
    a host that is silent but running (frozen, partitioned from the API)    BMC power state
    a host whose nova-compute died while its guests still run               BMC power state
    a host still reachable on a network that Nova does not use              probes

Nothing here changes anything: the BMC client is wrapped so that a power command raises.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import errno
import socket
import time

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.openstack_ha.recovery.plugins.module_utils._bmc import (
    POWER_OFF,
    BmcError,
    FenceError,
    FenceTimeout,
    PowerController,
)
from ansible_collections.openstack_ha.recovery.plugins.module_utils._ipmi import HAS_PYGHMI, PYGHMI_IMPORT_ERROR, IpmiClient
from ansible_collections.openstack_ha.recovery.plugins.module_utils._openstack import (
    HAS_OPENSTACKSDK,
    OPENSTACKSDK_IMPORT_ERROR,
    RecoveryError,
    connect,
    save_token,
)
from ansible_collections.openstack_ha.recovery.plugins.module_utils._redfish import (
    HAS_REQUESTS,
    REQUEST_TIMEOUT,
    REQUESTS_IMPORT_ERROR,
    RedfishClient,
)

# The keys fence_verify returns (besides changed and msg), in success and in failure alike.
FENCE_VERIFY_RESULT_KEYS = ('elapsed', 'evidence', 'fenced', 'reasons')

# Verdicts. Only the first of each signal counts towards "fenced".
BMC_OFF, BMC_NOT_OFF, BMC_UNKNOWN = 'off', 'not_off', 'unknown'
NOVA_SILENT, NOVA_ALIVE, NOVA_UNPROVEN, NOVA_UNKNOWN = 'silent', 'alive', 'unproven', 'unknown'
PROBE_SILENT, PROBE_ANSWERED, PROBE_UNKNOWN = 'silent', 'answered', 'unknown'
SKIPPED = 'skipped'

# Nova must be watched for this many report intervals, with no heartbeat written meanwhile. This part of the
# proof needs no clock but the controller's own monotonic one.
OBSERVE_INTERVALS = 1.5
# Seconds between two reads of the service (at most; a quarter of the report interval when that is shorter).
NOVA_POLL_INTERVAL = 1.0
# Microversion of the one Nova request: 2.11 is the first to return forced_down.
SERVICES_MICROVERSION = '2.11'
MIN_SIGNALS = 2


class NotFenced(FenceError):
    """The host is not provably fenced. facts holds the result (fenced, evidence, reasons, elapsed)."""


class NovaReadError(Exception):
    """The nova-compute service could not be read (no connection, API error, unexpected answer)."""


# ---------------------------------------------------------------------------------------------------------
# BMC


class _ReadOnlyClient:
    """A BMC power client that records every read and refuses to send power commands."""

    def __init__(self, client):
        self._client = client
        self.name = client.name
        self.reads = []

    def get_power(self):
        state = self._client.get_power()
        self.reads.append(state)
        return state

    def set_power(self, state):
        raise BmcError('%s: fence_verify never changes the power state (asked for %s)' % (self.name, state))

    def close(self):
        self._client.close()


def read_bmc(client, protocol, confirmations=3, poll_interval=0.1, retries=2, timeout=30.0,
             clock=time.monotonic, sleep=time.sleep):
    """Read the power state until `confirmations` consecutive reads say off; return the BMC evidence.

    The first read that is not off ends it (verdict not_off); reads that alternate until the timeout also
    give not_off; a BMC that cannot be read gives unknown. The client is closed in every case.
    """
    recorder = _ReadOnlyClient(client)
    evidence = dict(verdict=BMC_UNKNOWN, protocol=protocol, bmc=client.name, reads=recorder.reads,
                    confirmations=confirmations, power=None, error=None)
    started = clock()
    try:
        try:
            controller = PowerController(recorder, timeout=timeout, retries=retries, poll_interval=poll_interval,
                                         confirmations=confirmations, clock=clock, sleep=sleep)
            result = controller.ensure(POWER_OFF, check_mode=True)
            evidence['power'] = result['power']
            evidence['verdict'] = BMC_OFF if result['verified'] else BMC_NOT_OFF
        finally:
            client.close()
    except FenceTimeout as exc:
        evidence.update(verdict=BMC_NOT_OFF, power=exc.facts.get('power'), error=exc.msg)
    except FenceError as exc:
        evidence.update(power=exc.facts.get('power'), error=exc.msg)
    evidence['elapsed'] = round(clock() - started, 3)
    return evidence


def bmc_reason(evidence):
    """Why the BMC evidence does not show a fenced host, or None when it does."""
    if evidence['verdict'] in (BMC_OFF, SKIPPED):
        return None
    if evidence['verdict'] == BMC_NOT_OFF:
        return ('%s does not say off: reads %s (%d consecutive off reads needed)'
                % (evidence['bmc'], ', '.join(str(read) for read in evidence['reads']) or 'none',
                   evidence['confirmations']))
    return 'the power state could not be read: %s' % evidence['error']


# ---------------------------------------------------------------------------------------------------------
# probes


def probe_tcp(host, port, timeout, connect=socket.create_connection, clock=time.monotonic):
    """Try one TCP connection to host:port; return the probe evidence.

    answered: the connection was accepted or refused (a refusal is a TCP reset: some network stack at that
    address is alive). silent: no answer within the timeout, or no route to the host (no ARP/ND answer).
    unknown: the probe could not be sent (name not resolvable, this controller has no route to that network),
    which proves nothing.
    """
    started = clock()
    evidence = dict(host=host, port=port, verdict=PROBE_UNKNOWN, detail=None)
    try:
        sock = connect((host, port), timeout)
    except socket.timeout:
        evidence.update(verdict=PROBE_SILENT, detail='no answer within %s s' % timeout)
    except ConnectionRefusedError:
        evidence.update(verdict=PROBE_ANSWERED, detail='connection refused: a network stack at that address answered')
    except socket.gaierror as exc:
        evidence.update(detail='cannot resolve %s (%s)' % (host, exc))
    except OSError as exc:
        if exc.errno == errno.EHOSTUNREACH:
            evidence.update(verdict=PROBE_SILENT, detail='no route to host (nothing answers for that address)')
        else:
            evidence.update(detail='probe not sent: %s' % (exc.strerror or exc))
    else:
        sock.close()
        evidence.update(verdict=PROBE_ANSWERED, detail='connection accepted')
    evidence['elapsed'] = round(clock() - started, 3)
    return evidence


def probe_reason(evidence):
    if evidence['verdict'] == PROBE_SILENT:
        return None
    where = '%s:%s' % (evidence['host'], evidence['port'])
    if evidence['verdict'] == PROBE_ANSWERED:
        return 'probe %s answered (%s): the host is still on that network' % (where, evidence['detail'])
    return 'probe %s proves nothing (%s)' % (where, evidence['detail'])


# ---------------------------------------------------------------------------------------------------------
# Nova


def parse_nova_time(value):
    """Seconds since the epoch of a Nova timestamp (UTC, '2026-11-22T05:15:01.000000'); None stays None."""
    if not value:
        return None
    text = str(value).strip()
    text = text[:-1] if text.endswith('Z') else text.split('+', 1)[0]
    whole, dummy, fraction = text.partition('.')
    for fmt in ('%Y-%m-%dT%H:%M:%S', '%Y-%m-%d %H:%M:%S'):
        try:
            parsed = time.strptime(whole, fmt)
        except ValueError:
            continue
        return calendar.timegm(parsed) + (float('0.' + fraction) if fraction.isdigit() else 0.0)
    raise NovaReadError('unexpected timestamp %r from Nova' % (value,))


def parse_http_date(value):
    """Seconds since the epoch of an HTTP Date header, or None when absent or unreadable."""
    if not value:
        return None
    try:
        return calendar.timegm(time.strptime(value, '%a, %d %b %Y %H:%M:%S GMT'))
    except ValueError:
        return None


def read_compute_service(conn, host, microversion=SERVICES_MICROVERSION):
    """The one Nova request: GET /os-services for the host's nova-compute. Raises NovaReadError.

    Returns dict(services=[...], server_time=...): the service records as Nova returns them, and the API's
    clock (its Date header, in seconds since the epoch) when it sends one.
    """
    try:
        response = conn.compute.get('/os-services', params=dict(binary='nova-compute', host=host),
                                    microversion=microversion)
    except Exception as exc:  # openstacksdk and keystoneauth raise many unrelated types
        raise NovaReadError('GET /os-services failed: %s' % exc)
    if response.status_code >= 300:
        raise NovaReadError('GET /os-services answered HTTP %d: %s' % (response.status_code, response.text[:200]))
    try:
        services = response.json()['services']
    except (ValueError, KeyError, TypeError):
        raise NovaReadError('GET /os-services did not return a service list')
    return dict(services=services, server_time=parse_http_date(response.headers.get('Date')))


def _latest_service(services, host):
    services = [service for service in services if service.get('host') == host
                and service.get('binary', 'nova-compute') == 'nova-compute']
    if not services:
        return None
    return max(services, key=lambda service: parse_nova_time(service.get('updated_at')) or 0.0)


def watch_heartbeat(read, host, report_interval=10.0, missed_heartbeats=3, deadline=None, wait=True,
                    clock=time.monotonic, sleep=time.sleep, wall_clock=time.time):
    """Watch the host's nova-compute heartbeat; return the Nova evidence.

    silent, when both hold:
      - the last heartbeat is at least report_interval * missed_heartbeats seconds old, measured with the
        API's clock (its Date header) when it sends one, else with this controller's clock; and
      - no heartbeat was written during at least OBSERVE_INTERVALS * report_interval seconds of watching,
        which needs no shared clock at all (a skewed controller clock cannot fake it).
    alive: a heartbeat was written while watching: the host's nova-compute runs after the fence.
    unproven: neither, by the deadline (or at once when `wait` is false): the heartbeat is too recent, or
    the watch too short, to prove anything.
    unknown: the service could not be read, does not exist, or never reported.

    Nova's own `state` (up/down) and `forced_down` are returned as read but never decide: `state` is derived
    from the same updated_at (with Nova's service_down_time) and says down for any forced-down service.
    """
    stale_after = float(report_interval) * missed_heartbeats
    observe_for = float(report_interval) * OBSERVE_INTERVALS
    interval = min(NOVA_POLL_INTERVAL, report_interval / 4.0)
    deadline = clock() if deadline is None else deadline
    evidence = dict(verdict=NOVA_UNKNOWN, host=host, state=None, status=None, forced_down=None, updated_at=None,
                    heartbeat_age=None, stale_after=stale_after, watched=0.0, observe_for=observe_for, reads=0,
                    waited=wait, clock=None, error=None)
    first_heartbeat = None
    # The watch runs from the end of the first read (its answer may predate everything after it) to the start
    # of the latest one, so that slow reads (the first one connects to the cloud) never count as watching.
    watch_started = None
    while True:
        read_started = clock()
        try:
            snapshot = read()
            service = _latest_service(snapshot['services'], host)
            heartbeat = parse_nova_time(service.get('updated_at')) if service else None
        except NovaReadError as exc:
            evidence.update(error='cannot read the nova-compute service of %s: %s' % (host, exc))
            break
        evidence['reads'] += 1
        if watch_started is None:
            watch_started = clock()
        evidence['watched'] = round(max(0.0, read_started - watch_started), 3)
        if service is None:
            evidence.update(error='Nova has no nova-compute service on host %r: check the host name' % host)
            break
        evidence.update(state=service.get('state'), status=service.get('status'),
                        forced_down=service.get('forced_down'), updated_at=service.get('updated_at'))
        if heartbeat is None:
            evidence.update(error='the nova-compute service of %s never reported' % host)
            break
        server_time = snapshot.get('server_time')
        evidence['clock'] = 'nova-api' if server_time is not None else 'controller'
        now = server_time if server_time is not None else wall_clock()
        evidence['heartbeat_age'] = round(now - heartbeat, 3)
        if first_heartbeat is None:
            first_heartbeat = heartbeat
        elif heartbeat > first_heartbeat:
            evidence['verdict'] = NOVA_ALIVE
            break
        if evidence['heartbeat_age'] >= stale_after and evidence['watched'] >= observe_for:
            evidence['verdict'] = NOVA_SILENT
            break
        remaining = deadline - clock()
        if not wait or remaining <= 0:
            evidence['verdict'] = NOVA_UNPROVEN
            break
        sleep(min(interval, remaining))
    return evidence


def nova_reason(evidence):
    verdict = evidence['verdict']
    if verdict in (NOVA_SILENT, SKIPPED):
        return None
    if verdict == NOVA_ALIVE:
        return ('nova-compute on %s wrote a heartbeat while fence_verify watched (updated_at %s): the host runs '
                'after the fence; a BMC that says off is wrong about this host'
                % (evidence['host'], evidence['updated_at']))
    if verdict == NOVA_UNPROVEN and not evidence['waited']:
        return ('the nova-compute heartbeat of %s was read once, not watched, because the other signals already '
                'refute the fence (last heartbeat %s, %.1f s old)'
                % (evidence['host'], evidence['updated_at'], evidence['heartbeat_age']))
    if verdict == NOVA_UNPROVEN:
        return ('the last nova-compute heartbeat of %s (updated_at %s) is %.1f s old after %.1f s of watching; '
                'silence needs %.1f s since the last heartbeat and %.1f s of watching: give fence_verify a longer '
                'timeout, or check report_interval'
                % (evidence['host'], evidence['updated_at'], evidence['heartbeat_age'], evidence['watched'],
                   evidence['stale_after'], evidence['observe_for']))
    return evidence['error']


# ---------------------------------------------------------------------------------------------------------
# the verdict


class FenceVerifier:
    """Gather the evidence of every signal in use and decide whether the host is provably fenced.

    bmc          a BMC power client (see _bmc.py) or None; read only
    protocol     'ipmi' or 'redfish', for the evidence
    nova_read    a callable returning read_compute_service()'s dict, or None
    probes       [dict(host=..., port=...)], addresses that must not answer
    """

    def __init__(self, host, bmc=None, protocol=None, nova_read=None, probes=(), confirmations=3,
                 poll_interval=0.1, retries=2, timeout=60.0, report_interval=10.0, missed_heartbeats=3,
                 probe_timeout=1.0, connect=socket.create_connection, clock=time.monotonic, sleep=time.sleep,
                 wall_clock=time.time):
        signals = (bmc is not None) + (nova_read is not None) + (len(probes) > 0)
        if signals < MIN_SIGNALS:
            raise FenceError('fence_verify needs at least %d independent signals and got %d: a BMC (protocol), '
                             'the Nova heartbeat (nova_heartbeat) and probes, pick two or three'
                             % (MIN_SIGNALS, signals))
        for name, value, minimum in (('timeout', timeout, 0.001), ('report_interval', report_interval, 0.001),
                                     ('missed_heartbeats', missed_heartbeats, 1),
                                     ('probe_timeout', probe_timeout, 0.001)):
            if value < minimum:
                raise FenceError('%s must be at least %s, got %s' % (name, minimum, value))
        self.host = host
        self.bmc = bmc
        self.protocol = protocol
        self.nova_read = nova_read
        self.probes = list(probes)
        self.confirmations = confirmations
        self.poll_interval = poll_interval
        self.retries = retries
        self.timeout = timeout
        self.report_interval = report_interval
        self.missed_heartbeats = missed_heartbeats
        self.probe_timeout = probe_timeout
        self._connect = connect
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock

    def verify(self):
        """Return dict(fenced, evidence, reasons, elapsed). Never raises for a host that is not fenced."""
        started = self._clock()
        deadline = started + self.timeout
        evidence = dict(bmc=dict(verdict=SKIPPED), nova=dict(verdict=SKIPPED), probes=[])
        if self.bmc is not None:
            evidence['bmc'] = read_bmc(self.bmc, self.protocol, confirmations=self.confirmations,
                                       poll_interval=self.poll_interval, retries=self.retries,
                                       timeout=self.timeout, clock=self._clock, sleep=self._sleep)
        for probe in self.probes:
            evidence['probes'].append(probe_tcp(probe['host'], probe['port'], self.probe_timeout,
                                                connect=self._connect, clock=self._clock))
        reasons = [bmc_reason(evidence['bmc'])] + [probe_reason(probe) for probe in evidence['probes']]
        reasons = [reason for reason in reasons if reason]
        if self.nova_read is not None:
            # Waiting for silence only makes sense while the host can still turn out fenced.
            evidence['nova'] = watch_heartbeat(self.nova_read, self.host, report_interval=self.report_interval,
                                               missed_heartbeats=self.missed_heartbeats, deadline=deadline,
                                               wait=not reasons, clock=self._clock, sleep=self._sleep,
                                               wall_clock=self._wall_clock)
            reason = nova_reason(evidence['nova'])
            if reason:
                reasons.append(reason)
        return dict(fenced=not reasons, evidence=evidence, reasons=reasons,
                    elapsed=round(self._clock() - started, 3))


def not_fenced_message(host, result):
    return '%s is NOT provably fenced: %s. Do not evacuate it.' % (host, '; '.join(result['reasons']))


def verify_fence(verifier, fail_when_not_fenced=True):
    """Run the verifier; return the module result, or raise NotFenced (with the result) when asked to."""
    result = verifier.verify()
    if fail_when_not_fenced and not result['fenced']:
        raise NotFenced(not_fenced_message(verifier.host, result), facts=result)
    result['changed'] = False
    return result


# ---------------------------------------------------------------------------------------------------------
# the module edge's helpers: plain values from the module's parameters


def no_evidence(reason):
    """The FENCE_VERIFY_RESULT_KEYS of a run that gathered nothing (bad arguments)."""
    return dict(fenced=False, evidence=dict(bmc=dict(verdict=SKIPPED), nova=dict(verdict=SKIPPED), probes=[]),
                reasons=[reason], elapsed=0.0)


def missing_library(params):
    """(library, traceback) the parameters need but cannot import, or None."""
    if params['protocol'] == 'ipmi' and not HAS_PYGHMI:
        return 'pyghmi', PYGHMI_IMPORT_ERROR
    if params['protocol'] == 'redfish' and not HAS_REQUESTS:
        return 'requests', REQUESTS_IMPORT_ERROR
    if params['nova_heartbeat'] and not HAS_OPENSTACKSDK:
        return 'openstacksdk', OPENSTACKSDK_IMPORT_ERROR
    return None


def bmc_client(params):
    """The BMC power client the parameters describe, or None for protocol none. Connects lazily."""
    if params['protocol'] == 'ipmi':
        return IpmiClient(params['address'], params['username'], params['password'], port=params['port'])
    if params['protocol'] == 'redfish':
        return RedfishClient(params['address'], params['username'], params['password'],
                             system_id=params['system_id'], validate_certs=params['bmc_validate_certs'],
                             request_timeout=min(REQUEST_TIMEOUT, params['timeout']))
    return None


def nova_reader(params, connect_function=None):
    """A read() for watch_heartbeat from the cloud options, connecting at the first read; or None."""
    if not params['nova_heartbeat']:
        return None
    connection = []
    microversion = params.get('compute_microversion') or SERVICES_MICROVERSION

    def read():
        first = not connection
        if first:
            try:
                connection.append(connect(params, connect_function=connect_function))
            except RecoveryError as exc:
                raise NovaReadError(exc.msg)
        service = read_compute_service(connection[0], params['host'], microversion=microversion)
        if first:
            save_token(connection[0])  # authenticated now: leave the token for the modules after this one
        return service
    return read


def verifier_from_params(params, connect_function=None):
    """The FenceVerifier the module's parameters describe. Raises FenceError for unusable ones."""
    client = bmc_client(params)
    try:
        return FenceVerifier(
            params['host'], bmc=client, protocol=params['protocol'],
            nova_read=nova_reader(params, connect_function=connect_function), probes=params['probes'] or [],
            confirmations=params['confirmations'], poll_interval=params['poll_interval'],
            retries=params['retries'], timeout=params['timeout'], report_interval=params['report_interval'],
            missed_heartbeats=params['missed_heartbeats'], probe_timeout=params['probe_timeout'])
    except FenceError:
        if client is not None:
            client.close()
        raise


def run_fence_verify_module(module, connect_function=None):
    """fence_verify's edge: check the imports, verify, turn NotFenced and FenceError into fail_json."""
    params = module.params
    missing = missing_library(params)
    if missing:
        module.fail_json(msg=missing_required_lib(missing[0]), exception=missing[1])
    try:
        result = verify_fence(verifier_from_params(params, connect_function=connect_function),
                              fail_when_not_fenced=params['fail_when_not_fenced'])
    except NotFenced as exc:
        module.fail_json(msg=exc.msg, **exc.facts)
    except FenceError as exc:
        module.fail_json(msg=exc.msg, **no_evidence(exc.msg))
    module.exit_json(**result)
