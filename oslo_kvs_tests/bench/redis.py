"""oslo_kvs on Redis against raw redis-py and dogpile.cache.redis.

The suite starts its own redis-server on a free loopback port and measures,
interleaved on that one server:

* ``raw redis-py``: the same client, protocol and serializer as the
  backend (oslo_kvs's ``serialization.dumps``/``loads``) and plain keys, so
  the ratio is exactly what the facade adds: key checks, namespacing,
  mangling, NotFound handling, error wrapping;
* ``oslo_kvs Redis``: ``openstack.kvs.Redis`` with ``expire_time``;
* ``dogpile.cache.redis via oslo.cache``: a region configured by
  ``oslo_cache.configure_cache_region`` from a ``[cache]`` section, for
  reference (it pickles ``CachedValue`` wrappers, so its serializer
  differs);
* for reads, raw redis-py again on the very keys oslo_kvs stores (64-hex
  SHA-256 names instead of short ones), which separates what longer keys
  cost on the wire and in the server from what the facade costs in Python.
"""

import uuid

from oslo_cache import core as oslo_cache
from oslo_config import cfg
import redis

import oslo_kvs
from oslo_kvs import serialization
from oslo_kvs_tests.bench import common
from oslo_kvs_tests import servers

VALUE = {'id': 'a' * 32, 'roles': ['admin', 'member'], 'expires': None}
EXPIRE = 3600
RAW = 'raw redis-py + same serializer'
KVS = 'oslo_kvs Redis'
DOGPILE = 'dogpile.cache.redis via oslo.cache'
RAW_STORED = 'raw redis-py on the stored keys'


def _oslo_cache_region(server):
    conf = cfg.ConfigOpts()
    oslo_cache.configure(conf)
    conf([], project='oslo_kvs_bench', default_config_files=[])
    conf.set_override('enabled', True, group='cache')
    conf.set_override('backend', 'dogpile.cache.redis', group='cache')
    conf.set_override('redis_server', server.address, group='cache')
    conf.set_override('expiration_time', EXPIRE, group='cache')
    conf.set_override('backend_argument',
                      ['redis_expiration_time:%d' % EXPIRE], group='cache')
    region = oslo_cache.create_region()
    oslo_cache.configure_cache_region(conf, region)
    return region


def run(rounds):
    server = servers.RedisServer().start()
    try:
        return _measure(server, rounds)
    finally:
        server.cleanup()


def _measure(server, rounds):
    raw = redis.Redis(host=server.host, port=server.port, protocol=2)
    store = oslo_kvs.get_key_value_store('bench-%s' % uuid.uuid4())
    store.configure('openstack.kvs.Redis', url=server.url,
                    expire_time=EXPIRE)
    region = _oslo_cache_region(server)
    keys = ['key-%03d' % i for i in range(100)]
    mapping = {key: VALUE for key in keys}
    raw_keys = ['raw-' + key for key in keys]
    raw_mapping = {'raw-' + key: VALUE for key in keys}
    store.set_multi(mapping)
    region.set_multi(mapping)
    dumps, loads = serialization.dumps, serialization.loads
    raw.mset({key: dumps(value) for key, value in raw_mapping.items()})
    px = EXPIRE * 1000
    stored = [store._state.data_key(key) for key in keys]

    def raw_get():
        return loads(raw.get('raw-key-001'))

    def raw_set():
        raw.set('raw-key-002', dumps(VALUE), px=px)

    def raw_get_multi():
        return [loads(data) for data in raw.mget(raw_keys)]

    def raw_set_multi():
        pipe = raw.pipeline(transaction=False)
        for key, value in raw_mapping.items():
            pipe.execute_command('SET', key, dumps(value), 'PX', px)
        pipe.execute()

    multi_rounds = max(rounds // 10, 30)
    return [
        common.Result('redis', 'get', common.compare({
            RAW: raw_get,
            KVS: lambda: store.get('key-001'),
            DOGPILE: lambda: region.get('key-001'),
            RAW_STORED: lambda: loads(raw.get(stored[1])),
        }, rounds), RAW),
        common.Result('redis', 'set (with expiry)', common.compare({
            RAW: raw_set,
            KVS: lambda: store.set('key-002', VALUE),
            DOGPILE: lambda: region.set('key-002', VALUE),
        }, rounds), RAW),
        common.Result('redis', 'get_multi 100', common.compare({
            RAW: raw_get_multi,
            KVS: lambda: store.get_multi(keys),
            DOGPILE: lambda: region.get_multi(keys),
            RAW_STORED: lambda: [loads(data) for data in raw.mget(stored)],
        }, multi_rounds), RAW),
        common.Result('redis', 'set_multi 100 (with expiry)', common.compare({
            RAW: raw_set_multi,
            KVS: lambda: store.set_multi(mapping),
            DOGPILE: lambda: region.set_multi(mapping),
        }, multi_rounds), RAW),
    ]
