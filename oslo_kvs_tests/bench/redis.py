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

"""oslo_kvs on Redis against raw redis-py and dogpile.cache.redis.

The suite starts its own redis-server on a free loopback port and measures,
interleaved on that one server:

* ``raw redis-py``: the same client, protocol, socket timeout and
  serializer as the backend (oslo_kvs's ``serialization.dumps``/``loads``)
  and plain keys, so the ratio is exactly what the facade adds: key
  checks, namespacing, mangling, NotFound handling, error wrapping;
* ``oslo_kvs Redis``: ``openstack.kvs.Redis`` with ``expire_time``;
* ``dogpile.cache.redis via oslo.cache``: a region configured by
  ``oslo_cache.configure_cache_region`` from a ``[cache]`` section, for
  reference (it pickles ``CachedValue`` wrappers, so its serializer
  differs);
* for reads, raw redis-py again on the very keys oslo_kvs stores (64-hex
  SHA-256 names instead of short ones), which separates what longer keys
  cost on the wire and in the server from what the facade costs in Python;
* for ``get`` and ``get_multi``, oslo_kvs and raw redis-py once more in a
  child process where hiredis cannot be imported: redis-py's pure-Python
  reply parser, as on a platform without a hiredis wheel.

Every suite line names the reply parser this process uses.
"""

import itertools
import uuid

from oslo_cache import core as oslo_cache
from oslo_config import cfg
import redis
from redis import connection as redis_connection

import oslo_kvs
from oslo_kvs import core
from oslo_kvs import serialization
from oslo_kvs_tests.bench import common
from oslo_kvs_tests import servers
from oslo_kvs_tests import stored as stored_keys

VALUE = {'id': 'a' * 32, 'roles': ['admin', 'member'], 'expires': None}
EXPIRE = 3600
TIMEOUT = 3.0  # the backend's default socket_timeout
COLD_KEYS = 20000  # more than the store's cache of mangled keys
RAW = 'raw redis-py + same serializer'
KVS = 'oslo_kvs Redis'
DOGPILE = 'dogpile.cache.redis via oslo.cache'
RAW_STORED = 'raw redis-py on the stored keys'
KVS_PURE = 'oslo_kvs Redis, no hiredis'
RAW_PURE = 'raw redis-py, no hiredis'
KEYS = ['key-%03d' % i for i in range(100)]


def parser() -> str:
    """The reply parser redis-py uses in this process, with its version."""
    name = redis_connection.DefaultParser.__name__
    if redis.utils.HIREDIS_AVAILABLE:
        import hiredis
        return '%s (hiredis %s)' % (name, hiredis.__version__)
    return '%s (pure Python)' % name


def _raw_client(host, port):
    return redis.Redis(host=host, port=port, protocol=2,
                       socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)


def _store(name, url):
    # The default configuration: its key mangler is the one whose stored
    # keys the store remembers.
    store = oslo_kvs.get_key_value_store(name)
    store.configure('openstack.kvs.Redis', url=url, expire_time=EXPIRE)
    return store


def _stored_keys(name, url, keys):
    """The keys a store called ``name`` stores ``keys`` under.

    Found by a second store of that name with a key recorder (see
    stored.py), never the timed store: a caller's own key mangler runs on
    every operation, which would be timed too.
    """
    finder = stored_keys.configure(core.KeyValueStore(name),
                                   'openstack.kvs.Redis', url=url,
                                   expire_time=EXPIRE)
    try:
        return [stored_keys.data_key(finder, key) for key in keys]
    finally:
        finder.close()


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


# Factories of the contenders that run in a child without hiredis
# (common.Remote); they read what the parent stored.

def _pure_parser_only():
    if redis.utils.HIREDIS_AVAILABLE:
        raise RuntimeError('hiredis is still in use: %s' % parser())


def kvs_operation(name, url, operation):
    """The store's ``get`` or ``get_multi`` on the parent's keys."""
    _pure_parser_only()
    store = _store(name, url)
    if operation == 'get':
        return lambda: store.get(KEYS[1])
    return lambda: store.get_multi(KEYS)


def raw_operation(host, port, operation):
    """Raw redis-py ``get`` or ``mget`` on the parent's raw keys."""
    _pure_parser_only()
    raw = _raw_client(host, port)
    loads = serialization.loads
    raw_keys = ['raw-' + key for key in KEYS]
    if operation == 'get':
        return lambda: loads(raw.get(raw_keys[1]))
    return lambda: [loads(data) for data in raw.mget(raw_keys)]


