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

"""Waiting for a lock that another process holds, on real servers.

On Redis (one server, Sentinel, Cluster) a release leaves a notice that
a waiter blocks on, so a waiter in another process:

- takes the lock soon after the holder releases it,
- spends little CPU time while it waits (measured in the waiting
  process itself with :func:`time.process_time`),
- still takes a lock whose holder died without releasing it, once the
  lock expires, and
- gives up when its ``timeout`` runs out, never later.

The holder is this process; the waiter is a forked child, whose only
thread is the one that waits, so its CPU time is the wait's. Memcached
and MongoDB, which cannot notify, run the same checks except the CPU
one: their waiters back off.
"""

import time

import pytest

from oslo_kvs_tests import faults
from oslo_kvs_tests import stored

#: Seconds the holder keeps the lock while the child waits.
HOLD = 2.0
#: A lease far longer than the test: only a release or a timeout ends
#: the wait, not the lock's expiry.
LONG_LEASE = 60

NOTIFYING = ['redis', 'sentinel', 'cluster']


@pytest.fixture
def make_store(request):
    """make_store(name, **args) -> a store on the named server."""
    made = []

    def make(name, **extra):
        backend, args = stored.backend_args(request, name)
        store = stored.make_store(backend, **dict(args, **extra))
        made.append(store)
        return store
    yield make
    for store in made:
        store.close()


def wait_in_child(store, key, timeout, meanwhile=lambda: None):
    """Acquire ``store``'s lock on ``key`` in a forked child.

    The parent runs ``meanwhile()`` while the child waits. Returns the
    child's result: whether it got the lock, when (``time.time()``), the
    seconds it waited, the CPU seconds it spent doing so and how many
    times it tried to take the lock on the server.
    """
    def waiter(index):
        backend = stored.backend(store)
        tries = []

        def acquire_lock(*args):
            tries.append(1)
            return type(backend).acquire_lock(backend, *args)
        # Only in this child: the parent's backend is left as it is.
        backend.acquire_lock = acquire_lock
        lock = store.get_lock(key)
        # This process's first call connects (for a Cluster, learns its
        # slots too); that is not waiting, so it is done before the clock.
        store.set(key + '-connect', True)
        started, cpu = time.monotonic(), time.process_time()
        got = lock.acquire(timeout=timeout)
        result = {'got': got, 'at': time.time(),
                  'cpu': time.process_time() - cpu,
                  'waited': time.monotonic() - started,
                  'tries': len(tries)}
        if got:
            lock.release()
        return result

    [result] = faults.in_forked_children(1, waiter, meanwhile=meanwhile)
    assert 'crash' not in result, result['crash']
    return result


@pytest.mark.parametrize('backend', NOTIFYING + ['memcached', 'mongo'])
def test_waiter_takes_lock_soon_after_release(make_store, backend):
    store = make_store(backend, lock_timeout=LONG_LEASE)
    lock = store.get_lock('k')
    assert lock.acquire()
    released = []

    def hold_then_release():
        time.sleep(HOLD)
        released.append(time.time())
        lock.release()

    result = wait_in_child(store, 'k', LONG_LEASE, hold_then_release)
    assert result['got']
    # The child waited for the release, and not much longer: well under
    # the lease, and under any periodic re-check a waiter makes.
    assert result['at'] >= released[0]
    assert result['at'] - released[0] < 1.0, result['at'] - released[0]
    print('\n%s: woke %.4fs after release, CPU %.4fs in %.2fs (%.1f%%)'
          % (backend, result['at'] - released[0], result['cpu'],
             result['waited'], 100 * result['cpu'] / result['waited']))


@pytest.mark.parametrize('backend', NOTIFYING)
def test_waiter_spends_little_cpu(make_store, backend):
    store = make_store(backend, lock_timeout=LONG_LEASE)
    lock = store.get_lock('k')
    assert lock.acquire()

    def hold_then_release():
        time.sleep(HOLD)
        lock.release()

    result = wait_in_child(store, 'k', LONG_LEASE, hold_then_release)
    assert result['got']
    assert result['waited'] >= HOLD / 2, result
    # A polling waiter spends a good part of the wait in the client
    # library; a blocked one next to nothing.
    assert result['cpu'] < 0.1 * result['waited'], result
    # Woken by the release, not by asking again and again: a try at the
    # start, one after the release, and a few re-checks at most (a
    # blocked wait ends before the client's socket timeout).
    assert result['tries'] <= 2 + HOLD / 1.0, result
    print('\n%s: CPU %.4fs in %.2fs of waiting (%.2f%%), %d tries'
          % (backend, result['cpu'], result['waited'],
             100 * result['cpu'] / result['waited'], result['tries']))


@pytest.mark.parametrize('backend', NOTIFYING + ['memcached', 'mongo'])
def test_lock_of_dead_holder_is_taken_once_expired(make_store, backend):
    lease = 1.5
    store = make_store(backend, lock_timeout=lease)

    def die_holding(index):
        # The child takes the lock and exits without releasing it.
        return {'got': store.get_lock('k').acquire()}

    [held] = faults.in_forked_children(1, die_holding)
    assert held == {'got': True}
    lock = store.get_lock('k')
    started = time.monotonic()
    assert lock.acquire(timeout=30)
    waited = time.monotonic() - started
    lock.release()
    # Not before the lease ended (less the time the child took to
    # exit), and not long after it.
    assert 0.5 < waited < lease + 2.0, waited


@pytest.mark.parametrize('backend', NOTIFYING + ['memcached'])
def test_waiter_gives_up_at_its_timeout(make_store, backend):
    store = make_store(backend, lock_timeout=LONG_LEASE)
    lock = store.get_lock('k')
    assert lock.acquire()
    try:
        result = wait_in_child(store, 'k', 0.7)
    finally:
        lock.release()
    assert not result['got']
    assert 0.7 <= result['waited'] < 0.7 + 1.0, result


def test_cluster_notifies_for_keys_with_braces(make_store):
    # Unmangled keys with braces: the lock and its notice list still
    # share a slot (else the release script would be refused), and a
    # waiter is still woken by the release.
    store = make_store('cluster', mangle=lambda key: key,
                       lock_timeout=LONG_LEASE)
    for key in ('a{b}c', '}x{', '{}y', 'plain'):
        with store.get_lock(key) as lock:
            store.set(key, 1, lock=lock)
    lock = store.get_lock('}x{')
    assert lock.acquire()
    released = []

    def hold_then_release():
        time.sleep(HOLD / 2)
        released.append(time.time())
        lock.release()

    result = wait_in_child(store, '}x{', LONG_LEASE, hold_then_release)
    assert result['got']
    assert result['at'] - released[0] < 1.0, result
    assert result['tries'] <= 3, result
