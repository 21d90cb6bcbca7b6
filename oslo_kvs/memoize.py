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

Only the store's public API is used. Each result is stored as
``(stored_at, value)`` so that its age is checked against the section's
``cache_time`` on every read, whatever the store's own ``expire_time``. A
miss is filled under the store's lock for the key, so a stampede on one
key runs the function once, and an expired result is served while another
caller recomputes it; no caller waits longer than twice the store's
``lock_timeout``. :meth:`MemoizedFunction.warm` queues calls on
:data:`warm_queue`, run by one background thread per process.
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

from oslo_config import cfg

from oslo_kvs import _process
from oslo_kvs import core
from oslo_kvs import exception
from oslo_kvs import opts

LOG = logging.getLogger(__name__)

#: Name of the store used when ``get_memoization_decorator`` is given none.
DEFAULT_STORE = 'oslo_kvs.memoize'

#: Longest wait for another computation of the same call (in this process
#: or another) when the store's ``lock_timeout`` is 0 (locks never expire).
MAX_LOCK_WAIT = 60.0

# Argument types whose repr is the same in every process.
_REPR_TYPES = (bool, int, float, str, bytes, datetime.date, uuid.UUID)
# What _read gives for a key holding no result.
_MISSING = object()
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY,
               inspect.Parameter.POSITIONAL_OR_KEYWORD)


def register_opts(conf: cfg.ConfigOpts, group: str | None = None,
                  expiration_group: str | None = None) -> None:
    """Register the memoization options on ``conf``; safe to call again.

    ``[kvs]`` gets the global options; ``group`` gets ``caching`` and
    ``cache_time`` and ``expiration_group`` gets ``cache_time``, unless an
    option of that name is already registered there.
    """
    conf.register_opts(opts.memoize_opts, group=opts.GROUP)
    caching, cache_time = opts.memoize_section_opts()
    for section, opt in ((group, caching), (group, cache_time),
                         (expiration_group, cache_time)):
        if section is not None:
            # An option the application registered there itself (Keystone
            # does, with its own help text) wins.
            with contextlib.suppress(cfg.DuplicateOptError):
                conf.register_opt(opt, group=section)


def _enabled(conf: cfg.ConfigOpts, section: str, value: ty.Any = None) -> bool:
    """Whether ``section`` memoizes now; ``value`` is Keystone's, ignored."""
    return bool(conf.kvs.memoize_enabled and conf[section].caching)


def should_cache_fn(section: str, conf: cfg.ConfigOpts | None = None
                    ) -> ty.Callable[[ty.Any], bool]:
    """Keystone's ``should_cache_fn``: whether ``section`` memoizes now.

    The returned callable takes a value (ignored, as in Keystone) and
    answers from the current configuration: ``[kvs] memoize_enabled`` and
    ``[section] caching``.
    """
    conf = conf if conf is not None else cfg.CONF
    register_opts(conf, section)
    return functools.partial(_enabled, conf, section)


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
    return functools.partial(MemoizedFunction, conf=conf, group=group,
                             expiration_group=expiration_group, store=store)


class _Unsupported(TypeError):
    """An argument cannot be turned into a stable key."""


class _Bypass(Exception):
    """The store cannot serve this call; run the function uncached."""


def _canonical(value: ty.Any) -> str:
    """A string equal for equal arguments, in every process.

    Scalars use ``repr``, which tells ``1``, ``True``, ``1.0``, ``'1'`` and
    ``b'1'`` apart; unordered containers are sorted by their members'
    strings, so neither insertion order nor hash seeds change the key. A
    datetime is written by its ISO form, never by the ``repr`` of its
    ``tzinfo``, which may hold a memory address.
    """
    kind = type(value)
    if value is None or kind in _REPR_TYPES:
        return repr(value)
    if kind is tuple or kind is list:
        members = list(map(_canonical, value))
    elif kind is dict or kind is set or kind is frozenset:
        # Dictionaries as their (key, value) tuples.
        members = sorted(map(_canonical, value.items() if kind is dict
                             else value))
    elif kind is datetime.datetime:
        members = [value.isoformat(), str(value.fold)]
    elif isinstance(value, enum.Enum):
        return '%s.%s.%s' % (kind.__module__, kind.__qualname__, value.name)
    else:
        raise _Unsupported('cannot key an argument of type %s.%s'
                           % (kind.__module__, kind.__qualname__))
    return '%s(%s)' % (kind.__name__, ','.join(members))


