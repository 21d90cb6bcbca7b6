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

"""The backend contract on ``openstack.kvs.Memory``, plus what is its own."""

import functools
import time

import pytest

from oslo_kvs.backends import base
from oslo_kvs import exception
from oslo_kvs import testing
from oslo_kvs_tests import stored


class TestMemoryContract(testing.StoreContract):
    expiry_wait = 1.2
    hypothesis_examples = 150

    @pytest.fixture(autouse=True)
    def _backend(self):
        self.backing_store = 'openstack.kvs.Memory'
        self.backend_args = {}


class TestDogpileMemoryContract(testing.StoreContract):
    """A foreign dogpile.cache backend behind the adapter."""

    supports_expiry = False
    supports_update = False  # no compare-and-set: NotImplementedError

    @pytest.fixture(autouse=True)
    def _backend(self):
        self.backing_store = 'dogpile.cache.memory'
        self.backend_args = {}

    def test_generic_expiry_arguments_are_refused(self):
        with pytest.raises(exception.ConfigurationError,
                           match='expire_time'):
            self.make_store(expire_time=5)


class ExtraBackend(base.Backend):
    """Shares its class name with another test module's backend."""


def _backend_of(store):
    """The memory backend under ``store``.

    Internal on purpose: how many entries it keeps (eviction, purging of
    expired ones) is the backend's own state, which no store API shows.
    """
    return store._state.backend


class TestMemoryBackend:
    make = staticmethod(functools.partial(stored.make_store,
                                          'openstack.kvs.Memory'))

    def test_max_items_evicts_least_recently_used(self):
        store = self.make(max_items=3)
        store.set_multi({'a': 1, 'b': 2, 'c': 3})
        store.get('a')  # now 'b' is the least recently used
        store.set('d', 4)
        with pytest.raises(exception.NotFound):
            store.get('b')
        assert store.get_multi(['a', 'c', 'd']) == [1, 3, 4]
        assert len(_backend_of(store)) == 3

    def test_expired_entries_are_purged_not_kept(self):
        store = self.make(expire_time=0.05)
        store.set_multi({'k%d' % i: i for i in range(100)})
        time.sleep(0.1)
        store.set('trigger', 1)
        # Only the fresh write is left: nothing expired lingers.
        assert len(_backend_of(store)) == 1

    def test_overwrites_do_not_grow_expiry_heap_without_bound(self):
        store = self.make(expire_time=3600)
        for i in range(1000):
            store.set('same', i)
        backend = _backend_of(store)
        assert len(backend._expiries) <= 2 * len(backend) + 64
        assert store.get('same') == 999

    def test_incr_counts_on_from_the_old_form_and_keeps_the_deadline(self):
        store = self.make(max_items=10)
        backend = _backend_of(store)
        key = stored.data_key(store, 'n')
        # Bytes as another process's codec wrote them: the format byte,
        # then a MessagePack int.
        backend.set_serialized(key, b'\x01\x05', 100)
        deadline = backend._data[key][1]
        assert store.incr('n', expire_time=0) == 6
        assert store.incr('n', -10) == -4
        # Internal on purpose: the deadline itself, not a sleep.
        assert backend._data[key][1] == deadline
        assert store.get('n') == -4
        backend.set_serialized(key, b'12x', 100)
        with pytest.raises(exception.IntegrityError):
            store.incr('n')

    def test_max_items_string_is_coerced(self):
        store = self.make(max_items='2')
        assert _backend_of(store).max_items == 2

    def test_negative_max_items_is_refused(self):
        with pytest.raises(exception.ConfigurationError, match='max_items'):
            self.make(max_items=-1)
