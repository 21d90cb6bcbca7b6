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

"""openstack.kvs.MongoDB after ``os.fork()``, on the session's server.

A store a pre-fork server's master used before forking keeps working in
every child, with a client of the child's own, also when a parent thread
was mid-operation at the fork; parent and children never see each other's
replies.
"""

import threading
import uuid

import oslo_kvs
from oslo_kvs_tests import faults


def test_children_forked_while_the_parent_works(mongo_server,
                                                mongo_collection):
    store = oslo_kvs.get_key_value_store('mongo-fork-%s' % uuid.uuid4())
    store.configure('openstack.kvs.MongoDB',
                    **mongo_server.collection_args(mongo_collection.name))
    store.set('warm', 'parent')
    stop = threading.Event()
    parent: list[dict] = []

    def busy():
        while not stop.is_set():
            parent.append(faults.workload(store, 'parent', 20))

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        results = faults.in_forked_children(
            3, lambda n: faults.workload(store, 'child%d' % n, 200),
            deadline=60)
    finally:
        stop.set()
        thread.join()
    assert results == [{'ops': 200, 'errors': 0, 'foreign': 0,
                        'first_errors': []}] * 3
    assert parent and all(r['errors'] == 0 and r['foreign'] == 0
                          for r in parent)
    assert store.get('warm') == 'parent'
    store.close()
