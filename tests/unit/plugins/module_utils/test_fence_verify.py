"""fence_verify's core: every verdict of every signal, the overall verdict, and every message.

The BMC is conftest's FakeBmc, Nova a FakeNova on the same FakeClock (heartbeats every report_interval seconds
of the test's clock, written with MariaDB's one-second resolution), probes a fake socket.create_connection
(plus two real local sockets). Nothing sleeps for real.
"""

import errno
import math
import socket
import time

import pytest

from ansible_collections.openstack_ha.recovery.plugins.module_utils import _fence_verify as fv
from ansible_collections.openstack_ha.recovery.plugins.module_utils._bmc import BmcError, FenceError

# Wall-clock time (time.time()) when the FakeClock reads 1000.0.
EPOCH = 1795324500.0
HOST = 'compute1'


def nova_time(seconds):
    return time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(int(seconds))) + '.000000'


class FakeNova:
    """GET /os-services for one host's nova-compute, on the test's clock.

    report_interval  seconds between heartbeats while the host runs (heartbeats at EPOCH + k * interval)
    died_ago         the host stopped heartbeating this many seconds before the test started (None: alive)
    server_skew      the Date header, seconds ahead of the true time (None: no Date header, as behind uwsgi)
    first_read_cost  seconds the first read takes (it connects to the cloud)
    """

    def __init__(self, clock, report_interval=2.0, died_ago=None, state=None, forced_down=False, status='enabled',
                 server_skew=None, fail=None, services=None, first_read_cost=0.0):
        self.clock = clock
        self.first_read_cost = first_read_cost
        self.report_interval = report_interval
        self.died_at = None if died_ago is None else EPOCH - died_ago
        self.state = state
        self.forced_down = forced_down
        self.status = status
        self.server_skew = server_skew
        self.fail = fail
        self.services = services
        self.reads = 0

    def wall(self):
        return EPOCH + self.clock.now - 1000.0

    def die_now(self):
        self.died_at = self.wall()

    def last_heartbeat(self):
        end = self.wall() if self.died_at is None else min(self.wall(), self.died_at)
        return EPOCH + math.floor((end - EPOCH) / self.report_interval) * self.report_interval

    def __call__(self):
        self.reads += 1
        if self.reads == 1:
            self.clock.now += self.first_read_cost  # connecting to the cloud
        if self.fail:
            raise fv.NovaReadError(self.fail)
        if self.services is not None:
            services = self.services
        else:
            heartbeat = self.last_heartbeat()
            state = self.state or ('up' if self.wall() - heartbeat < 8 and not self.forced_down else 'down')
            services = [dict(binary='nova-compute', host=HOST, state=state, status=self.status,
                             forced_down=self.forced_down, updated_at=nova_time(heartbeat))]
        server_time = None if self.server_skew is None else math.floor(self.wall() + self.server_skew)
        return dict(services=services, server_time=server_time)


@pytest.fixture
def make_nova(clock):
    def make(**behaviour):
        return FakeNova(clock, **behaviour)
    return make


def watch(nova, clock, timeout=30.0, wait=True, report_interval=2.0, missed_heartbeats=3, skew=0.0):
    return fv.watch_heartbeat(nova, HOST, report_interval=report_interval, missed_heartbeats=missed_heartbeats,
                              deadline=clock.now + timeout, wait=wait, clock=clock, sleep=clock.sleep,
                              wall_clock=lambda: EPOCH + clock.now - 1000.0 + skew)


class FakeConnect:
    """socket.create_connection that raises a given error, or accepts."""

    def __init__(self, error=None):
        self.error = error
        self.calls = []

    def __call__(self, address, timeout):
        self.calls.append((address, timeout))
        if self.error is not None:
            raise self.error

        class Sock:
            closed = False

            def close(self):
                Sock.closed = True
        return Sock()


# ---------------------------------------------------------------------------------------------------------
# BMC


def read(bmc, clock, **kwargs):
    kwargs.setdefault('timeout', 5.0)
    return fv.read_bmc(bmc, 'ipmi', clock=clock, sleep=clock.sleep, **kwargs)


