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

"""The harness shared by the benchmark suites.

- :func:`pin` confines the benchmark to one CPU, and :func:`cpu` tells the
  suites which CPU to start their servers on (``servers.*(cpu=...)``).
- :func:`compare` times contenders interleaved: round after round, each
  contender runs one batch, so a burst of noise from the shared machine
  hits all of them alike.
- :func:`report` prints each contender's median time per call and its
  ratio to the baseline, with the spread of that ratio over the rounds.
- :class:`Remote` is a contender timed in a child process, for what one
  interpreter cannot hold twice (redis-py with and without hiredis).
"""

import dataclasses
import gc
import hashlib
import importlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
import typing as ty

_cpu: int | None = None

#: Calls per contender in one round of :func:`compare`, by default.
BATCH_CALLS = 20


def raw_key(key: str) -> str:
    """The key a raw-client contender uses for ``key``.

    Same length and shape as a store's mangled keys, so both send and
    parse the same bytes; only the mangling is left to compare.
    """
    return hashlib.sha256(b'raw-' + key.encode()).hexdigest()


def pin(cpu: int | None) -> None:
    """Run this process, and the servers the suites start, on ``cpu`` only.

    On a VM, a server thread woken on another vCPU answers a random tens of
    microseconds late, which swamps what a client library costs; on one
    CPU the client and the server hand over without that wake-up. None
    leaves scheduling to the kernel.
    """
    global _cpu
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    _cpu = cpu


def cpu() -> int | None:
    """The CPU given to :func:`pin`, for the servers a suite starts."""
    return _cpu


class Timings(dict):
    """Median seconds per call by contender, from :func:`compare`.

    ``samples`` keeps every round's time per call, in round order, so that
    :func:`report` can compare contenders round by round.
    """

    def __init__(self, samples: dict[str, list[float]]) -> None:
        super().__init__((name, statistics.median(times))
                         for name, times in samples.items())
        self.samples = samples


@dataclasses.dataclass
class Result:
    """The median time of one operation for each contender."""

    suite: str
    operation: str
    medians: dict[str, float]
    baseline: str
    #: (faster, slower) pairs to report as "N x faster", round by round,
    #: for targets set against a contender other than the baseline.
    speedups: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def ratio(self, contender: str, against: str | None = None) -> float:
        """Ratio of the medians of ``contender`` and the baseline."""
        return self.medians[contender] / self.medians[against or
                                                      self.baseline]

    def round_ratios(self, contender: str,
                     against: str | None = None) -> list[float]:
        """Per-round ratios to the baseline (empty without samples).

        The two ran back to back in each round, under the same noise, so
        these ratios vary much less than the times themselves.
        """
        samples = getattr(self.medians, 'samples', None)
        if not samples:
            return []
        return [mine / base for mine, base in zip(
            samples[contender], samples[against or self.baseline])]


class Remote:
    """A contender timed in a child process.

    The child hides the modules named in ``hide`` (importing them fails, as
    on a platform without them), imports ``factory`` ("module:function"),
    calls it with ``args`` (JSON values) to get the operation, then times
    batches on request. It inherits this process's CPU pinning.
    """

    def __init__(self, factory: str, *args: ty.Any,
                 hide: ty.Sequence[str] = ()) -> None:
        self._child = subprocess.Popen(
            [sys.executable, '-c',
             'from oslo_kvs_tests.bench import common; common.serve()'],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._ask(json.dumps({'factory': factory, 'args': args,
                              'hide': list(hide)}))

    def _ask(self, line: str) -> str:
        self._child.stdin.write(line + '\n')
        self._child.stdin.flush()
        answer = self._child.stdout.readline()
        if not answer:
            raise RuntimeError('benchmark child exited with %s'
                               % self._child.wait())
        return answer.strip()

    def __call__(self) -> None:
        self.time(1)

    def time(self, calls: int) -> float:
        """Seconds the child took for ``calls`` calls."""
        return float(self._ask(str(calls)))

    def close(self) -> None:
        self._child.stdin.close()
        self._child.wait()


def serve() -> None:
    """The child side of :class:`Remote` (reads stdin, answers on stdout)."""
    config = json.loads(sys.stdin.readline())
    for name in config['hide']:
        sys.modules[name] = None  # type: ignore[assignment]
    module, _, function = config['factory'].partition(':')
    call = getattr(importlib.import_module(module), function)(
        *config['args'])
    print('ready', flush=True)
    gc.disable()
    for line in sys.stdin:
        print(repr(_timed(call, int(line))), flush=True)


def _timed(call: ty.Callable[[], ty.Any], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return time.perf_counter() - started


def compare(contenders: ty.Mapping[str, ty.Callable[[], ty.Any]],
            rounds: int = 2000, batches: int | None = None) -> Timings:
    """Median seconds per call of each contender, measured interleaved.

    ``batches`` rounds each run every contender ``rounds // batches``
    times, one after the other, in a new random order each round (seeded,
    so a run repeats). A fixed or rotating order would let one contender
    always follow the same other one: after a contender that runs in a
    child process, say, whose switch leaves cold caches behind, and that
    one contender would be measured slower than it is. The result is the
    median over rounds of the mean time per call; it keeps every round's
    sample.

    By default a batch is :data:`BATCH_CALLS` calls: a burst of noise from
    the shared machine then spoils one short batch, not a long one, and
    the median over many rounds leaves it out.
    """
    if batches is None:
        batches = max(rounds // BATCH_CALLS, 30)
    per_batch = max(rounds // batches, 1)
    names = list(contenders)
    timers = {name: (call.time if isinstance(call, Remote) else
                     lambda n, call=call: _timed(call, n))
              for name, call in contenders.items()}
    samples: dict[str, list[float]] = {name: [] for name in names}
    order = random.Random(0).sample
    for call in contenders.values():
        call()  # warm connections and caches
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(batches):
            for name in order(names, len(names)):
                samples[name].append(timers[name](per_batch) / per_batch)
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timings(samples)


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    low, _, high = statistics.quantiles(values, n=4)
    return low, high


def report(results: ty.Iterable[Result], out: ty.TextIO) -> None:
    """Print each operation's medians and ratios against its baseline.

    With per-round samples the ratio is the median of the per-round ratios
    and ``[p25-p75]`` their interquartile range: how far the contenders'
    comparison moved from round to round.
    """
    for result in results:
        out.write('%s / %s\n' % (result.suite, result.operation))
        for name, median in result.medians.items():
            ratios = result.round_ratios(name)
            if ratios and name != result.baseline:
                low, high = _quartiles(ratios)
                ratio = '%6.2fx  [%.2f-%.2f]' % (
                    statistics.median(ratios), low, high)
            else:
                ratio = '%6.2fx' % result.ratio(name)
            out.write('  %-38s %10.1f us  %s\n' % (name, median * 1e6, ratio))
        for faster, slower in result.speedups:
            ratios = result.round_ratios(slower, against=faster)
            if ratios:
                low, high = _quartiles(ratios)
                out.write('  %s: %.2fx faster than %s  [%.2f-%.2f]\n' % (
                    faster, statistics.median(ratios), slower, low, high))
        out.flush()
