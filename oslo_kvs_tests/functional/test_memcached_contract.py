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

"""The backend contract against real memcached, one server and three."""

import pytest

from oslo_kvs import testing


class TestMemcachedContract(testing.StoreContract):
    """openstack.kvs.Memcached on one memcached server."""

    expire_time_alias = 'memcached_expire_time'
    # memcached's clock ticks once a second: expire_time=1 is gone within 2s.
    expiry_wait = 2.5

    @pytest.fixture(autouse=True)
    def _backend(self, memcached_server):
        self.backing_store = 'openstack.kvs.Memcached'
        self.backend_args = dict(memcached_server.store_args)


class TestMemcachedClusterContract(TestMemcachedContract):
    """openstack.kvs.Memcached on three servers through HashClient."""

    hypothesis_examples = 30

    @pytest.fixture(autouse=True)
    def _backend(self, memcached_cluster):
        self.backing_store = 'openstack.kvs.Memcached'
        self.backend_args = dict(memcached_cluster.store_args)
