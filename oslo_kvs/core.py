"""The store registry, :class:`KeyValueStore` and :class:`KeyValueStoreLock`.

A write flows one way: check the key, serialize, protect, mangle the key,
hand bytes to the backend. A read flows back: backend, verify,
deserialize. The store owns the API rules (missing keys, locks, types);
backends only move bytes.
"""

import functools
import hashlib
import logging
import random
import secrets
import threading
import time
import typing as ty
import urllib.parse
import weakref

# dogpile resolves backend names with this loader; oslo_kvs needs the class
# before configuring the region so bad arguments fail without side effects.
from dogpile.cache.backends import _backend_loader
from dogpile.cache import proxy as dogpile_proxy
from dogpile.cache import region as dogpile_region
from dogpile.cache import util as dogpile_util
from oslo_config import cfg
from oslo_config import types
from oslo_utils import importutils

from oslo_kvs import backends
from oslo_kvs.backends import base
from oslo_kvs import exception
from oslo_kvs import opts
from oslo_kvs import protection
from oslo_kvs import serialization

LOG = logging.getLogger(__name__)

#: Keystone's default key mangler, kept for callers that name it.
sha1_mangle_key = dogpile_util.sha1_mangle_key


def sha256_mangle_key(key: str) -> str:
    """The default key mangler: a 64-character hex SHA-256 of the key.

    Fixed length and plain ASCII, so every backend accepts it, and
    collision resistant, so no one can craft two keys that meet.
    """
    return hashlib.sha256(key.encode('utf-8', 'surrogatepass')).hexdigest()


# Hot keys (a token checked on every request) are hashed once; manglers
# are pure functions of the key, and the key includes the namespace.
_cached_sha256 = functools.lru_cache(maxsize=8192)(sha256_mangle_key)

_BOOL = types.Boolean()
_LOCK_TIMEOUT = types.Float(min=0)
_LIST = types.List()
_SERIALIZER = types.String(choices=serialization.SERIALIZERS)


class _Configured:
    """Everything a configured store needs on its hot path.

    Built completely by ``configure()`` and then published with a single
    assignment, so other threads see either no configuration or all of it.
    """

    __slots__ = ('io', 'backend', 'mangler', 'data_prefix', 'lock_prefix',
                 'locking', 'lock_timeout', 'serializer', 'protector')

    def __init__(self, io, backend, mangler, data_prefix, lock_prefix,
                 locking, lock_timeout, serializer, protector):
        self.io = io
        self.backend = backend
        self.mangler = mangler
        self.data_prefix = data_prefix
        self.lock_prefix = lock_prefix
        self.locking = locking
        self.lock_timeout = lock_timeout
        self.serializer = serializer
        self.protector = protector

    def stored_key(self, prefix: str, key: ty.Any) -> str:
        if type(key) is not str:
            raise TypeError('KVS keys must be str, not %s'
                            % type(key).__name__)
        full = prefix + key
        if self.mangler is None:
            self.backend.check_key(full)
            return full
        return self.mangler(full)

    def data_key(self, key: ty.Any) -> str:
        return self.stored_key(self.data_prefix, key)

    def data_keys(self, keys: list[ty.Any]) -> list[str]:
        """:meth:`data_key` of each key, in one pass for multi operations."""
        mangle, prefix = self.mangler, self.data_prefix
        if mangle is None or any(type(key) is not str for key in keys):
            return [self.data_key(key) for key in keys]
        return [mangle(prefix + key) for key in keys]

    def lock_key(self, key: ty.Any) -> str:
        return self.stored_key(self.lock_prefix, key)


