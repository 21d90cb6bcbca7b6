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

"""The lock-heavy sample service under uWSGI, on oslo.cache and oslo_kvs.

``python -m oslo_kvs_tests.bench.deployment [--rounds N] [--seconds S]``

The sample service of the deployment suite
(:mod:`oslo_kvs_tests.deployment.service`) runs in uWSGI (4 workers x 4
threads) on its own three memcached nodes, Redis and SecantusDB. Its
token creation appends the token to the user's index in Redis, in one of
three variants:

``oslo.cache lock``
    the index in an oslo.cache region (``dogpile.cache.redis``,
    configured by oslo.cache's options), under the region backend's
    distributed mutex: take it, read, write, release, as a Keystone
    driver on oslo.cache would;
``oslo_kvs lock``
    the index in an oslo_kvs Redis store, under the store's lock: take
    it, read, write with ``lock=``, release;
``oslo_kvs update``
    the index in the same store, with one ``INDEX.update()``.

Everything else (tokens on memcached, the memoized catalog on
SecantusDB, the request mix) is the same oslo_kvs code in all three. The
deployment suite's load client (16 threads, 8 users, 35 % of the
requests creating a token, every reply checked) runs against each for
``--seconds``, the three in a random order in each round, each run on a
freshly started server. Reported per variant: the median over rounds and
the range (lowest-highest) of requests per second, mean, median and p99
latency of all requests and of token creations alone, replies not
``ok``, acknowledged tokens lost from the index, the CPU time the uWSGI
processes used per request (``worker_cpu``) and the share of the
machine's CPU time left idle during the load; and each variant's ratio
to ``oslo.cache lock`` (of the medians, and its range over rounds, each
round's figure divided by that round's ``oslo.cache lock``).

The client keeps 16 requests in flight, so the mean latency is 16 over
the requests per second whatever the variant: a variant can have a lower
median only by making other requests wait longer. With no idle CPU left,
requests per second follow the CPU each request costs (the workers', the
client's and the servers'); waiting for a lock costs throughput only
when it leaves a CPU idle. The workers' and idle figures tell the two
apart. Linux only (they are read from ``/proc``).

It is not pinned (the benchmark harness pins to one CPU): a WSGI server
and its clients need the machine's CPUs as a deployment would have them,
so the figures move with whatever else the machine runs. Interleaving
spreads that noise over both variants alike.
"""

import argparse
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
import typing as ty
import uuid

from oslo_kvs_tests.deployment import launchers
from oslo_kvs_tests.deployment import load
from oslo_kvs_tests import servers

#: Each variant's ``index_writes`` in the service's configuration.
VARIANTS = {'oslo.cache lock': 'oslo.cache', 'oslo_kvs lock': 'lock',
            'oslo_kvs update': 'update'}
#: What the others are compared with.
BASELINE = 'oslo.cache lock'


class TimedClient(load.LoadClient):
    """The deployment load client, timing every request it sends."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        #: (seconds, whether it created a token) of every request.
        self.timings: list[tuple[float, bool]] = []
        self._timings_lock = threading.Lock()

    def one_request(self, connection: load.Connection,
                    rng: random.Random) -> None:
        phase = self._phase
        method, path, check = self._plan(rng)
        started = time.perf_counter()
        reply = connection.request(method, path)
        took = time.perf_counter() - started
        check(phase, reply)
        with self._timings_lock:
            self.timings.append((took, method == 'POST'))


def _group_cpu(pgid: int) -> float:
    """CPU seconds used so far by the live processes of group ``pgid``.

    A worker forked after a first reading counts in full in the next:
    what it used before the load began is a fork's worth.
    """
    ticks = 0
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                # After the command's closing parenthesis: state, ppid,
                # pgrp, ... utime and stime are the 12th and 13th.
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue    # gone meanwhile
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf('SC_CLK_TCK')


def _machine_cpu() -> tuple[int, int]:
    """The machine's CPU time so far, and the idle part of it, in ticks."""
    with open('/proc/stat') as f:
        ticks = [int(n) for n in f.readline().split()[1:]]
    return sum(ticks), ticks[3] + ticks[4]    # idle and iowait


