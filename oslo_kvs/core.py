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

"""The store registry and :class:`KeyValueStore`.

A write flows one way: check the key, serialize, protect, mangle the key,
hand bytes to the backend. A read flows back: backend, verify,
deserialize. The store owns the API rules (missing keys, locks, types);
backends only move bytes. Locks are in :mod:`oslo_kvs.locking`.
"""

import contextvars
import hashlib
import logging
import re
import typing as ty
import urllib.parse
import weakref

from dogpile.cache import exception as dogpile_exception
from dogpile.cache import proxy as dogpile_proxy
from dogpile.cache import region as dogpile_region
from dogpile.cache import util as dogpile_util
from oslo_config import cfg
from oslo_config import types
from oslo_utils import importutils

from oslo_kvs import _process
from oslo_kvs import backends
from oslo_kvs.backends import base
from oslo_kvs import exception
from oslo_kvs import locking as _locking
from oslo_kvs.locking import KeyValueStoreLock  # noqa: F401 (public name)
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


def _key_function(prefix: str, mangler: ty.Callable[[str], str] | None,
                  check_key: ty.Callable[[str], None]
                  ) -> ty.Callable[[ty.Any], str]:
    """The stored key of a user key in the namespace ``prefix``.

    Always ``mangler(prefix + key)``, or the checked ``prefix + key``
    without a mangler; the function raises TypeError for a key that is not
    exactly a str.
    """
    def refuse(key: ty.Any) -> ty.NoReturn:
        raise TypeError('KVS keys must be str, not %s' % type(key).__name__)

    if mangler is sha256_mangle_key:
        # The prefix's hash state is made once and copied per key. UTF-8
        # (with surrogatepass) encodes code point by code point, so this
        # hashes exactly the bytes sha256_mangle_key(prefix + key) would.
        start = hashlib.sha256(prefix.encode('utf-8', 'surrogatepass'))

        def stored(key: ty.Any) -> str:
            if type(key) is not str:
                refuse(key)
            digest = start.copy()
            digest.update(key.encode('utf-8', 'surrogatepass'))
            return digest.hexdigest()
    elif mangler is None:
        def stored(key: ty.Any) -> str:
            if type(key) is not str:
                refuse(key)
            full = prefix + key
            check_key(full)
            return full
    else:
        def stored(key: ty.Any) -> str:
            if type(key) is not str:
                refuse(key)
            return mangler(prefix + key)
    return stored


#: Most user keys a store remembers the stored key of. Hot keys (a token
#: checked on every request) are namespaced and mangled once; keys that
#: are seen once (random ones) empty the memory when it is full rather
#: than grow it.
KEY_CACHE_SIZE = 4096

_BOOL = types.Boolean()
_SECONDS = base.seconds()
_SERIALIZER = types.String(choices=serialization.SERIALIZERS)

#: ``configure()`` arguments the store keeps whatever the backend; every
#: other argument goes to the backend. A backend's historical name for
#: ``expire_time`` (:func:`store_arguments`) is the store's too.
EXPIRY_ARGUMENTS = frozenset(['expire_time', 'no_expiry_keys'])
STORE_ARGUMENTS = frozenset(['lock_timeout', 'lock_window',
                             'value_protection', 'protection_keys',
                             'serializer']) | EXPIRY_ARGUMENTS


def store_arguments(backend_cls: type | None = None) -> frozenset[str]:
    """The ``configure()`` argument names the store keeps for a backend."""
    alias = getattr(backend_cls, 'expire_time_alias', None)
    return STORE_ARGUMENTS | {alias} if alias else STORE_ARGUMENTS


def _str_list(owner: str, name: str, value: ty.Any) -> list[str]:
    """A list of str given as any iterable of str or a comma-separated str.

    The value is never quoted: ``protection_keys`` are secrets.
    """
    if base.is_unset(value):
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(',') if item.strip()]
    if isinstance(value, (list, tuple, set, frozenset)) and all(
            isinstance(item, str) for item in value):
        return list(value)
    raise exception.ConfigurationError(
        'Invalid value for argument %r of %s: expected a list, tuple or set '
        'of str, or a comma-separated string' % (name, owner))


