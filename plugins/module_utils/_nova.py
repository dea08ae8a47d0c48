# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Nova core of the nova modules: plain functions over an openstacksdk connection and plain values.

Every API request goes through _call(), the one function that touches openstacksdk: it calls
conn.<service>.<method>(url, ...) on the connection's proxies (compute, placement, image), and unit tests fake
exactly that. _send() wraps it: an idempotent request that got no answer, or an answer of an API that is
restarting or overloaded (500, 502, 503, 504), is sent again after a pause (RETRY_DELAYS, ~30 s in all), so that a
blip of nova-api does not fail a recovery; a request that is not idempotent (an evacuation) is sent once.
Each request names its microversion on purpose (MICROVERSIONS): openstacksdk would otherwise negotiate the
newest one and the shape of the answers would move with the cloud's release.

Functions others reuse:

    compute_services(conn)                  every nova-compute service (one request)
    find_service(services, host)            the host's service, or NovaError naming the host
    host_servers(conn, host)                the host's instances across all projects
    evacuation_migrations(conn, host)       evacuation migration records whose source is the host
    pending_evacuations(migrations)         those not yet cleaned up by the source compute
    read_concurrently(conn, reads)          independent reads sent at once, over the one connection
    ensure_service(conn, host, ...)         nova_service: enabled / forced_down / disabled_reason, in a safe order
    host_info(conn, host, ...)              nova_host_info: service, instances, aggregates, zone, capacity
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import functools
import math
import re
import time

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlencode

from ansible_collections.openstack_ha.recovery.plugins.module_utils._openstack import RecoveryError

try:
    from keystoneauth1 import exceptions as ksa_exceptions
    from openstack import exceptions as sdk_exceptions
except ImportError:  # the module base reports the missing openstacksdk before anything here runs
    TRANSPORT_ERRORS = ()
else:
    TRANSPORT_ERRORS = (ksa_exceptions.ClientException, sdk_exceptions.SDKException)

try:
    from keystoneauth1.exceptions import RetriableConnectionFailure
except ImportError:
    RetriableConnectionFailure = ()

# What an API answers while it restarts or is overloaded (behind a proxy: 502/504): worth asking again.
TRANSIENT_STATUSES = (500, 502, 503, 504)
# Pauses before each new try of an idempotent request that failed transiently: 31.5 s in all.
RETRY_DELAYS = (0.5, 1, 2, 4, 8, 8, 8)
IDEMPOTENT_METHODS = ('get', 'head', 'put')
# How many independent reads read_concurrently sends at once.
READ_CONCURRENCY = 8

# The compute API microversion of each kind of request, the oldest that gives what the code reads.
# A microversion pinned by the user (compute_microversion, or the cloud's default) is used instead when it is
# at least this one; an older pin is refused, naming what needs the newer one.
MICROVERSIONS = dict(
    aggregates='2.41',     # aggregate uuids
    hypervisors='2.53',    # hypervisor id = compute node uuid = Placement resource provider uuid, with its service
    migrations='2.59',     # migration uuids; marker/limit paging
    server_groups='2.64',  # one policy (plus rules) per group
    servers='2.73',        # flavor embedded with its extra specs (2.47), locked_reason (2.73)
    services='2.53',       # service ids are uuids; PUT /os-services/{id} sets status, disabled_reason, forced_down
)
# Inventories and usages of resource providers are in Placement's first microversion already.
PLACEMENT_MICROVERSION = '1.0'

# Evacuation migration states after which the source compute has nothing left to clean up. Any other state
# ('accepted', 'pre-migrating', 'running', 'done', ...) means the source host may still hold the instance:
# the source compute destroys such leftovers when it starts, and moves 'done' records to 'completed'.
FINISHED_MIGRATION_STATES = ('completed', 'error', 'failed')

# Resource classes the capacity figures count: key in the returned records -> Placement resource class.
RESOURCES = (('vcpus', 'VCPU'), ('memory_mb', 'MEMORY_MB'), ('disk_gb', 'DISK_GB'))

# Where the evacuation policy key is looked up, in this order: the first that sets it decides.
EVACUABLE_SOURCES = ('flavor', 'image', 'aggregate')
TRUE_VALUES = ('true', 'yes', 'on', '1')

