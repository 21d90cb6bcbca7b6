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

"""Locks you can bet a token on, on real servers.

- A write checked just before its lock expires and held up past the expiry
  never overwrites the next holder's update (Redis: the server refuses it;
  elsewhere: the ``lock_window`` refuses it before it is sent).
- 8 threads sharing 8,000 locked increments lose none, each gets a fair
  share, and nobody waits longer than ``lock_timeout``.
- Keystone's token driver pattern (a per-user token index kept under the
  lock) loses no entry with 16 threads issuing tokens at once.

The delay is injected at the backend boundary: each backend class is
subclassed so its write methods first wait, as a write stuck in the
network would; nothing inside the client libraries is touched.

Every server is real: memcached, Redis (one server and a Cluster) and the
session's MongoDB-wire server (``mongo_args``).
"""

import threading
import time
import uuid

import dogpile.cache
import pytest

from oslo_kvs.backends import memcached
from oslo_kvs.backends import memory
from oslo_kvs.backends import mongo
from oslo_kvs.backends import redis as redis_backend
from oslo_kvs import exception
from oslo_kvs_tests import stored

#: thread id -> a callable the next write of that thread calls first.
_HOLD_UPS: dict[int, object] = {}
#: (thread id, backend method) of every write that reached a backend.
_REACHED: list[tuple[int, str]] = []


def _held_up(method):
    name = method.__name__

    def write(self, *args, **kwargs):
        me = threading.get_ident()
        _REACHED.append((me, name))
        hold_up = _HOLD_UPS.pop(me, None)
        if hold_up is not None:
            hold_up()
        return method(self, *args, **kwargs)
    write.__name__ = name
    return write


def _delaying(cls):
    """``cls`` whose writes first run the calling thread's hold-up."""
    methods = {name: _held_up(getattr(cls, name))
               for name in ('set_serialized', 'set_fenced',
                            'delete_existing', 'delete_fenced')}
    return type('Delayed' + cls.__name__, (cls,), methods)


DelayedMemoryBackend = _delaying(memory.MemoryBackend)
DelayedMemcachedBackend = _delaying(memcached.MemcachedBackend)
# Redis's mode classes: the registered class hands out one of them.
DelayedStandaloneBackend = _delaying(redis_backend.StandaloneBackend)
DelayedClusterBackend = _delaying(redis_backend.ClusterBackend)
DelayedMongoBackend = _delaying(mongo.MongoBackend)
for _cls in (DelayedMemoryBackend, DelayedMemcachedBackend,
             DelayedStandaloneBackend, DelayedClusterBackend,
             DelayedMongoBackend):
    dogpile.cache.register_backend('oslo_kvs_tests.' + _cls.__name__,
                                   __name__, _cls.__name__)


def mongo_args(request):
    """The session's MongoDB server, on a collection of the test's own."""
    collection = request.getfixturevalue('mongo_collection')
    return request.getfixturevalue('mongo_server').collection_args(
        collection.name)


#: parameter -> (registered backend, its delayed class, server arguments)
BACKENDS = {
    'memory': ('Memory', DelayedMemoryBackend, lambda request: {}),
    'memcached': ('Memcached', DelayedMemcachedBackend,
                  lambda request: request.getfixturevalue(
                      'memcached_server').store_args),
    'redis': ('Redis', DelayedStandaloneBackend,
              lambda request: request.getfixturevalue(
                  'redis_server').store_args),
    'redis-cluster': ('Redis', DelayedClusterBackend,
                      lambda request: request.getfixturevalue(
                          'redis_cluster').store_args),
    'mongodb': ('MongoDB', DelayedMongoBackend, mongo_args),
}


@pytest.fixture
def make_store(request):
    """make_store(**args) -> a fresh store on the parametrized backend."""
    kind, delayed_cls, server_args = BACKENDS[request.param]
    args = server_args(request)
    made = []

    def make(delayed=False, **extra):
        name = ('oslo_kvs_tests.' + delayed_cls.__name__ if delayed
                else 'openstack.kvs.' + kind)
        store = stored.make_store(name, **dict(args, **extra))
        made.append(store)
        return store
    make.kind = request.param
    yield make
    for store in made:
        store.close()


def _wait_for(event, what):
    assert event.wait(30), 'timed out waiting for %s' % what


# --- late writes ------------------------------------------------------------

LEASE = 2.0


def _next_holder(store, started, wrote, log):
    """Take the lock after the first holder's lease, add 10, release."""
    _wait_for(started, 'the first holder')
    with store.get_lock('counter') as lock:
        log.append(store.get('counter') + 10)
        store.set('counter', log[-1], lock=lock)
    wrote.set()


@pytest.mark.parametrize('make_store', ['memory', 'memcached', 'redis',
                                        'redis-cluster', 'mongodb'],
                         indirect=True)
@pytest.mark.parametrize('operation', ['set', 'delete'])
def test_late_write_never_lands_over_next_holder(make_store, operation):
    store = make_store(delayed=True, lock_timeout=LEASE)
    store.set('counter', 1)
    started, wrote, log = threading.Event(), threading.Event(), []
    other = threading.Thread(target=_next_holder,
                             args=(store, started, wrote, log))
    other.start()
    lock = store.get_lock('counter')
    lock.acquire()
    expires = time.monotonic() + LEASE    # no earlier than the lock's
    started.set()
    value = store.get('counter')
    # Checked about 0.2 s before expiry (well inside the window), then
    # stuck until the next holder, who can only get the lock once it
    # expired, has written.
    time.sleep(expires - 0.2 - time.monotonic())
    _HOLD_UPS[threading.get_ident()] = lambda: _wait_for(wrote, 'holder 2')
    del _REACHED[:]
    with pytest.raises(exception.LockTimeout):
        if operation == 'set':
            store.set('counter', value + 1, lock=lock)
        else:
            store.delete('counter', lock=lock)
    _HOLD_UPS.pop(threading.get_ident(), None)
    lock.release()
    other.join(30)
    assert log == [11]
    assert store.get('counter') == 11
    me = threading.get_ident()
    reached = [name for tid, name in _REACHED if tid == me]
    if lock.fenced:
        # Sent, held up past expiry, and refused by the server itself.
        assert reached == [operation + '_fenced']
    else:
        # Refused by the window before anything was sent.
        assert reached == []


