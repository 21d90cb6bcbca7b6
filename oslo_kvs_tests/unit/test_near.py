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

"""The near cache's own rules (:mod:`oslo_kvs.near`) and its settings."""

import copy
import datetime
import math
import threading
import time

from oslo_config import cfg
import pytest

import oslo_kvs
from oslo_kvs.backends import memory
from oslo_kvs import exception
from oslo_kvs import near
from oslo_kvs_tests import faults
from oslo_kvs_tests import stored


def make_cache(ttl=60.0, size=100):
    return near.NearCache(ttl, size)


def stored_key(key):
    """The stored key these tests give ``key``.

    Not ``key`` itself: entries are looked up by key, dropped by stored key.
    """
    return 'stored:' + key


def triples(pairs):
    return [(key, stored_key(key), value) for key, value in pairs]


def fill(cache, key, value, begun=None):
    cache.fill(begun or cache.begin(), triples([(key, value)]))


def lookup(cache, key):
    return cache.lookup(key, stored_key(key))


# --- settings ---------------------------------------------------------------

@pytest.mark.parametrize('argument, bad', [
    ('near_cache_ttl', -1), ('near_cache_ttl', math.nan),
    ('near_cache_ttl', math.inf), ('near_cache_ttl', True),
    ('near_cache_ttl', 'soon'), ('near_cache_ttl', [1]),
    ('near_cache_size', 0), ('near_cache_size', -5),
    ('near_cache_size', 1.5), ('near_cache_size', True),
    ('near_cache_size', 'many'),
])
def test_bad_arguments_are_refused_at_configure(argument, bad):
    store = stored.new_store()
    with pytest.raises(exception.ConfigurationError) as info:
        store.configure('openstack.kvs.Memory', **{argument: bad})
    assert info.value.argument == argument
    assert not store.is_configured


def test_off_by_default_and_for_zero():
    for args in ({}, {'near_cache_ttl': 0}, {'near_cache_ttl': None}):
        store = stored.make_store('openstack.kvs.Memory', **args)
        try:
            assert store._state.near is None    # the hot path's one test
            store.set('k', 1)
            assert store.get('k') == 1
            assert store.stats()['near_cache'] is None
        finally:
            store.close()


def test_options_of_a_group_configure_the_near_cache():
    conf = cfg.ConfigOpts()
    conf([], project='test', default_config_files=[])
    oslo_kvs.register_store_opts(conf, 'tokens')
    conf.set_override('near_cache_ttl', 2.5, group='tokens')
    conf.set_override('near_cache_size', 7, group='tokens')
    store = stored.new_store(conf=conf)
    store.configure_from_conf('tokens')
    try:
        settings = store._state.settings
        assert (settings.near_ttl, settings.near_size) == (2.5, 7)
        store.set('k', 'v')     # kept as written
        assert store.get('k') == store.get('k') == 'v'
        assert store.stats()['near_cache'] == {'hits': 2, 'misses': 0,
                                               'entries': 1}
    finally:
        store.close()


def test_option_help_names_the_staleness():
    [ttl] = [opt for opt in oslo_kvs.opts.store_opts()
             if opt.name == 'near_cache_ttl']
    assert 'own writes' in ttl.help and ttl.default is None


# --- entries ---------------------------------------------------------------

def test_a_read_overtaken_by_a_drop_of_its_key_fills_nothing():
    cache = make_cache()
    cache.drop([stored_key('k')])             # an earlier write
    begun = cache.begin()         # a read of k and j starts
    cache.drop([stored_key('j'), stored_key('other')])  # writes end meanwhile
    cache.fill(begun, triples([('k', 'k0'), ('j', 'old')]))
    assert lookup(cache, 'j') is near.MISS
    assert lookup(cache, 'k') == 'k0'     # not dropped since the read began
    fill(cache, 'j', 'new')
    assert lookup(cache, 'j') == 'new'


def test_drops_kept_are_bounded(monkeypatch):
    monkeypatch.setattr(near, 'DROPS_KEPT', 10)
    cache = make_cache()
    begun = cache.begin()
    cache.drop([stored_key('d%d' % i) for i in range(11)])    # record emptied
    assert len(cache._dropped) == 0
    fill(cache, 'k', 'old', begun)       # so every older read is stale
    assert lookup(cache, 'k') is near.MISS
    fill(cache, 'k', 'new')
    assert lookup(cache, 'k') == 'new'


def test_drop_and_fill_race_leaves_no_stale_entry():
    # Threads fill from reads begun before drops that other threads make;
    # after each drop of 'k' the read begun before it must not be kept.
    cache = make_cache()
    stale = []

    def reader(n):
        for round in range(2000):
            begun = cache.begin()
            fill(cache, 'k', ('old', n, round), begun)

    def writer(n):
        for _ in range(2000):
            begun = cache.begin()
            cache.drop([stored_key('k')])
            if lookup(cache, 'k') is not near.MISS:
                # Only a read begun after the drop may fill.
                entry = cache._entries.get('k')
                if entry is not None and entry[0] - 60 < begun[1]:
                    stale.append(entry)

    faults.run_threads(lambda n: (reader if n % 2 else writer)(n), 4,
                       timeout=60)
    assert stale == []


