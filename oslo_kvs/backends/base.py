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

"""The small API every oslo_kvs backend implements, and its shared rules.

A backend is a dogpile.cache :class:`~dogpile.cache.api.CacheBackend` that
moves bytes under already namespaced and mangled "stored keys". It knows its
server and nothing of the store's rules: the store checks keys, serializes,
protects, mangles and decides each write's ``ttl`` before a backend sees
anything.

This module holds what every backend shares, written once: argument
declarations (:class:`Option`, the shared option groups, bounded numbers),
the translation of server faults into
:class:`~oslo_kvs.exception.BackendError` (the :func:`translate_errors`
decorator on each method that talks to a server) and the in-process lock
table of backends without a server lock (:class:`LocalLocks`). Waiting for
a lock is :mod:`oslo_kvs.locking`'s.
"""

import dataclasses
import math
import os
import time
import typing as ty

from dogpile.cache import api
from oslo_config import types

from oslo_kvs import _process
from oslo_kvs import _wrapping
from oslo_kvs.backends import address
from oslo_kvs import exception
from oslo_kvs import locking
from oslo_kvs import serialization

NO_VALUE = api.NO_VALUE


class _KeepExpiry:
    """The type of :data:`KEEP_EXPIRY`; its one instance is the value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return 'KEEP_EXPIRY'


#: The ``ttl`` of a :meth:`Backend.compare_and_set` that keeps the expiry
#: the key has (none, or the deadline it was given). The store passes it
#: only with a version token, never for an absent key.
KEEP_EXPIRY: ty.Any = _KeepExpiry()

#: The TLS arguments (``TLS``) that name files.
TLS_FILES = ('tls_cafile', 'tls_certfile', 'tls_keyfile')

#: Longest duration any option or ttl may give (about 31 years); anything
#: longer is a typo or an overflow waiting to happen in a client.
MAX_SECONDS = 1e9
#: Largest count (connections, probes, items) any option may give.
MAX_COUNT = 2 ** 31 - 1


@dataclasses.dataclass(frozen=True)
class Option:
    """A backend argument: its type, default and historical aliases.

    ``type`` is an oslo.config type or, for a number, a :class:`Number`
    (:func:`seconds`, :func:`count`), so strings from config files are
    coerced the way oslo.config coerces them (``"False"`` is false) and
    booleans are not numbers. ``secret`` arguments are never echoed in
    error messages. ``server`` arguments name servers (addresses or URLs),
    which ``oslo-kvs doctor`` reads to find the hosts a backend reaches.
    """

    name: str
    type: ty.Callable[[ty.Any], ty.Any]
    default: ty.Any = None
    aliases: tuple[str, ...] = ()
    secret: bool = False
    help: str = ''
    server: bool = False


class Number:
    """A finite number within bounds, as an oslo.config-style type.

    oslo.config's Integer and Float accept NaN, infinities, 1e308 and
    integers past 2**63, all of which break clients later with raw errors;
    this type refuses them (and booleans) up front.
    """

    def __init__(self, kind: type = float, min: float = 0,
                 max: float = MAX_SECONDS) -> None:
        self.kind, self.min, self.max = kind, min, max

    def __call__(self, value: ty.Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (str, int,
                                                             float)):
            raise TypeError('expected a number, not %s'
                            % type(value).__name__)
        number = float(value)
        if not math.isfinite(number):
            raise ValueError('must be a finite number')
        if self.kind is int and not number.is_integer():
            raise ValueError('must be a whole number')
        number = self.kind(number)
        if not self.min <= number <= self.max:
            raise ValueError('must be between %s and %s'
                             % (self.min, self.max))
        return number

    def __repr__(self) -> str:
        return '%s(%s..%s)' % (self.kind.__name__, self.min, self.max)


def seconds(min: float = 0) -> Number:
    """A duration in seconds, at least ``min``."""
    return Number(float, min, MAX_SECONDS)


def count(min: int = 0, max: int = MAX_COUNT) -> Number:
    """A whole number of things between ``min`` and ``max``."""
    return Number(int, min, max)


def coerce(owner: str, name: str, otype: ty.Callable[[ty.Any], ty.Any],
           value: ty.Any, secret: bool = False) -> ty.Any:
    """Coerce ``value`` with an option type or raise a clear error.

    :raises exception.ConfigurationError: naming ``owner`` and ``name`` and,
        unless ``secret``, the rejected value.
    """
    try:
        return otype(value)
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        shown = '<secret>' if secret else repr(value)
        detail = 'not valid' if secret else str(exc)
        raise exception.ConfigurationError(
            'Invalid value %s for argument %r of %s: %s'
            % (shown, name, owner, detail), name) from None


def check_readable(owner: str, args: ty.Mapping[str, ty.Any],
                   names: ty.Iterable[str] = TLS_FILES) -> None:
    """Refuse file arguments (TLS files) that this process cannot read.

    :raises exception.ConfigurationError: naming the first such argument.
    """
    for name in names:
        path = args.get(name)
        if path and not os.access(path, os.R_OK):
            raise exception.ConfigurationError(
                'Argument %s of %s: cannot read %r' % (name, owner, path),
                name)


def check_tls(owner: str, args: ty.Mapping[str, ty.Any]) -> bool:
    """Check the ``TLS`` arguments of a backend; whether TLS is on.

    TLS arguments without ``tls_enabled`` are refused rather than ignored
    (whoever gave them expects TLS), as is a key file without its
    certificate, or a file this process cannot read.

    :raises exception.ConfigurationError: naming the argument at fault.
    """
    if not args['tls_enabled']:
        given = [name for name in TLS_FILES + ('tls_allowed_ciphers',)
                 if args.get(name)]
        if given:
            raise exception.ConfigurationError(
                'Argument(s) %s of %s need tls_enabled=True'
                % (', '.join(given), owner), given[0])
        return False
    if args.get('tls_keyfile') and not args.get('tls_certfile'):
        raise exception.ConfigurationError(
            'Argument tls_keyfile of %s needs tls_certfile' % owner,
            'tls_keyfile')
    check_readable(owner, args)
    return True


def is_unset(value: ty.Any) -> bool:
    """``None`` or a blank string: what ``name =`` in a config file gives."""
    return value is None or (isinstance(value, str) and not value.strip())


def parse_arguments(owner: str, options: ty.Iterable[Option],
                    arguments: ty.Mapping[str, ty.Any]) -> dict[str, ty.Any]:
    """Validate backend ``arguments`` against ``options``.

    Unknown names are refused (a typo must not be ignored), aliases are
    folded into the option's name, and ``None`` or ``''`` means "the
    default".
    """
    options = list(options)
    known = {name for opt in options for name in (opt.name,) + opt.aliases}
    unknown = sorted(str(name) for name in set(arguments) - set(known))
    if unknown:
        raise exception.ConfigurationError(
            'Unknown argument(s) %s for %s; valid arguments are: %s'
            % (', '.join(unknown), owner, ', '.join(sorted(known))),
            unknown[0])
    parsed = {}
    for opt in options:
        given = given_name(owner, (opt.name,) + opt.aliases, arguments)
        if given is None or is_unset(arguments[given]):
            parsed[opt.name] = opt.default
        else:
            parsed[opt.name] = coerce(owner, given, opt.type,
                                      arguments[given], opt.secret)
    return parsed


def given_name(owner: str, names: ty.Iterable[str | None],
               arguments: ty.Mapping[str, ty.Any]) -> str | None:
    """Which of ``names`` (an argument and its aliases) is in ``arguments``.

    :raises exception.ConfigurationError: when more than one is.
    """
    given = [name for name in names if name and name in arguments]
    if len(given) > 1:
        raise exception.ConfigurationError(
            'Arguments %s of %s are aliases of each other; give only '
            'one' % (' and '.join(given), owner), given[-1])
    return given[0] if given else None


# --- option groups shared by the network backends ------------------------
# Declared once so a name means the same on every backend; a backend picks
# its own defaults with dataclasses.replace().

SOCKET_TIMEOUT = Option(
    'socket_timeout', seconds(min=0.001), 1.0,
    help='Seconds to wait for a reply before the server counts as failed.')
CONNECT_TIMEOUT = Option(
    'connect_timeout', seconds(min=0.001), None,
    aliases=('socket_connect_timeout',),
    help='Seconds to wait for a connection (default: socket_timeout).')

POOL_MAXSIZE = Option(
    'pool_maxsize', count(min=1, max=10000), 10,
    aliases=('max_pool_size',), help='Most connections to each server.')

KEEPALIVE = (
    Option('socket_keepalive', types.Boolean(), False,
           aliases=('enable_socket_keepalive',),
           help='Turn on TCP keepalive on connections.'),
    Option('socket_keepalive_idle', count(min=1, max=86400), None,
           help='Idle seconds before the first keepalive probe (default: '
                'the system\'s).'),
    Option('socket_keepalive_interval', count(min=1, max=86400), None,
           help='Seconds between keepalive probes (default: the '
                'system\'s).'),
    Option('socket_keepalive_count', count(min=1, max=1000), None,
           help='Unanswered probes before the connection is dropped '
                '(default: the system\'s).'),
)


def keepalive_settings(args: ty.Mapping[str, ty.Any]) -> dict[str, int]:
    """The ``KEEPALIVE`` settings given, by their TCP names.

    The names are ``idle``, ``intvl`` and ``cnt``: pymemcache's keywords,
    and the ends of the socket options they set (``TCP_KEEPIDLE``...).
    Settings left unset keep the system's defaults.
    """
    given = (('idle', 'socket_keepalive_idle'),
             ('intvl', 'socket_keepalive_interval'),
             ('cnt', 'socket_keepalive_count'))
    return {tcp: args[name] for tcp, name in given
            if args[name] is not None}


TLS = (
    Option('tls_enabled', types.Boolean(), False, help='Use TLS.'),
    Option('tls_cafile', types.String(),
           help='CA bundle that verifies the servers (default: the system '
                'CAs).'),
    Option('tls_certfile', types.String(),
           help='Client certificate, for servers that check clients.'),
    Option('tls_keyfile', types.String(),
           help="Client certificate's private key, if not in "
                'tls_certfile.'),
    Option('tls_allowed_ciphers', types.String(),
           help='OpenSSL cipher list to allow.'),
)


# --- error translation -----------------------------------------------------

def backend_error(backend: 'Backend', exc: BaseException,
                  operation: str) -> exception.BackendError:
    """The one wording of a server fault: backend, operation, server, cause.

    The client's text goes through :func:`address.redact` with the
    backend's secrets. The cause is chained unless the backend holds
    secrets, since a client exception's own text or arguments may carry
    them into a logged traceback.
    """
    detail = address.redact(backend.describe_failure(exc), backend.secrets)
    if len(detail) > 500:
        detail = detail[:500] + '...'
    error = exception.BackendError('%s: %s on %s failed: %s' % (
        backend.name, operation, backend.server_of(exc), detail))
    error.__cause__ = None if backend.secrets else exc
    error.__suppress_context__ = True
    return error


def _raise_translated(backend: 'Backend', exc: BaseException,
                      operation: str) -> ty.NoReturn:
    """Raise what ``exc`` leaves a backend method as.

    A server fault becomes BackendError (:func:`backend_error`), a refused
    size ValueTooLarge; oslo_kvs exceptions and programming errors stay
    what they are.
    """
    if isinstance(exc, exception.KVSError):
        raise exc
    if isinstance(exc, backend.key_errors):
        raise exception.ConfigurationError(
            '%s: %s cannot store this key (%s); enable [kvs] '
            'enable_key_mangler' % (backend.name, backend.server_of(exc),
                                    type(exc).__name__)) from None
    if isinstance(exc, backend.too_large_errors + backend.server_errors):
        if backend.is_too_large(exc):
            raise exception.ValueTooLarge(
                '%s: the value exceeds what %s stores'
                % (backend.name, backend.server_of(exc))) from None
        raise backend_error(backend, exc, operation)  # cause: see there
    raise exc


def translate_errors(method: ty.Callable[..., ty.Any]
                     ) -> ty.Callable[..., ty.Any]:
    """Decorate a backend method: server faults leave it as BackendError.

    Every backend method that talks to a server carries it, so what a
    caller can catch is visible where the call is made: an exception of a
    type in the backend's :attr:`~Backend.server_errors` becomes
    :class:`~oslo_kvs.exception.BackendError` (see :func:`backend_error`),
    one the server raised for a value too big
    :class:`~oslo_kvs.exception.ValueTooLarge`, one of
    :attr:`~Backend.key_errors` ``ConfigurationError``. oslo_kvs
    exceptions pass through and any other exception (a programming error)
    stays what it is.

    Put it outermost, so that decorators beneath it (a retry) see the
    client's own exceptions; they must keep the method's ``__name__``
    (``functools.wraps``), which names the operation in messages.
    """
    # The wrapper takes the method's own parameters (oslo_kvs._wrapping):
    # it runs on every operation.
    return _wrapping.wrapper(method, _TRANSLATED, _TRANSLATED_NAMES,
                             globals(),
                             method.__name__.replace('_serialized', ''))


_TRANSLATED = """
def wrap(method, operation):
    def translated(self{params}):
        try:
            return method(self{call})
        except BaseException as exc:
            _raise_translated(self, exc, operation)
    return translated
