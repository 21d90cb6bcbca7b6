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

"""``openstack.kvs.MongoDB`` seen on the wire and on the server.

Everything here talks to the session's ``mongo_server``: SecantusDB,
which the tests start themselves, or the real mongod ``OSLO_KVS_MONGO_URL``
names (each test in a fresh ``kvs_<random>`` collection, dropped
afterwards; nothing else is touched)::

    OSLO_KVS_MONGO_URL=mongodb://127.0.0.1:27017/oslo_kvs_tests \\
        tox -e functional-mongo

Commands are counted with a pymongo command listener (``mongo_commands``),
so a getMore or a per-key round trip shows up as what it is.
"""

import datetime
import time
import urllib.parse
import uuid

import pytest

from oslo_kvs.backends import base
from oslo_kvs import exception
from oslo_kvs import serialization
from oslo_kvs_tests import stored as stored_keys


@pytest.fixture
def make_store(mongo_server, mongo_collection):
    """Configure stores on the test's collection; close them afterwards."""
    made = []

    def make(**extra):
        store = stored_keys.make_store(
            'openstack.kvs.MongoDB', 'mongo-real-%s' % uuid.uuid4(),
            **{**mongo_server.collection_args(mongo_collection.name),
               **extra})
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


# More than pymongo's and the server's default first batch (101).
@pytest.mark.parametrize('count', [1, 2, 101, 250])
def test_multi_key_operations_are_one_command_each(make_store,
                                                   mongo_commands, count):
    store = make_store()
    store.set('warm-up', 0)  # the TTL index, created once
    data = {'key-%d' % i: i for i in range(count)}
    keys = list(data)
    for call, name, result in (
            (lambda: store.set_multi(data), 'update', None),
            # Every key live: the batch the server returns is full.
            (lambda: store.get_multi(keys), 'find', list(data.values())),
            # Some missing, duplicates: still one command.
            (lambda: store.get_multi(keys + keys[:1]), 'find',
             list(data.values()) + [0]),
            (lambda: store.delete_multi(keys + ['missing']), 'delete',
             None)):
        mongo_commands.clear()
        assert call() == result
        assert mongo_commands.names() == [name]
    # Gone, in one more single command.
    mongo_commands.clear()
    with pytest.raises(exception.NotFound):
        store.get_multi(keys)
    assert mongo_commands.names() == ['find']


def test_the_listener_sees_a_get_more(mongo_server, mongo_collection,
                                      mongo_commands):
    # The check above can fail: the old get_multi query, a batch_size
    # equal to the number of live documents and no limit, makes the
    # server keep the cursor open and pymongo send a getMore.
    from oslo_kvs.backends import mongo
    client = mongo.MongoBackend.client_factory(mongo_server.url)
    try:
        collection = client[mongo_collection.database.name][
            mongo_collection.name]
        collection.insert_many([{'_id': i} for i in range(5)])
        mongo_commands.clear()
        assert len(list(collection.find({'_id': {'$in': list(range(5))}},
                                        batch_size=5))) == 5
        assert mongo_commands.names() == ['find', 'getMore']
    finally:
        client.close()


def test_ttl_index_on_the_server(make_store, mongo_collection):
    store = make_store()
    store.set('k', 1)
    index = mongo_collection.index_information()['expires_at_1']
    assert index['expireAfterSeconds'] == 0


def test_expired_document_before_the_ttl_monitor(make_store,
                                                 mongo_collection):
    # The server's TTL monitor runs once a minute; a document expired a
    # second ago is almost always still there. Retry the rare case that
    # the monitor removed it mid-check, so the check really ran.
    store = make_store()
    store.set('warm-up', 0)
    stored = stored_keys.data_key(store, 'k')
    checked = False
    for _ in range(3):
        mongo_collection.replace_one({'_id': stored}, {
            'value': serialization.dumps('stale'),
            'expires_at': datetime.datetime.now(datetime.timezone.utc)
            - datetime.timedelta(seconds=1)}, upsert=True)
        with pytest.raises(exception.NotFound):
            store.get('k')
        if mongo_collection.find_one({'_id': stored}) is not None:
            checked = True
            break
    assert checked
    assert store.add('k', 'fresh')
    assert store.get('k') == 'fresh'


def test_wrong_credentials_name_hosts_not_password(make_store, mongo_server):
    secret = 'not-the-password-%s' % uuid.uuid4().hex
    args = {'username': 'oslo_kvs_no_such_user', 'password': secret}
    split = urllib.parse.urlsplit(mongo_server.url)
    if '@' in split.netloc:
        # Credentials in the URI would be used instead of these.
        args['db_hosts'] = split._replace(
            netloc=split.netloc.rpartition('@')[2]).geturl()
    store = make_store(**args)
    with pytest.raises(exception.BackendError) as info:
        store.get('k')
    message = str(info.value)
    assert secret not in message
    assert '(code 18)' in message  # AuthenticationFailed
    assert store.servers()[0] in message


def test_lock_expires_on_server_time_scale(make_store):
    store = make_store(lock_timeout=0.5)
    first = store.get_lock('k')
    assert first.acquire()
    assert store.get_lock('k').acquire(blocking=False) is False
    # The server keeps a lock a little longer than its holder's view.
    time.sleep(0.5 + base.LOCK_EXPIRY_MARGIN + 0.2)
    second = store.get_lock('k')
    assert second.acquire(blocking=False)
    second.release()
