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
import urllib.parse

from dogpile.cache import api
from dogpile.cache.backends import memcached as dogpile_memcached
from pymemcache import exceptions as pymemcache_exceptions
from redis import exceptions as redis_exceptions

from oslo_kvs import _process
from oslo_kvs.backends import base
from oslo_kvs import exception


class RawBytesSerde:
    """A pymemcache serde that never decodes: bytes in, bytes out.

    pymemcache calls ``deserialize(key, value, flags)`` with the flags the
    server returned; ignoring them is the point, since a hostile server
    chooses them. The store hands only bytes to ``serialize``; dogpile's
    memcached mutex hands it an int.
    """

    def serialize(self, key: ty.Any, value: ty.Any) -> tuple[bytes, int]:
        if isinstance(value, bytes):
            return value, 0
        if type(value) is int:
            # dogpile's memcached mutex (distributed_lock) writes 1 under
            # its lock key; it only checks that the key exists.
            return b'%d' % value, 0
        raise TypeError('oslo_kvs stores only bytes in memcached, not %s'
                        % type(value).__name__)

    def deserialize(self, key: ty.Any, value: bytes, flags: int) -> bytes:
        return value


#: The serde every foreign pymemcache backend gets.
RAW_BYTES_SERDE = RawBytesSerde()


def arguments(name: str, backend_cls: type,
              args: dict[str, ty.Any]) -> dict[str, ty.Any]:
    """The arguments to create foreign backend ``backend_cls`` with.

    The store-level expiry arguments were refused before (see
    :func:`oslo_kvs.core.expiry_arguments`).

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
            ' or dogpile.cache.pymemcache' % name)
    serde = args.get('serde', RAW_BYTES_SERDE)
    if serde is not RAW_BYTES_SERDE:
        raise exception.ConfigurationError(
            'Argument \'serde\' of dogpile backend %s cannot be set: oslo_kvs'
            ' gives it a serde returning raw bytes whatever the server\'s '
            'flags, so no server can make it unpickle' % name)
    if args.get('hashclient_retry_attempts', 0) not in (0, '0'):
        raise exception.ConfigurationError(
            'Argument \'hashclient_retry_attempts\' of dogpile backend %s '
            'must be 0: while pymemcache retries a failed server it drops '
            'writes and deletes silently, which leaves stale values'
            % name)
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
    if urls is None:
        return []
    labels = []
    for url in [urls] if isinstance(urls, str) else list(urls):
        url = str(url)
        # "host:port" has no scheme; give it one so both forms parse alike.
        split = urllib.parse.urlsplit(url if '//' in url else '//' + url)
        labels.append(split.netloc.rpartition('@')[2] or split.path)
    return labels


class DogpileAdapter(base.Backend):
    """Gives any registered dogpile.cache backend the oslo_kvs backend API.

    ``backend`` is what the store's dogpile region calls (the foreign
    backend, wrapped in the region's proxies if any); every read and write
    goes through it. ``add`` and ``delete`` are built from get/set/delete
    under the backend's own mutex when it has one (else a process-local
    lock), so they are atomic only as far as that mutex reaches. Locks are
    process-local.
    """

    #: Client-library exceptions meaning "the server failed".
    server_errors: ty.ClassVar[tuple[type[BaseException], ...]] = (
        OSError, pymemcache_exceptions.MemcacheError,
        redis_exceptions.RedisError)
    #: A key the memcached client refuses (only with key mangling off).
    key_errors: ty.ClassVar[tuple[type[BaseException], ...]] = (
        pymemcache_exceptions.MemcacheIllegalInputError,)

    def __init__(self, backend: api.CacheBackend, name: str,
                 arguments: ty.Mapping[str, ty.Any] | None = None) -> None:
        self.name = name
        super().__init__({})
        self.backend = backend
        self._servers = server_labels(arguments or {})
        self._local = base.LocalLocks()
        self._mutex = _process.Primitive('Lock')

    def servers(self) -> list[str]:
        return list(self._servers)

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
                'expire_time is not supported for it' % self.name)

    def _atomically(self, key: str) -> ty.ContextManager[ty.Any]:
        mutex = self.backend.get_mutex(key)
        return (_MutexContext(mutex) if mutex is not None
                else self._mutex.get())

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
        with self._atomically(key):
            if self.backend.get_serialized(key) is base.NO_VALUE:
                return False
            self.backend.delete(key)
            return True

    @base.translate_errors
    def add_serialized(self, key, value, ttl=None):
        self._no_ttl(ttl)
        with self._atomically(key):
            if self.backend.get_serialized(key) is not base.NO_VALUE:
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
