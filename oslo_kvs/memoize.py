"""Memoization of functions and methods on top of an oslo_kvs store.

::

    from oslo_kvs import memoize

    MEMOIZE = memoize.get_memoization_decorator(CONF, 'catalog')

    class CatalogManager:
        @MEMOIZE
        def get_region(self, region_id):
            ...

    manager.get_region('r1')                  # computed, then cached
    manager.get_region.invalidate('r1')       # forget it

Memoization is best effort, unlike the store API: when the store is down,
unconfigured or cannot hold a result, the function still runs and its
result is returned; the problem is logged once, never raised.

Each cached result is stored as ``(stored_at, value)`` so that its age is
checked against the section's ``cache_time`` on every read, whatever the
store's own ``expire_time``. A miss is filled under a dogpile lock: the
threads of one process queue on a local mutex and processes share the
store's lock, so a stampede on one key runs the function once.
"""

import collections
import datetime
import enum
import functools
import inspect
import logging
import os
import threading
import time
import typing as ty
import uuid
import weakref

from dogpile import lock as dogpile_lock
from oslo_config import cfg

from oslo_kvs import core
from oslo_kvs import exception
from oslo_kvs import opts

LOG = logging.getLogger(__name__)

#: Name of the store used when ``get_memoization_decorator`` is given none.
DEFAULT_STORE = 'oslo_kvs.memoize'

#: Longest wait for another process's computation of the same key when the
#: store's ``lock_timeout`` is 0 (locks that never expire).
MAX_LOCK_WAIT = 60.0

# Parameter names that mark a method's instance or class, kept out of keys.
_SELF_NAMES = ('self', 'cls')
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY,
               inspect.Parameter.POSITIONAL_OR_KEYWORD)


def section_opts() -> list[cfg.Opt]:
    """The per-section options, for a consumer's own ``list_opts()``.

    ``caching`` and ``cache_time`` are registered in the group given to
    :func:`get_memoization_decorator` (``cache_time`` also in its
    ``expiration_group``) unless that group already has options of those
    names, as Keystone's sections do; then those are used.
    """
    return [
        cfg.BoolOpt(
            'caching', default=True,
            help='Memoize this section\'s results. Has no effect unless '
                 '[kvs] memoize_enabled is true as well.'),
        cfg.IntOpt(
            'cache_time', min=0,
            help='Seconds a memoized result of this section stays valid. '
                 'Unset means [kvs] memoize_expiration_time; 0 means until '
                 'invalidated (or evicted by the store).'),
    ]


def register_opts(conf: cfg.ConfigOpts, group: str | None = None,
                  expiration_group: str | None = None) -> None:
    """Register the memoization options on ``conf``; safe to call again.

    ``[kvs]`` gets the global options; ``group`` gets ``caching`` and
    ``cache_time`` and ``expiration_group`` gets ``cache_time``, unless an
    option of that name is already registered there.
    """
    conf.register_opts(opts.memoize_opts, group=opts.GROUP)
    for section, names in ((group, ('caching', 'cache_time')),
                           (expiration_group, ('cache_time',))):
        if section is None:
            continue
        for opt in section_opts():
            if opt.name not in names:
                continue
            try:
                conf.register_opt(opt, group=section)
            except cfg.DuplicateOptError:
                # The application defined this option itself (Keystone
                # does, with its own help text): its definition wins.
                LOG.debug('[%s] %s is already registered; memoization '
                          'uses that option', section, opt.name)


def _enabled(conf: cfg.ConfigOpts, section: str) -> bool:
    return bool(conf.kvs.memoize_enabled and conf[section].caching)


def _cache_time(conf: cfg.ConfigOpts, section: str) -> float | None:
    """Seconds results stay valid, or None for no limit."""
    seconds = conf[section].cache_time
    if seconds is None:
        seconds = conf.kvs.memoize_expiration_time
    return seconds or None


def should_cache_fn(section: str, conf: cfg.ConfigOpts | None = None
                    ) -> ty.Callable[[ty.Any], bool]:
    """Keystone's ``should_cache_fn``: whether ``section`` memoizes now.

    The returned callable takes a value (ignored, as in Keystone) and
    answers from the current configuration: ``[kvs] memoize_enabled`` and
    ``[section] caching``.
    """
    conf = conf if conf is not None else cfg.CONF
    register_opts(conf, section)

    def should_cache(value: ty.Any = None) -> bool:
        return _enabled(conf, section)
    return should_cache


