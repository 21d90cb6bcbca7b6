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

"""oslo_kvs.fixture.KVSFixture."""

import uuid

from oslo_config import cfg
import pytest

import oslo_kvs
from oslo_kvs.backends import memory
from oslo_kvs import core
from oslo_kvs import exception
from oslo_kvs import fixture
from oslo_kvs import memoize
from oslo_kvs_tests import stored


def _backend(store):
    """The backend the fixture put under ``store``.

    Internal on purpose: which backend class the fixture substituted, and
    with what arguments, is what these tests check, and only the backend
    shows it.
    """
    return store._state.backend


@pytest.fixture
def conf():
    return cfg.ConfigOpts()


def test_configure_is_redirected_to_memory(conf):
    with fixture.KVSFixture(conf=conf):
        store = oslo_kvs.get_key_value_store('tokens', conf=conf)
        store.configure('openstack.kvs.Memcached',
                        url='memcached://192.0.2.1:11211',
                        password='not-for-tests', memcached_expire_time=30,
                        lock_timeout=2, no_expiry_keys=['keep'])
        backend = _backend(store)
        assert isinstance(backend, memory.MemoryBackend)
        assert stored.expiry(store)[0] == 30     # the alias is kept
        assert store.get_lock('k').lock_timeout == 2
        store.set('k', {'v': 1})
        assert store.get('k') == {'v': 1}


def test_memory_arguments_and_store_options_pass_through(conf):
    with fixture.KVSFixture(conf=conf):
        store = oslo_kvs.get_key_value_store('bounded', conf=conf)
        store.configure('openstack.kvs.Redis', url='redis://192.0.2.1',
                        max_items=2, expire_time=5, locking=False)
        backend = _backend(store)
        assert backend.max_items == 2
        assert stored.expiry(store)[0] == 5
        assert store.get_lock('k').enabled is False


def test_configure_errors_still_raise(conf):
    with fixture.KVSFixture(conf=conf):
        store = oslo_kvs.get_key_value_store('bad', conf=conf)
        with pytest.raises(exception.ConfigurationError, match='max_items'):
            store.configure('openstack.kvs.Memcached', max_items=-1)


def test_registry_is_clean_and_restored(conf):
    name = 'fixture-outer-%s' % uuid.uuid4()
    outer = oslo_kvs.get_key_value_store(name, conf=conf)
    outer.configure('openstack.kvs.Memory')
    outer.set('k', 'outside')
    original_configure = core.KeyValueStore.configure
    with fixture.KVSFixture(conf=conf):
        inner = oslo_kvs.get_key_value_store(name, conf=conf)
        assert inner is not outer
        assert not inner.is_configured
        assert core.KeyValueStore.configure is not original_configure
    assert oslo_kvs.get_key_value_store(name, conf=conf) is outer
    assert outer.get('k') == 'outside'
    assert core.KeyValueStore.configure is original_configure


def test_fixtures_nest(conf):
    original_configure = core.KeyValueStore.configure
    with fixture.KVSFixture(conf=conf):
        first = oslo_kvs.get_key_value_store('nested', conf=conf)
        with fixture.KVSFixture(conf=conf):
            assert oslo_kvs.get_key_value_store('nested', conf=conf) \
                is not first
        assert oslo_kvs.get_key_value_store('nested', conf=conf) is first
    assert core.KeyValueStore.configure is original_configure


def test_setup_and_cleanup_protocol(conf):
    kvs_fixture = fixture.KVSFixture(conf=conf)
    kvs_fixture.setUp()
    try:
        assert kvs_fixture.getDetails() == {}
        store = kvs_fixture.store('helper', expire_time=60)
        assert store.is_configured
        assert stored.expiry(store)[0] == 60
        # The fixture keeps it: code under test gets the same store.
        assert oslo_kvs.get_key_value_store('helper', conf=conf) is store
        assert kvs_fixture.store('helper') is store
    finally:
        kvs_fixture.cleanUp()
    assert oslo_kvs.get_key_value_store('helper', conf=conf) is not store


def test_force_backing_store_off_keeps_configure(conf):
    original_configure = core.KeyValueStore.configure
    with fixture.KVSFixture(conf=conf, force_backing_store=False):
        assert core.KeyValueStore.configure is original_configure
        store = oslo_kvs.get_key_value_store('plain', conf=conf)
        store.configure('dogpile.cache.memory')
        assert not isinstance(_backend(store), memory.MemoryBackend)


def test_memoize_override_is_set_and_cleared(conf):
    memoize.register_opts(conf, 'token')
    with fixture.KVSFixture(conf=conf, memoize_enabled=False) as kvs:
        calls = []

        @memoize.get_memoization_decorator(conf, 'token',
                                           store=kvs.store('memo'))
        def double(x):
            calls.append(x)
            return x * 2

        double(1)
        double(1)
        assert calls == [1, 1]
    assert conf.kvs.memoize_enabled is True


def test_memoization_works_inside_the_fixture(conf):
    with fixture.KVSFixture(conf=conf) as kvs:
        kvs.store(memoize.DEFAULT_STORE)
        calls = []

        @memoize.get_memoization_decorator(conf, 'token')
        def double(x):
            calls.append(x)
            return x * 2

        assert double(2) == double(2) == 4
        assert calls == [2]


def test_failed_setup_undoes_what_was_done(conf):
    original_configure = core.KeyValueStore.configure
    # Internal on purpose: the fixture swaps the store registry, which no
    # public API shows; what is checked is that it is put back.
    registry = core._registry
    broken = fixture.KVSFixture(conf=conf, backing_store='no.such.backend')
    with pytest.raises(Exception, match='no.such.backend'):
        broken.setUp()
    assert core._registry is registry
    assert core.KeyValueStore.configure is original_configure