def expiry_arguments(owner: str, backend_cls: type | None,
                     args: dict[str, ty.Any]
                     ) -> tuple[float | None, list[str]]:
    """The store's ``expire_time`` (or its alias) and ``no_expiry_keys``.

    Taken out of ``args``; ``oslo-kvs doctor`` reads them the same way.

    :returns: the store's ttl (None: never) and the no-expiry keys.
    """
    given = base.given_name(
        owner, ('expire_time', getattr(backend_cls, 'expire_time_alias',
                                       None)), args)
    expire_time = args.pop(given) if given else None
    no_expiry = _str_list(owner, 'no_expiry_keys',
                          args.pop('no_expiry_keys', None))
    if not (backend_cls and issubclass(backend_cls, base.Backend)) and (
            given or no_expiry):
        # Foreign dogpile backends expire values their own way.
        raise exception.ConfigurationError(
            'Argument %r is not supported by dogpile backend %s; use '
            "that backend's own expiry arguments"
            % (given or 'no_expiry_keys', owner))
    if given is None or base.is_unset(expire_time):
        return None, no_expiry
    seconds = base.coerce(owner, given, _SECONDS, expire_time)
    return seconds or None, no_expiry


def _per_call_expiry(expire_time: ty.Any) -> float | None:
    """Seconds from a call's ``expire_time``; None for 0 (never)."""
    try:
        seconds = _SECONDS(expire_time)
    except (TypeError, ValueError) as exc:
        raise type(exc)('expire_time: %s' % exc) from None
    return seconds or None


# The ttl of the write in progress, for the bottom of a proxy chain:
# dogpile's ProxyBackend passes (key, value) only.
_WRITE_TTL: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    'oslo_kvs_write_ttl', default=None)


class _TTLBottom(dogpile_proxy.ProxyBackend):
    """Innermost proxy: hands the store's ttl to the backend."""

    # The proxied object is an oslo_kvs backend, whose writes take a ttl.
    def set_serialized(self, key, value):
        self.proxied.set_serialized(  # type: ignore[call-arg]
            key, value, _WRITE_TTL.get())

    def set_serialized_multi(self, mapping):
        self.proxied.set_serialized_multi(  # type: ignore[call-arg]
            mapping, _WRITE_TTL.get())


