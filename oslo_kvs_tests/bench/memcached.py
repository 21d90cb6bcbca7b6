"""oslo_kvs on memcached against raw pymemcache and oslo.cache.

One memcached, started here on a free loopback port, serves all three:

- raw pymemcache: a plain ``pymemcache.Client`` with oslo_kvs's own
  serializer (``oslo_kvs.serialization``) applied by hand, the floor. It
  has the store's socket timeout and reads keys of the store's key length;
  an untimed client is shown for information;
- oslo_kvs: a store on ``openstack.kvs.Memcached``;
- oslo.cache: a ``dogpile.cache.pymemcache`` region configured by
  ``oslo_cache.core.configure_cache_region`` from a ``ConfigOpts``.

Targets: ``get`` <= 1.10x raw; ``get_multi`` of 100 keys <= 1.25x raw
``get_many`` plus deserialization and >= 2.5x faster than oslo.cache.
"""

import hashlib
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
RAW = 'raw pymemcache + deserialize'
KVS = 'oslo_kvs Memcached'
CACHE = 'oslo.cache pymemcache region'
UNTIMED = 'raw, no socket timeout (info)'
TIMEOUT = 1.0
# More batches than the default: this machine's noise comes in bursts.
BATCHES = 30


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
    """Measure get and get_multi of 100 keys for the three contenders."""
    # One worker thread: every connection is served alike, so no contender
    # gains from landing on a less busy memcached thread.
    server = servers.MemcachedServer(extra=['-t', '1']).start()
    try:
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
        # Same length and shape as the store's mangled keys, so both send
        # and parse the same bytes; only the mangling is left to compare.
        raw_keys = [hashlib.sha256(b'raw-' + key.encode()).hexdigest()
                    for key in keys]
        store.set_multi({key: VALUE for key in keys})
        raw.set_many({key: serialization.dumps(VALUE) for key in raw_keys})
        region.set_multi({key: VALUE for key in keys})
        loads = serialization.loads

        def raw_get_multi():
            found = raw.get_many(raw_keys)
            return [loads(found[key]) for key in raw_keys]

        # Sanity: every contender reads the value, not a miss.
        assert store.get(keys[1]) == VALUE
        assert loads(raw.get(raw_keys[1])) == VALUE
        assert region.get(keys[1]) == VALUE
        assert raw_get_multi() == store.get_multi(keys) == \
            region.get_multi(keys)

        return [
            common.Result(SUITE, 'get', common.compare({
                RAW: lambda: loads(raw.get(raw_keys[1])),
                UNTIMED: lambda: loads(untimed.get(raw_keys[1])),
                KVS: lambda: store.get(keys[1]),
                CACHE: lambda: region.get(keys[1]),
            }, rounds, BATCHES), RAW),
            common.Result(SUITE, 'get_multi 100', common.compare({
                RAW: raw_get_multi,
                KVS: lambda: store.get_multi(keys),
                CACHE: lambda: region.get_multi(keys),
            }, max(rounds // 10, BATCHES), BATCHES), RAW),
        ]
    finally:
        server.cleanup()