def get_memoization_decorator(
        conf: cfg.ConfigOpts, group: str,
        store: 'core.KeyValueStore | str | None' = None,
        expiration_group: str | None = None,
) -> ty.Callable[[ty.Callable[..., ty.Any]], 'MemoizedFunction']:
    """A decorator memoizing functions and methods of ``group``.

    :param conf: the ``ConfigOpts`` holding ``[kvs]`` and ``group``.
    :param group: the section whose ``caching`` option turns memoization
        on and off (with ``[kvs] memoize_enabled``).
    :param store: a :class:`~oslo_kvs.KeyValueStore`, or the name of one
        (default :data:`DEFAULT_STORE`). A name is looked up on every call,
        so the store may be configured after decoration; until it is,
        calls run uncached.
    :param expiration_group: the section whose ``cache_time`` applies
        (default ``group``).

    Options are read on every call, so overrides and reloads apply at once.
    """
    expiration_group = expiration_group or group
    register_opts(conf, group, expiration_group)

    def decorate(fn: ty.Callable[..., ty.Any]) -> 'MemoizedFunction':
        return MemoizedFunction(fn, conf, group, expiration_group, store)
    return decorate


class _Unsupported(Exception):
    """An argument cannot be turned into a stable key."""


class _Bypass(Exception):
    """The store cannot serve this call; run the function uncached."""


def _sorted_items(items: ty.Iterable[str]) -> str:
    return ','.join(sorted(items))


def _canonical(value: ty.Any) -> str:
    """A string equal for equal arguments, in every process.

    Scalars use ``repr``, which tells ``1``, ``True``, ``1.0``, ``'1'`` and
    ``b'1'`` apart; unordered containers are sorted by their members'
    strings, so neither insertion order nor hash seeds change the key.
    """
    kind = type(value)
    if value is None or kind in (bool, int, float, str, bytes):
        return repr(value)
    if kind is tuple:
        return '(%s)' % ','.join(_canonical(item) for item in value)
    if kind is list:
        return '[%s]' % ','.join(_canonical(item) for item in value)
    if kind is dict:
        return '{%s}' % _sorted_items(
            '%s:%s' % (_canonical(k), _canonical(v))
            for k, v in value.items())
    if kind is set or kind is frozenset:
        return '%s{%s}' % (kind.__name__,
                           _sorted_items(_canonical(item) for item in value))
    if kind is datetime.datetime:
        return 'datetime(%s,%d)' % (value.isoformat(), value.fold)
    if kind is datetime.date:
        return 'date(%s)' % value.isoformat()
    if kind is uuid.UUID:
        return 'UUID(%s)' % value.hex
    if isinstance(value, enum.Enum):
        return '%s.%s.%s' % (kind.__module__, kind.__qualname__, value.name)
    raise _Unsupported(kind.__module__ + '.' + kind.__qualname__)


