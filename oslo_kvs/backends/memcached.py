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

"""``openstack.kvs.Memcached``: memcached through pymemcache.

Each server is reached through a small pool of pymemcache clients
(:mod:`oslo_kvs.backends.memcache_pool`); several servers share the keys by
pymemcache's rendezvous hashing, and a failing one is ejected for
``dead_retry`` seconds while the others keep serving, then flushed before it
serves again. Multi-key operations are grouped by server, so each costs one
round trip per server.

The clients never deserialize: values are bytes in and bytes out whatever
flags the server holds, so no server can make this process unpickle.
"""

import math
import re
import ssl
import time
import typing as ty

from oslo_config import types
from pymemcache.client import base as pymc_base
from pymemcache import exceptions as pymc_exc

from oslo_kvs import _process
from oslo_kvs.backends import address
from oslo_kvs.backends import base
from oslo_kvs.backends import memcache_pool
from oslo_kvs import exception

# The transport's names, as this module offered them before.
Pool = memcache_pool.Pool
PoolTimeout = memcache_pool.PoolTimeout

#: Keystone's ``memcached_backend`` names; every one is served by pymemcache.
BACKEND_NAMES = ('bmemcached', 'memcached', 'pooled_memcached', 'pylibmc',
                 'pymemcache')
#: memcached reads a larger expiry as an absolute Unix time.
MAX_RELATIVE_EXPIRY = 30 * 24 * 3600
#: memcached's longest key, in bytes.
MAX_KEY_LENGTH = 250
DEFAULT_PORT = 11211

_FORBIDDEN_KEY_CHARS = re.compile('[\x00-\x20\x7f]')
_TLS_FILES = ('tls_cafile', 'tls_certfile', 'tls_keyfile',
              'tls_allowed_ciphers')


def _opt(name, otype, default, help, aliases=()):
    return base.Option(name, otype, default, aliases=aliases, help=help)


OPTIONS = (
    _opt('url', types.List(), ['localhost:11211'],
         'memcached servers: a list or comma-separated string of host:port, '
         '[IPv6]:port or unix socket paths (/path or unix:/path).'),
    _opt('memcached_backend', types.String(choices=BACKEND_NAMES),
         'pymemcache',
         "Keystone's client name; all are served by pymemcache."),
    *base.TIMEOUTS,
    _opt('dead_retry', base.seconds(), 30.0,
         'Seconds an ejected server stays out before it is tried again.',
         aliases=('dead_timeout',)),
    _opt('retry_attempts', base.count(max=1000), 2,
         'Failed retries before a server of several is ejected.',
         aliases=('hashclient_retry_attempts',)),
    _opt('retry_delay', base.seconds(), 1.0,
         'Seconds between those retries.',
         aliases=('hashclient_retry_delay',)),
    _opt('flush_on_rejoin', types.Boolean(), True,
         'Flush a server that was ejected before it serves again, so no '
         'value overwritten or deleted while it was out comes back.'),
    base.POOL_MAXSIZE,
    _opt('pool_unused_timeout', base.seconds(), 60.0,
         'Seconds after which an idle connection is closed (0: never).',
         aliases=('pool_idle_timeout',)),
    _opt('pool_connection_get_timeout', base.seconds(), 10.0,
         'Seconds to wait for a free connection when all are busy.',
         aliases=('pool_wait_timeout',)),
    *base.KEEPALIVE,
    *base.TLS,
    _opt('username', types.String(), None,
         'User of memcached\'s ASCII authentication (memcached 1.5.15 or '
         'later started with -Y auth-file); needs password. Without TLS '
         'the password crosses the network in clear.'),
    base.Option('password', types.String(), None, secret=True,
                help='Password of that user.'),
)

# memcached splits "<username> <password>" at the first space, and both
# travel in one line of the text protocol.
_AUTH_USER = re.compile(r'[^\s:]{1,250}')
_AUTH_PASSWORD = re.compile(r'[^\r\n]{1,250}')


