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

"""Lock rules on the memory backend: window, turns, bounded waits."""

import functools
import threading
import time

import pytest

from oslo_kvs import exception
from oslo_kvs import locking
from oslo_kvs_tests import faults
from oslo_kvs_tests import stored


make_store = functools.partial(stored.make_store, 'openstack.kvs.Memory')


def waiters(lock):
    """Threads of this process queued behind ``lock``'s key.

    Internal on purpose: the turn queue is the lock's own state; no public
    API shows who waits, nor should just for tests.
    """
    queue = locking._turns.get().queues.get(lock._turn_key)
    return len(queue.waiters) if isinstance(queue, locking._Queue) else 0


def wait_until(check, what, limit=10.0):
    end = time.monotonic() + limit
    while not check():
        assert time.monotonic() < end, 'timed out waiting for %s' % what
        time.sleep(0.005)


# --- lock_window ------------------------------------------------------------

@pytest.mark.parametrize('args, window', [
    ({}, 1.0),                                   # Keystone's LOCK_WINDOW
    ({'lock_timeout': 1}, 0.5),                  # at most half a lease
    ({'lock_timeout': 10, 'lock_window': 3}, 3.0),
    ({'lock_timeout': 10, 'lock_window': '0'}, 0.0),
    ({'lock_timeout': 4, 'lock_window': ''}, 1.0),
    ({'lock_timeout': 0}, 0.0),                  # locks never expire
])
def test_lock_window_values(args, window):
    assert make_store(**args).get_lock('k').lock_window == window


@pytest.mark.parametrize('value', [-1, 'soon', True, float('inf'), 2.6])
def test_bad_lock_window_is_refused_at_configure(value):
    store = stored.new_store()
    with pytest.raises(exception.ConfigurationError, match='lock_window'):
        store.configure('openstack.kvs.Memory', lock_timeout=5,
                        lock_window=value)
    assert not store.is_configured


def test_write_inside_the_window_is_refused():
    store = make_store(lock_timeout=1, lock_window=0.5)
    with store.get_lock('k') as lock:
        store.set('k', 1, lock=lock)             # early in the lease: fine
        time.sleep(0.6)
        assert not lock.expired
        with pytest.raises(exception.LockTimeout):
            store.set('k', 2, lock=lock)
        with pytest.raises(exception.LockTimeout):
            store.delete('k', lock=lock)
    assert store.get('k') == 1


def test_window_does_not_apply_without_locking():
    store = make_store(lock_timeout=1, locking=False)
    with store.get_lock('k') as lock:
        time.sleep(0.6)
        store.set('k', 1, lock=lock)
    assert store.get('k') == 1


# --- turns and waits -------------------------------------------------------

def test_threads_get_the_lock_in_arrival_order():
    store = make_store(lock_timeout=30)
    holder = store.get_lock('k')
    holder.acquire()
    order = []

    def take(index):
        with store.get_lock('k'):
            order.append(index)

    threads = []
    for index in range(5):
        thread = threading.Thread(target=take, args=(index,))
        thread.start()
        threads.append(thread)
        wait_until(lambda: waiters(holder) == index + 1,
                   'waiter %d' % index)
    holder.release()
    # The releasing thread asks again at once and queues behind them all.
    with store.get_lock('k'):
        order.append('again')
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2, 3, 4, 'again']
    assert waiters(holder) == 0
    # Internal, as in waiters(): an emptied queue is dropped, not kept.
    assert holder._turn_key not in locking._turns.get().queues


def test_acquire_never_waits_longer_than_its_timeout():
    store = make_store(lock_timeout=30)
    holder = store.get_lock('k')
    holder.acquire()
    other = store.get_lock('k')
    result = []
    started = time.monotonic()
    thread = threading.Thread(
        target=lambda: result.append(other.acquire(timeout=0.2)))
    thread.start()
    thread.join(10)
    assert result == [False]
    assert time.monotonic() - started < 5      # generous: 0.2 asked
    assert not other.active
    assert other.acquire(blocking=False) is False
    assert waiters(holder) == 0                # the timed-out waiter left
    holder.release()
    assert other.acquire(timeout=5)
    other.release()


