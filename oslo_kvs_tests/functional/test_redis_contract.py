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

"""The backend contract on ``openstack.kvs.Redis``, in each of its modes."""

import pytest

from oslo_kvs import testing


class _RedisContract(testing.StoreContract):
    expire_time_alias = 'redis_expiration_time'
    backing_store = 'openstack.kvs.Redis'
    # Redis expires keys to the millisecond.
    expiry_wait = 1.3


class TestRedisContract(_RedisContract):
    """One standalone redis-server."""

    @pytest.fixture(autouse=True)
    def _backend(self, redis_server):
        self.backend_args = redis_server.store_args


class TestRedisKeyPrefixContract(_RedisContract):
    """A shared server, every key under a namespace of the deployment's."""

    hypothesis_examples = 20

    @pytest.fixture(autouse=True)
    def _backend(self, redis_server):
        self.backend_args = dict(redis_server.store_args,
                                 key_prefix='region-one:keystone/')


class TestRedisSentinelContract(_RedisContract):
    """A master and a replica behind three sentinels, all with passwords."""

    @pytest.fixture(autouse=True)
    def _backend(self, redis_sentinel_group):
        self.backend_args = redis_sentinel_group.store_args


class TestRedisClusterContract(_RedisContract):
    """A three-master Redis Cluster."""

    @pytest.fixture(autouse=True)
    def _backend(self, redis_cluster):
        self.backend_args = redis_cluster.store_args