def test_bmc_off_needs_consecutive_reads(make_bmc, clock):
    bmc = make_bmc(power='off')
    evidence = read(bmc, clock, confirmations=3, poll_interval=0.1)
    assert evidence['verdict'] == 'off'
    assert evidence['reads'] == ['off', 'off', 'off']
    assert (evidence['power'], evidence['error'], evidence['bmc']) == ('off', None, bmc.name)
    assert bmc.commands == [] and bmc.closed
    assert fv.bmc_reason(evidence) is None


def test_bmc_on_is_not_off_after_one_read(make_bmc, clock):
    bmc = make_bmc(power='on')
    evidence = read(bmc, clock)
    assert (evidence['verdict'], evidence['reads'], evidence['power']) == ('not_off', ['on'], 'on')
    assert bmc.commands == [] and bmc.closed
    assert fv.bmc_reason(evidence) == ('FAKE BMC 192.0.2.10:623 does not say off: reads on '
                                       '(3 consecutive off reads needed)')


def test_bmc_transitional_state_is_not_off(make_bmc, clock):
    evidence = read(make_bmc(reads=['poweringoff']), clock)
    assert (evidence['verdict'], evidence['reads']) == ('not_off', ['poweringoff'])


def test_bmc_flapping_until_the_timeout_is_not_off(make_bmc, clock):
    bmc = make_bmc(reads=['off', 'on'] * 50)
    evidence = read(bmc, clock, timeout=1.0, poll_interval=0.1)
    assert evidence['verdict'] == 'not_off'
    assert evidence['reads'][:4] == ['off', 'on', 'off', 'on']
    assert 'consecutive' in evidence['error']
    assert fv.bmc_reason(evidence).startswith('FAKE BMC 192.0.2.10:623 does not say off: reads off, on, off')


def test_bmc_that_does_not_answer_is_unknown_after_the_retries(make_bmc, clock):
    bmc = make_bmc(silent=10)
    evidence = read(bmc, clock, retries=2, timeout=60.0)
    assert evidence['verdict'] == 'unknown'
    assert evidence['reads'] == [] and evidence['power'] is None
    assert bmc.requests == 3
    assert 'did not answer (read the power state) after 3 tries' in evidence['error']
    assert fv.bmc_reason(evidence).startswith('the power state could not be read: FAKE BMC 192.0.2.10:623 did not')


def test_bmc_rejecting_credentials_is_unknown_at_once(make_bmc, clock):
    bmc = make_bmc(rejects_credentials=True)
    evidence = read(bmc, clock, retries=5)
    assert evidence['verdict'] == 'unknown'
    assert bmc.requests == 1
    assert 'rejected the login' in evidence['error']
    assert bmc.password not in repr(evidence)


def test_bmc_reader_can_never_send_a_power_command(make_bmc):
    recorder = fv._ReadOnlyClient(make_bmc())
    with pytest.raises(BmcError, match='fence_verify never changes the power state'):
        recorder.set_power('off')


def test_lying_bmc_says_off(make_bmc, clock):
    bmc = make_bmc(power='on', lies=True)
    bmc.set_power('off')  # the fence module's command: the BMC says yes and leaves the host running
    evidence = read(bmc, clock)
    assert evidence['verdict'] == 'off'
    assert bmc.power == 'on'


# ---------------------------------------------------------------------------------------------------------
# probes


def test_probe_without_answer_is_silent():
    connect = FakeConnect(socket.timeout('timed out'))
    evidence = fv.probe_tcp('192.0.2.7', 22, 0.5, connect=connect)
    assert (evidence['verdict'], evidence['detail']) == ('silent', 'no answer within 0.5 s')
    assert connect.calls == [(('192.0.2.7', 22), 0.5)]
    assert fv.probe_reason(evidence) is None


def test_probe_with_no_route_to_the_host_is_silent():
    evidence = fv.probe_tcp('192.0.2.7', 22, 0.5, connect=FakeConnect(OSError(errno.EHOSTUNREACH, 'No route')))
    assert evidence['verdict'] == 'silent'
    assert 'no route to host' in evidence['detail']


def test_probe_accepted_is_an_answer():
    connect = FakeConnect()
    evidence = fv.probe_tcp('192.0.2.7', 22, 0.5, connect=connect)
    assert (evidence['verdict'], evidence['detail']) == ('answered', 'connection accepted')
    assert fv.probe_reason(evidence) == ('probe 192.0.2.7:22 answered (connection accepted): the host is still '
                                         'on that network')


