"""Event source openstack_ha.recovery.alertmanager: Prometheus Alertmanager webhooks, one event per alert.

ansible-rulebook loads this file with runpy and calls ``main(queue, args)``; everything it needs is in this
file (no imports from the collection). The pieces are plain functions so the unit tests can drive each one.
"""

import asyncio
import hashlib
import hmac
import json
import logging
import ssl

from aiohttp import web

DOCUMENTATION = r"""
---
short_description: Receive Prometheus Alertmanager webhooks, authenticated, one event per alert
description:
  - An ansible-rulebook event source that receives the notifications of an Alertmanager C(webhook_configs)
    receiver and puts one event per alert on the queue, so a rule sees one alert (one host) at a time.
  - Every request must authenticate, with a Bearer token (what Alertmanager sends with
    C(http_config.authorization)), an HMAC signature of the body (for relays that sign), or both. At least one
    of O(token) and O(hmac_secret) is required; the source refuses to start without.
  - Credentials are compared in constant time. Neither the token nor the HMAC secret is ever logged, and the
    request headers are not copied into events.
  - "Answers: 200 with C({\"events\": N}) when the alerts are queued; 401 for a missing or wrong token or
    signature (checked before the body is read, for the token); 405 for any method but POST; 413 for a body
    larger than O(max_body_bytes); 400 for a body that is not JSON or not an Alertmanager notification
    (C(version) \"4\", an C(alerts) list, each alert an object with C(status) firing or resolved and a
    C(labels) object of strings). Any path is accepted; it is passed on as C(meta.endpoint)."
  - Resolved alerts are emitted too, with C(alert.status) C(resolved) (Alertmanager sends them unless the
    receiver sets C(send_resolved) to false); rules decide what to do with them, usually nothing. A recovery
    rule must therefore test C(event.alert.status == "firing").
  - Arguments whose names start with C(eda_) are set by ansible-rulebook itself (for example
    C(eda_feedback_queue)) and are ignored. Any other argument not listed here is an error naming it.
options:
  certfile:
    description:
      - Path of a PEM certificate (chain) to serve HTTPS. Without it the source serves plain HTTP.
      - TLS 1.2 is the oldest version accepted.
    type: str
  hmac_algo:
    description:
      - Hash function of the HMAC signature.
    type: str
    default: sha256
    choices: [sha256, sha384, sha512]
  hmac_header:
    description:
      - Request header that carries the signature, as lowercase or uppercase hex, optionally prefixed with
        C(<hmac_algo>=) (GitHub style, C(sha256=9f86...)).
    type: str
    default: X-Hub-Signature-256
  hmac_secret:
    description:
      - Shared secret of an HMAC over the raw request body. When set, every request must carry a valid
        signature in O(hmac_header).
      - Alertmanager itself cannot sign requests; use this with a relay that does, and O(token) for Alertmanager.
    type: str
  host:
    description:
      - Address to listen on, IPv4 or IPv6 (C(::1), C(2001:db8::5), brackets allowed) or a host name.
      - The default is loopback on purpose. This webhook starts fencing and evacuation of compute hosts; binding
        every interface (C(0.0.0.0) or C(::)) exposes it to every network the controller is on. When Alertmanager
        runs elsewhere, listen on the management address only, with O(certfile) and a O(token).
    type: str
    default: 127.0.0.1
  keyfile:
    description:
      - Path of the PEM private key of O(certfile), when it is not in the certificate file. Requires O(certfile).
    type: str
  max_body_bytes:
    description:
      - Largest request body accepted, in bytes; larger bodies are refused with 413 before they are read whole.
      - The default holds a few thousand alerts; Alertmanager's C(max_alerts) truncation would hide failed hosts
        from the storm guard, so raise this rather than truncating.
    type: int
    default: 4194304
  port:
    description:
      - TCP port to listen on. C(0) picks a free port (tests); the address bound is logged.
    type: int
    required: true
  token:
    description:
      - "Bearer token every request must carry (C(Authorization: Bearer <token>)); Alertmanager sends it with the
        receiver's C(http_config.authorization.credentials) or C(credentials_file)."
      - Pass it from a vault or an environment variable (C(ansible-rulebook -E)), never in the rulebook itself.
      - Whitespace around it is ignored (a token read from a file with its newline still matches).
    type: str
notes:
  - The event shape is documented in the EVENT string of this file and checked by the unit tests.
  - Alertmanager retries a delivery that fails with a 5xx answer or a network error; a 4xx answer (bad token,
    malformed body) is final, so fix the configuration and watch C(alertmanager_notifications_failed_total).
"""

