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

"""Foreign dogpile.cache backends on real servers: contract, safety, errors.

A hostile memcached plants pickle gadgets under every flag value a
memcached client could decode by; no backend oslo_kvs accepts may run
them, and reads end in an oslo_kvs exception, never a raw ``TypeError``.
"""

import inspect
import os
import pickle
import uuid
import zlib

from oslo_config import cfg
from pymemcache import serde as pymemcache_serde
import pytest

import oslo_kvs
from oslo_kvs import exception
from oslo_kvs import testing
from oslo_kvs_tests.functional import test_protection_servers as protection
from oslo_kvs_tests import servers

# pymemcache's serde flags are bits 0-4 (pickle, int, long, compressed,
# text); python-memcached and pylibmc use the same low bits. Every
# combination of them, and the highest flag values memcached keeps.
FLAGS = list(range(64)) + [2 ** 16 - 1, 2 ** 31, 2 ** 32 - 1]


class _ForeignContract(testing.StoreContract):
    supports_expiry = False  # foreign backends expire values their own way
    supports_update = False  # nor have they compare-and-set
    hypothesis_examples = 30


class TestPymemcacheForeignContract(_ForeignContract):
    """dogpile.cache.pymemcache behind the adapter, raw-bytes serde."""

    @pytest.fixture(autouse=True)
    def _backend(self, memcached_server):
        self.backing_store = 'dogpile.cache.pymemcache'
        self.backend_args = {'url': memcached_server.address}


class TestPymemcacheDistributedLockForeignContract(_ForeignContract):
    """The same with dogpile's memcached mutex, which add() and delete() use.

    The mutex writes the integer 1 through the backend's serde.
    """

    @pytest.fixture(autouse=True)
    def _backend(self, memcached_server):
        self.backing_store = 'dogpile.cache.pymemcache'
        self.backend_args = {'url': memcached_server.address,
                             'distributed_lock': True}


class TestRedisForeignContract(_ForeignContract):
    """dogpile.cache.redis behind the adapter."""

    @pytest.fixture(autouse=True)
    def _backend(self, redis_server):
        self.backing_store = 'dogpile.cache.redis'
        self.backend_args = {'host': redis_server.host,
                             'port': redis_server.port}


def _configure(backing, **args):
    store = oslo_kvs.get_key_value_store('foreign-%s' % uuid.uuid4())
    store.configure(backing, **args)
    return store


@pytest.fixture
def closing():
    """Stores made through it are closed after the test."""
    made = []

    def make(backing, **args):
        made.append(_configure(backing, **args))
        return made[-1]

    yield make
    for store in made:
        store.close()


@pytest.mark.parametrize('backing, args', [
    ('openstack.kvs.Memcached', {}),
    ('openstack.kvs.Memcached', protection.MAC),
    ('openstack.kvs.Memcached', protection.ENCRYPT),
    ('dogpile.cache.pymemcache', {}),
    ('dogpile.cache.pymemcache', protection.ENCRYPT),
], ids=['kvs', 'kvs-mac', 'kvs-encrypt', 'pymemcache', 'pymemcache-encrypt'])
def test_hostile_memcached_cannot_run_code(memcached_factory, closing,
                                           tmp_path, backing, args):
    raw = protection.RawMemcached(memcached_factory())
    store = closing(backing, url=raw.server.address, **args)
    store.set('k', 'v')
    key = protection.only_key(raw)
    marker = tmp_path / 'gadget-ran'
    gadget = pickle.dumps(protection.Gadget(str(marker)))
    poisons = [gadget, zlib.compress(gadget), b'\x02' + gadget,
               b'\x01' + gadget]
    for flags in FLAGS:
        for poison in poisons:
            raw.put(key, poison, flags=flags)
            with pytest.raises((exception.NotFound, exception.BackendError)):
                store.get('k')
            with pytest.raises((exception.NotFound, exception.BackendError)):
                store.get_multi(['k'])
    assert not marker.exists()
    # The store still works once the server holds honest bytes again.
    store.set('k', 'fresh')
    assert store.get('k') == 'fresh'


