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

"""``update()`` and ``incr()`` against a raw client and against a lock.

On its own memcached and redis-server, the suite measures, interleaved:

* uncontended: ``store.update`` of a small dict against a raw client's
  get + set of the same bytes (oslo_kvs's serializer, no protection, no
  compare: the cheapest unsafe change), and ``store.incr`` against the
  raw client's own increment (the issue's targets: at most 1.2x and
  1.15x). As in the memcached and redis suites, the raw clients have the
  store's socket timeout and use keys of the store's key length; a
  memcached client without a timeout (a poll() less per send and reply,
  but no limit on a stuck server) is shown for information;
* contended: 16 threads changing one key, with ``update`` and with the
  same change under ``get_lock`` (read, ``set(lock=)``, release); the
  time per completed change is reported, so the lock's ratio is how many
  times more updates per second ``update`` completes (target: 2x).
"""

import threading
import time
import uuid

from pymemcache.client import base as pymc_base
import redis

import oslo_kvs
from oslo_kvs import serialization
from oslo_kvs_tests.bench import common
from oslo_kvs_tests import servers

VALUE = {'id': 'a' * 32, 'roles': ['admin', 'member'], 'count': 0}
THREADS = 16
RAW = 'raw client get + set'
UNTIMED = 'raw, no socket timeout (info)'
RAW_INCR = 'raw client incr'
UNTIMED_INCR = 'raw incr, no socket timeout (info)'
UPDATE = 'oslo_kvs update'
INCR = 'oslo_kvs incr'
LOCKED = 'get_lock + get + set'
#: The socket timeout of the store and of the raw clients, in seconds.
TIMEOUT = 1.0


def _bump(value):
    return dict(value, count=value['count'] + 1)


def _store(backing_store, **args):
    store = oslo_kvs.get_key_value_store('bench-atomic-%s' % uuid.uuid4())
    store.configure(backing_store, **args)
    return store


def _locked_bump(store, key):
    with store.get_lock(key) as lock:
        store.set(key, _bump(store.get(key)), lock=lock)


def _contended(change, count):
    """Seconds per change when THREADS threads make ``count`` in all."""
    barrier = threading.Barrier(THREADS + 1)
    each = max(count // THREADS, 1)

    def work():
        barrier.wait()
        for _ in range(each):
            change()
    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return (time.perf_counter() - started) / (each * THREADS)


def _results(suite, store, raw_get, raw_set, raw_incr, rounds,
             untimed=None):
    dumps, loads = serialization.dumps, serialization.loads
    doc, counter = common.raw_key('doc'), common.raw_key('n')
    store.set('doc', VALUE)
    raw_set(doc, dumps(VALUE))
    store.set('n', 0)
    raw_set(counter, b'0')

    def change(read, write):
        return lambda: write(doc, dumps(_bump(loads(read(doc)))))

    changes = {RAW: change(raw_get, raw_set),
               UPDATE: lambda: store.update('doc', _bump)}
    contenders = {RAW_INCR: lambda: raw_incr(counter),
                  INCR: lambda: store.incr('n')}
    if untimed is not None:
        untimed_get, untimed_set, untimed_incr = untimed
        changes[UNTIMED] = change(untimed_get, untimed_set)
        contenders[UNTIMED_INCR] = lambda: untimed_incr(counter)
    uncontended = common.Result(suite, 'uncontended change',
                                common.compare(changes, rounds), RAW)
    increments = common.Result(suite, 'uncontended increment',
                               common.compare(contenders, rounds), RAW_INCR)
    store.set('hot', VALUE)
    # Alternated, a few times each, so machine noise hits both alike.
    samples = {UPDATE: [], LOCKED: []}
    for _ in range(3):
        samples[UPDATE].append(_contended(
            lambda: store.update('hot', _bump), rounds // 3))
        samples[LOCKED].append(_contended(
            lambda: _locked_bump(store, 'hot'), rounds // 3))
    contended = common.Result(
        suite, '%d threads, one key (s per change)' % THREADS,
        common.Timings(samples), UPDATE)
    return [uncontended, increments, contended]


def _redis(rounds):
    server = servers.RedisServer(cpu=common.cpu()).start()
    try:
        raw = redis.Redis(host=server.host, port=server.port, protocol=2,
                          socket_timeout=TIMEOUT)
        store = _store('openstack.kvs.Redis', url=server.url,
                       socket_timeout=TIMEOUT)
        try:
            return _results('redis', store, raw.get, raw.set, raw.incr,
                            rounds)
        finally:
            store.close()
    finally:
        server.cleanup()


def _memcached(rounds):
    server = servers.MemcachedServer(extra=['-t', '1'],
                                     cpu=common.cpu()).start()
    try:
        raw = pymc_base.Client((server.host, server.port), no_delay=True,
                               default_noreply=False,
                               timeout=TIMEOUT,
                               connect_timeout=TIMEOUT)
        untimed = pymc_base.Client((server.host, server.port),
                                   no_delay=True, default_noreply=False)
        store = _store('openstack.kvs.Memcached', url=server.address,
                       socket_timeout=TIMEOUT)
        try:
            return _results('memcached', store, raw.get, raw.set,
                            lambda key: raw.incr(key, 1), rounds,
                            (untimed.get, untimed.set,
                             lambda key: untimed.incr(key, 1)))
        finally:
            store.close()
    finally:
        server.cleanup()


def run(rounds):
    # Contention stresses a lock's waiters far more than single calls:
    # fewer changes keep the suite within minutes.
    rounds = max(rounds // 3, 300)
    return _redis(rounds) + _memcached(rounds)