class _StoreHealth:
    """Whether a store answers; bypassed for a while after it fails.

    One outage is logged once, however many calls and functions meet it.
    It ends with the next successful write: a store whose reads work but
    whose locks or writes fail is still one outage, not one per call.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._retry_at: float | None = None
        self._unconfigured_logged = False

    def usable(self) -> bool:
        retry_at = self._retry_at
        return retry_at is None or time.monotonic() >= retry_at

    def failed(self, store: core.KeyValueStore, error: Exception,
               retry_after: float) -> None:
        with self._mutex:
            first = self._retry_at is None
            self._retry_at = time.monotonic() + retry_after
        if first:
            # BackendError messages name the backend and server, never a
            # secret.
            LOG.warning('Memoization store %r failed (%s: %s); memoized '
                        'functions run uncached, retrying the store every '
                        '%ss', store.name, type(error).__name__, error,
                        retry_after)

    def succeeded(self, store: core.KeyValueStore) -> None:
        if self._retry_at is None:
            return
        with self._mutex:
            recovered = self._retry_at is not None
            self._retry_at = None
        if recovered:
            LOG.info('Memoization store %r answers again', store.name)

    def unconfigured(self, store: core.KeyValueStore) -> None:
        with self._mutex:
            if self._unconfigured_logged:
                return
            self._unconfigured_logged = True
        LOG.warning('Memoization store %r is not configured; memoized '
                    'functions run uncached until it is', store.name)


_health: 'weakref.WeakKeyDictionary[core.KeyValueStore, _StoreHealth]' = (
    weakref.WeakKeyDictionary())
_health_lock = threading.Lock()


def _health_of(store: core.KeyValueStore) -> _StoreHealth:
    with _health_lock:
        health = _health.get(store)
        if health is None:
            health = _health[store] = _StoreHealth()
        return health


class _LocalMutex:
    """A per-key lock; kept only while someone uses it (weakly held)."""

    __slots__ = ('lock', '__weakref__')

    def __init__(self) -> None:
        self.lock = threading.Lock()


class _KeyMutex:
    """The dogpile mutex of one key.

    The threads of this process queue on a local lock, so they do not poll
    the server; across processes the store's lock decides. A store that
    fails while locking turns the call into an uncached one.
    """

    def __init__(self, memo: 'MemoizedFunction', store: core.KeyValueStore,
                 health: _StoreHealth, key: str) -> None:
        self._memo = memo
        self._store = store
        self._health = health
        self._key = key
        self._local = memo._local_mutex(key)
        self._held: core.KeyValueStoreLock | None = None

    def acquire(self, wait: bool = True) -> bool:
        if not self._local.lock.acquire(wait):
            return False
        try:
            lock = self._store.get_lock(self._key)
            limit = (lock.lock_timeout * 2 if lock.lock_timeout
                     else MAX_LOCK_WAIT)
            acquired = lock.acquire(blocking=wait,
                                    timeout=limit if wait else None)
        except exception.KVSError as exc:
            self._local.lock.release()
            self._memo._store_failed(self._store, self._health, exc)
            raise _Bypass() from exc
        except BaseException:
            self._local.lock.release()
            raise
        if not acquired:
            self._local.lock.release()
            if wait:
                # dogpile expects a blocking acquire to succeed.
                LOG.debug('Gave up waiting for another computation of a '
                          'memoized result of %s', self._memo.__qualname__)
                raise _Bypass()
            return False
        self._held = lock
        return True

    def release(self) -> None:
        lock, self._held = self._held, None
        try:
            if lock is not None:
                lock.release()
        except exception.KVSError as exc:
            self._memo._store_failed(self._store, self._health, exc)
        finally:
            self._local.lock.release()


class MemoizedFunction:
    """A memoized function; made by :func:`get_memoization_decorator`.

    Calling it returns the cached result of the same call, computing and
    storing it on a miss. Keys are the function's module and qualified name
    plus its arguments, normalized with the signature: ``f(1, b=2)``,
    ``f(1, 2)`` and, when ``b`` defaults to 2, ``f(1)`` share one entry. A
    first parameter named ``self`` or ``cls`` is left out of the key, so
    all instances of a class share results.

    Arguments must be ``None``, ``bool``, ``int``, ``float``, ``str``,
    ``bytes``, ``datetime.date``, ``datetime.datetime``, ``uuid.UUID``,
    enum members, or ``tuple``/``list``/``dict``/``set``/``frozenset`` of
    these. A call with another argument type runs uncached (logged once);
    the helper methods raise ``TypeError`` for it.

    On methods, the helpers take the call's arguments without ``self``
    (``obj.method.invalidate(x)``); Keystone's form, passing the instance
    first (``obj.method.invalidate(obj, x)``), works too.
    """

    def __init__(self, fn: ty.Callable[..., ty.Any], conf: cfg.ConfigOpts,
                 group: str, expiration_group: str,
                 store: 'core.KeyValueStore | str | None') -> None:
        if inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn):
            raise TypeError('%s cannot be memoized: its result is a '
                            'coroutine or generator' % fn.__qualname__)
        functools.update_wrapper(self, fn)
        self._fn = fn
        self._conf = conf
        self._group = group
        self._expiration_group = expiration_group
        if isinstance(store, core.KeyValueStore):
            self._fixed_store: core.KeyValueStore | None = store
            self._store_name = store.name
        else:
            self._fixed_store = None
            self._store_name = store or DEFAULT_STORE
        # The registry holds stores weakly; this keeps the one in use.
        self._current: tuple[core.KeyValueStore, _StoreHealth] | None = None
        self._signature = inspect.signature(fn)
        params = list(self._signature.parameters.values())
        self._skip_first = bool(params and params[0].name in _SELF_NAMES
                                and params[0].kind in _POSITIONAL)
        self._prefix = 'memoize:%s.%s' % (fn.__module__, fn.__qualname__)
        self._mutexes: 'weakref.WeakValueDictionary[str, _LocalMutex]' = (
            weakref.WeakValueDictionary())
        self._mutexes_guard = threading.Lock()
        self._warned: set[str] = set()
        self._warned_guard = threading.Lock()

    def __repr__(self) -> str:
        return '<MemoizedFunction %s>' % self._prefix[len('memoize:'):]

    def __get__(self, instance: ty.Any, owner: ty.Any = None) -> ty.Any:
        if instance is None:
            return self
        return _BoundMemoized(self, instance)

    # --- public API ------------------------------------------------------

    def __call__(self, *args: ty.Any, **kwargs: ty.Any) -> ty.Any:
        return self._call(args, kwargs)

    def invalidate(self, *args: ty.Any, **kwargs: ty.Any) -> None:
        """Forget the cached result of this call, if any.

        Always tried on the store, even while it is being bypassed after a
        failure; a failure is logged, not raised.

        :raises TypeError: when the arguments cannot form a key.
        """
        key = self._public_key(args, kwargs)
        current = self._store()
        if current is None:
            return
        store, health = current
        try:
            store.delete(key)
        except exception.NotFound:
            pass
        except exception.KVSError as exc:
            self._store_failed(store, health, exc)
            return
        health.succeeded(store)

    def refresh(self, *args: ty.Any, **kwargs: ty.Any) -> ty.Any:
        """Compute the result again, store it and return it.

        The result is not stored while memoization is off for this section.
        """
        key = self._public_key(args, kwargs)
        value = self._fn(*args, **kwargs)
        if self._enabled():
            current = self._store()
            if current is not None:
                self._write(current[0], current[1], key, value, time.time())
        return value

    def get(self, *args: ty.Any, **kwargs: ty.Any) -> ty.Any:
        """The cached result of this call, without computing it.

        :raises exception.NotFound: when nothing fresh is cached, or the
            store is unconfigured or failing (logged).
        :raises TypeError: when the arguments cannot form a key.
        """
        key = self._public_key(args, kwargs)
        current = self._store()
        if current is None:
            raise exception.NotFound(key)
        store, health = current
        try:
            value, stored_at = self._read(store, health, key)
        except (dogpile_lock.NeedRegenerationException, _Bypass):
            raise exception.NotFound(key) from None
        ttl = _cache_time(self._conf, self._expiration_group)
        if ttl is not None and time.time() - stored_at > ttl:
            raise exception.NotFound(key)
        return value

    def set(self, value: ty.Any, *args: ty.Any, **kwargs: ty.Any) -> None:
        """Store ``value`` as the result of this call.

        Store failures are logged, not raised.

        :raises TypeError: when the arguments cannot form a key or the
            store cannot hold ``value``'s type.
        :raises ValueError: when the store refuses the value (for example
            ``exception.ValueTooLarge``).
        """
        key = self._public_key(args, kwargs)
        current = self._store()
        if current is None:
            return
        store, health = current
        try:
            store.set(key, (time.time(), value))
        except (TypeError, ValueError):
            raise
        except exception.KVSError as exc:
            self._store_failed(store, health, exc)
            return
        health.succeeded(store)

    def warm(self, *args: ty.Any, **kwargs: ty.Any) -> bool:
        """Queue this call on :data:`warm_queue`'s background thread.

        The worker calls the function as a caller would (computing and
        storing on a miss), so the next call hits. Errors are logged.

        :returns: whether the call is queued (or already was); ``False``
            when the queue is full, memoization is off for this section or
            an argument is not supported.
        """
        if not self._enabled():
            return False
        try:
            key = self._key(args, kwargs)
        except (_Unsupported, TypeError) as exc:
            self._warn_unsupported(exc)
            return False
        return warm_queue.put(
            key, functools.partial(self._call, args, kwargs))

    @property
    def warm_queue(self) -> 'WarmQueue':
        """The queue :meth:`warm` uses (shared by all functions)."""
        return warm_queue

    def key(self, *args: ty.Any, **kwargs: ty.Any) -> str:
        """The store key of this call, for debugging.

        :raises TypeError: when the arguments cannot form a key.
        """
        return self._public_key(args, kwargs)

    # --- internals -------------------------------------------------------

    def _enabled(self) -> bool:
        return _enabled(self._conf, self._group)

    def _key(self, args: tuple, kwargs: dict) -> str:
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        items = list(bound.arguments.items())
        if self._skip_first:
            items = items[1:]
        try:
            return '%s(%s)' % (self._prefix, ','.join(
                '%s=%s' % (name, _canonical(value)) for name, value in items))
        except RecursionError:
            raise _Unsupported('a self-referencing container') from None

    def _public_key(self, args: tuple, kwargs: dict) -> str:
        try:
            return self._key(args, kwargs)
        except _Unsupported as exc:
            raise TypeError('%s cannot key a call with an argument of type '
                            '%s' % (self.__qualname__, exc)) from None

    def _store(self) -> tuple[core.KeyValueStore, _StoreHealth] | None:
        store = self._fixed_store
        if store is None:
            store = core.get_key_value_store(self._store_name,
                                             conf=self._conf)
        current = self._current
        if current is None or current[0] is not store:
            current = self._current = (store, _health_of(store))
        if not store.is_configured:
            current[1].unconfigured(store)
            return None
        return current

    def _store_failed(self, store: core.KeyValueStore,
                      health: _StoreHealth, error: Exception) -> None:
        health.failed(store, error, self._conf.kvs.memoize_dead_retry)

    def _warn_once(self, what: str, message: str, *args: ty.Any) -> None:
        with self._warned_guard:
            if what in self._warned:
                return
            self._warned.add(what)
        LOG.warning(message, *args)

    def _warn_unsupported(self, error: Exception) -> None:
        if isinstance(error, _Unsupported):
            self._warn_once('args', 'Calls of %s with an argument of type '
                            '%s are not memoized', self.__qualname__, error)

    def _local_mutex(self, key: str) -> _LocalMutex:
        with self._mutexes_guard:
            mutex = self._mutexes.get(key)
            if mutex is None:
                mutex = self._mutexes[key] = _LocalMutex()
            return mutex

    def _call(self, args: tuple, kwargs: dict) -> ty.Any:
        if not self._enabled():
            return self._fn(*args, **kwargs)
        try:
            key = self._key(args, kwargs)
        except (_Unsupported, TypeError) as exc:
            # A bad call gets the function's own TypeError.
            self._warn_unsupported(exc)
            return self._fn(*args, **kwargs)
        current = self._store()
        if current is None or not current[1].usable():
            return self._fn(*args, **kwargs)
        store, health = current

        def value_and_created() -> tuple[ty.Any, float]:
            return self._read(store, health, key)

        def create() -> tuple[ty.Any, float]:
            value = self._fn(*args, **kwargs)
            stored_at = time.time()
            self._write(store, health, key, value, stored_at)
            return value, stored_at

        ttl = _cache_time(self._conf, self._expiration_group)
        mutex = _KeyMutex(self, store, health, key)
        try:
            with dogpile_lock.Lock(mutex, create, value_and_created,
                                   ttl) as value:
                return value
        except _Bypass:
            # Raised only before the function ran.
            return self._fn(*args, **kwargs)

    def _read(self, store: core.KeyValueStore, health: _StoreHealth,
              key: str) -> tuple[ty.Any, float]:
        """``(value, stored_at)`` for dogpile, or NeedRegenerationException.

        :raises _Bypass: when the store fails or cannot take the key.
        """
        try:
            entry = store.get(key)
        except exception.NotFound:
            raise dogpile_lock.NeedRegenerationException() from None
        except (TypeError, ValueError) as exc:
            # e.g. a key too long for a backend with key mangling off.
            self._warn_once('key', 'Results of %s cannot be memoized in '
                            'store %r: %s', self.__qualname__, store.name,
                            exc)
            raise _Bypass() from exc
        except exception.KVSError as exc:
            self._store_failed(store, health, exc)
            raise _Bypass() from exc
        # Anything else under this key (another writer's format) is a miss.
        if (type(entry) is not tuple or len(entry) != 2 or
                type(entry[0]) is not float or entry[0] <= 0):
            raise dogpile_lock.NeedRegenerationException()
        return entry[1], entry[0]

    def _write(self, store: core.KeyValueStore, health: _StoreHealth,
               key: str, value: ty.Any, stored_at: float) -> None:
        """Store a result; every failure is logged, never raised."""
        try:
            store.set(key, (stored_at, value))
        except (TypeError, ValueError) as exc:
            # An unsupported type, a value too large, or a key the
            # backend refuses: the result is still returned.
            self._warn_once('value', 'Results of %s cannot be memoized in '
                            'store %r: %s', self.__qualname__, store.name,
                            exc)
            return
        except exception.KVSError as exc:
            self._store_failed(store, health, exc)
            return
        health.succeeded(store)


class _BoundMemoized:
    """A memoized method bound to an instance (or class)."""

    __slots__ = ('_memo', '_instance')

    def __init__(self, memo: MemoizedFunction, instance: ty.Any) -> None:
        self._memo = memo
        self._instance = instance

    def __repr__(self) -> str:
        return '<bound %r of %r>' % (self._memo, self._instance)

    def __getattr__(self, name: str) -> ty.Any:
        return getattr(self._memo, name)

    def _args(self, args: tuple) -> tuple:
        # Keystone passed the instance explicitly to invalidate().
        if args and args[0] is self._instance:
            return args
        return (self._instance,) + args

    def __call__(self, *args: ty.Any, **kwargs: ty.Any) -> ty.Any:
        return self._memo._call((self._instance,) + args, kwargs)

    def invalidate(self, *args: ty.Any, **kwargs: ty.Any) -> None:
        """See :meth:`MemoizedFunction.invalidate`."""
        self._memo.invalidate(*self._args(args), **kwargs)

    def refresh(self, *args: ty.Any, **kwargs: ty.Any) -> ty.Any:
        """See :meth:`MemoizedFunction.refresh`."""
        return self._memo.refresh(*self._args(args), **kwargs)

    def get(self, *args: ty.Any, **kwargs: ty.Any) -> ty.Any:
        """See :meth:`MemoizedFunction.get`."""
        return self._memo.get(*self._args(args), **kwargs)

    def set(self, value: ty.Any, *args: ty.Any, **kwargs: ty.Any) -> None:
        """See :meth:`MemoizedFunction.set`."""
        self._memo.set(value, *self._args(args), **kwargs)

    def warm(self, *args: ty.Any, **kwargs: ty.Any) -> bool:
        """See :meth:`MemoizedFunction.warm`."""
        return self._memo.warm(*self._args(args), **kwargs)

    def key(self, *args: ty.Any, **kwargs: ty.Any) -> str:
        """See :meth:`MemoizedFunction.key`."""
        return self._memo.key(*self._args(args), **kwargs)


class WarmQueue:
    """A bounded queue of calls computed by one background daemon thread.

    :meth:`MemoizedFunction.warm` adds to the module's :data:`warm_queue`.
    A call already waiting is not queued twice. Tests can wait for the
    queue with :meth:`join`.
    """

    def __init__(self, maxsize: int = 1000) -> None:
        #: Most calls waiting; further :meth:`put` calls are refused.
        self.maxsize = maxsize
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._items: collections.deque[tuple[str, ty.Callable[[], ty.Any]]]
        self._items = collections.deque()
        self._pending: set[str] = set()
        self._unfinished = 0
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        """Calls waiting, not counting the one being computed."""
        return len(self._items)

    @property
    def unfinished(self) -> int:
        """Calls waiting or being computed."""
        return self._unfinished

    def put(self, key: str, task: ty.Callable[[], ty.Any]) -> bool:
        """Queue ``task`` under ``key``.

        :returns: ``True`` when queued or already waiting, ``False`` when
            the queue is full.
        """
        with self._cond:
            if key in self._pending:
                return True
            if len(self._items) >= self.maxsize:
                return False
            self._items.append((key, task))
            self._pending.add(key)
            self._unfinished += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name='oslo-kvs-memoize-warm',
                    daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return True

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._items)
                key, task = self._items.popleft()
            try:
                task()
            except Exception:
                LOG.warning('Warming a memoized result failed',
                            exc_info=True)
            finally:
                with self._cond:
                    self._pending.discard(key)
                    self._unfinished -= 1
                    self._cond.notify_all()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every queued call is computed.

        Do not call it from a function being warmed.

        :returns: ``False`` if ``timeout`` seconds passed first.
        """
        with self._cond:
            return self._cond.wait_for(lambda: self._unfinished == 0,
                                       timeout)

    def clear(self) -> int:
        """Drop the waiting calls; return how many were dropped."""
        with self._cond:
            dropped = len(self._items)
            for key, _ in self._items:
                self._pending.discard(key)
            self._items.clear()
            self._unfinished -= dropped
            self._cond.notify_all()
            return dropped


#: The queue behind :meth:`MemoizedFunction.warm`.
warm_queue = WarmQueue()
# A forked child has no worker thread and must not inherit queued calls.
os.register_at_fork(after_in_child=warm_queue._reset)
