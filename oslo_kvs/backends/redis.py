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

"""``openstack.kvs.Redis``: Redis standalone, Sentinel or Cluster.

Everything goes through redis-py's own clients: :class:`redis.Redis` on a
connection pool for one server, :class:`redis.sentinel.Sentinel` for a
master watched by sentinels, :class:`redis.cluster.RedisCluster` for a
cluster. Replies are never decoded: values are bytes in and bytes out.

Each mode is a small subclass of :class:`RedisBackend`
(:class:`StandaloneBackend`, :class:`SentinelBackend`,
:class:`ClusterBackend`) that builds its client; the registered class
hands out the one its arguments select.
"""

import contextlib
import dataclasses
import functools
import itertools
import math
import re
import socket
import threading
import typing as ty

from oslo_config import types
import redis
from redis import backoff as redis_backoff
from redis import cluster as redis_cluster
from redis import connection as redis_connection
from redis import crc as redis_crc
from redis import exceptions as redis_exceptions
from redis import retry as redis_retry

from oslo_kvs import _process
from oslo_kvs.backends import address
from oslo_kvs.backends import base
from oslo_kvs.backends import redis_tracking
from oslo_kvs import exception
from oslo_kvs import serialization

Option = base.Option

# Runs a command (ARGV[2], its arguments after it) on the data key KEYS[1]
# only while the lock key KEYS[2] holds the caller's token ARGV[1], in one
# atomic step; -1 when it does not: the fenced writes.
_IF_HELD_SCRIPT = """
if redis.call('get', KEYS[2]) ~= ARGV[1] then return -1 end
return redis.call(ARGV[2], KEYS[1], unpack(ARGV, 3))
"""


# Releases notify waiters through two keys next to each lock (see
# _notice_keys): a mark that a process is waiting, and a list of notices
# it blocks on (BLPOP). Without waiters a release writes nothing more.

# Before a waiter blocks: the milliseconds to block, at most ARGV[1] and
# no longer than the lock KEYS[1] has left (a holder that died sends no
# notice); 0 when it is free. Marks KEYS[2] for as long as the wait, plus
# ARGV[2] ms, so that releases meanwhile leave a notice.
_WAIT_SCRIPT = """
local left = redis.call('pttl', KEYS[1])
if left == -2 then return 0 end
local wait = tonumber(ARGV[1])
if left >= 0 and left < wait then wait = left end
local mark = wait + tonumber(ARGV[2])
if redis.call('pttl', KEYS[2]) < mark then
  redis.call('set', KEYS[2], '1', 'PX', mark)
end
return wait
"""

# Frees the lock KEYS[1] if it holds the caller's token ARGV[1] (1; else
# 0). While the mark KEYS[2] says someone waits, leaves one notice in the
# list KEYS[3] for ARGV[2] ms. Redis hands it to the client that has
# been blocked longest; with nobody blocked yet (a waiter between its
# try and its BLPOP) it stays for the next one, one at most however many
# releases.
_RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('del', KEYS[1])
if redis.call('exists', KEYS[2]) == 1 then
  redis.call('rpush', KEYS[3], '1')
  redis.call('ltrim', KEYS[3], -1, -1)
  redis.call('pexpire', KEYS[3], ARGV[2])
end
return 1
"""

#: Milliseconds a release notice waits for a waiter, and a waiting mark
#: outlasts its wait. Long enough to cover a waiter between its script
#: and its BLPOP on a busy host; a notice nobody needed costs a later
#: waiter one more try.
NOTICE_TTL_MS = 2000


# Compare-and-set of a whole value: writes ARGV[2] to KEYS[1] only if
# KEYS[1] still holds exactly ARGV[1], with a PX of ARGV[3], or no
# expiry when it is empty, or the expiry the key has (KEEPTTL) when it
# is 'keep'. The stored bytes are the version: a sealed value carries a
# random nonce, and equal plain bytes decode to an equal value, so an
# A-B-A change between read and write cannot make fn's result wrong.
_CAS_SCRIPT = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '' then
  redis.call('set', KEYS[1], ARGV[2])
elseif ARGV[3] == 'keep' then
  redis.call('set', KEYS[1], ARGV[2], 'KEEPTTL')
else
  redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
"""

# A new expiry for KEYS[1] if it exists: PEXPIRE ARGV[1] ms, or PERSIST
# when ARGV[1] is empty (PERSIST alone cannot tell a missing key from one
# without expiry).
_TOUCH_SCRIPT = """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '' then redis.call('persist', KEYS[1])
else redis.call('pexpire', KEYS[1], ARGV[1]) end
return 1
"""