# When each store that failed may be tried again. Kept per store, for every
# function memoized on it, so that one outage is logged once. It ends with
# the next successful write: a store whose reads work but whose locks or
# writes fail is still one outage, not one per call.
_retry_at: 'weakref.WeakKeyDictionary[core.KeyValueStore, float]' = (
    weakref.WeakKeyDictionary())


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
        self._store_or_name = store or DEFAULT_STORE
        self._signature = inspect.signature(fn)
        # A method's instance or class is kept out of keys.
        first = next(iter(self._signature.parameters.values()), None)
        self._skip_first = bool(first and first.name in ('self', 'cls')
                                and first.kind in _POSITIONAL)
        self._name = '%s.%s' % (fn.__module__, fn.__qualname__)
        # Shared with the bound copies __get__ makes.
        self._warned: dict[str, object] = {}

    def __repr__(self) -> str:
        return '<MemoizedFunction %s>' % self._name

    def __get__(self, instance: ty.Any, owner: ty.Any = None) -> ty.Any:
        if instance is None:
            return self
        # A shallow copy shares the store lookup and warnings; calls and
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
        key = self.key(*args, **kwargs)
        with contextlib.suppress(_Bypass):
            store = self._store()
            # delete_multi ignores a missing key.
            self._use(store, store.delete_multi, [key], write=True)

    def refresh(self, *args: ty.Any, **kwargs: ty.Any) -> ty.Any:
        """Compute the result again, store it and return it.

        The result is not stored while memoization is off for this section.

        :raises TypeError: when the arguments cannot form a key.
        """
        args = self._helper_args(args)
        key = self._key(args, kwargs)
        value = self._fn(*args, **kwargs)
        with contextlib.suppress(_Bypass):
            if _enabled(self._conf, self._group):
                self._write(self._store(), key, value)
        return value

    def get(self, *args: ty.Any, **kwargs: ty.Any) -> ty.Any:
        """The cached result of this call, without computing it.

        :raises exception.NotFound: when nothing fresh is cached, or the
            store is unconfigured or failing (logged).
        :raises TypeError: when the arguments cannot form a key.
        """
        key = self.key(*args, **kwargs)
        with contextlib.suppress(_Bypass):
            value, fresh = self._read(self._store(), key)
            if fresh:
                return value
        raise exception.NotFound(key)

    def set(self, value: ty.Any, *args: ty.Any, **kwargs: ty.Any) -> None:
        """Store ``value`` as the result of this call.

        Store failures are logged, not raised.

        :raises TypeError: when the arguments cannot form a key or the
            store cannot hold ``value``'s type.
        :raises ValueError: when the store refuses the value (for example
            ``exception.ValueTooLarge``).
        """
        key = self.key(*args, **kwargs)
        with contextlib.suppress(_Bypass):
            self._write(self._store(), key, value, refused=None)

    def warm(self, *args: ty.Any, **kwargs: ty.Any) -> bool:
        """Queue this call on :data:`warm_queue`'s background thread.

        The worker calls the function as a caller would (computing and
        storing on a miss), so the next call hits. Errors are logged.

        :returns: whether the call is queued (or already waiting);
            ``False`` when the queue is full, memoization is off for this
            section or an argument is not supported.
        """
        args = self._helper_args(args)
        try:
            key = self._key(args, kwargs)
        except TypeError:
            return False
        return _enabled(self._conf, self._group) and warm_queue.put(
            key, functools.partial(self._call, args, kwargs))

    def key(self, *args: ty.Any, **kwargs: ty.Any) -> str:
        """The store key of this call, for debugging.

        :raises TypeError: when the arguments cannot form a key.
        """
        return self._key(self._helper_args(args), kwargs)

    # --- keys and warnings -------------------------------------------------

    def _helper_args(self, args: tuple) -> tuple:
        """A helper's arguments as the call's.

        On a method the helpers take the arguments without the instance,
        or with it first, as Keystone passed them.
        """
        if self._bound and not (args and args[0] is self._bound[0]):
            return self._bound + args
        return args

    def _key(self, args: tuple, kwargs: dict) -> str:
        """The store key of a call.

        :raises TypeError: for a call the signature refuses, or
            :class:`_Unsupported`.
        """
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        items = list(bound.arguments.items())[int(self._skip_first):]
        try:
            return 'memoize:%s(%s)' % (self._name, ','.join(
                '%s=%s' % (name, _canonical(value)) for name, value in items))
        except RecursionError:
            raise _Unsupported('cannot key a self-referencing container'
                               ) from None

    def _warn_once(self, what: str, message: str, *args: ty.Any) -> None:
        marker = object()
        # dict.setdefault is atomic: of threads racing here, one warns.
        if self._warned.setdefault(what, marker) is marker:
            LOG.warning(message, *args)

    # --- the store -----------------------------------------------------------

    def _store(self) -> core.KeyValueStore:
        """The store; :raises _Bypass: while it is not configured."""
        store = self._store_or_name
        if isinstance(store, str):
            # Looked up on every call, so it may be configured after
            # decoration.
            store = core.get_key_value_store(store, conf=self._conf)
        if store.is_configured:
            return store
        self._warn_once('unconfigured', 'Memoization store %r is not '
                        'configured; %s runs uncached until it is',
                        store.name, self._name)
        raise _Bypass()

    def _use(self, store: core.KeyValueStore, call: ty.Callable[..., ty.Any],
             *args: ty.Any, refused: str | None = 'key',
             write: bool = False) -> ty.Any:
        """``call(*args)`` on the store, best effort; the one place for it.

        ``NotFound`` gives None. A key or value the store refuses
        (``TypeError``/``ValueError``) is warned about once per ``refused``
        kind and raises :class:`_Bypass`, unless ``refused`` is None: then
        it is raised. A store fault raises :class:`_Bypass` and starts (or
        extends) an outage of the store, whose start alone is logged: calls
        skip the store for ``[kvs] memoize_dead_retry`` seconds. A
        successful ``write`` ends the outage.
        """
        try:
            result = call(*args)
        except exception.NotFound:
            return None
        except (TypeError, ValueError) as exc:
            if refused is None:
                raise
            # e.g. a value of an unsupported type or too large, or a key
            # too long for a backend with key mangling off.
            self._warn_once(refused, 'Results of %s cannot be memoized in '
                            'store %r: %s', self._name, store.name, exc)
            raise _Bypass() from exc
        except exception.KVSError as exc:
            retry_after = self._conf.kvs.memoize_dead_retry
            retry_at = time.monotonic() + retry_after
            # setdefault is atomic: of threads racing here, one logs.
            if _retry_at.setdefault(store, retry_at) is retry_at:
                # BackendError messages name the backend and server, never
                # a secret.
                LOG.warning('Memoization store %r failed (%r); memoized calls '
                            'run uncached, retrying it every %ss',
                            store.name, exc, retry_after)
            _retry_at[store] = retry_at
            raise _Bypass() from exc
        if write and _retry_at.pop(store, None) is not None:
            LOG.info('Memoization store %r answers again', store.name)
        return result

    def _read(self, store: core.KeyValueStore, key: str
              ) -> tuple[ty.Any, bool]:
        """The result stored under ``key`` and whether it is fresh.

        Results are stored as ``(stored_at, value)``; the value is
        :data:`_MISSING` when there is none.

        :raises _Bypass: when the store fails or cannot take the key.
        """
        entry = self._use(store, store.get, key)
        # Anything else under this key (another writer's format) is a miss.
        if type(entry) is not tuple or len(entry) != 2 or (
                type(entry[0]) is not float):
            return _MISSING, False
        # Seconds results stay valid; 0 for no limit.
        ttl = self._conf[self._expiration_group].cache_time
        if ttl is None:
            ttl = self._conf.kvs.memoize_expiration_time
        return entry[1], not ttl or time.time() - entry[0] <= ttl

    def _write(self, store: core.KeyValueStore, key: str, value: ty.Any,
               refused: str | None = 'value') -> None:
        """Store a result; see :meth:`_use` for errors."""
        self._use(store, store.set, key, (time.time(), value),
                  refused=refused, write=True)

    def _call(self, args: tuple, kwargs: dict) -> ty.Any:
        with contextlib.suppress(_Bypass):
            if _enabled(self._conf, self._group):
                return self._cached(args, kwargs)
        # Off, or the store cannot serve this call (_Bypass is raised only
        # before the function runs).
        return self._fn(*args, **kwargs)

    def _cached(self, args: tuple, kwargs: dict) -> ty.Any:
        """The fresh cached result, or one computed under the key's lock.

        An expired result is returned while the lock's holder recomputes
        it; a miss waits for the lock at most twice the store's
        ``lock_timeout``.

        :raises _Bypass: before the function runs, when the call cannot be
            keyed, the store is unconfigured, skipped or fails, or the
            wait for the lock was too long.
        """
        try:
            key = self._key(args, kwargs)
        except TypeError as exc:
            # A wrong call is left to raise the function's own TypeError.
            if isinstance(exc, _Unsupported):
                self._warn_once('args', 'Calls of %s are not memoized: %s',
                                self._name, exc)
            raise _Bypass() from exc
        store = self._store()
        if time.monotonic() < _retry_at.get(store, -float('inf')):
            raise _Bypass()     # an outage: skipped until the retry time
        value, fresh = self._read(store, key)
        if fresh:
            return value
        lock = self._use(store, store.get_lock, key)
        if not self._use(store, lock.acquire, value is _MISSING,
                         lock.lock_timeout * 2 or MAX_LOCK_WAIT):
            if value is not _MISSING:
                return value
            LOG.debug('Gave up waiting for %s computed elsewhere', self._name)
            raise _Bypass()
        try:
            # Whoever held the lock before has probably stored it.
            value, fresh = self._read(store, key)
            if fresh:
                return value
            value = self._fn(*args, **kwargs)
            with contextlib.suppress(_Bypass):
                self._write(store, key, value)
            return value
        finally:
            with contextlib.suppress(_Bypass):
                self._use(store, lock.release)


