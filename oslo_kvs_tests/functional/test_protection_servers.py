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

"""Value protection on real servers, seen with the raw clients.

Each test gets private servers (memcached, Redis) or a collection of its
own (MongoDB), so the raw views (``lru_crawler metadump`` on memcached,
``KEYS`` on Redis, ``find`` on MongoDB) list only the keys the test wrote.
"""

import pickle
import socket
import time
import urllib.parse

from pymemcache.client import base as pymc_base
import pytest
import redis

import oslo_kvs
from oslo_kvs import exception
from oslo_kvs import protection
from oslo_kvs_tests.functional import test_memcached_contract
from oslo_kvs_tests.functional import test_mongo_contract
from oslo_kvs_tests.functional import test_redis_contract
from oslo_kvs_tests import servers
from oslo_kvs_tests import stored

SECRET = 'functional-secret-' + 's' * 32
PLAINTEXT = 'PLAINTEXT-MARKER-7331'
ENCRYPT = {'value_protection': 'encrypt', 'protection_keys': [SECRET]}
MAC = {'value_protection': 'mac', 'protection_keys': [SECRET]}


class TestMemcachedEncryptedContract(
        test_memcached_contract.TestMemcachedContract):
    hypothesis_examples = 20
    protection_args = ENCRYPT


class TestRedisEncryptedContract(test_redis_contract.TestRedisContract):
    hypothesis_examples = 20
    protection_args = ENCRYPT


class TestMongoEncryptedContract(test_mongo_contract.TestMongoContract):
    hypothesis_examples = 20
    protection_args = ENCRYPT


class RawMemcached:
    """A private memcached and a raw client that sees its bytes."""

    def __init__(self, server):
        self.server = server
        self.store_args = server.store_args
        self.client = pymc_base.Client((server.host, server.port),
                                       default_noreply=False)

    def _metadump(self):
        with socket.create_connection((self.server.host, self.server.port),
                                      timeout=5) as sock:
            # The hash table, not the LRUs: a walk of the LRUs can list an
            # item twice when it moves between them during the walk.
            sock.sendall(b'lru_crawler metadump hash\r\n')
            data = b''
            while not (data.endswith(b'END\r\n') or
                       data.startswith(b'BUSY')):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        return data

    def keys(self):
        # The crawler answers BUSY, or an empty dump, while its background
        # run is busy; every test here has written keys, so retry both.
        for _ in range(100):
            data = self._metadump()
            # The dump is a live walk: an item rewritten during it may
            # still be listed twice.
            found = list(dict.fromkeys(
                urllib.parse.unquote(line.split()[0][4:])
                for line in data.decode().splitlines()
                if line.startswith('key=')))
            if found:
                return found
            time.sleep(0.02)
        return []

    def get(self, key):
        return self.client.get(key)

    def put(self, key, value, flags=0):
        self.client.set(key, value, flags=flags)


class RawRedis:
    """A private redis-server and a raw client that sees its bytes."""

    def __init__(self, server):
        self.server = server
        self.store_args = server.store_args
        self.client = redis.Redis(host=server.host, port=server.port)

    def keys(self):
        return [key.decode() for key in self.client.keys('*')]

    def get(self, key):
        return self.client.get(key)

    def put(self, key, value, flags=0):
        self.client.set(key, value)


class RawMongo:
    """A collection of the session's MongoDB server and a raw view of it."""

    def __init__(self, server, collection):
        self.collection = collection
        self.store_args = server.collection_args(collection.name)

    def keys(self):
        return [doc['_id'] for doc in self.collection.find({}, {'_id': 1})]

    def get(self, key):
        return self.collection.find_one({'_id': key})['value']

    def put(self, key, value, flags=0):
        self.collection.update_one({'_id': key}, {'$set': {'value': value}})


@pytest.fixture(params=['memcached', 'redis', 'mongo'])
def raw(request, memcached_factory):
    if request.param == 'memcached':
        yield RawMemcached(memcached_factory())
        return
    if request.param == 'mongo':
        yield RawMongo(request.getfixturevalue('mongo_server'),
                       request.getfixturevalue('mongo_collection'))
        return
    server = servers.RedisServer()
    try:
        yield RawRedis(server.start())
    finally:
        server.cleanup()


def backing_store(raw):
    return {RawMemcached: 'openstack.kvs.Memcached',
            RawRedis: 'openstack.kvs.Redis',
            RawMongo: 'openstack.kvs.MongoDB'}[type(raw)]


def make_store(raw, **args):
    return stored.make_store(backing_store(raw),
                             **dict(raw.store_args, **args))