class KeyValueStore:
    """A named key-value store over a configurable backend.

    Get one with :func:`get_key_value_store`, then call :meth:`configure`
    once. The store's name is a namespace: two stores with different names
    on one server never see each other's keys.
    """

    def __init__(self, name: str,
                 kvs_region: dogpile_region.CacheRegion | None = None,
                 conf: cfg.ConfigOpts | None = None) -> None:
        if not isinstance(name, str):
            # Keystone's KeyValueStore(kvs_region) took no name.
            raise TypeError(
                'KeyValueStore() takes the store name (a str) first, not '
                '%s; Keystone-style KeyValueStore(region) is now '
                'oslo_kvs.get_key_value_store(name, kvs_region=region)'
                % type(name).__name__)
        self.name = name
        self._conf = conf if conf is not None else cfg.CONF
        opts.register_opts(self._conf)
        self._region = kvs_region
        self._configure_lock = threading.Lock()
        self._state: _Configured | None = None

    def __repr__(self) -> str:
        backend = self._state.backend.name if self._state else None
        return '<KeyValueStore %r backend=%s>' % (self.name, backend)

    @property
    def is_configured(self) -> bool:
        """Whether :meth:`configure` has completed."""
        return self._state is not None

    def _configured(self) -> _Configured:
        state = self._state
        if state is None:
            raise exception.NotConfigured(self.name)
        return state

    # --- configuration -------------------------------------------------

    def configure(self, backing_store: str,
                  key_mangler: ty.Callable[[str], str] | None = None,
                  proxy_list: ty.Sequence[ty.Any] | None = None,
                  locking: bool | str = True,
                  **region_config_args: ty.Any) -> None:
        """Attach the store to a backend; allowed once per store.

        :param backing_store: an ``openstack.kvs.*`` name (``Memory``,
            ``Memcached``, ``Redis``, ``MongoDB`` or one registered through
            ``[kvs] backends``) or any registered dogpile.cache backend.
        :param key_mangler: a callable turning keys into stored keys; see
            the user guide for its precedence over the backend's own.
        :param proxy_list: dogpile.cache ``ProxyBackend`` classes,
            instances or dotted paths; the first listed is outermost.
        :param locking: ``False`` makes :meth:`get_lock` locks no-ops.
        :param region_config_args: ``lock_timeout`` (seconds, default
            ``[kvs] default_lock_timeout``), ``value_protection``,
            ``protection_keys`` and ``serializer`` (defaults from
            ``[kvs]``); everything else goes to the backend.
        :raises exception.ConfigurationError: for any bad argument, before
            anything is changed.
        :raises exception.AlreadyConfigured: when already configured,
            including by another thread that won a race.
        """
        with self._configure_lock:
            if self._state is not None:
                raise exception.AlreadyConfigured(self.name)
            self._state = self._build(backing_store, key_mangler,
                                      proxy_list, locking,
                                      dict(region_config_args))
        LOG.info('KVS store %r configured with backend %s', self.name,
                 backing_store)

    def _build(self, backing_store, key_mangler, proxy_list, locking,
               args) -> _Configured:
        owner = 'KVS store %r' % self.name
        if not isinstance(backing_store, str):
            raise exception.ConfigurationError(
                'backing_store of %s must be a backend name, not %r'
                % (owner, backing_store))
        locking = base.coerce(owner, 'locking', _BOOL, locking)
        lock_timeout = base.coerce(
            owner, 'lock_timeout', _LOCK_TIMEOUT,
            args.pop('lock_timeout', self._conf.kvs.default_lock_timeout))
        if key_mangler is not None and not callable(key_mangler):
            raise exception.ConfigurationError(
                'key_mangler of %s must be callable, not %r'
                % (owner, key_mangler))
        prefix = '%s:%s:' % (
            urllib.parse.quote(self._conf.kvs.config_prefix, safe=''),
            urllib.parse.quote(self.name, safe=''))
        protector = protection.make_protector(
            args.pop('value_protection', self._conf.kvs.value_protection),
            base.coerce(owner, 'protection_keys', _LIST,
                        args.pop('protection_keys',
                                 self._conf.kvs.protection_keys),
                        secret=True),
            prefix)
        serializer = serialization.get_serializer(base.coerce(
            owner, 'serializer', _SERIALIZER,
            args.pop('serializer', self._conf.kvs.serializer)))
        proxies = [_load_proxy(item) for item in proxy_list or ()]
        backends.register_backends(self._conf.kvs.backends)
        backend_cls = _load_backend_class(backing_store)
        if (serializer.name == 'pickle' and protector is None and
                not getattr(backend_cls, 'local', False)):
            raise exception.ConfigurationError(
                'serializer=pickle on %s needs value_protection (mac or '
                'encrypt): unpickling unauthenticated bytes from a server '
                'runs whatever code they hold' % backing_store)
        if not issubclass(backend_cls, base.Backend):
            # Foreign dogpile backends expire values their own way.
            for generic in ('expire_time', 'no_expiry_keys'):
                if generic in args:
                    raise exception.ConfigurationError(
                        'Argument %r is not supported by dogpile backend %s;'
                        ' use that backend\'s own expiry arguments'
                        % (generic, backing_store))

        region = self._region or dogpile_region.make_region(
            name='oslo_kvs:%s' % self.name)
        if region.is_configured:
            raise exception.AlreadyConfigured(self.name)
        try:
            region.configure(backing_store, arguments=args, wrap=proxies)
        except exception.KVSError:
            raise
        except Exception as exc:
            # Only argument names: a foreign backend may echo values, and
            # values can be passwords.
            raise exception.ConfigurationError(
                'Backend %s could not be created with arguments (%s): %s'
                % (backing_store, ', '.join(sorted(args)),
                   type(exc).__name__)) from exc

        actual = region.actual_backend
        backend = (actual if isinstance(actual, base.Backend)
                   else base.DogpileAdapter(actual, backing_store))
        mangler = self._choose_mangler(key_mangler, actual)
        state = _Configured(io=region.backend, backend=backend,
                            mangler=mangler, data_prefix=prefix + 'k:',
                            lock_prefix=prefix + 'l:', locking=locking,
                            lock_timeout=lock_timeout, serializer=serializer,
                            protector=protector)
        backend.bind_key_transform(state.data_key)
        self._region = region
        return state

    def _choose_mangler(self, explicit, backend):
        """Pick the key mangler with Keystone's precedence.

        A backend that insists on its own mangler, then the explicit one,
        then the backend's, then the default.
        """
        if not self._conf.kvs.enable_key_mangler:
            LOG.info('KVS store %r: key mangling disabled', self.name)
            return None
        own = getattr(backend, 'key_mangler', None)
        if own is not None and (explicit is None or getattr(
                backend, 'use_backend_key_mangler', False)):
            return own
        return explicit if explicit is not None else _cached_sha256

    # --- data operations -----------------------------------------------

    @staticmethod
    def _encode(state: _Configured, key: str, value: ty.Any) -> bytes:
        data = state.serializer.dumps(value)
        if state.protector is not None:
            data = state.protector.seal(key, data)
        return data

    def _decode(self, state: _Configured, key: str, data: bytes) -> ty.Any:
        try:
            if state.protector is not None:
                data = state.protector.open(key, data)
            return state.serializer.loads(data)
        except (ValueError, exception.IntegrityError):
            # Neither the value nor any secret goes to the log.
            LOG.warning('KVS store %r: a stored value failed verification '
                        'or decoding and is treated as missing', self.name)
            raise exception.IntegrityError(key) from None

    def get(self, key: str) -> ty.Any:
        """Return the value of ``key``.

        :raises exception.NotFound: when the key is missing or expired.
        """
        state = self._configured()
        data = state.io.get_serialized(state.data_key(key))
        if data is base.NO_VALUE:
            raise exception.NotFound(key)
        return self._decode(state, key, data)

    def get_multi(self, keys: ty.Iterable[str]) -> list[ty.Any]:
        """Return the values of ``keys``, in the same order.

        :raises exception.NotFound: naming every missing key in ``target``.
        """
        state = self._configured()
        keys = list(keys)
        stored = state.data_keys(keys)
        found = state.io.get_serialized_multi(stored) if stored else []
        missing = [key for key, data in zip(keys, found)
                   if data is base.NO_VALUE]
        if missing:
            raise exception.NotFound(missing)
        return [self._decode(state, key, data)
                for key, data in zip(keys, found)]

    def set(self, key: str, value: ty.Any,
            lock: 'KeyValueStoreLock | None' = None) -> None:
        """Store ``value`` under ``key``; with ``lock``, check it first."""
        state = self._configured()
        stored = state.data_key(key)
        self._check_lock(key, lock)
        state.io.set_serialized(stored, self._encode(state, key, value))

    def set_multi(self, mapping: ty.Mapping[str, ty.Any]) -> None:
        """Store every item of ``mapping``."""
        state = self._configured()
        payload = {state.data_key(key): self._encode(state, key, value)
                   for key, value in mapping.items()}
        if payload:
            state.io.set_serialized_multi(payload)

    def delete(self, key: str,
               lock: 'KeyValueStoreLock | None' = None) -> None:
        """Remove ``key``.

        :raises exception.NotFound: when the key was not there.
        """
        state = self._configured()
        stored = state.data_key(key)
        self._check_lock(key, lock)
        if not state.backend.delete_existing(stored):
            raise exception.NotFound(key)

    def delete_multi(self, keys: ty.Iterable[str]) -> None:
        """Remove ``keys``; missing keys are ignored."""
        state = self._configured()
        stored = state.data_keys(list(keys))
        if stored:
            state.io.delete_multi(stored)

    def add(self, key: str, value: ty.Any) -> bool:
        """Store ``value`` only if ``key`` is absent, atomically.

        :returns: whether the value was stored.
        """
        state = self._configured()
        stored = state.data_key(key)
        return state.backend.add_serialized(stored,
                                            self._encode(state, key, value))

    # --- locks ---------------------------------------------------------

    def get_lock(self, key: str) -> 'KeyValueStoreLock':
        """A lock on ``key``, to pass to :meth:`set` and :meth:`delete`."""
        state = self._configured()
        return KeyValueStoreLock(self, key, state.lock_key(key), state)

    def _check_lock(self, key: str, lock: 'KeyValueStoreLock | None') -> None:
        if lock is None:
            return
        if not isinstance(lock, KeyValueStoreLock) or lock.store is not self:
            raise exception.LockError(
                'lock must be a KeyValueStoreLock from store %r' % self.name)
        if lock.key != key:
            raise exception.LockError(
                'lock is for another key (%s) than the target (%s)'
                % (exception._describe(lock.key), exception._describe(key)))
        if not lock.active:
            raise exception.LockError(
                'lock for %s is not held' % exception._describe(key))
        if lock.expired:
            raise exception.LockTimeout(key)