SERVICE_KEYS = ('id', 'host', 'zone', 'state', 'status', 'enabled', 'forced_down', 'disabled_reason', 'updated_at')
SERVICE_RESULT_KEYS = ('pending_evacuations', 'service')
HOST_INFO_RESULT_KEYS = ('aggregates', 'availability_zone', 'capacity', 'host', 'instances', 'service', 'waited')


class NovaError(RecoveryError):
    """A Nova or Placement request failed, or Nova's state forbids the change; msg names the host."""


# ---------------------------------------------------------------------------------------------------------
# the SDK boundary


def _call(conn, service, method, url, microversion, body=None):
    """The one SDK call: conn.<service>.<method>(url, ...) -> the response (openstacksdk never raises on 4xx)."""
    kwargs = dict(microversion=microversion)
    if body is not None:
        kwargs['json'] = body
    return getattr(getattr(conn, service), method)(url, **kwargs)


def _send(conn, service, method, url, microversion, body=None, idempotent=None, sleep=None):
    """_call, tried again after each of RETRY_DELAYS while the request is idempotent (GET, HEAD, PUT, or the
    caller says so) and got no answer (a connection that failed or timed out) or a TRANSIENT_STATUSES answer.
    The last answer (or exception) is the caller's, as from _call."""
    sleep = sleep or _sleep
    idempotent = method.lower() in IDEMPOTENT_METHODS if idempotent is None else idempotent
    delays = list(RETRY_DELAYS) if idempotent else []
    while True:
        try:
            response = _call(conn, service, method, url, microversion, body)
        except RetriableConnectionFailure:
            if not delays:
                raise
        else:
            if not delays or response.status_code not in TRANSIENT_STATUSES:
                return response
        sleep(delays.pop(0))


def _sleep(seconds):
    time.sleep(seconds)


def read_concurrently(conn, reads, services=()):
    """The answers of independent reads, sent at once (at most READ_CONCURRENCY at a time): `reads` is a list of
    callables without arguments (each one or more requests through _api); their results come back in that order.
    When reads fail, the first failure in that order is raised, once every read has ended (none keeps running
    behind the caller).

    One openstacksdk connection serves every thread, as it serves nova_evacuate's workers: its keystoneauth
    Session sends each request on a pooled connection (urllib3's pool is thread-safe) and holds one token, fetched
    once under the auth plugin's lock (keystoneauth1 BaseIdentityPlugin.get_access): no read authenticates again.
    What has no lock is the lazy creation of a service proxy (conn.compute, conn.placement, ...): two threads
    touching a new one at once would each run its endpoint discovery. `services` names the proxies to create
    before the threads start.
    """
    for service in services:
        getattr(conn, service)
    if len(reads) < 2:
        return [read() for read in reads]
    with ThreadPoolExecutor(max_workers=min(len(reads), READ_CONCURRENCY)) as pool:
        futures = [pool.submit(read) for read in reads]
    return [future.result() for future in futures]