def exptime(seconds: float) -> int:
    """memcached's exptime for a lifetime of ``seconds``, rounded up.

    0 means never. Past 30 days memcached reads the number as an absolute
    Unix time, so such lifetimes are sent as one.
    """
    if seconds <= 0:
        return 0
    if seconds > MAX_RELATIVE_EXPIRY:
        return math.ceil(time.time() + seconds)
    return math.ceil(seconds)


def lock_exptime(ttl: float) -> int:
    """exptime for a lock that must not vanish before ``ttl`` seconds.

    memcached's clock ticks once a second and an item expires when the
    tick reaches its deadline, so an item can die up to a second early;
    one more second makes the server's expiry never precede the holder's.
    """
    return exptime(ttl + 1) if ttl else 0


def parse_server(text: str) -> tuple[ty.Any, str]:
    """Parse one ``url`` entry into a pymemcache server and a label.

    :raises exception.ConfigurationError: naming the entry.
    """
    try:
        found = address.Address.parse(text, DEFAULT_PORT)
    except address.AddressError as exc:
        raise exception.ConfigurationError(
            'Invalid server %r in argument url of openstack.kvs.Memcached: '
            '%s' % (text, exc)) from None
    if found.is_unix:
        return found.path, found.label
    return found.tcp, found.label


class _RawSerde:
    """Bytes through unchanged; server-held flags are ignored on reads."""

    def serialize(self, key: ty.Any, value: bytes) -> tuple[bytes, int]:
        return value, 0

    def deserialize(self, key: ty.Any, value: bytes, flags: int) -> bytes:
        return value


