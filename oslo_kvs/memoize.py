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
store's lock, so a stampede on one key runs the function once; no caller
waits longer than twice the store's ``lock_timeout``. The background
warm-up queue is in :mod:`oslo_kvs.memoize_warmup`.
"""

import contextlib
import copy
import datetime
import enum
import functools
import inspect
import logging
import threading
import time
import typing as ty
import uuid
import weakref

from dogpile import lock as dogpile_lock
from oslo_config import cfg

from oslo_kvs import _process
from oslo_kvs import core
from oslo_kvs import exception
from oslo_kvs import memoize_warmup
from oslo_kvs import opts

LOG = logging.getLogger(__name__)

#: Name of the store used when ``get_memoization_decorator`` is given none.
DEFAULT_STORE = 'oslo_kvs.memoize'

#: Longest wait for another computation of the same call (in this process
#: or another) when the store's ``lock_timeout`` is 0 (locks never expire).
MAX_LOCK_WAIT = 60.0

# The warm-up queue lives in its own module; these names stay here too.
WarmQueue = memoize_warmup.WarmQueue
warm_queue = memoize_warmup.warm_queue

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

    def __init__(self, name: str) -> None:
        self.name = name
        self._mutex = _process.Primitive('Lock')
        self._retry_at: float | None = None
        self._unconfigured_logged = False

    def usable(self) -> bool:
        retry_at = self._retry_at
        return retry_at is None or time.monotonic() >= retry_at

    def failed(self, error: Exception, retry_after: float) -> None:
        with self._mutex:
            first = self._retry_at is None
            self._retry_at = time.monotonic() + retry_after
        if first:
            # BackendError messages name the backend and server, never a
            # secret.
            LOG.warning('Memoization store %r failed (%s: %s); memoized '
                        'functions run uncached, retrying the store every '
                        '%ss', self.name, type(error).__name__, error,
                        retry_after)

    def succeeded(self) -> None:
        if self._retry_at is None:
            return
        with self._mutex:
            recovered = self._retry_at is not None
            self._retry_at = None
        if recovered:
            LOG.info('Memoization store %r answers again', self.name)

    def unconfigured(self) -> None:
        with self._mutex:
            if self._unconfigured_logged:
                return
            self._unconfigured_logged = True
        LOG.warning('Memoization store %r is not configured; memoized '
                    'functions run uncached until it is', self.name)


_health: 'weakref.WeakKeyDictionary[core.KeyValueStore, _StoreHealth]' = (
    weakref.WeakKeyDictionary())
_health_lock = _process.Primitive('Lock')


class _Current(ty.NamedTuple):
    """A configured store and its health, as memoized calls use them."""

    store: core.KeyValueStore
    health: _StoreHealth


def _health_of(store: core.KeyValueStore) -> _StoreHealth:
    with _health_lock:
        health = _health.get(store)
        if health is None:
            health = _health[store] = _StoreHealth(store.name)
        return health


class _StoreRef:
    """The store of one memoized function: fixed, or looked up by name."""

    def __init__(self, conf: cfg.ConfigOpts,
                 store: 'core.KeyValueStore | str | None') -> None:
        self._conf = conf
        self._fixed = store if isinstance(store, core.KeyValueStore) else None
        self.name: str = (self._fixed.name if self._fixed is not None
                          else ty.cast(str, store) or DEFAULT_STORE)
        # The registry holds stores weakly; this keeps the one in use.
        self._current: _Current | None = None

    def current(self) -> _Current | None:
        """The store and its health; None (logged once) if unconfigured."""
        store = self._fixed
        if store is None:
            store = core.get_key_value_store(self.name, conf=self._conf)
        current = self._current
        if current is None or current.store is not store:
            current = self._current = _Current(store, _health_of(store))
        if not store.is_configured:
            current.health.unconfigured()
            return None
        return current


class _LocalMutex:
    """A per-key lock; kept only while someone uses it (weakly held)."""

    __slots__ = ('lock', '__weakref__')

    def __init__(self) -> None:
        self.lock = threading.Lock()


class _KeyMutex:
    """The dogpile mutex of one key, for one call.

    The threads of this process queue on a local lock, so they do not poll
    the server; across processes the store's lock decides. The whole wait
    is bounded by twice the store's ``lock_timeout`` (:data:`MAX_LOCK_WAIT`
    when locks never expire): a caller that waited that long, or whose
    store failed while locking, runs the function uncached.
    """

    def __init__(self, memo: 'MemoizedFunction', current: _Current,
                 key: str) -> None:
        self._memo = memo
        self._current = current
        self._key = key
        # Held for the call: the mutex lives while someone uses it.
        self._mutex = memo._local_mutex(key)
        self._local = self._mutex.lock
        self._held: core.KeyValueStoreLock | None = None

    def acquire(self, wait: bool = True) -> bool:
        lock = self._memo._use(self._current, self._current.store.get_lock,
                               self._key, refused='key')
        limit = lock.lock_timeout * 2 if lock.lock_timeout else MAX_LOCK_WAIT
        deadline = time.monotonic() + limit
        if not (self._local.acquire(timeout=limit) if wait
                else self._local.acquire(False)):
            return self._not_acquired(wait)
        try:
            acquired = self._memo._use(
                self._current, lock.acquire, wait,
                max(deadline - time.monotonic(), 0.0))
        except BaseException:
            self._local.release()
            raise
        if not acquired:
            self._local.release()
            return self._not_acquired(wait)
        self._held = lock
        return True

    def _not_acquired(self, wait: bool) -> bool:
        if wait:
            # dogpile expects a blocking acquire to succeed.
            LOG.debug('Gave up waiting for another computation of a '
                      'memoized result of %s', self._memo.__qualname__)
            raise _Bypass()
        return False

    def release(self) -> None:
        lock, self._held = self._held, None
        try:
            if lock is not None:
                with contextlib.suppress(_Bypass):
                    self._memo._use(self._current, lock.release)
        finally:
            self._local.release()


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

    #: On a method looked up on an instance, ``(instance,)`` (see __get__).
    _bound: tuple = ()
    #: Copied from the function by functools.update_wrapper.
    __qualname__: str

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
        self._store = _StoreRef(conf, store)
        self._signature = inspect.signature(fn)
        params = list(self._signature.parameters.values())
        self._skip_first = bool(params and params[0].name in _SELF_NAMES
                                and params[0].kind in _POSITIONAL)
        self._prefix = 'memoize:%s.%s' % (fn.__module__, fn.__qualname__)
        # The state below is shared with the bound copies __get__ makes.
        # Per-key mutexes are per process: a forked child must not wait
        # for a computation of its parent's.
        self._mutexes: _process.PerProcess[
            weakref.WeakValueDictionary[str, _LocalMutex]] = (
            _process.PerProcess(weakref.WeakValueDictionary))
        self._mutexes_guard = _process.Primitive('Lock')
        self._warned: dict[str, object] = {}

    def __repr__(self) -> str:
        name = self._prefix[len('memoize:'):]
        if self._bound:
            return '<bound MemoizedFunction %s of %r>' % (name, self._bound[0])
        return '<MemoizedFunction %s>' % name

    def __get__(self, instance: ty.Any, owner: ty.Any = None) -> ty.Any:
        if instance is None:
            return self
        # A shallow copy shares the store, mutexes and warnings; calls and
        # helpers get the instance first, as a bound method's would.
        bound = copy.copy(self)
        bound._bound = (instance,)
        return bound

    # --- public API ------------------------------------------------------

    def __call__(self, *args: ty.Any, **kwargs: ty.Any) -> ty.Any:
        return self._call(self._bound + args, kwargs)

    def invalidate(self, *args: ty.Any, **kwargs: ty.Any) -> None:
        """Forget the cached result of this call, if any.

        Always tried on the store, even while it is being bypassed after a
        failure; a failure is logged, not raised.

        :raises TypeError: when the arguments cannot form a key.
        """
        _, key = self._public(args, kwargs)
        current = self._store.current()
        if current is not None:
            with contextlib.suppress(_Bypass):
                # delete_multi ignores a missing key.
                self._use(current, current.store.delete_multi, [key],
                          write=True)

    def refresh(self, *args: ty.Any, **kwargs: ty.Any) -> ty.Any:
        """Compute the result again, store it and return it.

        The result is not stored while memoization is off for this section.
        """
        args, key = self._public(args, kwargs)
        value = self._fn(*args, **kwargs)
        if self._enabled():
            current = self._store.current()
            if current is not None:
                self._write(current, key, value)
        return value

    def get(self, *args: ty.Any, **kwargs: ty.Any) -> ty.Any:
        """The cached result of this call, without computing it.

        :raises exception.NotFound: when nothing fresh is cached, or the
            store is unconfigured or failing (logged).
        :raises TypeError: when the arguments cannot form a key.
        """
        _, key = self._public(args, kwargs)
        current = self._store.current()
        if current is None:
            raise exception.NotFound(key)
        try:
            value, stored_at = self._read(current, key)
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
        _, key = self._public(args, kwargs)
        current = self._store.current()
        if current is not None:
            self._write(current, key, value, refused=None)

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
            args, key = self._bind(args, kwargs)
        except (_Unsupported, TypeError) as exc:
            self._warn_unsupported(exc)
            return False
        return warm_queue.put(
            key, functools.partial(self._call, args, kwargs))

    @property
    def warm_queue(self) -> memoize_warmup.WarmQueue:
        """The queue :meth:`warm` uses (shared by all functions)."""
        return warm_queue

    def key(self, *args: ty.Any, **kwargs: ty.Any) -> str:
        """The store key of this call, for debugging.

        :raises TypeError: when the arguments cannot form a key.
        """
        return self._public(args, kwargs)[1]

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

    def _bind(self, args: tuple, kwargs: dict) -> tuple[tuple, str]:
        """A helper call's full arguments and key.

        On a method the helpers take the arguments without the instance,
        or with it first, as Keystone passed them.
        """
        if self._bound and not (args and args[0] is self._bound[0]):
            args = self._bound + args
        return args, self._key(args, kwargs)

    def _public(self, args: tuple, kwargs: dict) -> tuple[tuple, str]:
        try:
            return self._bind(args, kwargs)
        except _Unsupported as exc:
            raise TypeError('%s cannot key a call with an argument of type '
                            '%s' % (self.__qualname__, exc)) from None

    def _warn_once(self, what: str, message: str, *args: ty.Any) -> None:
        marker = object()
        # dict.setdefault is atomic: of threads racing here, one warns.
        if self._warned.setdefault(what, marker) is marker:
            LOG.warning(message, *args)

    def _warn_unsupported(self, error: Exception) -> None:
        if isinstance(error, _Unsupported):
            self._warn_once('args', 'Calls of %s with an argument of type '
                            '%s are not memoized', self.__qualname__, error)

    def _local_mutex(self, key: str) -> _LocalMutex:
        mutexes = self._mutexes.get()
        with self._mutexes_guard:
            mutex = mutexes.get(key)
            if mutex is None:
                mutex = mutexes[key] = _LocalMutex()
            return mutex

    def _use(self, current: _Current, call: ty.Callable[..., ty.Any],
             *args: ty.Any, refused: str | None = None,
             write: bool = False) -> ty.Any:
        """``call(*args)`` on the store, best effort; the one place for it.

        A store fault starts (or continues) an outage, logged once, and
        raises :class:`_Bypass`; so does a key or value the store refuses
        (``TypeError``/``ValueError``, warned once per ``refused`` kind),
        unless ``refused`` is None: then that error is raised.
        ``NotFound`` is raised. A successful ``write`` ends an outage.
        """
        try:
            result = call(*args)
        except exception.NotFound:
            raise
        except (TypeError, ValueError) as exc:
            if refused is None:
                raise
            # e.g. a value of an unsupported type or too large, or a key
            # too long for a backend with key mangling off.
            self._warn_once(refused, 'Results of %s cannot be memoized in '
                            'store %r: %s', self.__qualname__,
                            current.store.name, exc)
            raise _Bypass() from exc
        except exception.KVSError as exc:
            current.health.failed(exc, self._conf.kvs.memoize_dead_retry)
            raise _Bypass() from exc
        if write:
            current.health.succeeded()
        return result

    def _call(self, args: tuple, kwargs: dict) -> ty.Any:
        if not self._enabled():
            return self._fn(*args, **kwargs)
        try:
            key = self._key(args, kwargs)
        except (_Unsupported, TypeError) as exc:
            # A bad call gets the function's own TypeError.
            self._warn_unsupported(exc)
            return self._fn(*args, **kwargs)
        current = self._store.current()
        if current is None or not current.health.usable():
            return self._fn(*args, **kwargs)

        def create() -> tuple[ty.Any, float]:
            value = self._fn(*args, **kwargs)
            return value, self._write(current, key, value)

        try:
            with dogpile_lock.Lock(
                    _KeyMutex(self, current, key), create,
                    functools.partial(self._read, current, key),
                    _cache_time(self._conf, self._expiration_group)) as value:
                return value
        except _Bypass:
            # Raised only before the function ran.
            return self._fn(*args, **kwargs)

    def _read(self, current: _Current, key: str) -> tuple[ty.Any, float]:
        """``(value, stored_at)`` for dogpile, or NeedRegenerationException.

        :raises _Bypass: when the store fails or cannot take the key.
        """
        try:
            entry = self._use(current, current.store.get, key, refused='key')
        except exception.NotFound:
            raise dogpile_lock.NeedRegenerationException() from None
        # Anything else under this key (another writer's format) is a miss.
        if (type(entry) is not tuple or len(entry) != 2 or
                type(entry[0]) is not float or entry[0] <= 0):
            raise dogpile_lock.NeedRegenerationException()
        return entry[1], entry[0]

    def _write(self, current: _Current, key: str, value: ty.Any,
               refused: str | None = 'value') -> float:
        """Store a result and return its time; see :meth:`_use` for errors.

        Store faults and, unless ``refused`` is None, refusals are logged.
        """
        stored_at = time.time()
        with contextlib.suppress(_Bypass):
            self._use(current, current.store.set, key, (stored_at, value),
                      refused=refused, write=True)
        return stored_at
