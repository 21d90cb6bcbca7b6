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

"""The near cache (``near_cache_ttl``) against the raw client.

On its own memcached and redis-server, interleaved:

* ``get`` of one hot key: the store with its near cache on against the
  raw client's get (oslo_kvs's serializer applied by hand, the socket
  timeout the backend uses); target: 40x faster;
* ``get_multi`` of 100 hot keys against the raw client's multi-get
  (target: 15x);

  both with a small dict (copied container by container on each hit)
  and with a token-like str (shared, as every immutable value);
* a Keystone-like mix, one operation per call: 95% reads of 10,000
  keys drawn with a Zipf popularity (s = 1), 5% writes of keys drawn
  alike; the same seeded sequence for every contender (target: 5x the
  raw client's throughput). Reported twice: the median round of 20
  operations, and the throughput, from the mean time per operation over
  the whole run;
* the near cache off against the code before it (``get`` and ``set``):
  the last commit this tree shares with ``$OSLO_KVS_BENCH_BASE`` (a git
  revision, default :data:`NEAR_CACHE_BASE`), its ``oslo_kvs`` package
  extracted to a temporary
  directory. Both run in child processes (:class:`common.Remote`) set up
  alike, so neither has the parent's warm caches; target: no slower.

* on Redis, how soon another client's write reaches the near cache
  through the server's invalidation (target: 50 ms at the 99th
  percentile), and how soon when the invalidation connection was killed
  just before the write, so that no notice of it ever comes (target: no
  stale read beyond 50 ms).

The near cache's entries live a minute (``near_cache_ttl=60``) and it
holds every key of the mix (``near_cache_size=10000``).
"""

import bisect
import itertools
import logging
import os
import random
import statistics
import subprocess
import tempfile
import time
import uuid

from pymemcache.client import base as pymc_base
import redis

import oslo_kvs
from oslo_kvs import core
from oslo_kvs import serialization
from oslo_kvs_tests.bench import common
from oslo_kvs_tests import servers

VALUE = {'id': 'a' * 32, 'roles': ['admin', 'member'], 'expires': None}
#: A value as keystonemiddleware caches a validated token: one str (JSON
#: it made itself), which the near cache shares instead of copying.
TOKEN = ('{"token": {"user": {"id": "%s", "name": "alice"}, "roles": '
         '[{"name": "member"}], "expires_at": "2026-01-01T00:00:00Z"}}'
         % ('a' * 32))
TIMEOUT = 3.0   # the backends' default socket_timeout
TTL = 60
MIX_KEYS = 10000
MIX_READS = 0.95
MIX_LENGTH = 50000
HOT = ['hot-%03d' % i for i in range(100)]
RAW = 'raw client + same serializer'
NEAR = 'oslo_kvs, near cache on'
OFF = 'oslo_kvs, near cache off'
BASE = 'oslo_kvs before the near cache'
#: The default base: main just before the near cache was merged.
NEAR_CACHE_BASE = '8863e9b'
BACKENDS = {'memcached': 'openstack.kvs.Memcached',
            'redis': 'openstack.kvs.Redis'}


def mix(length=MIX_LENGTH, keys=MIX_KEYS, seed=0):
    """The Keystone-like sequence: ``(is a read, key index)`` pairs."""
    rng = random.Random(seed)
    cumulative = list(itertools.accumulate(1 / rank
                                           for rank in range(1, keys + 1)))
    total = cumulative[-1]
    return [(rng.random() < MIX_READS,
             bisect.bisect(cumulative, rng.random() * total))
            for _ in range(length)]


class _Raw:
    """The raw client of ``server``: get, set and multi-get of bytes."""

    def __init__(self, kind, server):
        if kind == 'memcached':
            client = pymc_base.Client(
                (server.host, server.port), no_delay=True,
                default_noreply=False, timeout=TIMEOUT,
                connect_timeout=TIMEOUT)
            self.get, self.set = client.get, client.set

            def get_many(keys):
                found = client.get_many(keys)
                return [found[key] for key in keys]
            self.get_many = get_many
        else:
            client = redis.Redis(host=server.host, port=server.port,
                                 protocol=2, socket_timeout=TIMEOUT,
                                 socket_connect_timeout=TIMEOUT)
            self.get, self.set, self.get_many = (client.get, client.set,
                                                 client.mget)
            self.client = client


def _store(kind, server, name=None, **args):
    """A store; given a ``name``, a second one of that name."""
    store = (core.KeyValueStore(name) if name else
             oslo_kvs.get_key_value_store('bench-near-%s' % uuid.uuid4()))
    store.configure(BACKENDS[kind], url=_url(kind, server), **args)
    return store


def _url(kind, server):
    return server.address if kind == 'memcached' else server.url


def run(rounds):
    results = []
    base = _base_tree()
    try:
        for kind in BACKENDS:
            server = (servers.MemcachedServer(extra=['-t', '1'],
                                              cpu=common.cpu())
                      if kind == 'memcached'
                      else servers.RedisServer(cpu=common.cpu())).start()
            try:
                results += _measure(kind, server, rounds, base)
            finally:
                server.cleanup()
    finally:
        if base is not None:
            base[1].cleanup()
    return results