def _error_detail(response):
    """The message of an OpenStack error answer: Nova's {"badRequest": {"message"}}, Placement's {"errors"}."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if isinstance(body.get('errors'), list):
            details = [e.get('detail') or e.get('title') for e in body['errors'] if isinstance(e, dict)]
            if any(details):
                return '; '.join(d for d in details if d)
        for value in body.values():
            if isinstance(value, dict) and value.get('message'):
                return value['message']
        if body.get('message'):
            return body['message']
    text = (getattr(response, 'text', '') or '').strip()
    return text[:500] or 'no details'


def _api(conn, service, method, url, what, microversion, body=None, missing_ok=False):
    """One API request: the decoded JSON answer. `what` says what the request is for, in error messages.

    missing_ok: a 404 returns None instead of failing.
    """
    try:
        response = _send(conn, service, method, url, microversion, body)
    except TRANSPORT_ERRORS as exc:
        raise NovaError('cannot %s: the %s API is unreachable (%s %s): %s' % (what, service, method.upper(), url, exc))
    status = response.status_code
    if status == 404 and missing_ok:
        return None
    if status >= 400:
        raise NovaError('cannot %s: the %s API answered HTTP %d to %s %s: %s'
                        % (what, service, status, method.upper(), url, _error_detail(response)))
    if status == 204:
        return {}
    try:
        return response.json()
    except ValueError:
        raise NovaError('cannot %s: the %s API answered %s %s with something that is not JSON'
                        % (what, service, method.upper(), url))


def _url(path, query=None):
    query = [(key, value) for key, value in sorted((query or {}).items()) if value is not None]
    return path + ('?' + urlencode(query) if query else '')


def _version(value):
    match = re.match(r'^(\d+)\.(\d+)$', str(value))
    return (int(match.group(1)), int(match.group(2))) if match else None


def compute_microversion(conn, kind):
    """The microversion for one kind of compute request (MICROVERSIONS), or the user's pin if new enough."""
    needed = MICROVERSIONS[kind]
    pinned = conn.config.get_default_microversion('compute')
    if not pinned:
        return needed
    if str(pinned) == 'latest':
        return 'latest'
    version = _version(pinned)
    if version is None:
        raise NovaError('compute microversion %r is not a microversion such as 2.73 (or latest)' % (pinned,))
    if version < _version(needed):
        raise NovaError('compute microversion %s is too old to read %s: it needs %s or later; unset '
                        'compute_microversion (and the cloud\'s compute default microversion) or raise it'
                        % (pinned, kind.replace('_', ' '), needed))
    return str(pinned)


def _paged(conn, path, query, key, what, kind, marker_field):
    """Every item of a marker-paged compute list (servers, migrations, hypervisors): follows the 'next' links."""
    items = []
    query = dict(query)
    while True:
        data = _api(conn, 'compute', 'get', _url(path, query), what, compute_microversion(conn, kind))
        page = data.get(key) or []
        items.extend(page)
        links = data.get(key + '_links') or []
        if not page or not any(link.get('rel') == 'next' for link in links):
            return items
        query['marker'] = page[-1][marker_field]


# ---------------------------------------------------------------------------------------------------------
# services


def service_record(raw):
    """A nova-compute service as the modules return it (os-services, microversion 2.53)."""
    return dict(
        id=raw.get('id'),
        host=raw.get('host'),
        zone=raw.get('zone'),
        state=raw.get('state'),
        status=raw.get('status'),
        enabled=raw.get('status') == 'enabled',
        forced_down=bool(raw.get('forced_down')),
        disabled_reason=raw.get('disabled_reason'),
        updated_at=raw.get('updated_at'),
    )


def compute_services(conn):
    """Every nova-compute service of the cloud, as service records."""
    data = _api(conn, 'compute', 'get', _url('/os-services', dict(binary='nova-compute')),
                'list the nova-compute services', compute_microversion(conn, 'services'))
    return [service_record(raw) for raw in data.get('services') or []]


def find_service(services, host):
    """The service record of `host`, or NovaError naming the host and the hosts Nova does know."""
    for service in services:
        if service['host'] == host:
            return service
    known = sorted(service['host'] for service in services)
    msg = 'no nova-compute service for host %r' % (host,)
    similar = [name for name in known if name.lower() == str(host).lower()]
    if similar:
        msg += ' (host names are case-sensitive: did you mean %r?)' % similar[0]
    if known:
        msg += '; Nova knows the compute hosts %s' % ', '.join(known)
    else:
        msg += '; Nova has no nova-compute service at all'
    raise NovaError(msg)


def get_compute_service(conn, host):
    """The nova-compute service record of `host`; NovaError naming the host when Nova has none."""
    return find_service(compute_services(conn), host)


def update_service(conn, service, body):
    """PUT /os-services/{id} with `body`: the updated service record."""
    what = 'update the nova-compute service of %s (%s)' % (service['host'], _describe_body(body))
    data = _api(conn, 'compute', 'put', '/os-services/%s' % quote(str(service['id'])), what,
                compute_microversion(conn, 'services'), body=body)
    return service_record(data.get('service') or {})


def _describe_body(body):
    return ', '.join('%s=%s' % (key, body[key]) for key in sorted(body))


