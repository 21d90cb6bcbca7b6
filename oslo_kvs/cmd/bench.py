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

"""``oslo-kvs bench``: a mixed workload against the configured store.

One client runs ``set``, ``get``, ``get_multi``, ``add`` and a lock cycle
(acquire then release) in a fixed random mix, until ``--operations`` are
done or ``--duration`` has passed, whichever comes first. For each
operation it reports the count, the rate one client achieves (operations
per second of time spent in it) and latency percentiles; with a near
cache (``near_cache_ttl``), its hits and misses. The keys live in a
store of their own and are deleted afterwards.
"""

import contextlib
import math
import os
import random
import string
import sys
import time
import typing as ty

from oslo_config import cfg

from oslo_kvs.cmd import common
from oslo_kvs import core

#: Relative frequency of each operation: mostly reads, as token caches see.
MIX = {'set': 2, 'get': 5, 'get_multi': 1, 'add': 1, 'lock': 1}
#: Latency percentiles reported in JSON and drawn by ``--plot``.
PERCENTILES = (50, 75, 90, 95, 99, 99.9)
# Keys written or deleted per request while preparing and cleaning up.
_BATCH = 500


def percentile(ordered: ty.Sequence[float], pct: float) -> float:
    """The nearest-rank percentile of an already sorted, non-empty list."""
    rank = max(math.ceil(pct / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def summary(latencies: list[float]) -> dict[str, ty.Any]:
    """Count, single-client rate and percentiles (ms) of one operation."""
    ordered = sorted(latencies)
    total = sum(ordered)
    row: dict[str, ty.Any] = {
        'count': len(ordered),
        'ops_per_second': len(ordered) / total if total else 0.0}
    for pct in PERCENTILES + (100,):
        row['max_ms' if pct == 100 else 'p%g_ms' % pct] = (
            percentile(ordered, pct) * 1e3 if ordered else None)
    return row


class Progress:
    """A one-line progress bar on a terminal; silent anywhere else."""

    width = 30
    #: Short runs finish before this many seconds and show nothing.
    delay = 0.5

    def __init__(self, stream: ty.TextIO, operations: int,
                 duration: float) -> None:
        self._stream = stream
        self._bounds = operations, duration
        # Off a terminal, the time of the first redraw never comes.
        self._next = self.delay if stream.isatty() else math.inf
        self._shown = False

    def update(self, done: int, elapsed: float) -> None:
        """Redraw, at most ten times a second."""
        if elapsed < self._next:
            return
        self._next = elapsed + 0.1
        operations, duration = self._bounds
        fraction = min(max(done / operations, elapsed / duration), 1.0)
        filled = int(fraction * self.width)
        self._write('\r[%s%s] %3d%%  %d ops  %.1fs' % (
            '#' * filled, '.' * (self.width - filled), fraction * 100,
            done, elapsed))
        self._shown = True

    def finish(self) -> None:
        """Erase the bar."""
        if self._shown:
            self._write('\r%s\r' % (' ' * (self.width + 40)))

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()


class Workload:
    """The keys, values and operations of one run.

    Each operation of :data:`MIX` is the method of that name.
    """

    def __init__(self, store: core.KeyValueStore, keys: int,
                 value_size: int, batch: int, seed: int) -> None:
        self.store = store
        self.random = random.Random(seed)
        self.keys = ['bench-%d' % i for i in range(keys)]
        self.batch = min(batch, keys)
        self.added: list[str] = []
        self.value = {'id': self._text(32), 'roles': ['member', 'reader'],
                      'data': self._text(value_size)}

    def _text(self, size: int) -> str:
        return ''.join(self.random.choices(string.ascii_letters, k=size))

    def _key(self) -> str:
        return self.random.choice(self.keys)

    def prepare(self) -> None:
        """Write every key once, so reads find values."""
        for start in range(0, len(self.keys), _BATCH):
            self.store.set_multi(dict.fromkeys(
                self.keys[start:start + _BATCH], self.value))

    def set(self) -> None:
        self.store.set(self._key(), self.value)

    def get(self) -> None:
        self.store.get(self._key())

    def get_multi(self) -> None:
        self.store.get_multi(self.random.sample(self.keys, self.batch))

    def add(self) -> None:
        key = 'added-%d' % len(self.added)
        self.added.append(key)
        if not self.store.add(key, self.value):
            raise RuntimeError('add refused a key that was absent')

    def lock(self) -> None:
        lock = self.store.get_lock(self._key())
        lock.acquire()
        lock.release()

    def cleanup(self) -> None:
        """Delete every key the run wrote."""
        written = self.keys + self.added
        for start in range(0, len(written), _BATCH):
            self.store.delete_multi(written[start:start + _BATCH])

    def run(self, operations: int, duration: float, progress: Progress
            ) -> tuple[dict[str, list[float]], float, bool]:
        """Run the mix.

        :returns: each operation's latencies (seconds), the wall time, and
            whether Ctrl-C ended the run early.
        """
        names, weights = list(MIX), list(MIX.values())
        calls = {name: getattr(self, name) for name in names}
        latencies: dict[str, list[float]] = {name: [] for name in names}
        clock = time.perf_counter
        started = after = clock()
        done = 0
        try:
            while done < operations and after - started < duration:
                name = self.random.choices(names, weights)[0]
                before = clock()
                calls[name]()
                after = clock()
                latencies[name].append(after - before)
                done += 1
                progress.update(done, after - started)
        except KeyboardInterrupt:
            # Ctrl-C ends a long run early; what was measured is reported.
            return latencies, clock() - started, True
        finally:
            progress.finish()
        return latencies, after - started, False


def _ms(value: float | None) -> str:
    return '%10.3f' % value if value is not None else '%10s' % '-'


def write_table(result: dict[str, ty.Any], out: ty.TextIO) -> None:
    """The human-readable report."""
    out.write('%s: %d operations in %.2fs, %.0f ops/s overall\n'
              % (result['backend'], result['operations'], result['seconds'],
                 result['ops_per_second']))
    out.write('%-10s %8s %10s %10s %10s\n'
              % ('operation', 'count', 'ops/s', 'p50 ms', 'p99 ms'))
    for name, row in result['results'].items():
        out.write('%-10s %8d %10.0f %s %s\n' % (
            name, row['count'], row['ops_per_second'], _ms(row['p50_ms']),
            _ms(row['p99_ms'])))
    near = result.get('near_cache')
    if near is not None:
        out.write('near cache: %d keys read from it, %d from the server '
                  'through it\n' % (near['hits'], near['misses']))


def check_plot(path: str) -> None:
    """Make sure matplotlib can write the ``--plot`` to ``path``.

    Checked before the run, not after minutes of it.

    :raises common.CommandError: when matplotlib is not installed, for a
        format it does not know (it picks the format from the file name's
        extension), or a missing directory.
    """
    try:
        from matplotlib import figure
    except ImportError:
        raise common.CommandError(
            '--plot needs matplotlib, which is not installed; install it '
            'with: python3 -m pip install "oslo.kvs[plot]"') from None
    formats = figure.Figure().canvas.get_supported_filetypes()
    extension = os.path.splitext(path)[1].lstrip('.').lower()
    common.require(extension in formats,
                   '--plot %s: the file name must end with one of %s'
                   % (path, ', '.join('.' + name for name in
                                      sorted(formats))))
    directory = os.path.dirname(os.path.abspath(path))
    common.require(os.path.isdir(directory),
                   '--plot %s: directory %s does not exist'
                   % (path, directory))


def plot(result: dict[str, ty.Any], path: str) -> None:
    """Draw latency against percentile, one line per operation."""
    from matplotlib import figure

    drawing = figure.Figure(figsize=(8, 5))
    axes = drawing.subplots()
    positions = range(len(PERCENTILES))
    for name, row in result['results'].items():
        values = [row['p%g_ms' % pct] for pct in PERCENTILES]
        if None not in values:
            axes.plot(positions, values, marker='o', label=name)
    axes.set_xticks(list(positions), ['p%g' % pct for pct in PERCENTILES])
    axes.set(yscale='log', xlabel='percentile', ylabel='latency (ms)',
             title='oslo-kvs bench: %s, %d operations'
                   % (result['backend'], result['operations']))
    axes.grid(True, which='both', alpha=0.3)
    axes.legend()
    try:
        drawing.savefig(path, dpi=100)
    except OSError as exc:
        raise common.CommandError('cannot write the plot to %s: %s'
                                  % (path, exc.strerror)) from None


def run(conf: cfg.ConfigOpts, out: ty.TextIO, operations: int = 10000,
        duration: float = 60.0, keys: int = 1000, value_size: int = 256,
        batch: int = 10, output_format: str = 'table',
        plot_path: str | None = None, seed: int = 0,
        progress_stream: ty.TextIO | None = None) -> int:
    """Benchmark the configured store and print the report.

    :returns: 0, or 130 when Ctrl-C ended the run (the operations measured
        until then are reported, marked interrupted).
    """
    for name, value in (('--operations', operations), ('--keys', keys),
                        ('--batch', batch)):
        common.require(value >= 1, '%s must be at least 1' % name)
    common.require(0 < duration < math.inf and value_size >= 0,
                   '--duration must be positive and --value-size not '
                   'negative')
    if plot_path:
        check_plot(plot_path)
    result: dict[str, ty.Any] = {'command': 'bench', 'parameters': {
        'operations': operations, 'duration': duration, 'keys': keys,
        'value_size': value_size, 'batch': batch, 'seed': seed,
        'mix': MIX}}
    with contextlib.closing(common.open_store(conf)) as store:

        def body(table: ty.TextIO) -> int:
            workload = Workload(store, keys, value_size, batch, seed)
            workload.prepare()
            latencies, wall, result['interrupted'] = workload.run(
                operations, duration,
                Progress(progress_stream or sys.stderr, operations,
                         duration))
            # After a failure the keys are left to expire: the server is
            # failing, and the store's random name keeps them apart anyway.
            near_cache = store.stats()['near_cache']
            workload.cleanup()
            total = sum(len(times) for times in latencies.values())
            result.update(
                near_cache=near_cache,
                backend=common.backing_store(conf), operations=total,
                seconds=wall, ops_per_second=total / wall if wall else 0.0,
                results={name: summary(times)
                         for name, times in latencies.items()})
            write_table(result, table)
            return common.EXIT_OK
        status = common.report(out, output_format, result, body)
    if plot_path:
        plot(result, plot_path)
        if output_format != 'json':
            out.write('latency plot written to %s\n' % plot_path)
    return status
