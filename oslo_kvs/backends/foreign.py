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

"""Foreign dogpile.cache backends behind the oslo_kvs backend API.

A store may be configured with any registered dogpile.cache backend
(``dogpile.cache.redis``, ``dogpile.cache.pymemcache``, a third-party one).
Such a backend was written for dogpile's object API, so two rules are
enforced here, once, before it is used:

- **No unpickling of server data.** memcached clients decide how to decode
  a value from the flags the *server* returns, and their default decoders
  unpickle: a hostile memcached could run code in the service. A
  ``dogpile.cache.pymemcache`` backend is therefore given
  :data:`RAW_BYTES_SERDE` (through its public ``serde`` argument), which
  returns the stored bytes whatever the flags; the store then verifies and
  decodes them like any other value. The other memcached backends
  (``dogpile.cache.memcached``, ``.bmemcached``, ``.pylibmc``) offer no such
  argument and are refused.
- **Errors read like ours**, through the one translation of
  :mod:`oslo_kvs.backends.base`. A server fault of the client library
  (``OSError``, pymemcache's and redis-py's errors) becomes
  :class:`~oslo_kvs.exception.BackendError` naming the backend and servers,
  an oversize value :class:`~oslo_kvs.exception.ValueTooLarge`, a key the
  server cannot take :class:`~oslo_kvs.exception.ConfigurationError`.

Expiry: a foreign backend expires values its own way (its own arguments,
e.g. ``memcached_expire_time`` or ``redis_expiration_time``), so the
store-level ``expire_time``/``no_expiry_keys`` and per-call expiry are
refused for it with a ``ConfigurationError`` rather than silently ignored.
"""

import typing as ty

from dogpile.cache import api
from dogpile.cache.backends import memcached as dogpile_memcached
from pymemcache import exceptions as pymemcache_exceptions
from pymemcache import serde as pymemcache_serde
from redis import exceptions as redis_exceptions

from oslo_kvs import _process
from oslo_kvs.backends import address
from oslo_kvs.backends import base
from oslo_kvs import exception

#: The serde every foreign pymemcache backend gets: pymemcache's own
#: serde with neither function, which stores what it is given (the store
#: gives bytes; pymemcache encodes the 1 dogpile's mutex writes) and
#: returns the stored bytes whatever flags the server sends back.
RAW_BYTES_SERDE = pymemcache_serde.LegacyWrappingSerde(None, None)


def arguments(name: str, backend_cls: type,
              args: dict[str, ty.Any]) -> dict[str, ty.Any]:
    """The arguments to create foreign backend ``backend_cls`` with.

    The store-level expiry arguments were refused before, by
    :func:`oslo_kvs.settings.from_arguments`.

    :raises exception.ConfigurationError: for a memcached backend that
        would decode values by the server's flags, and for a ``serde``
        other than :data:`RAW_BYTES_SERDE`.
    """
    if not issubclass(backend_cls, dogpile_memcached.GenericMemcachedBackend):
        return args
    if not issubclass(backend_cls, dogpile_memcached.PyMemcacheBackend):
        raise exception.ConfigurationError(
            'dogpile backend %s is refused: its memcached client decodes '
            'values by the flags the server returns, unpickling them, so a '
            'hostile server could run code here; use openstack.kvs.Memcached'
            ' or dogpile.cache.pymemcache' % name, argument='backing_store')
    if args.get('serde', RAW_BYTES_SERDE) is not RAW_BYTES_SERDE:
        raise exception.ConfigurationError(
            "Argument 'serde' of dogpile backend %s cannot be set: oslo_kvs "
            "gives it one that never unpickles, whatever the server's flags"
            % name, argument='serde')
    if args.get('hashclient_retry_attempts', 0) not in (0, '0'):
        raise exception.ConfigurationError(
            'Argument \'hashclient_retry_attempts\' of dogpile backend %s '
            'must be 0: while pymemcache retries a failed server it drops '
            'writes and deletes silently, which leaves stale values'
            % name, argument='hashclient_retry_attempts')
    return dict(args, serde=RAW_BYTES_SERDE, hashclient_retry_attempts=0)


