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

"""oslo_kvs.memoize on the memory backend."""

import concurrent.futures
import datetime
import enum
import logging
import os
import subprocess
import sys
import threading
import time
import uuid

from dogpile.cache import proxy
from oslo_cache import core as oslo_cache
from oslo_config import cfg
import pytest

import oslo_kvs
from oslo_kvs.backends import memory
from oslo_kvs import exception
from oslo_kvs import memoize
from oslo_kvs import opts
from oslo_kvs_tests import stored

FLAKY = 'oslo_kvs_tests.unit.test_memoize.FlakyMemory'
LOGGER = 'oslo_kvs.memoize'


class FlakyMemory(memory.MemoryBackend):
    """The memory backend, with switches that make it fail like a server."""

    name = 'openstack.kvs.FlakyMemory'
    #: The instance made last: the backend of the store a test configured.
    latest: 'FlakyMemory | None' = None

    def __init__(self, arguments):
        super().__init__(arguments)
        self.down = False
        self.locks_down = False
        self.calls = 0
        FlakyMemory.latest = self

    def _op(self, locking=False):
        self.calls += 1
        if self.down or (locking and self.locks_down):
            raise exception.BackendError(
                'backend openstack.kvs.FlakyMemory on server test:0 is down')

    def get_serialized(self, key):
        self._op()
        return super().get_serialized(key)

    def get_serialized_multi(self, keys):
        self._op()
        return super().get_serialized_multi(keys)

    def set_serialized(self, key, value, ttl=None):
        self._op()
        super().set_serialized(key, value, ttl)

    def set_serialized_multi(self, mapping, ttl=None):
        self._op()
        super().set_serialized_multi(mapping, ttl)

    def delete_multi(self, keys):
        self._op()
        super().delete_multi(keys)

    def delete_existing(self, key):
        self._op()
        return super().delete_existing(key)

    def add_serialized(self, key, value, ttl=None):
        self._op()
        return super().add_serialized(key, value, ttl)

    def acquire_lock(self, key, token, ttl):
        self._op(locking=True)
        return super().acquire_lock(key, token, ttl)

    def release_lock(self, key, token):
        self._op(locking=True)
        return super().release_lock(key, token)


class CountingProxy(proxy.ProxyBackend):
    """Counts reads, so a test can wait until every thread has missed."""

    def __init__(self):
        super().__init__()
        self.gets = 0
        self.cond = threading.Condition()

    def get_serialized(self, key):
        with self.cond:
            self.gets += 1
            self.cond.notify_all()
        return self.proxied.get_serialized(key)

    def wait_for_gets(self, count, timeout=10):
        with self.cond:
            return self.cond.wait_for(lambda: self.gets >= count, timeout)


class Env:
    """A private ConfigOpts, stores with unique names, and a call log."""

    def __init__(self):
        self.conf = cfg.ConfigOpts()
        opts.register_opts(self.conf)
        memoize.register_opts(self.conf, 'token')
        self.conf.set_override('backends', [FLAKY], group='kvs')
        self.stores = []
        self.calls = []

    def store(self, backing_store='openstack.kvs.Memory', **args):
        store = stored.make_store(backing_store, conf=self.conf, **args)
        self.stores.append(store)
        return store

    def decorator(self, store=None, group='token', **kwargs):
        if store is None:
            store = self.store()
        return memoize.get_memoization_decorator(self.conf, group,
                                                 store=store, **kwargs)

    def override(self, name, value, group='kvs'):
        self.conf.set_override(name, value, group=group)

    def doubler(self, decorator):
        @decorator
        def double(x):
            self.calls.append(x)
            return x * 2
        return double


@pytest.fixture
def env():
    return Env()


@pytest.fixture(autouse=True)
def _drained_warm_queue():
    yield
    memoize.warm_queue.clear()
    assert memoize.warm_queue.join(timeout=10)


def warnings_of(caplog):
    return [r for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.WARNING]


# --- hits, misses and keys -------------------------------------------------

def test_second_call_hits(env):
    double = env.doubler(env.decorator())
    assert double(21) == 42
    assert double(21) == 42
    assert env.calls == [21]
    assert double(1) == 2
    assert env.calls == [21, 1]