class _Configured:
    """Everything a configured store needs on its hot path.

    Built completely by ``configure()`` and then published with a single
    assignment, so other threads see either no configuration or all of it.
    """

    __slots__ = ('io', 'backend', 'data_prefix', 'lock_prefix',
                 'locking', 'lock_timeout', 'serializer', 'protector',
                 'proxied', 'ttl', 'no_expiry', 'lock_window', 'keys',
                 'cache_keys', 'keep_plain', 'stored_data_key', 'lock_key')

    def __init__(self, io, backend, mangler, data_prefix, lock_prefix,
                 locking, lock_timeout, serializer, protector, proxied=False,
                 ttl=None, no_expiry=(), lock_window=0.0):
        self.io = io
        #: Whether ``io`` is a proxy chain (ttl travels in _WRITE_TTL).
        self.proxied = proxied
        #: The store's ttl for writes: seconds, or None for never.
        self.ttl = ttl
        self.no_expiry: frozenset[str] = frozenset()
        self.backend = backend
        self.data_prefix = data_prefix
        self.lock_prefix = lock_prefix
        #: User key -> stored key, one function per namespace.
        self.stored_data_key = _key_function(data_prefix, mangler,
                                             backend.check_key)
        self.lock_key = _key_function(lock_prefix, mangler,
                                      backend.check_key)
        self.locking = locking
        self.lock_timeout = lock_timeout
        self.serializer = serializer
        self.protector = protector
        #: User key -> stored key, at most KEY_CACHE_SIZE of them; a key
        #: is only cached after it passed every check. Only for the
        #: default mangler (or none), a pure function of the key: a
        #: caller's own mangler is called on every operation, as before.
        self.keys: dict[str, str] = {}
        self.cache_keys = mangler is None or mangler is sha256_mangle_key
        #: Whether immutable values skip the serializer: only when the
        #: values stay in this process, nothing is to be protected and no
        #: proxy expects bytes. See serialization.plain().
        self.keep_plain = (not proxied and protector is None and
                           isinstance(backend, base.Backend) and
                           backend.local)
        # Users name no_expiry_keys by their keys; writes see stored keys.
        self.no_expiry = frozenset(self.data_key(key) for key in no_expiry)
        self.lock_window = lock_window

    def data_key(self, key: ty.Any) -> str:
        """The stored key of ``key``; TypeError unless it is a str."""
        # The exact type first: a str subclass could hash and compare
        # equal to a cached key without being a str.
        if type(key) is str:
            stored = self.keys.get(key)
            if stored is not None:
                return stored
        return self._new_data_key(key)

    def _new_data_key(self, key: ty.Any) -> str:
        stored = self.stored_data_key(key)
        if self.cache_keys:
            keys = self.keys
            if len(keys) >= KEY_CACHE_SIZE:
                keys.clear()
            keys[key] = stored
        return stored

    def data_keys(self, keys: list[ty.Any]) -> list[str]:
        """:meth:`data_key` of each key, in one pass for multi operations."""
        cached, new = self.keys.get, self._new_data_key
        return [stored if type(key) is str and (
            stored := cached(key)) is not None else new(key)
            for key in keys]

    def call_ttl(self, expire_time: ty.Any) -> float | None:
        """The ttl a call asks for: its ``expire_time``, else the store's."""
        return self.ttl if expire_time is None else _per_call_expiry(
            expire_time)

    def ttl_for(self, stored: str, ttl: float | None) -> float | None:
        """``ttl`` for ``stored``, unless it is one of no_expiry_keys."""
        return None if stored in self.no_expiry else ttl

    def write_one(self, key: str, value: bytes, ttl: float | None) -> None:
        """One backend write of one value, through the proxies if any."""
        if not self.proxied:
            self.io.set_serialized(key, value, ttl)
        else:
            self.write({key: value}, ttl)

    def write(self, mapping: dict[str, bytes], ttl: float | None) -> None:
        """One backend write of ``mapping``, through the proxies if any."""
        if not self.proxied:
            if len(mapping) == 1:
                (key, value), = mapping.items()
                self.io.set_serialized(key, value, ttl)
            else:
                self.io.set_serialized_multi(mapping, ttl)
            return
        token = _WRITE_TTL.set(ttl)
        try:
            if len(mapping) == 1:
                (key, value), = mapping.items()
                self.io.set_serialized(key, value)
            else:
                self.io.set_serialized_multi(mapping)
        finally:
            _WRITE_TTL.reset(token)


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
        self._configure_lock = _process.Primitive('Lock')
        self._state: _Configured | None = None
        # [configured?], shared with the finalizer, which cannot hold self.
        self._in_use = [False]
        finalizer = weakref.finalize(self, _collected, name, self._in_use)
        finalizer.atexit = False  # type: ignore[misc]  # documented, typeshed

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
            raise exception.NotConfigured(self.name, _LOST_HINT % self.name
                                          if self.name in _lost else '')
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
            self._in_use[0] = True
        LOG.info('KVS store %r configured with backend %s', self.name,
                 backing_store)

    def configure_from_conf(self, group: str, **overrides: ty.Any) -> None:
        """Configure from the store options in ``[group]`` of the store's conf.

        The options are those of :func:`oslo_kvs.register_store_opts`
        (registered here if the service has not done so): ``backend`` is
        the ``backing_store``, each ``backend_argument`` ``name:value`` and
        every other option that is set is an argument. Then the store is
        configured exactly as :meth:`configure` would be, with the same
        checks.

        :param overrides: :meth:`configure` arguments that win over the
            options (``backing_store``, ``key_mangler``, ``proxy_list``,
            ``locking`` or any argument), for what only code can give.
        :raises exception.ConfigurationError: as :meth:`configure` does,
            the message naming the group and the option; never a secret.
        :raises exception.AlreadyConfigured: as :meth:`configure` does.
        """
        backing_store, arguments, sources = opts.store_configuration(
            self._conf, group)
        arguments.update(overrides)
        backing_store = arguments.pop('backing_store', backing_store)
        try:
            self.configure(backing_store, **arguments)
        except exception.ConfigurationError as exc:
            # configure()'s messages name the argument; say which option of
            # which group it came from.
            text = str(exc)
            culprits = {source for name, source in sources.items()
                        if name not in overrides and re.search(
                            r'(?<!\w)%s(?!\w)' % re.escape(name), text)}
            if ('backing_store' not in overrides and backing_store and
                    repr(backing_store) in text):
                culprits.add(opts.BACKEND)
            raise exception.ConfigurationError('[%s] %s: %s' % (
                group, ', '.join(sorted(culprits)) or 'options',
                text)) from None

    def close(self) -> None:
        """Free the backend's connections and threads; unconfigure the store.

        Afterwards the store is not configured (operations raise
        ``NotConfigured``) and :meth:`configure` may be called again, with
        the same or another backend; it then makes a new dogpile region, so
        a ``kvs_region`` given at creation serves the first configuration
        only. Locks taken before are not released on the server; they
        expire after their ``lock_timeout``. Closing a store that is not
        configured does nothing, so ``close()`` may be called any number of
        times.
        """
        with self._configure_lock:
            state, self._state = self._state, None
            self._region = None
            self._in_use[0] = False
        if state is not None:
            state.backend.close()
            LOG.info('KVS store %r closed', self.name)

    def servers(self) -> list[str]:
        """The servers the store talks to, as ``"host:port"`` labels.

        Labels never hold a secret (no password, no URL credentials). A
        backend without a server (the memory backend) gives ``[]``.

        :raises exception.NotConfigured: when the store is not configured.
        """
        return list(self._configured().backend.servers())

    def _build(self, backing_store, key_mangler, proxy_list, locking,
               args) -> _Configured:
        owner = 'KVS store %r' % self.name
        if not isinstance(backing_store, str):
            raise exception.ConfigurationError(
                'backing_store of %s must be a backend name, not %r'
                % (owner, backing_store))
        locking = base.coerce(owner, 'locking', _BOOL, locking)
        lock_timeout = args.pop('lock_timeout', None)
        lock_timeout = base.coerce(
            owner, 'lock_timeout', _SECONDS,
            self._conf.kvs.default_lock_timeout
            if base.is_unset(lock_timeout) else lock_timeout)
        lock_window = _locking.lock_window(
            owner, args.pop('lock_window', None), lock_timeout)
        if key_mangler is not None and not callable(key_mangler):
            raise exception.ConfigurationError(
                'key_mangler of %s must be callable, not %r'
                % (owner, key_mangler))
        # Percent-encoded UTF-8, lone surrogates kept as keys keep them:
        # any str names a store.
        prefix = '%s:%s:' % (
            urllib.parse.quote(self._conf.kvs.config_prefix, safe='',
                               errors='surrogatepass'),
            urllib.parse.quote(self.name, safe='', errors='surrogatepass'))
        protector = protection.make_protector(
            args.pop('value_protection', self._conf.kvs.value_protection),
            _str_list(owner, 'protection_keys',
                      args.pop('protection_keys',
                               self._conf.kvs.protection_keys)),
            prefix)
        serializer = serialization.get_serializer(base.coerce(
            owner, 'serializer', _SERIALIZER,
            args.pop('serializer', self._conf.kvs.serializer)))
        proxies = [_load_proxy(item) for item in proxy_list or ()]
        backends.register_backends(self._conf.kvs.backends)
        backend_cls = _load_backend_class(backing_store)
        ttl, no_expiry = expiry_arguments(owner, backend_cls, args)
        if (serializer.name == 'pickle' and protector is None and
                not getattr(backend_cls, 'local', False)):
            raise exception.ConfigurationError(
                'serializer=pickle on %s needs value_protection (mac or '
                'encrypt): unpickling unauthenticated bytes from a server '
                'runs whatever code they hold' % backing_store)
        if backend_cls is None:
            # A backend only dogpile.cache knows: learn its class from an
            # instance, so the foreign backend rules below always apply.
            backend_cls = backend_class(backing_store, args)
            if backend_cls is None:
                raise exception.ConfigurationError(
                    'Backend %s could not be created with arguments (%s)'
                    % (backing_store, ', '.join(sorted(args))))
        if not issubclass(backend_cls, base.Backend):
            # Imported only now: it imports the memcached and Redis client
            # libraries, which a service may monkey-patch after importing
            # oslo_kvs (eventlet).
            from oslo_kvs.backends import foreign
            args = foreign.arguments(backing_store, backend_cls, args)

        region = self._region or dogpile_region.make_region(
            name='oslo_kvs:%s' % self.name)
        if region.is_configured:
            raise exception.AlreadyConfigured(self.name)
        try:
            # Foreign backends take no ttl; ours get it under the proxies.
            native = backend_cls is not None and issubclass(backend_cls,
                                                            base.Backend)
            region.configure(backing_store, arguments=args,
                             wrap=proxies + [_TTLBottom] if proxies and native
                             else proxies)
        except exception.KVSError:
            raise
        except dogpile_exception.PluginNotFound:
            raise backends.unknown(backing_store) from None
        except Exception as exc:
            # Only argument names: a foreign backend may echo values, and
            # values can be passwords.
            raise exception.ConfigurationError(
                'Backend %s could not be created with arguments (%s): %s'
                % (backing_store, ', '.join(sorted(args)),
                   type(exc).__name__)) from exc

        actual = region.actual_backend
        if isinstance(actual, base.Backend):
            # Proxies sit above the backend; without any, calls go
            # straight to it.
            backend = actual
            io = region.backend if proxies else backend
        else:
            # Every call goes through the adapter, which translates the
            # foreign client's errors; the adapter calls the region's
            # proxies.
            backend = io = foreign.DogpileAdapter(region.backend,
                                                  backing_store, args)
        mangler = self._choose_mangler(key_mangler, actual)
        state = _Configured(io=io, backend=backend,
                            mangler=mangler, data_prefix=prefix + 'k:',
                            lock_prefix=prefix + 'l:', locking=locking,
                            lock_timeout=lock_timeout, serializer=serializer,
                            protector=protector,
                            proxied=bool(proxies),
                            ttl=ttl, no_expiry=no_expiry,
                            lock_window=lock_window)
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
        return explicit if explicit is not None else sha256_mangle_key

    # --- data operations -----------------------------------------------

    @staticmethod
    def _encode(state: _Configured, key: str, value: ty.Any) -> ty.Any:
        if state.keep_plain:
            kept = serialization.plain(value)
            if kept is not None:
                return kept
        data = state.serializer.dumps(value)
        if state.protector is not None:
            data = state.protector.seal(key, data)
        return data

    def _decode(self, state: _Configured, key: str, data: ty.Any) -> ty.Any:
        try:
            if data.__class__ is serialization.Plain:
                if state.keep_plain:
                    return data.value
                # Not written by this store's rules: it must verify.
                raise ValueError('unprotected value')
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
        state = self._state
        if state is None:
            state = self._configured()  # raises NotConfigured
        data = state.io.get_serialized(state.data_key(key))
        if data.__class__ is bytes and state.protector is None:
            try:
                return state.serializer.loads(data)
            except ValueError:
                pass  # _decode logs it and raises IntegrityError
        elif data is base.NO_VALUE:
            raise exception.NotFound(key)
        return self._decode(state, key, data)

    def get_multi(self, keys: ty.Iterable[str]) -> list[ty.Any]:
        """Return the values of ``keys``, in the same order.

        :raises exception.NotFound: naming every missing key in ``target``.
        """
        state = self._state
        if state is None:
            state = self._configured()  # raises NotConfigured
        keys = list(keys)
        stored = state.data_keys(keys)
        found = state.io.get_serialized_multi(stored) if stored else []
        if state.protector is None:
            # Optimistic: every value present and decodable. At the first
            # anything else, the exact path below finds what to raise and
            # names the key.
            try:
                return state.serializer.loads_many(found)
            except Exception:
                pass  # redone below, where it is raised with the key
            if state.keep_plain:  # some may be kept as themselves
                plain, loads = serialization.Plain, state.serializer.loads
                try:
                    return [data.value if data.__class__ is plain
                            else loads(data) for data in found]
                except Exception:
                    pass  # as above
        missing = [key for key, data in zip(keys, found)
                   if data is base.NO_VALUE]
        if missing:
            raise exception.NotFound(missing)
        return [self._decode(state, key, data)
                for key, data in zip(keys, found)]

    def set(self, key: str, value: ty.Any,
            lock: 'KeyValueStoreLock | None' = None,
            expire_time: float | None = None) -> None:
        """Store ``value`` under ``key``; with ``lock``, check it first.

        :param expire_time: seconds this value lives (0: never), instead
            of the store's ``expire_time``; ``no_expiry_keys`` still win.
        """
        state = self._state
        if state is None:
            state = self._configured()  # raises NotConfigured
        stored = state.data_key(key)
        ttl = state.ttl_for(stored, state.call_ttl(expire_time))
        data = self._encode(state, key, value)
        if lock is not None and self._check_lock(key, lock):
            lock.set_fenced(stored, data, ttl)
        else:
            state.write_one(stored, data, ttl)

    def set_multi(self, mapping: ty.Mapping[str, ty.Any],
                  expire_time: float | None = None) -> None:
        """Store every item of ``mapping``.

        :param expire_time: as for :meth:`set`, for every item.
        """
        state = self._state
        if state is None:
            state = self._configured()  # raises NotConfigured
        ttl = state.call_ttl(expire_time)
        data_key, encode = state.data_key, self._encode
        if not state.no_expiry:
            batch = {data_key(key): encode(state, key, value)
                     for key, value in mapping.items()}
            if batch:
                state.write(batch, ttl)
            return
        # One backend call per ttl: no_expiry_keys may split the batch.
        batches: dict[float | None, dict[str, bytes]] = {}
        for key, value in mapping.items():
            stored = data_key(key)
            batches.setdefault(state.ttl_for(stored, ttl), {})[
                stored] = encode(state, key, value)
        for ttl, batch in batches.items():
            state.write(batch, ttl)

    def delete(self, key: str,
               lock: 'KeyValueStoreLock | None' = None) -> None:
        """Remove ``key``.

        :raises exception.NotFound: when the key was not there.
        """
        state = self._configured()
        stored = state.data_key(key)
        if lock is not None and self._check_lock(key, lock):
            existed = lock.delete_fenced(stored)
        else:
            existed = state.backend.delete_existing(stored)
        if not existed:
            raise exception.NotFound(key)

    def delete_multi(self, keys: ty.Iterable[str]) -> None:
        """Remove ``keys``; missing keys are ignored."""
        state = self._configured()
        stored = state.data_keys(list(keys))
        if stored:
            state.io.delete_multi(stored)

    def add(self, key: str, value: ty.Any,
            expire_time: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent, atomically.

        :param expire_time: as for :meth:`set`.
        :returns: whether the value was stored.
        """
        state = self._configured()
        stored = state.data_key(key)
        return state.backend.add_serialized(
            stored, self._encode(state, key, value),
            state.ttl_for(stored, state.call_ttl(expire_time)))

    # --- locks ---------------------------------------------------------

    def get_lock(self, key: str) -> 'KeyValueStoreLock':
        """A lock on ``key``, to pass to :meth:`set` and :meth:`delete`."""
        state = self._configured()
        return KeyValueStoreLock(self, key, state.lock_key(key), state)

    def _check_lock(self, key: str,
                    lock: 'KeyValueStoreLock | None') -> bool:
        """Check a write's lock; return whether the server must fence it.

        Last step before the write, so the window is measured as late as
        possible.
        """
        if lock is None:
            return False
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
        lock.check_window()
        return lock.fenced


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


def _load_backend_class(name: str) -> type | None:
    """The class of backend ``name``; see :func:`backends.load_class`."""
    if not isinstance(name, str):
        raise exception.ConfigurationError(
            'backing_store must be a backend name, not %r' % (name,))
    return backends.load_class(name)


def backend_class(name: str,
                  arguments: ty.Mapping[str, ty.Any] | None = None
                  ) -> type | None:
    """The class of backend ``name``, also one only dogpile.cache knows.

    Such a backend is instantiated once with ``arguments``, through
    dogpile's public region API, to learn its class; ``None`` when that
    fails.

    :raises exception.ConfigurationError: for an unknown name.
    """
    found = _load_backend_class(name)
    if found is not None:
        return found
    try:
        region = dogpile_region.make_region().configure(
            name, arguments=dict(arguments or {}))
    except dogpile_exception.PluginNotFound:
        raise backends.unknown(name) from None
    except Exception:
        return None
    backend = region.actual_backend
    close = getattr(backend, 'close', None)
    if callable(close):
        close()
    return type(backend)


#: Names of stores garbage-collected while configured (a few per process).
_lost: set[str] = set()
_LOST_HINT = (
    '; a store named %r was configured before but garbage-collected, since '
    'nothing kept a reference to it: keep the store in a module-level name')


def _collected(name: str, in_use: list[bool]) -> None:
    """Finalizer of a store: remember the name if it was configured."""
    if in_use[0]:
        _lost.add(name)
        LOG.info('KVS store %r was garbage-collected while configured; '
                 'the next get_key_value_store(%r) makes a new store',
                 name, name)


_registry: 'weakref.WeakValueDictionary[str, KeyValueStore]' = (
    weakref.WeakValueDictionary())
_registry_lock = _process.Primitive('Lock')


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
