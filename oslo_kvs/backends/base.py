"""The small API every oslo_kvs backend implements.

A backend is a dogpile.cache :class:`~dogpile.cache.api.CacheBackend` that
stores bytes under already-mangled string keys. It knows its server and
nothing of the store's rules: the store checks keys, serializes, protects
and mangles before a backend sees anything.

On top of dogpile's get/set/delete (and their ``*_multi`` forms) a backend
provides what dogpile lacks: atomic ``add``, a ``delete`` that says whether
the key existed, a token lock, and per-key expiry (``expire_time`` with
``no_expiry_keys``), which lives here so that every backend applies the
same rule.
"""

import dataclasses
import math
import threading
import time
import typing as ty

from dogpile.cache import api
from oslo_config import types

from oslo_kvs import exception

NO_VALUE = api.NO_VALUE


@dataclasses.dataclass(frozen=True)
class Option:
    """A backend argument: its type, default and historical aliases.

    ``type`` is an oslo.config type, so strings from config files are
    coerced the way oslo.config coerces them (``"False"`` is false).
    ``secret`` arguments are never echoed in error messages.
    """

    name: str
    type: ty.Callable[[ty.Any], ty.Any]
    default: ty.Any = None
    aliases: tuple[str, ...] = ()
    secret: bool = False
    help: str = ''


def coerce(owner: str, name: str, otype: ty.Callable[[ty.Any], ty.Any],
           value: ty.Any, secret: bool = False) -> ty.Any:
    """Coerce ``value`` with an oslo.config type or raise a clear error.

    :raises exception.ConfigurationError: naming ``owner`` and ``name`` and,
        unless ``secret``, the rejected value.
    """
    if isinstance(value, bool) and isinstance(otype, (types.Integer,
                                                      types.Float)):
        # bool is an int subclass; True as a timeout is a mistake.
        error: Exception | None = TypeError('a boolean is not a number')
    else:
        try:
            return otype(value)
        except (ValueError, TypeError, AttributeError) as exc:
            error = exc
    shown = '<secret>' if secret else repr(value)
    raise exception.ConfigurationError(
        'Invalid value %s for argument %r of %s: %s'
        % (shown, name, owner, error)) from None


def parse_arguments(owner: str, options: ty.Iterable[Option],
                    arguments: ty.Mapping[str, ty.Any]) -> dict[str, ty.Any]:
    """Validate backend ``arguments`` against ``options``.

    Unknown names are refused (a typo must not be ignored), aliases are
    folded into the option's name, and ``None`` means "the default".
    """
    options = list(options)
    known = {}
    for opt in options:
        for alias in (opt.name,) + opt.aliases:
            known[alias] = opt
    unknown = sorted(set(arguments) - set(known))
    if unknown:
        raise exception.ConfigurationError(
            'Unknown argument(s) %s for %s; valid arguments are: %s'
            % (', '.join(unknown), owner, ', '.join(sorted(known))))
    parsed = {}
    for opt in options:
        given = [n for n in (opt.name,) + opt.aliases if n in arguments]
        if len(given) > 1:
            raise exception.ConfigurationError(
                'Arguments %s of %s are aliases of each other; give only '
                'one' % (' and '.join(given), owner))
        value = arguments[given[0]] if given else None
        if value is None:
            parsed[opt.name] = opt.default
        else:
            parsed[opt.name] = coerce(owner, given[0], opt.type, value,
                                      opt.secret)
    return parsed


EXPIRE_TIME = Option(
    'expire_time', types.Float(min=0), 0,
    help='Seconds after which a value expires; 0 means never.')
NO_EXPIRY_KEYS = Option(
    'no_expiry_keys', types.List(), [],
    help='Keys that never expire, whatever expire_time says.')