EXAMPLES = r"""
- name: Recover compute hosts that Alertmanager reports dead
  hosts: all
  sources:
    - openstack_ha.recovery.alertmanager:
        host: 127.0.0.1
        port: 9890
        token: "{{ ALERTMANAGER_WEBHOOK_TOKEN }}"  # ansible-rulebook -E ALERTMANAGER_WEBHOOK_TOKEN
  rules:
    - name: One recovery per dead host
      condition: >-
        event.alert.status == "firing"
        and event.alert.labels.alertname == "NovaComputeDown"
      throttle:
        once_within: 10 minutes
        group_by_attributes:
          - event.alert.labels.host
      action:
        run_playbook:
          name: openstack_ha.recovery.host_failover
          extra_vars:
            host_failover_host: "{{ event.alert.labels.host }}"

- name: HTTPS on the management address, token and HMAC (a signing relay in front)
  hosts: all
  sources:
    - openstack_ha.recovery.alertmanager:
        host: "2001:db8::5"
        port: 9890
        certfile: /etc/eda/tls/webhook.crt
        keyfile: /etc/eda/tls/webhook.key
        token: "{{ ALERTMANAGER_WEBHOOK_TOKEN }}"
        hmac_secret: "{{ RELAY_HMAC_SECRET }}"
        hmac_header: X-Relay-Signature
  rules: []
"""

EVENT = r"""
# One event per alert of a notification, in the notification's order.
alert:
  description: The alert, as Alertmanager sent it. A key Alertmanager left out is null.
  contains:
    status:
      description: firing or resolved.
    labels:
      description: The alert's labels (alertname, host, ...), strings.
    annotations:
      description: The alert's annotations, an empty object when there are none.
    startsAt:
      description: RFC 3339 time the alert started.
    endsAt:
      description: RFC 3339 end time; 0001-01-01T00:00:00Z while firing without an end.
    fingerprint:
      description: Alertmanager's hash of the labels, stable across notifications.
    generatorURL:
      description: Link to the rule that fired (Prometheus graph URL).
receiver:
  description: Name of the Alertmanager receiver that sent the notification.
groupKey:
  description: Alertmanager's key of the alert group (route and group_by labels).
externalURL:
  description: Alertmanager's own URL.
meta:
  description: Where the alert came from. ansible-rulebook adds source, received_at and uuid to it.
  contains:
    endpoint:
      description: Path the notification was posted to.
    group:
      description: The notification the alert came in.
      contains:
        status:
          description: firing if any alert of the notification fires, else resolved.
        groupLabels:
          description: Labels the route groups by.
        commonLabels:
          description: Labels all alerts of the notification share.
        commonAnnotations:
          description: Annotations all alerts of the notification share.
        truncatedAlerts:
          description: Alerts Alertmanager dropped because of the receiver's max_alerts.
        index:
          description: Position of this alert in the notification, from 0.
        count:
          description: Number of alerts in the notification.
"""

LOG = logging.getLogger('openstack_ha.recovery.alertmanager')

