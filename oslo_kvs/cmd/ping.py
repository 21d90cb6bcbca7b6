"""``oslo-kvs ping``: can each server be reached, and how fast.

For every server the configured backend names, the time to open a TCP (or
Unix socket) connection, which is one network round trip; then one request
through the store itself (a ``get`` of a missing key), which also proves
that authentication and TLS work.
"""

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
        with socket.create_connection((endpoint.host, endpoint.port),
                                      timeout=timeout):
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
        timeout: float = 2.0) -> int:
    """Ping every server of the configured store; 1 if any fails."""
    backing_store = common.backing_store(conf)
    try:
        # Protection plays no part in reaching a server; its mistakes are
        # for doctor to report.
        store = common.open_store(conf, value_protection='none',
                                  protection_keys=[], serializer='msgpack')
    except exception.BackendError as exc:
        # Backends that connect while configuring (Redis Cluster).
        out.write('%s: UNREACHABLE while configuring: %s\n'
                  % (backing_store, exc))
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
                out.write('  %s  not probed: no host and port to connect '
                          'to\n' % label)
                continue
            try:
                times = probe(endpoint, timeout, count)
            except OSError as exc:
                failures += 1
                out.write('  %s  UNREACHABLE  %s: %s\n'
                          % (label, type(exc).__name__, exc))
                continue
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
            out.write('store round trip FAILED: %s\n' % exc)
        else:
            out.write('store round trip (get of a missing key): median %s, '
                      'best %s (%d tries)\n'
                      % (_ms(statistics.median(times)), _ms(min(times)),
                         count))
    finally:
        store.close()
    return 1 if failures else 0
