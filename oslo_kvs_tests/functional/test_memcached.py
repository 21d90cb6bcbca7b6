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
