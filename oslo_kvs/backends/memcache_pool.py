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

"""The memcached transport: per-server pools, node health and placement.

Built on pymemcache's public API only: :class:`pymemcache.client.base.Client`
talks to one server, :class:`pymemcache.client.rendezvous.RendezvousHash`
places keys exactly where pymemcache's own ``HashClient`` puts them.

A :class:`Cluster` and its pools belong to one process: the backend keeps
one per process (see :mod:`oslo_kvs._process`), so a forked child never
reads a reply meant for its parent.
"""

import collections
import functools
import select
import threading
import time
import typing as ty

import mmh3
from pymemcache.client import base as pymc_base
from pymemcache.client import murmur3
from pymemcache.client import rendezvous
from pymemcache import exceptions as pymc_exc


class AuthenticationFailed(pymc_exc.MemcacheError):
    """The server refused the credentials, or does not ask for any."""


#: Failures that say a server is down, hung or talking nonsense; any other
#: error (a refused value, a bad key) is about the call, not the server.
NODE_FAULTS = (OSError, pymc_exc.MemcacheUnexpectedCloseError,
               pymc_exc.MemcacheUnknownError, AuthenticationFailed)

#: Key of the ``set`` that carries memcached's ASCII authentication; the
#: server reads only the value, ``"<username> <password>"``.
AUTH_KEY = 'oslo_kvs_auth'

#: Seconds since its last reply during which a connection is reused without
#: polling it. Far shorter than any server restart (the old process must
#: die, a new one start and listen), so a connection closed by a restart
#: has always been idle longer and is polled; under load, connections are
#: reused within microseconds and skip the poll's system call.
TRUSTED_IDLE = 0.001


def murmur3_32(text: str, seed: int = 0) -> int:
    """pymemcache's murmur3_32, in C for the ASCII text it always sees.

    Same placement as every other pymemcache HashClient (so servers are
    shared consistently), at a hundredth of the pure-Python cost.
    """
    if text.isascii():
        return mmh3.hash(text, seed, signed=False)
    return murmur3.murmur3_32(text, seed)


class ServerError(Exception):
    """A memcached server failed or refused a command.

    ``label`` names the server for messages; the client's own
    exception, if there was one, is the ``__cause__``. The backend turns
    these into oslo_kvs exceptions in one place (:mod:`.base`).
    """

    def __init__(self, label: str, message: str) -> None:
        super().__init__(message)
        self.label = label


class TooLarge(ServerError):
    """The server refused a value larger than its item size limit."""


