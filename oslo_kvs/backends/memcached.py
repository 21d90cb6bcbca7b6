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

One server or several, every call goes through a
:class:`~oslo_kvs.backends.memcache_pool.Cluster`: keys are placed by
pymemcache's rendezvous hashing, each server has its own small pool of
pymemcache clients, and a failing server (not the last live one) is
ejected for ``dead_retry`` seconds while the others keep serving, then
flushed before it serves again. Multi-key operations are grouped by
server, so each costs one round trip per server.

The clients never deserialize: values are bytes in and bytes out whatever
flags the server holds, so no server can make this process unpickle.
"""

import functools
import math
import re
import ssl
import time
import typing as ty

from oslo_config import types
from pymemcache.client import base as pymc_base
from pymemcache import exceptions as pymc_exc

from oslo_kvs.backends import address
from oslo_kvs.backends import base
from oslo_kvs.backends import memcache_pool
from oslo_kvs import exception
from oslo_kvs import serialization

#: Keystone's ``memcached_backend`` names; every one is served by pymemcache.
BACKEND_NAMES = ('bmemcached', 'memcached', 'pooled_memcached', 'pylibmc',
                 'pymemcache')
#: memcached reads a larger expiry as an absolute Unix time.
MAX_RELATIVE_EXPIRY = 30 * 24 * 3600
#: memcached's longest key, in bytes.
MAX_KEY_LENGTH = 250

_FORBIDDEN_KEY_CHARS = re.compile('[\x00-\x20\x7f]')
# memcached splits "<username> <password>" at the first space, and both
# travel in one line of the text protocol.
_AUTH_USER = re.compile(r'[^\s:]{1,250}')
_AUTH_PASSWORD = re.compile(r'[^\r\n]{1,250}')


def _seconds(name: str, default: float, alias: str, help: str) -> base.Option:
    """A duration argument, with the name Keystone or oslo.cache gave it."""
    return base.Option(name, base.seconds(), default, aliases=(alias,),
                       help=help)


OPTIONS = (
    base.Option('url', types.List(), ['localhost:11211'], server=True, help=(
        'memcached servers: a list or comma-separated string of host:port, '
        '[IPv6]:port or unix socket paths (/path or unix:/path).')),
    base.Option('memcached_backend', types.String(choices=BACKEND_NAMES),
                'pymemcache',
                help="Keystone's client name; all are served by pymemcache."),
    base.SOCKET_TIMEOUT, base.CONNECT_TIMEOUT,
    _seconds('dead_retry', 30.0, 'dead_timeout',
             'Seconds an ejected server stays out before it is tried again.'),
    base.Option('retry_attempts', base.count(max=1000), 2,
                aliases=('hashclient_retry_attempts',),
                help='Failed retries before a server of several is ejected.'),
    _seconds('retry_delay', 1.0, 'hashclient_retry_delay',
             'Seconds between those retries.'),
    base.Option('flush_on_rejoin', types.Boolean(), True, help=(
        'Flush a server that was ejected before it serves again, so no '
        'value overwritten or deleted while it was out comes back.')),
    base.POOL_MAXSIZE,
    _seconds('pool_unused_timeout', 60.0, 'pool_idle_timeout',
             'Seconds after which an idle connection is closed (0: never).'),
    _seconds('pool_connection_get_timeout', 10.0, 'pool_wait_timeout',
             'Seconds to wait for a free connection when all are busy.'),
    *base.KEEPALIVE,
    *base.TLS,
    base.Option('username', types.String(), help=(
        "User of memcached's ASCII authentication (memcached 1.5.15 or "
        'later started with -Y auth-file); needs password. Without TLS '
        'the password crosses the network in clear.')),
    base.Option('password', types.String(), secret=True,
                help='Password of that user.'),
)


#: memcached's ``stats`` names of :data:`base.STAT_KEYS` and extras.
STATS = {'hits': b'get_hits', 'misses': b'get_misses',
         'evictions': b'evictions', 'items': b'curr_items',
         'bytes_used': b'bytes', 'bytes_limit': b'limit_maxbytes',
         'connections': b'curr_connections', 'version': b'version',
         'uptime': b'uptime', 'expired_unfetched': b'expired_unfetched'}


def _stats_of(node: memcache_pool.Node) -> dict[str, ty.Any]:
    found = node.run('stats')
    named = {name: found.get(key) for name, key in STATS.items()}
    if isinstance(named['version'], bytes):
        named['version'] = named['version'].decode('ascii', 'replace')
    return named


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


#: Largest delta (exclusive) memcached's incr is asked to add; see
#: MemcachedBackend.incr_serialized.
_MAX_INCR = 2 ** 32
#: memcached's reply to an incr of a value that is no decimal number.
_NON_NUMERIC = 'non-numeric value'


def _ttl_left(node: memcache_pool.Node, key: str) -> int | None:
    """Seconds ``key`` has left on ``node``: -1 never; None if missing.

    The meta command ``mg <key> t`` (memcached 1.6), which reads the
    remaining time without changing the item.
    """
    reply = node.run('raw_command', 'mg %s t' % key)
    words = reply.split()
    if words[:1] == [b'EN']:
        return None
    for word in words[1:]:
        if word[:1] == b't':
            # The server counts whole seconds: at least one is left.
            left = int(word[1:])
            return left if left < 0 else max(left, 1)
    raise memcache_pool.ServerError(
        node.label, 'unexpected reply to mg: %r' % reply[:40])


class MemcachedBackend(base.Backend):
    """memcached on pymemcache: one server or several sharing the keys.

    Errors name the server: :class:`~oslo_kvs.exception.BackendError` when
    it is down, slow past ``socket_timeout`` or skipped after failing,
    :class:`~oslo_kvs.exception.ValueTooLarge` when a value exceeds its
    item size limit (the key is then removed, as memcached itself does,
    so no older value stays behind).
    """

    name = 'openstack.kvs.Memcached'
    db_system = 'memcached'
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
        servers = self._parse_url(args['url'])
        keepalive = (pymc_base.KeepaliveOpts(**base.keepalive_settings(args))
                     if args['socket_keepalive'] else None)
        pool_args = dict(
            max_size=args['pool_maxsize'],
            idle_timeout=args['pool_unused_timeout'],
            wait_timeout=args['pool_connection_get_timeout'],
            credentials=self._credentials(args),
            # What each pymemcache client is made with. No serde: its
            # default passes bytes through whatever the server's flags,
            # so no server can make this process unpickle.
            timeout=args['socket_timeout'],
            connect_timeout=(args['connect_timeout'] or
                             args['socket_timeout']),
            no_delay=True, socket_keepalive=keepalive,
            allow_unicode_keys=True, default_noreply=False,
            tls_context=self._tls_context(args, servers))
        health = {name: args[name] for name in (
            'retry_attempts', 'retry_delay', 'dead_retry', 'flush_on_rejoin')}
        # Connections, pool accounting and node health are this process's
        # own: a forked child builds its own on first use.
        self._per_process(functools.partial(
            memcache_pool.Cluster, servers, pool_args, **health))

    def _parse_url(self, urls: list[str]) -> list[tuple[ty.Any, str]]:
        """Each ``url`` entry as a pymemcache server and a label."""
        servers = []
        for text in urls:
            if not text.strip():
                continue
            try:
                found = address.Address.parse(text, self.default_port)
            except address.AddressError as exc:
                raise exception.ConfigurationError(
                    'Invalid server %r in argument url of %s: %s'
                    % (text, self.name, exc), argument='url') from None
            servers.append((found.path if found.is_unix else found.tcp,
                            found.label))
        if not servers:
            raise exception.ConfigurationError(
                'Argument url of %s names no server' % self.name,
                argument='url')
        self._servers = [label for _, label in servers]
        if len(set(self._servers)) < len(servers):
            raise exception.ConfigurationError(
                'Argument url of %s names a server twice: %s'
                % (self.name, self.where), argument='url')
        return servers

    def _credentials(self, args: dict[str, ty.Any]
                     ) -> tuple[str, str] | None:
        user, password = args['username'], args['password']
        if user is None and password is None:
            return None
        if user is None or password is None:
            raise exception.ConfigurationError(
                'Arguments username and password of %s go together'
                % self.name,
                argument='username' if user is None else 'password')
        for name, value, form, rule in (
                ('username', user, _AUTH_USER, ', no space or ":"'),
                ('password', password, _AUTH_PASSWORD, ' on one line')):
            if not form.fullmatch(value):
                raise exception.ConfigurationError(
                    'Invalid %s for %s: 1 to 250 characters%s'
                    % (name, self.name, rule), argument=name)
        return user, password

    def _tls_context(self, args: dict[str, ty.Any],
                     servers: list[tuple[ty.Any, str]]
                     ) -> ssl.SSLContext | None:
        if not base.check_tls(self.name, args):
            return None
        sockets = [label for server, label in servers
                   if not isinstance(server, tuple)]
        if sockets:
            raise exception.ConfigurationError(
                'tls_enabled of %s cannot apply to unix socket %s'
                % (self.name, ', '.join(sockets)), argument='tls_enabled')
        name = 'tls_cafile'
        try:
            context = ssl.create_default_context(cafile=args[name])
            if args['tls_certfile']:
                name = 'tls_certfile'
                context.load_cert_chain(args[name], args['tls_keyfile'])
            if args['tls_allowed_ciphers']:
                name = 'tls_allowed_ciphers'
                context.set_ciphers(args[name])
        except (OSError, ssl.SSLError) as exc:
            raise exception.ConfigurationError(
                'Argument %s of %s cannot be used: %s'
                % (name, self.name, exc), argument=name) from None
        return context

    # --- errors --------------------------------------------------------
    # The transport raises memcache_pool.ServerError naming the server;
    # base.translate_errors turns it into the oslo_kvs exception.

    def describe_failure(self, exc: BaseException) -> str:
        return str(exc)

    def server_of(self, exc: BaseException) -> str:
        if isinstance(exc, memcache_pool.ServerError):
            return exc.label
        return self.where

    # --- the backend API -----------------------------------------------

    def stat_sources(self):
        return [(node.label, functools.partial(_stats_of, node))
                for node in self._clients.get().nodes]

    def check_key(self, key: str) -> None:
        try:
            size = len(key.encode('utf-8'))
        except UnicodeEncodeError:
            problem: str | None = 'is not valid Unicode'
        else:
            problem = None
            if size > MAX_KEY_LENGTH:
                problem = 'is %d bytes long, over memcached\'s %d' % (
                    size, MAX_KEY_LENGTH)
            elif _FORBIDDEN_KEY_CHARS.search(key):
                problem = 'contains whitespace or control characters'
        if problem:
            raise exception.ConfigurationError(
                'Key %s %s and cannot be stored in memcached (enable [kvs] '
                'enable_key_mangler)' % (exception._describe(key), problem))

    @base.translate_errors
    def get_serialized(self, key):
        value = self._clients.get().node_for(key).run('get', key)
        return base.NO_VALUE if value is None else value

    @base.translate_errors
    def get_serialized_multi(self, keys):
        found: dict[str, bytes] = {}
        for node, group in self._clients.get().group(keys).items():
            found.update(node.run('get_many', group))
        return [found.get(key, base.NO_VALUE) for key in keys]

    @base.translate_errors
    def set_serialized(self, key, value, ttl=None):
        node = self._clients.get().node_for(key)
        try:
            stored = node.run('set', key, value, exptime(ttl) if ttl else 0)
        except memcache_pool.TooLarge:
            self.delete_multi([key])  # see set_serialized_multi
            raise
        if not stored:
            raise memcache_pool.ServerError(node.label, 'did not store it')

    @base.translate_errors
    def set_serialized_multi(self, mapping, ttl=None):
        expire = exptime(ttl) if ttl else 0
        try:
            for node, group in self._clients.get().group(mapping).items():
                failed = node.run('set_many', {key: mapping[key]
                                               for key in group}, expire)
                if failed:
                    raise memcache_pool.ServerError(
                        node.label, 'did not store %d value(s)' % len(failed))
        except memcache_pool.TooLarge:
            # memcached drops a key whose new value it refused; drop every
            # key of the call so no old value passes for the new one.
            self.delete_multi(list(mapping))
            raise

    @base.translate_errors
    def delete_multi(self, keys):
        for node, group in self._clients.get().group(keys).items():
            node.run('delete_many', group)

    @base.translate_errors
    def delete_existing(self, key):
        return bool(self._clients.get().node_for(key).run('delete', key))

    @base.translate_errors
    def add_serialized(self, key, value, ttl=None):
        return bool(self._clients.get().node_for(key).run(
            'add', key, value, exptime(ttl) if ttl else 0))

    # Versions are memcached's own cas unique: gets reads it, cas writes
    # only while it is unchanged, add writes only if the key is absent.
    @base.translate_errors
    def get_versioned(self, key):
        value, cas = self._clients.get().node_for(key).run('gets', key)
        return (base.NO_VALUE, None) if value is None else (value, cas)

    @base.translate_errors
    def compare_and_set(self, key, token, value, ttl=None):
        if token is None:
            return self.add_serialized(key, value, ttl)
        node = self._clients.get().node_for(key)
        if ttl is base.KEEP_EXPIRY:
            # cas always sets an exptime: give it the one the key has.
            # A touch between this read and the cas is undone; the cas
            # still fails if anything rewrote the value.
            left = _ttl_left(node, key)
            if left is None:
                return False    # the key vanished: a lost race
            expire = exptime(left) if left >= 0 else 0
        else:
            expire = exptime(ttl) if ttl else 0
        # None (the key vanished) and False (changed) both lose the race.
        return bool(node.run('cas', key, value, token, expire))

    # memcached's incr adds to a value of decimal digits in unsigned 64
    # bits, and wraps at 2**64: the codec writes digits only below 2**63
    # and a delta below 2**32 keeps the sum short of 2**64 (the store
    # rewrites any sum past 2**63 in the serializer's own form). decr
    # stops at 0, so a negative delta is left to compare-and-set.
    @base.translate_errors
    def incr_serialized(self, key, delta, ttl=None):
        if not 0 <= delta < _MAX_INCR:
            return None
        node = self._clients.get().node_for(key)
        try:
            new = node.run('incr', key, delta)
            if new is None and node.run(
                    'add', key, serialization.dumps(delta),
                    exptime(ttl) if ttl else 0):
                return delta
            if new is None:
                # Another client created it first: add to what it wrote.
                new = node.run('incr', key, delta)
        except memcache_pool.ServerError as exc:
            if _NON_NUMERIC in str(exc.__cause__):
                return None    # not digits; the store compares and sets
            raise
        return new

    @base.translate_errors
    def touch_serialized(self, key, ttl=None):
        return bool(self._clients.get().node_for(key).run(
            'touch', key, exptime(ttl) if ttl else 0))

    @base.translate_errors
    def acquire_lock(self, key, token, ttl):
        return bool(self._clients.get().node_for(key).run(
            'add', key, token.encode('ascii'), lock_exptime(ttl)))

    @base.translate_errors
    def release_lock(self, key, token):
        node = self._clients.get().node_for(key)
        value, cas = node.run('gets', key)
        if value != token.encode('ascii'):
            return False
        # Expire it only if nobody changed it since gets: a lock taken by
        # someone else meanwhile has another cas value and stays.
        return bool(node.run('cas', key, b'', cas, -1))