class KeyValueStoreLock:
    """A lock on one key of a store.

    Distributed across processes and hosts on backends that can do it,
    in-process on the memory backend. A lock whose holder never releases it
    frees itself after the store's ``lock_timeout``; the holder sees
    :attr:`expired` then and writes made with it raise ``LockTimeout``.
    """

    #: Longest pause between two attempts to take a busy lock.
    max_backoff = 0.05

    def __init__(self, store: KeyValueStore, key: str, lock_key: str,
                 state: _Configured) -> None:
        self.store = store
        self.key = key
        self._lock_key = lock_key
        self._backend = state.backend
        self.enabled = state.locking
        self.lock_timeout = state.lock_timeout
        self.active = False
        self._token: str | None = None
        self._acquired_at = 0.0

    def __repr__(self) -> str:
        return '<KeyValueStoreLock %s active=%s>' % (
            exception._describe(self.key), self.active)

    def acquire(self, blocking: bool = True,
                timeout: float | None = None) -> bool:
        """Take the lock, waiting with short backoff while it is busy.

        :param blocking: ``False`` tries once.
        :param timeout: the longest wait in seconds (None: no limit).
        :returns: whether the lock is now held.
        :raises exception.LockError: when this object already holds it.
        """
        if self.active:
            raise exception.LockError(
                'lock for %s is already held' % exception._describe(self.key))
        if not self.enabled:
            self._acquired_at = time.monotonic()
            self.active = True
            return True
        token = secrets.token_hex(16)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while True:
            # Stamped before the request, so local expiry comes no later
            # than the server's.
            started = time.monotonic()
            if self._backend.acquire_lock(self._lock_key, token,
                                          self.lock_timeout):
                break
            if not blocking or (deadline is not None and started >= deadline):
                return False
            pause = delay * random.uniform(0.5, 1.0)
            if deadline is not None:
                pause = min(pause, max(deadline - time.monotonic(), 0))
            time.sleep(pause)
            delay = min(delay * 2, self.max_backoff)
        self._token = token
        self._acquired_at = started
        self.active = True
        return True

    def release(self) -> None:
        """Free the lock; only this holder's own lock is ever removed.

        :raises exception.LockError: when the lock is not held.
        """
        if not self.active:
            raise exception.LockError(
                'lock for %s is not held' % exception._describe(self.key))
        expired = self.expired
        self.active = False
        if self.enabled:
            token, self._token = self._token, None
            self._backend.release_lock(self._lock_key, token)
        if expired:
            LOG.warning('KVS store %r: a lock was held longer than its '
                        'lock_timeout (%ss) and may have been taken by '
                        'another holder meanwhile', self.store.name,
                        self.lock_timeout)

    @property
    def expired(self) -> bool:
        """Whether the held lock outlived ``lock_timeout``."""
        return bool(self.active and self.lock_timeout and
                    time.monotonic() >= self._acquired_at + self.lock_timeout)

    def __enter__(self) -> 'KeyValueStoreLock':
        self.acquire()
        return self

    def __exit__(self, *exc_info: ty.Any) -> None:
        self.release()


