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

"""``oslo-kvs ping``: can each server be reached, and how fast.

For every server the configured backend names, the time to open a TCP (or
Unix socket) connection, which is one network round trip; then one request
through the store itself (a ``get`` of a missing key), which also proves
that authentication and TLS work.
"""

import contextlib
import math
import socket
import statistics
import typing as ty
import uuid

from oslo_config import cfg

from oslo_kvs.cmd import common
from oslo_kvs import core
from oslo_kvs import exception


def connect_times(label: str, default_port: int | None, count: int,
                  timeout: float) -> list[float] | None:
    """Seconds of ``count`` connections to the server labelled ``label``.

    Each connection is opened, then closed at once.

    :returns: ``None`` when there is no address to connect to
        (:func:`common.server_address`).
    :raises OSError: when the server cannot be reached within ``timeout``.
    """
    server = common.server_address(label, default_port)
    if server is None:
        return None

    def connect() -> None:
        if server.path is None:
            socket.create_connection(server.tcp, timeout=timeout).close()
            return
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(server.path)
    return common.timed(connect, count)


def store_round_trips(store: core.KeyValueStore, count: int) -> list[float]:
    """Seconds of ``count`` requests (``get`` of a missing key).

    :raises exception.BackendError: when a request fails.
    """
    missing = 'oslo-kvs-ping-%s' % uuid.uuid4()

    def get() -> None:
        with contextlib.suppress(exception.NotFound):
            store.get(missing)
    return common.timed(get, count)


def _times(times: list[float]) -> tuple[float, float, str]:
    """Median and best (ms) of ``times``, and them as text."""
    median, best = statistics.median(times) * 1e3, min(times) * 1e3
    return median, best, ('median %.2f ms, best %.2f ms (%d tries)'
                          % (median, best, len(times)))


def run(conf: cfg.ConfigOpts, out: ty.TextIO, count: int = 3,
        timeout: float = 2.0, output_format: str = 'table') -> int:
    """Ping every server of the configured store.

    :returns: 0 when every server answers, 1 when one does not, 130 when
        interrupted (the servers probed so far are reported).
    """
    common.require(count >= 1, '--count must be at least 1')
    common.require(0 < timeout < math.inf,
                   '--timeout must be a positive number of seconds')
    result: dict[str, ty.Any] = {
        'command': 'ping', 'backend': common.backing_store(conf),
        'count': count, 'timeout': timeout, 'servers': [],
        'round_trip': None}
    return common.report(out, output_format, result,
                         lambda out: _ping(conf, out, count, timeout, result))


def _ping(conf: cfg.ConfigOpts, out: ty.TextIO, count: int, timeout: float,
          result: dict[str, ty.Any]) -> int:
    name = result['backend']
    try:
        store = common.open_store(conf, **common.UNPROTECTED)
    except exception.BackendError as exc:
        # Backends that connect while configuring (Redis Cluster).
        out.write('%s: UNREACHABLE while configuring: %s\n' % (name, exc))
        result['error'] = str(exc)
        return common.EXIT_SYMPTOM
    with contextlib.closing(store):
        backend_cls = common.backend_class(conf)
        labels = store.servers()
        if getattr(backend_cls, 'local', False):
            out.write('%s keeps values in this process: there is no server '
                      'to reach.\n' % name)
        elif not labels:
            out.write('%s does not name its servers; only the store round '
                      'trip is measured.\n' % name)
        else:
            out.write('%s: %d server(s)\n' % (name, len(labels)))
        port = getattr(backend_cls, 'default_port', None)
        failures = sum(not _probe(label, port, count, timeout, out,
                                  result['servers']) for label in labels)
        if labels and failures == len(labels):
            # Nothing answers; a request would only wait for its timeout
            # (30 s on MongoDB) to say so again.
            out.write('store round trip skipped: no server is reachable\n')
            return common.EXIT_SYMPTOM
        try:
            median, best, text = _times(store_round_trips(store, count))
        except exception.BackendError as exc:
            result['round_trip'] = {'ok': False, 'error': str(exc)}
            out.write('store round trip FAILED: %s\n' % exc)
            return common.EXIT_SYMPTOM
        result['round_trip'] = {'median_ms': median, 'best_ms': best,
                                'ok': True}
        out.write('store round trip (get of a missing key): %s\n' % text)
    return common.EXIT_SYMPTOM if failures else common.EXIT_OK


def _probe(label: str, default_port: int | None, count: int, timeout: float,
           out: ty.TextIO, servers: list[dict[str, ty.Any]]) -> bool:
    """Connect ``count`` times to one server, and report how it went.

    :returns: False when it could not be reached.
    """
    entry: dict[str, ty.Any] = {'server': label, 'probed': True}
    servers.append(entry)
    try:
        times = connect_times(label, default_port, count, timeout)
    except OSError as exc:
        entry.update(reachable=False,
                     error='%s: %s' % (type(exc).__name__, exc))
        out.write('  %s  UNREACHABLE  %s\n' % (label, entry['error']))
        return False
    if times is None:
        entry['probed'] = False
        out.write('  %s  not probed: no host and port to connect to\n'
                  % label)
        return True
    median, best, text = _times(times)
    entry.update(reachable=True, connect_median_ms=median,
                 connect_best_ms=best)
    out.write('  %s  reachable  connect %s\n' % (label, text))
    return True