class Node:
    """One memcached server as this process sees it: clients and health.

    Its clients are a bounded pool of pymemcache clients. The most
    recently returned one is handed out first, so under light load few
    connections stay open; the rest age past ``idle_timeout`` and the next
    call closes them. A connection the server closed (it was restarted) is
    noticed before reuse, by a zero-timeout poll of the client's public
    ``sock``: an idle memcached connection has nothing to read, so anything
    readable is the end of the stream. When ``max_size`` clients are busy,
    callers wait up to ``wait_timeout`` seconds.

    Its health is counted by the :class:`Cluster`, which :meth:`run` tells
    of each failure of the server and of the first success after one;
    while a counted failure is younger than ``retry_delay``, :meth:`run`
    fails at once.
    """

    def __init__(self, server: ty.Any, *, max_size: int, idle_timeout: float,
                 wait_timeout: float, label: str | None = None,
                 credentials: tuple[str, str] | None = None,
                 **client_kwargs: ty.Any) -> None:
        self.server = server
        #: The name pymemcache's HashClient hashes the server under.
        self.name = ('%s:%s' % server if isinstance(server, tuple)
                     else server)
        #: The server's name in messages.
        self.label = label or self.name
        self._auth = (None if credentials is None
                      else ('%s %s' % credentials).encode('utf-8'))
        self._make = functools.partial(pymc_base.Client, server,
                                       **client_kwargs)
        self.max_size = max_size
        self.idle_timeout = idle_timeout
        self.wait_timeout = wait_timeout
        self._idle: collections.deque = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._size = 0
        self._waiters = 0
        #: Told ``(node, ok)`` of a failure and of the success after one;
        #: outside a cluster, nobody is.
        self.on_health: ty.Callable[[Node, bool], None] = (
            lambda node, ok: None)
        self.failures = 0
        self.last_failure = 0.0
        self.retry_delay = 0.0
        self.dead_until = 0.0
        self.rejoining = False

    def _checkout(self) -> pymc_base.Client:
        deadline = time.monotonic() + self.wait_timeout
        with self._cond:
            # Counted before looking, so a client returned meanwhile is
            # either seen here or announced with notify().
            self._waiters += 1
            try:
                while True:
                    if self._idle:
                        return self._idle.pop()[0]
                    if self._size < self.max_size:
                        self._size += 1
                        return self._make()
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise ServerError(
                            self.label, 'no free connection within %ss '
                            '(pool_maxsize %d)' % (self.wait_timeout,
                                                   self.max_size))
                    self._cond.wait(remaining)
            finally:
                self._waiters -= 1

    def run(self, method: str, *args: ty.Any) -> ty.Any:
        """Call ``method`` of a pooled client with positional ``args``.

        :raises ServerError: naming the server; at once, if it failed
            within ``retry_delay`` (see :class:`Cluster`).
        """
        if self.failures and (time.monotonic() - self.last_failure <
                              self.retry_delay):
            raise ServerError(self.label, 'failed recently and is skipped '
                              'until it is retried or ejected')
        # The common case, inlined: it runs on every operation. A client
        # is stamped with the time its last call started: idle times
        # come out longer by the call's duration, which only polls more.
        now = time.monotonic()
        idle = self._idle
        try:
            client, last_used = idle.pop()
        except IndexError:
            client = self._checkout()
        else:
            # Close it, to reconnect, if idle too long or if its server
            # hung up on it (see the class).
            if now - last_used > TRUSTED_IDLE and client.sock and (
                    (self.idle_timeout and
                     now - last_used > self.idle_timeout) or
                    select.select((client.sock,), (), (), 0)[0]):
                client.close()
        try:
            if client.sock is None and self._auth is not None:
                self._authenticate(client)
            result = getattr(client, method)(*args)
        except BaseException as exc:
            # A reply may be half read; never reuse that connection.
            client.close()
            if isinstance(exc, NODE_FAULTS):
                self.on_health(self, False)  # the server counts as failed
            elif not isinstance(exc, pymc_exc.MemcacheError) or isinstance(
                    exc, pymc_exc.MemcacheIllegalInputError):
                raise  # about the call (a bug, an illegal key), not a server
            kind = (TooLarge if isinstance(exc, pymc_exc.MemcacheServerError)
                    and 'too large' in str(exc) else ServerError)
            raise kind(self.label,
                       '%s: %s' % (type(exc).__name__, exc)) from exc
        else:
            if self.failures:  # counted by the cluster: it is back
                self.on_health(self, True)
            return result
        finally:
            idle.append((client, now))
            if self._waiters:
                with self._cond:
                    self._cond.notify()
            # Checked here, on every call, without the call to _reap.
            if self.idle_timeout:
                try:
                    oldest = idle[0][1]
                except IndexError:  # taken meanwhile by other threads
                    oldest = now
                if oldest < now - self.idle_timeout:
                    self._reap(now)

    def _authenticate(self, client: pymc_base.Client) -> None:
        """memcached's ASCII authentication, on a new connection.

        A server started with an auth file (``-Y``) answers every command
        but a ``set`` with "unauthenticated" until a ``set`` carries
        ``"<username> <password>"``. A server without one would store that
        ``set``, password and all, for anyone to read, so it is probed
        first and refused.
        """
        try:
            client.version()
        except pymc_exc.MemcacheClientError:
            client.close()  # it asks for credentials; start afresh
        else:
            client.close()
            raise AuthenticationFailed(
                'the server does not ask for authentication (no -Y auth '
                'file), so the password is not sent to it')
        try:
            client.set(AUTH_KEY, self._auth, noreply=False)
        except pymc_exc.MemcacheClientError:
            raise AuthenticationFailed(
                'authentication failed; check username and password') \
                from None

    def _reap(self, now: float) -> None:
        """Close and drop the clients idle for longer than idle_timeout."""
        idle = self._idle
        limit = now - self.idle_timeout
        with self._cond:
            while idle and idle[0][1] < limit:
                client, _ = idle.popleft()
                client.close()
                self._size -= 1
            self._cond.notify()

    def open_connections(self) -> int:
        """Connections of idle clients that are open now."""
        return sum(client.sock is not None for client, _ in list(self._idle))

    def close(self) -> None:
        """Close the idle connections; a later call would reopen them."""
        for client, _ in list(self._idle):
            client.close()


