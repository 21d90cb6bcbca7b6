"""Measurement helpers shared by the benchmark suites."""

import dataclasses
import gc
import statistics
import time
import typing as ty


@dataclasses.dataclass
class Result:
    """The median time of one operation for each contender."""

    suite: str
    operation: str
    medians: dict[str, float]
    baseline: str

    def ratio(self, contender: str, against: str | None = None) -> float:
        return self.medians[contender] / self.medians[against or
                                                      self.baseline]


def compare(contenders: ty.Mapping[str, ty.Callable[[], ty.Any]],
            rounds: int = 2000, batches: int = 15) -> dict[str, float]:
    """Median seconds per call of each contender, measured interleaved.

    Each batch runs every contender ``rounds // batches`` times, in turn, so
    machine noise hits all of them alike; the result is the median over
    batches of the mean time per call.
    """
    per_batch = max(rounds // batches, 1)
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for call in contenders.values():
        call()  # warm connections and caches
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(batches):
            for name, call in contenders.items():
                started = time.perf_counter()
                for _ in range(per_batch):
                    call()
                samples[name].append(
                    (time.perf_counter() - started) / per_batch)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: statistics.median(times) for name, times in samples.items()}


def report(results: ty.Iterable[Result], out: ty.TextIO) -> None:
    """Print each operation's medians and ratios against its baseline."""
    for result in results:
        out.write('%s / %s\n' % (result.suite, result.operation))
        for name, median in result.medians.items():
            out.write('  %-34s %10.1f us  %6.2fx %s\n' % (
                name, median * 1e6, result.ratio(name), result.baseline))
