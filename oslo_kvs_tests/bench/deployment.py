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

"""The lock-heavy sample service under uWSGI: index by lock or update().

``python -m oslo_kvs_tests.bench.deployment [--rounds N] [--seconds S]``

The sample service of the deployment suite
(:mod:`oslo_kvs_tests.deployment.service`) runs in uWSGI (4 workers x 4
threads) on its own three memcached nodes, Redis and SecantusDB. Its
token creation appends the token to the user's index in Redis, either
under the user's lock (take it, read, write with ``lock=``, release: the
way Keystone's driver did) or with one ``INDEX.update()``. The deployment
suite's load client (16 threads, 8 users, 35 % of the requests creating
a token, every reply checked) runs against each for ``--seconds``, the
two interleaved round after round, each round on a freshly started
server. Reported per variant: requests per second, median and p99
latency of all requests and of token creations alone, replies not ``ok``,
and the ratios of ``update`` to ``lock``.

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

VARIANTS = ('lock', 'update')


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


def _percentile(values: ty.Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def _config(directory: str, memcached: ty.Any, redis: ty.Any,
            mongo: ty.Any, variant: str) -> str:
    path = os.path.join(directory, 'service-%s.json' % variant)
    with open(path, 'w') as f:
        json.dump({
            'memcached': memcached.addresses, 'redis': redis.url,
            'mongodb': mongo.url, 'mongodb_db': mongo.db_name,
            'mongodb_collection': 'catalog_%s' % uuid.uuid4().hex,
            'protection_keys': [secrets.token_hex(32)],
            'index_writes': variant}, f)
    return path


def _one_round(config: str, seconds: float) -> dict[str, ty.Any]:
    server = launchers.UWSGI(config)
    server.start()
    try:
        client = TimedClient(server.url)
        phase = client.run('bench', seconds)
        lost = client.lost_index_entries()
    finally:
        server.cleanup()
    every = [took for took, _ in client.timings]
    created = [took for took, creates in client.timings if creates]
    return {'rps': len(every) / seconds,
            'p50': statistics.median(every), 'p99': _percentile(every, 0.99),
            'create_p50': statistics.median(created),
            'create_p99': _percentile(created, 0.99),
            'not_ok': phase.requests - phase.counts['ok'],
            'lost': sum(lost.values())}


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
                print('round %d %-6s %s' % (number + 1, variant, ', '.join(
                    '%s %.4g' % item for item in figures.items())),
                    flush=True)
    finally:
        for server in started:
            server.cleanup()
    return results


def report(results: dict[str, list[dict[str, ty.Any]]],
           out: ty.TextIO) -> None:
    """Medians over rounds, and update's ratio to lock for each figure."""
    medians = {variant: {name: statistics.median(r[name] for r in rounds)
                         for name in rounds[0]}
               for variant, rounds in results.items()}
    out.write('%-12s %12s %12s %10s\n' % ('', 'lock', 'update',
                                          'update/lock'))
    for name in medians['lock']:
        lock, update = medians['lock'][name], medians['update'][name]
        scale = 1000 if 'p' in name and name != 'rps' else 1
        unit = ' ms' if scale == 1000 else ''
        out.write('%-12s %12s %12s %10s\n' % (
            name, '%.4g%s' % (lock * scale, unit),
            '%.4g%s' % (update * scale, unit),
            '%.2fx' % (update / lock) if lock else '-'))


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
