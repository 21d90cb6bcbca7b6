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

"""Redis tells a process's near cache about other clients' writes.

:meth:`RedisBackend.watch <oslo_kvs.backends.redis.RedisBackend.watch>`
starts a :class:`Watcher`: one thread per process and store that holds
one connection to each primary (one server, the master Sentinel names,
or each master of a Cluster) with ``CLIENT TRACKING ON BCAST`` and hands
the keys of every invalidation message to the near cache's ``drop()``.

Why broadcast mode
------------------
Redis 6.0 and later track keys for clients in two ways, and RESP2 (what
every backend connection speaks) delivers the messages of both on the
``__redis__:invalidate`` channel of a connection named by ``REDIRECT``.

Default mode tracks the keys each *reading* connection read. Every pooled
connection would need ``CLIENT TRACKING ON REDIRECT <listener id>`` before
its first read, which redis-py offers no public per-connection hook for
(a Cluster client takes ``redis_connect_func`` for itself). Worse, when
the listener reconnects its id changes, and with RESP2 the server drops
the messages of connections still redirected to the old id without a
word (checked on Redis 7.0: such a connection keeps reading and
tracking, flagged ``R``, and nobody receives its messages). Every pooled
connection, busy ones included, would have to be torn down or
re-redirected before the cache may serve again, or it serves stale
values silently. In exchange the server sends only keys this process
read, and keeps a table of them (up to ``tracking-table-max-keys`` keys,
then it invalidates early).

Broadcast mode (``BCAST``) needs no state on the data connections: one
connection per primary says which key prefixes it wants and receives
every write to them, batched by the server once per event-loop turn. Its
setup is one connection and three commands, its loss is the loss of that
connection, and nothing can redirect into the void. A connection may
redirect to itself and then subscribe (checked on Redis 7.0): tracking
is set up before ``SUBSCRIBE``, since a RESP2 connection in subscribed
mode accepts nothing but (un)subscriptions and ``PING``. Its cost is
traffic: stored keys are hashes with no common prefix, so unless the
store has a ``key_prefix`` (then only keys under it are sent) every
write on the server reaches every watching process, a message of about
120 bytes. Measured on a loaded two-CPU machine, a single-key message
costs the receiving process about 90 us of CPU (as much as a read), and
about 5 us per key once the server batches many; 400 writes a second
cost each process about 4% of a CPU. Default mode would send a process
only the keys it read, which is less where most writes touch keys it
never reads, but it cannot be made safe over RESP2 with redis-py's
public API, as above; correctness decides. The server keeps no per-key
table for broadcast tracking.

What the cache sees
-------------------
``suspend()`` comes first, before the thread starts (in a uWSGI master,
which must start no thread, nothing else happens: the cache stays
suspended there, and each worker watches for itself); ``resume()`` only
once every channel is subscribed with tracking on. Whenever a channel is
lost (connection error or reset, ``CLIENT KILL``, a server restart, no
reply to a ``PING`` within ``socket_timeout``, a Sentinel master or
Cluster primary set that is no longer the one watched) the reader calls
``suspend()`` at once, then the watcher closes every channel and builds
them again with a growing, jittered delay. A flush (a message with no
keys: ``FLUSHALL``, ``FLUSHDB``) suspends and resumes, which empties the
cache. Writes made while a channel was down are never missed: the cache
was emptied and served nothing until ``resume()``.

A reply read on a data connection and the invalidation of a later write
arrive on two different connections, so the near cache must not keep a
value whose read started before a ``drop()`` or ``suspend()`` of it
(the near cache's own concern, on every backend).
"""

import logging
import random
import threading
import time
import typing as ty
import weakref

from oslo_kvs import _process
from oslo_kvs.backends import base

LOG = logging.getLogger(__name__)

#: The channel of RESP2 invalidation messages.
CHANNEL = b'__redis__:invalidate'
#: The payload of the watcher's own PINGs, to tell their replies apart.
PING_PAYLOAD = b'oslo-kvs-watch'
#: Seconds a reader waits for data before it looks at anything else
#: (stop, the topology, its PING): the bound on how late it notices.
POLL = 0.25
#: Seconds without a message after which a channel is proven alive by a
#: PING; a reply must come within the backend's ``socket_timeout``.
PING_INTERVAL = 1.0
#: Seconds between checks that the watched servers are still the
#: primaries (Sentinel and Cluster).
TOPOLOGY_INTERVAL = 2.0
#: First and longest delay (seconds) before building the channels again.
BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0


class NearCache(ty.Protocol):
    """What a watcher calls: :mod:`oslo_kvs.near`'s cache, or a test's."""

    def drop(self, stored_keys: ty.Iterable[str]) -> None:
        """Forget these stored keys (another client wrote them)."""

    def suspend(self) -> None:
        """Forget everything and serve nothing until :meth:`resume`."""

    def resume(self) -> None:
        """Serve again: the channel is up and tracking is on."""


