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

"""openstack.kvs.Memcached when servers stop, hang and come back.

Every test starts its own servers (``memcached_factory``): stopping the
shared session servers would break other tests.
"""

import functools
import threading
import time

from pymemcache.client import base as pymc_base
import pytest

from oslo_kvs import exception
from oslo_kvs_tests import faults
from oslo_kvs_tests import stored

STORE = 'openstack.kvs.Memcached'
# Generous: these bounds catch a hang, they do not measure speed.
SLACK = 3.0


make_store = functools.partial(stored.make_store, STORE)


def test_only_server_stops_then_comes_back(memcached_factory):
    server = memcached_factory()
    store = make_store(url=server.address, socket_timeout=1)
    store.set('k', 'before')
    server.stop()
    faults.assert_every_operation_fails(store, server.address, STORE)
    server.start()
    # No reconfiguration: the next operations reconnect by themselves.
    with pytest.raises(exception.NotFound):
        store.get('k')  # a restarted memcached is empty
    faults.assert_every_operation_works(store)


def test_server_stopping_mid_run_fails_fast_and_recovers(memcached_factory):
    server = memcached_factory()
    store = make_store(url=server.address, socket_timeout=1)
    outcomes = faults.stop_mid_run(store, server, down_for=0.5,
                                   recovery_deadline=10)
    faults.assert_stop_noticed_and_recovered(outcomes, server.address,
                                             bound=1 + SLACK)


def test_hung_server_gives_backend_error_within_socket_timeout(
        memcached_factory):
    server = memcached_factory()
    store = make_store(url=server.address, socket_timeout=0.5,
                       pool_maxsize=1, pool_connection_get_timeout=0.1)
    store.set('k', 1)
    server.hang()
    try:
        started = time.monotonic()
        with pytest.raises(exception.BackendError,
                           match=server.address) as info:
            store.get('k')
        assert time.monotonic() - started < 0.5 + SLACK
        assert 'timed out' in str(info.value)

        # While the only connection waits on the hung server, another
        # caller gets a clear error from the pool instead of waiting.
        blocked = threading.Thread(target=_swallow_backend_error,
                                   args=(store.get, 'k'))
        blocked.start()
        while stored.memcached_pool(store)._idle:
            time.sleep(0.001)
        with pytest.raises(exception.BackendError,
                           match='no free connection'):
            store.get('k')
        blocked.join()
    finally:
        server.resume()
    assert store.get('k') == 1


def _swallow_backend_error(call, *args):
    try:
        call(*args)
    except exception.BackendError:
        pass


def test_one_of_three_stops_mid_workload(memcached_factory):
    cluster = [memcached_factory() for _ in range(3)]
    victim = cluster[1]
    store = make_store(url=[server.address for server in cluster],
                       socket_timeout=0.5, retry_attempts=1,
                       retry_delay=0.1, dead_retry=1)
    keys = ['key-%d' % i for i in range(60)]
    store.set_multi({key: key for key in keys})
    # Which server holds each key, asked of the servers themselves.
    raw = pymc_base.Client((victim.host, victim.port))
    victim_keys = {key for key in keys
                   if raw.get(stored.data_key(store, key)) is not None}
    raw.close()
    assert 0 < len(victim_keys) < len(keys)

    victim.stop()
    with pytest.raises(exception.BackendError, match=victim.address):
        store.get_multi(keys)
    errors = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        failed = False
        for key in keys:
            try:
                store.set(key, key)
                assert store.get(key) == key
            except exception.BackendError as exc:
                errors.append((key, str(exc)))
                failed = True
        if not failed:
            break
    # The others kept serving; the victim's keys failed until it was
    # ejected, then moved to the survivors.
    assert not failed, 'the stopped server was never ejected'
    assert errors
    assert {key for key, _ in errors} <= victim_keys
    assert all(victim.address in message for _, message in errors)
    assert store.get_multi(keys) == keys

    # Back after dead_retry, it is tried again and takes keys again.
    victim.start()
    raw = pymc_base.Client((victim.host, victim.port))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        store.set_multi({key: key for key in keys})
        if raw.stats()[b'curr_items']:
            break
        time.sleep(0.2)
    assert raw.stats()[b'curr_items'] > 0
