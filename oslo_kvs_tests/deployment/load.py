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

"""An HTTP load client for the sample service that checks every reply.

Threads (16 by default), each with its own keep-alive connection, send a
mix of requests: create a token (``POST /tokens``), read back a token this
client created, read a user's index, read a region's catalog. Every reply
is classified:

``ok``
    a 200 whose value is what was written (or a 404 for the token-less
    index); see ``missing`` for a token that reads 404.
``failed``
    a 503: a store failure the service reported properly.
``raw``
    a 500 (a raw exception), any other status, or a transport error.
``wrong``
    a 200 whose value is not what was written: a token whose user or id
    differs, an index lacking a token acknowledged before it was read, a
    catalog that differs from :func:`model.region_catalog`.
``missing``
    a token this client created reads 404 (``NotFound``): memcached lost
    it, or it was on a node that was ejected or flushed.
``integrity``
    a token read 404 with ``IntegrityError``: what memcached returned for
    the key failed authentication, which only a reply meant for another
    request (a crossed connection) explains here.

Counts are kept per phase: the test names the phase (``baseline``, a
fault, ...) and each request counts in the phase in which it was sent.
Only the standard library is used.
"""

import collections
import contextlib
import http.client
import json
import random
import socket
import threading
import time
import typing as ty
import urllib.parse
import uuid

from oslo_kvs_tests.deployment import model

KINDS = ('ok', 'failed', 'raw', 'wrong', 'missing', 'integrity')

#: Seconds a request may take before it counts as a transport error.
REQUEST_TIMEOUT = 15.0

# A reused keep-alive connection the server closed while it was idle
# fails at once with one of these; the request is sent again on a new
# connection, as HTTP clients do (and counted as a reconnect).
_STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError,
                     ConnectionResetError)


class Reply(ty.NamedTuple):
    """One reply: status (0 for a transport error), JSON body, pid."""

    status: int
    body: dict[str, ty.Any]


class Failure(ty.NamedTuple):
    """A reply other than ``ok``, kept for the test's assertions."""

    kind: str
    method: str
    path: str
    status: int
    error: str
    message: str


