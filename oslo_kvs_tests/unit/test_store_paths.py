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

"""The store's one read path and one write path keep every API rule.

Immutable values on the memory backend are kept as themselves, not
serialized; the store remembers the stored keys of hot keys; multi-key
reads decode every value and name the key that fails; the memory backend
reads without its lock. Each must give the results and errors the API
promises for every value, key and serializer.
"""

import enum
import functools
import threading
import time
import urllib.parse

from dogpile.cache import proxy
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest

import oslo_kvs
from oslo_kvs.backends import base
from oslo_kvs.backends import memory
from oslo_kvs import core
from oslo_kvs import exception
from oslo_kvs import serialization
from oslo_kvs_tests import stored

SECRET = 's3cret-protection-key-0123456789'


make_store = functools.partial(stored.make_store, 'openstack.kvs.Memory')


def default_store(**args):
    """A memory store with the default key mangler (none given).

    Not :func:`stored.make_store`: its recording mangler counts as a
    caller's mangler, and the store remembers stored keys only for its own.
    """
    store = stored.new_store()
    store.configure('openstack.kvs.Memory', **args)
    return store


def data_prefix(store):
    """The namespace of ``store``'s data keys (default config_prefix)."""
    return 'openstack.kvs:%s:k:' % urllib.parse.quote(
        store.name, safe='', errors='surrogatepass')


def held(store, key):
    """What the memory backend holds for ``key``, exactly."""
    # Internal on purpose: only the backend's own entry shows a value kept
    # as itself; a proxy, the public way to the backend, turns that off.
    return store._state.backend._data[stored.data_key(store, key)][0]


def put_raw(store, key, data):
    """Make the memory backend hold ``data`` for ``key``, never expiring."""
    # Internal on purpose: set_serialized would keep bytes as given too,
    # but only a proxy reaches it, and a proxy changes what is stored.
    store._state.backend._data[stored.data_key(store, key)] = (
        data, float('inf'))


IMMUTABLES = [None, True, False, 0, -1, 2 ** 70, 1.5, float('inf'), '',
              'text', 'ünï©ødé', b'', b'\x00\xc4bytes']


@pytest.mark.parametrize('value', IMMUTABLES, ids=repr)
def test_immutable_values_kept_as_themselves_round_trip(value):
    store = make_store()
    store.set('k', value)
    assert isinstance(held(store, 'k'), serialization.Plain)
    got = store.get('k')
    assert type(got) is type(value) and got == value
    assert store.get_multi(['k', 'k']) == [value, value]


def test_none_and_empty_string_are_values_not_missing():
    store = make_store()
    store.set_multi({'none': None, 'empty': ''})
    assert store.get('none') is None
    assert store.get('empty') == ''
    assert store.get_multi(['none', 'empty']) == [None, '']
    with pytest.raises(exception.NotFound) as caught:
        store.get_multi(['none', 'missing', 'empty'])
    assert caught.value.target == ['missing']


@pytest.mark.parametrize('value', [
    {'a': [1]}, [1, [2]], {1, 2}, (1, [2]), ('a', 'b'), frozenset([1])],
    ids=repr)
def test_containers_are_encoded_and_isolated(value):
    store = make_store()
    store.set('k', value)
    assert type(held(store, 'k')) is bytes
    first = store.get('k')
    assert type(first) is type(value) and first == value
    if isinstance(first, (dict, list, set)):
        first.clear()
        assert store.get('k') == value


def test_mutating_after_set_or_get_changes_nothing_stored():
    store = make_store()
    value = {'roles': ['admin']}
    store.set('k', value)
    value['roles'].append('member')
    got = store.get('k')
    got['roles'].append('other')
    assert store.get('k') == {'roles': ['admin']}
    assert store.get_multi(['k']) == [{'roles': ['admin']}]


class Text(str):
    pass


class Level(enum.IntEnum):
    HIGH = 1


class Impostor:
    """Claims to be a str through ``__class__``."""

    __class__ = str


@pytest.mark.parametrize('value', [Text('x'), Level.HIGH, Impostor(),
                                   'lone \ud800 surrogate', bytearray(b'x')],
                         ids=['str subclass', 'IntEnum', 'fake __class__',
                              'surrogate', 'bytearray'])