class ChannelLost(Exception):
    """A channel cannot be trusted any more (no reply, topology moved)."""


class CacheGone(Exception):
    """The near cache was garbage-collected: nothing is left to tell."""


def _strong(near: NearCache) -> ty.Callable[[], NearCache]:
    return lambda: near


class Channel:
    """One connection with broadcast tracking on: one server's writes.

    :param label: the server, for messages.
    :param connection: a redis-py connection, not yet connected, made
        with the backend's settings (TLS, credentials, timeouts).
    :param prefix: the backend's ``key_prefix``: only keys under it are
        sent, and it is taken off before the cache sees them.
    :param timeout: seconds a PING may wait for its reply.
    """

    def __init__(self, label: str, connection: ty.Any, prefix: str,
                 timeout: float) -> None:
        self.label = label
        self.connection = connection
        self.prefix = prefix
        self.timeout = timeout
        self.last_heard = time.monotonic()
        self.ping_sent: float | None = None

    def open(self) -> None:
        """Connect, turn broadcast tracking on to itself, subscribe.

        Returns once the server has confirmed the subscription: from then
        on every write under the prefix reaches :meth:`poll`.
        """
        conn = self.connection
        conn.connect()
        conn.send_command('CLIENT', 'ID')
        client_id = conn.read_response()
        command = ['CLIENT', 'TRACKING', 'ON', 'REDIRECT', client_id,
                   'BCAST']
        if self.prefix:
            command += ['PREFIX', self.prefix]
        conn.send_command(*command)
        reply = conn.read_response()
        if reply not in (b'OK', 'OK'):
            raise ChannelLost('%s: CLIENT TRACKING replied %r'
                              % (self.label, reply))
        conn.send_command('SUBSCRIBE', CHANNEL)
        reply = conn.read_response()
        if not (isinstance(reply, list) and reply[:1] == [b'subscribe']):
            raise ChannelLost('%s: SUBSCRIBE replied %r'
                              % (self.label, reply))
        self.last_heard = time.monotonic()

    def poll(self, cache: ty.Callable[[], NearCache | None],
             timeout: float) -> None:
        """Hand what arrives within ``timeout`` seconds to ``cache()``.

        ``cache`` gives the near cache, or None once it is gone; it is
        called only when a message came, so that waiting holds no
        reference to the cache.

        :raises ChannelLost: when a PING went unanswered.
        :raises CacheGone: when the cache is gone.
        :raises redis.ConnectionError: when the connection failed.
        """
        conn = self.connection
        # can_read() reconnects a connection that is closed; a channel is
        # never polled after a failure (the watcher builds a new one), so
        # that reconnection, which would come back untracked, never runs.
        if not conn.can_read(timeout=timeout):
            self._check_alive()
            return
        reply = conn.read_response()
        self.last_heard = time.monotonic()
        self.ping_sent = None
        if not isinstance(reply, list) or len(reply) < 2:
            return
        kind = reply[0]
        if kind == b'message' and reply[1] == CHANNEL:
            keys = reply[2]
            near = cache()
            if near is None:
                raise CacheGone()
            if keys is None:
                # A flush: forget everything, keep serving.
                near.suspend()
                near.resume()
            else:
                cut = len(self.prefix)
                near.drop([key.decode('utf-8', 'replace')[cut:]
                           for key in keys])

    def _check_alive(self) -> None:
        """PING a channel that was quiet; give up on one that stays quiet.

        A server that stopped (SIGSTOP, a dead host, a partition) keeps
        the socket open and sends nothing, which looks like a quiet
        server until a PING goes unanswered.
        """
        now = time.monotonic()
        if self.ping_sent is not None:
            if now - self.ping_sent > self.timeout:
                raise ChannelLost('%s: no reply to PING within %ss'
                                  % (self.label, self.timeout))
        elif now - self.last_heard > PING_INTERVAL:
            self.connection.send_command('PING', PING_PAYLOAD)
            self.ping_sent = now

    def close(self) -> None:
        """Close the connection (the server then stops tracking it)."""
        try:
            self.connection.disconnect()
        except Exception:  # a broken connection must not fail a stop
            pass


#: ``(label, connection)`` of each server to watch, the current primaries.
Discover = ty.Callable[[], list[tuple[str, ty.Any]]]
#: Whether the watched servers are no longer the primaries.
Changed = ty.Callable[[list[Channel]], bool]


