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

"""dogpile.cache's own generic backend suites against oslo_kvs backends.

Each oslo_kvs backend used from a plain dogpile region (the object API:
``region.set``/``get``/``get_or_create``) must behave like any dogpile
backend. The region serializes with the backend's own safe codec (see
``Backend.serializer``), or with the suite's JSON serializer in the
``*SerializerSuite`` classes; the mutex suite checks ``get_mutex``, built on
the backend's token lock.
"""

from dogpile.cache import region as dogpile_region
from dogpile.testing import fixtures
import pytest

from oslo_kvs import exception


class _OsloKvsSuite(fixtures._GenericBackendTestSuite):
    """The generic suite with backend arguments from a server fixture."""

    backend: str
    arguments: dict = {}

    @classmethod
    def setup_class(cls):
        # dogpile's version creates the backend from class attributes to
        # skip missing client libraries; ours are requirements and their
        # servers come from fixtures, set per test below.
        pass

    @pytest.fixture(autouse=True)
    def _arguments(self):
        self.config_args = {'arguments': dict(self.arguments)}

    def test_argument_dictionary_unmodified(self):
        # dogpile's version adds made-up argument names, which oslo_kvs
        # refuses on purpose (a typo must not be ignored); check both.
        arguments = dict(self.config_args['arguments'])
        copy = dict(arguments)
        dogpile_region.CacheRegion().configure(self.backend,
                                               arguments=arguments)
        assert arguments == copy
        with pytest.raises(exception.ConfigurationError,
                           match='arbitrary_arg_one'):
            dogpile_region.CacheRegion().configure(
                self.backend, arguments=dict(arguments,
                                             arbitrary_arg_one='foo'))

    def test_value_without_serializer_is_a_type_error(self):
        backend = self._backend()
        with pytest.raises(TypeError, match='bytes'):
            backend.set('k', {'not': 'bytes'})
        with pytest.raises(TypeError, match='bytes'):
            backend.set_multi({'k': b'ok', 'j': 'str'})
        assert backend.get_serialized('k') is fixtures.NO_VALUE


class _OwnCodec:
    """Checks of the backend's own codec (regions without a serializer)."""

    def test_region_refuses_unstorable_value_at_once(self):
        region = self._region()
        with pytest.raises(TypeError):
            region.set('k', object())
        assert region.get('k') is fixtures.NO_VALUE

    def test_region_round_trips_types(self):
        region = self._region()
        value = {'t': (1, 2), 's': {1}, 'b': b'\x00', 'n': None}
        region.set('k', value)
        assert region.get('k') == value
        assert type(region.get('k')['t']) is tuple


class _Memory:
    backend = 'openstack.kvs.Memory'


class _Memcached:
    backend = 'openstack.kvs.Memcached'
    # dogpile's decorator makes keys with spaces, which memcached refuses;
    # dogpile's own memcached suites mangle them the same way. (The suite's
    # clean-up mangles keys again, so the mangler must be idempotent.)
    region_args = {'key_mangler': lambda key: key.replace(' ', '_')}

    @pytest.fixture(autouse=True)
    def _arguments(self, memcached_server):
        # The suite's threaded tests on a loaded machine: bound waits
        # generously (the default socket_timeout is one second).
        self.config_args = {'arguments': dict(memcached_server.store_args,
                                              socket_timeout=30)}


class _Redis:
    backend = 'openstack.kvs.Redis'

    @pytest.fixture(autouse=True)
    def _arguments(self, redis_server):
        self.config_args = {'arguments': dict(redis_server.store_args,
                                              socket_timeout=30)}


class TestMemoryBackendSuite(_Memory, _OwnCodec, _OsloKvsSuite):
    pass


class TestMemcachedBackendSuite(_Memcached, _OwnCodec, _OsloKvsSuite):
    pass


class TestRedisBackendSuite(_Redis, _OwnCodec, _OsloKvsSuite):
    pass


class TestMemorySerializerSuite(_Memory, fixtures._GenericSerializerTestSuite,
                                _OsloKvsSuite):
    pass


class TestMemcachedSerializerSuite(_Memcached,
                                   fixtures._GenericSerializerTestSuite,
                                   _OsloKvsSuite):
    # The suite reads its serializer from here: give it both.
    region_args = dict(fixtures._GenericSerializerTestSuite.region_args,
                       **_Memcached.region_args)


class TestRedisSerializerSuite(_Redis, fixtures._GenericSerializerTestSuite,
                               _OsloKvsSuite):
    pass


class _OsloKvsMutexSuite(fixtures._GenericMutexTestSuite):
    setup_class = _OsloKvsSuite.setup_class
    _arguments = _OsloKvsSuite._arguments
    arguments: dict = {}


class TestMemoryMutexSuite(_Memory, _OsloKvsMutexSuite):
    pass


class TestMemcachedMutexSuite(_Memcached, _OsloKvsMutexSuite):
    pass


class TestRedisMutexSuite(_Redis, _OsloKvsMutexSuite):
    pass
