"""Nova, Placement and Glance in memory, faked exactly where the nova module_utils meet openstacksdk.

plugins/module_utils/_nova.py sends every request through _call(), which calls
conn.<service>.<method>(url, microversion=..., json=...) on an openstacksdk connection and reads
status_code, json() and text of the answer. FakeCloud is such a connection: it answers the requests the
nova modules make the way Nova 34 (compute 2.100), Placement and Glance v2 answer them, keeps the state they
change, and records every request (service, method, path, query, microversion, body) for the tests.

Import it as ansible_collections.openstack_ha.recovery.tests.unit.plugins.nova_fakes (tests/unit/conftest.py
puts the collection on sys.path under that name).
"""

import copy
import json
import re
import uuid
from urllib.parse import parse_qs, urlsplit

NOW = '2026-11-22T05:00:00.000000'
PROJECT = '07eb2f1d64a9415e9a07c15193c368da'


def fake_uuid(*names):
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, '.'.join(str(n) for n in names) + '.ohlab.test'))


class FakeResponse:
    def __init__(self, status_code, body=None, text=None):
        self.status_code = status_code
        self._body = body
        self.text = text if text is not None else (json.dumps(body) if body is not None else '')

    def json(self):
        if self._body is None:
            raise ValueError('Expecting value: line 1 column 1 (char 0)')
        return copy.deepcopy(self._body)


class FakeProxy:
    """conn.compute / conn.placement / conn.image: only the raw request methods the core uses."""

    def __init__(self, cloud, service):
        self.cloud = cloud
        self.service = service

    def get(self, url, microversion=None, **kwargs):
        return self.cloud.request(self.service, 'GET', url, microversion, kwargs.get('json'))

    def put(self, url, microversion=None, json=None):
        return self.cloud.request(self.service, 'PUT', url, microversion, json)


class FakeConfig:
    """conn.config: the default (pinned) microversion per service type."""

    def __init__(self):
        self.microversions = {}

    def get_default_microversion(self, service_type):
        return self.microversions.get(service_type)


class Request:
    def __init__(self, service, method, path, query, microversion, body):
        self.service = service
        self.method = method
        self.path = path
        self.query = query
        self.microversion = microversion
        self.body = body

    def __repr__(self):
        return '%s %s %s %s %s %r' % (self.service, self.method, self.path, self.query, self.microversion, self.body)


def nova_error(status, message):
    kind = {400: 'badRequest', 404: 'itemNotFound', 409: 'conflict'}.get(status, 'computeFault')
    return FakeResponse(status, {kind: {'code': status, 'message': message}})