class _Work:
    """One process's queue: its waiting calls and the thread running them."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        # key -> call, oldest first; a call waits at most once.
        self.waiting: dict[str, ty.Callable[[], ty.Any]] = {}
        self.running = 0
        self.thread: threading.Thread | None = None


def _run_one(task: ty.Callable[[], ty.Any]) -> None:
    try:
        task()
    except Exception:
        LOG.warning('Warming a memoized result failed', exc_info=True)


def _work_forever(work: _Work) -> None:
    while True:
        with work.cond:
            work.cond.wait_for(lambda: work.waiting)
            task = work.waiting.pop(next(iter(work.waiting)))
            work.running += 1
        try:
            _run_one(task)
        finally:
            with work.cond:
                work.running -= 1
                work.cond.notify_all()


class WarmQueue:
    """A bounded queue of calls computed by one background daemon thread.

    :meth:`MemoizedFunction.warm` adds to the module's :data:`warm_queue`.
    A call already waiting is not queued twice. Tests can wait for the
    queue with :meth:`join`.

    Each process has its own calls and thread: a forked child (whoever
    forked it) starts with an empty queue and starts its own thread on its
    first :meth:`put`, since the parent's thread does not exist there.
    """

    def __init__(self, maxsize: int = 1000) -> None:
        #: Most calls waiting; further :meth:`put` calls are refused.
        self.maxsize = maxsize
        self._work = _process.PerProcess(_Work)

    @property
    def size(self) -> int:
        """Calls waiting, not counting the one being computed."""
        return len(self._work.get().waiting)

    @property
    def unfinished(self) -> int:
        """Calls waiting or being computed."""
        work = self._work.get()
        return len(work.waiting) + work.running

    def put(self, key: str, task: ty.Callable[[], ty.Any]) -> bool:
        """Queue ``task`` under ``key``.

        In a uWSGI master that has yet to fork its workers, ``task`` runs
        at once in the calling thread instead: a thread running at the
        fork would hang the workers (see
        :func:`oslo_kvs._process.will_fork_without_hooks`).

        :returns: ``True`` when queued, already waiting or run at once,
            ``False`` when the queue is full.
        """
        if _process.will_fork_without_hooks():
            _run_one(task)
            return True
        work = self._work.get()
        with work.cond:
            if key not in work.waiting and len(work.waiting) >= self.maxsize:
                return False
            # A call already waiting keeps its place.
            work.waiting[key] = task
            work.cond.notify_all()
            if work.thread is None or not work.thread.is_alive():
                work.thread = threading.Thread(
                    target=_work_forever, args=(work,),
                    name='oslo-kvs-memoize-warm', daemon=True)
                work.thread.start()
        return True

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every queued call is computed.

        Do not call it from a function being warmed.

        :returns: ``False`` if ``timeout`` seconds passed first.
        """
        work = self._work.get()
        with work.cond:
            return work.cond.wait_for(
                lambda: not (work.waiting or work.running), timeout)

    def clear(self) -> int:
        """Drop the waiting calls; return how many were dropped."""
        work = self._work.get()
        with work.cond:
            dropped, work.waiting = len(work.waiting), {}
            work.cond.notify_all()
        return dropped


#: The queue behind :meth:`MemoizedFunction.warm`, shared by all functions.
warm_queue = WarmQueue()