# INCRBY of KEYS[1] by ARGV[1], creating a missing key with a PX of
# ARGV[2] first: SET NX of 0 gives it the expiry and INCRBY keeps it, so
# an existing key keeps its own. Replies the new value, or 'cannot'
# (pcall: nothing was written) when INCRBY refuses: the value is no
# decimal int64 (another form, a sealed value), or the sum overflows.
_INCR_SCRIPT = """
redis.call('set', KEYS[1], '0', 'NX', 'PX', ARGV[2])
local new = redis.pcall('incrby', KEYS[1], ARGV[1])
if type(new) == 'table' then return 'cannot' end
return new
"""

#: Words of Redis's INCRBY errors that mean "not a counter it can add
#: to": the value is no decimal int64, or the sum would overflow.
_NOT_COUNTABLE = ('not an integer', 'overflow')


_OPTIONS = (
    Option('url', types.String(), secret=True, server=True,
           help='redis://[user:password@]host[:port][/db], rediss://... '
                '(TLS) or unix:///path/to/socket[?db=N].'),
    Option('host', types.String(), server=True,
           help='Server host name or address (default localhost).'),
    Option('port', types.Port(), help='Server port (default 6379).'),
    Option('db', base.count(),
           help='Database number (default 0; Cluster has only 0).'),
    Option('username', types.String(), help='ACL user name.'),
    Option('password', types.String(), secret=True,
           help='Password of the ACL user, or requirepass.'),
    # At most 128 letters, digits and ._:/- characters; no braces, which
    # would pin every key to one Cluster slot (a hash tag).
    Option('key_prefix', types.String(regex=r'^[A-Za-z0-9._:/-]*\Z',
                                      max_length=128),
           '', help='Namespace put before every stored key.'),
    dataclasses.replace(base.SOCKET_TIMEOUT, default=3.0),
    base.CONNECT_TIMEOUT,
    *base.KEEPALIVE,
    dataclasses.replace(base.POOL_MAXSIZE, default=50),
    *base.TLS,
    Option('tls_check_hostname', types.Boolean(), True,
           help='Check that the server certificate names the host.'),
    Option('sentinels', types.List(), server=True,
           help='Sentinels as host:port items; selects Sentinel mode.'),
    Option('service_name', types.String(),
           help='The master name the sentinels monitor.'),
    Option('sentinel_username', types.String(),
           help='ACL user name for the sentinels.'),
    Option('sentinel_password', types.String(), secret=True,
           help='Password for the sentinels (their requirepass).'),
    Option('cluster_nodes', types.List(), server=True,
           help='Cluster startup nodes as host:port; selects Cluster mode.'),
    # oslo.cache's names, with its meaning (there for pymemcache).
    Option('enable_retry_client', types.Boolean(), True,
           help='Repeat a call whose connection dropped, if that is safe.'),
    Option('retry_attempts', base.count(min=1, max=10), 2,
           help='Attempts of such a call, the first included.'),
    Option('retry_delay', base.Number(float, 0, 10), 0.0,
           help='Seconds to wait before each retry.'),
)


# redis-py's own retry is a property of each connection and so would repeat
# every command, unsafe ones too: it is off, and _repeated_when_dropped
# repeats only the calls it decorates.
_NO_RETRY = redis_retry.Retry(redis_backoff.NoBackoff(), 0)


def _unless_dropped(exc: Exception) -> None:
    # A dropped connection is a ConnectionError; these ones are not drops.
    if isinstance(exc, (redis.AuthenticationError,
                        redis_exceptions.MaxConnectionsError)):
        raise exc


def _repeated_when_dropped(method: ty.Callable[..., ty.Any]
                           ) -> ty.Callable[..., ty.Any]:
    """Decorate a call that gives the same result when the server ran it twice.

    Such a call is repeated on a new connection when its connection was
    dropped or refused (``enable_retry_client``: up to ``retry_attempts``
    in all, ``retry_delay`` seconds apart), even if the server had already
    run it and only the reply was lost. Other calls are not decorated:
    ``SET NX`` would then report "not added", a single ``DEL`` "not
    there", a lock script "not held". Timeouts are not repeated (a hung
    server must fail within ``socket_timeout``), nor wrong credentials or
    an exhausted pool, which a repeat cannot cure.
    """
    # Positional arguments only, as every caller passes them: a **kwargs
    # would cost a dict on every call.
    @functools.wraps(method)
    def call(self: 'RedisBackend', *args: ty.Any) -> ty.Any:
        return self._retry.call_with_retry(lambda: method(self, *args),
                                           _unless_dropped)
    return call