class Phase:
    """The counts of the requests sent during one phase."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts = dict.fromkeys(KINDS, 0)
        self.reconnects = 0
        #: Replies per worker pid.
        self.pids: collections.Counter[int] = collections.Counter()
        self.failures: list[Failure] = []
        self._lock = threading.Lock()

    @property
    def requests(self) -> int:
        """Requests sent in this phase."""
        return sum(self.counts.values())

    def add(self, kind: str, method: str, path: str, reply: Reply) -> None:
        with self._lock:
            self.counts[kind] += 1
            pid = reply.body.get('pid')
            if isinstance(pid, int):
                self.pids[pid] += 1
            if kind != 'ok':
                self.failures.append(Failure(
                    kind, method, path, reply.status,
                    str(reply.body.get('error', '')),
                    str(reply.body.get('message', ''))))

    def summary(self) -> dict[str, ty.Any]:
        """The counts, for reports."""
        examples = collections.Counter(
            '%s %s %s: %s' % (f.kind, f.method, f.status, f.message[:160])
            for f in self.failures)
        return dict(self.counts, requests=self.requests,
                    reconnects=self.reconnects,
                    workers=sorted(self.pids.values(), reverse=True),
                    examples=[text for text, _ in examples.most_common(3)])

    def __repr__(self) -> str:
        return '<Phase %s %s>' % (self.name, self.summary())


class Connection:
    """One keep-alive HTTP connection to the service, JSON in and out."""

    def __init__(self, base_url: str) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        self._conn: http.client.HTTPConnection | None = None
        #: Requests sent again after a stale keep-alive connection.
        self.reconnects = 0

    def request(self, method: str, path: str) -> Reply:
        """Send one request; a transport error is a Reply with status 0."""
        for attempt in (1, 2):
            reused = self._conn is not None and self._conn.sock is not None
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    self.host, self.port, timeout=REQUEST_TIMEOUT)
            try:
                self._conn.request(method, path,
                                   headers={'Content-Length': '0'})
                response = self._conn.getresponse()
                data = response.read()
            except _STALE_CONNECTION as exc:
                self.close()
                if reused and attempt == 1:
                    self.reconnects += 1
                    continue
                return Reply(0, {'error': type(exc).__name__,
                                 'message': str(exc)})
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                return Reply(0, {'error': type(exc).__name__,
                                 'message': str(exc)})
            return Reply(response.status, _json_body(data))
        raise AssertionError('unreachable')

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


#: A planned request: method, path, and the check of its reply (which
#: counts it in the phase it is given).
Planned = tuple[str, str, ty.Callable[[Phase, Reply], None]]


def held_requests(base_url: str, requests: ty.Sequence[tuple[str, str]],
                  hold: float = 0.3) -> list[Reply]:
    """Send ``requests`` together, each on a new connection.

    Every request is sent without the blank line that ends its headers,
    which keeps a server thread reading it; after ``hold`` seconds, when
    the server has taken them all up, each is finished, and the replies
    are read in order. A server with fewer free threads than requests
    takes the rest as threads free up.
    """
    parts = urllib.parse.urlsplit(base_url)
    sockets: list[socket.socket | None] = []
    replies: list[Reply | None] = [None] * len(requests)
    try:
        for n, (method, path) in enumerate(requests):
            try:
                sock = socket.create_connection(
                    (parts.hostname, parts.port), timeout=REQUEST_TIMEOUT)
                sock.sendall(('%s %s HTTP/1.1\r\nHost: %s\r\n'
                              'Content-Length: 0\r\nConnection: close\r\n'
                              % (method, path, parts.netloc)).encode())
            except OSError as exc:
                replies[n] = Reply(0, {'error': type(exc).__name__,
                                       'message': str(exc)})
                sock = None
            sockets.append(sock)
        time.sleep(hold)
        for n, sock in enumerate(sockets):
            if sock is None:
                continue
            try:
                sock.sendall(b'\r\n')
            except OSError as exc:
                replies[n] = Reply(0, {'error': type(exc).__name__,
                                       'message': str(exc)})
        for n, sock in enumerate(sockets):
            if sock is None or replies[n] is not None:
                continue
            response = http.client.HTTPResponse(sock,
                                                method=requests[n][0])
            try:
                response.begin()
                replies[n] = Reply(response.status,
                                   _json_body(response.read()))
            except (OSError, http.client.HTTPException) as exc:
                replies[n] = Reply(0, {'error': type(exc).__name__,
                                       'message': str(exc)})
            finally:
                response.close()
                # Closed at once, as a client does after a reply that ends
                # the connection: a server that waits for the client to
                # close first (gunicorn's sync worker, up to 2 s) takes
                # the next held connection only then.
                sock.close()
    finally:
        for sock in sockets:
            if sock is not None:
                sock.close()
    return ty.cast(list[Reply], replies)


def _json_body(data: bytes) -> dict[str, ty.Any]:
    """A reply's JSON object, or an error naming what came instead."""
    try:
        body = json.loads(data)
    except ValueError:
        return {'error': 'not JSON',
                'message': data[:200].decode('utf-8', 'replace')}
    if not isinstance(body, dict):
        return {'error': 'not an object', 'message': repr(body)}
    return body