def parse_time(value):
    """Nova's timestamps ('2026-11-22T05:05:43.000000', maybe with Z or an offset) as an aware UTC datetime."""
    if not value:
        return None
    text = str(value).strip().replace('Z', '+00:00')
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def heartbeat_age(service, now):
    """Seconds since the service last reported (its updated_at), on the caller's clock; None when unknown."""
    updated = parse_time(service.get('updated_at'))
    if updated is None:
        return None
    return round((now - updated).total_seconds(), 1)


# ---------------------------------------------------------------------------------------------------------
# migrations


def migration_record(raw):
    return dict(
        id=raw.get('uuid'),
        instance_uuid=raw.get('instance_uuid'),
        status=raw.get('status'),
        source_compute=raw.get('source_compute'),
        dest_compute=raw.get('dest_compute'),
        created_at=raw.get('created_at'),
        updated_at=raw.get('updated_at'),
    )


def evacuation_migrations(conn, host):
    """Every evacuation migration record whose source is `host` (os-migrations, newest first)."""
    raw = _paged(conn, '/os-migrations', dict(migration_type='evacuation', source_compute=host), 'migrations',
                 'list the evacuation migrations from %s' % host, 'migrations', 'uuid')
    return [migration_record(m) for m in raw]


def pending_evacuations(migrations):
    """The evacuations whose source compute has not cleaned up yet (state not in FINISHED_MIGRATION_STATES)."""
    return [m for m in migrations if m['status'] not in FINISHED_MIGRATION_STATES]


def _refusal_message(host, pending):
    shown = ', '.join('%s (%s, to %s)' % (m['instance_uuid'], m['status'], m['dest_compute'] or 'no host yet')
                      for m in pending[:10])
    more = ' and %d more' % (len(pending) - 10) if len(pending) > 10 else ''
    return ('refusing forced_down=false for %s: %d evacuation(s) from %s are not cleaned up yet: instances %s%s. '
            'Nova keeps a forced-down host down until its nova-compute has started and removed what the evacuated '
            'instances left there (their migrations then turn completed); lifting forced_down before that risks '
            'the same instances running on two hosts. Power %s on (or restart its nova-compute), wait until these '
            'migrations are completed, then run this again.' % (host, len(pending), host, shown, more, host))


# ---------------------------------------------------------------------------------------------------------
# nova_service


def service_settings(service):
    return dict(enabled=service['enabled'], forced_down=service['forced_down'],
                disabled_reason=service['disabled_reason'])


def service_changes(service, enabled=None, forced_down=None, disabled_reason=None):
    """The PUT /os-services/{id} bodies that bring `service` to the wanted settings, in the order to send them.

    The forced_down change always goes first:
    - going down: a forced-down service is down for Nova, so the disable that follows makes no call to the
      host. Disabling a service Nova still believes up makes nova-api call the host to update its
      COMPUTE_STATUS_DISABLED trait, and on a dead host that call blocks until the RPC timeout (60 s by default).
    - coming back: lifting forced_down is the step Nova may refuse (evacuations not cleaned up). Sent first, a
      refusal leaves the host exactly as it was, still forced down and still disabled. And once the service is
      up, the enable reaches the live compute, which drops the trait at once; enabling a service that is still
      forced down skips that call and the trait lingers until the compute's next periodic resource update.
    """
    steps = []
    if forced_down is not None and forced_down != service['forced_down']:
        steps.append(dict(forced_down=forced_down))
    if enabled is True and not service['enabled']:
        steps.append(dict(status='enabled'))
    elif enabled is False:
        reason_changes = disabled_reason is not None and disabled_reason != service['disabled_reason']
        if service['enabled'] or reason_changes:
            body = dict(status='disabled')
            if disabled_reason is not None:
                body['disabled_reason'] = disabled_reason
            steps.append(body)
    return steps


def _settings_after(settings, steps):
    after = dict(settings)
    for body in steps:
        if 'forced_down' in body:
            after['forced_down'] = body['forced_down']
        if body.get('status') == 'enabled':
            after.update(enabled=True, disabled_reason=None)
        elif body.get('status') == 'disabled':
            reason = body['disabled_reason'] if 'disabled_reason' in body else None
            after.update(enabled=False, disabled_reason=reason)
    return after


