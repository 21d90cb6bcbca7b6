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

A store a pre-fork server's master configured, or also used, before
forking keeps working in every child, with a client of the child's own,
also when a parent thread was mid-operation at the fork; parent and
children never see each other's replies.
"""

import threading

import pytest

from oslo_kvs_tests import faults
from oslo_kvs_tests import stored


@pytest.mark.parametrize('used', [False, True],
                         ids=['after-configure', 'after-use'])
def test_children_forked_while_the_parent_works(mongo_server,
                                                mongo_collection, used):
    # Timeouts turn a reply that never comes into a failure, not a hang.
    store = stored.make_store(
        'openstack.kvs.MongoDB',
        **mongo_server.collection_args(mongo_collection.name),
        socket_timeout=10)
    if used:
        store.set('warm', 'parent')
        assert store.get('warm') == 'parent'
    # The parent keeps its connections busy while the children run, so a
    # socket both used would mix their replies.
    stop = threading.Event()
    parent: list[dict] = []

    def busy():
        while not stop.is_set():
            parent.append(faults.workload(store, 'parent', 20))

    def child(n):
        tag = 'child%d' % n
        result = faults.workload(store, tag, 200)
        # A key asked for twice comes back twice, each time.
        result['repeated'] = []
        for i in range(20):
            store.set(tag, i)
            got = store.get_multi([tag, tag])
            if got != [i, i]:
                result['repeated'].append(got)
        return result

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        results = faults.in_forked_children(3, child, deadline=60)
    finally:
        stop.set()
        thread.join()
    assert results == [{'ops': 200, 'errors': 0, 'foreign': 0,
                        'first_errors': [], 'repeated': []}] * 3
    assert parent and all(r['errors'] == 0 and r['foreign'] == 0
                          for r in parent)
    # What a child wrote is on the server the parent reads.
    assert store.get('child2-3')[0] == 'child2'
    if used:
        assert store.get('warm') == 'parent'
    store.close()