class LoadClient:
    """Load on one service, checked reply by reply, counted by phase.

    :param base_url: ``http://127.0.0.1:PORT``.
    :param threads: concurrent connections.
    :param users: users the tokens are created for; their names are unique
        to this client, so its index checks see only its own tokens.
    :param regions: regions whose catalog is read.
    """

    def __init__(self, base_url: str, threads: int = 16, users: int = 8,
                 regions: int = 4, seed: int | None = None) -> None:
        self.base_url = base_url
        self.threads = threads
        run = uuid.uuid4().hex[:8]
        self.users = ['user-%s-%d' % (run, n) for n in range(users)]
        self.regions = ['region-%s-%d' % (run, n) for n in range(regions)]
        self.seed = random.randrange(2 ** 32) if seed is None else seed
        self.phases: dict[str, Phase] = {}
        self._phase = self.phase_named('load')
        self._lock = threading.Lock()
        # Acknowledged tokens: every one, and those of each user.
        self._tokens: list[tuple[str, str]] = []
        self._acked: dict[str, set[str]] = collections.defaultdict(set)
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._sent = 0

    # --- phases --------------------------------------------------------

    def phase_named(self, name: str) -> Phase:
        """The phase of that name, made on first use."""
        phase = self.phases.get(name)
        if phase is None:
            phase = self.phases[name] = Phase(name)
        return phase

    def begin(self, name: str) -> Phase:
        """Count the requests sent from now on in phase ``name``."""
        self._phase = self.phase_named(name)
        return self._phase

    def phase(self, name: str, seconds: float) -> Phase:
        """Run phase ``name`` for ``seconds`` (load must be running)."""
        phase = self.begin(name)
        self._stop.wait(seconds)
        return phase

    @property
    def acknowledged(self) -> int:
        """Tokens whose creation was acknowledged."""
        with self._lock:
            return len(self._tokens)

    # --- running ---------------------------------------------------------

    @contextlib.contextmanager
    def running(self, max_seconds: float,
                max_requests: int = 1000000) -> ty.Iterator['LoadClient']:
        """Load in the background while in the block.

        It stops on leaving the block, or by itself after
        ``max_seconds`` or ``max_requests``.
        """
        self._stop.clear()
        deadline = time.monotonic() + max_seconds
        self._workers = [
            threading.Thread(target=self._work, name='load-%d' % n,
                             args=(n, deadline, max_requests), daemon=True)
            for n in range(self.threads)]
        for worker in self._workers:
            worker.start()
        try:
            yield self
        finally:
            self._stop.set()
            for worker in self._workers:
                worker.join(REQUEST_TIMEOUT * 2)

    def run(self, name: str, seconds: float,
            max_requests: int = 1000000) -> Phase:
        """Load for ``seconds`` as phase ``name``, then stop."""
        # The phase begins before the threads do, so that none of its
        # requests counts in the phase before.
        self.begin(name)
        with self.running(seconds + 5, max_requests):
            return self.phase(name, seconds)

    def _take_turn(self, max_requests: int) -> bool:
        with self._lock:
            if self._sent >= max_requests:
                return False
            self._sent += 1
            return True

    def _work(self, number: int, deadline: float, max_requests: int) -> None:
        rng = random.Random(self.seed * 1000 + number)
        connection = Connection(self.base_url)
        try:
            while (not self._stop.is_set() and
                   time.monotonic() < deadline and
                   self._take_turn(max_requests)):
                self.one_request(connection, rng)
        finally:
            connection.close()

    def one_request(self, connection: Connection, rng: random.Random) -> None:
        """Send one request of the mix and count its reply."""
        phase = self._phase
        method, path, check = self._plan(rng)
        before = connection.reconnects
        reply = connection.request(method, path)
        check(phase, reply)
        if connection.reconnects != before:
            with phase._lock:
                phase.reconnects += connection.reconnects - before

    def burst(self, name: str, rounds: int = 3, size: int | None = None,
              plan: ty.Callable[[random.Random], 'Planned'] | None = None
              ) -> Phase:
        """Send ``size`` requests at once, ``rounds`` times.

        They count in phase ``name``. Each request goes on a new
        connection with its headers all but finished, which holds a server
        thread waiting for the rest; once every connection is held, all
        are finished at once. So a burst occupies as many server threads
        as it has requests, across every worker process, however the
        server spreads its accepts, and they all reach the stores
        together.

        :param plan: makes each request (default: the load's mix).
        """
        phase = self.begin(name)
        rng = random.Random(self.seed)
        for _ in range(rounds):
            planned = [(plan or self._plan)(rng)
                       for _ in range(size or self.threads)]
            for (method, path, check), reply in zip(
                    planned, held_requests(
                        self.base_url,
                        [(method, path) for method, path, _ in planned])):
                check(phase, reply)
        return phase

    def _plan(self, rng: random.Random) -> 'Planned':
        """The next request of the mix, and how to check its reply."""
        choice = rng.random()
        with self._lock:
            known = self._tokens[rng.randrange(len(self._tokens))] \
                if self._tokens else None
        if choice < 0.35 or known is None:
            return self._create(rng.choice(self.users))
        if choice < 0.7:
            return self._read_token(*known)
        if choice < 0.85:
            return self._read_index(rng.choice(self.users))
        return self.read_catalog(rng.choice(self.regions))

    @staticmethod
    def _kind(reply: Reply) -> str | None:
        """``failed``/``raw`` for a reply that is not a 200, else None."""
        if reply.status == 503:
            return 'failed'
        if reply.status != 200:
            return 'raw'
        return None

    def _create(self, user: str) -> 'Planned':
        path = '/tokens?user=%s' % urllib.parse.quote(user)

        def check(phase: Phase, reply: Reply) -> None:
            kind = self._kind(reply)
            token = reply.body.get('token')
            if kind is None:
                if not isinstance(token, str) or not token:
                    kind = 'wrong'
                else:
                    kind = 'ok'
                    with self._lock:
                        self._tokens.append((token, user))
                        self._acked[user].add(token)
            phase.add(kind, 'POST', path, reply)
        return 'POST', path, check

    def _read_token(self, token: str, user: str) -> 'Planned':
        path = '/tokens/%s' % token

        def check(phase: Phase, reply: Reply) -> None:
            kind = self._kind(reply)
            if reply.status == 404:
                kind = ('integrity' if str(reply.body.get('message', ''))
                        .startswith('IntegrityError') else 'missing')
            elif kind is None:
                kind = ('ok' if reply.body.get('value') ==
                        model.token_value(user, token) else 'wrong')
            phase.add(kind, 'GET', path, reply)
        return 'GET', path, check

    def _read_index(self, user: str) -> 'Planned':
        # Every token acknowledged before the request is sent must be in
        # the reply: the expectation is taken now, before it is sent.
        with self._lock:
            expected = set(self._acked[user])
        path = '/index/%s' % urllib.parse.quote(user)

        def check(phase: Phase, reply: Reply) -> None:
            kind = self._kind(reply)
            if kind is None:
                tokens = reply.body.get('tokens')
                kind = ('ok' if isinstance(tokens, list) and
                        expected <= set(tokens) else 'wrong')
            phase.add(kind, 'GET', path, reply)
        return 'GET', path, check

    def read_catalog(self, region: str) -> 'Planned':
        """``GET /catalog/<region>``, checked against the model."""
        path = '/catalog/%s' % urllib.parse.quote(region)

        def check(phase: Phase, reply: Reply) -> None:
            kind = self._kind(reply)
            if kind is None:
                kind = ('ok' if reply.body.get('value') ==
                        model.region_catalog(region) else 'wrong')
            phase.add(kind, 'GET', path, reply)
        return 'GET', path, check

    # --- final checks ----------------------------------------------------

    def lost_index_entries(self) -> dict[str, int]:
        """Acknowledged tokens missing from their user's index, by user.

        Read in phase ``final`` (its replies are counted there too); a
        user whose index cannot be read counts all its tokens as lost.
        """
        phase = self.begin('final')
        connection = Connection(self.base_url)
        lost = {}
        try:
            for user in self.users:
                with self._lock:
                    expected = set(self._acked[user])
                path = '/index/%s' % urllib.parse.quote(user)
                reply = connection.request('GET', path)
                tokens = reply.body.get('tokens')
                found = set(tokens) if (reply.status == 200 and
                                        isinstance(tokens, list)) else set()
                lost[user] = len(expected - found)
                kind = self._kind(reply) or (
                    'wrong' if lost[user] else 'ok')
                phase.add(kind, 'GET', path, reply)
        finally:
            connection.close()
        return lost

    def summary(self) -> dict[str, dict[str, ty.Any]]:
        """Counts of every phase, in the order the phases ran."""
        return {name: phase.summary() for name, phase in self.phases.items()
                if phase.requests}