def test_values_refused_elsewhere_are_refused_on_memory(value):
    store = make_store()
    store.set('k', 'old')
    with pytest.raises(TypeError):
        store.set('k', value)
    with pytest.raises(TypeError):
        store.set_multi({'k': value})
    assert store.get('k') == 'old'


def test_protected_store_encodes_and_seals_immutables():
    store = make_store(value_protection='encrypt',
                       protection_keys=[SECRET])
    store.set('k', 'secret text')
    data = held(store, 'k')
    assert type(data) is bytes and b'secret text' not in data
    assert store.get('k') == 'secret text'
    assert store.get_multi(['k']) == ['secret text']


def test_plain_value_is_refused_by_a_store_that_verifies():
    plain = make_store()
    plain.set('k', 'v')
    protected = make_store(value_protection='mac', protection_keys=[SECRET])
    protected.set('k', 'x')
    put_raw(protected, 'k', held(plain, 'k'))
    with pytest.raises(exception.IntegrityError):
        protected.get('k')
    with pytest.raises(exception.IntegrityError):
        protected.get_multi(['k'])


class Passing(proxy.ProxyBackend):
    """Records what passes through, as a consumer's proxy might."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def set_serialized(self, key, value):
        self.seen.append(value)
        self.proxied.set_serialized(key, value)


def test_proxies_see_bytes_only():
    passing = Passing()
    store = make_store(proxy_list=[passing])
    store.set('k', 'text')
    assert [type(value) for value in passing.seen] == [bytes]
    assert store.get('k') == 'text'


class Custom:
    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Custom) and other.value == self.value


def test_pickle_serializer_keeps_working_with_plain_values():
    store = make_store(serializer='pickle')
    store.set_multi({'obj': Custom([1]), 'text': 'x', 'num': 3})
    assert store.get_multi(['obj', 'text', 'num']) == [Custom([1]), 'x', 3]
    got = store.get('obj')
    got.value.append(2)
    assert store.get('obj') == Custom([1])


# --- the store's memory of stored keys ---------------------------------------
# Internal on purpose: the memory of stored keys changes no result, so
# only the store's own table shows what it remembers.

def test_key_cache_stays_within_its_bound():
    store = default_store()
    for i in range(core.KEY_CACHE_SIZE + 50):
        store.set('key-%d' % i, i)
        assert len(store._state.keys) <= core.KEY_CACHE_SIZE
    store.get_multi(['key-%d' % i for i in range(core.KEY_CACHE_SIZE + 50)])
    assert len(store._state.keys) <= core.KEY_CACHE_SIZE
    assert store.get('key-1') == 1


@pytest.mark.parametrize('key', [Text('k'), b'k', 1, None])
def test_cached_key_does_not_admit_other_types(key):
    store = default_store()
    store.set('k', 'v')
    assert 'k' in store._state.keys
    for call in (store.get, store.delete, lambda k: store.get_multi([k]),
                 lambda k: store.set(k, 1), lambda k: store.set_multi({k: 1})):
        with pytest.raises(TypeError):
            call(key)


def test_cached_keys_match_the_mangler():
    store = default_store()
    store.set('k', 1)
    state = store._state
    assert state.keys['k'] == core.sha256_mangle_key(data_prefix(store) + 'k')


# Any text, lone surrogates included: keys and names are arbitrary str.
_TEXT = st.text(st.characters(codec=None, exclude_categories=()))


@settings(max_examples=200, deadline=None)
@given(name=_TEXT, key=_TEXT)
def test_default_stored_keys_hash_the_whole_namespaced_key(name, key):
    # The store hashes its namespace once and the key per call; the
    # result must be the one hash of namespace + key, for any text.
    # Internal on purpose: a recording mangler (stored.py) would replace
    # the default path this checks.
    store = oslo_kvs.get_key_value_store(name)
    if not store.is_configured:
        store.configure('openstack.kvs.Memory')
    state = store._state
    assert state.data_key(key) == core.sha256_mangle_key(
        data_prefix(store) + key)
    assert state.lock_key(key) == core.sha256_mangle_key(
        data_prefix(store)[:-2] + 'l:' + key)


def test_stored_keys_do_not_change_between_releases():
    # Values written by an earlier release must stay readable: the
    # default store's stored keys are fixed for good. Internal on purpose:
    # a recording mangler (stored.py) would replace the default path.
    store = oslo_kvs.get_key_value_store('golden')
    if not store.is_configured:
        store.configure('openstack.kvs.Memory')
    key = 'token-\u043a\ud800'
    assert store._state.data_key(key) == (
        'd7dfafbcb449d5ae054c5bff87cb1443b2ce9c8f4c5314e2539a9962cc492a61')
    assert store._state.lock_key(key) == (
        '3a3782cdfb12d71c023f991494bd05404da7fb07cf01649ba21d224b4b837acf')


# --- optimistic multi-key decoding ------------------------------------------

def test_get_multi_names_the_corrupt_key():
    store = make_store()
    store.set_multi({'a': {'x': 1}, 'b': {'y': 2}, 'c': 'plain'})
    put_raw(store, 'b', b'\x01\xc1')
    with pytest.raises(exception.IntegrityError) as caught:
        store.get_multi(['a', 'b', 'c'])
    assert caught.value.target == 'b'


def test_get_multi_missing_wins_over_corrupt():
    store = make_store()
    store.set_multi({'a': {'x': 1}, 'b': {'y': 2}})
    put_raw(store, 'a', b'junk')
    with pytest.raises(exception.NotFound) as caught:
        store.get_multi(['a', 'b', 'gone'])
    assert not isinstance(caught.value, exception.IntegrityError)
    assert caught.value.target == ['gone']


# --- memory backend reads ---------------------------------------------------

def test_lock_free_read_never_returns_an_expired_value():
    store = make_store(expire_time=0.05)
    store.set_multi({'a': 'x', 'b': {'y': 1}})
    assert store.get_multi(['a', 'b']) == ['x', {'y': 1}]
    time.sleep(0.1)
    for key in ('a', 'b'):
        with pytest.raises(exception.NotFound):
            store.get(key)
    with pytest.raises(exception.NotFound) as caught:
        store.get_multi(['a', 'b'])
    assert caught.value.target == ['a', 'b']
    store.set('c', 1)  # a write purges what expired
    # Internal on purpose: purged or not, an expired entry reads as
    # missing; only the backend's size tells.
    assert len(store._state.backend) == 1


def test_reads_keep_lru_order_with_max_items():
    store = make_store(max_items=2)
    store.set('a', 1)
    store.set('b', 2)
    assert store.get('a') == 1  # a is now the most recent
    store.set('c', 3)
    assert store.get_multi(['a', 'c']) == [1, 3]
    with pytest.raises(exception.NotFound):
        store.get('b')


def test_lock_free_reads_during_writes_see_whole_values():
    store = make_store()
    store.set('k', [0] * 10)
    stop = threading.Event()
    seen = []

    def read():
        while not stop.is_set():
            value = store.get('k')
            seen.append(len(set(value)) == 1 and len(value) == 10)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    for i in range(2000):
        store.set('k', [i] * 10)
    stop.set()
    for thread in readers:
        thread.join(timeout=30)
    assert seen and all(seen)


class FlakyMemory(memory.MemoryBackend):
    """A memory backend whose server can fail, for the translation layer."""

    name = 'openstack.kvs.FlakyMemoryForTests'
    server_errors = (OSError,)
    failing = False

    @base.translate_errors
    def get_serialized(self, key):
        if self.failing:
            raise OSError('connection reset')
        return super().get_serialized(key)


def test_translation_is_where_a_method_is_decorated():
    # The memory backend talks to no server: its calls stay unwrapped.
    assert not hasattr(memory.MemoryBackend.get_serialized, '__wrapped__')
    assert not hasattr(FlakyMemory.delete_multi, '__wrapped__')
    assert FlakyMemory.get_serialized.__name__ == 'get_serialized'
    backend = FlakyMemory({})
    backend.set_serialized('k', b'v')
    FlakyMemory.failing = True
    try:
        with pytest.raises(exception.BackendError) as caught:
            backend.get_serialized('k')
    finally:
        FlakyMemory.failing = False
    assert 'openstack.kvs.FlakyMemoryForTests: get' in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    assert backend.get_serialized('k') == b'v'


def test_a_callers_mangler_is_called_on_every_operation():
    calls = []

    def mangler(key):
        calls.append(key)
        return 'm-' + key[-40:]

    store = default_store(key_mangler=mangler)
    store.set('k', 1)
    store.get('k')
    store.get_multi(['k'])
    store.set_multi({'k': 2})
    assert len(calls) == 4 and len(set(calls)) == 1
    assert not store._state.keys