def _with_facts(exc, facts):
    merged = dict(facts)
    merged.update(exc.facts)
    return NovaError(exc.msg, merged)


def ensure_service(conn, host, enabled=None, forced_down=None, disabled_reason=None, check_mode=False):
    """nova_service: bring the host's nova-compute service to the wanted settings (None: leave as is).

    Returns dict(changed, service, pending_evacuations, diff). In check mode the service is the one read and
    nothing is sent. Refuses forced_down=false while evacuations from the host are not cleaned up.
    Raises NovaError with the facts known so far (service, pending_evacuations).
    """
    facts = dict(service=None, pending_evacuations=[])
    try:
        if disabled_reason is not None and enabled is not False:
            raise NovaError('disabled_reason %r for %s is the reason of a disabled service: give enabled=false '
                            'with it' % (disabled_reason, host))
        service = facts['service'] = get_compute_service(conn, host)
        steps = service_changes(service, enabled, forced_down, disabled_reason)
        if dict(forced_down=False) in steps:
            facts['pending_evacuations'] = pending_evacuations(evacuation_migrations(conn, host))
            if facts['pending_evacuations']:
                raise NovaError(_refusal_message(host, facts['pending_evacuations']))
        before = service_settings(service)
        diff = dict(before=before, after=_settings_after(before, steps))
        if not check_mode:
            for body in steps:
                facts['service'] = update_service(conn, facts['service'], body)
        return dict(changed=bool(steps), diff=diff, **facts)
    except RecoveryError as exc:
        raise _with_facts(exc, facts)


# ---------------------------------------------------------------------------------------------------------
# instances, aggregates, server groups, images


def host_servers(conn, host):
    """The raw server records (microversion 2.73) of every instance on `host`, in all projects."""
    return _paged(conn, '/servers/detail', dict(all_tenants='True', host=host), 'servers',
                  'list the instances of %s' % host, 'servers', 'id')


def list_aggregates(conn):
    data = _api(conn, 'compute', 'get', '/os-aggregates', 'list the host aggregates',
                compute_microversion(conn, 'aggregates'))
    return [aggregate_record(raw) for raw in data.get('aggregates') or []]


def aggregate_record(raw):
    return dict(id=raw.get('id'), uuid=raw.get('uuid'), name=raw.get('name'),
                availability_zone=raw.get('availability_zone'), hosts=sorted(raw.get('hosts') or []),
                metadata=dict(raw.get('metadata') or {}))


def list_server_groups(conn):
    """Every server group of every project (offset-paged: asks until a page brings nothing new)."""
    groups = []
    seen = set()
    while True:
        url = _url('/os-server-groups', dict(all_projects='True', offset=len(groups) or None))
        data = _api(conn, 'compute', 'get', url, 'list the server groups', compute_microversion(conn, 'server_groups'))
        page = [group for group in data.get('server_groups') or [] if group.get('id') not in seen]
        if not page:
            return groups
        seen.update(group.get('id') for group in page)
        groups.extend(page)


def image_properties(conn, image_id):
    """An image's properties (Glance v2 shows them as top-level keys); None when the image is gone."""
    return _api(conn, 'image', 'get', '/images/%s' % quote(str(image_id)), 'read image %s' % image_id, None,
                missing_ok=True)


def hypervisor_nodes(conn):
    """Compute node (resource provider) uuids by service host."""
    raw = _paged(conn, '/os-hypervisors/detail', {}, 'hypervisors', 'list the hypervisors', 'hypervisors', 'id')
    nodes = {}
    for hypervisor in raw:
        host = (hypervisor.get('service') or {}).get('host')
        if host:
            nodes.setdefault(host, []).append(hypervisor['id'])
    return nodes


def _placement_read(conn, provider_uuid, host, kind):
    """One Placement read of a resource provider: its 'inventories' or its 'usages'."""
    url = '/resource_providers/%s/%s' % (quote(str(provider_uuid)), kind)
    return _api(conn, 'placement', 'get', url, 'read the Placement %s of %s' % (kind, host),
                PLACEMENT_MICROVERSION).get(kind) or {}