class Cluster:
    """The servers that share the keys, one or several, with their health.

    Keys are placed by pymemcache's rendezvous hash over the live servers.
    A server that fails is skipped for ``retry_delay`` seconds (calls for
    its keys fail at once), then tried again; after ``retry_attempts``
    such retries fail it is ejected for ``dead_retry`` seconds and its keys
    move to the others. Failures that overlap (several threads timing out
    on one hung server) count once per ``retry_delay``, so ejection takes
    the configured number of retries whatever the concurrency.

    The last live server is neither skipped nor ejected: its keys have
    nowhere else to go, so every call tries it and it serves again as soon
    as it answers. A cluster of one server is always in that state.

    An ejected server may hold values that were overwritten or deleted
    elsewhere while it was out; with ``flush_on_rejoin`` it is flushed
    before it serves again, and stays out if the flush fails.
    """

    def __init__(self, servers: ty.Sequence[tuple[ty.Any, str]],
                 node_args: dict[str, ty.Any], *, retry_attempts: int,
                 retry_delay: float, dead_retry: float,
                 flush_on_rejoin: bool) -> None:
        #: A :class:`Node` for each ``(server, label)``, made with
        #: ``node_args``.
        self.nodes = [Node(server, label=label, **node_args)
                      for server, label in servers]
        self.retry_attempts = retry_attempts
        self.retry_delay = retry_delay
        self.dead_retry = dead_retry
        self.flush_on_rejoin = flush_on_rejoin
        self._by_name = {node.name: node for node in self.nodes}
        self._dead: list[Node] = []
        self._lock = threading.Lock()
        for node in self.nodes:
            node.on_health = self._health
            node.retry_delay = retry_delay
        self._place()

    def _place(self) -> None:
        """Place keys on the live servers; plan the next rejoin."""
        live = [node for node in self.nodes if node not in self._dead]
        # A new ring per change: readers never see a node list being
        # edited. Rendezvous hashing over one server picks it, so then
        # the hash is skipped.
        self._ring = rendezvous.RendezvousHash(
            nodes=[node.name for node in live], hash_function=murmur3_32)
        self._only = live[0] if len(live) == 1 else None
        self._next_rejoin = min((node.dead_until for node in self._dead),
                                default=0.0)

    def node_for(self, key: str) -> Node:
        """The server that holds ``key`` now."""
        if self._dead and time.monotonic() >= self._next_rejoin:
            self._rejoin()
        return self._only or self._by_name[self._ring.get_node(key)]

    def group(self, keys: ty.Iterable[str]) -> dict[Node, list[str]]:
        """``keys`` grouped by the server that holds them."""
        if self._dead and time.monotonic() >= self._next_rejoin:
            self._rejoin()
        if self._only:
            return {self._only: list(keys)}
        groups: dict[Node, list[str]] = {}
        for key in keys:
            node = self._by_name[self._ring.get_node(key)]
            groups.setdefault(node, []).append(key)
        return groups

    def _health(self, node: Node, ok: bool) -> None:
        """Count a failure of ``node``, or forget them once it answers."""
        now = time.monotonic()
        with self._lock:
            if ok or node is self._only:
                node.failures = 0  # the last live server: see the class
            elif node not in self._dead and not (
                    node.failures and
                    now - node.last_failure < self.retry_delay):
                # Overlapping failures of one attempt count once.
                node.failures += 1
                node.last_failure = now
                if node.failures > self.retry_attempts:
                    self._eject(node, now)

    def _eject(self, node: Node, now: float) -> None:
        node.dead_until = now + self.dead_retry
        node.rejoining = False
        if node not in self._dead:
            self._dead.append(node)
        self._place()

    def _rejoin(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [node for node in self._dead
                   if node.dead_until <= now and not node.rejoining]
            for node in due:
                node.rejoining = True
                node.failures = 0  # the flush is not skipped
        for node in due:
            try:
                if self.flush_on_rejoin:
                    # What it holds may have been overwritten or deleted
                    # on the others meanwhile: serve nothing of it.
                    node.run('flush_all', 0, False)  # delay, noreply
            except Exception:
                with self._lock:
                    self._eject(node, time.monotonic())
                continue
            with self._lock:
                node.rejoining = False
                self._dead.remove(node)
                self._place()

    def close(self) -> None:
        """Close every idle connection."""
        for node in self.nodes:
            node.close()
