# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""OpenStack module base: shared cloud options, openstacksdk import guard, lazy connection.

A module subclasses OpenStackModule, adds its own argument_spec and implements act(conn), which returns
the result dict or raises RecoveryError. run() makes the connection, after argument parsing and the import
check, never __init__: a module fails on bad arguments without touching the cloud.

    class NovaServiceModule(OpenStackModule):
        argument_spec = dict(host=dict(type='str', required=True))

        def act(self, conn):
            return ensure_forced_down(conn, self.params['host'], check_mode=self.check_mode)

    def main():
        NovaServiceModule().run()
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import openstack
    from openstack import exceptions as sdk_exceptions
except ImportError:
    HAS_OPENSTACKSDK = False
    OPENSTACKSDK_IMPORT_ERROR = traceback.format_exc()
    openstack = None
    sdk_exceptions = None
else:
    HAS_OPENSTACKSDK = True
    OPENSTACKSDK_IMPORT_ERROR = None

APP_NAME = 'openstack_ha.recovery'

# Options every OpenStack module shares, documented once in the openstack_ha.recovery.openstack doc fragment.
OPENSTACK_ARGUMENT_SPEC = dict(
    api_timeout=dict(type='int'),
    auth=dict(type='dict', no_log=True),
    auth_type=dict(type='str'),
    ca_cert=dict(type='str', aliases=['cacert']),
    cloud=dict(type='raw'),
    compute_microversion=dict(type='str'),
    interface=dict(type='str', default='public', choices=['admin', 'internal', 'public'],
                   aliases=['endpoint_type']),
    region_name=dict(type='str'),
    validate_certs=dict(type='bool', aliases=['verify']),
)


class RecoveryError(Exception):
    """A recovery step failed. `facts` holds what was known when it failed, returned with the failure."""

    def __init__(self, msg, facts=None):
        super(RecoveryError, self).__init__(msg)
        self.msg = msg
        self.facts = facts or {}


def connection_kwargs(params):
    """openstack.connect() keyword arguments from the module's cloud options (unset options left out)."""
    cloud = params.get('cloud')
    kwargs = dict(cloud) if isinstance(cloud, dict) else {}
    if cloud and not isinstance(cloud, dict):
        kwargs['cloud'] = cloud
    for option, sdk_name in (('api_timeout', 'api_timeout'), ('auth', 'auth'), ('auth_type', 'auth_type'),
                             ('ca_cert', 'cacert'), ('interface', 'interface'), ('region_name', 'region_name'),
                             ('validate_certs', 'verify'),
                             ('compute_microversion', 'compute_default_microversion')):
        if params.get(option) is not None:
            kwargs[sdk_name] = params[option]
    kwargs['app_name'] = APP_NAME
    return kwargs


def connect(params, connect_function=None):
    """Open an openstacksdk connection from the module's cloud options. Raises RecoveryError."""
    connect_function = connect_function or openstack.connect
    try:
        return connect_function(**connection_kwargs(params))
    except Exception as exc:  # keystoneauth and openstack.config raise many unrelated types
        raise RecoveryError('cannot connect to %s: %s' % (_describe_cloud(params), exc))


def _describe_cloud(params):
    cloud = params.get('cloud')
    if isinstance(cloud, dict):
        auth_url = (cloud.get('auth') or {}).get('auth_url')
        return 'the cloud at %s' % auth_url if auth_url else 'the cloud given as a dictionary'
    if cloud:
        return 'cloud %r' % cloud
    return 'the cloud of the OS_* environment variables'


class OpenStackModule:
    """Base of the modules that talk to OpenStack APIs: parse arguments, connect lazily, run, report."""

    argument_spec = {}
    module_kwargs = {}

    def __init__(self):
        spec = copy.deepcopy(OPENSTACK_ARGUMENT_SPEC)
        spec.update(self.argument_spec)
        kwargs = dict(supports_check_mode=True)
        kwargs.update(self.module_kwargs)
        self.ansible = AnsibleModule(argument_spec=spec, **kwargs)
        self.params = self.ansible.params
        self.check_mode = self.ansible.check_mode

    def act(self, conn):
        """Do the module's work with the connection; return the result dict (with changed)."""
        raise NotImplementedError

    def run(self):
        """Check the import, connect, act, and report: the only place that ends the module."""
        if not HAS_OPENSTACKSDK:
            self.ansible.fail_json(msg=missing_required_lib('openstacksdk'), exception=OPENSTACKSDK_IMPORT_ERROR)
        try:
            result = self.act(connect(self.params))
        except RecoveryError as exc:
            self.ansible.fail_json(msg=exc.msg, **exc.facts)
        except sdk_exceptions.SDKException as exc:
            self.ansible.fail_json(msg='OpenStack API error: %s' % exc, exception=traceback.format_exc())
        self.ansible.exit_json(**result)
