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

"""oslo_kvs on the memory backend against dogpile.cache.memory and cachetools.

``get`` is measured for an immutable value (a str: nothing to copy) and for
a dict (the store must hand out a private copy). dogpile's memory region
and a ``cachetools.TTLCache`` return the stored object itself, shared with
every caller: they are the floor, not an equivalent.

Targets: ``get`` <= 1.0 us for an immutable value, <= 1.6 us for a dict.
"""

import uuid

import cachetools
from dogpile.cache import region as dogpile_region

import oslo_kvs
from oslo_kvs_tests.bench import common

VALUE = {'id': 'a' * 32, 'roles': ['admin', 'member'], 'expires': None}
IMMUTABLE = 'a' * 32
SUITE = 'memory'
DOGPILE = 'dogpile.cache.memory region'
KVS = 'oslo_kvs Memory'
CACHETOOLS = 'cachetools.TTLCache (info)'
# Calls take a microsecond: many short rounds, so that most rounds see no
# preemption by the other processes of a shared machine.
BATCHES = 100


def run(rounds):
    store = oslo_kvs.get_key_value_store('bench-%s' % uuid.uuid4())
    store.configure('openstack.kvs.Memory')
    region = dogpile_region.make_region().configure('dogpile.cache.memory')
    ttl_cache = cachetools.TTLCache(maxsize=1000, ttl=3600)
    keys = ['key-%03d' % i for i in range(100)]
    for target in (store, region):
        target.set_multi({k: VALUE for k in keys})
        target.set('str', IMMUTABLE)
    ttl_cache.update({k: VALUE for k in keys})
    ttl_cache['str'] = IMMUTABLE
    return [
        common.Result(SUITE, 'get (str value)', common.compare({
            DOGPILE: lambda: region.get('str'),
            KVS: lambda: store.get('str'),
            CACHETOOLS: lambda: ttl_cache['str'],
        }, rounds * 10, BATCHES), DOGPILE),
        common.Result(SUITE, 'get (dict value)', common.compare({
            DOGPILE: lambda: region.get('key-001'),
            KVS: lambda: store.get('key-001'),
            CACHETOOLS: lambda: ttl_cache['key-001'],
        }, rounds * 10, BATCHES), DOGPILE),
        common.Result(SUITE, 'get_multi 100', common.compare({
            DOGPILE: lambda: region.get_multi(keys),
            KVS: lambda: store.get_multi(keys),
            CACHETOOLS: lambda: [ttl_cache[k] for k in keys],
        }, rounds // 2, BATCHES // 2), DOGPILE),
    ]