def test_probe_refused_is_an_answer():
    evidence = fv.probe_tcp('192.0.2.7', 22, 0.5, connect=FakeConnect(ConnectionRefusedError()))
    assert evidence['verdict'] == 'answered'
    assert evidence['detail'].startswith('connection refused')


@pytest.mark.parametrize('error, detail', [
    (socket.gaierror(-2, 'Name or service not known'), 'cannot resolve compute1-storage'),
    (OSError(errno.ENETUNREACH, 'Network is unreachable'), 'probe not sent: Network is unreachable'),
])
def test_probe_that_cannot_be_sent_proves_nothing(error, detail):
    evidence = fv.probe_tcp('compute1-storage', 22, 0.5, connect=FakeConnect(error))
    assert evidence['verdict'] == 'unknown'
    assert evidence['detail'].startswith(detail)
    assert fv.probe_reason(evidence).startswith('probe compute1-storage:22 proves nothing (%s' % detail)


def test_real_sockets_listening_and_closed_ports_both_answer():
    with socket.socket() as server:
        server.bind(('127.0.0.1', 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert fv.probe_tcp('127.0.0.1', port, 1.0)['verdict'] == 'answered'
    closed = fv.probe_tcp('127.0.0.1', port, 1.0)
    assert (closed['verdict'], closed['detail'].split(':')[0]) == ('answered', 'connection refused')


# ---------------------------------------------------------------------------------------------------------
# Nova


def test_host_dead_long_ago_is_silent_after_the_observation_window(make_nova, clock):
    nova = make_nova(died_ago=60)
    evidence = watch(nova, clock)
    assert evidence['verdict'] == 'silent'
    assert evidence['stale_after'] == 6.0 and evidence['observe_for'] == 3.0
    assert evidence['watched'] >= 3.0
    assert evidence['heartbeat_age'] >= 60
    assert evidence['state'] == 'down' and evidence['forced_down'] is False and evidence['status'] == 'enabled'
    assert evidence['clock'] == 'controller'
    assert evidence['reads'] == nova.reads >= 2
    assert fv.nova_reason(evidence) is None


def test_slow_first_read_does_not_count_as_watching(make_nova, clock):
    nova = make_nova(died_ago=60, first_read_cost=5.0)
    evidence = watch(nova, clock)
    assert evidence['verdict'] == 'silent'
    assert 3.0 <= evidence['watched'] <= 3.5
    assert nova.reads >= 7  # every 0.5 s (a quarter of the report interval) for 3 s after the first answer


def test_heartbeat_written_while_watching_is_alive_at_once(make_nova, clock):
    nova = make_nova()  # running: heartbeat every 2 s
    evidence = watch(nova, clock, timeout=60)
    assert evidence['verdict'] == 'alive'
    assert evidence['watched'] <= 2.5
    reason = fv.nova_reason(evidence)
    assert reason.startswith('nova-compute on compute1 wrote a heartbeat while fence_verify watched (updated_at ')
    assert 'a BMC that says off is wrong about this host' in reason


def test_host_that_died_just_now_is_waited_for_until_silent(make_nova, clock):
    nova = make_nova()
    clock.now += 1.5
    nova.die_now()  # last heartbeat 1.5 s ago
    evidence = watch(nova, clock, timeout=30)
    assert evidence['verdict'] == 'silent'
    assert 6.0 <= evidence['heartbeat_age'] <= 7.0
    assert 4.0 <= evidence['watched'] <= 5.0


def test_short_deadline_leaves_silence_unproven(make_nova, clock):
    nova = make_nova()
    nova.die_now()
    evidence = watch(nova, clock, timeout=2.0)
    assert evidence['verdict'] == 'unproven'
    assert evidence['heartbeat_age'] < 6.0
    assert fv.nova_reason(evidence).startswith('the last nova-compute heartbeat of compute1 (updated_at ')
    assert 'silence needs 6.0 s since the last heartbeat and 3.0 s of watching: give fence_verify a longer ' \
           'timeout, or check report_interval' in fv.nova_reason(evidence)


def test_old_heartbeat_still_needs_the_observation_window(make_nova, clock):
    evidence = watch(make_nova(died_ago=600), clock, timeout=1.0)
    assert evidence['verdict'] == 'unproven'
    assert evidence['heartbeat_age'] >= 600


def test_without_waiting_one_read_is_unproven(make_nova, clock):
    nova = make_nova(died_ago=600)
    evidence = watch(nova, clock, wait=False)
    assert (evidence['verdict'], nova.reads, clock.sleeps, evidence['waited']) == ('unproven', 1, [], False)
    assert fv.nova_reason(evidence).endswith('because the other signals already refute the fence (last heartbeat '
                                             '%s, 600.0 s old)' % nova_time(EPOCH - 600))


def test_controller_clock_far_ahead_cannot_fake_silence(make_nova, clock):
    # The controller's clock runs 10 minutes ahead: every heartbeat looks old, but one is written while watching.
    evidence = watch(make_nova(), clock, skew=600.0)
    assert evidence['verdict'] == 'alive'


def test_nova_api_clock_is_preferred_to_the_controller_clock(make_nova, clock):
    nova = make_nova(server_skew=0.0)
    nova.die_now()
    evidence = watch(nova, clock, skew=600.0, timeout=2.0)
    assert evidence['clock'] == 'nova-api'
    assert evidence['heartbeat_age'] < 6.0  # measured with the API's clock, not the skewed one
    assert evidence['verdict'] == 'unproven'


def test_forced_down_state_never_decides(make_nova, clock):
    evidence = watch(make_nova(forced_down=True), clock)
    assert (evidence['state'], evidence['forced_down'], evidence['verdict']) == ('down', True, 'alive')


def test_state_up_never_decides_either(make_nova, clock):
    evidence = watch(make_nova(died_ago=60, state='up'), clock)
    assert (evidence['state'], evidence['verdict']) == ('up', 'silent')


@pytest.mark.parametrize('services, error', [
    ([], "Nova has no nova-compute service on host 'compute1': check the host name"),
    ([dict(binary='nova-compute', host='compute2', updated_at=nova_time(EPOCH))],
     "Nova has no nova-compute service on host 'compute1': check the host name"),
    ([dict(binary='nova-compute', host=HOST, state='down', updated_at=None)],
     'the nova-compute service of compute1 never reported'),
    ([dict(binary='nova-compute', host=HOST, updated_at='yesterday')],
     "cannot read the nova-compute service of compute1: unexpected timestamp 'yesterday' from Nova"),
])
def test_missing_or_silent_service_records_are_unknown(make_nova, clock, services, error):
    evidence = watch(make_nova(services=services), clock)
    assert (evidence['verdict'], evidence['error']) == ('unknown', error)
    assert fv.nova_reason(evidence) == error


def test_latest_of_several_service_records_counts(make_nova, clock):
    services = [dict(binary='nova-compute', host=HOST, state='down', updated_at=nova_time(EPOCH - 3600)),
                dict(binary='nova-compute', host=HOST, state='down', updated_at=nova_time(EPOCH - 60))]
    evidence = watch(make_nova(services=services), clock)
    assert (evidence['verdict'], evidence['updated_at']) == ('silent', nova_time(EPOCH - 60))


def test_unreadable_service_is_unknown(make_nova, clock):
    evidence = watch(make_nova(fail='GET /os-services answered HTTP 503: busy'), clock)
    assert evidence['verdict'] == 'unknown'
    assert evidence['error'] == ('cannot read the nova-compute service of compute1: GET /os-services answered '
                                 'HTTP 503: busy')


@pytest.mark.parametrize('text, seconds', [
    ('2026-11-22T05:15:01.000000', 1795324501.0), ('2026-11-22T05:15:01', 1795324501.0),
    ('2026-11-22T05:15:01.250000Z', 1795324501.25), ('2026-11-22 05:15:01', 1795324501.0),
    ('2026-11-22T05:15:01+00:00', 1795324501.0), (None, None), ('', None)])
def test_nova_timestamps(text, seconds):
    assert fv.parse_nova_time(text) == seconds


def test_http_dates():
    assert fv.parse_http_date('Sun, 22 Nov 2026 05:15:01 GMT') == 1795324501
    assert fv.parse_http_date('not a date') is None
    assert fv.parse_http_date(None) is None


class FakeResponse:
    def __init__(self, status_code=200, body=None, headers=None, text=''):
        self.status_code = status_code
        self.body = body
        self.headers = headers or {}
        self.text = text

    def json(self):
        if self.body is None:
            raise ValueError('no JSON')
        return self.body


class FakeCompute:
    def __init__(self, response=None, error=None):
        self.response = response
        self.error = error
        self.calls = []

    def get(self, url, **kwargs):
        self.calls.append((url, kwargs))
        if self.error:
            raise self.error
        return self.response


class FakeConn:
    def __init__(self, **kwargs):
        self.compute = FakeCompute(**kwargs)


def test_read_compute_service_is_one_get_with_the_api_clock():
    services = [dict(host=HOST, binary='nova-compute', updated_at='2026-11-22T05:15:01.000000')]
    conn = FakeConn(response=FakeResponse(body=dict(services=services),
                                          headers={'Date': 'Sun, 22 Nov 2026 05:15:31 GMT'}))
    assert fv.read_compute_service(conn, HOST) == dict(services=services, server_time=1795324531)
    assert conn.compute.calls == [('/os-services', dict(params=dict(binary='nova-compute', host=HOST),
                                                        microversion='2.11'))]


@pytest.mark.parametrize('conn, error', [
    (FakeConn(error=RuntimeError('connection reset')), 'GET /os-services failed: connection reset'),
    (FakeConn(response=FakeResponse(403, text='Policy does not allow')),
     'GET /os-services answered HTTP 403: Policy does not allow'),
    (FakeConn(response=FakeResponse(200, body=None)), 'GET /os-services did not return a service list'),
    (FakeConn(response=FakeResponse(200, body={'servers': []})), 'GET /os-services did not return a service list'),
])
def test_read_compute_service_errors(conn, error):
    with pytest.raises(fv.NovaReadError, match='^%s$' % error):
        fv.read_compute_service(conn, HOST)


# ---------------------------------------------------------------------------------------------------------
# the verdict


def verifier(clock, **kwargs):
    kwargs.setdefault('report_interval', 2.0)
    kwargs.setdefault('timeout', 30.0)
    return fv.FenceVerifier(HOST, clock=clock, sleep=clock.sleep,
                            wall_clock=lambda: EPOCH + clock.now - 1000.0, **kwargs)


def test_bmc_off_and_nova_silent_is_fenced(make_bmc, make_nova, clock):
    result = verifier(clock, bmc=make_bmc(power='off'), protocol='ipmi', nova_read=make_nova(died_ago=30)).verify()
    assert result['fenced'] is True and result['reasons'] == []
    assert result['evidence']['bmc']['verdict'] == 'off'
    assert result['evidence']['nova']['verdict'] == 'silent'
    assert result['evidence']['probes'] == []
    assert result['elapsed'] >= 3.0
    assert set(result) == set(fv.FENCE_VERIFY_RESULT_KEYS)


def test_lying_bmc_is_not_fenced_because_of_the_heartbeat(make_bmc, make_nova, clock):
    bmc = make_bmc(power='on', lies=True)
    bmc.set_power('off')
    result = verifier(clock, bmc=bmc, protocol='ipmi', nova_read=make_nova()).verify()
    assert result['fenced'] is False
    assert result['evidence']['bmc']['verdict'] == 'off'
    assert result['evidence']['nova']['verdict'] == 'alive'
    assert len(result['reasons']) == 1 and 'wrote a heartbeat' in result['reasons'][0]


def test_answering_probe_refutes_an_otherwise_good_fence(make_bmc, make_nova, clock):
    connect = FakeConnect(ConnectionRefusedError())
    result = verifier(clock, bmc=make_bmc(power='off'), protocol='ipmi', nova_read=make_nova(died_ago=30),
                      probes=[dict(host='10.40.0.17', port=22)], connect=connect, probe_timeout=0.5).verify()
    assert result['fenced'] is False
    assert result['reasons'] == ['probe 10.40.0.17:22 answered (connection refused: a network stack at that '
                                 'address answered): the host is still on that network',
                                 'the nova-compute heartbeat of compute1 was read once, not watched, because the '
                                 'other signals already refute the fence (last heartbeat 2026-11-22T05:14:30.000000, '
                                 '30.2 s old)']  # 30 s plus the BMC's reads
    assert result['evidence']['nova']['waited'] is False
    assert connect.calls == [(('10.40.0.17', 22), 0.5)]


def test_bmc_on_does_not_wait_for_nova(make_bmc, make_nova, clock):
    nova = make_nova(died_ago=30)
    result = verifier(clock, bmc=make_bmc(power='on'), protocol='redfish', nova_read=nova).verify()
    assert result['fenced'] is False
    assert nova.reads == 1
    assert result['evidence']['bmc']['protocol'] == 'redfish'
    assert [reason.split(' ')[:3] for reason in result['reasons']] == [
        ['FAKE', 'BMC', '192.0.2.10:623'], ['the', 'nova-compute', 'heartbeat']]


def test_every_failing_signal_gives_its_reason(make_bmc, make_nova, clock):
    result = verifier(clock, bmc=make_bmc(silent=10, silence_cost=1.0), protocol='ipmi', retries=0,
                      nova_read=make_nova(fail='no endpoint'),
                      probes=[dict(host='10.40.0.17', port=22)], connect=FakeConnect(OSError(errno.ENETUNREACH,
                                                                                             'unreachable'))).verify()
    assert result['fenced'] is False
    assert [reason[:24] for reason in result['reasons']] == [
        'the power state could no', 'probe 10.40.0.17:22 prov', 'cannot read the nova-com']


def test_switch_port_fence_without_bmc_uses_nova_and_probes(make_nova, clock):
    result = verifier(clock, nova_read=make_nova(died_ago=30), probes=[dict(host='10.40.0.17', port=22)],
                      connect=FakeConnect(socket.timeout())).verify()
    assert result['fenced'] is True
    assert result['evidence']['bmc'] == dict(verdict='skipped')


def test_bmc_and_probes_without_nova(make_bmc, clock):
    result = verifier(clock, bmc=make_bmc(power='off'), protocol='ipmi', probes=[dict(host='10.40.0.17', port=22)],
                      connect=FakeConnect(socket.timeout())).verify()
    assert result['fenced'] is True
    assert result['evidence']['nova'] == dict(verdict='skipped')


@pytest.mark.parametrize('signals', [dict(), dict(bmc='bmc'), dict(nova_read='nova'),
                                     dict(probes=[dict(host='h', port=1)])])
def test_the_bmc_word_alone_is_never_enough(clock, make_bmc, signals):
    if signals.get('bmc'):
        signals['bmc'] = make_bmc()
    with pytest.raises(FenceError) as caught:
        verifier(clock, **signals)
    assert caught.value.msg == ('fence_verify needs at least 2 independent signals and got %d: a BMC (protocol), '
                                'the Nova heartbeat (nova_heartbeat) and probes, pick two or three'
                                % len(signals))


@pytest.mark.parametrize('option, value, minimum', [('timeout', 0, 0.001), ('report_interval', 0, 0.001),
                                                    ('missed_heartbeats', 0, 1), ('probe_timeout', -1, 0.001)])
def test_unusable_values_are_refused(clock, make_bmc, make_nova, option, value, minimum):
    with pytest.raises(FenceError, match='^%s must be at least %s, got %s$' % (option, minimum, value)):
        verifier(clock, bmc=make_bmc(), nova_read=make_nova(), **{option: value})


def test_verify_fence_raises_not_fenced_with_the_result(make_bmc, make_nova, clock):
    with pytest.raises(fv.NotFenced) as caught:
        fv.verify_fence(verifier(clock, bmc=make_bmc(power='on'), protocol='ipmi', nova_read=make_nova()))
    assert caught.value.msg.startswith('compute1 is NOT provably fenced: FAKE BMC 192.0.2.10:623 does not say off')
    assert caught.value.msg.endswith('. Do not evacuate it.')
    assert caught.value.facts['fenced'] is False and set(caught.value.facts) == set(fv.FENCE_VERIFY_RESULT_KEYS)


def test_verify_fence_can_report_instead_of_failing(make_bmc, make_nova, clock):
    result = fv.verify_fence(verifier(clock, bmc=make_bmc(power='on'), protocol='ipmi', nova_read=make_nova()),
                             fail_when_not_fenced=False)
    assert (result['fenced'], result['changed']) == (False, False)


def test_fenced_result_is_not_a_change(make_bmc, make_nova, clock):
    result = fv.verify_fence(verifier(clock, bmc=make_bmc(power='off'), protocol='ipmi',
                                      nova_read=make_nova(died_ago=30)))
    assert (result['fenced'], result['changed']) == (True, False)