def test_a_write_keeps_its_value_unless_overtaken():
    cache = make_cache(ttl=60)
    read = cache.begin()          # a read of the old value starts
    wrote = cache.begin()
    cache.fill(wrote, triples([('k', 'new')]), written=True, ttl=None)
    fill(cache, 'k', 'old', read)     # the read ends: nothing kept
    assert lookup(cache, 'k') == 'new'
    wrote = cache.begin()
    cache.drop([stored_key('k')])    # another write of k ends meanwhile
    cache.fill(wrote, triples([('k', 'newer'), ('j', 'j1')]), written=True,
               ttl=None)
    assert lookup(cache, 'k') is near.MISS     # dropped, not kept
    assert lookup(cache, 'j') == 'j1'


def test_a_written_entry_lives_no_longer_than_its_value(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(near, '_monotonic', lambda: now[0])
    cache = make_cache(ttl=60)
    cache.fill(cache.begin(), triples([('k', 'v')]), written=True, ttl=2)
    now[0] += 1.9
    assert lookup(cache, 'k') == 'v'
    now[0] += 0.1
    assert lookup(cache, 'k') is near.MISS


def test_suspend_forgets_and_refuses_until_resume():
    cache = make_cache()
    fill(cache, 'k', 1)
    cache.suspend()
    assert lookup(cache, 'k') is near.MISS
    fill(cache, 'k', 2)           # suspended: nothing kept
    assert lookup(cache, 'k') is near.MISS
    begun = cache.begin()         # begun before the resume
    cache.resume()
    fill(cache, 'k', 3, begun)
    assert lookup(cache, 'k') is near.MISS
    fill(cache, 'k', 4)
    assert lookup(cache, 'k') == 4


def test_entries_age_from_the_start_of_their_read(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(near, '_monotonic', lambda: now[0])
    cache = make_cache(ttl=5)
    begun = cache.begin()
    now[0] += 3                   # the read took 3 s
    fill(cache, 'k', 'v', begun)
    now[0] += 1.9
    assert lookup(cache, 'k') == 'v'
    now[0] += 0.1                 # 5 s after the read began
    assert lookup(cache, 'k') is near.MISS


def test_size_bound_and_second_chance_eviction():
    cache = make_cache(size=3)
    for key in 'abc':
        fill(cache, key, key)
    assert lookup(cache, 'a') == 'a'     # marked: survives one eviction
    fill(cache, 'd', 'd')
    assert [lookup(cache, key) for key in 'abcd'] == [
        'a', near.MISS, 'c', 'd']
    assert cache.counts()['entries'] == 3
    for key in 'efghij':
        fill(cache, key, key)
        assert len(cache._entries) == 3


def test_kept_values_are_isolated_and_immutable_ones_shared():
    cache = make_cache()
    when = datetime.datetime.now(datetime.timezone.utc)
    value = {'a': [1], 'b': ({2}, frozenset([3])), 'when': when}
    fill(cache, 'k', value)
    value['a'].append(2)
    first = lookup(cache, 'k')
    first['a'].append(3)
    first['b'][0].add(4)
    got = lookup(cache, 'k')
    assert got == {'a': [1], 'b': ({2}, frozenset([3])), 'when': when}
    assert type(got['b']) is tuple
    text = 'x' * 100
    fill(cache, 's', text)
    assert lookup(cache, 's') is text


def _mutate(value):
    """Change ``value`` and every container in it."""
    if type(value) is dict:
        for member in value.values():
            _mutate(member)
        value['changed'] = True
    elif type(value) is list:
        for member in value:
            _mutate(member)
        value.append('changed')
    elif type(value) is set:
        value.add('changed')


@pytest.mark.parametrize('value', [
    {'id': 'a', 'n': 1}, ['a', 1, None], {'a', 'b'},
    {'id': 'a', 'roles': ['admin'], 'extra': {'x': 1}, 'tags': {'t'}},
    [['deeper'], {'x': [1]}],
], ids=['flat dict', 'flat list', 'set', 'dict of flat containers',
        'deeper'])
def test_every_hit_hands_out_a_value_of_its_own(value):
    cache = make_cache()
    expected = copy.deepcopy(value)
    fill(cache, 'k', value)
    _mutate(value)                  # the caller's own, after the fill
    for _ in range(3):
        got = lookup(cache, 'k')
        assert got == expected
        _mutate(got)


def test_counts_are_exact_under_threads():
    cache = make_cache()
    fill(cache, 'k', 1)

    def work(n):
        for _ in range(1000):
            lookup(cache, 'k')
            lookup(cache, 'missing')
    faults.run_threads(work, 4, timeout=60)
    assert cache.counts() == {'hits': 4000, 'misses': 4000, 'entries': 1}
    assert cache.counts() == {'hits': 4000, 'misses': 4000, 'entries': 1}


# --- the backend's watch ---------------------------------------------------

def test_watch_is_asked_once_per_process_and_stopped_on_close(monkeypatch):
    watched, stopped = [], []

    def watch(self, cache):
        watched.append(cache)
        return lambda: stopped.append(cache)
    monkeypatch.setattr(memory.MemoryBackend, 'watch', watch)
    store = stored.make_store('openstack.kvs.Memory', near_cache_ttl=10)
    store.set('k', 1)
    barrier = threading.Barrier(8)

    def first_reads(n):
        barrier.wait()
        store.get('k')
    faults.run_threads(first_reads, 8, timeout=30)
    assert len(watched) == 1
    [child] = faults.in_forked_children(1, lambda n: {
        'got': store.get('k'), 'watched': len(watched)})
    assert child == {'got': 1, 'watched': 2}
    assert stopped == []
    store.close()
    assert stopped == watched
    fill(watched[0], 'k', 1)      # a thread still using the closed store
    assert lookup(watched[0], 'k') is near.MISS


def test_default_watch_is_none():
    assert memory.MemoryBackend({}).watch(make_cache()) is None


# --- reads under a lock ------------------------------------------------------

def test_only_a_running_lease_sends_reads_to_the_server():
    store = stored.make_store('openstack.kvs.Memory', near_cache_ttl=60,
                              lock_timeout=0.2)
    try:
        store.set('k', 'v')       # kept as written
        abandoned = store.get_lock('k')
        abandoned.acquire()
        store.get('k')            # under the lock: not from the cache
        assert store.stats()['near_cache']['hits'] == 0
        time.sleep(0.3)           # the lease ends; never released
        store.get('k')
        assert store.stats()['near_cache']['hits'] == 1
        with store.get_lock('k'):
            store.get('k')
        store.get('k')
        assert store.stats()['near_cache']['hits'] == 2
        assert abandoned.expired
    finally:
        store.close()


def test_a_watch_that_raised_is_asked_again(monkeypatch):
    asked = []

    def watch(self, cache):
        asked.append(cache)
        if len(asked) == 1:
            raise exception.BackendError('no invalidation channel')
        return None
    monkeypatch.setattr(memory.MemoryBackend, 'watch', watch)
    store = stored.make_store('openstack.kvs.Memory', near_cache_ttl=10)
    try:
        with pytest.raises(exception.BackendError):
            store.set('k', 1)
        store.set('k', 1)
        assert store.get('k') == 1
        assert len(asked) == 2
        assert store.stats()['near_cache']['hits'] == 1
    finally:
        store.close()


# --- the store's fast path -------------------------------------------------

def default_store(**args):
    """A store with the default key mangler, as most stores have."""
    store = stored.new_store()
    store.configure('openstack.kvs.Memory', **args)
    return store


def test_near_cache_hits_are_counted_there_not_as_operations():
    store = default_store(near_cache_ttl=60)
    try:
        store.set_multi({'k': 'v', 'j': 'w'})      # kept as written
        assert store.get('k') == 'v'
        assert store.get_multi(['k', 'j']) == ['v', 'w']
        assert store.get_multi(('j',)) == ['w']
        stats = store.stats()
        assert stats['near_cache']['hits'] == 4
        assert stats['operations']['get']['calls'] == 0
        assert stats['operations']['get_multi']['calls'] == 0
        with pytest.raises(exception.NotFound):
            store.get_multi(['k', 'missing'])      # to the server
        assert store.stats()['operations']['get_multi']['calls'] == 1
    finally:
        store.close()


def test_hot_keys_are_still_checked():
    class Key(str):
        pass
    store = default_store(near_cache_ttl=60)
    try:
        store.set('k', 'v')
        for read in (store.get, lambda key: store.get_multi([key])):
            with pytest.raises(TypeError):
                read(Key('k'))
        # An iterator is read once, also when its keys are hot.
        assert store.get_multi(key for key in ['k', 'k']) == ['v', 'v']
    finally:
        store.close()


def test_an_entry_serves_only_the_stored_key_it_was_read_as():
    # A caller's own key mangler need not be a pure function of the key:
    # its entries are looked up with the stored key of each read.
    version = ['1']
    store = default_store(near_cache_ttl=60,
                          key_mangler=lambda key: version[0] + key)
    try:
        store.set('k', 'v1')
        assert store.get('k') == 'v1'
        version[0] = '2'
        with pytest.raises(exception.NotFound):
            store.get('k')
        with pytest.raises(exception.NotFound):
            store.get_multi(['k'])
        store.set('k', 'v2')
        assert store.get('k') == store.get_multi(['k'])[0] == 'v2'
    finally:
        store.close()