"""
#: The names _TRANSLATED uses.
_TRANSLATED_NAMES = frozenset(['method', 'operation', 'exc',
                               '_raise_translated'])


#: What :meth:`Backend.server_stats` gives for every server, each the
#: server's own count (None where it keeps none): reads that found a value
#: (``hits``) or not (``misses``), items dropped to make room
#: (``evictions``), items held, bytes used and the limit (None:
#: unlimited), open client connections.
STAT_KEYS = ('hits', 'misses', 'evictions', 'items', 'bytes_used',
             'bytes_limit', 'connections')


@translate_errors
def stats(backend: 'Backend', read: ty.Callable[[], dict[str, ty.Any]]
          ) -> dict[str, ty.Any]:
    """``read()``: a server's statistics, its faults translated."""
    return read()


def versioned_by_value(backend: 'Backend', key: str) -> tuple[ty.Any, ty.Any]:
    """``get_versioned`` where the stored bytes are their own version.

    For a backend whose ``compare_and_set`` writes only while the key
    still holds exactly the bytes read. A sealed value carries a random
    nonce, and equal plain bytes decode to an equal value, so a change
    and a change back between the read and the write cannot make
    ``fn``'s result wrong.
    """
    value = backend.get_serialized(key)
    return value, None if value is NO_VALUE else value


