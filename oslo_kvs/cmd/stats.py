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

"""``oslo-kvs stats``: what each server of the store says it is doing.

For every server of the configured store, the statistics the server keeps
itself (memcached ``stats``, Redis ``INFO``, MongoDB's collection
statistics; see :meth:`oslo_kvs.backends.base.Backend.server_stats`), the
hit ratio and memory use worked out from them, a total, and a warning for
a server that evicts or is near its memory limit. The counts are the
server's: every client and every store on it, since it started.

With ``--watch SECONDS`` a sample is taken every SECONDS until Ctrl-C,
each with the reads since the previous one; in JSON, one document per
line.
"""

import contextlib
import json
import math
import time
import typing as ty

from oslo_config import cfg

from oslo_kvs.backends import base
from oslo_kvs.cmd import common
from oslo_kvs import exception

#: Share of its memory limit from which a server gets a warning.
MEMORY_WARNING = 0.9


def hit_ratio(hits: int | None, misses: int | None) -> float | None:
    """``hits / (hits + misses)``; None when unknown or nothing was read."""
    if hits is None or misses is None or hits + misses <= 0:
        return None
    return hits / (hits + misses)


def memory_used(used: int | None, limit: int | None) -> float | None:
    """Share of ``limit`` that ``used`` takes; None without a limit."""
    return used / limit if used is not None and limit else None


def warnings_of(row: dict[str, ty.Any]) -> list[str]:
    """One line per reason to look at a server (or the total) closer."""
    name, found = row['server'], []
    if row['error'] is not None:
        found.append('%s did not answer: %s' % (name, row['error']))
    if row['evictions']:
        found.append('%s evicted %d item(s) to make room: its memory '
                     'limit is too small for what is stored'
                     % (name, row['evictions']))
    if (row['memory_used'] or 0) >= MEMORY_WARNING:
        found.append('%s uses %.0f%% of its memory limit'
                     % (name, row['memory_used'] * 100))
    if row['extra'].get('ttl_index') is False:
        found.append('%s has no TTL index on expires_at: expired documents '
                     'stay on disk until it is made' % name)
    return found


def _derive(row: dict[str, ty.Any],
            previous: dict[str, ty.Any] | None) -> dict[str, ty.Any]:
    """Add hit ratio, memory use and the reads since ``previous``."""
    row['hit_ratio'] = hit_ratio(row['hits'], row['misses'])
    row['memory_used'] = memory_used(row['bytes_used'], row['bytes_limit'])
    row['delta'] = None
    if previous is not None:
        moved = {name: _minus(row[name], previous[name])
                 for name in ('hits', 'misses')}
        # A counter that went back: the server restarted in between.
        if None not in moved.values():
            row['delta'] = dict(moved, hit_ratio=hit_ratio(**moved))
    return row


def _minus(now: int | None, before: int | None) -> int | None:
    if now is None or before is None or now < before:
        return None
    return now - before


def server_row(label: str, stats: dict[str, ty.Any],
               previous: dict[str, ty.Any] | None = None
               ) -> dict[str, ty.Any]:
    """One server's line of the result, from what the backend gave."""
    row: dict[str, ty.Any] = {'server': label, 'error': stats.get('error')}
    row.update((name, stats.get(name)) for name in base.STAT_KEYS)
    row['extra'] = {name: value for name, value in stats.items()
                    if name not in row}
    return _derive(row, previous)


def total_row(rows: list[dict[str, ty.Any]],
              previous: dict[str, ty.Any] | None = None
              ) -> dict[str, ty.Any]:
    """The sums over the servers that answered.

    A count that one of them does not keep has no total (None), and
    neither has the memory limit when one of them has none.
    """
    answered = [row for row in rows if row['error'] is None]
    total: dict[str, ty.Any] = {'server': 'total', 'error': None,
                                'extra': {}}
    for name in base.STAT_KEYS:
        values = [row[name] for row in answered]
        total[name] = (sum(values) if answered and None not in values
                       else None)
    return _derive(total, previous)


