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

"""openstack.kvs.Redis on a Cluster with a master down or hung.

The test starts a Cluster of its own: it kills one of its masters.
"""

import functools
import time

import pytest

from oslo_kvs import exception
from oslo_kvs_tests import servers
from oslo_kvs_tests import stored

SLACK = 3.0  # generous: catches a hang, does not measure speed

make_store = functools.partial(stored.make_store, 'openstack.kvs.Redis')


@pytest.fixture
def own_cluster():
    yield from servers.running(servers.RedisClusterGroup())


def slot_zero_master(group):
    """The node of ``group`` that serves hash slot 0."""
    for entry in group.nodes[0].client().cluster('slots'):
        if entry[0] == 0:
            port = entry[2][1]
            return next(node for node in group.nodes if node.port == port)
    raise AssertionError('no node serves slot 0')


def test_cluster_starts_with_the_slot_zero_master_down(own_cluster):
    down = slot_zero_master(own_cluster)
    others = [node.address for node in own_cluster.nodes if node is not down]
    down.kill()
    for listed in ([node.address for node in own_cluster.nodes], others):
        store = make_store(cluster_nodes=listed, socket_timeout=0.5)
        served = failed = 0
        for n in range(30):
            key = 'key-%d' % n
            started = time.monotonic()
            try:
                store.set(key, n)
                assert store.get(key) == n
                served += 1
            except exception.BackendError:
                # Keys of the dead master fail, within the timeout.
                failed += 1
            assert time.monotonic() - started < 2 * 0.5 + SLACK
        assert served and failed, (served, failed)


def test_calls_on_a_hung_master_end_within_the_socket_timeout(own_cluster):
    store = make_store(socket_timeout=0.5, **own_cluster.store_args)
    keys = ['key-%d' % n for n in range(40)]
    store.set_multi({key: 1 for key in keys})
    hung = slot_zero_master(own_cluster)
    hung.hang()
    try:
        for name, call in [
                ('get_multi', lambda: store.get_multi(keys)),
                ('set_multi', lambda: store.set_multi({k: 2 for k in keys})),
                ('delete_multi', lambda: store.delete_multi(keys))]:
            started = time.monotonic()
            with pytest.raises(exception.BackendError) as info:
                call()
            # One socket_timeout, however many keys the hung node holds.
            assert time.monotonic() - started < 0.5 + SLACK, name
            assert 'node %s' % hung.address in str(info.value), name
    finally:
        hung.resume()
    store.set_multi({key: 3 for key in keys})
    assert store.get_multi(keys) == [3] * len(keys)
