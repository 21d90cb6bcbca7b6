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

"""openstack.kvs.MongoDB when its server stops, hangs and restarts.

Every test starts its own SecantusDB (``mongo_factory``), also when
``OSLO_KVS_MONGO_URL`` names a real server: stopping a shared server would
break other tests. A restart reopens the same WiredTiger directory, so
what was written before is there after, as with a restarted mongod.
"""

import time
import uuid

import pytest

from oslo_kvs import exception
from oslo_kvs_tests import faults
from oslo_kvs_tests import stored

STORE = 'openstack.kvs.MongoDB'
#: The client timeouts the stores here are configured with (seconds).
TIMEOUT = 1.0
# Generous: these bounds catch a hang, they do not measure speed.
SLACK = 4.0


def make_store(server):
    """A store on its own collection of ``server``, with short timeouts."""
    args = server.collection_args('kvs_%s' % uuid.uuid4().hex)
    args.update(server_selection_timeout=TIMEOUT, connect_timeout=TIMEOUT,
                socket_timeout=TIMEOUT)
    return stored.make_store(STORE, **args)


@pytest.fixture
def closing():
    """Close the backends of the stores a test lists, afterwards."""
    stores = []
    yield stores
    for store in stores:
        store.close()


def wait_until_served(store, timeout=60):
    """Retry a read until the restarted server answers; fail if never."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return store.get('k')
        except exception.BackendError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_stopped_server_fails_fast_then_restart_keeps_data(mongo_factory,
                                                           closing):
    server = mongo_factory()
    store = make_store(server)
    closing.append(store)
    store.set('k', 'before')
    server.stop()
    faults.assert_every_operation_fails(store, server.address, STORE,
                                        bound=TIMEOUT + SLACK)
    server.start()
    # No reconfiguration: the client finds the server again by itself,
    # and the same data directory holds what was written before the stop.
    assert wait_until_served(store) == 'before'
    faults.assert_every_operation_works(store)


def test_server_stopping_mid_run_fails_fast_and_recovers(mongo_factory,
                                                         closing):
    server = mongo_factory()
    store = make_store(server)
    closing.append(store)
    outcomes = faults.stop_mid_run(store, server, down_for=2 * TIMEOUT,
                                   recovery_deadline=60)
    # Two operations (set, get) per outcome, each bounded by the timeouts.
    faults.assert_stop_noticed_and_recovered(
        outcomes, server.address, bound=2 * (TIMEOUT + SLACK))


def test_hung_server_gives_backend_error_within_socket_timeout(
        mongo_factory, closing):
    server = mongo_factory()
    store = make_store(server)
    closing.append(store)
    store.set('k', 1)
    server.hang()
    try:
        for name in ('get', 'set', 'get_multi'):
            started = time.monotonic()
            with pytest.raises(exception.BackendError) as info:
                faults.operations(store)[name]()
            assert time.monotonic() - started < TIMEOUT + SLACK, name
            assert server.address in str(info.value), name
    finally:
        server.resume()
    store.set('k', 2)
    assert wait_until_served(store) == 2
