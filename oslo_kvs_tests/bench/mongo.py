"""oslo_kvs on MongoDB against raw pymongo with the same serializer.

Both contenders store the same bytes (oslo_kvs's MessagePack encoding) in
the same document shape, so the ratio is what the facade adds: key checks,
namespacing and mangling, the expiry filter, NotFound handling.

With ``OSLO_KVS_MONGO_URL`` set, both talk to that server (a fresh
collection, dropped afterwards). Without it they run on mongomock, an
in-process imitation: those figures compare Python overheads only and say
nothing about a real server (no network, no storage engine, no BSON
round trip), and the suite name says so on every line.
"""

import functools
import os
import uuid

import mongomock
import pymongo

import oslo_kvs
from oslo_kvs.backends import mongo
from oslo_kvs import serialization
from oslo_kvs_tests.bench import common

VALUE = {'id': 'a' * 32, 'roles': ['admin', 'member'], 'expires': None}
DB_NAME = 'oslo_kvs_bench'


def _clients(url):
    """The raw client, the backend's client factory and a description."""
    if url:
        return (pymongo.MongoClient(url), pymongo.MongoClient,
                'mongo (real server)')
    server = mongomock.store.ServerStore()
    factory = functools.partial(mongomock.MongoClient, _store=server)
    return (factory(), factory,
            'mongo on MONGOMOCK (in-process fake; says nothing about a '
            'real server)')


def run(rounds):
    url = os.environ.get('OSLO_KVS_MONGO_URL', '')
    raw_client, factory, suite = _clients(url)
    collection_name = 'bench_%s' % uuid.uuid4().hex
    raw = raw_client[DB_NAME][collection_name]
    saved = mongo.MongoBackend.client_factory
    mongo.MongoBackend.client_factory = factory
    try:
        store = oslo_kvs.get_key_value_store('bench-%s' % uuid.uuid4())
        store.configure('openstack.kvs.MongoDB',
                        db_hosts=url or '127.0.0.1:27017', db_name=DB_NAME,
                        cache_collection=collection_name)
    finally:
        mongo.MongoBackend.client_factory = saved
    keys = ['key-%03d' % i for i in range(100)]
    for key in keys:
        store.set(key, VALUE)
        raw.replace_one({'_id': 'raw-' + key},
                        {'value': serialization.dumps(VALUE)}, upsert=True)
    raw_keys = ['raw-' + key for key in keys]

    def raw_get():
        return serialization.loads(raw.find_one({'_id': 'raw-key-001'},
                                                {'value': 1})['value'])

    def raw_set():
        raw.replace_one({'_id': 'raw-key-002'},
                        {'value': serialization.dumps(VALUE)}, upsert=True)

    def raw_get_multi():
        found = {doc['_id']: doc['value'] for doc in raw.find(
            {'_id': {'$in': raw_keys}}, {'value': 1},
            batch_size=len(raw_keys))}
        return [serialization.loads(found[key]) for key in raw_keys]

    baseline = 'raw pymongo + same serializer'
    try:
        return [
            common.Result(suite, 'get', common.compare({
                baseline: raw_get,
                'oslo_kvs MongoDB': lambda: store.get('key-001'),
            }, rounds), baseline),
            common.Result(suite, 'set', common.compare({
                baseline: raw_set,
                'oslo_kvs MongoDB': lambda: store.set('key-002', VALUE),
            }, rounds), baseline),
            common.Result(suite, 'get_multi 100', common.compare({
                baseline: raw_get_multi,
                'oslo_kvs MongoDB': lambda: store.get_multi(keys),
            }, max(rounds // 20, 15)), baseline),
        ]
    finally:
        raw.drop()
        store.close()
        raw_client.close()