class Backend(api.CacheBackend):
    """Base class of oslo_kvs backends: bytes in, bytes out.

    Subclasses set :attr:`name` and extend :attr:`options`, then implement
    the ``*_serialized`` methods, :meth:`delete_multi`,
    :meth:`delete_existing`, :meth:`add_serialized`, :meth:`acquire_lock`
    and :meth:`release_lock`.
    """

    #: The name users give to ``configure()``.
    name: ty.ClassVar[str] = 'openstack.kvs.Backend'
    #: Arguments this backend accepts.
    options: ty.ClassVar[tuple[Option, ...]] = (EXPIRE_TIME, NO_EXPIRY_KEYS)
    #: True when :meth:`acquire_lock` excludes other processes and hosts.
    distributed_lock: ty.ClassVar[bool] = False
    #: True when values never leave this process (no server to distrust).
    local: ty.ClassVar[bool] = False
    #: Keystone's switch: prefer the backend's own key mangler over the
    #: one given to ``configure()``.
    use_backend_key_mangler: ty.ClassVar[bool] = False
    #: dogpile's attribute; a backend may set a mangler of its own.
    key_mangler: ty.Callable[[str], str] | None = None

    def __init__(self, arguments: ty.Mapping[str, ty.Any]) -> None:
        self.args = parse_arguments(self.name, self.options, arguments)
        self.expire_time: float = self.args['expire_time']
        self._no_expiry_keys: list[str] = list(self.args['no_expiry_keys'])
        self._no_expiry_stored: frozenset[str] = frozenset()

    def bind_key_transform(self, transform: ty.Callable[[str], str]) -> None:
        """Learn how the store turns user keys into stored keys.

        The store calls this once at configure time so ``no_expiry_keys``
        (given as user keys) match the stored keys the backend receives,
        whatever key mangler is in use.
        """
        self._no_expiry_stored = frozenset(
            transform(key) for key in self._no_expiry_keys)

    def ttl_for(self, key: str) -> float:
        """Seconds ``key`` should live; 0 means it never expires."""
        if key in self._no_expiry_stored:
            return 0
        return self.expire_time

    def check_key(self, key: str) -> None:
        """Refuse a key the server cannot store, before anything is sent.

        Only called when key mangling is off; mangled keys always fit.
        """

    def servers(self) -> list[str]:
        """The servers this backend talks to, for messages and ``ping``."""
        return []

    # dogpile's object API maps onto the bytes API.
    def get(self, key: str) -> ty.Any:
        return self.get_serialized(key)

    def get_multi(self, keys: ty.Sequence[str]) -> list[ty.Any]:
        return self.get_serialized_multi(keys)

    def set(self, key: str, value: ty.Any) -> None:
        self.set_serialized(key, value)

    def set_multi(self, mapping: ty.Mapping[str, ty.Any]) -> None:
        self.set_serialized_multi(mapping)

    def delete(self, key: str) -> None:
        self.delete_existing(key)

    def get_serialized_multi(self, keys: ty.Sequence[str]) -> list[ty.Any]:
        """Values for ``keys`` in order; :data:`NO_VALUE` where missing."""
        raise NotImplementedError

    def set_serialized_multi(self, mapping: ty.Mapping[str, bytes]) -> None:
        """Store every item, each with its own expiry."""
        raise NotImplementedError

    def delete_multi(self, keys: ty.Sequence[str]) -> None:
        """Remove the keys; missing ones are ignored."""
        raise NotImplementedError

    def delete_existing(self, key: str) -> bool:
        """Remove ``key``; return whether it was there."""
        raise NotImplementedError

    def add_serialized(self, key: str, value: bytes) -> bool:
        """Store ``value`` only if ``key`` is absent, atomically.

        Return whether it was stored.
        """
        raise NotImplementedError

    def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        """Take the lock ``key`` for ``token`` unless someone holds it.

        ``ttl`` (seconds, 0 = never) bounds how long an abandoned lock
        stays; a backend whose clock is coarse rounds it up, never down.
        """
        raise NotImplementedError

    def release_lock(self, key: str, token: str) -> bool:
        """Free the lock ``key`` only if ``token`` still holds it."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; the backend is not used afterwards."""


class LocalLocks:
    """Token locks that exclude the threads of one process.

    Used by the memory backend and by backends that have no lock of their
    own. Expired entries are dropped when the same lock is next taken.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held: dict[str, tuple[str, float]] = {}

    def acquire(self, key: str, token: str, ttl: float) -> bool:
        now = time.monotonic()
        with self._mutex:
            holder = self._held.get(key)
            if holder is not None and holder[1] > now:
                return False
            self._held[key] = (token, now + ttl if ttl else math.inf)
            return True

    def release(self, key: str, token: str) -> bool:
        with self._mutex:
            holder = self._held.get(key)
            if holder is None or holder[0] != token:
                return False
            del self._held[key]
            return True

    def after_fork(self) -> None:
        """In a forked child: a fresh mutex, as a thread may hold the old.

        Held locks stay held until released or expired.
        """
        self._mutex = threading.Lock()


class DogpileAdapter(Backend):
    """Gives any registered dogpile.cache backend the oslo_kvs backend API.

    Reads and writes go to the dogpile backend. ``add`` and ``delete`` are
    built from get/set/delete under the backend's own mutex when it has one
    (else a process-local lock), so they are atomic only as far as that
    mutex reaches. Locks are process-local. Expiry is whatever the dogpile
    backend's own arguments configure.
    """

    def __init__(self, backend: api.CacheBackend, name: str) -> None:
        self.name = name
        super().__init__({})
        self.backend = backend
        self._local = LocalLocks()
        self._mutex = threading.Lock()

    def _atomically(self, key: str) -> ty.ContextManager[ty.Any]:
        mutex = self.backend.get_mutex(key)
        return _MutexContext(mutex) if mutex is not None else self._mutex

    def get_serialized(self, key):
        return self.backend.get_serialized(key)

    def get_serialized_multi(self, keys):
        return self.backend.get_serialized_multi(keys)

    def set_serialized(self, key, value):
        self.backend.set_serialized(key, value)

    def set_serialized_multi(self, mapping):
        self.backend.set_serialized_multi(mapping)

    def delete_multi(self, keys):
        self.backend.delete_multi(keys)

    def delete_existing(self, key):
        with self._atomically(key):
            if self.backend.get_serialized(key) is NO_VALUE:
                return False
            self.backend.delete(key)
            return True

    def add_serialized(self, key, value):
        with self._atomically(key):
            if self.backend.get_serialized(key) is not NO_VALUE:
                return False
            self.backend.set_serialized(key, value)
            return True

    def acquire_lock(self, key, token, ttl):
        return self._local.acquire(key, token, ttl)

    def release_lock(self, key, token):
        return self._local.release(key, token)


class _MutexContext:
    """A dogpile CacheMutex as a context manager."""

    def __init__(self, mutex: api.CacheMutex) -> None:
        self._mutex = mutex

    def __enter__(self) -> None:
        self._mutex.acquire()

    def __exit__(self, *exc_info: ty.Any) -> None:
        self._mutex.release()