@pytest.mark.parametrize('make_store', ['memory', 'memcached', 'redis',
                                        'mongodb'], indirect=True)
def test_write_accepted_before_window_lands_before_next_holder(make_store):
    store = make_store(delayed=True, lock_timeout=LEASE)
    window = store.get_lock('counter').lock_window
    assert window == 1.0
    store.set('counter', 1)
    started, wrote, log = threading.Event(), threading.Event(), []
    other = threading.Thread(target=_next_holder,
                             args=(store, started, wrote, log))
    other.start()
    with store.get_lock('counter') as lock:
        expires = time.monotonic() + LEASE
        started.set()
        value = store.get('counter')
        time.sleep(expires - window - 0.3 - time.monotonic())
        # Accepted just before the window, and slow, but not by a window.
        _HOLD_UPS[threading.get_ident()] = lambda: time.sleep(window / 2)
        store.set('counter', value + 1, lock=lock)
    other.join(30)
    _wait_for(wrote, 'holder 2')
    assert log == [12]
    assert store.get('counter') == 12


# --- contention and fairness ------------------------------------------------

THREADS = 8
INCREMENTS = 1000
# SecantusDB, a server written in Python, takes some 30 ms per locked
# increment here: fewer of them keep the test to about half a minute and
# still make every thread wait behind the others many times.
INCREMENTS_ON = {'mongodb': 120}
LOCK_TIMEOUT = 5.0


def contend(store, threads=THREADS, total=THREADS * INCREMENTS):
    """Increment one counter under the lock from ``threads`` threads.

    They go on until it reaches ``total``; return per-thread counts, the
    waits for the lock and the intervals it was held.
    """
    store.set('counter', 0)
    counts = [0] * threads
    waits: list[float] = []
    holds: list[tuple[float, float]] = []
    barrier = threading.Barrier(threads)
    errors = []

    def work(index):
        try:
            barrier.wait(30)
            while True:
                lock = store.get_lock('counter')
                asked = time.monotonic()
                assert lock.acquire(timeout=LOCK_TIMEOUT * 4)
                got = time.monotonic()
                waits.append(got - asked)
                try:
                    value = store.get('counter')
                    if value >= total:
                        return
                    store.set('counter', value + 1, lock=lock)
                    counts[index] += 1
                finally:
                    holds.append((got, time.monotonic()))
                    lock.release()
        except BaseException as exc:
            errors.append(exc)
            raise

    workers = [threading.Thread(target=work, args=(i,))
               for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(600)
    assert not errors, errors
    return counts, waits, holds


def hand_offs(holds):
    """Seconds from each release to the next acquisition."""
    holds = sorted(holds)
    return [max(nxt[0] - prev[1], 0.0)
            for prev, nxt in zip(holds, holds[1:])]


def percentile(values, share):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * share))]


@pytest.mark.parametrize('make_store', ['memory', 'memcached', 'redis',
                                        'mongodb'], indirect=True)
def test_contended_increments_are_all_kept_and_fair(make_store):
    store = make_store(lock_timeout=LOCK_TIMEOUT)
    total = THREADS * INCREMENTS_ON.get(make_store.kind, INCREMENTS)
    counts, waits, holds = contend(store, total=total)
    assert store.get('counter') == total
    assert sum(counts) == total
    mean = sum(counts) / THREADS
    assert all(mean / 2 <= count <= mean * 2 for count in counts), counts
    assert max(waits) < LOCK_TIMEOUT, max(waits)
    print('\n%s: counts %s, max wait %.4fs, hand-off p50 %.6fs p99 %.6fs'
          % (make_store.kind, counts, max(waits),
             percentile(hand_offs(holds), 0.5),
             percentile(hand_offs(holds), 0.99)))


# --- Keystone's token index -------------------------------------------------

TOKEN_THREADS = 16
TOKENS = 25


def issue_tokens(store, user, count, issued):
    """Issue tokens as Keystone's KVS token driver did.

    Store each token, then append it to the user's index under the lock.
    """
    for _ in range(count):
        token_id = uuid.uuid4().hex
        store.set('token-%s' % token_id, {'user_id': user, 'id': token_id})
        index_key = 'usertokens-%s' % user
        with store.get_lock(index_key) as lock:
            try:
                index = store.get(index_key)
            except exception.NotFound:
                index = []
            index.append((token_id, time.time() + 3600))
            store.set(index_key, index, lock=lock)
        issued.append(token_id)


@pytest.mark.parametrize('make_store', ['memcached', 'redis', 'mongodb'],
                         indirect=True)
def test_token_index_loses_no_entry(make_store):
    store = make_store(lock_timeout=LOCK_TIMEOUT)
    issued: list[str] = []
    workers = [threading.Thread(target=issue_tokens,
                                args=(store, 'alice', TOKENS, issued))
               for _ in range(TOKEN_THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(300)
    index = [token_id for token_id, _ in store.get('usertokens-alice')]
    assert len(issued) == TOKEN_THREADS * TOKENS
    assert sorted(index) == sorted(issued)