class Watcher:
    """The thread that keeps a near cache told of other clients' writes.

    :param backend: the Redis backend, for its settings and messages.
    :param near: the cache to tell.
    :param discover: the current primaries, with a fresh connection to
        each.
    :param changed: whether the channels' servers are no longer the
        primaries; None when they cannot change (one server).
    """

    def __init__(self, backend: base.Backend, near: NearCache,
                 discover: Discover, changed: Changed | None = None) -> None:
        self.backend = backend
        # Weakly, so that a store dropped without close() does not live
        # on in this thread: once its cache is gone, the thread ends and
        # closes its connections. A cache that takes no weak reference
        # is held for good (until stop()).
        self._cache: ty.Callable[[], NearCache | None]
        try:
            self._cache = weakref.ref(near)
        except TypeError:
            self._cache = _strong(near)
        self._discover = discover
        self._changed = changed
        self._prefix: str = backend.args['key_prefix']
        self._timeout: float = backend.args['socket_timeout']
        self._pid = _process.pid()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        #: The channels in use, for tests and :meth:`stop`.
        self.channels: list[Channel] = []

    def _tell(self, what: str) -> None:
        """Call the cache's ``suspend`` or ``resume``.

        :raises CacheGone: when the cache is gone.
        """
        near = self._cache()
        if near is None:
            raise CacheGone()
        getattr(near, what)()

    def start(self) -> ty.Callable[[], None]:
        """Suspend the cache, start the thread; return :meth:`stop`."""
        self._tell('suspend')
        if _process.will_fork_without_hooks():
            # A uWSGI master: no thread. The cache stays suspended here;
            # each worker's store watches for itself.
            return self.stop
        self._thread = threading.Thread(
            target=self._run, daemon=True,
            name='oslo-kvs-watch %s' % self.backend.where)
        self._thread.start()
        return self.stop

    def stop(self) -> None:
        """Stop the thread, close its connections, suspend the cache.

        Idempotent.

        In another process (a forked child holding its parent's watcher)
        it does nothing: the thread and connections are the parent's.
        """
        if _process.pid() != self._pid:
            return
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        # Nothing tells the cache of writes any more.
        near = self._cache()
        if near is not None:
            near.suspend()

    @property
    def alive(self) -> bool:
        """Whether the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        delay = BACKOFF_MIN
        while not self._stopping.is_set():
            channels: list[Channel] = []
            try:
                channels = [Channel(label, connection, self._prefix,
                                    self._timeout)
                            for label, connection in self._discover()]
                self.channels = channels
                for channel in channels:
                    channel.open()
                if self._stopping.is_set():
                    break
                self._tell('resume')
                if delay > BACKOFF_MIN:
                    LOG.info('%s: invalidation channel back; near cache '
                             'resumed', self.backend.name)
                delay = BACKOFF_MIN
                self._serve(channels)
            except CacheGone:
                break
            except Exception as exc:
                try:
                    self._tell('suspend')
                except CacheGone:
                    break
                # Once per outage: a server that stays down (or refuses
                # CLIENT TRACKING) must not flood the log.
                self._report(exc, logging.WARNING if delay == BACKOFF_MIN
                             else logging.DEBUG)
                # Jittered, so that the workers of a host do not all
                # reconnect in step after a server restart.
                self._stopping.wait(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, BACKOFF_MAX)
            finally:
                for channel in channels:
                    channel.close()
                self.channels = []

    def _serve(self, channels: list[Channel]) -> None:
        """Read every channel until one is lost (raise) or a stop (return).

        This thread reads the first channel and checks the topology;
        each other channel (Cluster primaries) gets a thread of its own,
        since redis-py offers no way to wait on several connections.
        """
        lost = threading.Event()
        errors: list[BaseException] = []
        helpers = [threading.Thread(
            target=self._read, args=(channel, lost, errors, channels),
            daemon=True, name='oslo-kvs-watch %s' % channel.label)
            for channel in channels[1:]]
        for helper in helpers:
            helper.start()
        try:
            self._read(channels[0], lost, errors, channels, supervise=True)
        finally:
            lost.set()
            for helper in helpers:
                helper.join()
        if errors:
            raise errors[0]

    def _read(self, channel: Channel, lost: threading.Event,
              errors: list[BaseException], channels: list[Channel],
              supervise: bool = False) -> None:
        next_check = time.monotonic() + TOPOLOGY_INTERVAL
        try:
            while not lost.is_set() and not self._stopping.is_set():
                channel.poll(self._cache, POLL)
                if self._cache() is None:
                    raise CacheGone()
                if (supervise and self._changed is not None and
                        time.monotonic() >= next_check):
                    if self._changed(channels):
                        raise ChannelLost('the primaries changed')
                    next_check = time.monotonic() + TOPOLOGY_INTERVAL
        except Exception as exc:
            # At once, before the other channels are closed.
            near = self._cache()
            if near is not None:
                near.suspend()
            errors.append(exc)
            lost.set()

    def _report(self, exc: BaseException, level: int) -> None:
        backend = self.backend
        if isinstance(exc, (ChannelLost,) + backend.server_errors):
            LOG.log(level, '%s: near cache suspended, reconnecting: %s',
                    backend.name, base.backend_error(
                        backend, exc, 'invalidation channel'))
        else:
            LOG.error('%s: near cache suspended by an unexpected error in '
                      'its invalidation channel', backend.name,
                      exc_info=exc)
