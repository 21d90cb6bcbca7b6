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

"""memcached servers that hang, restart or crash under load: no wrong data.

Every test starts its own servers (``memcached_factory``) and keeps its
timeouts short; waits are bounded generously and assert behaviour only.
"""

import threading
import time

import pytest

from oslo_kvs import exception
from oslo_kvs_tests import faults
from oslo_kvs_tests import stored

STORE = 'openstack.kvs.Memcached'
WAIT = 15  # seconds; generous bounds on waits for a state change


def make_store(servers, **args):
    args.setdefault('socket_timeout', 0.3)
    return stored.make_store(
        STORE, url=[server.address for server in servers], **args)


def owner(store, key):
    """The server (host, port) holding ``key`` now.

    Internal on purpose: where a key goes after an ejection is the
    transport's placement, which no public API shows (nor should, just for
    tests).
    """
    cluster = store._state.backend._clients.get()
    return cluster.node_for(stored.data_key(store, key)).server


def until(check, what):
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, 'timed out waiting for ' + what
        time.sleep(0.05)


def succeeds(call):
    """Whether ``call`` got an answer (a missing key is one)."""
    try:
        call()
    except exception.NotFound:
        pass
    except exception.BackendError:
        return False
    return True


@pytest.mark.parametrize('flush_on_rejoin', [True, False])
def test_rejoining_server_serves_no_overwritten_or_deleted_value(
        memcached_factory, flush_on_rejoin):
    cluster = [memcached_factory() for _ in range(3)]
    victim = cluster[0]
    store = make_store(cluster, retry_attempts=1, retry_delay=0.1,
                       dead_retry=1.5, flush_on_rejoin=flush_on_rejoin)
    keys = ['key-%d' % n for n in range(90)]
    store.set_multi({key: 'v1' for key in keys})
    on_victim = [key for key in keys
                 if owner(store, key) == (victim.host, victim.port)]
    assert len(on_victim) >= 8
    rewritten, deleted = on_victim[::2], on_victim[1::2]

    victim.hang()
    try:
        # Reads only until it is ejected, so no write is left queued on it.
        until(lambda: succeeds(lambda: store.get_multi(keys)) and
              owner(store, on_victim[0]) != (victim.host, victim.port),
              'the hung server to be ejected')
        store.set_multi({key: 'v2' for key in rewritten})
        store.delete_multi(deleted)
        assert store.get_multi(rewritten) == ['v2'] * len(rewritten)
    finally:
        victim.resume()

    # After dead_retry it is taken back on the next call.
    until(lambda: owner(store, on_victim[0]) == (victim.host, victim.port),
          'the server to rejoin')
    stale = []
    for key in on_victim:
        try:
            if store.get(key) == 'v1':
                stale.append(key)
        except exception.NotFound:
            pass
    if flush_on_rejoin:
        assert stale == []
        store.set(on_victim[0], 'v3')  # and it serves again
        assert store.get(on_victim[0]) == 'v3'
    else:
        # What the option is for: without the flush, old values return.
        assert stale == on_victim


def test_restart_with_warm_connections_fails_no_call(memcached_factory):
    server = memcached_factory()
    store = make_store([server], pool_maxsize=8, socket_timeout=5)
    assert warm_up(store) > 1

    server.stop()
    server.start()  # it answers again once this returns
    failures = []

    def work(n):
        for i in range(50):
            try:
                store.set('k-%d' % n, i)
                assert store.get('k-%d' % n) == i
            except exception.BackendError as exc:
                failures.append(str(exc))

    run_threads(work, 8)
    assert failures == []
    server.stop()
    server.start()
    for i in range(20):  # and one call at a time
        store.set('k', i)
        assert store.get('k') == i


def warm_up(store, count=8):
    """Open up to ``count`` pooled connections with bursts of threads."""
    pool = stored.memcached_pool(store)
    for _ in range(100):
        burst = threading.Barrier(count)
        run_threads(lambda n: (burst.wait(WAIT), store.set('k%d' % n, n)),
                    count)
        if pool.open_connections() == count:
            break
    return pool.open_connections()


def run_threads(target, count):
    faults.run_threads(target, count, timeout=WAIT * 2)


def test_idle_connections_are_closed_after_the_unused_timeout(
        memcached_factory):
    server = memcached_factory()
    store = make_store([server], pool_maxsize=8, pool_unused_timeout=2)
    assert warm_up(store) > 1
    pool = stored.memcached_pool(store)
    time.sleep(2.5)
    store.get('k0')  # any call sweeps the idle ones
    assert pool.open_connections() == 1
    assert pool._size == 1


def test_kill_and_restart_of_one_of_three_under_load(memcached_factory):
    cluster = [memcached_factory() for _ in range(3)]
    victim = cluster[2]
    # A killed server refuses at once: the long timeout only keeps a busy
    # machine from making a healthy server look failed.
    store = make_store(cluster, socket_timeout=5, retry_attempts=1,
                       retry_delay=0.05, dead_retry=0.5)
    with faults.WriteLoad(store, threads=4, keys=50) as load:
        for _ in range(2):
            time.sleep(0.3)
            victim.kill()
            time.sleep(0.3)
            victim.start()
        time.sleep(0.5)
    assert load.failures, 'the kills went unnoticed'
    misnamed = [message for _, _, message in load.failures
                if victim.address not in message]
    assert not misnamed, misnamed[:3]
    # No write reported failed was stored all the same.
    assert load.stored_failures == []