def test_values_keep_their_types(env):
    @env.decorator()
    def make(kind):
        env.calls.append(kind)
        return {'tuple': (1, 2), 'set': {1}, 'none': None,
                'when': datetime.datetime(2020, 1, 1)}[kind]

    for kind in ('tuple', 'set', 'none', 'when'):
        first = make(kind)
        assert make(kind) == first
        assert type(make(kind)) is type(first)
    assert env.calls == ['tuple', 'set', 'none', 'when']


def test_none_result_is_cached(env):
    @env.decorator()
    def nothing(x):
        env.calls.append(x)

    assert nothing(1) is None
    assert nothing(1) is None
    assert env.calls == [1]


def test_keyword_and_positional_calls_share_an_entry(env):
    @env.decorator()
    def add(a, b=2):
        env.calls.append((a, b))
        return a + b

    assert add(1, 2) == 3
    assert add(1, b=2) == 3
    assert add(a=1, b=2) == 3
    assert add(b=2, a=1) == 3
    assert add(1) == 3      # b defaults to 2: the same call
    assert env.calls == [(1, 2)]
    assert add(1, 3) == 4
    assert env.calls == [(1, 2), (1, 3)]


def test_var_args_and_kwargs_are_keyed(env):
    @env.decorator()
    def collect(*args, **kwargs):
        env.calls.append((args, kwargs))
        return [args, kwargs]

    collect(1, x=1, y=2)
    collect(1, y=2, x=1)    # keyword order does not matter
    collect(1, x=1)
    collect(1, y=1)
    collect(1, 1)
    assert len(env.calls) == 4


def test_arguments_of_different_types_do_not_collide(env):
    double = env.doubler(env.decorator())
    for arg in (1, True, 1.0, '1', b'1', (1,), [1]):
        double(arg)
    assert len(env.calls) == 7


def test_unordered_arguments_give_one_key(env):
    @env.decorator()
    def size(value):
        env.calls.append(value)
        return len(value)

    size({'a': 1, 'b': {2, 3}})
    size({'b': {3, 2}, 'a': 1})
    size(frozenset(['x', 'y']))
    size(frozenset(['y', 'x']))
    assert len(env.calls) == 2


def test_supported_rich_arguments(env):
    class Color(enum.Enum):
        RED = 1

    @env.decorator()
    def count(*args):
        env.calls.append(args)
        return len(args)

    ident = uuid.UUID(int=5)
    when = datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone.utc)
    for _ in range(2):
        assert count(Color.RED, ident, when, datetime.date(2021, 1, 1)) == 4
    assert len(env.calls) == 1
    count(Color.RED, uuid.UUID(int=6), when, datetime.date(2021, 1, 1))
    assert len(env.calls) == 2


def test_key_names_module_and_qualified_name(env):
    double = env.doubler(env.decorator())
    key = double.key(3)
    assert key.startswith('memoize:%s.' % __name__)
    assert 'Env.doubler.<locals>.double(x=3)' in key


def test_functions_with_the_same_arguments_do_not_collide(env):
    decorator = env.decorator()

    @decorator
    def one(x):
        return 'one'

    @decorator
    def two(x):
        return 'two'

    assert (one(1), two(1), one(1), two(1)) == ('one', 'two', 'one', 'two')


def test_unsupported_argument_runs_uncached_and_warns_once(env, caplog):
    double = env.doubler(env.decorator())

    class Thing:
        def __mul__(self, other):
            return 'thing'

    thing = Thing()
    assert double(thing) == 'thing'
    assert double(thing) == 'thing'
    assert len(env.calls) == 2
    assert len(warnings_of(caplog)) == 1
    assert 'Thing' in warnings_of(caplog)[0].getMessage()
    with pytest.raises(TypeError, match='Thing'):
        double.invalidate(thing)


def test_wrong_call_raises_the_functions_own_error(env):
    double = env.doubler(env.decorator())
    with pytest.raises(TypeError, match='missing'):
        double()
    with pytest.raises(TypeError):
        double.get()


