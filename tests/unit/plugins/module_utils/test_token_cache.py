"""token_cache: the Keystone token one module leaves for the next, with real keystoneauth plugins (no cloud:
a session that fails every request proves a module reused the token instead of logging in)."""

import datetime
import json
import os
import stat

import pytest
from keystoneauth1.identity import v3

from ansible_collections.openstack_ha.recovery.plugins.module_utils import _openstack
from ansible_collections.openstack_ha.recovery.plugins.module_utils._openstack import (
    OpenStackModule,
    TokenCache,
    connect,
    save_token,
)

AUTH = dict(auth_url='http://192.0.2.60:5000/v3', username='admin', password='os-Secret-pw', project_name='admin',
            user_domain_name='Default', project_domain_name='Default')


class NoNetwork:
    """A keystoneauth session that fails every request: a login attempt raises LoginAttempted."""

    def __init__(self):
        self.requests = 0

    def post(self, *args, **kwargs):
        self.requests += 1
        raise LoginAttempted(args[0] if args else kwargs.get('url'))

    request = get = post


class LoginAttempted(Exception):
    pass


def plugin(**changes):
    return v3.Password(**dict(AUTH, **changes))


def logged_in(token='gAAAA-token-1', minutes=60):
    """A plugin holding a token (as after a login) that expires in `minutes`."""
    authenticated = plugin()
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=minutes)
    body = dict(token=dict(methods=['password'], expires_at=expires.strftime('%Y-%m-%dT%H:%M:%S.000000Z'),
                           user=dict(id='u1', name='admin', domain=dict(id='default', name='Default')),
                           project=dict(id='p1', name='admin', domain=dict(id='default', name='Default')),
                           catalog=[]))
    authenticated.set_auth_state(json.dumps(dict(auth_token=token, body=body)))
    return authenticated


def token_of(auth):
    return auth.get_token(NoNetwork())


def test_the_next_module_with_the_same_credentials_uses_the_token_without_logging_in(tmp_path):
    warnings = []
    TokenCache(str(tmp_path / 'cache'), logged_in(), warnings.append).save()
    fresh = plugin()
    TokenCache(str(tmp_path / 'cache'), fresh, warnings.append).load()
    assert token_of(fresh) == 'gAAAA-token-1' and warnings == []


def test_the_files_are_private(tmp_path):
    TokenCache(str(tmp_path / 'cache'), logged_in()).save()
    directory = tmp_path / 'cache'
    files = list(directory.iterdir())
    assert len(files) == 1 and files[0].name.startswith('token-') and files[0].name.endswith('.json')
    assert stat.S_IMODE(directory.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert 'os-Secret-pw' not in files[0].read_text() and 'admin' in files[0].read_text()


@pytest.mark.parametrize('changes', [dict(password='another'), dict(project_name='demo'), dict(username='ops')])
def test_other_credentials_never_get_that_token(tmp_path, changes):
    TokenCache(str(tmp_path), logged_in()).save()
    other = plugin(**changes)
    TokenCache(str(tmp_path), other).load()
    with pytest.raises(LoginAttempted):
        token_of(other)


def test_a_token_about_to_expire_is_replaced_by_a_login(tmp_path):
    TokenCache(str(tmp_path), logged_in(minutes=1)).save()
    fresh = plugin()
    TokenCache(str(tmp_path), fresh).load()
    with pytest.raises(LoginAttempted):
        token_of(fresh)


def test_a_file_others_may_read_is_never_used(tmp_path):
    TokenCache(str(tmp_path), logged_in()).save()
    path, = tmp_path.iterdir()
    os.chmod(str(path), 0o644)
    warnings = []
    fresh = plugin()
    TokenCache(str(tmp_path), fresh, warnings.append).load()
    with pytest.raises(LoginAttempted):
        token_of(fresh)
    assert len(warnings) == 1 and 'is not private to this user' in warnings[0] and 'mode 644' in warnings[0]


def test_a_damaged_file_costs_a_warning_and_a_login(tmp_path):
    cache = TokenCache(str(tmp_path), plugin())
    with open(cache.path, 'w') as handle:
        handle.write('{not json')
    os.chmod(cache.path, 0o600)
    warnings = []
    fresh = plugin()
    TokenCache(str(tmp_path), fresh, warnings.append).load()
    assert len(warnings) == 1 and 'holds no usable token' in warnings[0]
    with pytest.raises(LoginAttempted):
        token_of(fresh)


def test_a_directory_that_cannot_be_made_costs_a_warning_not_the_work(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('')
    warnings = []
    TokenCache(str(blocker / 'cache'), logged_in(), warnings.append).save()
    assert len(warnings) == 1 and warnings[0].startswith('token_cache %s: cannot write the token' % (blocker / 'cache'))


def test_nothing_is_written_without_a_token_or_when_it_did_not_change(tmp_path):
    TokenCache(str(tmp_path), plugin()).save()  # never logged in
    assert list(tmp_path.iterdir()) == []
    TokenCache(str(tmp_path), logged_in()).save()
    path, = tmp_path.iterdir()
    before = path.stat().st_mtime_ns
    reused = plugin()
    cache = TokenCache(str(tmp_path), reused)
    cache.load()
    cache.save()
    assert path.stat().st_mtime_ns == before


# the module edge: connect() loads, run() saves - also when the module fails


class Conn:
    def __init__(self, auth):
        self.config = type('Config', (), {'get_auth': lambda config: auth})()


class TokenModule(OpenStackModule):
    argument_spec = dict(fail=dict(type='bool', default=False))

    def act(self, conn):
        token = token_of(conn.config.get_auth())
        if self.params['fail']:
            raise _openstack.RecoveryError('failed after reading with %s' % token)
        return dict(changed=False, token=token)


def test_connect_and_run_share_the_token_between_modules(tmp_path, monkeypatch, run_module):
    monkeypatch.setenv('OPENSTACK_HA_TOKEN_CACHE', str(tmp_path))
    first = logged_in('gAAAA-from-the-first-module')
    monkeypatch.setattr(_openstack.openstack, 'connect', lambda **kwargs: Conn(first))
    assert run_module(lambda: TokenModule().run(), dict(cloud='lab')).result['token'] == \
        'gAAAA-from-the-first-module'
    assert len(list(tmp_path.iterdir())) == 1
    # the next module: a new plugin with the same options, no login
    monkeypatch.setattr(_openstack.openstack, 'connect', lambda **kwargs: Conn(plugin()))
    outcome = run_module(lambda: TokenModule().run(), dict(cloud='lab', fail=True))
    assert outcome.failed and outcome.result['msg'] == 'failed after reading with gAAAA-from-the-first-module'


def test_without_token_cache_nothing_is_read_or_written(tmp_path, monkeypatch):
    monkeypatch.delenv('OPENSTACK_HA_TOKEN_CACHE', raising=False)
    conn = connect(dict(cloud='lab', token_cache=None), connect_function=lambda **kwargs: Conn(logged_in()))
    save_token(conn)
    assert not hasattr(conn, 'openstack_ha_token_cache') and list(tmp_path.iterdir()) == []
