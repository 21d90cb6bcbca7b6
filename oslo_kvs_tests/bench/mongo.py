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

"""oslo_kvs on MongoDB against raw pymongo with the same serializer.

The suite starts its own SecantusDB (see oslo_kvs_tests/servers/mongo.py) on a
free loopback port, or uses the real server ``OSLO_KVS_MONGO_URL`` names
(a fresh collection, dropped afterwards), and measures, interleaved on that
one server:

* ``raw pymongo``: the same client and serializer (oslo_kvs's
  ``serialization.dumps``/``loads``), the same document shape, short keys,
  one command per call (``find`` with ``limit`` for many keys, an
  unordered bulk of upserts, one ``delete_many``);
* ``oslo_kvs MongoDB``: ``openstack.kvs.MongoDB``, which adds key checks,
  namespacing and mangling, the expiry filter and NotFound handling.

SecantusDB is a Python server: its absolute times say nothing about
mongod, so only the ratios mean something (the suite name says so).
"""

import os
import uuid

import pymongo

import oslo_kvs
from oslo_kvs import serialization
from oslo_kvs_tests.bench import common
from oslo_kvs_tests import servers

VALUE = {'id': 'a' * 32, 'roles': ['admin', 'member'], 'expires': None}
RAW = 'raw pymongo + same serializer'
KVS = 'oslo_kvs MongoDB'
MANY = 100


def run(rounds):
    url = os.environ.get(servers.MONGO_URL_VARIABLE, '')
    if url:
        return _measure(servers.ExternalMongo(url), 'mongo (real server)',
                        rounds)
    server = servers.MongoServer(cpu=common.cpu()).start()
    try:
        return _measure(server, 'mongo on SecantusDB (Python server: ratios '
                                'only)', rounds)
    finally:
        server.cleanup()


def _measure(server, suite, rounds):
    collection_name = 'bench_%s' % uuid.uuid4().hex
    raw_client = pymongo.MongoClient(server.url)
    raw = raw_client[server.db_name][collection_name]
    store = oslo_kvs.get_key_value_store('bench-%s' % uuid.uuid4())
    store.configure('openstack.kvs.MongoDB',
                    **server.collection_args(collection_name))
    try:
        return _compare(store, raw, suite, rounds)
    finally:
        raw.drop()
        store.close()
        raw_client.close()


def _compare(store, raw, suite, rounds):
    keys = ['key-%03d' % i for i in range(MANY)]
    raw_keys = ['raw-' + key for key in keys]
    data = dict.fromkeys(keys, VALUE)
    store.set_multi(data)
    raw.insert_many([{'_id': key, 'value': serialization.dumps(VALUE)}
                     for key in raw_keys])

    def raw_get():
        return serialization.loads(raw.find_one({'_id': 'raw-key-001'},
                                                {'value': 1})['value'])

    def raw_set():
        raw.replace_one({'_id': 'raw-key-002'},
                        {'value': serialization.dumps(VALUE)}, upsert=True)

    def raw_get_multi():
        # The limit lets the server close the cursor with the first batch.
        found = {doc['_id']: doc['value'] for doc in raw.find(
            {'_id': {'$in': raw_keys}}, {'value': 1},
            limit=len(raw_keys), batch_size=len(raw_keys))}
        return [serialization.loads(found[key]) for key in raw_keys]

    def raw_set_multi():
        raw.bulk_write([pymongo.ReplaceOne(
            {'_id': key}, {'value': serialization.dumps(VALUE)}, upsert=True)
            for key in raw_keys], ordered=False)

    few = max(rounds // 20, 15)
    cases = [
        ('get', raw_get, lambda: store.get('key-001'), rounds),
        ('set', raw_set, lambda: store.set('key-002', VALUE), rounds),
        ('get_multi %d' % MANY, raw_get_multi,
         lambda: store.get_multi(keys), few),
        ('set_multi %d' % MANY, raw_set_multi,
         lambda: store.set_multi(data), few),
    ]
    return [common.Result(suite, operation, common.compare(
        {RAW: raw_call, KVS: kvs_call}, count), RAW)
        for operation, raw_call, kvs_call, count in cases]
