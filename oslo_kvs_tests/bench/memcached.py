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

"""oslo_kvs on memcached against raw pymemcache and oslo.cache.

One memcached, started here on a free loopback port, serves all three:

- raw pymemcache: a plain ``pymemcache.Client`` with oslo_kvs's own
  serializer (``oslo_kvs.serialization``) applied by hand, the floor. It
  has the store's socket timeout and reads keys of the store's key length;
  an untimed client is shown for information;
- oslo_kvs: a store on ``openstack.kvs.Memcached``;
- oslo.cache: a ``dogpile.cache.pymemcache`` region configured by
  ``oslo_cache.core.configure_cache_region`` from a ``ConfigOpts``.

Operations: ``get`` (one hot key), ``get`` of cold keys (each call a key
the store has not hashed recently), ``set``, and ``get_multi`` /
``set_multi`` of 100 keys.

Targets: ``get`` and ``set`` <= 1.10x raw; the 100-key operations and
cold-key ``get`` <= 1.15x raw.
"""

import itertools
import uuid

from oslo_cache import core as oslo_cache
from oslo_config import cfg
from pymemcache.client import base as pymc_base

import oslo_kvs
from oslo_kvs import serialization
from oslo_kvs_tests.bench import common
from oslo_kvs_tests import servers

VALUE = {'id': 'a' * 32, 'roles': ['admin', 'member'], 'expires': None}
SUITE = 'memcached'
RAW = 'raw pymemcache + same serializer'
KVS = 'oslo_kvs Memcached'
CACHE = 'oslo.cache pymemcache region'
UNTIMED = 'raw, no socket timeout (info)'
TIMEOUT = 1.0
COLD_KEYS = 20000  # more than the store's cache of mangled keys


def _oslo_cache_region(address):
    conf = cfg.ConfigOpts()
    oslo_cache.configure(conf)
    conf([], project='oslo-kvs-bench')
    conf.set_override('enabled', True, group='cache')
    conf.set_override('backend', 'dogpile.cache.pymemcache', group='cache')
    conf.set_override('memcache_servers', [address], group='cache')
    conf.set_override('socket_timeout', TIMEOUT, group='cache')
    region = oslo_cache.create_region()
    oslo_cache.configure_cache_region(conf, region)
    return region


def run(rounds):
    """Measure get, set and their 100-key forms for the three contenders."""
    # One worker thread: every connection is served alike, so no contender
    # gains from landing on a less busy memcached thread.
    server = servers.MemcachedServer(extra=['-t', '1'],
                                     cpu=common.cpu()).start()
    try:
        return _measure(server, rounds)
    finally:
        server.cleanup()


def _measure(server, rounds):
    store = oslo_kvs.get_key_value_store('bench-%s' % uuid.uuid4())
    store.configure('openstack.kvs.Memcached', url=server.address,
                    socket_timeout=TIMEOUT)
    # The store's socket settings: a client without a timeout saves a
    # poll() per reply but can hang forever on a stuck server.
    raw = pymc_base.Client((server.host, server.port), no_delay=True,
                           default_noreply=False, timeout=TIMEOUT,
                           connect_timeout=TIMEOUT)
    untimed = pymc_base.Client((server.host, server.port),
                               no_delay=True, default_noreply=False)
    region = _oslo_cache_region(server.address)

    keys = ['key-%03d' % i for i in range(100)]
    raw_keys = [common.raw_key(key) for key in keys]
    mapping = {key: VALUE for key in keys}
    store.set_multi(mapping)
    raw.set_many({key: serialization.dumps(VALUE) for key in raw_keys})
    region.set_multi(mapping)
    dumps, loads = serialization.dumps, serialization.loads

    cold = ['cold-%05d' % i for i in range(COLD_KEYS)]
    for start in range(0, COLD_KEYS, 1000):
        chunk = {key: VALUE for key in cold[start:start + 1000]}
        store.set_multi(chunk)
        region.set_multi(chunk)
        raw.set_many({common.raw_key(key): dumps(VALUE) for key in chunk})
    kvs_cold = itertools.cycle(cold).__next__
    dogpile_cold = itertools.cycle(cold).__next__
    raw_cold = itertools.cycle([common.raw_key(key) for key in cold]).__next__

    def raw_get_multi():
        found = raw.get_many(raw_keys)
        return [loads(found[key]) for key in raw_keys]

    def raw_set_multi():
        raw.set_many({key: dumps(value) for key, value in zip(
            raw_keys, mapping.values())})

    # Sanity: every contender reads the value, not a miss.
    assert store.get(keys[1]) == VALUE
    assert loads(raw.get(raw_keys[1])) == VALUE
    assert region.get(keys[1]) == VALUE
    assert raw_get_multi() == store.get_multi(keys) == \
        region.get_multi(keys)

    multi_rounds = max(rounds // 10, 30)
    return [
        common.Result(SUITE, 'get', common.compare({
            RAW: lambda: loads(raw.get(raw_keys[1])),
            UNTIMED: lambda: loads(untimed.get(raw_keys[1])),
            KVS: lambda: store.get(keys[1]),
            CACHE: lambda: region.get(keys[1]),
        }, rounds), RAW),
        common.Result(SUITE, 'get, cold keys', common.compare({
            RAW: lambda: loads(raw.get(raw_cold())),
            KVS: lambda: store.get(kvs_cold()),
            CACHE: lambda: region.get(dogpile_cold()),
        }, rounds), RAW),
        common.Result(SUITE, 'set', common.compare({
            RAW: lambda: raw.set(raw_keys[2], dumps(VALUE)),
            KVS: lambda: store.set(keys[2], VALUE),
            CACHE: lambda: region.set(keys[2], VALUE),
        }, rounds), RAW),
        common.Result(SUITE, 'get_multi 100', common.compare({
            RAW: raw_get_multi,
            KVS: lambda: store.get_multi(keys),
            CACHE: lambda: region.get_multi(keys),
        }, multi_rounds), RAW),
        common.Result(SUITE, 'set_multi 100', common.compare({
            RAW: raw_set_multi,
            KVS: lambda: store.set_multi(mapping),
            CACHE: lambda: region.set_multi(mapping),
        }, multi_rounds), RAW),
    ]