# The arguments main() accepts: the code reads them only through this table and DOCUMENTATION must describe
# exactly these, with the same type, default, required and choices (tests/unit/extensions checks it).
# 'secret' marks values that must never be logged or shown.
ARGS = {
    'certfile': {'type': 'str'},
    'hmac_algo': {'type': 'str', 'default': 'sha256', 'choices': ['sha256', 'sha384', 'sha512']},
    'hmac_header': {'type': 'str', 'default': 'X-Hub-Signature-256'},
    'hmac_secret': {'type': 'str', 'secret': True},
    'host': {'type': 'str', 'default': '127.0.0.1'},
    'keyfile': {'type': 'str'},
    'max_body_bytes': {'type': 'int', 'default': 4194304},
    'port': {'type': 'int', 'required': True},
    'token': {'type': 'str', 'secret': True},
}
# Arguments ansible-rulebook adds on its own (eda_feedback_queue, ...).
ENGINE_ARG_PREFIX = 'eda_'
ALERT_KEYS = ('status', 'labels', 'annotations', 'startsAt', 'endsAt', 'fingerprint', 'generatorURL')
ALERT_STATUSES = ('firing', 'resolved')
GROUP_KEYS = ('status', 'groupLabels', 'commonLabels', 'commonAnnotations', 'truncatedAlerts')


class ConfigError(ValueError):
    """An argument of the source is missing, unknown or invalid. The message names it, never its value if secret."""


class Rejected(Exception):
    """A request refused with an HTTP status; the message is the answer's body and goes to the log."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class Settings:
    """The validated arguments. Secret values stay out of repr()."""

    def __init__(self, values):
        for name in ARGS:
            setattr(self, name, values.get(name))

    def __repr__(self):
        shown = ('%s=%r' % (name, '********' if ARGS[name].get('secret') and getattr(self, name) is not None
                            else getattr(self, name)) for name in sorted(ARGS))
        return 'Settings(%s)' % ', '.join(shown)


def _typed(name, value):
    kind = ARGS[name]['type']
    shown = '(hidden)' if ARGS[name].get('secret') else repr(value)
    if kind == 'str':
        if not isinstance(value, str):
            raise ConfigError('argument %s must be a string, got %s %s' % (name, type(value).__name__, shown))
        if not value:
            raise ConfigError('argument %s must not be empty (an unset variable?)' % name)
        return value
    # int: a templated value (ansible-rulebook vars, -E environment variables) may arrive as a string
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError('argument %s must be an integer, got %s %s' % (name, type(value).__name__, shown))
    try:
        return int(value)
    except ValueError:
        raise ConfigError('argument %s must be an integer, got %s' % (name, shown)) from None


def parse_args(args):
    """Settings from the source's arguments, or ConfigError naming the first argument that is wrong."""
    unknown = sorted(name for name in args if name not in ARGS and not name.startswith(ENGINE_ARG_PREFIX))
    if unknown:
        raise ConfigError('unknown argument%s %s of openstack_ha.recovery.alertmanager; valid arguments: %s'
                          % ('s' if len(unknown) > 1 else '', ', '.join(unknown), ', '.join(sorted(ARGS))))
    values = {}
    for name, spec in ARGS.items():
        if args.get(name) is None:
            if spec.get('required'):
                raise ConfigError('missing required argument %s of openstack_ha.recovery.alertmanager' % name)
            values[name] = spec.get('default')
            continue
        values[name] = _typed(name, args[name])
        if name == 'token':
            values[name] = _typed(name, values[name].strip())
        if 'choices' in spec and values[name] not in spec['choices']:
            raise ConfigError('argument %s must be one of %s, got %r'
                              % (name, ', '.join(spec['choices']), values[name]))
    if not 0 <= values['port'] <= 65535:
        raise ConfigError('argument port must be between 0 and 65535, got %d' % values['port'])
    if values['max_body_bytes'] < 1:
        raise ConfigError('argument max_body_bytes must be positive, got %d' % values['max_body_bytes'])
    if values['token'] is None and values['hmac_secret'] is None:
        raise ConfigError('openstack_ha.recovery.alertmanager needs token or hmac_secret (or both): '
                          'an unauthenticated webhook would let anyone on the network start host evacuations')
    if values['keyfile'] is not None and values['certfile'] is None:
        raise ConfigError('argument keyfile requires certfile')
    host = values['host']
    if host.startswith('[') and host.endswith(']'):
        values['host'] = host[1:-1]
    return Settings(values)


