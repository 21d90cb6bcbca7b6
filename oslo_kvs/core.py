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

A write flows one way: the key is namespaced and mangled
(``_Configured``), the value encoded (:mod:`oslo_kvs.serialization`'s
codec: serialize, then protect, bound to the key) and handed to the
backend. A read flows back: backend, codec (verify, then deserialize). The
store owns the API rules (missing keys, locks, types); backends only move
bytes; :mod:`oslo_kvs.settings` parses the configuration; locks are in
:mod:`oslo_kvs.locking`; the opt-in near cache's entries in
:mod:`oslo_kvs.near` (the store decides which reads it serves and drops
or refills the keys each write touches).

Proxies (``proxy_list``) wrap every operation dogpile.cache's
``ProxyBackend`` has (get, get_multi, set, set_multi, delete,
delete_multi); ``add``, ``update``, ``incr``, ``touch``, locks and fenced
writes have no proxy method and go to the backend.
"""

import contextvars
import copy
import hashlib
import logging
import operator
import random
import time
import typing as ty
import urllib.parse
import weakref

from dogpile.cache import proxy as dogpile_proxy
from dogpile.cache import region as dogpile_region
from dogpile.cache import util as dogpile_util
from oslo_config import cfg

from oslo_kvs import _process
from oslo_kvs.backends import base
from oslo_kvs import exception
from oslo_kvs import locking
from oslo_kvs.locking import KeyValueStoreLock
from oslo_kvs import near as near_cache
from oslo_kvs import observe
from oslo_kvs import opts
from oslo_kvs import protection
from oslo_kvs import serialization
from oslo_kvs import settings as _settings

LOG = logging.getLogger(__name__)

#: Keystone's default key mangler, kept for callers that name it.
sha1_mangle_key = dogpile_util.sha1_mangle_key


def sha256_mangle_key(key: str) -> str:
    """The default key mangler: a 64-character hex SHA-256 of the key.

    Fixed length and plain ASCII, so every backend accepts it, and
    collision resistant, so no one can craft two keys that meet.
    """
    return hashlib.sha256(key.encode('utf-8', 'surrogatepass')).hexdigest()


#: Most user keys a store remembers the stored key of. Hot keys (a token
#: checked on every request) are namespaced and mangled once; keys that
#: are seen once (random ones) empty the memory when it is full rather
#: than grow it.
KEY_CACHE_SIZE = 4096

_SECONDS = base.seconds()

#: A store's observer (counts, instruments), None while not configured.
_observer = operator.attrgetter('_observer')

#: Shortest unit of the pause after a lost compare-and-set race, in
#: seconds. The unit is the lost attempt's own duration (a round trip or
#: two, and fn), so the pause scales with the server; after the n-th lost
#: race an update sleeps a random fraction of 2**n units (n at most
#: UPDATE_BACKOFF_DOUBLINGS), so racing writers spread out until each
#: finds a quiet moment.
UPDATE_BACKOFF = 0.0005
UPDATE_BACKOFF_DOUBLINGS = 7
#: Longest pause after a lost race, in seconds. One slow attempt (a
#: server that stalled, then answered) would otherwise make the unit that
#: long, and the pause up to 2**UPDATE_BACKOFF_DOUBLINGS times it:
#: minutes, with the server fast again.
UPDATE_BACKOFF_MAX = 0.5

#: ``update()`` without a ``default``: a missing key is NotFound.
_REQUIRED: ty.Any = object()


def _same(value: ty.Any) -> ty.Any:
    """``value`` itself: the ``fn`` of a compare-and-set that rewrites."""
    return value


# What a call through the proxies hands the innermost proxy beside the
# key and value dogpile's ProxyBackend passes: cells holding the write's
# ttl and, from a delete, whether the key existed. A call through the
# proxies made elsewhere (the proxies' own callers) finds none: its writes
# get no ttl.
_CALL: contextvars.ContextVar[list[ty.Any]] = contextvars.ContextVar(
    'oslo_kvs_call')


class _Bottom(dogpile_proxy.ProxyBackend):
    """Innermost proxy over an oslo_kvs backend: ttl down, existence up."""

    def set_serialized(self, key, value):
        self.proxied.set_serialized(  # type: ignore[call-arg]
            key, value, _CALL.get([None, False])[0])

    def set_serialized_multi(self, mapping):
        self.proxied.set_serialized_multi(  # type: ignore[call-arg]
            mapping, _CALL.get([None, False])[0])

    def delete(self, key):
        existed = self.proxied.delete_existing(key)  # type: ignore
        _CALL.get([None, False])[1] = existed


def _through(method: ty.Callable[..., None]) -> ty.Callable[..., ty.Any]:
    """``method`` of a proxy chain, called as the backend's own would be.

    The last argument is the ttl; returns whether :class:`_Bottom` found
    a deleted key.
    """
    def call(*args: ty.Any) -> ty.Any:
        cells = [args[-1], False]
        token = _CALL.set(cells)
        try:
            method(*args[:-1])
        finally:
            _CALL.reset(token)
        return cells[1]
    return call


class _Configured:
    """Everything a configured store needs on its hot path.

    Built completely by ``configure()`` and then published with a single
    assignment, so other threads see either no configuration or all of it.
    ``io`` is the backend, or the proxy chain over it; ``set_one``,
    ``set_many`` and ``delete_existing`` are the backend's methods of
    those names, through the proxies if any.
    """

    __slots__ = ('io', 'backend', 'codec', 'keep_plain', 'settings', 'ttl',
                 'no_expiry', 'keys', 'cache_keys', 'prefix', 'mangler',
                 'hashed', 'encode', 'decode', 'set_one', 'set_many',
                 'delete_existing', 'incr_one', 'near', 'near_by_key')

    def __init__(self, io: ty.Any, backend: base.Backend,
                 settings: _settings.Settings, mangler: ty.Any,
                 prefix: str, codec: serialization.Codec) -> None:
        self.io = io
        self.backend = backend
        self.settings = settings
        self.codec = codec
        # settings.ttl, one attribute lookup nearer for every write.
        self.ttl = settings.ttl
        if io is backend:
            self.set_one, self.set_many = (backend.set_serialized,
                                           backend.set_serialized_multi)
            self.delete_existing = backend.delete_existing
        else:
            # The ttl and delete's result travel in a context variable.
            self.set_one = _through(io.set_serialized)
            self.set_many = _through(io.set_serialized_multi)
            deleting = _through(io.delete)
            self.delete_existing = lambda stored: deleting(stored, None)
        self.prefix, self.mangler = prefix, mangler
        # The default mangler's hash of each namespace, made once and
        # copied per key. UTF-8 (with surrogatepass) encodes code point by
        # code point, so this hashes exactly the bytes of the whole key.
        self.hashed = None if mangler is not sha256_mangle_key else {
            space: hashlib.sha256((prefix + space).encode(
                'utf-8', 'surrogatepass')) for space in ('k:', 'l:')}
        #: User key -> stored key, at most KEY_CACHE_SIZE of them; a key
        #: is only cached after it passed every check. Only for the
        #: default mangler (or none), a pure function of the key: a
        #: caller's own mangler is called on every operation.
        self.keys: dict[str, str] = {}
        self.cache_keys = mangler is None or mangler is sha256_mangle_key
        #: Whether immutable values are kept as themselves: only when the
        #: values stay in this process, nothing is to be protected and no
        #: proxy expects bytes. See serialization.plain().
        self.keep_plain = (io is backend and codec.protector is None
                           and backend.local)
        #: A value to what the backend stores, and back: the codec's own
        #: functions, unless values may be kept as themselves.
        self.encode = self._encode_kept if self.keep_plain else codec.encode
        self.decode = self._decode_kept if self.keep_plain else codec.decode
        #: The backend's one-step increment, if it has one and the
        #: stored bytes of an int are the serializer's own (its decimal
        #: digits: unprotected, not kept as itself); else None: incr()
        #: compares and sets.
        self.incr_one = (backend.incr_serialized if codec.protector is None
                         and not self.keep_plain
                         and type(backend).incr_serialized
                         is not base.Backend.incr_serialized else None)
        #: This process's near cache (``.get()``), or None when off.
        self.near = near_cache.per_process(settings.near_ttl,
                                           settings.near_size, backend)
        #: The near caches get() and get_multi() answer from by key
        #: alone, before any check: only where a key's stored key is a
        #: pure function of it (see ``keys``), so an entry kept for a
        #: key stays that key's.
        self.near_by_key = self.near if self.cache_keys else None
        # Users name no_expiry_keys by their keys; writes see stored keys.
        self.no_expiry = frozenset(self.data_key(key)
                                   for key in settings.no_expiry)

    def stored_key(self, key: ty.Any, space: str = 'k:') -> str:
        """``key`` as stored, in ``space`` (``k:`` data, ``l:`` locks).

        Always ``mangler(prefix + space + key)``, or the checked
        ``prefix + space + key`` without a mangler.

        :raises TypeError: for a key that is not exactly a str.
        """
        if type(key) is not str:
            raise TypeError('KVS keys must be str, not %s'
                            % type(key).__name__)
        if self.hashed is not None:
            digest = self.hashed[space].copy()
            digest.update(key.encode('utf-8', 'surrogatepass'))
            return digest.hexdigest()
        if self.mangler is not None:
            return self.mangler(self.prefix + space + key)
        self.backend.check_key(self.prefix + space + key)
        return self.prefix + space + key

    def lock_key(self, key: ty.Any) -> str:
        """The stored key of the lock on ``key``."""
        return self.stored_key(key, 'l:')

    def data_key(self, key: ty.Any) -> str:
        """The stored key of ``key``; TypeError unless it is a str."""
        # The exact type first: a str subclass could hash and compare
        # equal to a cached key without being a str.
        if type(key) is str:
            stored = self.keys.get(key)
            if stored is not None:
                return stored
        stored = self.stored_key(key)
        if self.cache_keys:
            if len(self.keys) >= KEY_CACHE_SIZE:
                self.keys.clear()
            self.keys[key] = stored
        return stored

    def data_keys(self, keys: list[ty.Any]) -> list[str]:
        """:meth:`data_key` of each key, in one pass for multi operations."""
        cached, new = self.keys.get, self.data_key
        return [stored if type(key) is str and (
            stored := cached(key)) is not None else new(key)
            for key in keys]

    def ttl_of(self, expire_time: ty.Any, stored: str = '') -> float | None:
        """The ttl a write asks for: its ``expire_time``, else the store's.

        None (never) for 0 and for a no-expiry ``stored`` key.

        :raises TypeError: or ValueError for a bad ``expire_time``.
        """
        ttl = self.ttl
        if expire_time is not None:
            try:
                ttl = _SECONDS(expire_time) or None
            except (TypeError, ValueError) as exc:
                raise type(exc)('expire_time: %s' % exc) from None
        return None if stored in self.no_expiry else ttl

    def _encode_kept(self, key: str, value: ty.Any) -> ty.Any:
        """An immutable value as itself, any other encoded."""
        kept = serialization.plain(value)
        return kept if kept is not None else self.codec.encode(key, value)

    def _decode_kept(self, key: str, data: ty.Any) -> ty.Any:
        """The value of ``data``, which may be a value kept as itself."""
        if data.__class__ is serialization.Plain:
            return data.value
        return self.codec.decode(key, data)

    def decode_many(self, keys: list[str], found: list[ty.Any]
                    ) -> list[ty.Any]:
        """The values of ``found``, some maybe kept as themselves.

        :raises exception.IntegrityError: naming the first refused key.
        """
        try:
            return self.codec.decode_many(keys, found)
        except exception.IntegrityError:
            if not self.keep_plain:
                raise
        decode = self._decode_kept
        return [decode(key, data) for key, data in zip(keys, found)]


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
                'KVS store names must be str, not %s; Keystone-style '
                'KeyValueStore(region) is now '
                'oslo_kvs.get_key_value_store(name, kvs_region=region)'
                % type(name).__name__)
        self.name = name
        self._conf = conf if conf is not None else cfg.CONF
        opts.register_opts(self._conf)
        self._region = kvs_region
        self._configure_lock = _process.Primitive('Lock')
        self._state: _Configured | None = None
        self._observer: observe.Observer | None = None
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
            anything is changed; ``argument`` names it.
        :raises exception.AlreadyConfigured: when already configured,
            including by another thread that won a race.
        """
        if self._state is not None:
            raise exception.AlreadyConfigured(self.name)
        self._apply(_settings.from_arguments(
            self._conf, 'KVS store %r' % self.name, backing_store,
            key_mangler, proxy_list, locking, **region_config_args))

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
        if self._state is not None:
            raise exception.AlreadyConfigured(self.name)
        parsed = _settings.from_group(self._conf, group,
                                      'KVS store %r' % self.name, **overrides)
        with _settings.blaming(group, parsed.sources):
            self._apply(parsed)

    def _apply(self, settings: _settings.Settings) -> None:
        """Configure the store as ``settings`` say; once."""
        with self._configure_lock:
            if self._state is not None:
                raise exception.AlreadyConfigured(self.name)
            self._state = self._build(settings)
            self._observer = observe.Observer(
                self.name, self._state.backend,
                self._conf.kvs.duration_sampling) if observe.ENABLED else None
            self._in_use[0] = True
        LOG.info('KVS store %r configured with backend %s', self.name,
                 settings.backing_store)

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
            observe.forget(self._observer)
            self._observer = None
            self._region = None
            self._in_use[0] = False
        if state is not None:
            near_cache.close(state.near)
            state.backend.close()
            LOG.info('KVS store %r closed', self.name)

    def stats(self) -> dict[str, ty.Any]:
        """This process's counts of the store's operations since configure.

        A plain dict, cheap to make (no server is asked; for what the
        servers count, see ``oslo-kvs stats``)::

            {'store': 'tokens', 'backend': 'openstack.kvs.Memcached',
             'since': 1748872991.5,
             'operations': {
                 'get': {'calls': 120, 'hits': 100, 'misses': 18,
                         'ok': 0, 'refused': 1,
                         'errors': {'BackendError': 1}},
                 'get_multi': {...}, 'set': {...}, 'set_multi': {...},
                 'delete': {...}, 'delete_multi': {...}, 'add': {...},
                 'lock': {...}}}

        Every operation is listed, with every key. ``calls`` is the sum
        of the others: ``hits`` (reads that found their value;
        ``get_multi`` counts per call, a hit when every key was found),
        ``misses`` (``NotFound``: a missing key read or deleted; a lock
        ``acquire`` that returned ``False``), ``refused`` (values that
        failed value protection's check: ``IntegrityError``), ``errors``
        (any other exception, by class name) and ``ok`` (every other
        completed call). ``lock`` counts ``KeyValueStoreLock.acquire``.
        ``since`` is when this process started counting (seconds since
        the epoch): the configure, or in a forked child its first
        operation; a child never sees its parent's counts. Counts are
        exact under threads. A call made while the store is not
        configured is not counted.

        With a near cache (``near_cache_ttl``), ``near_cache`` holds
        ``{'hits': ..., 'misses': ..., 'entries': ...}``: keys this
        process's reads found in it and keys they read from the server
        through it (each key of a ``get_multi`` counts), and the entries
        it holds now. A ``get`` or ``get_multi`` it answered wholly asks
        no server and is counted there only, not in ``operations``.
        Without one, ``near_cache`` is None.

        :raises exception.NotConfigured: when the store is not configured.
        """
        state = self._configured()
        observer = self._observer
        stats = observer.stats() if observer is not None else {
            'since': None, 'operations': observe.summary(
                observe.Counts().read())}
        return dict(stats, store=self.name, backend=state.backend.name,
                    near_cache=near_cache.counts(state.near))

    def servers(self) -> list[str]:
        """The servers the store talks to, as ``"host:port"`` labels.

        Labels never hold a secret (no password, no URL credentials). A
        backend without a server (the memory backend) gives ``[]``.

        :raises exception.NotConfigured: when the store is not configured.
        """
        return list(self._configured().backend.servers())

    def _build(self, settings: _settings.Settings) -> _Configured:
        region = self._region or dogpile_region.make_region(
            name='oslo_kvs:%s' % self.name)
        if region.is_configured:
            raise exception.AlreadyConfigured(self.name)
        proxies = list(settings.proxies)
        try:
            # Foreign backends take no ttl; ours get it under the proxies.
            region.configure(settings.backing_store,
                             arguments=settings.backend_args,
                             wrap=proxies + [_Bottom] if proxies and
                             settings.native else proxies)
        except exception.KVSError:
            raise
        except Exception as exc:
            # Only argument names: a foreign backend may echo values, and
            # values can be passwords.
            raise exception.ConfigurationError(
                'Backend %s could not be created with arguments (%s): %s'
                % (settings.backing_store,
                   ', '.join(sorted(settings.backend_args)),
                   type(exc).__name__)) from exc
        actual = region.actual_backend
        if settings.native:
            backend, io = actual, region.backend
        else:
            # Every call goes through the adapter, which translates the
            # foreign client's errors and calls the region's proxies.
            from oslo_kvs.backends import foreign
            backend = io = foreign.DogpileAdapter(
                region.backend, settings.backing_store, settings.backend_args)
        # Percent-encoded UTF-8, lone surrogates kept as keys keep them:
        # any str names a store.
        prefix = '%s:%s:' % (
            urllib.parse.quote(self._conf.kvs.config_prefix, safe='',
                               errors='surrogatepass'),
            urllib.parse.quote(self.name, safe='', errors='surrogatepass'))
        protector = None if settings.value_protection == 'none' else (
            protection.Protector(settings.value_protection,
                                 settings.protection_keys, prefix))
        self._region = region
        return _Configured(io, backend, settings,
                           self._choose_mangler(settings.key_mangler, actual),
                           prefix, serialization.Codec(settings.serializer,
                                                       protector))

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

    def _refused(self, key: ty.Any) -> exception.IntegrityError:
        # Neither the value nor any secret goes to the log.
        LOG.warning('KVS store %r: a stored value failed verification '
                    'or decoding and is treated as missing', self.name)
        return exception.IntegrityError(key)

    def get(self, key: str) -> ty.Any:
        """Return the value of ``key``.

        :raises exception.NotFound: when the key is missing or expired.
        """
        state = self._state
        # A near-cache hit is answered here: no server is involved, so it
        # is no counted operation (the near cache counts it). Not while
        # a thread holds a lock: its reads may have to go to the server.
        if (state is not None and state.near_by_key is not None
                and type(key) is str and not locking.holders):
            value = state.near_by_key.get().hit(key)
            if value is not near_cache.MISS:
                return value
        return self._get(key)

    @observe.operation('get', _observer)
    def _get(self, key: str) -> ty.Any:
        """:meth:`get`, unless the near cache answered it."""
        state = self._state or self._configured()
        if state.near is not None and not (locking.holders and
                                           locking.holds_a_lock()):
            return self._get_near(state, key)
        data = state.io.get_serialized(state.data_key(key))
        if data is base.NO_VALUE:
            raise exception.NotFound(key)
        try:
            return state.decode(key, data)
        except exception.IntegrityError:
            raise self._refused(key) from None

    def _get_near(self, state: _Configured, key: str) -> ty.Any:
        """:meth:`get` through this process's near cache."""
        stored = state.data_key(key)
        near = state.near.get()  # type: ignore[union-attr]
        value = near.lookup(key, stored)
        if value is not near_cache.MISS:
            return value
        begun = near.begin()
        data = state.io.get_serialized(stored)
        if data is base.NO_VALUE:
            raise exception.NotFound(key)
        value = self._decoded(state, key, data)
        near.fill(begun, ((key, stored, value),))
        return value

    def get_multi(self, keys: ty.Iterable[str]) -> list[ty.Any]:
        """Return the values of ``keys``, in the same order.

        :raises exception.NotFound: naming every missing key in ``target``.
        """
        state = self._state
        # As in get(): answered here when the near cache holds every key.
        if (state is not None and state.near_by_key is not None
                and type(keys) in (list, tuple) and not locking.holders):
            values = state.near_by_key.get().hit_all(keys)
            if values is not None:
                return values
        return self._get_multi(keys)

    @observe.operation('get_multi', _observer)
    def _get_multi(self, keys: ty.Iterable[str]) -> list[ty.Any]:
        """:meth:`get_multi`, unless the near cache answered it."""
        state = self._state or self._configured()
        keys = list(keys)
        stored = state.data_keys(keys)
        if state.near is not None and stored and not locking.holds_a_lock():
            return self._get_multi_near(state, keys, stored)
        found = state.io.get_serialized_multi(stored) if stored else []
        if base.NO_VALUE in found:
            raise exception.NotFound([key for key, data in zip(keys, found)
                                      if data is base.NO_VALUE])
        try:
            return state.decode_many(keys, found)
        except exception.IntegrityError as exc:
            raise self._refused(exc.target) from None

    def _get_multi_near(self, state: _Configured, keys: list[ty.Any],
                        stored: list[str]) -> list[ty.Any]:
        """:meth:`get_multi`: hot keys from the near cache, others read.

        The keys not served from the near cache are read in one backend
        call.
        """
        near = state.near.get()  # type: ignore[union-attr]
        values = near.lookup_many(keys, stored)
        if near_cache.MISS not in values:
            return values
        missing = [i for i, value in enumerate(values)
                   if value is near_cache.MISS]
        begun = near.begin()
        wanted = [stored[i] for i in missing]
        found = state.io.get_serialized_multi(wanted)
        if base.NO_VALUE in found:
            raise exception.NotFound([keys[i] for i, data in zip(
                missing, found) if data is base.NO_VALUE])
        try:
            decoded = state.decode_many([keys[i] for i in missing], found)
        except exception.IntegrityError as exc:
            raise self._refused(exc.target) from None
        near.fill(begun, zip([keys[i] for i in missing], wanted, decoded))
        for i, value in zip(missing, decoded):
            values[i] = value
        return values

    def _dropped(self, state: _Configured, stored: ty.Iterable[str]) -> None:
        """Forget ``stored`` keys from the near cache: they were written.

        Called after the write (also one that failed: it may have landed),
        so a read of the old value that began before it fills nothing.
        ``set`` and ``set_multi`` keep what they wrote instead, unless
        another write or drop came between (``NearCache.fill``): the
        value given (a copy, see ``NearCache``).
        """
        if state.near is not None:
            state.near.get().drop(stored)

    @observe.operation('set', _observer)
    def set(self, key: str, value: ty.Any,
            lock: 'KeyValueStoreLock | None' = None,
            expire_time: float | None = None) -> None:
        """Store ``value`` under ``key``; with ``lock``, check it first.

        :param expire_time: seconds this value lives (0: never), instead
            of the store's ``expire_time``; ``no_expiry_keys`` still win.
        """
        state = self._state or self._configured()
        stored = state.data_key(key)
        ttl = state.ttl_of(expire_time, stored)
        data = state.encode(key, value)
        fence = None if lock is None else locking.check_write(lock, self, key)
        near = state.near.get() if state.near is not None else None
        if near is not None:
            begun = near.begin()
        try:
            if fence is None:
                state.set_one(stored, data, ttl)
            elif not state.backend.set_fenced(stored, data, ttl, *fence):
                raise exception.LockTimeout(key)    # the lock passed on
        except BaseException:
            self._dropped(state, (stored,))
            raise
        if near is not None:
            near.fill(begun, ((key, stored, value),), True, ttl)

    @observe.operation('set_multi', _observer)
    def set_multi(self, mapping: ty.Mapping[str, ty.Any],
                  expire_time: float | None = None) -> None:
        """Store every item of ``mapping``.

        :param expire_time: as for :meth:`set`, for every item.
        """
        state = self._state or self._configured()
        ttl = state.ttl_of(expire_time)
        data_key, encode = state.data_key, state.encode
        batch = {data_key(key): encode(key, value)
                 for key, value in mapping.items()}
        near = state.near.get() if state.near is not None else None
        if near is not None:
            begun = near.begin()
            written = list(zip(mapping, batch, mapping.values()))
        # One backend call per ttl: no_expiry_keys may split the batch.
        exempt = {stored: batch.pop(stored)
                  for stored in batch.keys() & state.no_expiry}
        try:
            for part, part_ttl in ((batch, ttl), (exempt, None)):
                if part:
                    state.set_many(part, part_ttl)
        except BaseException:
            self._dropped(state, list(batch) + list(exempt))
            raise
        if near is not None:
            near.fill(begun, written, True, ttl)

    @observe.operation('delete', _observer)
    def delete(self, key: str,
               lock: 'KeyValueStoreLock | None' = None) -> None:
        """Remove ``key``.

        :raises exception.NotFound: when the key was not there.
        """
        state = self._configured()
        stored = state.data_key(key)
        fence = None if lock is None else locking.check_write(lock, self, key)
        try:
            if fence is None:
                existed = state.delete_existing(stored)
            else:
                existed = state.backend.delete_fenced(stored, *fence)
                if existed is None:
                    raise exception.LockTimeout(key)    # the lock passed on
        finally:
            self._dropped(state, (stored,))
        if not existed:
            raise exception.NotFound(key)

    @observe.operation('delete_multi', _observer)
    def delete_multi(self, keys: ty.Iterable[str]) -> None:
        """Remove ``keys``; missing keys are ignored."""
        state = self._configured()
        stored = state.data_keys(list(keys))
        if stored:
            try:
                state.io.delete_multi(stored)
            finally:
                self._dropped(state, stored)

    @observe.operation('add', _observer)
    def add(self, key: str, value: ty.Any,
            expire_time: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent, atomically.

        :param expire_time: as for :meth:`set`.
        :returns: whether the value was stored.
        """
        state = self._configured()
        stored = state.data_key(key)
        try:
            return state.backend.add_serialized(
                stored, state.encode(key, value),
                state.ttl_of(expire_time, stored))
        finally:
            self._dropped(state, (stored,))

    # --- atomic read-modify-write ---------------------------------------
    # Built on the backend's get_versioned/compare_and_set/touch_serialized
    # and, like add, not on the proxies (they have no such methods).

    @observe.operation('update', _observer)
    def update(self, key: str, fn: ty.Callable[[ty.Any], ty.Any],
               default: ty.Any = _REQUIRED,
               expire_time: float | None = None) -> ty.Any:
        """Replace the value of ``key`` by ``fn(value)``, atomically.

        Reads the value, calls ``fn`` and writes its result only if no
        one changed the key meanwhile (compare-and-set); if someone did,
        reads again and calls ``fn`` again, after a short random pause,
        up to ``[kvs] update_attempts`` times. So ``fn`` may run more
        than once, and must only compute the new value. If ``fn`` raises,
        nothing is written and the exception propagates. Threads of one
        process that update the same key take turns, first come first
        served, so only other processes race them.

        :param default: the value ``fn`` gets for a missing key (a copy
            of it); without it a missing key raises ``NotFound``.
        :param expire_time: as for :meth:`set`, for the new value.
        :returns: the new value, as ``fn`` returned it.
        :raises exception.NotFound: for a missing key without ``default``.
        :raises exception.IntegrityError: for a stored value that fails
            verification; ``fn`` never sees it.
        :raises exception.Conflict: after ``update_attempts`` lost races;
            nothing was written.
        :raises NotImplementedError: on a backend without compare-and-set.
        """
        return self._update(self._state or self._configured(), key, fn,
                            default, expire_time)

    def _update(self, state: _Configured, key: str,
                fn: ty.Callable[[ty.Any], ty.Any], default: ty.Any,
                expire_time: float | None,
                keep_expiry: bool = False) -> ty.Any:
        """:meth:`update`, which :meth:`incr` uses too (counted once).

        The loop: read, ``fn``, compare-and-set; in one frame, as it runs
        on every update. With ``keep_expiry`` (incr's), ``expire_time``
        applies only to a key this creates; an existing key keeps its
        expiry.
        """
        stored = state.data_key(key)
        ttl = state.ttl_of(expire_time, stored)
        backend = state.backend
        attempt = 0
        # This process's threads change the key in turn: only processes
        # race each other.
        turn = locking.take_update_turn(backend, stored)
        try:
            while True:
                started = time.monotonic()
                data, version = backend.get_versioned(stored)
                expiry = ttl
                if data is not base.NO_VALUE:
                    try:
                        value = state.decode(key, data)
                    except exception.IntegrityError:
                        raise self._refused(key) from None
                    if keep_expiry:
                        expiry = base.KEEP_EXPIRY
                elif default is _REQUIRED:
                    raise exception.NotFound(key)
                else:
                    # fn may change it in place.
                    value = copy.deepcopy(default)
                new = fn(value)
                if backend.compare_and_set(stored, version,
                                           state.encode(key, new), expiry):
                    return new
                attempt += 1
                if attempt >= self._conf.kvs.update_attempts:
                    raise exception.Conflict(key, attempt)
                unit = max(time.monotonic() - started, UPDATE_BACKOFF)
                time.sleep(random.uniform(0, min(unit * 2 ** min(
                    attempt, UPDATE_BACKOFF_DOUBLINGS), UPDATE_BACKOFF_MAX)))
        finally:
            locking.end_update_turn(turn)
            if state.near is not None:
                self._dropped(state, (stored,))

    def _decoded(self, state: _Configured, key: str, data: ty.Any) -> ty.Any:
        """The value of ``data``, read for ``key``; IntegrityError if bad."""
        try:
            return state.decode(key, data)
        except exception.IntegrityError:
            raise self._refused(key) from None

    @observe.operation('incr', _observer)
    def incr(self, key: str, delta: int = 1,
             expire_time: float | None = None) -> int:
        """Add ``delta`` to the int stored under ``key``, atomically.

        A missing key counts from 0; ``delta`` may be negative and the
        result may go below 0. The value stays an ordinary int value
        (``get`` returns it; ``set(key, 5)`` then ``incr(key)`` gives 6),
        encoded and protected like any other; unprotected, an int of up
        to 64 bits is stored as its decimal digits. Where the backend can
        add to such a value in one step on its server (memcached's
        ``incr`` for a delta of 0 or more, Redis's ``INCRBY``) it does;
        else (protected values, numbers the server cannot add exactly),
        the increment is a compare-and-set (:meth:`update`).

        Like the servers' own increments, ``incr`` keeps the expiry of an
        existing key: ``expire_time`` applies only to a key it creates.
        :meth:`touch` gives a counter a new expiry.

        :param expire_time: for a key this call creates: seconds from now
            (0: never); None: the store's ``expire_time``.
            ``no_expiry_keys`` still win.
        :returns: the new value.
        :raises TypeError: for a ``delta`` or stored value that is not an
            int (bool is not); nothing is written.
        :raises exception.Conflict: as :meth:`update` does.
        """
        if type(delta) is not int:
            raise TypeError('incr() delta must be an int, not %s'
                            % type(delta).__name__)
        state = self._state or self._configured()
        if state.incr_one is not None:
            stored = state.data_key(key)
            try:
                new = state.incr_one(stored, delta,
                                     state.ttl_of(expire_time, stored))
                if new is not None and not (serialization.DECIMAL_MIN <= new
                                            < serialization.DECIMAL_END):
                    # memcached counts on past 2**63 up to its wrap at
                    # 2**64: write the sum in the serializer's own form,
                    # which no server's increment reads.
                    self._rewrite(state, key)
            finally:
                if state.near is not None:
                    self._dropped(state, (stored,))
            if new is not None:
                return new

        def add(value: ty.Any) -> int:
            if type(value) is not int:
                raise TypeError('incr() needs an int value; key %s holds '
                                'a %s' % (exception._describe(key),
                                          type(value).__name__))
            return value + delta
        return self._update(state, key, add, 0, expire_time, True)

    def _rewrite(self, state: _Configured, key: str) -> None:
        """Write the value of ``key`` again as the codec writes it now."""
        try:
            self._update(state, key, _same, _REQUIRED, None, True)
        except (exception.NotFound, exception.Conflict):
            # Deleted meanwhile, or rewritten by others: the increment
            # stands, and the next one past the range tries again.
            pass

    @observe.operation('touch', _observer)
    def touch(self, key: str, expire_time: float | None = None) -> None:
        """Give the value of ``key`` a new expiry, without rewriting it.

        :param expire_time: seconds from now (0: never); None: the
            store's ``expire_time``. ``no_expiry_keys`` still win.
        :raises exception.NotFound: when the key is missing.
        :raises NotImplementedError: on a backend that cannot touch.
        """
        state = self._configured()
        stored = state.data_key(key)
        try:
            found = state.backend.touch_serialized(
                stored, state.ttl_of(expire_time, stored))
        finally:
            # A shorter expiry must not leave the entry outliving it.
            self._dropped(state, (stored,))
        if not found:
            raise exception.NotFound(key)

    # --- locks ---------------------------------------------------------

    def get_lock(self, key: str) -> 'KeyValueStoreLock':
        """A lock on ``key``, to pass to :meth:`set` and :meth:`delete`."""
        state = self._configured()
        return KeyValueStoreLock(self, key, state.lock_key(key),
                                 state.backend, state.settings)


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
    with _registry_lock:
        store = _registry.get(name)
        if store is None:
            store = _registry[name] = KeyValueStore(
                name, kvs_region=kvs_region, conf=conf)
        return store