class FakeCloud:
    """An openstacksdk connection to an in-memory cloud. Build it with add_host, add_server, ...; break it with
    fail(); read cloud.requests afterwards."""

    def __init__(self):
        self.compute = FakeProxy(self, 'compute')
        self.placement = FakeProxy(self, 'placement')
        self.image = FakeProxy(self, 'image')
        self.config = FakeConfig()
        self.services = []
        self.servers = []
        self.migrations = []
        self.aggregates = []
        self.server_groups = []
        self.images = {}
        self.hypervisors = []
        self.inventories = {}
        self.usages = {}
        self.requests = []
        self.page_size = 1000
        self.faults = []

    # -- building the cloud ------------------------------------------------------------------------------

    def add_host(self, host, zone='nova', state='up', status='enabled', forced_down=False, disabled_reason=None,
                 updated_at=NOW, nodes=1, inventories=None, usages=None):
        service = dict(id=fake_uuid('service', host), binary='nova-compute', host=host, zone=zone, status=status,
                       state=state, updated_at=updated_at, disabled_reason=disabled_reason, forced_down=forced_down)
        self.services.append(service)
        for index in range(nodes):
            node = fake_uuid('node', host, index)
            self.hypervisors.append(dict(id=node, hypervisor_hostname='%s.node%d' % (host, index), state=state,
                                         status=status, service=dict(id=service['id'], host=host,
                                                                     disabled_reason=disabled_reason)))
            self.inventories[node] = copy.deepcopy(inventories) if inventories is not None else dict(
                VCPU=dict(total=16, reserved=0, min_unit=1, max_unit=16, step_size=1, allocation_ratio=4.0),
                MEMORY_MB=dict(total=32768, reserved=512, min_unit=1, max_unit=32768, step_size=1,
                               allocation_ratio=1.0),
                DISK_GB=dict(total=100, reserved=0, min_unit=1, max_unit=100, step_size=1, allocation_ratio=1.0))
            self.usages[node] = dict(usages or dict(VCPU=0, MEMORY_MB=0, DISK_GB=0))
        return service

    def service(self, host):
        return next(s for s in self.services if s['host'] == host)

    def add_server(self, host, name, flavor='m1.small', vcpus=2, ram=512, disk=1, ephemeral=0, swap=0,
                   extra_specs=None, image_id='image-1', status='ACTIVE', vm_state='active', task_state=None,
                   locked=False, locked_reason=None, project_id=PROJECT, metadata=None):
        server = {
            'id': fake_uuid('server', host, name, len(self.servers)),
            'name': name,
            'status': status,
            'tenant_id': project_id,
            'user_id': 'user-1',
            'metadata': dict(metadata or {}),
            'flavor': dict(vcpus=vcpus, ram=ram, disk=disk, ephemeral=ephemeral, swap=swap, original_name=flavor,
                           extra_specs=dict(extra_specs or {})),
            'image': '' if image_id is None else dict(id=image_id, links=[]),
            'OS-EXT-SRV-ATTR:host': host,
            'OS-EXT-SRV-ATTR:hypervisor_hostname': '%s.node0' % host,
            'OS-EXT-STS:vm_state': vm_state,
            'OS-EXT-STS:task_state': task_state,
            'OS-EXT-STS:power_state': 1,
            'OS-EXT-AZ:availability_zone': 'nova',
            'locked': locked,
            'locked_reason': locked_reason,
            'host_status': 'UP',
        }
        self.servers.append(server)
        return server

    def add_migration(self, instance_uuid, source, dest, status, migration_type='evacuation'):
        migration = dict(id=len(self.migrations) + 1, uuid=fake_uuid('migration', len(self.migrations)),
                         instance_uuid=instance_uuid, source_compute=source, dest_compute=dest,
                         source_node='%s.node0' % source, dest_node=dest and '%s.node0' % dest, status=status,
                         migration_type=migration_type, created_at=NOW, updated_at=NOW)
        self.migrations.insert(0, migration)  # Nova lists the newest first
        return migration

    def add_aggregate(self, name, hosts, metadata=None, availability_zone=None):
        metadata = dict(metadata or {})
        if availability_zone:
            metadata['availability_zone'] = availability_zone
        aggregate = dict(id=len(self.aggregates) + 1, uuid=fake_uuid('aggregate', name), name=name,
                         availability_zone=availability_zone, hosts=list(hosts), metadata=metadata,
                         created_at=NOW, updated_at=None, deleted=False, deleted_at=None)
        self.aggregates.append(aggregate)
        return aggregate

    def add_server_group(self, name, policy, members):
        group = dict(id=fake_uuid('group', name), name=name, policy=policy, rules={}, members=list(members),
                     project_id=PROJECT, user_id='user-1')
        self.server_groups.append(group)
        return group

    def add_image(self, image_id, **properties):
        self.images[image_id] = dict(id=image_id, name='image %s' % image_id, status='active', **properties)

    def fail(self, service, method, path, status=500, body=None, text=None, exception=None, times=None):
        """Answer requests matching (service, method, path regex) with an error (or raise `exception`)."""
        self.faults.append(dict(service=service, method=method, path=re.compile(path), status=status, body=body,
                                text=text, exception=exception, times=times))

    # -- reading what happened -----------------------------------------------------------------------------

    def sent(self, service=None, method=None):
        return [r for r in self.requests if (service is None or r.service == service)
                and (method is None or r.method == method)]

    def puts(self):
        return [r.body for r in self.sent('compute', 'PUT')]

    # -- answering -----------------------------------------------------------------------------------------

    def request(self, service, method, url, microversion, body):
        parts = urlsplit(url)
        query = dict((key, values[-1]) for key, values in parse_qs(parts.query, keep_blank_values=True).items())
        self.requests.append(Request(service, method, parts.path, query, microversion, copy.deepcopy(body)))
        for fault in self.faults:
            if (fault['service'], fault['method']) == (service, method) and fault['path'].search(parts.path):
                if fault['times'] is not None:
                    if fault['times'] <= 0:
                        continue
                    fault['times'] -= 1
                if fault['exception'] is not None:
                    raise fault['exception']
                return FakeResponse(fault['status'], fault['body'], fault['text'])
        handler = getattr(self, '_%s_%s' % (service, method.lower()))
        return handler(parts.path, query, body)

    def _page(self, items, query, key, marker_field, base):
        if 'marker' in query:
            index = [item[marker_field] for item in items].index(query['marker'])
            items = items[index + 1:]
        page = items[:self.page_size]
        body = {key: copy.deepcopy(page)}
        if len(page) == self.page_size:  # Nova adds a next link to every full page, even the last one
            href = 'http://nova/v2.1%s?marker=%s' % (base, page[-1][marker_field])
            body[key + '_links'] = [dict(rel='next', href=href)]
        return FakeResponse(200, body)

    def _compute_get(self, path, query, body):
        if path == '/os-services':
            services = [s for s in self.services if query.get('binary') in (None, s['binary'])
                        and query.get('host') in (None, s['host'])]
            return FakeResponse(200, dict(services=[self._service_view(s) for s in services]))
        if path == '/servers/detail':
            assert query.get('all_tenants') == 'True', 'an admin listing of a host must cover every project'
            servers = [s for s in self.servers if query.get('host') in (None, s['OS-EXT-SRV-ATTR:host'])]
            return self._page(servers, query, 'servers', 'id', path)
        if path == '/os-migrations':
            migrations = [m for m in self.migrations
                          if query.get('migration_type') in (None, m['migration_type'])
                          and query.get('source_compute') in (None, m['source_compute'])]
            return self._page(migrations, query, 'migrations', 'uuid', path)
        if path == '/os-aggregates':
            return FakeResponse(200, dict(aggregates=self.aggregates))
        if path == '/os-server-groups':
            assert query.get('all_projects') == 'True'
            offset = int(query.get('offset', 0))
            return FakeResponse(200, dict(server_groups=self.server_groups[offset:offset + self.page_size]))
        if path == '/os-hypervisors/detail':
            return self._page(self.hypervisors, query, 'hypervisors', 'id', path)
        return nova_error(404, 'no route for GET %s in the fake' % path)

    def _service_view(self, service):
        view = dict(service)
        if service['forced_down']:
            view['state'] = 'down'
        return view

    def _compute_put(self, path, query, body):
        match = re.match(r'^/os-services/([^/]+)$', path)
        if not match:
            return nova_error(404, 'no route for PUT %s in the fake' % path)
        service = next((s for s in self.services if s['id'] == match.group(1)), None)
        if service is None:
            return nova_error(404, 'Service %s could not be found.' % match.group(1))
        updated = dict(service)
        if 'status' in body:
            if body['status'] == 'enabled':
                if body.get('disabled_reason'):
                    return nova_error(400, "Specifying 'disabled_reason' with status 'enabled' is invalid.")
                updated.update(status='enabled', disabled_reason=None)
            else:
                updated.update(status='disabled', disabled_reason=body.get('disabled_reason'))
        if 'forced_down' in body:
            updated['forced_down'] = body['forced_down']
            if body['forced_down'] is False and any(
                    m['source_compute'] == service['host'] and m['status'] == 'done'
                    and m['migration_type'] == 'evacuation' for m in self.migrations):
                return nova_error(400, 'Unable to force up host %s as `done` evacuation migration records remain '
                                       'associated with the host. Ensure the compute service has been restarted, '
                                       'allowing these records to move to `completed` before retrying this '
                                       'request.' % service['host'])
        if not body:
            return nova_error(400, "No updates were requested. Fields 'status' or 'forced_down' should be specified.")
        service.update(updated)
        return FakeResponse(200, dict(service=self._service_view(service)))

    def _placement_get(self, path, query, body):
        match = re.match(r'^/resource_providers/([^/]+)/(inventories|usages)$', path)
        if not match or match.group(1) not in self.inventories:
            return FakeResponse(404, dict(errors=[dict(status=404, title='Not Found',
                                                       detail='No resource provider with uuid %s found' % path)]))
        provider, kind = match.groups()
        data = self.inventories[provider] if kind == 'inventories' else self.usages[provider]
        return FakeResponse(200, {'resource_provider_generation': 1, kind: data})

    def _image_get(self, path, query, body):
        match = re.match(r'^/images/([^/]+)$', path)
        if not match or match.group(1) not in self.images:
            return FakeResponse(404, text='<html><body><h1>404 Not Found</h1>No image found</body></html>')
        return FakeResponse(200, self.images[match.group(1)])