def provider_free(conn, provider_uuid, host):
    """What a resource provider has free: per RESOURCES key, (total - reserved) * allocation_ratio - used."""
    return free_resources(_placement_read(conn, provider_uuid, host, 'inventories'),
                          _placement_read(conn, provider_uuid, host, 'usages'))


def provider_room(conn, provider_uuid, host):
    """What a resource provider has free (as provider_free) and the most one allocation may take of each resource
    (its inventory's max_unit; 0 without inventory): (free, max_unit), both keyed like RESOURCES."""
    return _room(_placement_read(conn, provider_uuid, host, 'inventories'),
                 _placement_read(conn, provider_uuid, host, 'usages'))


def providers_room(conn, providers):
    """provider_room of every (host, provider uuid) in `providers`, in that order: their inventories and usages are
    read at once (read_concurrently), not one after another."""
    reads = [functools.partial(_placement_read, conn, provider, host, kind)
             for host, provider in providers for kind in ('inventories', 'usages')]
    answers = read_concurrently(conn, reads, ('placement',) if reads else ())
    return [_room(answers[2 * index], answers[2 * index + 1]) for index in range(len(providers))]


def _room(inventories, usages):
    max_unit = {}
    for key, resource_class in RESOURCES:
        inventory = inventories.get(resource_class) or {}
        max_unit[key] = int(inventory.get('max_unit', inventory.get('total', 0)) or 0)
    return free_resources(inventories, usages), max_unit


def free_resources(inventories, usages):
    free = {}
    for key, resource_class in RESOURCES:
        inventory = inventories.get(resource_class)
        if not inventory:
            free[key] = 0
            continue
        capacity = int((inventory.get('total', 0) - inventory.get('reserved', 0))
                       * inventory.get('allocation_ratio', 1.0))
        free[key] = max(capacity - int(usages.get(resource_class, 0)), 0)
    return free


# ---------------------------------------------------------------------------------------------------------
# nova_host_info


def _int(value):
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def instance_needs(flavor, boot_from_volume):
    """What an instance holds in Placement, from its embedded flavor, as Nova computes it.

    disk: root (not for a volume-backed instance) + ephemeral + swap rounded up to GiB; a flavor extra spec
    resources:VCPU / resources:MEMORY_MB / resources:DISK_GB overrides the flavor's figure.
    """
    disk = (0 if boot_from_volume else _int(flavor.get('disk'))) + _int(flavor.get('ephemeral'))
    disk += int(math.ceil(_int(flavor.get('swap')) / 1024.0))
    needs = dict(vcpus=_int(flavor.get('vcpus')), memory_mb=_int(flavor.get('ram')), disk_gb=disk)
    specs = flavor.get('extra_specs') or {}
    for key, resource_class in RESOURCES:
        override = specs.get('resources:%s' % resource_class)
        if override is not None and str(override).isdigit():
            needs[key] = int(override)
    return needs


def is_true(value):
    return str(value).strip().lower() in TRUE_VALUES


def resolve_evacuable(tag, sources, default, flavor_specs, read_image, aggregates):
    """(evacuable, source) of one instance from operator policy; never from server metadata (tenant-writable).

    The first source in EVACUABLE_SOURCES order (and in `sources`) that sets `tag` decides: the flavor extra
    spec, then the image property (read_image() -> properties or None, called only when needed), then the
    metadata of the host's aggregates, where any aggregate saying no wins. Otherwise `default`.
    A true value is one of TRUE_VALUES (any case); any other value means not evacuable.
    source: 'flavor', 'image', 'aggregate:NAME' or 'default'.
    """
    for source in EVACUABLE_SOURCES:
        if source not in sources:
            continue
        if source == 'flavor' and tag in flavor_specs:
            return is_true(flavor_specs[tag]), 'flavor'
        if source == 'image':
            properties = read_image()
            if properties and tag in properties:
                return is_true(properties[tag]), 'image'
        if source == 'aggregate':
            tagged = sorted((a['name'], is_true(a['metadata'][tag])) for a in aggregates if tag in a['metadata'])
            if tagged:
                refusing = [name for name, value in tagged if not value]
                if refusing:
                    return False, 'aggregate:%s' % refusing[0]
                return True, 'aggregate:%s' % tagged[0][0]
    return default, 'default'


