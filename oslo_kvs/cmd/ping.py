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

import math
import socket
import statistics
import time
import typing as ty
import uuid

from oslo_config import cfg

from oslo_kvs.cmd import common
from oslo_kvs import core
from oslo_kvs import exception


def connect_time(endpoint: common.Endpoint, timeout: float) -> float:
    """Seconds to open (and then close) a connection to ``endpoint``.

    :raises OSError: when it cannot be reached within ``timeout``.
    """
    started = time.perf_counter()
    if endpoint.path is not None:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(endpoint.path)
    else:
        # parse_endpoint gives a host and a port whenever there is no path.
        address = (endpoint.host, ty.cast(int, endpoint.port))
        with socket.create_connection(address, timeout=timeout):
            pass
    return time.perf_counter() - started


def probe(endpoint: common.Endpoint, timeout: float,
          count: int) -> list[float]:
    """``count`` connection times; the first failure raises ``OSError``."""
    return [connect_time(endpoint, timeout) for _ in range(count)]


def endpoints(conf: cfg.ConfigOpts,
              store: core.KeyValueStore) -> tuple[list[str],
                                                  list[common.Endpoint]]:
    """The backend's servers: all labels, and those that can be probed."""
    labels = store.servers() if store.is_configured else []
    port = common.DEFAULT_PORTS.get(common.backing_store(conf))
    parsed = [common.parse_endpoint(label, port) for label in labels]
    return labels, [e for e in parsed if e is not None]


def store_round_trips(store: core.KeyValueStore, count: int) -> list[float]:
    """Seconds of ``count`` requests (``get`` of a missing key).

    :raises exception.BackendError: when a request fails.
    """
    missing = 'oslo-kvs-ping-%s' % uuid.uuid4()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        try:
            store.get(missing)
        except exception.NotFound:
            pass
        times.append(time.perf_counter() - started)
    return times


def _ms(seconds: float) -> str:
    return '%.2f ms' % (seconds * 1e3)


def run(conf: cfg.ConfigOpts, out: ty.TextIO, count: int = 3,
        timeout: float = 2.0, output_format: str = 'table') -> int:
    """Ping every server of the configured store.

    :returns: 0 when every server answers, 1 when one does not, 130 when
        interrupted (the servers probed so far are reported).
    """
    common.require(count >= 1, '--count must be at least 1')
    common.require(timeout > 0 and math.isfinite(timeout),
                   '--timeout must be a positive number of seconds')
    backing_store = common.backing_store(conf)
    result: dict[str, ty.Any] = {
        'command': 'ping', 'backend': backing_store, 'count': count,
        'timeout': timeout, 'servers': [], 'round_trip': None,
        'interrupted': False}
    result_out, out = out, common.text_stream(out, output_format)
    try:
        status = _ping(conf, out, count, timeout, result)
    except KeyboardInterrupt:
        result['interrupted'] = True
        status = common.EXIT_INTERRUPTED
    common.write_result(result, result_out, output_format)
    return status


def _ping(conf: cfg.ConfigOpts, out: ty.TextIO, count: int, timeout: float,
          result: dict[str, ty.Any]) -> int:
    backing_store = common.backing_store(conf)
    servers = result['servers']
    try:
        # Protection plays no part in reaching a server; its mistakes are
        # for doctor to report.
        store = common.open_store(conf, value_protection='none',
                                  protection_keys=[], serializer='msgpack')
    except exception.BackendError as exc:
        # Backends that connect while configuring (Redis Cluster).
        out.write('%s: UNREACHABLE while configuring: %s\n'
                  % (backing_store, exc))
        result['error'] = str(exc)
        return 1
    failures = 0
    try:
        labels, reachable = endpoints(conf, store)
        if getattr(common.load_backend_class(conf), 'local', False):
            out.write('%s keeps values in this process: there is no server '
                      'to reach.\n' % backing_store)
        elif not labels:
            out.write('%s does not name its servers; only the store round '
                      'trip is measured.\n' % backing_store)
        else:
            out.write('%s: %d server(s)\n' % (backing_store, len(labels)))
        probed = {e.label: e for e in reachable}
        for label in labels:
            endpoint = probed.get(label)
            if endpoint is None:
                servers.append({'server': label, 'probed': False})
                out.write('  %s  not probed: no host and port to connect '
                          'to\n' % label)
                continue
            try:
                times = probe(endpoint, timeout, count)
            except OSError as exc:
                failures += 1
                servers.append({'server': label, 'probed': True,
                                'reachable': False,
                                'error': '%s: %s' % (type(exc).__name__,
                                                     exc)})
                out.write('  %s  UNREACHABLE  %s: %s\n'
                          % (label, type(exc).__name__, exc))
                continue
            servers.append({'server': label, 'probed': True,
                            'reachable': True,
                            'connect_median_ms':
                                statistics.median(times) * 1e3,
                            'connect_best_ms': min(times) * 1e3})
            out.write('  %s  reachable  connect median %s, best %s '
                      '(%d tries)\n' % (label, _ms(statistics.median(times)),
                                        _ms(min(times)), count))
        if labels and failures == len(labels):
            # Nothing answers; a request would only wait for its timeout
            # (30 s on MongoDB) to say so again.
            out.write('store round trip skipped: no server is reachable\n')
            return 1
        try:
            times = store_round_trips(store, count)
        except exception.BackendError as exc:
            failures += 1
            result['round_trip'] = {'ok': False, 'error': str(exc)}
            out.write('store round trip FAILED: %s\n' % exc)
        else:
            result['round_trip'] = {
                'ok': True, 'median_ms': statistics.median(times) * 1e3,
                'best_ms': min(times) * 1e3}
            out.write('store round trip (get of a missing key): median %s, '
                      'best %s (%d tries)\n'
                      % (_ms(statistics.median(times)), _ms(min(times)),
                         count))
    finally:
        store.close()
    return 1 if failures else 0
