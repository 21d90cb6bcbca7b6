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

"""The memcached lock across processes.

Children are spawned, not forked, so each builds its own store and
connections the way separate service processes do; they share only the
store name and the server.
"""

import multiprocessing
import os
import uuid

import pytest

from oslo_kvs_tests import stored

STORE = 'openstack.kvs.Memcached'
PROCESSES = 4
INCREMENTS = 25


def _store(name, args):
    return stored.make_store(STORE, name, **args)


def _increment(name, args, times, barrier):
    """Child: read, add one and write back under the lock, ``times``."""
    store = _store(name, args)
    barrier.wait(30)
    for _ in range(times):
        with store.get_lock('counter') as lock:
            value = store.get('counter')
            store.set('counter', value + 1, lock=lock)


def _take_and_die(name, args, taken):
    """Child: take the lock and exit without releasing it."""
    store = _store(name, args)
    store.get_lock('abandoned').acquire()
    taken.set()
    os._exit(0)


@pytest.fixture
def spawn():
    return multiprocessing.get_context('spawn')


@pytest.mark.parametrize('topology', ['memcached_server',
                                      'memcached_cluster'])
def test_no_increment_is_lost_across_processes(spawn, topology, request):
    args = request.getfixturevalue(topology).store_args
    name = 'mc-lock-%s' % uuid.uuid4()
    _store(name, args).set('counter', 0)
    barrier = spawn.Barrier(PROCESSES)
    children = [spawn.Process(target=_increment,
                              args=(name, args, INCREMENTS, barrier))
                for _ in range(PROCESSES)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [child.exitcode for child in children] == [0] * PROCESSES
    assert _store(name, args).get('counter') == PROCESSES * INCREMENTS


def test_lock_of_a_dead_process_frees_itself(spawn, memcached_server):
    args = dict(memcached_server.store_args, lock_timeout=1)
    name = 'mc-lock-%s' % uuid.uuid4()
    taken = spawn.Event()
    child = spawn.Process(target=_take_and_die, args=(name, args, taken))
    child.start()
    assert taken.wait(30)
    child.join(30)
    lock = _store(name, args).get_lock('abandoned')
    assert lock.acquire(blocking=False) is False
    # lock_timeout 1s, rounded up past memcached's clock: free within 3s.
    assert lock.acquire(timeout=5)
    lock.release()