# redis-py quotes the start of a failed pipelined command, values and
# all, in the error; values can be tokens, so only the position stays.
_PIPELINE_ERROR = re.compile(
    r'Command # (\d+) \(.*\) of pipeline caused error: ', re.S)

# What redis-py's parse_url may return that a url is allowed to set.
_URL_PARTS = frozenset(['host', 'port', 'db', 'username', 'password', 'path',
                        'connection_class'])


def _hash_part(key: str) -> str:
    """What Redis Cluster hashes of ``key``: its hash tag, else all of it."""
    start = key.find('{')
    if start != -1:
        end = key.find('}', start + 1)
        if end > start + 1:
            return key[start + 1:end]
    return key


@functools.lru_cache(maxsize=None)
def _tag_of_slot(slot: int) -> str:
    """A short hash tag that Redis Cluster puts in ``slot``."""
    for number in itertools.count():
        if redis_crc.key_slot(str(number).encode()) == slot:
            return str(number)
    raise AssertionError('unreachable')


def _notice_keys(prefix: str, key: str) -> tuple[str, str]:
    """The waiting mark and the notice list of the lock ``key``.

    Both start with ``prefix`` like every key of the backend (ACL key
    patterns name it) and, through a hash tag, are in the lock's own
    Cluster slot, so one script frees the lock and notifies. The hash
    tag cannot hold ``}``: a key with one and no tag of its own (never a
    key the store makes) gets a tag that hashes to the same slot.
    """
    stored = prefix + key
    tag = _hash_part(stored)
    if '}' in tag:
        tag = _tag_of_slot(redis_crc.key_slot(stored.encode()))
    return ('%s{%s}waiting:%s' % (prefix, tag, key),
            '%s{%s}released:%s' % (prefix, tag, key))


#: ``INFO`` names of :data:`base.STAT_KEYS` and extras; ``items`` and
#: ``bytes_limit`` are worked out in :func:`_stats_of`.
_STATS = {'hits': 'keyspace_hits', 'misses': 'keyspace_misses',
          'evictions': 'evicted_keys', 'bytes_used': 'used_memory',
          'connections': 'connected_clients', 'version': 'redis_version',
          'uptime': 'uptime_in_seconds', 'expired_keys': 'expired_keys',
          'maxmemory_policy': 'maxmemory_policy'}


def _stats_of(client: ty.Any) -> dict[str, ty.Any]:
    """A server's ``INFO``, as :meth:`base.Backend.server_stats` gives it."""
    info = client.info()
    found = {name: info.get(key) for name, key in _STATS.items()}
    # The keys of every database, from the keyspace section (db0, ...).
    found['items'] = sum(value.get('keys', 0) for name, value in
                         info.items() if re.fullmatch(r'db\d+', name))
    found['bytes_limit'] = info.get('maxmemory') or None  # 0: unlimited
    return found


def _px(seconds: float | None) -> int | None:
    """Whole milliseconds, rounded up so nothing expires early; None: never."""
    return max(1, math.ceil(seconds * 1000)) if seconds else None


