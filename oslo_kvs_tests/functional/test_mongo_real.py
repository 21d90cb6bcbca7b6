"""The backend contract on ``openstack.kvs.MongoDB`` against a real server.

No MongoDB server can be installed where CI runs, so this module runs only
when ``OSLO_KVS_MONGO_URL`` names one (a ``mongodb://`` URI, with
credentials if the server needs them)::

    OSLO_KVS_MONGO_URL=mongodb://127.0.0.1:27017 tox -e functional-mongo

Each run uses a fresh collection named ``kvs_<random>`` in the URI's
database (``oslo_kvs_tests`` if the URI names none) and drops it at the
end. Without the variable every test here is skipped with that reason;
the mongomock contract run (unit/test_mongo_contract.py) still runs.
"""

import datetime
import os
import time
import urllib.parse
import uuid

import pymongo
from pymongo import monitoring
import pytest

import oslo_kvs
from oslo_kvs.backends import mongo
from oslo_kvs import exception
from oslo_kvs import serialization
from oslo_kvs import testing

URL = os.environ.get('OSLO_KVS_MONGO_URL', '')

pytestmark = pytest.mark.skipif(
    not URL, reason='OSLO_KVS_MONGO_URL is not set: no real MongoDB server '
                    'to test against (see this module\'s docstring)')


def _db_name() -> str:
    path = urllib.parse.urlsplit(URL).path.strip('/')
    return path or 'oslo_kvs_tests'


@pytest.fixture(scope='module')
def real_collection():
    """A fresh collection on the real server, dropped afterwards."""
    name = 'kvs_%s' % uuid.uuid4().hex
    client = pymongo.MongoClient(URL, serverSelectionTimeoutMS=5000)
    collection = client[_db_name()][name]
    yield collection
    collection.drop()
    client.close()


def real_args(collection, **extra):
    args = {'db_hosts': URL, 'db_name': collection.database.name,
            'cache_collection': collection.name,
            'server_selection_timeout': 5}
    args.update(extra)
    return args


class TestRealMongoContract(testing.StoreContract):
    expire_time_alias = 'mongo_ttl_seconds'
    expiry_wait = 1.5
    hypothesis_examples = 40

    @pytest.fixture(autouse=True)
    def _backend(self, real_collection):
        self.backing_store = 'openstack.kvs.MongoDB'
        self.backend_args = real_args(real_collection)


class _Commands(monitoring.CommandListener):
    """The commands a client sent, by name."""

    def __init__(self):
        self.names = []

    def started(self, event):
        self.names.append(event.command_name)

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


#: Noise a command count must ignore: handshakes and session clean-up.
_NOT_REQUESTS = frozenset(['hello', 'isMaster', 'ismaster', 'saslStart',
                           'saslContinue', 'endSessions', 'ping'])


class TestRealMongo:
    @pytest.fixture(autouse=True)
    def _closing(self):
        self.made = []
        yield
        for store in self.made:
            store.close()

    def make_store(self, **args):
        store = oslo_kvs.get_key_value_store('mongo-real-%s' % uuid.uuid4())
        store.configure('openstack.kvs.MongoDB', **args)
        self.made.append(store)
        return store

    def test_multi_key_operations_are_one_command(self, real_collection,
                                                  monkeypatch):
        commands = _Commands()

        def factory(hosts, **kwargs):
            return pymongo.MongoClient(hosts, event_listeners=[commands],
                                       **kwargs)

        monkeypatch.setattr(mongo.MongoBackend, 'client_factory', factory)
        store = self.make_store(**real_args(real_collection))
        store.set('warm-up', 0)
        data = {'key-%d' % i: i for i in range(250)}
        for call, expected in (
                (lambda: store.set_multi(data), ['update']),
                (lambda: store.get_multi(list(data)), ['find']),
                (lambda: store.delete_multi(list(data)), ['delete'])):
            del commands.names[:]
            call()
            assert [n for n in commands.names
                    if n not in _NOT_REQUESTS] == expected

    def test_ttl_index_on_the_server(self, real_collection):
        store = self.make_store(**real_args(real_collection))
        store.set('k', 1)
        index = real_collection.index_information()['expires_at_1']
        assert index['expireAfterSeconds'] == 0

    def test_expired_document_before_the_ttl_monitor(self, real_collection):
        # The server's TTL monitor runs once a minute; a document expired a
        # second ago is almost always still there. Retry the rare case that
        # the monitor removed it mid-check, so the check really ran.
        store = self.make_store(**real_args(real_collection))
        store.set('k', 0)
        # The collection is fresh: its one document is the stored 'k'.
        stored, = [doc['_id'] for doc in real_collection.find()]
        checked = False
        for _ in range(3):
            real_collection.replace_one({'_id': stored}, {
                'value': serialization.dumps('stale'),
                'expires_at': datetime.datetime.now(datetime.timezone.utc)
                - datetime.timedelta(seconds=1)}, upsert=True)
            with pytest.raises(exception.NotFound):
                store.get('k')
            if real_collection.find_one({'_id': stored}) is not None:
                checked = True
                break
        assert checked
        assert store.add('k', 'fresh')
        assert store.get('k') == 'fresh'

    def test_wrong_credentials_name_hosts_not_password(self,
                                                       real_collection):
        secret = 'not-the-password-%s' % uuid.uuid4().hex
        args = real_args(real_collection, username='oslo_kvs_no_such_user',
                         password=secret)
        if '@' in urllib.parse.urlsplit(URL).netloc:
            # Credentials in the URI would be used instead of these.
            split = urllib.parse.urlsplit(URL)
            args['db_hosts'] = split._replace(
                netloc=split.netloc.rpartition('@')[2]).geturl()
        store = self.make_store(**args)
        with pytest.raises(exception.BackendError) as info:
            store.get('k')
        message = str(info.value)
        assert secret not in message
        assert store.servers()[0] in message

    def test_lock_expires_on_server_time_scale(self, real_collection):
        store = self.make_store(**real_args(real_collection), lock_timeout=0.5)
        first = store.get_lock('k')
        assert first.acquire()
        assert store.get_lock('k').acquire(blocking=False) is False
        time.sleep(0.6)
        second = store.get_lock('k')
        assert second.acquire(blocking=False)
        second.release()