def test_exceptions_are_not_cached(env):
    results = [ValueError('first'), 'second']

    @env.decorator()
    def flaky():
        result = results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    with pytest.raises(ValueError, match='first'):
        flaky()
    assert flaky() == 'second'
    assert flaky() == 'second'


def test_cached_result_is_isolated_from_callers(env):
    @env.decorator()
    def listing():
        return [1, 2]

    listing().append(3)
    got = listing()
    got.append(4)
    assert listing() == [1, 2]


def test_wrapper_looks_like_the_function(env):
    double = env.doubler(env.decorator())
    assert double.__name__ == 'double'
    assert double.__wrapped__.__name__ == 'double'
    assert 'double' in repr(double)


def test_coroutine_functions_are_refused(env):
    async def coro():
        return 1

    with pytest.raises(TypeError, match='coroutine'):
        env.decorator()(coro)


# --- methods ---------------------------------------------------------------

def test_methods_share_results_across_instances_and_not_classes(env):
    decorator = env.decorator()
    calls = env.calls

    class Users:
        def __init__(self, name):
            self.name = name

        @decorator
        def get(self, x):
            calls.append(('users', self.name, x))
            return 'user-%s' % x

    class Groups:
        @decorator
        def get(self, x):
            calls.append(('groups', x))
            return 'group-%s' % x

    first, second = Users('a'), Users('b')
    assert first.get(1) == 'user-1'
    assert second.get(1) == 'user-1'    # self is not part of the key
    assert Groups().get(1) == 'group-1'  # same method name, other class
    assert Users.get(first, 1) == 'user-1'
    assert calls == [('users', 'a', 1), ('groups', 1)]
    assert 'self' not in first.get.key(1)


def test_method_helpers_with_and_without_the_instance(env):
    decorator = env.decorator()

    class Catalog:
        def __init__(self):
            self.version = 0

        @decorator
        def region(self, name):
            self.version += 1
            return '%s-v%d' % (name, self.version)

    catalog = Catalog()
    assert catalog.region('r') == 'r-v1'
    assert catalog.region.get('r') == 'r-v1'
    catalog.region.invalidate('r')
    assert catalog.region('r') == 'r-v2'
    catalog.region.invalidate(catalog, 'r')     # Keystone's form
    with pytest.raises(exception.NotFound):
        catalog.region.get('r')
    assert catalog.region.refresh('r') == 'r-v3'
    catalog.region.set('pinned', catalog, 'r')
    assert catalog.region('r') == 'pinned'
    assert catalog.region.key('r') == catalog.region.key(catalog, 'r')


def test_classmethods_and_staticmethods(env):
    decorator = env.decorator()
    calls = env.calls

    class Maker:
        @classmethod
        @decorator
        def build(cls, x):
            calls.append(('build', x))
            return x + 1

        @staticmethod
        @decorator
        def plain(x):
            calls.append(('plain', x))
            return x - 1

    assert Maker.build(1) == Maker.build(1) == Maker().build(1) == 2
    assert Maker.plain(1) == Maker().plain(1) == 0
    assert calls == [('build', 1), ('plain', 1)]


# --- expiry ----------------------------------------------------------------

def test_cache_time_expires_results(env):
    env.override('cache_time', 1, group='token')
    double = env.doubler(env.decorator())
    double(1)
    double(1)
    assert env.calls == [1]
    time.sleep(1.1)
    with pytest.raises(exception.NotFound):
        double.get(1)
    double(1)
    assert env.calls == [1, 1]


def test_global_expiration_time_applies_without_cache_time(env):
    env.override('memoize_expiration_time', 1)
    double = env.doubler(env.decorator())
    double(1)
    time.sleep(1.1)
    double(1)
    assert env.calls == [1, 1]


def test_expiration_group_gives_the_cache_time(env):
    memoize.register_opts(env.conf, 'other')
    env.override('cache_time', 3600, group='token')
    env.override('cache_time', 1, group='other')
    double = env.doubler(env.decorator(expiration_group='other'))
    double(1)
    time.sleep(1.1)
    double(1)
    assert env.calls == [1, 1]