def server_labels(args: ty.Mapping[str, ty.Any]) -> list[str]:
    """``host:port`` labels from a foreign backend's usual arguments.

    dogpile's backends take ``url`` (one or a list; memcached ``host:port``
    or a ``redis://`` URL), ``host``/``port`` or ``sentinels``. Credentials
    in URLs are left out.
    """
    urls = args.get('url')
    if urls is None and 'sentinels' in args:
        urls = ['%s:%s' % tuple(pair) for pair in args['sentinels']]
    elif urls is None and 'host' in args:
        urls = '%s:%s' % (args['host'], args.get('port', 6379))
    return [address.label(str(url))
            for url in ([urls] if isinstance(urls, str) else urls or ())]


class DogpileAdapter(base.Backend):
    """Gives any registered dogpile.cache backend the oslo_kvs backend API.

    ``backend`` is what the store's dogpile region calls (the foreign
    backend, wrapped in the region's proxies if any); every read and write
    goes through it. ``add`` and ``delete`` are built from get/set/delete
    under the backend's own mutex when it has one (else a process-local
    lock), so they are atomic only as far as that mutex reaches. Locks are
    process-local.
    """

    # The client libraries' server faults, and the key the memcached
    # client refuses (only with key mangling off).
    server_errors = (OSError, pymemcache_exceptions.MemcacheError,
                     redis_exceptions.RedisError)
    key_errors = (pymemcache_exceptions.MemcacheIllegalInputError,)

    def __init__(self, backend: api.CacheBackend, name: str,
                 arguments: ty.Mapping[str, ty.Any] | None = None) -> None:
        self.name = name
        super().__init__({})
        self.backend = backend
        self._servers = server_labels(arguments or {})
        self._local = base.LocalLocks()
        self._mutex = _process.Primitive('Lock')

    def describe_failure(self, exc: BaseException) -> str:
        # The class name only: a client's message may quote a URL with
        # its password.
        return type(exc).__name__

    def is_too_large(self, exc: BaseException) -> bool:
        return (isinstance(exc, pymemcache_exceptions.MemcacheServerError)
                and 'too large' in str(exc))

    def _no_ttl(self, ttl: float | None) -> None:
        if ttl is not None:
            raise exception.ConfigurationError(
                'dogpile backend %s expires values by its own arguments; '
                'expire_time is not supported for it' % self.name,
                argument='expire_time')

    def _write_if(self, key: str, present: bool,
                  write: ty.Callable[[], None]) -> bool:
        """``write()`` if ``key`` is ``present`` (or absent); whether it ran.

        Under the backend's dogpile mutex for ``key`` when it has one, else
        a process-local lock: atomic only as far as that lock reaches.
        """
        mutex = self.backend.get_mutex(key) or self._mutex.get()
        mutex.acquire()
        try:
            absent = self.backend.get_serialized(key) is base.NO_VALUE
            if absent == present:
                return False
            write()
            return True
        finally:
            mutex.release()

    @base.translate_errors
    def get_serialized(self, key):
        return self.backend.get_serialized(key)

    @base.translate_errors
    def get_serialized_multi(self, keys):
        return self.backend.get_serialized_multi(keys)

    @base.translate_errors
    def set_serialized(self, key, value, ttl=None):
        self._no_ttl(ttl)
        self.backend.set_serialized(key, value)

    @base.translate_errors
    def set_serialized_multi(self, mapping, ttl=None):
        self._no_ttl(ttl)
        self.backend.set_serialized_multi(mapping)

    @base.translate_errors
    def delete_multi(self, keys):
        self.backend.delete_multi(keys)

    @base.translate_errors
    def delete_existing(self, key):
        return self._write_if(key, True, lambda: self.backend.delete(key))

    @base.translate_errors
    def add_serialized(self, key, value, ttl=None):
        self._no_ttl(ttl)
        return self._write_if(
            key, False, lambda: self.backend.set_serialized(key, value))

    def acquire_lock(self, key, token, ttl):
        return self._local.acquire(key, token, ttl)

    def release_lock(self, key, token):
        return self._local.release(key, token)