class MemcachedBackend(base.Backend):
    """memcached on pymemcache: one server, or several sharing the keys.

    Errors name the server: :class:`~oslo_kvs.exception.BackendError` when
    it is down, slow past ``socket_timeout`` or skipped after failing,
    :class:`~oslo_kvs.exception.ValueTooLarge` when a value exceeds its
    item size limit (the key is then removed, as memcached itself does,
    so no older value stays behind).
    """

    name = 'openstack.kvs.Memcached'
    options = OPTIONS
    expire_time_alias = 'memcached_expire_time'
    default_port = 11211
    server_errors = (memcache_pool.ServerError,)
    too_large_errors = (memcache_pool.TooLarge,)
    key_errors = (pymc_exc.MemcacheIllegalInputError,)
    distributed_lock = True

    def __init__(self, arguments: ty.Mapping[str, ty.Any]) -> None:
        super().__init__(arguments)
        args = self.args
        urls = [u for u in args['url'] if u.strip()]
        if not urls:
            raise exception.ConfigurationError(
                'Argument url of %s names no server' % self.name)
        parsed = [parse_server(url) for url in urls]
        self._labels = {server: label for server, label in parsed}
        if len(self._labels) != len(parsed):
            raise exception.ConfigurationError(
                'Argument url of %s names a server twice: %s'
                % (self.name, ', '.join(label for _, label in parsed)))
        tls_context = self._tls_context(args, parsed)
        keepalive = None
        if args['socket_keepalive']:
            keepalive = pymc_base.KeepaliveOpts(**{
                name: args[option] for name, option in (
                    ('idle', 'socket_keepalive_idle'),
                    ('intvl', 'socket_keepalive_interval'),
                    ('cnt', 'socket_keepalive_count'))
                if args[option] is not None})
        client_kwargs: dict[str, ty.Any] = dict(
            serde=_RawSerde(), timeout=args['socket_timeout'],
            connect_timeout=(args['connect_timeout'] or
                             args['socket_timeout']),
            no_delay=True, socket_keepalive=keepalive,
            allow_unicode_keys=True, default_noreply=False,
            tls_context=tls_context)
        credentials = self._credentials(args)

        def make_pool(server: ty.Any, label: str) -> Pool:
            return Pool(server, max_size=args['pool_maxsize'],
                        idle_timeout=args['pool_unused_timeout'],
                        wait_timeout=args['pool_connection_get_timeout'],
                        label=label, credentials=credentials,
                        **client_kwargs)

        def make_cluster() -> memcache_pool.Cluster:
            return memcache_pool.Cluster(
                [memcache_pool.Node(make_pool(server, label))
                 for server, label in parsed],
                retry_attempts=args['retry_attempts'],
                retry_delay=args['retry_delay'],
                dead_retry=args['dead_retry'],
                flush_on_rejoin=args['flush_on_rejoin'])

        # Connections, pool accounting and node health are this process's
        # own: a forked child builds its own on first use.
        self._clusters = _process.PerProcess(make_cluster)

    @property
    def _cluster(self) -> memcache_pool.Cluster:
        return self._clusters.get()

    def _credentials(self, args: dict[str, ty.Any]
                     ) -> tuple[str, str] | None:
        user, password = args['username'], args['password']
        if user is None and password is None:
            return None
        if user is None or password is None:
            raise exception.ConfigurationError(
                'Arguments username and password of %s go together'
                % self.name)
        if not _AUTH_USER.fullmatch(user):
            raise exception.ConfigurationError(
                'Invalid username for %s: 1 to 250 characters, no space or '
                '":"' % self.name)
        if not _AUTH_PASSWORD.fullmatch(password):
            raise exception.ConfigurationError(
                'Invalid password for %s: 1 to 250 characters on one line'
                % self.name)
        return user, password

    def _tls_context(self, args: dict[str, ty.Any],
                     parsed: list[tuple[ty.Any, str]]
                     ) -> ssl.SSLContext | None:
        given = [name for name in _TLS_FILES if args[name]]
        if not args['tls_enabled']:
            if given:
                # Refused rather than ignored: the user expects TLS.
                raise exception.ConfigurationError(
                    'Argument(s) %s of %s need tls_enabled=True'
                    % (', '.join(given), self.name))
            return None
        sockets = [label for server, label in parsed
                   if not isinstance(server, tuple)]
        if sockets:
            raise exception.ConfigurationError(
                'tls_enabled of %s cannot apply to unix socket %s'
                % (self.name, ', '.join(sockets)))

        def load(name, action):
            try:
                action()
            except (OSError, ssl.SSLError) as exc:
                raise exception.ConfigurationError(
                    'Argument %s of %s cannot be used: %s'
                    % (name, self.name, exc)) from None

        context: list[ssl.SSLContext] = []
        load('tls_cafile', lambda: context.append(
            ssl.create_default_context(cafile=args['tls_cafile'])))
        if args['tls_certfile']:
            load('tls_certfile', lambda: context[0].load_cert_chain(
                args['tls_certfile'], args['tls_keyfile']))
        elif args['tls_keyfile']:
            raise exception.ConfigurationError(
                'Argument tls_keyfile of %s needs tls_certfile' % self.name)
        if args['tls_allowed_ciphers']:
            load('tls_allowed_ciphers', lambda: context[0].set_ciphers(
                args['tls_allowed_ciphers']))
        return context[0]

    # --- errors --------------------------------------------------------
    # The transport raises memcache_pool.ServerError naming the server;
    # base.Backend turns it into the oslo_kvs exception.

    def describe_failure(self, exc: BaseException) -> str:
        return str(exc)

    def server_of(self, exc: BaseException) -> str:
        if isinstance(exc, memcache_pool.ServerError):
            return exc.label
        return self.where

    def _on_owner(self, key: str, method: str, *args: ty.Any) -> ty.Any:
        """Run one command on the server that holds ``key``."""
        cluster = self._cluster
        return cluster.run(cluster.node_for(key), method, key, *args)

    def _set(self, cluster: memcache_pool.Cluster, node: memcache_pool.Node,
             mapping: dict[str, bytes], expire: int) -> None:
        failed = cluster.run(node, 'set_many', mapping, expire)
        if failed:
            raise memcache_pool.ServerError(
                node.label, 'did not store %d value(s)' % len(failed))

    # --- the backend API -----------------------------------------------

    def servers(self) -> list[str]:
        return list(self._labels.values())

    def check_key(self, key: str) -> None:
        try:
            size = len(key.encode('utf-8'))
        except UnicodeEncodeError:
            raise exception.ConfigurationError(
                'Key %s is not valid Unicode and cannot be stored in '
                'memcached' % exception._describe(key)) from None
        if size > MAX_KEY_LENGTH:
            raise exception.ConfigurationError(
                'Key %s is %d bytes long; memcached stores keys of at most '
                '%d bytes (enable [kvs] enable_key_mangler for longer keys)'
                % (exception._describe(key), size, MAX_KEY_LENGTH))
        if _FORBIDDEN_KEY_CHARS.search(key):
            raise exception.ConfigurationError(
                'Key %s contains whitespace or control characters, which '
                'memcached keys cannot (enable [kvs] enable_key_mangler)'
                % exception._describe(key))

    def get_serialized(self, key):
        cluster = self._clusters.get()
        pool = cluster.single_pool
        if pool is None:
            value = cluster.run(cluster.node_for(key), 'get', key)
        else:
            value = pool.run('get', key)  # the hot path, spared two calls
        return base.NO_VALUE if value is None else value

    def get_serialized_multi(self, keys):
        cluster = self._clusters.get()
        pool = cluster.single_pool
        if pool is None:
            found: dict[str, bytes] = {}
            for node, group in cluster.group(keys).items():
                found.update(cluster.run(node, 'get_many', group))
        else:
            found = pool.run('get_many', keys)
        missing = base.NO_VALUE
        return [found.get(key, missing) for key in keys]

    def set_serialized(self, key, value, ttl=None):
        pool = self._clusters.get().single_pool
        if pool is None:
            self.set_serialized_multi({key: value}, ttl)
            return
        # The hot path: one server, one command, with the same clean-up
        # and errors as set_serialized_multi.
        try:
            stored = pool.run('set', key, value, exptime(ttl or 0))
        except memcache_pool.TooLarge:
            self.delete_multi([key])  # see set_serialized_multi
            raise
        if not stored:
            raise memcache_pool.ServerError(pool.label,
                                            'did not store 1 value(s)')

    def set_serialized_multi(self, mapping, ttl=None):
        # One set_many per server.
        expire = exptime(ttl or 0)
        cluster = self._clusters.get()
        try:
            if cluster.single_pool is not None:
                # One server: the batch as it is, not copied per server.
                self._set(cluster, cluster.nodes[0], mapping, expire)
            else:
                for node, group in cluster.group(mapping).items():
                    self._set(cluster, node,
                              {key: mapping[key] for key in group}, expire)
        except memcache_pool.TooLarge:
            # memcached drops a key whose new value it refused; drop the
            # whole batch so no old value passes for the new one.
            self.delete_multi(list(mapping))
            raise

    def delete_multi(self, keys):
        cluster = self._clusters.get()
        for node, group in cluster.group(keys).items():
            cluster.run(node, 'delete_many', group)

    def delete_existing(self, key):
        return bool(self._on_owner(key, 'delete'))

    def add_serialized(self, key, value, ttl=None):
        return bool(self._on_owner(key, 'add', value, exptime(ttl or 0)))

    def acquire_lock(self, key, token, ttl):
        return bool(self._on_owner(key, 'add', token.encode('ascii'),
                                   lock_exptime(ttl)))

    def release_lock(self, key, token):
        cluster = self._clusters.get()
        node = cluster.node_for(key)
        value, cas = cluster.run(node, 'gets', key)
        if value != token.encode('ascii'):
            return False
        # Expire it only if nobody changed it since gets: a lock taken by
        # someone else meanwhile has another cas value and stays.
        return bool(cluster.run(node, 'cas', key, b'', cas, -1))

    def close(self) -> None:
        cluster = self._clusters.forget()
        if cluster is not None:
            cluster.close()