def test_expired_result_is_served_while_another_thread_recomputes(env):
    env.override('cache_time', 1, group='token')
    started, release = threading.Event(), threading.Event()
    versions = []

    @env.decorator()
    def version():
        versions.append(len(versions) + 1)
        if len(versions) > 1:
            started.set()
            assert release.wait(10)
        return versions[-1]

    assert version() == 1
    time.sleep(1.1)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        recompute = pool.submit(version)
        assert started.wait(10)
        # Someone is recomputing: the stale value comes back at once.
        assert version() == 1
        release.set()
        assert recompute.result(10) == 2
    assert version() == 2


# --- toggles -----------------------------------------------------------------

@pytest.mark.parametrize('name,group', [('memoize_enabled', 'kvs'),
                                        ('caching', 'token')])
def test_toggles_turn_memoization_off_and_on(env, name, group):
    double = env.doubler(env.decorator())
    env.override(name, False, group=group)
    double(1)
    double(1)
    assert env.calls == [1, 1]
    with pytest.raises(exception.NotFound):
        double.get(1)       # nothing was stored
    assert double.warm(1) is False
    assert memoize.should_cache_fn('token', env.conf)(None) is False
    env.override(name, True, group=group)
    assert memoize.should_cache_fn('token', env.conf)(None) is True
    double(1)
    double(1)
    assert env.calls == [1, 1, 1]


def test_should_cache_fn_registers_and_reads_the_section():
    conf = cfg.ConfigOpts()
    should = memoize.should_cache_fn('assignment', conf)
    assert should('value') is True
    conf.set_override('caching', False, group='assignment')
    assert should('value') is False


# --- invalidate, refresh, get, set -----------------------------------------

def test_invalidate_forgets_one_call(env):
    double = env.doubler(env.decorator())
    double(1)
    double(2)
    double.invalidate(1)
    double.invalidate(3)    # never cached: nothing happens
    double(1)
    double(2)
    assert env.calls == [1, 2, 1]


def test_refresh_recomputes_and_stores(env):
    counter = []

    @env.decorator()
    def count(x):
        counter.append(x)
        return len(counter)

    assert count('a') == 1
    assert count.refresh('a') == 2
    assert count('a') == 2
    assert count.get('a') == 2


def test_get_and_set(env):
    double = env.doubler(env.decorator())
    with pytest.raises(exception.NotFound):
        double.get(5)
    double.set(99, 5)
    assert double.get(5) == 99
    assert double(5) == 99
    assert double.get(x=5) == 99
    assert env.calls == []
    with pytest.raises(TypeError):
        double.set(object(), 5)     # the store cannot hold it


# --- stampede ----------------------------------------------------------------

def _stampede(env, make_functions, threads=8, **store_args):
    counting = CountingProxy()
    decorator = env.decorator(env.store(proxy_list=[counting],
                                        **store_args))
    calls = []

    def slow(x):
        calls.append(x)
        # Every caller has looked for the value and missed (the winner
        # looked twice) before the winner computes it.
        assert counting.wait_for_gets(threads + 1)
        # Without a working lock the others would now run too; give them
        # the chance to show it (correct code passes however long this
        # takes).
        with counting.cond:
            counting.cond.wait_for(lambda: len(calls) > 1, timeout=0.3)
        return x * 2

    functions = make_functions(decorator, slow, threads)
    barrier = threading.Barrier(threads)

    def caller(function):
        barrier.wait()
        return function(21)

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(caller, functions))
    assert results == [42] * threads
    assert calls == [21]


def test_stampede_in_one_process_runs_the_function_once(env):
    def one_function(decorator, fn, threads):
        memoized = decorator(fn)
        return [memoized] * threads
    _stampede(env, one_function)


def test_store_locks_off_leave_stampedes_unprotected(env):
    # locking=False makes the store's locks no-ops and memoization has no
    # lock of its own: a second caller computes while the first still does
    # (with a working lock it would wait, and the first would time out).
    second_started = threading.Event()

    @env.decorator(env.store(locking=False))
    def slow(x):
        env.calls.append(x)
        if len(env.calls) == 1:
            assert second_started.wait(30)
        second_started.set()
        return x * 2

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        assert list(pool.map(slow, [21, 21])) == [42, 42]
    assert env.calls == [21, 21]
    assert slow(21) == 42       # the result is memoized all the same
    assert env.calls == [21, 21]


