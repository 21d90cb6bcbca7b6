# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""memcached's ASCII authentication against a real memcached with ``-Y``."""

import functools

import pytest

from oslo_kvs.backends import memcache_pool
from oslo_kvs.cmd import doctor
from oslo_kvs import exception
from oslo_kvs_tests import servers
from oslo_kvs_tests import stored
from oslo_kvs_tests.unit import test_cmd_doctor

USER = 'svc'
PASSWORD = 'mc-pass-that-must-stay-hidden-7Qx'


@pytest.fixture(scope='module')
def auth_server():
    yield from servers.running(servers.MemcachedServer(
        users={USER: PASSWORD}))


new_store = functools.partial(stored.make_store, 'openstack.kvs.Memcached',
                              lock_timeout=5)


def raw_client(server):
    from pymemcache.client import base
    return base.Client((server.host, server.port), timeout=5)


def test_every_operation_authenticated(auth_server):
    store = new_store(**auth_server.store_args)
    assert auth_server.store_args['password'] == PASSWORD
    store.set('a', 1)
    store.set_multi({'b': 2, 'c': 3}, expire_time=60)
    assert store.get_multi(['a', 'b', 'c']) == [1, 2, 3]
    assert store.add('d', 4) and not store.add('d', 5)
    with store.get_lock('a') as lock:
        store.set('a', 6, lock=lock)
    store.delete('d')
    store.delete_multi(['b', 'c'])
    assert store.get('a') == 6
    store.close()


def test_reconnect_authenticates_again(auth_server):
    store = new_store(**auth_server.store_args)
    store.set('k', 'v')
    # The server drops every connection; the pool notices and reconnects.
    auth_server.stop()
    auth_server.start()
    with pytest.raises(exception.NotFound):
        store.get('k')  # a restart empties memcached
    store.set('k', 'w')
    assert store.get('k') == 'w'
    store.close()


@pytest.mark.parametrize('credentials', [
    {'username': USER, 'password': 'wrong-' + PASSWORD},
    {'username': 'nobody', 'password': PASSWORD}])
def test_wrong_credentials_are_a_backend_error(auth_server, credentials):
    store = new_store(url=auth_server.address, **credentials)
    with pytest.raises(exception.BackendError) as caught:
        store.get('k')
    message = str(caught.value)
    assert auth_server.address in message
    assert 'authentication failed' in message
    for shown in (message, repr(caught.value),
                  repr(caught.value.__cause__)):
        assert PASSWORD not in shown
    store.close()


def test_no_credentials_is_a_backend_error(auth_server):
    store = new_store(url=auth_server.address)
    # A first set is taken as credentials; any other command is refused.
    with pytest.raises(exception.BackendError,
                       match='authentication token format'):
        store.set('k', 1)
    with pytest.raises(exception.BackendError, match='unauthenticated'):
        store.get('k')
    store.close()


def test_password_never_sent_to_a_server_without_auth(memcached_server):
    store = new_store(url=memcached_server.address, username=USER,
                      password=PASSWORD)
    with pytest.raises(exception.BackendError,
                       match='does not ask for authentication') as caught:
        store.set('k', 1)
    assert PASSWORD not in str(caught.value)
    store.close()
    client = raw_client(memcached_server)
    assert client.get(memcache_pool.AUTH_KEY) is None
    client.close()


@pytest.mark.parametrize('args,match', [
    ({'username': USER}, 'go together'),
    ({'password': PASSWORD}, 'go together'),
    ({'username': 'a b', 'password': PASSWORD}, 'Invalid username'),
    ({'username': USER, 'password': 'x\nflush_all'}, 'Invalid password'),
])
def test_bad_credentials_refused_at_configure(args, match):
    with pytest.raises(exception.ConfigurationError, match=match) as caught:
        new_store(url='127.0.0.1:1', **args)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize('arguments,present', [
    (['url:%s:11211' % test_cmd_doctor.REMOTE, 'username:svc',
      'password:%s' % PASSWORD], True),
    (['url:%s:11211' % test_cmd_doctor.REMOTE, 'username:svc',
      'password:%s' % PASSWORD, 'tls_enabled:true'], False),
    (['url:127.0.0.1:11211', 'username:svc',
      'password:%s' % PASSWORD], False),
    (['url:%s:11211' % test_cmd_doctor.REMOTE], False),
])
def test_doctor_password_without_tls(tmp_path, arguments, present):
    text = '[kvs]\nbackend = openstack.kvs.Memcached\n' + ''.join(
        'backend_argument = %s\n' % a for a in arguments)
    assert test_cmd_doctor.present(
        doctor.symptom_memcached_password_without_tls, tmp_path,
        text) is present