def instance_record(raw, groups, evacuable, evacuable_source):
    flavor = raw.get('flavor') or {}
    image = raw.get('image')
    image_id = (image.get('id') if isinstance(image, dict) else None) or None  # '' for volume-backed instances
    return dict(
        id=raw.get('id'),
        name=raw.get('name'),
        project_id=raw.get('tenant_id'),
        status=raw.get('status'),
        vm_state=raw.get('OS-EXT-STS:vm_state'),
        task_state=raw.get('OS-EXT-STS:task_state'),
        flavor=dict(name=flavor.get('original_name'), vcpus=_int(flavor.get('vcpus')), ram=_int(flavor.get('ram')),
                    disk=_int(flavor.get('disk')), ephemeral=_int(flavor.get('ephemeral')),
                    swap=_int(flavor.get('swap')), extra_specs=dict(flavor.get('extra_specs') or {})),
        image_id=image_id,
        boot_from_volume=image_id is None,
        locked=bool(raw.get('locked')),
        locked_reason=raw.get('locked_reason'),
        server_groups=groups,
        evacuable=evacuable,
        evacuable_source=evacuable_source,
        needs=instance_needs(flavor, image_id is None),
    )


def _zero():
    return dict((key, 0) for key, dummy in RESOURCES)


def _add(total, more):
    for key in total:
        total[key] += more.get(key, 0)
    return total


def _unusable_reason(service):
    if service['forced_down']:
        return 'forced down'
    if service['state'] != 'up':
        return 'down'
    if not service['enabled']:
        return 'disabled'
    return None


def is_reserved_reason(reason):
    """Whether a disabled_reason marks a reserved spare host: exactly `reserved`, or starting `reserved ` or
    `reserved:` (the form the collection's runbooks write and read)."""
    text = reason or ''
    return text == 'reserved' or text.startswith('reserved ') or text.startswith('reserved:')


def neighbour_services(host, zone, services, aggregates):
    """The service records of the other hosts in the host's availability zone or sharing an aggregate with it,
    sorted by host."""
    shared = set()
    for aggregate in aggregates:
        if host in aggregate['hosts']:
            shared.update(aggregate['hosts'])
    return [s for s in sorted(services, key=lambda s: s['host'])
            if s['host'] != host and (s['zone'] == zone or s['host'] in shared)]


def capacity_hosts(host, zone, services, aggregates):
    """The other hosts in the host's availability zone or sharing an aggregate with it, sorted:
    (usable host names, excluded [{host, reason, disabled_reason}]); usable = enabled, up, not forced down."""
    shared = set()
    for aggregate in aggregates:
        if host in aggregate['hosts']:
            shared.update(aggregate['hosts'])
    usable, excluded = [], []
    for service in sorted(services, key=lambda s: s['host']):
        if service['host'] == host or not (service['zone'] == zone or service['host'] in shared):
            continue
        reason = _unusable_reason(service)
        if reason:
            excluded.append(dict(host=service['host'], reason=reason, disabled_reason=service['disabled_reason']))
        else:
            usable.append(service['host'])
    return usable, excluded


def capacity_report(conn, host, zone, services, aggregates, instances, nodes=None):
    """nodes: hypervisor_nodes, when the caller read them already."""
    usable, excluded = capacity_hosts(host, zone, services, aggregates)
    if nodes is None:
        nodes = hypervisor_nodes(conn) if usable else {}
    providers = [(name, provider) for name in usable for provider in nodes.get(name, [])]
    rooms = dict(zip(providers, providers_room(conn, providers)))
    hosts = []
    for name in usable:
        free = _zero()
        for provider in nodes.get(name, []):
            _add(free, rooms[(name, provider)][0])
        hosts.append(dict(host=name, free=free))
    needed = _zero()
    needed_evacuable = _zero()
    for instance in instances:
        _add(needed, instance['needs'])
        if instance['evacuable']:
            _add(needed_evacuable, instance['needs'])
    free = _zero()
    for entry in hosts:
        _add(free, entry['free'])
    shortfall = dict((key, max(needed[key] - free[key], 0)) for key in needed)
    shortfall_evacuable = dict((key, max(needed_evacuable[key] - free[key], 0)) for key in needed)
    return dict(needed=needed, needed_evacuable=needed_evacuable, free=free, shortfall=shortfall,
                shortfall_evacuable=shortfall_evacuable, sufficient=not any(shortfall.values()),
                sufficient_evacuable=not any(shortfall_evacuable.values()), hosts=hosts, excluded_hosts=excluded)


