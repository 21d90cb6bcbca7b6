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


"""``store.stats()`` and the OpenTelemetry rule, on the memory backend.

The same workload runs against real servers in
``functional/test_observe_servers.py``.
"""

import threading

import pytest

from oslo_kvs import exception
from oslo_kvs import observe
from oslo_kvs_tests import faults
from oslo_kvs_tests import stored

THREADS = 16
CALLS = 1000
#: One round of the mixed workload: ten calls, every outcome but refused.
ROUND = 10


def mixed_calls(store, tag, calls=CALLS):
    """``calls`` calls of every operation and outcome, on keys of ``tag``."""
    for i in range(calls // ROUND):
        key, fresh, missing = ('%s-%d' % (tag, i), '%s-add-%d' % (tag, i),
                               '%s-missing-%d' % (tag, i))
        store.set(key, i)                           # set ok
        assert store.get(key) == i                  # get hit
        with pytest.raises(exception.NotFound):
            store.get(missing)                      # get miss
        assert store.get_multi([key, key]) == [i, i]    # get_multi hit
        with pytest.raises(exception.NotFound):
            store.get_multi([key, missing])         # get_multi miss
        store.set_multi({key: i})                   # set_multi ok
        store.delete(key)                           # delete ok
        with pytest.raises(exception.NotFound):
            store.delete(key)                       # delete miss
        assert store.add(fresh, i)                  # add ok
        with pytest.raises(TypeError):
            store.get(i)                            # get error


def expected(rounds):
    """What :func:`mixed_calls` counts over ``rounds`` rounds."""
    zero = {'hits': 0, 'misses': 0, 'ok': 0, 'refused': 0, 'errors': {}}
    ops = {op: dict(zero, calls=0) for op in observe.OPERATIONS}
    ops['get'].update(calls=3 * rounds, hits=rounds, misses=rounds,
                      errors={'TypeError': rounds} if rounds else {})
    ops['get_multi'].update(calls=2 * rounds, hits=rounds, misses=rounds)
    ops['set'].update(calls=rounds, ok=rounds)
    ops['set_multi'].update(calls=rounds, ok=rounds)
    ops['delete'].update(calls=2 * rounds, ok=rounds, misses=rounds)
    ops['add'].update(calls=rounds, ok=rounds)
    return ops


def run_threads(store, threads=THREADS, calls=CALLS):
    """``threads`` threads of :func:`mixed_calls`; fails if one failed."""
    failures = []
    start = threading.Barrier(threads)

    def work(n):
        try:
            start.wait()
            mixed_calls(store, 'thread%d' % n, calls)
        except BaseException as exc:    # reported below, not lost
            failures.append(exc)
    workers = [threading.Thread(target=work, args=(n,))
               for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not failures, failures


@pytest.fixture
def memory():
    store = stored.make_store('openstack.kvs.Memory')
    yield store
    store.close()


def test_counts_add_up_exactly_under_threads(memory):
    # The memory backend's calls are short: threads switch inside the
    # counting itself, where a += on shared ints would lose counts.
    run_threads(memory)
    stats = memory.stats()
    assert stats['operations'] == expected(THREADS * CALLS // ROUND)
    assert (stats['store'], stats['backend']) == (
        memory.name, 'openstack.kvs.Memory')


def test_reading_does_not_change_the_counts(memory):
    memory.set('a', 1)
    first = memory.stats()
    assert memory.stats()['operations'] == first['operations']
    assert first['operations']['set'] == {
        'calls': 1, 'ok': 1, 'hits': 0, 'misses': 0, 'refused': 0,
        'errors': {}}


def test_lock_acquire_is_counted(memory):
    with memory.get_lock('k') as lock:
        memory.set('k', 1, lock=lock)
        other = memory.get_lock('k')
        assert not other.acquire(blocking=False)
    assert memory.stats()['operations']['lock'] == {
        'calls': 2, 'ok': 1, 'misses': 1, 'hits': 0, 'refused': 0,
        'errors': {}}


def test_atomic_operations_are_counted_once_each(memory):
    assert memory.update('list', lambda value: value + [1], default=[]) == [1]
    assert memory.incr('n') == 1        # through update's loop: one incr
    memory.touch('n', expire_time=60)
    with pytest.raises(exception.NotFound):
        memory.touch('missing')
    with pytest.raises(exception.NotFound):
        memory.update('missing', lambda value: value)
    with pytest.raises(ZeroDivisionError):
        memory.update('n', lambda value: value / 0)
    ops = memory.stats()['operations']
    assert ops['update'] == {
        'calls': 3, 'ok': 1, 'misses': 1, 'hits': 0, 'refused': 0,
        'errors': {'ZeroDivisionError': 1}}
    assert ops['incr'] == {
        'calls': 1, 'ok': 1, 'misses': 0, 'hits': 0, 'refused': 0,
        'errors': {}}
    assert ops['touch'] == {
        'calls': 2, 'ok': 1, 'misses': 1, 'hits': 0, 'refused': 0,
        'errors': {}}


def test_not_configured_raises_and_close_resets():
    store = stored.new_store()
    with pytest.raises(exception.NotConfigured):
        store.stats()
    with pytest.raises(exception.NotConfigured):
        store.get('a')
    stored.configure(store, 'openstack.kvs.Memory')
    assert store.stats()['operations']['get']['calls'] == 0
    store.set('a', 1)
    store.close()
    with pytest.raises(exception.NotConfigured):
        store.stats()
    stored.configure(store, 'openstack.kvs.Memory')
    assert store.stats()['operations']['set']['calls'] == 0
    store.close()


@pytest.mark.parametrize('method', ['os', 'c'])
def test_forked_child_starts_from_zero(memory, method):
    for _ in range(5):
        memory.set('a', 1)

    def child(index):
        before = memory.stats()['operations']['set']['calls']
        memory.set('a', 2)
        memory.get('a')
        ops = memory.stats()['operations']
        return {'before': before, 'set': ops['set']['calls'],
                'get': ops['get']['calls']}

    [result] = faults.in_forked_children(1, child, method=method)
    assert result == {'before': 0, 'set': 1, 'get': 1}
    ops = memory.stats()['operations']
    assert (ops['set']['calls'], ops['get']['calls']) == (5, 0)


def test_disabled_counting_reports_zeros(monkeypatch):
    monkeypatch.setattr(observe, 'ENABLED', False)
    store = stored.make_store('openstack.kvs.Memory')
    try:
        store.set('a', 1)
        stats = store.stats()
        assert stats['since'] is None
        assert stats['operations'] == expected(0)
    finally:
        store.close()