def check_bearer(header, token):
    """Raise Rejected(401) unless the Authorization header value carries this Bearer token."""
    if not header:
        raise Rejected(401, 'missing Authorization header (Bearer token required)')
    scheme, dummy, presented = header.strip().partition(' ')
    if scheme.lower() != 'bearer':
        raise Rejected(401, 'Authorization scheme must be Bearer')
    if not hmac.compare_digest(presented.strip().encode('utf-8', 'surrogatepass'), token.encode('utf-8')):
        raise Rejected(401, 'invalid Bearer token')


def body_signature(body, secret, algo):
    """Hex HMAC of the raw body."""
    return hmac.new(secret.encode('utf-8'), body, getattr(hashlib, algo)).hexdigest()


def check_signature(header_name, header, body, secret, algo):
    """Raise Rejected(401) unless the header carries the hex HMAC of the body."""
    if not header:
        raise Rejected(401, 'missing %s header (HMAC signature required)' % header_name)
    presented = header.strip()
    if presented.lower().startswith(algo + '='):
        presented = presented[len(algo) + 1:]
    expected = body_signature(body, secret, algo)
    if not hmac.compare_digest(presented.lower().encode('utf-8', 'surrogatepass'), expected.encode('ascii')):
        raise Rejected(401, 'invalid %s signature' % header_name)


def _check_labels(where, labels):
    if not isinstance(labels, dict):
        raise Rejected(400, '%s must be an object' % where)
    for name, value in labels.items():
        if not isinstance(value, str):
            raise Rejected(400, '%s.%s must be a string' % (where, name))


def _no_constant(name):
    raise ValueError('%s is not JSON' % name)


