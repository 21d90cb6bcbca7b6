"""openstack.kvs.MongoDB after ``os.fork()``, on mongomock.

mongomock keeps its data in the process, so a child works on a copy: this
checks only that a child forked while a parent thread was mid-operation
works at once with a client of its own. Cross-process behaviour needs a
real server (``functional/test_mongo_real.py``).
"""

import uuid

import oslo_kvs
from oslo_kvs_tests import faults
from oslo_kvs_tests.unit.test_mongo_backend import REQUIRED
from oslo_kvs_tests.unit.test_mongo_contract import install_mongomock


def test_child_forked_mid_operation_has_its_own_client(monkeypatch):
    install_mongomock(monkeypatch)
    store = oslo_kvs.get_key_value_store('mongo-fork-%s' % uuid.uuid4())
    store.configure('openstack.kvs.MongoDB', **REQUIRED)
    store.set('warm', 'parent')
    backend = store._state.backend
    parent_client = id(backend._client)
    backend._index_ready = False

    def child(n):
        result = faults.workload(store, 'child', 100)
        result['own_client'] = id(backend._client) != parent_client
        return result

    # As if another thread were creating the TTL index at the fork.
    with backend._index_lock:
        results = faults.in_forked_children(1, child, deadline=20)
    assert results == [{'ops': 100, 'errors': 0, 'foreign': 0,
                        'first_errors': [], 'own_client': True}]
    assert store.get('warm') == 'parent'