def _load_proxy(item: ty.Any) -> ty.Any:
    """Resolve a ``proxy_list`` entry to a ProxyBackend class or instance."""
    original = item
    if isinstance(item, str):
        try:
            item = importutils.import_class(item)
        except (ImportError, AttributeError, ValueError) as exc:
            raise exception.ConfigurationError(
                'Proxy %r cannot be imported: %s' % (original, exc)) from exc
    proxy_cls = dogpile_proxy.ProxyBackend
    if (isinstance(item, type) and issubclass(item, proxy_cls)) or \
            isinstance(item, proxy_cls):
        return item
    raise exception.ConfigurationError(
        'Proxy %r is not a dogpile.cache.proxy.ProxyBackend' % (original,))


def _load_backend_class(name: str) -> type:
    try:
        return _backend_loader.load(name)
    except _backend_loader.NotFound:
        raise exception.ConfigurationError(
            'Unknown KVS backend %r; known oslo_kvs backends: %s (or any '
            'registered dogpile.cache backend)'
            % (name, ', '.join(backends.registered()))) from None
    except ImportError as exc:
        raise exception.ConfigurationError(
            'KVS backend %r cannot be imported: %s' % (name, exc)) from exc


_registry: 'weakref.WeakValueDictionary[str, KeyValueStore]' = (
    weakref.WeakValueDictionary())
_registry_lock = threading.Lock()


def get_key_value_store(name: str,
                        kvs_region: dogpile_region.CacheRegion | None = None,
                        conf: cfg.ConfigOpts | None = None) -> KeyValueStore:
    """Return the store called ``name``, creating it when needed.

    The same name gives the same object while anyone holds a reference to
    it; once every reference is gone, the next call makes a fresh store.
    ``kvs_region`` and ``conf`` only shape a store when this call creates
    it; for an existing store they are ignored.

    :param kvs_region: an unconfigured dogpile.cache region for the store to
        configure and use (Keystone's parameter); by default the store makes
        its own.
    :param conf: the ``ConfigOpts`` holding ``[kvs]``; ``cfg.CONF`` by
        default.
    """
    if not isinstance(name, str):
        raise TypeError('KVS store names must be str, not %s'
                        % type(name).__name__)
    with _registry_lock:
        store = _registry.get(name)
        if store is None:
            store = KeyValueStore(name, kvs_region=kvs_region, conf=conf)
            _registry[name] = store
        return store