def test_stampede_is_stopped_by_the_store_lock_too(env):
    # Separate decorated objects, as in separate processes: the store's
    # lock keeps them apart too.
    def separate_functions(decorator, fn, threads):
        return [decorator(fn) for _ in range(threads)]
    _stampede(env, separate_functions)


@pytest.mark.parametrize('shared', [True, False],
                         ids=['same-function', 'separate-functions'])
def test_wait_for_another_computation_is_bounded(env, shared):
    # lock_timeout 1: the docs promise a caller waits at most 2 s for
    # another computation of the same call, then computes itself.
    decorator = env.decorator(env.store(lock_timeout=1))
    started, release = threading.Event(), threading.Event()

    def slow(x):
        env.calls.append(x)
        if len(env.calls) == 1:
            started.set()
            assert release.wait(120)
        return x * 2

    first_fn = decorator(slow)
    # One decorated object, or two, as two processes have: the bound holds
    # either way.
    second_fn = first_fn if shared else decorator(slow)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(first_fn, 21)
        try:
            assert started.wait(10)
            second = pool.submit(second_fn, 21)
            # Far beyond the 2 s bound, far below the first call's wait.
            assert second.result(timeout=60) == 42
            assert not first.done()     # still computing
        finally:
            release.set()
        assert first.result(timeout=10) == 42
    assert env.calls == [21, 21]


# --- best effort -------------------------------------------------------------

def test_backend_down_function_still_answers_and_logs_once(env, caplog):
    store = env.store('openstack.kvs.FlakyMemory')
    FlakyMemory.latest.down = True
    env.override('memoize_dead_retry', 0)
    double = env.doubler(env.decorator(store))
    assert [double(3) for _ in range(5)] == [6] * 5
    assert env.calls == [3] * 5
    warnings = warnings_of(caplog)
    assert len(warnings) == 1
    assert 'is down' in warnings[0].getMessage()
    # The explicit helpers do not raise either.
    double.invalidate(3)
    double.set(1, 3)
    with pytest.raises(exception.NotFound):
        double.get(3)
    assert double.refresh(3) == 6
    assert len(warnings_of(caplog)) == 1


