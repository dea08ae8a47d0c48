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
import hashlib
import os
import tempfile
import traceback

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

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
    token_cache=dict(type='path', fallback=(env_fallback, ['OPENSTACK_HA_TOKEN_CACHE'])),
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


def connect(params, connect_function=None, warn=None):
    """Open an openstacksdk connection from the module's cloud options. Raises RecoveryError.

    With token_cache set, the connection starts from the token an earlier module of the same credentials left
    there (TokenCache); hand it to save_token when done."""
    connect_function = connect_function or openstack.connect
    try:
        conn = connect_function(**connection_kwargs(params))
    except Exception as exc:  # keystoneauth and openstack.config raise many unrelated types
        raise RecoveryError('cannot connect to %s: %s' % (_describe_cloud(params), exc))
    if params.get('token_cache'):
        conn.openstack_ha_token_cache = TokenCache(params['token_cache'], _auth_plugin(conn), warn)
        conn.openstack_ha_token_cache.load()
    return conn


def save_token(conn):
    """Leave the connection's token in its token cache (when it has one) for the next module."""
    cache = getattr(conn, 'openstack_ha_token_cache', None)
    if cache is not None:
        cache.save()


def _auth_plugin(conn):
    config = getattr(conn, 'config', None)
    return config.get_auth() if config is not None and hasattr(config, 'get_auth') else None


class TokenCache:
    """One token per set of credentials, in a file of `directory`, shared by the modules of a run.

    Every module is a process of its own: without it each one asks Keystone for a token, and the first request
    of each makes the API validate a token it has never seen. The file holds keystoneauth's own auth state (token,
    expiry, catalog), named after a hash of the plugin's cache id (keystoneauth's hash of every auth option,
    password included: other credentials, another file). keystoneauth asks for a new token when the cached one
    expires within two minutes, and once more when an API answers 401 (revoked). The directory is made 0700 and
    each file 0600, written whole then renamed; a file that another user owns or that others may read is never
    loaded. A cache that cannot be read or written costs a warning and a login, never the module's work."""

    def __init__(self, directory, plugin, warn=None):
        self.directory = directory
        self.plugin = plugin
        self.warn = warn or (lambda message: None)
        self.loaded = None
        self.path = None
        cache_id = None
        if plugin is not None and hasattr(plugin, 'get_auth_state'):
            try:
                cache_id = plugin.get_cache_id()
            except Exception:  # a plugin that cannot name its options has nothing to cache
                cache_id = None
        if cache_id:
            self.path = os.path.join(directory, 'token-%s.json' % hashlib.sha256(cache_id.encode('utf-8')).hexdigest())

    def load(self):
        if self.path is None:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0))
        except FileNotFoundError:
            return
        except OSError as exc:
            self.warn('token_cache %s: cannot read %s (%s); logging in' % (self.directory, self.path, exc))
            return
        with os.fdopen(fd) as handle:
            status = os.fstat(handle.fileno())
            if status.st_uid != os.getuid() or status.st_mode & 0o077:
                self.warn('token_cache %s: %s is not private to this user (owner %d, mode %o); not used, logging in'
                          % (self.directory, self.path, status.st_uid, status.st_mode & 0o777))
                return
            state = handle.read()
        try:
            self.plugin.set_auth_state(state)
        except Exception as exc:  # a damaged file: log in as without one
            self.warn('token_cache %s: %s holds no usable token (%s); logging in' % (self.directory, self.path, exc))
            return
        self.loaded = state

    def save(self):
        if self.path is None:
            return
        try:
            state = self.plugin.get_auth_state()
        except Exception:
            return
        if not state or state == self.loaded:
            return
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=self.directory, prefix='.token-')  # 0600
            try:
                with os.fdopen(fd, 'w') as handle:
                    handle.write(state)
                os.replace(temporary, self.path)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError as exc:
            self.warn('token_cache %s: cannot write the token (%s); the next module logs in again'
                      % (self.directory, exc))
            return
        self.loaded = state


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
        conn = failure = None
        try:
            conn = connect(self.params, warn=self.ansible.warn)
            result = self.act(conn)
        except RecoveryError as exc:
            failure = dict(exc.facts, msg=exc.msg)
        except sdk_exceptions.SDKException as exc:
            failure = dict(msg='OpenStack API error: %s' % exc, exception=traceback.format_exc())
        finally:
            if conn is not None:
                save_token(conn)  # whatever act did: the token is good for the next module
        if failure is not None:
            self.ansible.fail_json(**failure)
        self.ansible.exit_json(**result)