def test_a_lock_never_released_frees_itself_for_waiting_threads():
    store = make_store(lock_timeout=0.5, lock_window=0.1)
    store.get_lock('k').acquire()              # leaked: never released
    lock = store.get_lock('k')
    started = time.monotonic()
    assert lock.acquire(timeout=10)
    assert 0.4 < time.monotonic() - started < 10
    store.set('k', 'mine', lock=lock)
    lock.release()
    assert store.get('k') == 'mine'


def test_a_lock_never_released_frees_itself_for_a_non_blocking_try():
    store = make_store(lock_timeout=0.3)
    leaked = store.get_lock('k')
    assert leaked.acquire()
    assert store.get_lock('k').acquire(blocking=False) is False
    time.sleep(0.5)
    later = store.get_lock('k')
    assert later.acquire(blocking=False) is True
    later.release()
    # The leaked holder's release neither frees nor breaks the new turn.
    leaked.release()
    assert store.get_lock('k').acquire(blocking=False) is True


# --- update() turns ----------------------------------------------------------

UPDATE_THREADS, UPDATES = 8, 20


def test_threads_of_a_process_update_one_key_in_turn():
    # Of several compare-and-sets of one version only one can win: the
    # threads of a process take turns, so none races another in vain.
    store = make_store()
    inside, most, calls = [0], [0], []
    guard = threading.Lock()

    def append(items, item):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            calls.append(item)
        time.sleep(0.001)    # long enough for the others to arrive
        with guard:
            inside[0] -= 1
        return items + [item]

    def work(thread):
        for n in range(UPDATES):
            store.update('k', functools.partial(append, item=(thread, n)),
                         default=[])
    faults.run_threads(work, UPDATE_THREADS, timeout=60)
    assert most[0] == 1
    # One call of fn per update: no conflict at all.
    assert len(calls) == UPDATE_THREADS * UPDATES
    assert sorted(store.get('k')) == sorted(calls)


def test_update_turns_pass_in_arrival_order():
    backend, order = object(), []
    first = locking.take_update_turn(backend, 'k')
    turns = locking._turns.get()

    def queued():
        # Internal, as in waiters(): the threads behind the turn.
        queue = turns.queues.get((id(backend), 'k'))
        return len(queue.waiters) if isinstance(queue, locking._Queue) else 0

    def take(index):
        turn = locking.take_update_turn(backend, 'k')
        order.append(index)
        locking.end_update_turn(turn)

    threads = []
    for index in range(4):
        threads.append(threading.Thread(target=take, args=(index,)))
        threads[-1].start()
        wait_until(lambda: queued() == index + 1, 'waiter %d' % index)
    locking.end_update_turn(first)
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2, 3]
    # Given back with nobody waiting, a turn leaves nothing behind.
    assert (id(backend), 'k') not in turns.queues
    locking.end_update_turn(locking.take_update_turn(backend, 'k'))
    assert (id(backend), 'k') not in turns.queues


def test_updates_of_other_keys_do_not_wait():
    store = make_store()
    entered, leave = threading.Event(), threading.Event()

    def blocked(value):
        entered.set()
        assert leave.wait(30)
        return value + 1
    worker = threading.Thread(
        target=lambda: store.update('a', blocked, default=0))
    worker.start()
    try:
        assert entered.wait(30)
        assert store.update('b', lambda value: value + 1, default=0) == 1
    finally:
        leave.set()
        worker.join(30)
    assert store.get('a') == 1


def test_update_inside_fn_of_the_same_key_does_not_hang(monkeypatch):
    # Its own thread holds the turn: after UPDATE_TURN_WAIT the inner
    # update goes ahead; the outer one then conflicts and runs fn again.
    monkeypatch.setattr(locking, 'UPDATE_TURN_WAIT', 0.1)
    store = make_store()
    store.set('k', 0)
    nested = []

    def outer(value):
        if not nested:
            nested.append(store.update('k', lambda inner: inner + 10))
        return value + 1
    assert store.update('k', outer) == 11
    assert nested == [10]
    assert store.get('k') == 11
