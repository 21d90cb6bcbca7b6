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


def fill(cache, stored_key, value, begun=None):
    cache.fill(begun or cache.begin(), [(stored_key, value)])


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
    cache.drop(['k'])             # an earlier write
    begun = cache.begin()         # a read of k and j starts
    cache.drop(['j', 'other'])    # writes end meanwhile
    cache.fill(begun, [('k', 'k0'), ('j', 'old')])
    assert cache.lookup('j') is near.MISS
    assert cache.lookup('k') == 'k0'     # not dropped since the read began
    fill(cache, 'j', 'new')
    assert cache.lookup('j') == 'new'


def test_drops_kept_are_bounded(monkeypatch):
    monkeypatch.setattr(near, 'DROPS_KEPT', 10)
    cache = make_cache()
    begun = cache.begin()
    cache.drop(['d%d' % i for i in range(11)])    # record emptied
    assert len(cache._dropped) == 0
    fill(cache, 'k', 'old', begun)       # so every older read is stale
    assert cache.lookup('k') is near.MISS
    fill(cache, 'k', 'new')
    assert cache.lookup('k') == 'new'


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
            cache.drop(['k'])
            if cache.lookup('k') is not near.MISS:
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
    cache.fill(wrote, [('k', 'new')], written=True, ttl=None)
    fill(cache, 'k', 'old', read)     # the read ends: nothing kept
    assert cache.lookup('k') == 'new'
    wrote = cache.begin()
    cache.drop(['k'])             # another write of k ends meanwhile
    cache.fill(wrote, [('k', 'newer'), ('j', 'j1')], written=True,
               ttl=None)
    assert cache.lookup('k') is near.MISS     # dropped, not kept
    assert cache.lookup('j') == 'j1'


def test_a_written_entry_lives_no_longer_than_its_value(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(near, '_monotonic', lambda: now[0])
    cache = make_cache(ttl=60)
    cache.fill(cache.begin(), [('k', 'v')], written=True, ttl=2)
    now[0] += 1.9
    assert cache.lookup('k') == 'v'
    now[0] += 0.1
    assert cache.lookup('k') is near.MISS


def test_suspend_forgets_and_refuses_until_resume():
    cache = make_cache()
    fill(cache, 'k', 1)
    cache.suspend()
    assert cache.lookup('k') is near.MISS
    fill(cache, 'k', 2)           # suspended: nothing kept
    assert cache.lookup('k') is near.MISS
    begun = cache.begin()         # begun before the resume
    cache.resume()
    fill(cache, 'k', 3, begun)
    assert cache.lookup('k') is near.MISS
    fill(cache, 'k', 4)
    assert cache.lookup('k') == 4


def test_entries_age_from_the_start_of_their_read(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(near, '_monotonic', lambda: now[0])
    cache = make_cache(ttl=5)
    begun = cache.begin()
    now[0] += 3                   # the read took 3 s
    fill(cache, 'k', 'v', begun)
    now[0] += 1.9
    assert cache.lookup('k') == 'v'
    now[0] += 0.1                 # 5 s after the read began
    assert cache.lookup('k') is near.MISS


def test_size_bound_and_second_chance_eviction():
    cache = make_cache(size=3)
    for key in 'abc':
        fill(cache, key, key)
    assert cache.lookup('a') == 'a'     # marked: survives one eviction
    fill(cache, 'd', 'd')
    assert [cache.lookup(key) for key in 'abcd'] == [
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
    first = cache.lookup('k')
    first['a'].append(3)
    first['b'][0].add(4)
    got = cache.lookup('k')
    assert got == {'a': [1], 'b': ({2}, frozenset([3])), 'when': when}
    assert type(got['b']) is tuple
    text = 'x' * 100
    fill(cache, 's', text)
    assert cache.lookup('s') is text


def test_counts_are_exact_under_threads():
    cache = make_cache()
    fill(cache, 'k', 1)

    def work(n):
        for _ in range(1000):
            cache.lookup('k')
            cache.lookup('missing')
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
    assert watched[0].lookup('k') is near.MISS


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