def run(rounds):
    server = servers.RedisServer(cpu=common.cpu()).start()
    try:
        return _measure(server, rounds)
    finally:
        server.cleanup()


def _measure(server, rounds):
    suite = 'redis, parser %s' % parser()
    raw = _raw_client(server.host, server.port)
    name = 'bench-%s' % uuid.uuid4()
    store = _store(name, server.url)
    region = _oslo_cache_region(server)
    mapping = {key: VALUE for key in KEYS}
    raw_keys = ['raw-' + key for key in KEYS]
    raw_mapping = {'raw-' + key: VALUE for key in KEYS}
    store.set_multi(mapping)
    region.set_multi(mapping)
    dumps, loads = serialization.dumps, serialization.loads
    raw.mset({key: dumps(value) for key, value in raw_mapping.items()})
    px = EXPIRE * 1000
    stored = _stored_keys(name, server.url, KEYS)

    cold = ['cold-%05d' % i for i in range(COLD_KEYS)]
    for start in range(0, COLD_KEYS, 1000):
        chunk = {key: VALUE for key in cold[start:start + 1000]}
        store.set_multi(chunk)
        region.set_multi(chunk)
        raw.mset({'raw-' + key: dumps(VALUE) for key in chunk})
    kvs_cold = itertools.cycle(cold).__next__
    dogpile_cold = itertools.cycle(cold).__next__
    next_raw_cold = itertools.cycle(['raw-' + key for key in cold]).__next__

    def raw_set():
        raw.set('raw-key-002', dumps(VALUE), px=px)

    def raw_get_multi():
        return [loads(data) for data in raw.mget(raw_keys)]

    def raw_set_multi():
        pipe = raw.pipeline(transaction=False)
        for key, value in raw_mapping.items():
            pipe.execute_command('SET', key, dumps(value), 'PX', px)
        pipe.execute()

    # Sanity: every contender reads the value, not a miss.
    assert raw_get_multi() == store.get_multi(KEYS) == \
        region.get_multi(KEYS)

    pure = {
        KVS_PURE: common.Remote(__name__ + ':kvs_operation', name,
                                server.url, 'get', hide=['hiredis']),
        RAW_PURE: common.Remote(__name__ + ':raw_operation', server.host,
                                server.port, 'get', hide=['hiredis']),
    }
    pure_multi = {
        KVS_PURE: common.Remote(__name__ + ':kvs_operation', name,
                                server.url, 'get_multi', hide=['hiredis']),
        RAW_PURE: common.Remote(__name__ + ':raw_operation', server.host,
                                server.port, 'get_multi', hide=['hiredis']),
    }
    multi_rounds = max(rounds // 10, 30)
    try:
        return [
            common.Result(suite, 'get', common.compare({
                RAW: lambda: loads(raw.get('raw-key-001')),
                KVS: lambda: store.get('key-001'),
                DOGPILE: lambda: region.get('key-001'),
                RAW_STORED: lambda: loads(raw.get(stored[1])),
                **pure,
            }, rounds), RAW),
            common.Result(suite, 'get, cold keys', common.compare({
                RAW: lambda: loads(raw.get(next_raw_cold())),
                KVS: lambda: store.get(kvs_cold()),
                DOGPILE: lambda: region.get(dogpile_cold()),
            }, rounds), RAW),
            common.Result(suite, 'set (with expiry)', common.compare({
                RAW: raw_set,
                KVS: lambda: store.set('key-002', VALUE),
                DOGPILE: lambda: region.set('key-002', VALUE),
            }, rounds), RAW),
            common.Result(suite, 'get_multi 100', common.compare({
                RAW: raw_get_multi,
                KVS: lambda: store.get_multi(KEYS),
                DOGPILE: lambda: region.get_multi(KEYS),
                RAW_STORED: lambda: [loads(data)
                                     for data in raw.mget(stored)],
                **pure_multi,
            }, multi_rounds), RAW,
                # Targets set against oslo.cache and against no hiredis.
                speedups=[(KVS, DOGPILE), (KVS, KVS_PURE)]),
            common.Result(suite, 'set_multi 100 (with expiry)',
                          common.compare({
                              RAW: raw_set_multi,
                              KVS: lambda: store.set_multi(mapping),
                              DOGPILE: lambda: region.set_multi(mapping),
                          }, multi_rounds), RAW),
        ]
    finally:
        for remote in list(pure.values()) + list(pure_multi.values()):
            remote.close()