def host_info(conn, host, evacuable_tag='evacuable', evacuable_sources=EVACUABLE_SOURCES, evacuable_default=True,
              wait_down=0, wait_interval=2.0, now=None, clock=time.monotonic, sleep=None):
    """nova_host_info: everything about one host. Read-only. Raises NovaError (unknown host, API failure)
    with the facts known so far.

    WAIT_DOWN > 0: while Nova sees the service up, read the services again every WAIT_INTERVAL seconds, for up to
    WAIT_DOWN seconds (a dead nova-compute is down for Nova only after its service_down_time); everything else is
    read after. 'waited' says how long that took."""
    facts = dict(host=host, service=None, instances=[], aggregates=[], availability_zone=None, capacity=None,
                 waited=0.0)
    if wait_down < 0 or wait_interval <= 0:
        raise NovaError('host %s: wait_down (%s) must be at least 0 and wait_interval (%s) more than 0'
                        % (host, wait_down, wait_interval), facts)
    try:
        # the independent reads at once (read_concurrently); the service first: an unknown host reads nothing else
        services = compute_services(conn)
        service = dict(find_service(services, host))
        if wait_down > 0:
            started = clock()
            while service['state'] != 'down' and clock() - started + wait_interval <= wait_down:
                (sleep or _sleep)(wait_interval)
                services = compute_services(conn)
                service = dict(find_service(services, host))
            facts['waited'] = round(clock() - started, 1)
        service['heartbeat_age'] = heartbeat_age(service, now or utc_now())
        facts['service'] = service
        facts['availability_zone'] = service['zone']
        raw_servers, all_aggregates, groups, nodes = read_concurrently(conn, [
            functools.partial(host_servers, conn, host), functools.partial(list_aggregates, conn),
            functools.partial(list_server_groups, conn), functools.partial(hypervisor_nodes, conn)])
        facts['aggregates'] = [a for a in all_aggregates if host in a['hosts']]
        facts['instances'] = _instances(conn, raw_servers, facts['aggregates'], evacuable_tag, evacuable_sources,
                                        evacuable_default, groups)
        facts['capacity'] = capacity_report(conn, host, service['zone'], services, all_aggregates,
                                            facts['instances'], nodes)
        return dict(changed=False, **facts)
    except RecoveryError as exc:
        raise _with_facts(exc, facts)


def _instances(conn, raw_servers, aggregates, tag, sources, default, server_groups):
    if not raw_servers:
        return []
    memberships = {}
    for group in server_groups:
        for member in group.get('members') or []:
            memberships.setdefault(member, []).append(dict(id=group.get('id'), name=group.get('name'),
                                                           policy=group.get('policy')))
    images = {}

    def reader(image_id):
        def read():
            if not image_id:
                return None
            if image_id not in images:
                images[image_id] = image_properties(conn, image_id)
            return images[image_id]
        return read

    instances = []
    for raw in raw_servers:
        flavor = raw.get('flavor') or {}
        image = raw.get('image')
        image_id = image.get('id') if isinstance(image, dict) else None
        evacuable, source = resolve_evacuable(tag, sources, default, flavor.get('extra_specs') or {},
                                              reader(image_id), aggregates)
        groups = sorted(memberships.get(raw.get('id'), []), key=lambda g: (g['name'] or '', g['id']))
        instances.append(instance_record(raw, groups, evacuable, source))
    return sorted(instances, key=lambda i: (i['name'] or '', i['id']))