def _region_loads(data: bytes) -> ty.Any:
    """:func:`serialization.loads` for a dogpile region: bad bytes miss."""
    try:
        return serialization.loads(data)
    except ValueError:
        raise api.CantDeserializeException() from None


def _only_bytes(value: ty.Any) -> bytes:
    """Refuse what only a region without a serializer would hand over."""
    if not isinstance(value, bytes):
        raise TypeError('oslo_kvs backends store bytes, not %s; use them '
                        'from a dogpile region with a serializer (the '
                        'backend\'s own is the default)'
                        % type(value).__name__)
    return value


class Backend(api.CacheBackend):
    """Base class of oslo_kvs backends: bytes in, bytes out.

    Subclasses set :attr:`name`, :attr:`options` and
    :attr:`server_errors`, then implement the ``*_serialized`` methods,
    ``delete_multi``, :meth:`delete_existing`, :meth:`acquire_lock`
    and :meth:`release_lock` (dogpile.cache declares
    ``get_serialized_multi``, which gives :data:`NO_VALUE` for a missing
    key, and ``delete_multi``, which ignores missing keys). ``ttl``
    arguments are seconds (> 0) or ``None`` for never; a backend rounds a
    ttl up to its server's granularity, never down. The ``ttl`` of
    :meth:`compare_and_set` may also be :data:`KEEP_EXPIRY`: the value
    changes and the key keeps the expiry it has (``incr()`` of an
    existing key writes so); a backend that implements
    ``compare_and_set`` must honour it.

    Each method that talks to a server is decorated with
    :func:`translate_errors`, so that a fault of a type listed in
    :attr:`server_errors` leaves it as a
    :class:`~oslo_kvs.exception.BackendError`. A backend with no server
    (the memory backend) needs no decorator, and pays for none.
    """

    #: The name users give to ``configure()``.
    name: str = 'openstack.kvs.Backend'
    #: The server's ``db.system.name`` in OpenTelemetry's semantic
    #: conventions (``memcached``, ``redis``, ``mongodb``), None if none.
    db_system: ty.ClassVar[str | None] = None
    #: Arguments this backend accepts.
    options: ty.ClassVar[tuple[Option, ...]] = ()
    #: The backend's historical name for the store's ``expire_time``.
    expire_time_alias: ty.ClassVar[str | None] = None
    #: The port of a server address given without one (None: no server).
    default_port: ty.ClassVar[int | None] = None
    #: Exception types that mean "the server failed", not "a bug".
    server_errors: ty.ClassVar[tuple[type[BaseException], ...]] = ()
    #: Exception types that mean "the server refused a value this big".
    too_large_errors: ty.ClassVar[tuple[type[BaseException], ...]] = ()
    #: Exception types that mean "the server cannot store this key" (seen
    #: only with key mangling off, for a key :meth:`check_key` let pass).
    key_errors: ty.ClassVar[tuple[type[BaseException], ...]] = ()
    #: True when :meth:`acquire_lock` excludes other processes and hosts.
    distributed_lock: ty.ClassVar[bool] = False
    #: True when values never leave this process (no server to distrust).
    local: ty.ClassVar[bool] = False
    #: Keystone's switch: prefer the backend's own key mangler over the
    #: one given to ``configure()``.
    use_backend_key_mangler: ty.ClassVar[bool] = False
    #: dogpile's attribute; a backend may set a mangler of its own.
    key_mangler: ty.Callable[[str], str] | None = None

    # --- a plain dogpile region (object API) ---------------------------
    # A region serializes with these unless given its own: values oslo_kvs
    # can store round-trip, anything else is a TypeError before anything is
    # written, and bytes read back are never unpickled.
    serializer = staticmethod(serialization.dumps)
    deserializer = staticmethod(_region_loads)

    def get_mutex(self, key: str) -> api.CacheMutex:
        """dogpile's per-key mutex, on this backend's token lock."""
        return locking.RegionMutex(self, key)

    def __init__(self, arguments: ty.Mapping[str, ty.Any]) -> None:
        self.args = parse_arguments(self.name, self.options, arguments)
        #: Secrets to keep out of messages: secret arguments, and the
        #: passwords of URLs given as arguments.
        self.secrets: list[str] = []
        for opt in self.options:
            self.add_secrets(self.args[opt.name], opt.secret)

    def add_secrets(self, value: ty.Any, secret: bool = True) -> None:
        """Remember ``value`` (or the URL passwords in it) as secret.

        Of a list (of servers, say) only URL passwords are secret.
        """
        if isinstance(value, str):
            self.secrets.extend(address.secrets_in(value, secret))
        elif isinstance(value, (list, tuple)):
            for item in value:
                self.add_secrets(item, secret=False)

    @classmethod
    def argument_names(cls, secret: bool = False,
                       server: bool = False) -> set[str]:
        """Names and aliases of the arguments.

        Only the secret ones if ``secret``, only those that name servers
        if ``server``.
        """
        return {name for opt in cls.options
                if (opt.secret or not secret) and (opt.server or not server)
                for name in (opt.name,) + opt.aliases}

    @property
    def where(self) -> str:
        """The server(s), for messages; never a secret."""
        return ', '.join(self.servers()) or self.name

    def describe_failure(self, exc: BaseException) -> str:
        """``exc`` in words, before redaction; a backend may say more."""
        return '%s: %s' % (type(exc).__name__, exc)

    def is_too_large(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the server refusing an oversize value.

        By default, whether it is one of :attr:`too_large_errors`; a
        backend whose client gives no type of its own for it looks closer.
        """
        return isinstance(exc, self.too_large_errors)

    def server_of(self, exc: BaseException) -> str:
        """The server ``exc`` is about, for messages: by default all.

        A backend with several servers whose exceptions name the one that
        failed returns that one.
        """
        return self.where

    def check_key(self, key: str) -> None:
        """Refuse a key the server cannot store, before anything is sent.

        Only called when key mangling is off; mangled keys always fit.
        """

    #: Labels of the servers, without secrets; a backend sets its own.
    _servers: ty.Sequence[str] = ()

    def servers(self) -> list[str]:
        """The servers this backend talks to, as labels without secrets."""
        return list(self._servers)

    def server_stats(self) -> dict[str, dict[str, ty.Any]]:
        """What each server says about itself, by server label.

        Each server gives :data:`STAT_KEYS` and what else its backend
        finds useful (version, uptime, ...); the counts are the server's,
        for every client and store on it. A server that fails gives
        ``{'error': message}``, the message of the
        :class:`~oslo_kvs.exception.BackendError` that names it, and the
        other servers are still asked.

        :raises NotImplementedError: when the backend cannot tell.
        """
        found = {}
        for label, read in self.stat_sources():
            try:
                found[label] = stats(self, read)
            except exception.BackendError as exc:
                found[label] = {'error': str(exc)}
        return found

    def stat_sources(self) -> list[tuple[str, ty.Callable[[], dict]]]:
        """Each server's label and what reads its :meth:`server_stats`."""
        raise NotImplementedError('%s does not report server statistics'
                                  % self.name)

    # dogpile's object API maps onto the bytes API.
    def get(self, key: str) -> ty.Any:
        return self.get_serialized(key)

    def get_multi(self, keys: ty.Iterable[str]) -> ty.Sequence[ty.Any]:
        # Older dogpile.cache releases type get_serialized_multi's keys as
        # a Sequence.
        return self.get_serialized_multi(list(keys))

    def set(self, key: str, value: ty.Any) -> None:
        self.set_serialized(key, _only_bytes(value))

    def set_multi(self, mapping: ty.Mapping[str, ty.Any]) -> None:
        for value in mapping.values():
            _only_bytes(value)
        self.set_serialized_multi(mapping)

    def delete(self, key: str) -> None:
        self.delete_existing(key)

    def set_serialized(self, key: str, value: bytes,
                       ttl: float | None = None) -> None:
        """Store ``value``; it expires after ``ttl`` seconds (None: never)."""
        raise NotImplementedError

    def set_serialized_multi(self, mapping: ty.Mapping[str, bytes],
                             ttl: float | None = None) -> None:
        """Store every item, all with the same ``ttl``."""
        raise NotImplementedError

    def delete_existing(self, key: str) -> bool:
        """Remove ``key``; return whether it was there."""
        raise NotImplementedError

    def add_serialized(self, key: str, value: bytes,
                       ttl: float | None = None) -> bool:
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

    def wait_released(self, key: str, timeout: float) -> bool:
        """Block until the lock ``key`` may be free, if the server can tell.

        Optional: a backend whose server notifies releases waits here, at
        most ``timeout`` seconds (may be infinite) and no longer than the
        holder's lease has left, so a lock whose holder died is tried
        again once it expired. A notice may be stale or meant for another
        waiter: the caller tries the lock again either way.

        :returns: whether it waited (or found the lock already free);
            False, having done nothing, when the caller must back off
            instead. By default always False.
        """
        return False

    # --- atomic read-modify-write (optional) -----------------------------
    # The store builds update(), incr() and touch() on these three. A
    # backend without them (out of tree, or a foreign dogpile backend)
    # raises NotImplementedError naming the method, so those store calls
    # fail clearly instead of silently racing.

    def _not_implemented(self, method: str, needed_by: str) -> ty.NoReturn:
        raise NotImplementedError(
            '%s does not implement %s (needed by the store\'s %s)'
            % (self.name, method, needed_by))

    def get_versioned(self, key: str) -> tuple[ty.Any, ty.Any]:
        """The value of ``key`` and a token naming this version of it.

        :returns: ``(value, token)``; ``(NO_VALUE, None)`` for a missing
            key. The token is opaque to the store and only handed back to
            :meth:`compare_and_set`.
        """
        self._not_implemented('get_versioned', 'update() and incr()')

    def compare_and_set(self, key: str, token: ty.Any, value: bytes,
                        ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is still at version ``token``.

        ``token`` is what :meth:`get_versioned` returned; None means "only
        if ``key`` is absent". One atomic step on the server. ``ttl`` is
        as for ``set_serialized``, or :data:`KEEP_EXPIRY` (only with a
        token): the key keeps its current expiry.

        :returns: False, having written nothing, when the key changed (or
            appeared, or vanished) since it was read.
        """
        self._not_implemented('compare_and_set', 'update() and incr()')

    def touch_serialized(self, key: str, ttl: float | None = None) -> bool:
        """Give ``key`` a new expiry, ``ttl`` seconds from now (None: never).

        :returns: whether ``key`` existed (nothing is written otherwise).
        """
        self._not_implemented('touch_serialized', 'touch()')

    def incr_serialized(self, key: str, delta: int,
                        ttl: float | None = None) -> int | None:
        """Add ``delta`` to the int stored under ``key`` in one step.

        Optional, a shortcut for ``incr()``: the store calls it only when
        its values are the serializer's bytes as they are (no
        protection), where an int in the decimal range is its ASCII
        digits (see :mod:`oslo_kvs.serialization`), the form the
        servers' own increments read and write. A missing key counts from
        0 and is created with ``ttl`` as for ``set_serialized``; an
        existing key keeps its expiry.

        :returns: the new value, or None, having written nothing, when
            the backend cannot do it here (the stored value is not such
            digits, or the server cannot add ``delta`` to it exactly);
            the store then uses :meth:`compare_and_set`. A value outside
            the decimal range (memcached counts on past 2**63) is
            returned as it is; the store writes it again in the
            serializer's own form. By default always None.
        """
        return None

    #: This process's client (see :meth:`_per_process`); unset: no server.
    _clients: _process.PerProcess[ty.Any]

    def _per_process(self, factory: ty.Callable[[], ty.Any]) -> None:
        """Let ``factory`` make the client, anew in each process.

        A client and its pool are the process's own: a forked child makes
        its own on first use (``self._clients.get()``) and drops the
        parent's unclosed, since the parent still uses it.
        """
        self._clients = _process.PerProcess(factory)

    def _close_client(self, client: ty.Any) -> None:
        """Close what the factory of :meth:`_per_process` made."""
        client.close()

    def close(self) -> None:
        """Release this process's connections; idempotent."""
        clients = getattr(self, '_clients', None)
        made = clients.forget() if clients is not None else None
        if made is not None:
            self._close_client(made)

    def watch(self, near: ty.Any) -> ty.Callable[[], None] | None:
        """Tell ``near`` about other clients' writes, from now on, here.

        ``near`` is this process's near cache
        (:class:`oslo_kvs.near.NearCache`: ``drop(stored_keys)``,
        ``suspend()``, ``resume()``). An implementation calls
        ``near.suspend()`` before anything else and ``near.resume()`` only
        once the server is tracking; whenever its channel is lost it calls
        ``near.suspend()`` and reconnects, then ``resume()`` again.

        :returns: a function that stops watching, or None when the server
            cannot notify (then ``near_cache_ttl`` alone bounds
            staleness). By default None.
        """
        return None

    def __repr__(self) -> str:
        return '<%s %s>' % (type(self).__name__, self.where)

    # --- fenced writes (optional) ---------------------------------------

    #: True when :meth:`set_fenced` and :meth:`delete_fenced` work: the
    #: server checks the lock token and writes in one atomic step. Else the
    #: store refuses writes in the last ``lock_window`` seconds of a lease.
    fenced_writes: bool = False

    def set_fenced(self, key: str, value: bytes, ttl: float | None,
                   lock_key: str, token: str) -> bool:
        """Store ``value`` under ``key`` only while the lock holds.

        ``lock_key`` must hold ``token``; the server checks it and writes
        in one atomic step. ``ttl`` is as for ``set_serialized``. Only
        called when ``fenced_writes`` is true.

        :returns: False, having written nothing, when the lock has expired
            or passed to another holder.
        """
        raise NotImplementedError

    def delete_fenced(self, key: str, lock_key: str,
                      token: str) -> bool | None:
        """Delete ``key`` only while the lock holds.

        ``lock_key`` must hold ``token``; the server checks it and deletes
        in one atomic step. Only called when ``fenced_writes`` is true.

        :returns: whether ``key`` existed, or None, having deleted nothing,
            when the lock has expired or passed to another holder.
        """
        raise NotImplementedError


#: Seconds a server keeps a lock beyond the holder's ``lock_timeout``. The
#: holder's clock starts before its request and the server's after it, so
#: the server already expires later; this covers clock-rate drift and,
#: where expiry is judged by clients' wall clocks (MongoDB), small skew.
#: Only a holder that died waits for it, and only once.
LOCK_EXPIRY_MARGIN = 0.1


class LocalLocks:
    """Token locks that exclude the threads of one process.

    Used by the memory backend and by backends that have no lock of their
    own. Expired entries are dropped when the same lock is next taken. A
    forked child starts with none held: their holders are threads of the
    parent.
    """

    def __init__(self) -> None:
        self._held: _process.PerProcess[dict[str, tuple[str, float]]] = (
            _process.PerProcess(dict))
        self._mutex = _process.Primitive('Lock')

    def acquire(self, key: str, token: str, ttl: float) -> bool:
        now = time.monotonic()
        held = self._held.get()
        with self._mutex.get():
            holder = held.get(key)
            if holder is not None and holder[1] > now:
                return False
            held[key] = (token, now + ttl if ttl else math.inf)
            return True

    def release(self, key: str, token: str) -> bool:
        held = self._held.get()
        with self._mutex.get():
            holder = held.get(key)
            if holder is None or holder[0] != token:
                return False
            del held[key]
            return True