def _base_tree():
    """(revision, directory holding its ``oslo_kvs``), or None."""
    revision = os.environ.get('OSLO_KVS_BENCH_BASE', NEAR_CACHE_BASE)
    root = os.path.dirname(os.path.dirname(os.path.abspath(
        oslo_kvs.__file__)))
    try:
        commit = subprocess.run(
            ['git', '-C', root, 'merge-base', 'HEAD', revision],
            check=True, capture_output=True, text=True).stdout.strip()[:8]
        directory = tempfile.TemporaryDirectory(prefix='oslo-kvs-base-')
        archive = subprocess.run(
            ['git', '-C', root, 'archive', commit, 'oslo_kvs'],
            check=True, capture_output=True).stdout
        subprocess.run(['tar', '-x', '-C', directory.name], input=archive,
                       check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return '%s (%s)' % (revision, commit), directory


def remote_operation(kind, address, name, operation):
    """A child's ``get`` or ``set`` on a store without a near cache."""
    store = oslo_kvs.get_key_value_store(name)
    store.configure(BACKENDS[kind], url=address)
    if operation == 'get':
        return lambda: store.get(HOT[1])
    return lambda: store.set(HOT[2], VALUE)


def _remote(kind, server, name, operation, tree):
    """:func:`remote_operation` in a child, ``oslo_kvs`` from ``tree``.

    The child imports the tests (this module) from this tree.
    """
    tests = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    previous = os.environ.get('PYTHONPATH')
    os.environ['PYTHONPATH'] = os.pathsep.join(
        [tree, tests] + ([previous] if previous else []))
    try:
        return common.Remote(__name__ + ':remote_operation', kind,
                             _url(kind, server), name, operation)
    finally:
        if previous is None:
            del os.environ['PYTHONPATH']
        else:
            os.environ['PYTHONPATH'] = previous


def _measure(kind, server, rounds, base):
    suite = 'near, %s' % kind
    raw = _Raw(kind, server)
    dumps, loads = serialization.dumps, serialization.loads
    near = _store(kind, server, near_cache_ttl=TTL,
                  near_cache_size=MIX_KEYS)
    off = _store(kind, server, name=near.name)
    multi_rounds = max(rounds // 10, 30)
    results = []
    for label, value in (('dict', VALUE), ('token str', TOKEN)):
        near.set_multi({key: value for key in HOT})
        raw_hot = [common.raw_key(key) for key in HOT]
        for key in raw_hot:
            raw.set(key, dumps(value))

        def raw_get_multi():
            return [loads(data) for data in raw.get_many(raw_hot)]

        assert raw_get_multi() == near.get_multi(HOT) == off.get_multi(HOT)
        results += [
            common.Result(suite, 'get, hot key, %s' % label, common.compare({
                RAW: lambda: loads(raw.get(raw_hot[1])),
                NEAR: lambda: near.get(HOT[1]),
                OFF: lambda: off.get(HOT[1]),
            }, rounds), RAW, speedups=[(NEAR, RAW)]),
            common.Result(suite, 'get_multi 100 hot keys, %s' % label,
                          common.compare({
                              RAW: raw_get_multi,
                              NEAR: lambda: near.get_multi(HOT),
                          }, multi_rounds), RAW, speedups=[(NEAR, RAW)]),
        ]
    near.set_multi({key: VALUE for key in HOT})
    results += _measure_mix(suite, kind, server, raw, rounds)
    if kind == 'redis':
        results.append(_measure_invalidation(suite, near, off))
        results.append(_measure_killed_channel(suite, near, off, raw.client))
    if base is not None:
        results += _measure_off(suite, kind, server, near.name, rounds,
                                base)
    near.close()
    off.close()
    return results


def _measure_invalidation(suite, near, writer, writes=300):
    """How long after another client's write the near cache shows it.

    ``writer`` (no near cache) writes a hot key; ``near`` reads it every
    0.1 ms (sleeping between reads, as a service does between requests,
    so the watcher thread gets the CPU) until it shows the new value.
    Reported as the delay's median, 99th percentile and maximum.
    """
    writer.set('watched', -1)
    deadline = time.monotonic() + 10
    while not (near.get('watched') == -1 and _hit(near, 'watched')):
        assert time.monotonic() < deadline, 'tracking never came on'
        time.sleep(0.001)
    delays = []
    for value in range(writes):
        writer.set('watched', value)
        written = time.monotonic()
        while near.get('watched') != value:
            time.sleep(0.0001)
        delays.append(time.monotonic() - written)
        # Served from memory again before the next write.
        assert _hit(near, 'watched')
    p99 = statistics.quantiles(delays, n=100, method='inclusive')[98]
    return common.Result(
        suite, 'another client\'s write seen after (near_cache_ttl=%d, '
        '%d writes)' % (TTL, writes), {
            'median': statistics.median(delays), '99th percentile': p99,
            'maximum': max(delays)}, 'median')


def _measure_killed_channel(suite, near, writer, client, trials=50):
    """How long a write stays unseen when the invalidation channel dies.

    Each trial: ``near`` serves a key from memory; its invalidation
    connection is killed (``CLIENT KILL``) and ``writer`` changes the key
    at once, so no notice of the write can ever come; ``near`` reads the
    key every 0.1 ms until it shows the new value (the channel's loss
    must have emptied and bypassed the near cache). Reported as the
    delay's median, 99th percentile and maximum.
    """
    delays = []
    # Each kill logs a warning (the near cache suspended): not news here.
    logging.disable(logging.WARNING)
    try:
        for value in range(trials):
            delays.append(_killed_channel_delay(near, writer, client,
                                                value))
    finally:
        logging.disable(logging.NOTSET)
    p99 = statistics.quantiles(delays, n=100, method='inclusive')[98]
    return common.Result(
        suite, 'another client\'s write seen after the invalidation '
        'channel was killed (CLIENT KILL, %d trials)' % trials, {
            'median': statistics.median(delays), '99th percentile': p99,
            'maximum': max(delays)}, 'median')


def _killed_channel_delay(near, writer, client, value):
    """One trial of :func:`_measure_killed_channel`: the delay."""
    writer.set('killed', value - 1)
    deadline = time.monotonic() + 10
    while not (near.get('killed') == value - 1 and _hit(near, 'killed')):
        assert time.monotonic() < deadline, 'tracking never came back'
        time.sleep(0.001)
    tracking = [entry['id'] for entry in client.client_list()
                if 'B' in entry['flags']]
    assert tracking, 'no broadcast-tracking connection'
    for connection in tracking:
        client.client_kill_filter(_id=connection)
    writer.set('killed', value)
    written = time.monotonic()
    while near.get('killed') != value:
        time.sleep(0.0001)
    return time.monotonic() - written


def _hit(store, key):
    """Whether a read of ``key`` comes from the store's near cache."""
    hits = store.stats()['near_cache']['hits']
    store.get(key)
    return store.stats()['near_cache']['hits'] > hits


def _measure_mix(suite, kind, server, raw, rounds):
    """The Keystone-like mix, per operation."""
    keys = ['mix-%05d' % i for i in range(MIX_KEYS)]
    raw_keys = [common.raw_key(key) for key in keys]
    store = _store(kind, server, near_cache_ttl=TTL,
                   near_cache_size=MIX_KEYS)
    dumps, loads = serialization.dumps, serialization.loads
    for start in range(0, MIX_KEYS, 1000):
        store.set_multi({key: VALUE for key in keys[start:start + 1000]})
        for key in raw_keys[start:start + 1000]:
            raw.set(key, dumps(VALUE))
    sequence = mix()
    get, put = store.get, store.set
    raw_get, raw_set = raw.get, raw.set

    def kvs_op(step=itertools.cycle(sequence).__next__):
        read, index = step()
        if read:
            return get(keys[index])
        return put(keys[index], VALUE)

    def raw_op(step=itertools.cycle(sequence).__next__):
        read, index = step()
        if read:
            return loads(raw_get(raw_keys[index]))
        return raw_set(raw_keys[index], dumps(VALUE))

    for _ in range(MIX_LENGTH):    # once through: every key read once
        kvs_op()
        raw_op()
    try:
        timings = common.compare({RAW: raw_op, NEAR: kvs_op}, rounds * 2)
    finally:
        store.close()
    # Throughput is operations over the time they took: the mean per op
    # over the whole run (both ran the same operations, round by round).
    # The median round of 20 operations (above it) is steadier, but is
    # mostly a round without a write, which only the mean weighs fairly.
    mean = {name: statistics.fmean(times)
            for name, times in timings.samples.items()}
    label = 'Keystone-like mix (95% Zipf reads of 10k keys, 5% writes)'
    return [common.Result(suite, label + ', per op', timings, RAW,
                          speedups=[(NEAR, RAW)]),
            common.Result(suite, label + ', throughput (mean per op)',
                          common.Timings({name: [mean[name]]
                                          for name in mean}), RAW,
                          speedups=[(NEAR, RAW)])]


def _measure_off(suite, kind, server, name, rounds, base):
    """The near cache off, in this tree and in ``base``, in children."""
    label, directory = base
    here = os.path.dirname(os.path.dirname(os.path.abspath(
        oslo_kvs.__file__)))
    results = []
    for operation in ('get', 'set'):
        children = {
            BASE + ' ' + label: _remote(kind, server, name, operation,
                                        directory.name),
            OFF: _remote(kind, server, name, operation, here),
        }
        try:
            results.append(common.Result(
                suite, '%s, near cache off vs before' % operation,
                common.compare(children, rounds),
                BASE + ' ' + label))
        finally:
            for child in children.values():
                child.close()
    return results
