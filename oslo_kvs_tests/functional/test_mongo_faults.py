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

"""openstack.kvs.MongoDB when its server stops, hangs, restarts, and forks.

Every test starts its own SecantusDB (``mongo_factory``), also when
``OSLO_KVS_MONGO_URL`` names a real server: stopping a shared server would
break other tests. A restart reopens the same WiredTiger directory, so
what was written before is there after, as with a restarted mongod.
"""

import os
import threading
import time
import uuid

import pytest

import oslo_kvs
from oslo_kvs import exception

STORE = 'openstack.kvs.MongoDB'
#: The client timeouts the stores here are configured with (seconds).
TIMEOUT = 1.0
# Generous: these bounds catch a hang, they do not measure speed.
SLACK = 4.0


def make_store(server, **extra):
    store = oslo_kvs.get_key_value_store('mongo-fault-%s' % uuid.uuid4())
    args = server.collection_args('kvs_%s' % uuid.uuid4().hex)
    args.update(server_selection_timeout=TIMEOUT, connect_timeout=TIMEOUT,
                socket_timeout=TIMEOUT)
    args.update(extra)
    store.configure(STORE, **args)
    return store


@pytest.fixture
def closing():
    """Close the backends of the stores a test lists, afterwards."""
    stores = []
    yield stores
    for store in stores:
        store.close()


def operations(store):
    return {
        'get': lambda: store.get('k'),
        'set': lambda: store.set('k', 1),
        'get_multi': lambda: store.get_multi(['k', 'j']),
        'set_multi': lambda: store.set_multi({'k': 1, 'j': 2}),
        'delete_multi': lambda: store.delete_multi(['k', 'j']),
        'add': lambda: store.add('k', 1),
        'delete': lambda: store.delete('k'),
        'lock': lambda: store.get_lock('k').acquire(blocking=False),
    }


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
    for name, call in operations(store).items():
        started = time.monotonic()
        with pytest.raises(exception.BackendError) as info:
            call()
        assert time.monotonic() - started < TIMEOUT + SLACK, name
        assert server.address in str(info.value), name
        assert STORE in str(info.value), name
    server.start()
    # No reconfiguration: the client finds the server again by itself,
    # and the same data directory holds what was written before the stop.
    assert wait_until_served(store) == 'before'
    store.set('k', 'after')
    assert store.get('k') == 'after'
    store.set_multi({'k': 1, 'j': 2})
    assert store.get_multi(['k', 'j']) == [1, 2]
    store.delete_multi(['j'])
    assert store.add('j', 3)
    store.delete('j')
    with store.get_lock('k') as lock:
        store.set('k', 'locked', lock=lock)
    assert store.get('k') == 'locked'


def test_server_stopping_mid_run_fails_fast_and_recovers(mongo_factory,
                                                         closing):
    server = mongo_factory()
    store = make_store(server)
    closing.append(store)
    outcomes = []
    stop = threading.Event()

    def workload():
        n = 0
        while not stop.is_set():
            n += 1
            started = time.monotonic()
            try:
                store.set('k', n)
                assert store.get('k') == n
                outcome = 'ok'
            except exception.BackendError as exc:
                outcome = str(exc)
            except Exception as exc:  # recorded, and fails the test below
                outcome = repr(exc)
            outcomes.append((outcome, time.monotonic() - started))
            time.sleep(0.005)

    worker = threading.Thread(target=workload)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while not outcomes and time.monotonic() < deadline:
            time.sleep(0.05)
        server.stop()
        time.sleep(2 * TIMEOUT)
        server.start()
        deadline = time.monotonic() + 60
        while outcomes[-1][0] != 'ok' and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join()
    failures = [outcome for outcome, _ in outcomes if outcome != 'ok']
    assert failures, 'the stop went unnoticed'
    assert all(server.address in outcome for outcome in failures), failures
    assert outcomes[-1][0] == 'ok', 'no recovery after the restart'
    # Two operations (set, get) per outcome, each bounded by the timeouts.
    assert max(took for _, took in outcomes) < 2 * (TIMEOUT + SLACK)


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
                operations(store)[name]()
            assert time.monotonic() - started < TIMEOUT + SLACK, name
            assert server.address in str(info.value), name
    finally:
        server.resume()
    store.set('k', 2)
    assert wait_until_served(store) == 2


def _in_child(work):
    """Run ``work()`` in a forked child; its exit status and message."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            os.close(read)
            message = work()
            status = 0
        except BaseException as exc:
            message = repr(exc)
        finally:
            os.write(write, str(message).encode()[:4000])
            os._exit(status)
    os.close(write)
    chunks = []
    while True:
        chunk = os.read(read, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b''.join(chunks).decode()


def _own_values(store, tag, rounds=200):
    """Write and read back values only this process writes; count them."""
    keys = ['%s-%d' % (tag, i % 10) for i in range(rounds)]
    for i, key in enumerate(keys):
        value = '%s:%d' % (tag, i)
        store.set(key, value)
        got = store.get(key)
        if got != value:
            raise AssertionError('%s read %r, wrote %r' % (tag, got, value))
        assert store.get_multi([key, key]) == [value, value]
    return 'ok %d' % rounds


@pytest.mark.parametrize('used', [False, True],
                         ids=['after-configure', 'after-use'])
def test_fork_child_works_and_sees_no_foreign_replies(
        mongo_server, mongo_collection, used, closing):
    # The session's server: nothing here stops it.
    store = oslo_kvs.get_key_value_store('mongo-fork-%s' % uuid.uuid4())
    # Timeouts turn a reply that never comes into a failure, not a hang.
    store.configure(STORE, **mongo_server.collection_args(
        mongo_collection.name), socket_timeout=10)
    closing.append(store)
    if used:
        store.set('shared', 'from-parent')
        assert store.get('shared') == 'from-parent'
    # The parent keeps its connections busy while the child runs, so a
    # socket both used would mix their replies.
    stop = threading.Event()
    errors = []

    def parent_load():
        while not stop.is_set():
            try:
                _own_values(store, 'parent', rounds=20)
            except Exception as exc:
                errors.append(repr(exc))
                return

    worker = threading.Thread(target=parent_load)
    worker.start()
    try:
        status, message = _in_child(lambda: _own_values(store, 'child'))
    finally:
        stop.set()
        worker.join()
    assert (status, message) == (0, 'ok 200')
    assert errors == []
    assert store.get('child-3').startswith('child:')
    if used:
        assert store.get('shared') == 'from-parent'
