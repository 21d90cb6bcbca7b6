"""oslo_kvs on the memory backend against dogpile.cache's memory region."""

import uuid

from dogpile.cache import region as dogpile_region

import oslo_kvs
from oslo_kvs_tests.bench import common

VALUE = {'id': 'a' * 32, 'roles': ['admin', 'member'], 'expires': None}


def run(rounds):
    store = oslo_kvs.get_key_value_store('bench-%s' % uuid.uuid4())
    store.configure('openstack.kvs.Memory')
    region = dogpile_region.make_region().configure('dogpile.cache.memory')
    keys = ['key-%03d' % i for i in range(100)]
    store.set_multi({k: VALUE for k in keys})
    region.set_multi({k: VALUE for k in keys})
    return [
        common.Result('memory', 'get', common.compare({
            'dogpile.cache.memory region': lambda: region.get('key-001'),
            'oslo_kvs Memory': lambda: store.get('key-001'),
        }, rounds), 'dogpile.cache.memory region'),
        common.Result('memory', 'get_multi 100', common.compare({
            'dogpile.cache.memory region': lambda: region.get_multi(keys),
            'oslo_kvs Memory': lambda: store.get_multi(keys),
        }, rounds // 20), 'dogpile.cache.memory region'),
    ]