@pytest.mark.parametrize('backing', ['openstack.kvs.Redis',
                                     'dogpile.cache.redis'])
def test_hostile_redis_cannot_run_code(closing, tmp_path, backing):
    server = servers.RedisServer()
    try:
        raw = protection.RawRedis(server.start())
        store = closing(backing, url=server.url)
        store.set('k', 'v')
        key = protection.only_key(raw)
        marker = tmp_path / 'gadget-ran'
        gadget = pickle.dumps(protection.Gadget(str(marker)))
        for poison in (gadget, zlib.compress(gadget), b'\x02' + gadget,
                       b'\x01' + gadget):
            raw.put(key, poison)
            with pytest.raises(exception.NotFound):
                store.get('k')
            with pytest.raises(exception.NotFound):
                store.get_multi(['k'])
        assert not marker.exists()
    finally:
        server.cleanup()


@pytest.mark.parametrize('backing', ['dogpile.cache.memcached',
                                     'dogpile.cache.bmemcached',
                                     'dogpile.cache.pylibmc'])
def test_memcached_backends_decoding_by_flags_are_refused(backing):
    store = oslo_kvs.get_key_value_store('refused-%s' % uuid.uuid4())
    with pytest.raises(exception.ConfigurationError, match='unpickling'):
        store.configure(backing, url='127.0.0.1:11211')
    assert not store.is_configured


@pytest.mark.parametrize('args, named', [
    ({'serde': pymemcache_serde.pickle_serde}, 'serde'),
    ({'hashclient_retry_attempts': 2}, 'hashclient_retry_attempts'),
], ids=['serde', 'retry'])
def test_unsafe_pymemcache_arguments_are_refused(args, named):
    store = oslo_kvs.get_key_value_store('serde-%s' % uuid.uuid4())
    with pytest.raises(exception.ConfigurationError, match=named):
        store.configure('dogpile.cache.pymemcache', url='127.0.0.1:11211',
                        **args)
    assert not store.is_configured


@pytest.mark.parametrize('backing, args', [
    ('dogpile.cache.pymemcache', lambda port: {
        'url': '127.0.0.1:%d' % port}),
    ('dogpile.cache.redis', lambda port: {
        'url': 'redis://user:hunter2-secret@127.0.0.1:%d/0' % port}),
], ids=['pymemcache', 'redis'])
def test_unreachable_server_is_a_backend_error(closing, backing, args):
    port = servers.free_port()
    store = closing(backing, **args(port))
    assert store.servers() == ['127.0.0.1:%d' % port]
    for call in (lambda: store.get('k'), lambda: store.set('k', 1),
                 lambda: store.add('k', 1), lambda: store.delete('k')):
        with pytest.raises(exception.BackendError) as info:
            call()
        message = str(info.value)
        assert backing in message and '127.0.0.1:%d' % port in message
        assert 'hunter2' not in message
        assert info.value.__cause__ is not None


def test_oversize_value_is_value_too_large(memcached_server, closing):
    store = closing('dogpile.cache.pymemcache',
                    url=memcached_server.address)
    with pytest.raises(exception.ValueTooLarge):
        store.set('k', os.urandom(2 * 1024 * 1024))
    with pytest.raises(exception.NotFound):
        store.get('k')


def test_bad_unmangled_key_is_a_configuration_error(memcached_server,
                                                    closing):
    cfg.CONF.set_override('enable_key_mangler', False, group='kvs')
    store = closing('dogpile.cache.pymemcache',
                    url=memcached_server.address)
    with pytest.raises(exception.ConfigurationError, match='key'):
        store.set('with space', 1)
    store.set('plain', 1)
    assert store.get('plain') == 1


def test_per_call_expiry_is_refused(memcached_server, closing):
    store = closing('dogpile.cache.pymemcache',
                    url=memcached_server.address)
    if 'expire_time' not in inspect.signature(
            oslo_kvs.KeyValueStore.set).parameters:
        pytest.skip('the store has no per-call expire_time yet (issue 11)')
    with pytest.raises(exception.ConfigurationError, match='expire'):
        store.set('k', 1, expire_time=5)