def test_backend_recovers(env, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    store = env.store('openstack.kvs.FlakyMemory')
    backend = FlakyMemory.latest
    env.override('memoize_dead_retry', 0)
    double = env.doubler(env.decorator(store))
    double(3)
    backend.down = True
    double(3)               # the cached value is unreachable: recomputed
    backend.down = False
    double(3)               # served from the store again
    assert env.calls == [3, 3]
    double(4)               # a write: the outage is over
    double(4)
    assert env.calls == [3, 3, 4]
    assert any('answers again' in r.getMessage() for r in caplog.records)


def test_failed_store_is_skipped_for_dead_retry(env):
    store = env.store('openstack.kvs.FlakyMemory')
    backend = FlakyMemory.latest
    backend.down = True
    env.override('memoize_dead_retry', 3600)
    double = env.doubler(env.decorator(store))
    double(1)
    tried = backend.calls
    assert tried >= 1
    double(2)
    double(3)
    assert backend.calls == tried   # not even tried meanwhile
    assert env.calls == [1, 2, 3]


def test_lock_failure_still_answers(env, caplog):
    store = env.store('openstack.kvs.FlakyMemory')
    FlakyMemory.latest.locks_down = True
    env.override('memoize_dead_retry', 0)
    double = env.doubler(env.decorator(store))
    assert double(4) == double(4) == 8
    assert env.calls == [4, 4]
    assert len(warnings_of(caplog)) == 1


def test_unconfigured_store_runs_uncached_until_configured(env, caplog):
    name = 'memoize-later-%s' % uuid.uuid4()
    double = env.doubler(env.decorator(name))
    double(1)
    double(1)
    assert env.calls == [1, 1]
    assert len(warnings_of(caplog)) == 1
    store = oslo_kvs.get_key_value_store(name, conf=env.conf)
    store.configure('openstack.kvs.Memory')
    double(1)
    double(1)
    assert env.calls == [1, 1, 1]


def test_default_store_is_looked_up_by_name(env):
    decorator = memoize.get_memoization_decorator(env.conf, 'token')
    double = env.doubler(decorator)
    store = oslo_kvs.get_key_value_store(memoize.DEFAULT_STORE,
                                         conf=env.conf)
    if not store.is_configured:
        store.configure('openstack.kvs.Memory')
    double(uuid.uuid4().hex)
    assert store.get(double.key(env.calls[0]))[1] == env.calls[0] * 2


def test_unstorable_result_is_returned_and_warned_once(env, caplog):
    @env.decorator()
    def opaque(x):
        env.calls.append(x)
        return object()

    assert opaque(1) is not opaque(1)
    assert env.calls == [1, 1]
    warnings = warnings_of(caplog)
    assert len(warnings) == 1
    assert 'cannot be memoized' in warnings[0].getMessage()


def test_foreign_entry_under_the_key_is_a_miss(env):
    store = env.store()
    double = env.doubler(env.decorator(store))
    store.set(double.key(1), 'not a memoized entry')
    assert double(1) == 2
    assert env.calls == [1]


# --- warm-up queue ---------------------------------------------------------

def test_warm_makes_the_next_call_hit(env):
    double = env.doubler(env.decorator())
    assert double.warm(7) is True
    assert memoize.warm_queue.join(timeout=10)
    assert env.calls == [7]
    assert double(7) == 14
    assert env.calls == [7]


def warm_blocker(env):
    """A memoized identity function whose call on 0 waits for ``release``.

    Returns it, the event set once that call started, and ``release``.
    """
    started, release = threading.Event(), threading.Event()

    @env.decorator()
    def slow(x):
        env.calls.append(x)
        if x == 0:
            started.set()
            assert release.wait(10)
        return x
    return slow, started, release


def test_warm_queue_is_bounded_visible_and_deduplicated(env, monkeypatch):
    monkeypatch.setattr(memoize.warm_queue, 'maxsize', 2)
    slow, started, release = warm_blocker(env)
    assert slow.warm(0)
    assert started.wait(10)         # the worker is busy with 0
    assert slow.warm(1) and slow.warm(2)
    assert memoize.warm_queue.size == 2
    assert memoize.warm_queue.unfinished == 3
    assert slow.warm(1) is True     # already waiting: not queued twice
    assert slow.warm(3) is False    # full
    assert memoize.warm_queue.size == 2
    release.set()
    assert memoize.warm_queue.join(timeout=10)
    assert env.calls == [0, 1, 2]
    assert slow(1) == 1 and slow(2) == 2
    assert env.calls == [0, 1, 2]


def test_warm_queue_clear_drops_waiting_calls(env):
    slow, started, release = warm_blocker(env)
    slow.warm(0)
    assert started.wait(10)
    slow.warm(1)
    slow.warm(2)
    assert memoize.warm_queue.clear() == 2
    assert memoize.warm_queue.size == 0
    release.set()
    assert memoize.warm_queue.join(timeout=10)
    assert env.calls == [0]


def _exit_code(pid, timeout):
    """The child's exit code; killed (-9) if it is still running then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_forked_child_has_its_own_locks_and_queue(env):
    # At the fork the parent's warm-up worker is computing slow(0), holding
    # the memory store's lock for it (a lock that never expires), and
    # slow(1) waits in the queue. The child must wait for neither.
    decorator = env.decorator(env.store(lock_timeout=0))
    parent = os.getpid()
    started, release = threading.Event(), threading.Event()

    @decorator
    def slow(x):
        if x == 0 and os.getpid() == parent:
            started.set()
            assert release.wait(60)
        return x * 2

    try:
        assert slow.warm(0)
        assert started.wait(10)
        assert slow.warm(1)
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                queue = memoize.warm_queue
                empty = queue.size == 0 and queue.unfinished == 0
                # Computed and stored here, not given up on after waiting
                # for the parent's computation.
                computed = slow(0) == 0 and slow.get(0) == 0
                warmed = (slow.warm(2) and queue.join(timeout=10) and
                          slow.get(2) == 4)
                status = 0 if (empty, computed, warmed) == (
                    True, True, True) else 2
            finally:
                os._exit(status)
        assert _exit_code(pid, timeout=60) == 0
    finally:
        release.set()
    assert memoize.warm_queue.join(timeout=10)
    assert slow.get(1) == 2


def test_warm_failures_are_logged_not_raised(env, caplog):
    @env.decorator()
    def broken(x):
        raise RuntimeError('boom %s' % x)

    assert broken.warm(1)
    assert memoize.warm_queue.join(timeout=10)
    assert any('Warming' in r.getMessage() and r.exc_info
               for r in warnings_of(caplog))


def test_warm_with_unsupported_argument_is_refused(env):
    double = env.doubler(env.decorator())
    assert double.warm(object()) is False


# --- options -----------------------------------------------------------------

def test_options_coexist_with_oslo_cache(tmp_path):
    conf_file = tmp_path / 'service.conf'
    conf_file.write_text(
        '[cache]\nenabled = true\nbackend = dogpile.cache.memory\n'
        'expiration_time = 30\ncaching = false\ncache_time = 7\n'
        '[token]\ncache_time = 9\n'
        '[kvs]\nmemoize_expiration_time = 42\n')
    for oslo_cache_first in (True, False):
        conf = cfg.ConfigOpts()
        if oslo_cache_first:
            oslo_cache.configure(conf)
        memoize.register_opts(conf, 'cache')
        memoize.register_opts(conf, 'token')
        if not oslo_cache_first:
            oslo_cache.configure(conf)
        conf(args=[], default_config_files=[str(conf_file)])
        # oslo.cache's options are untouched and its region works.
        assert conf.cache.enabled is True
        assert conf.cache.expiration_time == 30
        region = oslo_cache.create_region()
        oslo_cache.configure_cache_region(conf, region)
        region.set('k', 'v')
        assert region.get('k') == 'v'
        # Ours read their own values.
        assert conf.cache.caching is False
        assert conf.cache.cache_time == 7
        assert conf.token.caching is True
        assert conf.token.cache_time == 9
        assert conf.kvs.memoize_expiration_time == 42
        conf.reset()


def test_applications_own_section_options_win(env):
    # Keystone registered caching/cache_time itself, with its own help.
    env.conf.register_opt(cfg.BoolOpt('caching', default=False,
                                      help='Keystone help'), group='catalog')
    env.conf.register_opt(cfg.IntOpt('cache_time', default=1,
                                     help='Keystone help'), group='catalog')
    double = env.doubler(env.decorator(group='catalog'))
    double(1)
    double(1)
    assert env.calls == [1, 1]      # Keystone's default: caching off
    env.override('caching', True, group='catalog')
    double(1)
    double(1)
    assert env.calls == [1, 1, 1]
    time.sleep(1.1)                 # Keystone's cache_time applies
    double(1)
    assert env.calls == [1, 1, 1, 1]


def test_list_opts_and_section_opts():
    names = {opt.name for group, group_opts in opts.list_opts()
             for opt in group_opts if group == 'kvs'}
    assert {'memoize_enabled', 'memoize_expiration_time',
            'memoize_dead_retry'} <= names
    assert [opt.name for opt in opts.memoize_section_opts()] == [
        'caching', 'cache_time']


def test_keys_are_the_same_in_every_process():
    script = (
        'from oslo_config import cfg\n'
        'from oslo_kvs import memoize\n'
        'memo = memoize.get_memoization_decorator(cfg.ConfigOpts(), "t")\n'
        '@memo\n'
        'def f(a, b=None, **kw):\n'
        '    pass\n'
        'print(f.key({"x", "y", "z", "w"}, {"k": frozenset("abcdef"),'
        ' 3: (1.5, b"b")}, q=[None, True]))\n')
    keys = set()
    for seed in ('1', '2', '3'):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        result = subprocess.run([sys.executable, '-c', script], env=env,
                                capture_output=True, text=True, timeout=60,
                                check=True)
        keys.add(result.stdout)
    assert len(keys) == 1
    assert "w','x','y','z'" in keys.pop()