def sample(backend: base.Backend,
           previous: dict[str, ty.Any] | None = None) -> dict[str, ty.Any]:
    """One reading of every server, as ``--format json`` prints it."""
    before = {row['server']: row for row in
              (previous or {}).get('servers', ())}
    now = time.time()
    try:
        found = backend.server_stats()
    except NotImplementedError as exc:
        raise common.CommandError(str(exc)) from None
    rows = [server_row(label, stats, before.get(label))
            for label, stats in found.items()]
    total = total_row(rows, previous and previous['total'])
    return {'command': 'stats', 'backend': backend.name,
            'interrupted': False, 'time': now,
            'interval': previous and now - previous['time'],
            'servers': rows, 'total': total,
            'warnings': [line for row in rows for line in warnings_of(row)]}


def _count(value: ty.Any) -> str:
    return '-' if value is None else str(value)


def _share(value: float | None) -> str:
    return '-' if value is None else '%.1f%%' % (value * 100)


def _size(count: int | None) -> str:
    if count is None:
        return '-'
    if count < 1024:
        return '%d B' % count
    value = count / 1024
    for unit in ('KiB', 'MiB'):
        if value < 1024:
            return '%.1f %s' % (value, unit)
        value /= 1024
    return '%.1f GiB' % value


_COLUMNS = '%-22s %9s %9s %6s %7s %8s %9s %9s %6s %5s\n'


def write_table(result: dict[str, ty.Any], out: ty.TextIO) -> None:
    """The human-readable report of one sample."""
    out.write('%s: %d server(s), %s\n' % (
        result['backend'], len(result['servers']),
        time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(result['time']))))
    out.write(_COLUMNS % ('server', 'hits', 'misses', 'hit%', 'evicted',
                          'items', 'memory', 'limit', 'used%', 'conns'))
    for row in result['servers'] + [result['total']]:
        if row['error'] is not None:
            out.write('%-22s FAILED\n' % row['server'])
            continue
        out.write(_COLUMNS % (
            row['server'], _count(row['hits']), _count(row['misses']),
            _share(row['hit_ratio']), _count(row['evictions']),
            _count(row['items']), _size(row['bytes_used']),
            _size(row['bytes_limit']) if row['bytes_limit'] else 'none',
            _share(row['memory_used']), _count(row['connections'])))
    delta = result['total']['delta']
    if delta is not None:
        out.write('last %.0fs: %d hits, %d misses, hit ratio %s\n' % (
            result['interval'], delta['hits'], delta['misses'],
            _share(delta['hit_ratio'])))
    for line in result['warnings']:
        out.write('warning: %s\n' % line)


def _status(result: dict[str, ty.Any]) -> int:
    failed = any(row['error'] is not None for row in result['servers'])
    return common.EXIT_SYMPTOM if failed else common.EXIT_OK


def run(conf: cfg.ConfigOpts, out: ty.TextIO, watch: float | None = None,
        output_format: str = 'table') -> int:
    """Print what each server of the configured store reports.

    :returns: 0 when every server answered, 1 when one did not; with
        ``watch``, 130 at Ctrl-C, which is how a watch ends.
    """
    common.require(watch is None or 0 < watch < math.inf,
                   '--watch must be a positive number of seconds')
    name = common.backing_store(conf)
    result: dict[str, ty.Any] = {'command': 'stats', 'backend': name}
    try:
        store = common.open_store(conf, **common.UNPROTECTED)
    except exception.BackendError as exc:
        # Backends that connect while configuring (Redis Cluster).
        result['error'] = str(exc)

        def unreachable(table: ty.TextIO) -> int:
            table.write('%s: UNREACHABLE while configuring: %s\n'
                        % (name, result['error']))
            return common.EXIT_SYMPTOM
        return common.report(out, output_format, result, unreachable)
    with contextlib.closing(store):
        # The backend is the store's own; the command only reads it.
        backend = store._configured().backend
        if watch is not None:
            return _watch(backend, watch, out, output_format)

        def body(table: ty.TextIO) -> int:
            result.update(sample(backend))
            write_table(result, table)
            return _status(result)
        return common.report(out, output_format, result, body)


def _watch(backend: base.Backend, seconds: float, out: ty.TextIO,
           output_format: str) -> int:
    """Sample every ``seconds`` until Ctrl-C."""
    result = None
    try:
        while True:
            result = sample(backend, result)
            if output_format == 'json':
                out.write(json.dumps(result) + '\n')
            else:
                write_table(result, out)
                out.write('\n')
            out.flush()
            time.sleep(seconds)
    except KeyboardInterrupt:
        return common.EXIT_INTERRUPTED
