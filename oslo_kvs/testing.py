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

"""The store contract suite, public, for oslo_kvs and out-of-tree backends.

:class:`StoreContract` holds the rules every backend must follow, checked
through the public store API (``get``/``set``/``add``/``delete``, their
``*_multi`` forms, ``update``/``incr``/``touch``, locks, expiry, value
types). oslo_kvs runs it against
each of its own backends; the author of a backend listed in
``[kvs] backends`` runs it against that backend with a few lines, the way
dogpile.cache ships ``dogpile.testing.fixtures`` for its backends.

A test module subclasses :class:`StoreContract` (the class name must start
with ``Test`` for pytest to collect it) and provides an autouse fixture
setting :attr:`~StoreContract.backing_store` and
:attr:`~StoreContract.backend_args`. The subclass supplies the server::

    import pytest
    from oslo_kvs import testing

    class TestMyBackendContract(testing.StoreContract):
        backend_paths = ('mypackage.kvs.MyBackend',)

        @pytest.fixture(autouse=True)
        def _backend(self, my_server):     # your fixture starting a server
            self.backing_store = 'openstack.kvs.MyBackend'
            self.backend_args = {'url': my_server.url}

Every store gets a unique name, so tests sharing one server never see each
other's keys, and every store a test opened is closed after it.

Requirements: the suite is a set of pytest tests, so importing this module
needs ``pytest``, which oslo_kvs itself does not need (``pip install
oslo.kvs[testing]``). ``hypothesis`` is optional: without it the
model-based test is skipped, every other test runs.
"""

from concurrent import futures
import contextlib
import datetime
import functools
import math
import operator
import threading
import time
import typing as ty
import uuid

from oslo_config import cfg

try:
    import pytest
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('oslo_kvs.testing is a pytest suite; install pytest '
                      '(pip install "oslo.kvs[testing]")') from exc
try:
    from hypothesis import settings
    from hypothesis import stateful
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - depends on the environment
    st = None  # type: ignore[assignment]

import oslo_kvs
from oslo_kvs import backends
from oslo_kvs import exception

ROUND_TRIP_VALUES: list[ty.Any] = [
    None, True, False, 0, -1, 2 ** 63 - 1, 2 ** 64, -(2 ** 100), 0.0, 1.5,
    -2.25e300, '', 'text', 'üñí©ødé ☃ 𝄞', b'', b'\x00\xffbytes', [], [1, 'a'],
    (), (1, (2, 3)), {}, {'a': 1, 'b': [None, {'c': ()}]},
    {1: 'int key', (1, 2): 'tuple key', frozenset([3]): 'frozenset key'},
    set(), {1, 'two', (3,)}, frozenset(['x']),
    datetime.datetime(2020, 2, 29, 12, 30, 1, 123456),
    datetime.datetime(2020, 2, 29, 12, 30, 1, tzinfo=datetime.timezone.utc),
    datetime.datetime(2021, 6, 1, tzinfo=datetime.timezone(
        datetime.timedelta(hours=-5, minutes=-30))),
    [{'nested': ({1, 2}, frozenset(), datetime.datetime(1999, 1, 1))}],
]

# Stable test ids: a set's repr changes with hash randomization, and
# pytest-xdist workers must collect identical ids.
ROUND_TRIP_IDS = ['%d-%s' % (i, type(v).__name__)
                  for i, v in enumerate(ROUND_TRIP_VALUES)]

SPECIAL_KEYS = ['', ' ', 'with space', 'new\nline', 'tab\tkey', 'ключ',
                '鍵', 'emoji 🗝', 'x' * 10000, '\x00nul', 'colon:key',
                'l:lock-like']


def value_strategy() -> 'st.SearchStrategy[ty.Any]':
    """A hypothesis strategy for nested values every backend must keep."""
    scalars = (st.none() | st.booleans() | st.integers() |
               st.floats(allow_nan=False) | st.text(max_size=20) |
               st.binary(max_size=20))
    return st.recursive(
        scalars,
        lambda inner: (st.lists(inner, max_size=4) |
                       st.tuples(inner, inner) |
                       st.dictionaries(st.text(max_size=5), inner,
                                       max_size=4)),
        max_leaves=10)


def _not_found_if(missing: ty.Any) -> ty.ContextManager[ty.Any]:
    """``pytest.raises(exception.NotFound)`` if ``missing``, else a no-op."""
    return (pytest.raises(exception.NotFound) if missing
            else contextlib.nullcontext())