class Warmed(ty.NamedTuple):
    """What became of one ``POST /catalog/<region>/warm``."""

    region: str
    #: The warm request's reply (its pid is the worker that queued it).
    reply: Reply
    #: Seconds until ``/cached`` showed the right value, None if never.
    cached_after: float | None
    #: A cached value that differs from the model, if one was seen.
    wrong_value: ty.Any = None


def warm_and_wait(base_url: str, regions: ty.Sequence[str],
                  within: float = 2.0) -> list[Warmed]:
    """Warm each region's catalog from a worker, then poll ``/cached``.

    The warm requests go together (:func:`held_requests`), so they reach
    several workers; each region is then polled until its memoized result
    is in the store with the right value, for at most ``within`` seconds
    after the warm replies came.
    """
    replies = held_requests(
        base_url, [('POST', '/catalog/%s/warm' % urllib.parse.quote(region))
                   for region in regions])
    queued_at = time.monotonic()
    found: dict[str, float] = {}
    wrong: dict[str, ty.Any] = {}
    pending = [region for region, reply in zip(regions, replies)
               if reply.status == 200 and reply.body.get('queued') is True]
    connection = Connection(base_url)
    try:
        while pending and time.monotonic() - queued_at < within:
            for region in list(pending):
                reply = connection.request(
                    'GET', '/catalog/%s/cached' % urllib.parse.quote(region))
                if reply.status == 200 and reply.body.get('cached'):
                    if reply.body.get('value') != model.region_catalog(
                            region):
                        wrong[region] = reply.body.get('value')
                    found[region] = time.monotonic() - queued_at
                    pending.remove(region)
            time.sleep(0.05)
    finally:
        connection.close()
    return [Warmed(region, reply, found.get(region), wrong.get(region))
            for region, reply in zip(regions, replies)]