class RedisBackend(base.Backend):
    """Stores bytes in Redis: one server, a Sentinel group or a Cluster.

    Instantiating this class gives the subclass for the mode its arguments
    select: :class:`ClusterBackend` with ``cluster_nodes``,
    :class:`SentinelBackend` with ``sentinels``, else
    :class:`StandaloneBackend`. This class holds what they share: the
    arguments, the connection settings and every call on one server.

    Multi-key operations take one round trip: ``MGET``, one ``DEL``, and
    ``MSET`` or a pipeline of ``SET ... PX`` for writes (each key gets its
    own expiry). Locks are ``SET NX PX`` with a random token, freed by a
    Lua compare-and-delete, so they exclude other processes and hosts.
    A process waiting for a lock held elsewhere blocks (``BLPOP``) on a
    list next to the lock, where a release leaves a notice, instead of
    polling.
    """

    name = 'openstack.kvs.Redis'
    db_system = 'redis'
    options = _OPTIONS
    expire_time_alias = 'redis_expiration_time'
    default_port = 6379
    # RedisClusterException is no RedisError; OSError covers raw sockets.
    server_errors = (redis.RedisError,
                     redis_exceptions.RedisClusterException, OSError)
    distributed_lock = True
    # One server runs a script on the data key and its lock key at once.
    fenced_writes = True
    #: The server(s), for messages: set by the mode when it is prepared.
    where = '(not configured)'

    def __new__(cls, arguments: ty.Mapping[str, ty.Any]) -> 'RedisBackend':
        if cls is RedisBackend:
            # The registered name: the arguments pick the mode. Parsed
            # twice (here and in __init__), at configure time only.
            args = base.parse_arguments(cls.name, cls.options, arguments)
            cls = (ClusterBackend if args['cluster_nodes'] else
                   SentinelBackend if args['sentinels'] else
                   StandaloneBackend)
        return super().__new__(cls)

    def __init__(self, arguments: ty.Mapping[str, ty.Any]) -> None:
        super().__init__(arguments)
        args = self.args
        self._prefix: str = args['key_prefix']
        modes = [n for n in ('url', 'sentinels', 'cluster_nodes') if args[n]]
        if len(modes) > 1:
            raise self._conflict(modes)
        self._retry = redis_retry.Retry(
            redis_backoff.ConstantBackoff(args['retry_delay']),
            args['retry_attempts'] - 1 if args['enable_retry_client'] else 0,
            supported_errors=(redis.ConnectionError,))
        # redis-py connection keywords shared by every mode.
        timeout = args['socket_timeout']
        connection: dict[str, ty.Any] = dict(
            socket_timeout=timeout,
            socket_connect_timeout=args['connect_timeout'] or timeout,
            socket_keepalive=args['socket_keepalive'],
            socket_keepalive_options={
                getattr(socket, 'TCP_KEEP' + name.upper()): value
                for name, value in base.keepalive_settings(args).items()
                if hasattr(socket, 'TCP_KEEP' + name.upper())},
            # Fail within the timeout; a later call reconnects by itself.
            # RESP2: every Redis version speaks it, and its replies are
            # plain strings, integers and arrays.
            retry=_NO_RETRY, protocol=2,
            username=args['username'], password=args['password'])
        if (args['url'] or '').startswith('rediss://'):
            args['tls_enabled'] = True
        if base.check_tls(self.name, args):
            connection.update(
                ssl=True, ssl_cert_reqs='required',
                ssl_ca_certs=args['tls_cafile'],
                ssl_certfile=args['tls_certfile'],
                ssl_keyfile=args['tls_keyfile'],
                ssl_ciphers=args['tls_allowed_ciphers'],
                ssl_check_hostname=args['tls_check_hostname'])
        # The client and its pool are this process's own: a forked child
        # builds its own on first use. Built here too, so that bad
        # arguments fail now (and a Cluster that is down).
        self._per_process(self._prepare(args, connection))
        # Sent by its SHA1 (and loaded on a NOSCRIPT reply); every call
        # names this process's client.
        self._if_held_script = self._client.register_script(
            _IF_HELD_SCRIPT)
        self._cas_script = self._client.register_script(_CAS_SCRIPT)
        self._touch_script = self._client.register_script(_TOUCH_SCRIPT)
        self._incr_script = self._client.register_script(_INCR_SCRIPT)
        self._release_script = self._client.register_script(
            _RELEASE_SCRIPT)
        self._wait_script = self._client.register_script(_WAIT_SCRIPT)
        # A blocked waiter holds a pooled connection: at most half of
        # the pool waits, so holders can always release; more waiters
        # back off. A BLPOP ends well before the socket timeout would
        # count the server as hung.
        waiters = max(1, args['pool_maxsize'] // 2)
        self._waiting = _process.PerProcess(
            lambda: threading.BoundedSemaphore(waiters))
        self._longest_wait = timeout / 2

    def _prepare(self, args: dict, connection: dict) -> ty.Callable:
        """Check the mode's arguments; return what builds a client.

        Sets the labels (:attr:`where`, :meth:`servers`). ``connection``
        holds redis-py's connection keywords common to every mode.
        """
        raise NotImplementedError

    @property
    def _client(self) -> ty.Any:
        return self._clients.get()

    # --- configuration ---------------------------------------------------

    def _conflict(self, names: ty.Sequence[str]) -> Exception:
        """The error for ``names`` given together; the first is blamed."""
        return exception.ConfigurationError(
            'Arguments %s of %s cannot be used together'
            % (' and '.join(names), self.name), argument=names[0])

    def _addresses(self, name: str,
                   items: list[str]) -> list[tuple[str, int]]:
        """``(host, port)`` of each of ``items``, as :meth:`servers` lists.

        ``name`` (sentinels, cluster_nodes) names many servers, so
        ``host`` and ``port``, which name one, are refused alongside.
        """
        if self.args['host'] is not None or self.args['port'] is not None:
            raise self._conflict([name, 'host/port'])
        found = []
        for item in items:
            try:
                server = address.Address.parse(item)
                found.append((server.label, server.tcp))
            except address.AddressError as exc:
                raise exception.ConfigurationError(
                    'Argument %s of %s: %r is not host:port (%s)'
                    % (name, self.name, item, exc), argument=name) from None
        self._servers = [label for label, _ in found]
        return [tcp for _, tcp in found]

    # --- errors ----------------------------------------------------------

    def describe_failure(self, exc: BaseException) -> str:
        detail = _PIPELINE_ERROR.sub(r'pipelined command #\1: ', str(exc))
        if isinstance(exc, redis.AuthenticationError):
            return ('authentication failed; check username and password '
                    '(%s)' % detail)
        return '%s: %s' % (type(exc).__name__, detail)

    def _missing(self, reply: ty.Any) -> ty.Any:
        """NO_VALUE for a nil reply; any other non-bytes reply is refused."""
        if reply is None:
            return base.NO_VALUE
        raise exception.BackendError(
            '%s: %s returned a %s where a value was expected'
            % (self.name, self.where, type(reply).__name__))

    def stat_sources(self):
        return [(self.where, lambda: _stats_of(self._client))]

    # --- server-assisted invalidation of a near cache -------------------

    def watch(self, near):
        """Broadcast tracking of this store's keys; see :mod:`.redis_tracking`.

        Starts a thread in this process (none in a uWSGI master), and
        returns the function that stops it.
        """
        return redis_tracking.Watcher(self, near, self._watched,
                                      self._watched_changed).start()

    def _watched(self) -> list[tuple[str, ty.Any]]:
        """The server to watch and a new connection to it, unconnected.

        Made from this process's pool, so it has the pool's settings (TLS,
        credentials, timeouts, database) without counting against it.
        """
        pool = self._client.connection_pool
        return [(self.where, pool.connection_class(**pool.connection_kwargs))]

    def _watched_changed(self, channels: list[ty.Any]) -> bool:
        """Whether the watched server is no longer the one to watch."""
        return False

    # --- the backend API -------------------------------------------------

    # Reads call execute_command itself: redis-py's get() and mget() only
    # add a copy of the keys, for client-side caching, which is off.
    @base.translate_errors
    @_repeated_when_dropped
    def get_serialized(self, key):
        value = self._client.execute_command('GET', self._prefix + key)
        return value if value.__class__ is bytes else self._missing(value)

    @base.translate_errors
    @_repeated_when_dropped
    def get_serialized_multi(self, keys):
        if not keys:
            return []
        prefix = self._prefix
        if prefix:
            keys = [prefix + key for key in keys]
        # bytes pass straight through; anything else is looked at once.
        return [value if value.__class__ is bytes else self._missing(value)
                for value in self._get_many(keys)]

    @base.translate_errors
    @_repeated_when_dropped
    def set_serialized(self, key, value, ttl=None):
        self._client.set(self._prefix + key, value, px=_px(ttl))

    @base.translate_errors
    @_repeated_when_dropped
    def set_serialized_multi(self, mapping, ttl=None):
        prefix = self._prefix
        self._set_many({prefix + key: value
                        for key, value in mapping.items()}, _px(ttl))

    @base.translate_errors
    @_repeated_when_dropped
    def delete_multi(self, keys):
        prefix = self._prefix
        self._delete_many([prefix + key for key in keys])

    @base.translate_errors
    def delete_existing(self, key):
        return self._client.execute_command('DEL', self._prefix + key) == 1

    @base.translate_errors
    def add_serialized(self, key, value, ttl=None):
        return bool(self._client.set(self._prefix + key, value, nx=True,
                                     px=_px(ttl)))

    @base.translate_errors
    def acquire_lock(self, key, token, ttl):
        return bool(self._client.set(
            self._prefix + key, token, nx=True,
            px=_px(ttl and ttl + base.LOCK_EXPIRY_MARGIN)))

    @base.translate_errors
    def release_lock(self, key, token):
        prefix = self._prefix
        return self._release_script(
            keys=[prefix + key, *_notice_keys(prefix, key)],
            args=[token, NOTICE_TTL_MS], client=self._client) == 1

    @base.translate_errors
    def wait_released(self, key, timeout):
        longest = int(min(timeout, self._longest_wait) * 1000)
        if longest < 1:
            return True    # BLPOP's timeout is in ms, and 0 is for ever
        waiting = self._waiting.get()
        if not waiting.acquire(blocking=False):
            return False
        try:
            prefix = self._prefix
            mark, notices = _notice_keys(prefix, key)
            wait = self._wait_script(keys=[prefix + key, mark],
                                     args=[longest, NOTICE_TTL_MS],
                                     client=self._client)
            if wait > 0:
                self._client.execute_command('BLPOP', notices,
                                             '%.3f' % (wait / 1000))
            return True
        finally:
            waiting.release()

    @base.translate_errors
    def set_fenced(self, key, value, ttl, lock_key, token):
        px = _px(ttl)
        return self._if_held(key, lock_key, token, 'SET', value,
                             *(('PX', px) if px else ())) != -1

    @base.translate_errors
    def delete_fenced(self, key, lock_key, token):
        deleted = self._if_held(key, lock_key, token, 'DEL')
        return None if deleted == -1 else deleted == 1

    # Single-key scripts, so they run on a Cluster too. A compare-and-set
    # is not repeated after a dropped connection: one the server ran
    # would then report a conflict, and the store would apply fn twice.
    get_versioned = base.versioned_by_value

    @base.translate_errors
    def compare_and_set(self, key, token, value, ttl=None):
        if token is None:
            return self.add_serialized(key, value, ttl)
        expiry = 'keep' if ttl is base.KEEP_EXPIRY else _px(ttl) or ''
        return self._run(self._cas_script, key, token, value, expiry) == 1

    @base.translate_errors
    def touch_serialized(self, key, ttl=None):
        return self._run(self._touch_script, key, _px(ttl) or '') == 1

    # Not repeated after a dropped connection either: the server may have
    # added delta already.
    @base.translate_errors
    def incr_serialized(self, key, delta, ttl=None):
        if not serialization.DECIMAL_MIN <= delta < serialization.DECIMAL_END:
            return None    # INCRBY takes an int64
        if ttl is None:
            try:
                return self._client.execute_command(
                    'INCRBY', self._prefix + key, delta)
            except redis_exceptions.ResponseError as exc:
                if any(word in str(exc) for word in _NOT_COUNTABLE):
                    return None    # the store compares and sets
                raise
        new = self._run(self._incr_script, key, delta, _px(ttl))
        # A string reply: INCRBY refused; the store compares and sets.
        return new if new.__class__ is int else None

    def _run(self, script: ty.Any, key: str, *args: ty.Any) -> ty.Any:
        """Run a registered single-key ``script`` on ``key`` with ``args``.

        EVALSHA itself: calling the Script object costs more in Python
        (about 3 us) than the server spends running these scripts. One
        key, so a Cluster client sends it to the key's node.
        """
        client, key = self._client, self._prefix + key
        try:
            return client.execute_command('EVALSHA', script.sha, 1, key,
                                          *args)
        except redis_exceptions.NoScriptError:
            # Nothing ran: the server has not got the script yet (or
            # lost it: restarted, SCRIPT FLUSH). A Cluster client loads
            # it on every master.
            client.script_load(script.script)
            return client.execute_command('EVALSHA', script.sha, 1, key,
                                          *args)

    def _if_held(self, key: str, lock_key: str, token: str,
                 *command: ty.Any) -> ty.Any:
        """``command`` on ``key`` while ``lock_key`` holds ``token``, or -1."""
        prefix = self._prefix
        return self._if_held_script(keys=[prefix + key, prefix + lock_key],
                                    args=[token, *command],
                                    client=self._client)

    def _close_client(self, client: ty.Any) -> None:
        # Closing a broken connection must not fail shutdown.
        with contextlib.suppress(Exception):
            client.close()

    # --- multi-key calls on stored (prefixed) keys -----------------------

    def _get_many(self, keys: list[str]) -> list[ty.Any]:
        return self._client.execute_command('MGET', *keys)

    def _set_many(self, items: dict[str, bytes], px: int | None) -> None:
        if px is None:
            # Nothing expires: one MSET.
            self._client.mset(items)
            return
        pipe = self._client.pipeline(transaction=False)
        for key, value in items.items():
            pipe.execute_command('SET', key, value, 'PX', px)
        pipe.execute()

    def _delete_many(self, keys: list[str]) -> None:
        self._client.delete(*keys)


class StandaloneBackend(RedisBackend):
    """One Redis server, by ``url`` or ``host``/``port``/``db``."""

    def _prepare(self, args: dict, connection: dict) -> ty.Callable:
        ssl = connection.pop('ssl', False)
        if ssl:
            connection['connection_class'] = redis.SSLConnection
        # A url may leave any of host, port and db out.
        connection.update(host=args['host'] or 'localhost',
                          port=args['port'] or self.default_port,
                          db=args['db'] or 0)
        if args['url']:
            if any(args[n] is not None for n in ('host', 'port', 'db')):
                raise self._conflict(['url', 'host/port/db'])
            try:
                parsed = redis_connection.parse_url(args['url'])
            except ValueError as exc:
                # Not the URL itself: it may hold a password.
                raise exception.ConfigurationError(
                    'Invalid url for %s: %s' % (self.name, exc),
                    argument='url') from None
            # Only what the backend's own arguments cannot say; settings
            # such as decode_responses must not come in through the query.
            unsupported = sorted(set(parsed) - _URL_PARTS)
            if unsupported:
                raise exception.ConfigurationError(
                    'url of %s may not set %s; use the backend arguments'
                    % (self.name, ', '.join(unsupported)), argument='url')
            for name in ('username', 'password'):
                if name in parsed and connection[name]:
                    raise self._conflict([name, 'a url with a %s' % name])
            connection.update(parsed)
        if 'path' in connection:
            if ssl:
                raise self._conflict(['tls_enabled', 'a unix:// url'])
            # Neither host and port nor TCP keepalive apply to a socket.
            connection = {name: value for name, value in connection.items()
                          if name not in ('host', 'port') and
                          not name.startswith('socket_keepalive')}
            self.where = 'unix://%s' % connection['path']
        else:
            self.where = '%s://%s/%d' % (
                'rediss' if ssl else 'redis',
                address.Address(connection['host'], connection['port']),
                connection['db'])
        self._servers = [self.where]

        def new_client() -> redis.Redis:
            # from_pool: closing the client closes the pool too.
            return redis.Redis.from_pool(redis.BlockingConnectionPool(
                max_connections=args['pool_maxsize'],
                timeout=connection['socket_connect_timeout'], **connection))
        return new_client


class SentinelBackend(RedisBackend):
    """The master of ``service_name``, found through ``sentinels``."""

    def _prepare(self, args: dict, connection: dict) -> ty.Callable:
        sentinels = self._addresses('sentinels', args['sentinels'])
        service = args['service_name']
        if not service:
            raise exception.ConfigurationError(
                'Argument sentinels of %s needs service_name' % self.name,
                argument='service_name')
        # The sentinels get the same sockets, timeouts and TLS.
        sentinel_kwargs = dict(connection,
                               username=args['sentinel_username'],
                               password=args['sentinel_password'])
        connection.update(db=args['db'] or 0,
                          max_connections=args['pool_maxsize'])
        if connection.pop('ssl', False):
            # SentinelManagedSSLConnection speaks TLS to each master.
            connection['connection_class'] = (
                redis.SentinelManagedSSLConnection)
        self.where = 'service %s via sentinels %s' % (
            service, ','.join(args['sentinels']))

        def new_client() -> redis.Redis:
            return redis.Sentinel(
                sentinels, sentinel_kwargs=sentinel_kwargs).master_for(
                    service, **connection)
        return new_client

    def _watched_changed(self, channels):
        # A failover: the sentinels name another master. Sentinel also
        # kills the clients of the servers it reconfigures, which the
        # channel sees at once; this covers a master cut off from them.
        connection = channels[0].connection
        master = self._client.connection_pool.get_master_address()
        return (connection.host, connection.port) != tuple(master)

    def stat_sources(self):
        # The master the sentinels name now, if they answer.
        client = self._client
        try:
            label = address.Address(
                *client.connection_pool.get_master_address()).label
        except self.server_errors:
            label = self.where
        return [(label, lambda: _stats_of(client))]


class ClusterBackend(RedisBackend):
    """A Redis Cluster, reached through any of ``cluster_nodes``.

    Multi-key operations are split per node, one pipeline each, so a
    caller never sees a CROSSSLOT error.
    """

    # A data key and its lock key hash to different slots, and one script
    # can only touch one slot, so the store falls back to its lock_window.
    fenced_writes = False

    def _prepare(self, args: dict, connection: dict) -> ty.Callable:
        nodes = self._addresses('cluster_nodes', args['cluster_nodes'])
        if args['db']:
            raise exception.ConfigurationError(
                'Argument db of %s must be 0 with cluster_nodes: Redis '
                'Cluster has only database 0' % self.name, argument='db')
        self.where = 'cluster %s' % ','.join(args['cluster_nodes'])
        retry = connection.pop('retry')

        def new_client() -> ty.Any:
            try:
                # Connects to learn the slot map, so a cluster that is
                # down already fails here. Built with redis-py's default
                # retry: the first command goes to the master of slot 0,
                # and when that master is down the retry moves it to
                # another one, so the cluster starts with any one master
                # down.
                client = redis.RedisCluster(
                    startup_nodes=[redis_cluster.ClusterNode(*node)
                                   for node in nodes],
                    max_connections=args['pool_maxsize'], **connection)
            except self.server_errors as exc:
                raise base.backend_error(self, exc, 'connect')
            # Then no retry, so a call on a down or hung node fails within
            # the documented time.
            client.set_retry(retry)
            return client
        return new_client

    def _primaries(self) -> list[tuple[str, int]]:
        """The masters that hold slots, as the cluster says now."""
        slots = self._client.cluster_slots()
        return sorted({tuple(owner['primary']) for owner in slots.values()})

    def _watched(self):
        # One channel per master: each broadcasts the writes to its slots.
        # Connections get the settings of a node the client knows, with
        # the master's address.
        primaries = self._primaries()
        pool = self._client.get_nodes()[0].redis_connection.connection_pool
        return [(address.Address(host, port).label,
                 pool.connection_class(**dict(pool.connection_kwargs,
                                              host=host, port=port)))
                for host, port in primaries]

    def _watched_changed(self, channels):
        # A failover, a master added or emptied: build the channels again.
        watched = [(channel.connection.host, channel.connection.port)
                   for channel in channels]
        return self._primaries() != watched

    def stat_sources(self):
        client = self._client
        # In a stable order, for --watch.
        primaries = sorted(client.get_primaries(), key=lambda node: node.name)
        return [(address.Address(node.host, node.port).label,
                 functools.partial(_stats_of,
                                   client.get_redis_connection(node)))
                for node in primaries]

    def _get_many(self, keys: list[str]) -> list[ty.Any]:
        return self._on_nodes([('GET', key) for key in keys])

    def _set_many(self, items: dict[str, bytes], px: int | None) -> None:
        expiry = () if px is None else ('PX', px)
        self._on_nodes([('SET', key, value) + expiry
                        for key, value in items.items()])

    def _delete_many(self, keys: list[str]) -> None:
        self._on_nodes([('DEL', key) for key in keys])

    def _on_nodes(self, commands: list[tuple]) -> list[ty.Any]:
        """Replies to single-key ``commands``: one pipeline per node.

        redis-py's cluster pipeline re-sends every command that timed out
        one at a time, so a multi-key call on a hung master would wait
        ``socket_timeout`` once per key. Here each node gets one pipeline
        and a node that does not answer fails the call once, naming the
        node. Redirections and refused connections (resharding, failover)
        are left to redis-py's cluster client, which follows them and
        refreshes its slot map.
        """
        client = self._client
        by_node: dict[str, tuple[ty.Any, list[int]]] = {}
        for index, command in enumerate(commands):
            node = client.get_node_from_key(command[1])
            by_node.setdefault(node.name, (node, []))[1].append(index)
        replies: list[ty.Any] = [None] * len(commands)
        for node, indexes in by_node.values():
            pipe = client.get_redis_connection(node).pipeline(
                transaction=False)
            for index in indexes:
                pipe.execute_command(*commands[index])
            try:
                results = pipe.execute(raise_on_error=False)
            except redis.TimeoutError as exc:
                raise redis.TimeoutError(
                    'node %s: %s' % (node.name, exc)) from None
            except redis.ConnectionError as exc:
                results = [exc] * len(indexes)
            for index, result in zip(indexes, results):
                if isinstance(result, redis.RedisError):
                    result = client.execute_command(*commands[index])
                replies[index] = result
        return replies