def _percentile(values: ty.Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def _config(directory: str, memcached: ty.Any, redis: ty.Any,
            mongo: ty.Any, variant: str) -> str:
    path = os.path.join(directory, 'service-%s.json' % VARIANTS[variant])
    with open(path, 'w') as f:
        json.dump({
            'memcached': memcached.addresses, 'redis': redis.url,
            'mongodb': mongo.url, 'mongodb_db': mongo.db_name,
            'mongodb_collection': 'catalog_%s' % uuid.uuid4().hex,
            'protection_keys': [secrets.token_hex(32)],
            'index_writes': VARIANTS[variant]}, f)
    return path


#: Servers started for one run before it gives up. A uWSGI server whose
#: workers never answered /health was seen once here, on a machine busy
#: with other work; the run takes a fresh server then, and says so.
START_ATTEMPTS = 2


def _started(config: str) -> launchers.WSGIServer:
    for attempt in range(1, START_ATTEMPTS + 1):
        server = launchers.UWSGI(config)
        try:
            return server.start()
        except RuntimeError as exc:
            server.cleanup()
            if attempt == START_ATTEMPTS:
                raise
            print('    %s; starting another' % str(exc).splitlines()[0],
                  flush=True)
    raise AssertionError('unreachable')


def _one_round(config: str, seconds: float) -> dict[str, ty.Any]:
    server = _started(config)
    try:
        client = TimedClient(server.url)
        pgid = server.process.pid
        workers, machine = _group_cpu(pgid), _machine_cpu()
        phase = client.run('bench', seconds)
        workers = _group_cpu(pgid) - workers
        total, idle = (after - before for after, before
                       in zip(_machine_cpu(), machine))
        lost = client.lost_index_entries()
    finally:
        server.cleanup()
    every = [took for took, _ in client.timings]
    created = [took for took, creates in client.timings if creates]
    return {'rps': len(every) / seconds,
            'mean': statistics.fmean(every),
            'p50': statistics.median(every), 'p99': _percentile(every, 0.99),
            'create_p50': statistics.median(created),
            'create_p99': _percentile(created, 0.99),
            'not_ok': phase.requests - phase.counts['ok'],
            'lost': sum(lost.values()),
            'worker_cpu': workers / len(every),
            'idle': idle / total if total else 0.0,
            'examples': phase.summary()['examples']}


def run(rounds: int, seconds: float) -> dict[str, list[dict[str, ty.Any]]]:
    """Each variant's figures, one dict per round."""
    results: dict[str, list[dict[str, ty.Any]]] = {v: [] for v in VARIANTS}
    started: list[ty.Any] = []
    directory = tempfile.mkdtemp(prefix='oslo-kvs-bench-deploy-')
    try:
        for server in (servers.MemcachedCluster(3), servers.RedisServer(),
                       servers.MongoServer()):
            started.append(server)
            server.start()
        configs = {variant: _config(directory, *started, variant)
                   for variant in VARIANTS}
        order = list(VARIANTS)
        for number in range(rounds):
            random.Random(number).shuffle(order)
            for variant in order:
                figures = _one_round(configs[variant], seconds)
                results[variant].append(figures)
                examples = figures.pop('examples')
                print('round %d %-15s %s' % (number + 1, variant, ', '.join(
                    '%s %.4g' % item for item in figures.items())),
                    flush=True)
                for example in examples:
                    print('    not ok: %s' % example, flush=True)
    finally:
        for server in started:
            server.cleanup()
    return results


#: Figures shown in milliseconds.
_IN_MS = ('mean', 'p50', 'p99', 'create_p50', 'create_p99', 'worker_cpu')


def _shown(name: str, value: float) -> str:
    if name in _IN_MS:
        return '%.3g' % (value * 1000)
    return '%.2f' % value if name == 'idle' else '%.4g' % value


def report(results: dict[str, list[dict[str, ty.Any]]],
           out: ty.TextIO) -> None:
    """Per figure and variant: the median over rounds, its range, ratios.

    Latencies are in milliseconds. A ratio is the variant's median over
    the baseline's; its range is over rounds, each round's figure over
    the same round's baseline.
    """
    names = list(results[BASELINE][0])
    base = results[BASELINE]
    width = 24
    out.write('%-14s' % '' + ''.join('%*s' % (width, v) for v in VARIANTS)
              + '\n')
    for name in names:
        cells = []
        for variant, rounds in results.items():
            values = [r[name] for r in rounds]
            cells.append('%s (%s-%s)' % (
                _shown(name, statistics.median(values)),
                _shown(name, min(values)), _shown(name, max(values))))
        out.write('%-14s' % (name + (' ms' if name in _IN_MS else ''))
                  + ''.join('%*s' % (width, c) for c in cells) + '\n')
    out.write('\nratio to %s: median of the figure (range over rounds)\n'
              % BASELINE)
    out.write('%-14s' % '' + ''.join('%*s' % (width, v) for v in VARIANTS
                                     if v != BASELINE) + '\n')
    for name in names:
        if name in ('not_ok', 'lost', 'idle'):
            continue
        cells = []
        for variant, rounds in results.items():
            if variant == BASELINE:
                continue
            middle = statistics.median(base_r[name] for base_r in base)
            ratios = [r[name] / b[name] for r, b in zip(rounds, base)
                      if b[name]]
            cells.append('%.2fx (%.2f-%.2f)' % (
                statistics.median(r[name] for r in rounds) / middle,
                min(ratios), max(ratios)) if middle and ratios else '-')
        out.write('%-14s' % name + ''.join('%*s' % (width, c)
                                           for c in cells) + '\n')


def main(argv: ty.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--rounds', type=int, default=3,
                        help='rounds of each variant (default: 3)')
    parser.add_argument('--seconds', type=float, default=10.0,
                        help='seconds of load per round (default: 10)')
    args = parser.parse_args(argv)
    report(run(args.rounds, args.seconds), sys.stdout)
    return 0


if __name__ == '__main__':
    sys.exit(main())