def parse_notification(body):
    """The notification in a request body, or Rejected(400) saying why it is not an Alertmanager one."""
    try:
        payload = json.loads(body, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Rejected(400, 'body is not JSON: %s' % exc) from None
    except RecursionError:
        raise Rejected(400, 'body is not JSON: nested too deeply') from None
    if not isinstance(payload, dict):
        raise Rejected(400, 'not an Alertmanager notification: the body is not a JSON object')
    if payload.get('version') != '4':
        raise Rejected(400, 'not an Alertmanager notification: version must be "4", got %s'
                       % json.dumps(payload.get('version')))
    alerts = payload.get('alerts')
    if not isinstance(alerts, list):
        raise Rejected(400, 'not an Alertmanager notification: alerts must be a list')
    for index, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            raise Rejected(400, 'alerts[%d] must be an object' % index)
        if alert.get('status') not in ALERT_STATUSES:
            raise Rejected(400, 'alerts[%d].status must be firing or resolved, got %s'
                           % (index, json.dumps(alert.get('status'))))
        if 'labels' not in alert:
            raise Rejected(400, 'alerts[%d] has no labels' % index)
        _check_labels('alerts[%d].labels' % index, alert['labels'])
        if alert.get('annotations') is not None and not isinstance(alert['annotations'], dict):
            raise Rejected(400, 'alerts[%d].annotations must be an object' % index)
    return payload


def alert_events(payload, endpoint='/'):
    """The events of a notification: one per alert (shape in EVENT)."""
    alerts = payload['alerts']
    group = {key: payload.get(key) for key in GROUP_KEYS}
    events = []
    for index, alert in enumerate(alerts):
        event_alert = {key: alert.get(key) for key in ALERT_KEYS}
        if event_alert['annotations'] is None:
            event_alert['annotations'] = {}
        events.append({
            'alert': event_alert,
            'receiver': payload.get('receiver'),
            'groupKey': payload.get('groupKey'),
            'externalURL': payload.get('externalURL'),
            'meta': {'endpoint': endpoint, 'group': dict(group, index=index, count=len(alerts))},
        })
    return events


_QUEUE = web.AppKey('queue', asyncio.Queue)
_SETTINGS = web.AppKey('settings', Settings)


async def _handle(request):
    settings = request.app[_SETTINGS]
    try:
        if request.method != 'POST':
            raise Rejected(405, 'only POST is accepted')
        if settings.token is not None:
            check_bearer(request.headers.get('Authorization'), settings.token)
        if request.content_length is not None and request.content_length > settings.max_body_bytes:
            raise Rejected(413, 'body of %d bytes is larger than max_body_bytes %d'
                           % (request.content_length, settings.max_body_bytes))
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise Rejected(413, 'body is larger than max_body_bytes %d' % settings.max_body_bytes) from None
        if settings.hmac_secret is not None:
            check_signature(settings.hmac_header, request.headers.get(settings.hmac_header), body,
                            settings.hmac_secret, settings.hmac_algo)
        payload = parse_notification(body)
    except Rejected as exc:
        LOG.warning('rejected %s %s from %s: %d %s', request.method, request.raw_path, request.remote, exc.status,
                    exc.message)
        headers = {}
        if exc.status == 405:
            headers['Allow'] = 'POST'
        elif exc.status == 401:
            headers['WWW-Authenticate'] = 'Bearer' if settings.token is not None else 'HMAC'
        return web.json_response({'error': exc.message}, status=exc.status, headers=headers)
    events = alert_events(payload, request.path)
    for event in events:
        await request.app[_QUEUE].put(event)
    LOG.info('queued %d alert event(s) from receiver %s (group %s, %s)', len(events), payload.get('receiver'),
             payload.get('groupKey'), payload.get('status'))
    return web.json_response({'events': len(events)})


def build_app(queue, settings):
    """The aiohttp application: every method on every path goes to one handler, which checks in order."""
    # client_max_size bounds reads of bodies without Content-Length (chunked) as well.
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[_QUEUE] = queue
    app[_SETTINGS] = settings
    app.router.add_route('*', '/{path:.*}', _handle)
    return app


def ssl_context(settings):
    """A server TLS context from certfile/keyfile, or None for plain HTTP."""
    if settings.certfile is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.certfile, settings.keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError('cannot load certfile %s / keyfile %s: %s' % (settings.certfile, settings.keyfile, exc)) \
            from None
    return context


async def start(queue, settings):
    """Start listening; returns (runner, [(address, port), ...]). The caller cleans the runner up."""
    context = ssl_context(settings)
    runner = web.AppRunner(build_app(queue, settings), handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=context)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    addresses = [tuple(address[:2]) for address in runner.addresses]
    for address, port in addresses:
        LOG.info('listening for Alertmanager webhooks on %s://%s:%d (%s)', 'https' if context else 'http',
                 '[%s]' % address if ':' in address else address, port,
                 ' and '.join(name for name, value in (('Bearer token', settings.token),
                                                       ('HMAC signature', settings.hmac_secret)) if value))
    return runner, addresses


async def main(queue, args):
    """ansible-rulebook entry point: serve until cancelled."""
    settings = parse_args(args)
    runner, dummy = await start(queue, settings)
    try:
        await asyncio.Future()
    finally:
        await runner.cleanup()


if __name__ == '__main__':
    # Manual try-out: python alertmanager.py PORT TOKEN, then POST notifications; events are printed.
    import sys

    class _PrintQueue(asyncio.Queue):
        async def put(self, item):
            print(json.dumps(item))

    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(_PrintQueue(), {'port': sys.argv[1], 'token': sys.argv[2]}))