def only_key(raw):
    (key,) = raw.keys()
    return key


UPPER_CASE = {'value_protection': 'ENCRYPT', 'protection_keys': SECRET}


@pytest.mark.parametrize('protection', [ENCRYPT, UPPER_CASE],
                         ids=['encrypt', 'ENCRYPT'])
def test_server_never_holds_the_plaintext(raw, protection):
    store = make_store(raw, **protection)
    store.set_multi({'a': PLAINTEXT, 'b': {'nested': PLAINTEXT}})
    store.set('c', [PLAINTEXT])
    keys = raw.keys()
    assert len(keys) == 3
    for key in keys:
        stored = raw.get(key)
        assert stored and PLAINTEXT.encode() not in stored
    assert store.get_multi(['a', 'b', 'c']) == [
        PLAINTEXT, {'nested': PLAINTEXT}, [PLAINTEXT]]


def test_unprotected_store_does_hold_plaintext(raw):
    # The check above can fail: without protection the marker is visible.
    store = make_store(raw)
    store.set('a', PLAINTEXT)
    assert PLAINTEXT.encode() in raw.get(only_key(raw))


@pytest.mark.parametrize('protection', [ENCRYPT, MAC], ids=['encrypt', 'mac'])
def test_flipped_byte_on_server_fails_verification(raw, protection):
    store = make_store(raw, **protection)
    store.set('k', PLAINTEXT)
    key = only_key(raw)
    envelope = raw.get(key)
    for position in (0, 2, 7, len(envelope) // 2, len(envelope) - 1):
        tampered = bytearray(envelope)
        tampered[position] ^= 0x80
        raw.put(key, bytes(tampered))
        with pytest.raises(exception.IntegrityError):
            store.get('k')
    raw.put(key, envelope)
    assert store.get('k') == PLAINTEXT


@pytest.mark.parametrize('protection', [ENCRYPT, MAC], ids=['encrypt', 'mac'])
def test_swapped_values_on_server_fail_verification(raw, protection):
    store = make_store(raw, **protection)
    store.set('alice', 'alice-token')
    key_alice = only_key(raw)
    store.set('bob', 'bob-token')
    (key_bob,) = set(raw.keys()) - {key_alice}
    alice, bob = raw.get(key_alice), raw.get(key_bob)
    raw.put(key_alice, bob)
    raw.put(key_bob, alice)
    for name in ('alice', 'bob'):
        with pytest.raises(exception.IntegrityError):
            store.get(name)


def test_wrong_key_and_rotation_on_server(raw):
    old_secret = 'old-functional-secret-' + 'o' * 32
    writer = make_store(raw, value_protection='encrypt',
                        protection_keys=[old_secret])
    writer.set('k', 'v')
    # Same name, so same stored keys: another process of the deployment.
    stranger = oslo_kvs.KeyValueStore(writer.name)
    stranger.configure(backing_store(raw), **dict(
        raw.store_args, **ENCRYPT))
    with pytest.raises(exception.IntegrityError):
        stranger.get('k')
    rotated = oslo_kvs.KeyValueStore(writer.name)
    rotated.configure(backing_store(raw), **dict(
        raw.store_args, value_protection='encrypt',
        protection_keys=[SECRET, old_secret]))
    assert rotated.get('k') == 'v'
    old_id = raw.get(only_key(raw))[2:6]
    rotated.set('k', 'v2')
    new_id = raw.get(only_key(raw))[2:6]
    active = protection.Protector('encrypt', [SECRET.encode()],
                                  writer.name)
    assert new_id == active.active_key_id != old_id
    assert rotated.get('k') == 'v2'


class Gadget:
    """Unpickling it would create a marker file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


@pytest.mark.parametrize('args', [{}, ENCRYPT, MAC,
                                  dict(ENCRYPT, serializer='pickle')],
                         ids=['none', 'encrypt', 'mac', 'pickle+encrypt'])
def test_poisoned_pickle_on_server_is_never_run(raw, args, tmp_path):
    store = make_store(raw, **args)
    store.set('k', 'v')
    key = only_key(raw)
    marker = tmp_path / 'gadget-ran'
    gadget = pickle.dumps(Gadget(str(marker)))
    # Flag 1 is the pickle flag of python-memcached and pymemcache's serde.
    for poison in (gadget, b'\x02' + gadget, b'\x01' + gadget):
        raw.put(key, poison, flags=1)
        with pytest.raises(exception.IntegrityError):
            store.get('k')
        with pytest.raises(exception.NotFound):
            store.get_multi(['k'])
    assert not marker.exists()