class StoreContract:
    """Rules every backend must follow. Subclasses set the backend.

    Set :attr:`backing_store` and :attr:`backend_args` in an autouse
    fixture (or as class attributes when no server is needed); override the
    other attributes where the backend differs.
    """

    #: The name given to ``configure()``, e.g. ``'openstack.kvs.Redis'``.
    backing_store: str
    #: Backend arguments for ``configure()``, e.g. the server's address.
    backend_args: dict[str, ty.Any]
    #: Dotted ``module.Class`` paths registered as ``[kvs] backends`` would
    #: (each becomes ``openstack.kvs.<Class>``) before a store is configured.
    backend_paths: tuple[str, ...] = ()
    #: False for backends that take no ``expire_time`` (foreign dogpile).
    supports_expiry = True
    #: The backend's historical name for ``expire_time``, if any.
    expire_time_alias: str | None = None
    #: Longest time a value set with ``expire_time=1`` may still be read.
    expiry_wait = 2.5
    #: Hypothesis examples for the state-machine test.
    hypothesis_examples = 60
    #: Value protection arguments added to every store (see test_protection).
    protection_args: dict[str, ty.Any] = {}
    #: False for backends without compare-and-set and touch (foreign
    #: dogpile backends): update, incr and touch must then raise
    #: NotImplementedError naming the backend method.
    supports_update = True

    @pytest.fixture(autouse=True)
    def _close_stores(self):
        """Close every backend a test opened, so no connection leaks."""
        self._opened: list[oslo_kvs.KeyValueStore] = []
        yield
        for store in self._opened:
            store.close()

    def make_store(self, **extra: ty.Any) -> oslo_kvs.KeyValueStore:
        """A freshly configured store with a unique name.

        ``extra`` arguments are added to :attr:`backend_args` and
        :attr:`protection_args`; the store is closed after the test.
        """
        backends.register_backends(self.backend_paths)
        store = oslo_kvs.get_key_value_store('contract-%s' % uuid.uuid4())
        self._configure(store, **extra)
        self._opened.append(store)
        return store

    def _configure(self, store: oslo_kvs.KeyValueStore,
                   **extra: ty.Any) -> None:
        store.configure(self.backing_store, **{
            **self.backend_args, **self.protection_args, **extra})

    @pytest.fixture
    def store(self) -> oslo_kvs.KeyValueStore:
        return self.make_store()

    @pytest.fixture
    def expiry(self) -> None:
        """Skips a test of ``expire_time`` on a backend without it."""
        if not self.supports_expiry:
            pytest.skip('%s has no expire_time' % self.backing_store)

    @staticmethod
    def assert_raises(error: type[Exception],
                      *calls: ty.Callable[[], ty.Any]) -> None:
        """Each of ``calls`` raises ``error``."""
        for call in calls:
            with pytest.raises(error):
                call()

    def assert_missing(self, store: oslo_kvs.KeyValueStore,
                       *keys: str) -> None:
        """Each of ``keys`` is missing from ``store``."""
        self.assert_raises(exception.NotFound,
                           *[functools.partial(store.get, k) for k in keys])

    # --- missing keys ----------------------------------------------------

    def test_missing_keys(self, store):
        with pytest.raises(exception.NotFound) as info:
            store.get('missing')
        assert info.value.target == 'missing'
        self.assert_raises(exception.NotFound, lambda: store.delete('missing'))
        store.set('k', 'v')
        store.delete('k')
        self.assert_missing(store, 'k')
        # get_multi names every missing key; delete_multi ignores them.
        store.set('present', 1)
        with pytest.raises(exception.NotFound) as info:
            store.get_multi(['gone-1', 'present', 'gone-2'])
        assert info.value.target == ['gone-1', 'gone-2']
        store.set_multi({'a': 1, 'b': 2})
        store.delete_multi(['a', 'never-there', 'b'])
        self.assert_missing(store, 'a', 'b')

    # --- values ----------------------------------------------------------

    @pytest.mark.parametrize('value', ROUND_TRIP_VALUES, ids=ROUND_TRIP_IDS)
    def test_round_trip_keeps_value_and_type(self, store, value):
        store.set('k', value)
        got = store.get('k')
        assert got == value
        assert type(got) is type(value)
        if isinstance(value, (list, tuple)):
            assert [type(v) for v in got] == [type(v) for v in value]

    def test_none_and_empty_string_are_values_and_overwritten(self, store):
        store.set('none', None)
        store.set('empty', '')
        assert store.get('none') is None
        assert store.get('empty') == ''
        assert store.get_multi(['none', 'empty']) == [None, '']
        store.set('empty', 'two')
        assert store.get('empty') == 'two'

    def test_stored_value_isolated_from_caller(self, store):
        value = {'list': [1, 2]}
        store.set('k', value)
        value['list'].append(3)
        got = store.get('k')
        assert got == {'list': [1, 2]}
        got['list'].append(4)
        assert store.get('k') == {'list': [1, 2]}

    def test_unsupported_value_type_keeps_old_value(self, store):
        store.set('k', 'old')
        self.assert_raises(
            TypeError, lambda: store.set('k', object()),
            lambda: store.set_multi({'k': 'new', 'other': object()}))
        assert store.get('k') == 'old'

    # --- keys ------------------------------------------------------------

    @pytest.mark.parametrize('key', [b'bytes', 1, None, ('t',)], ids=repr)
    def test_non_str_key_raises_type_error(self, store, key):
        self.assert_raises(
            TypeError, lambda: store.get(key), lambda: store.set(key, 1),
            lambda: store.delete(key), lambda: store.add(key, 1),
            lambda: store.get_multi([key]), lambda: store.set_multi({key: 1}),
            lambda: store.delete_multi([key]), lambda: store.get_lock(key))

    def test_special_keys_are_distinct_and_stored(self, store):
        store.set_multi({key: index for index, key in enumerate(SPECIAL_KEYS)})
        assert store.get_multi(SPECIAL_KEYS) == list(range(len(SPECIAL_KEYS)))
        for index, key in enumerate(SPECIAL_KEYS):
            assert store.get(key) == index
        store.delete(SPECIAL_KEYS[-1])
        assert store.add(SPECIAL_KEYS[-1], 'again')

    def test_stores_with_different_names_do_not_share_keys(self):
        first, second = self.make_store(), self.make_store()
        first.set('shared', 'first')
        self.assert_missing(second, 'shared')
        second.set('shared', 'second')
        assert first.get('shared') == 'first'

    # --- close and servers ----------------------------------------------

    def test_servers_and_close(self, store):
        # servers() gives labels without secrets.
        labels = store.servers()
        assert all(isinstance(label, str) and label for label in labels)
        secrets = [str(value) for name, value in self.backend_args.items()
                   if 'password' in name and value]
        for label in labels:
            assert '@' not in label
            assert not any(secret in label for secret in secrets)
        # close() unconfigures, idempotently; configure() works again.
        store.set('k', 'before')
        store.close()
        store.close()
        assert not store.is_configured
        self.assert_raises(exception.NotConfigured, lambda: store.get('k'),
                           lambda: store.set('k', 1), store.servers)
        self._configure(store)
        store.set('k', 'after')
        assert store.get('k') == 'after'

    # --- multi operations ------------------------------------------------

    def test_multi_ops_keep_order(self, store):
        data = {'key-%03d' % i: i for i in range(50)}
        store.set_multi(data)
        keys = sorted(data, reverse=True)
        assert store.get_multi(keys) == [data[k] for k in keys]
        assert store.get_multi(['key-001', 'key-001']) == [1, 1]
        # Empty ones are no-ops.
        assert store.get_multi([]) == []
        store.set_multi({})
        store.delete_multi([])

    # --- add -------------------------------------------------------------

    def test_add(self, store):
        assert store.add('k', 'first') is True
        assert store.add('k', 'second') is False
        assert store.get('k') == 'first'
        store.delete('k')
        assert store.add('k', 'third') is True
        assert store.get('k') == 'third'

    def test_add_is_atomic_across_threads(self, store):
        barrier = threading.Barrier(8)

        def contend(n):
            barrier.wait()
            return store.add('contended', n)

        # Each call blocks on the barrier, so the pool starts 8 threads.
        with futures.ThreadPoolExecutor(8) as pool:
            won = list(pool.map(contend, range(8)))
        assert won.count(True) == 1
        assert store.get('contended') == won.index(True)

    # --- update, incr, touch --------------------------------------------

    @pytest.fixture
    def atomic(self) -> None:
        """Skips a test of update/incr/touch on a backend without them."""
        if not self.supports_update:
            pytest.skip('%s has no compare-and-set' % self.backing_store)

    def test_atomic_calls_work_or_name_what_is_missing(self, store):
        store.set('k', -1)
        calls = ((lambda: store.update('k', abs), 'get_versioned', 1),
                 (lambda: store.incr('k'), 'get_versioned', 2),
                 (lambda: store.touch('k'), 'touch_serialized', None))
        for call, method, result in calls:
            if self.supports_update:
                assert call() == result
            else:
                with pytest.raises(NotImplementedError, match=method):
                    call()
        assert store.get('k') == (2 if self.supports_update else -1)

    def test_update_reads_changes_and_returns(self, store, atomic):
        with pytest.raises(exception.NotFound) as info:
            store.update('k', lambda value: value)
        assert info.value.target == 'k'
        self.assert_missing(store, 'k')
        default = ['kept']
        assert store.update('k', lambda v: v + ['a'], default=default) == [
            'kept', 'a']
        assert store.update('k', lambda v: v + ['b']) == ['kept', 'a', 'b']
        assert store.get('k') == ['kept', 'a', 'b']
        # fn may change what it is given in place; the default is a copy.
        store.update('in-place', lambda v: v.append(1) or v, default=default)
        assert default == ['kept']
        assert store.get('in-place') == ['kept', 1]
        # None is a value, not a missing key.
        store.set('none', None)
        assert store.update('none', lambda v: [v], default='unused') == [None]

    def test_update_writes_nothing_when_fn_raises(self, store, atomic):
        store.set('k', 'old')

        def fail(value):
            raise ZeroDivisionError(value)
        self.assert_raises(ZeroDivisionError,
                           lambda: store.update('k', fail),
                           lambda: store.update('new', fail, default=1))
        self.assert_raises(TypeError,
                           lambda: store.update('k', lambda v: object()))
        assert store.get('k') == 'old'
        self.assert_missing(store, 'new')

    def test_update_retries_after_a_race(self, store, atomic):
        store.set('k', 1)
        seen = []

        def racing(value):
            seen.append(value)
            if len(seen) == 1:
                store.set('k', 10)  # another writer wins the first race
            return value + 1
        assert store.update('k', racing) == 11
        assert seen == [1, 10]
        assert store.get('k') == 11
        # A key that appears or vanishes meanwhile is a race too.
        seen.clear()

        def appearing(value):
            seen.append(value)
            if len(seen) == 1:
                store.set('new', 'there')
            return [value]
        assert store.update('new', appearing, default=None) == ['there']
        assert seen == [None, 'there']

    def test_update_gives_up_with_conflict(self, store, atomic):
        store.set('k', 0)
        calls = []

        def always_losing(value):
            calls.append(value)
            store.set('k', len(calls))
            return 'never stored'
        with pytest.raises(exception.Conflict) as info:
            store.update('k', always_losing)
        attempts = cfg.CONF.kvs.update_attempts
        assert info.value.target == 'k'
        assert len(calls) == info.value.attempts == attempts
        assert store.get('k') == attempts

    def test_incr(self, store, atomic):
        assert store.incr('n') == 1
        assert store.incr('n', 41) == 42
        assert store.incr('n', -50) == -8
        assert store.get('n') == -8
        assert type(store.get('n')) is int
        store.set('five', 5)
        assert store.incr('five') == 6
        assert store.incr('big', 2 ** 70) == 2 ** 70
        store.set('text', 'x')
        self.assert_raises(TypeError, lambda: store.incr('text'),
                           lambda: store.incr('n', 1.5),
                           lambda: store.incr('n', True))
        assert store.get_multi(['text', 'n']) == ['x', -8]

    def test_update_and_incr_are_atomic_across_threads(self, store, atomic):
        threads, each = 8, 15
        barrier = threading.Barrier(threads)

        def work(n):
            barrier.wait()
            for i in range(each):
                store.update('list', operator.methodcaller(
                    '__add__', [(n, i)]), default=[])
                store.incr('counter')

        with futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(threads)))
        got = store.get('list')
        assert sorted(got) == [(n, i) for n in range(threads)
                               for i in range(each)]
        assert store.get('counter') == threads * each

    def test_touch(self, store, atomic):
        with pytest.raises(exception.NotFound) as info:
            store.touch('missing')
        assert info.value.target == 'missing'
        self.assert_missing(store, 'missing')
        store.set('k', {'v': 1})
        store.touch('k')
        store.touch('k', expire_time=0)
        assert store.get('k') == {'v': 1}

    def test_touch_update_incr_expiry(self, expiry, atomic):
        short = self.make_store(expire_time=1, no_expiry_keys=['keep'])
        short.set('longer', 1)
        short.touch('longer', expire_time=0)
        short.set('keep', 2)
        short.touch('keep', expire_time=1)  # no_expiry_keys win
        short.set('touched', 3, expire_time=0)
        short.touch('touched')  # None: the store's expire_time
        short.update('updated', lambda v: v + 1, default=0)
        assert short.incr('counted', 5, expire_time=0) == 5
        long = self.make_store(expire_time=0)
        long.set('shorter', 4)
        long.touch('shorter', expire_time=1)
        long.incr('counted', expire_time=1)
        time.sleep(max(self.expiry_wait, 1.1))
        assert short.get_multi(['longer', 'keep', 'counted']) == [1, 2, 5]
        self.assert_missing(short, 'touched', 'updated')
        self.assert_missing(long, 'shorter', 'counted')
        with pytest.raises(exception.NotFound):
            short.touch('touched')
        assert short.incr('counted') == 6

    def test_without_compare_and_set_calls_fail_clearly(self, store):
        if self.supports_update:
            pytest.skip('%s has compare-and-set' % self.backing_store)
        store.set('k', 1)
        for call, method in ((lambda: store.update('k', str), 'get_versioned'),
                             (lambda: store.incr('k'), 'get_versioned'),
                             (lambda: store.touch('k'), 'touch_serialized')):
            with pytest.raises(NotImplementedError, match=method):
                call()
        assert store.get('k') == 1

    # --- locks -----------------------------------------------------------

    def test_lock_guards_writes_with_its_key_while_active(self, store):
        with store.get_lock('k') as lock:
            assert lock.active
            store.set('k', 'v', lock=lock)
            store.delete('k', lock=lock)
        assert not lock.active
        # A lock for another key, or an inactive one, is refused.
        inactive = store.get_lock('k')
        with store.get_lock('other') as other:
            self.assert_raises(
                exception.LockError, lambda: store.set('k', 'v', lock=other),
                lambda: store.set('k', 'v', lock=inactive),
                lambda: store.delete('k', lock=lock), lock.release)
        self.assert_missing(store, 'k')

    def test_lock_excludes_second_holder(self, store):
        first, second = store.get_lock('k'), store.get_lock('k')
        assert first.acquire()
        assert second.acquire(blocking=False) is False
        assert second.acquire(timeout=0.05) is False
        first.release()
        assert second.acquire(blocking=False) is True
        second.release()

    def test_abandoned_lock_frees_itself_and_its_release_frees_nothing(self):
        store = self.make_store(lock_timeout=1)
        abandoned, waiter = store.get_lock('k'), store.get_lock('k')
        abandoned.acquire()
        assert waiter.acquire(blocking=False) is False
        assert waiter.acquire(timeout=self.expiry_wait + 2)
        abandoned.release()  # expired: must not remove waiter's lock
        intruder = store.get_lock('k')
        assert intruder.acquire(blocking=False) is False
        waiter.release()

    def test_expired_lock_raises_lock_timeout(self):
        store = self.make_store(lock_timeout=0.2)
        with store.get_lock('k') as lock:
            time.sleep(0.3)
            assert lock.expired
            with pytest.raises(exception.LockTimeout):
                store.set('k', 'v', lock=lock)
        self.assert_missing(store, 'k')

    def test_lock_on_long_unicode_key(self, store):
        key = 'ключ-' * 2000
        with store.get_lock(key) as lock:
            store.set(key, 1, lock=lock)
        assert store.get(key) == 1

    def test_locking_disabled_makes_locks_no_ops(self):
        store = self.make_store(locking='False')
        with store.get_lock('k') as first:
            with store.get_lock('k') as second:
                store.set('k', 'v', lock=second)
            assert first.active
        assert store.get('k') == 'v'

    # --- expiry ----------------------------------------------------------

    def test_expiry(self, expiry):
        # The store's expire_time applies to set, set_multi and add, but
        # not to no_expiry_keys; a per-call expire_time overrides it
        # either way, and no_expiry_keys still win over the call.
        short = self.make_store(expire_time=1,
                                no_expiry_keys=['keep', 'keep-too'])
        short.set_multi({'gone': 1, 'keep': 2})
        short.set('gone-too', 3)
        assert short.add('added', 4)
        assert short.get('gone') == 1
        short.set('never', 1, expire_time=0)
        short.set_multi({'never-a': 1, 'never-b': 2}, expire_time=0)
        assert short.add('never-added', 3, expire_time=0)
        short.set('keep-too', 4, expire_time=1)
        # 0 means never.
        long = self.make_store(expire_time=0, no_expiry_keys=['keep'])
        long.set('gone', 1, expire_time=1)
        long.set_multi({'gone-a': 1, 'keep': 2}, expire_time=1)
        assert long.add('gone-added', 3, expire_time=1)
        long.set('default', 4)
        old = None
        if self.expire_time_alias:  # and the backend's historical name
            old = self.make_store(**{self.expire_time_alias: 1})
            old.set('gone', 1)
        time.sleep(max(self.expiry_wait, 1.1))
        assert short.get_multi(['never', 'never-a', 'never-b', 'never-added',
                                'keep', 'keep-too']) == [1, 1, 2, 3, 2, 4]
        assert long.get_multi(['keep', 'default']) == [2, 4]
        self.assert_missing(short, 'gone', 'gone-too', 'added')
        self.assert_missing(long, 'gone', 'gone-a', 'gone-added')
        if old is not None:
            self.assert_missing(old, 'gone')
        assert short.add('added', 5)

    @pytest.mark.parametrize('bad', [-1, math.nan, math.inf, 1e308, True,
                                     'soon', [1]])
    def test_bad_per_call_expire_time_writes_nothing(self, store, expiry,
                                                     bad):
        for write in (lambda: store.set('k', 1, expire_time=bad),
                      lambda: store.set_multi({'k': 1}, expire_time=bad),
                      lambda: store.add('k', 1, expire_time=bad)):
            with pytest.raises((TypeError, ValueError), match='expire_time'):
                write()
        self.assert_missing(store, 'k')

    # --- model-based -----------------------------------------------------

    def test_random_operations_match_dict_model(self):
        if st is None:
            pytest.skip('the model-based test needs hypothesis')
        make_store = self.make_store
        keys = st.sampled_from(['a', 'b', 'c', 'ключ', 'x' * 300])
        atomic = stateful.precondition(lambda _: self.supports_update)

        class Model(stateful.RuleBasedStateMachine):
            def __init__(self):
                super().__init__()
                self.store = make_store()
                self.model: dict[str, ty.Any] = {}

            @stateful.rule(key=keys, value=value_strategy())
            def set(self, key, value):
                self.store.set(key, value)
                self.model[key] = value

            @stateful.rule(key=keys)
            def get(self, key):
                with _not_found_if(key not in self.model):
                    assert self.store.get(key) == self.model[key]

            @stateful.rule(key=keys)
            def delete(self, key):
                with _not_found_if(key not in self.model):
                    self.store.delete(key)
                self.model.pop(key, None)

            @stateful.rule(key=keys, value=value_strategy())
            def add(self, key, value):
                assert self.store.add(key, value) is (key not in self.model)
                self.model.setdefault(key, value)

            @stateful.rule(mapping=st.dictionaries(keys, value_strategy(),
                                                   max_size=3))
            def set_multi(self, mapping):
                self.store.set_multi(mapping)
                self.model.update(mapping)

            @stateful.rule(chosen=st.lists(keys, max_size=4))
            def get_multi(self, chosen):
                missing = [k for k in chosen if k not in self.model]
                with _not_found_if(missing) as info:
                    assert self.store.get_multi(chosen) == [
                        self.model[k] for k in chosen]
                assert not missing or info.value.target == missing

            @stateful.rule(chosen=st.lists(keys, max_size=4))
            def delete_multi(self, chosen):
                self.store.delete_multi(chosen)
                for key in chosen:
                    self.model.pop(key, None)

            @atomic
            @stateful.rule(key=keys, value=value_strategy())
            def update(self, key, value):
                new = [self.model.get(key), value]  # a missing key: None
                assert self.store.update(key, lambda old: [old, value],
                                         default=None) == new
                self.model[key] = new

            @atomic
            @stateful.rule(key=keys, delta=st.integers())
            def incr(self, key, delta):
                old = self.model.get(key, 0)
                if type(old) is not int:
                    with pytest.raises(TypeError):
                        self.store.incr(key, delta)
                    return
                assert self.store.incr(key, delta) == old + delta
                self.model[key] = old + delta

            @atomic
            @stateful.rule(key=keys)
            def touch(self, key):
                with _not_found_if(key not in self.model):
                    self.store.touch(key, expire_time=0)

        stateful.run_state_machine_as_test(Model, settings=settings(
            max_examples=self.hypothesis_examples, stateful_step_count=15,
            deadline=None))
