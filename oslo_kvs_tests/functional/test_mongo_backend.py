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

"""``openstack.kvs.MongoDB`` beyond the contract.

Argument validation and the client arguments are checked on a real
``pymongo.MongoClient`` built with ``connect=False`` (pymongo validates
every option at construction, and nothing connects). The document layout,
the TTL index, the read-side expiry check and the lock protocol are checked
on the session's MongoDB server (``mongo_server``: SecantusDB, or the
mongod ``OSLO_KVS_MONGO_URL`` names), each test in a collection of its own.
Server refusals no healthy server gives on demand (a refused createIndex,
an authentication error carrying a secret) are injected by replacing the
pymongo ``Collection`` method the backend calls. Unreachable servers are
real: a loopback port nothing listens on.
"""

import datetime
import functools
import logging
import os
import uuid

import pymongo
from pymongo import collection as mongo_collection_module
from pymongo import errors as mongo_errors
import pytest

import oslo_kvs
from oslo_kvs.backends import mongo
from oslo_kvs import exception
from oslo_kvs_tests import servers
from oslo_kvs_tests import stored as stored_keys
SECRET = 'Sw0rdfish-7d3c0e9b5a1f'
DB_NAME = 'oslo_kvs'
COLLECTION = 'kvs'
#: Arguments of a store that never connects (nothing listens there).
REQUIRED = {'db_hosts': '127.0.0.1:27017', 'db_name': DB_NAME,
            'cache_collection': COLLECTION}


make_store = functools.partial(stored_keys.make_store,
                               'openstack.kvs.MongoDB')


@pytest.fixture
def recorded(monkeypatch):
    """Calls to the real pymongo.MongoClient, as (hosts, kwargs)."""
    calls = []

    def factory(hosts, **kwargs):
        calls.append((hosts, kwargs))
        return pymongo.MongoClient(hosts, **kwargs)

    monkeypatch.setattr(mongo.MongoBackend, 'client_factory', factory)
    return calls


@pytest.fixture
def closing():
    """Configure real-pymongo stores and close their clients afterwards."""
    made = []

    def make(**args):
        store = make_store(**args)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def served(mongo_server, mongo_collection, closing):
    """Make stores on the session's MongoDB server, in the test's collection.

    ``mongo_collection`` is the test's raw view of that collection.
    """
    def make(**args):
        return closing(**{**mongo_server.collection_args(
            mongo_collection.name), **args})
    return make


@pytest.fixture
def raw_backend(mongo_server, mongo_collection):
    """The backend on the test's collection, made as an author would."""
    backend = mongo.MongoBackend(
        mongo_server.collection_args(mongo_collection.name))
    yield backend
    backend.close()


def utcnow():
    """Now in naive UTC, as pymongo gives BSON dates."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def client_of(store):
    """The pymongo client a store built from its arguments.

    Internal on purpose: only the client shows how the options became
    pymongo settings, and no public API should exist just for that.
    """
    return store._state.backend._clients.get()[0]


# --- required arguments and coercion ----------------------------------------

class TestMongoArguments:
    def test_missing_required_arguments_are_named_together(self):
        with pytest.raises(exception.ConfigurationError) as info:
            make_store()
        for name in ('db_hosts', 'db_name', 'cache_collection'):
            assert name in str(info.value)

    def test_only_the_missing_ones_are_named(self):
        with pytest.raises(exception.ConfigurationError) as info:
            make_store(db_hosts='h:1')
        message = str(info.value)
        assert 'db_name' in message and 'cache_collection' in message
        assert 'db_hosts' not in message

    @pytest.mark.parametrize('name', ['tls_cafile', 'tls_certfile'])
    @pytest.mark.parametrize('tls', [True, None])
    def test_unreadable_tls_file_is_named(self, tmp_path, name, tls):
        missing = str(tmp_path / 'missing.pem')
        with pytest.raises(exception.ConfigurationError) as info:
            make_store(**REQUIRED, tls_enabled=tls, **{name: missing})
        assert str(info.value) == (
            'Argument %s of openstack.kvs.MongoDB: cannot read %r'
            % (name, missing))

    def test_unknown_argument_is_refused(self):
        with pytest.raises(exception.ConfigurationError, match='db_hots'):
            make_store(db_hots='h:1', db_name='d', cache_collection='c')

    def test_strings_from_config_files_are_coerced(self, closing, recorded):
        store = closing(
            **REQUIRED, tls_enabled='False', max_pool_size='7',
            mongo_ttl_seconds='30', use_replica='true',
            replicaset_name='rs0', w='2', socket_timeout='1.5',
            no_expiry_keys='a,b')
        kwargs = recorded[-1][1]
        assert kwargs['tls'] is False
        assert kwargs['maxPoolSize'] == 7
        assert kwargs['w'] == 2
        ttl, keep = stored_keys.expiry(store)
        assert ttl == 30.0 and len(keep) == 2
        client = client_of(store)
        assert client.options.pool_options.max_pool_size == 7
        assert client.options.pool_options.socket_timeout == 1.5
        assert client.options.replica_set_name == 'rs0'
        assert client.write_concern.document == {'w': 2}

    @pytest.mark.parametrize('given, mode', [
        ('primary', 'primary'), ('PRIMARY_PREFERRED', 'primaryPreferred'),
        ('secondarypreferred', 'secondaryPreferred'),
        ('Secondary', 'secondary'), ('nearest', 'nearest')])
    def test_read_preference_names(self, closing, given, mode):
        store = closing(**REQUIRED, read_preference=given)
        assert client_of(store).read_preference.mongos_mode == mode

    def test_bad_read_preference_lists_valid_ones(self):
        with pytest.raises(exception.ConfigurationError) as info:
            make_store(**REQUIRED, read_preference='fastest')
        message = str(info.value)
        assert 'read_preference' in message
        for mode in ('primary', 'primaryPreferred', 'secondary',
                     'secondaryPreferred', 'nearest'):
            assert mode in message

    @pytest.mark.parametrize('given, document', [
        ('majority', {'w': 'majority'}), (3, {'w': 3}), ('1', {'w': 1}),
        ('-1', {}), ('dc-east', {'w': 'dc-east'})])
    def test_write_concern(self, closing, given, document):
        store = closing(**REQUIRED, w=given)
        assert client_of(store).write_concern.document == document

    @pytest.mark.parametrize('given', [0, '0', -2, True])
    def test_bad_write_concern(self, given):
        with pytest.raises(exception.ConfigurationError, match="'w'"):
            make_store(**REQUIRED, w=given)

    @pytest.mark.parametrize('args, name', [
        ({'db_hosts': 'h:notaport'}, 'db_hosts'),
        ({'db_hosts': ['mongodb://h:1', 'h2:2']}, 'db_hosts'),
        ({'db_hosts': []}, 'db_hosts'),
        ({'max_pool_size': -1}, 'max_pool_size'),
        ({'server_selection_timeout': -1}, 'server_selection_timeout'),
        ({'tls_enabled': 'perhaps'}, 'tls_enabled'),
        ({'ssl': 'perhaps'}, 'ssl'),
        ({'ssl_cert_reqs': 'SOMETIMES'}, 'ssl_cert_reqs'),
        ({'expire_time': 1, 'mongo_ttl_seconds': 1}, 'mongo_ttl_seconds'),
        ({'son_manipulator': 'x.Y'}, 'son_manipulator'),
        ({'use_replica': True}, 'replicaset_name'),
        ({'use_replica': 'false', 'replicaset_name': 'rs'}, 'use_replica'),
        ({'password': SECRET}, 'username'),
        ({'db_name': 'bad/name'}, 'InvalidName'),
        ({'cache_collection': '$bad'}, 'InvalidName'),
    ])
    def test_bad_arguments_fail_at_configure(self, args, name):
        with pytest.raises(exception.ConfigurationError, match=name):
            make_store(**{**REQUIRED, **args})

    def test_uri_with_several_hosts_is_one_argument(self, closing):
        uri = 'mongodb://a.example:27017,b.example:27018/?replicaSet=rs'
        store = closing(**{**REQUIRED, 'db_hosts': uri})
        assert store.servers() == ['a.example:27017', 'b.example:27018']
        assert client_of(store).options.replica_set_name == 'rs'

    def test_host_list_forms(self, closing):
        listed = closing(**{**REQUIRED, 'db_hosts': ['a:1', 'b:2']})
        comma = closing(**{**REQUIRED, 'db_hosts': 'a:1, b:2'})
        assert listed.servers() == ['a:1', 'b:2']
        assert comma.servers() == ['a:1', 'b:2']
        for store in (listed, comma):
            seeds = client_of(store).topology_description.server_descriptions()
            assert set(seeds) == {('a', 1), ('b', 2)}

    def test_ipv6_host(self, closing):
        store = closing(**{**REQUIRED, 'db_hosts': '[::1]:27018'})
        assert store.servers() == ['[::1]:27018']
        seeds = client_of(store).topology_description.server_descriptions()
        assert set(seeds) == {('::1', 27018)}

    def test_configure_opens_no_connection(self, closing, recorded):
        closing(**REQUIRED)
        assert recorded[-1][1]['connect'] is False


# --- credentials and TLS ------------------------------------------------

class TestMongoClientArguments:
    def test_credentials_default_to_db_name_like_keystone(self, closing,
                                                          recorded):
        closing(**REQUIRED, username='kvs', password=SECRET)
        kwargs = recorded[-1][1]
        assert kwargs['username'] == 'kvs'
        assert kwargs['password'] == SECRET
        assert kwargs['authSource'] == DB_NAME

    def test_explicit_auth_source(self, closing, recorded):
        closing(**REQUIRED, username='kvs', password=SECRET,
                auth_source='admin')
        assert recorded[-1][1]['authSource'] == 'admin'

    def test_uri_auth_source_is_kept(self, closing, recorded):
        closing(**{**REQUIRED, 'db_hosts':
                   'mongodb://h:1/?authSource=admin'},
                username='kvs', password=SECRET)
        assert 'authSource' not in recorded[-1][1]

    def test_tls_options(self, closing, recorded, tmp_path):
        files = servers.make_tls_files(str(tmp_path))
        combined = os.path.join(str(tmp_path), 'client.pem')
        with open(combined, 'w') as out:
            for path in (files.cert, files.key):
                with open(path) as f:
                    out.write(f.read())
        store = closing(**REQUIRED, ssl='True', ssl_ca_certs=files.ca,
                        ssl_certfile=combined, ssl_keyfile=combined,
                        ssl_cert_reqs='CERT_REQUIRED',
                        tls_allow_invalid_hostnames='false')
        kwargs = recorded[-1][1]
        assert kwargs['tls'] is True
        assert kwargs['tlsCAFile'] == files.ca
        assert kwargs['tlsCertificateKeyFile'] == combined
        assert kwargs['tlsAllowInvalidCertificates'] is False
        context = client_of(store).options.pool_options._ssl_context
        assert context is not None and context.verify_mode != 0

    @pytest.mark.parametrize('reqs, invalid_ok', [
        ('none', True), ('OPTIONAL', False), ('required', False)])
    def test_cert_requirement(self, closing, recorded, reqs, invalid_ok):
        closing(**REQUIRED, tls_enabled=True, tls_cert_reqs=reqs)
        assert recorded[-1][1]['tlsAllowInvalidCertificates'] is invalid_ok

    def test_separate_key_file_is_refused_clearly(self, tmp_path):
        files = servers.make_tls_files(str(tmp_path))
        with pytest.raises(exception.ConfigurationError,
                           match='one PEM file'):
            make_store(**REQUIRED, tls_certfile=files.cert,
                       tls_keyfile=files.key)

    def test_timeouts_are_seconds(self, closing, recorded):
        store = closing(**REQUIRED, server_selection_timeout=2.5,
                        connect_timeout='3', socket_timeout=0)
        kwargs = recorded[-1][1]
        assert kwargs['serverSelectionTimeoutMS'] == 2500
        assert kwargs['connectTimeoutMS'] == 3000
        assert client_of(store).options.server_selection_timeout == 2.5


# --- secrets ---------------------------------------------------------------

class TestMongoSecrets:
    def test_password_not_in_repr(self, closing):
        store = closing(**REQUIRED, username='kvs', password=SECRET)
        backend = mongo.MongoBackend(dict(REQUIRED, username='kvs',
                                          password=SECRET))
        for text in (repr(store), repr(backend), repr(client_of(store))):
            assert SECRET not in text

    def test_password_not_in_configuration_errors(self):
        with pytest.raises(exception.ConfigurationError) as info:
            make_store(**REQUIRED, username='kvs', password=SECRET,
                       tls_enabled=True, tls_cafile='/nonexistent')
        assert SECRET not in str(info.value)
        with pytest.raises(exception.ConfigurationError) as info:
            make_store(**REQUIRED, password=[SECRET])
        assert SECRET not in str(info.value)

    @pytest.mark.parametrize('hosts', [
        'mongodb://kvs:%s@127.0.0.1:notaport/' % SECRET,
        ['mongodb://kvs:%s@127.0.0.1/' % SECRET, 'other:27017'],
        'mongodb://kvs:%s@127.0.0.1/?readPreference=fastest' % SECRET,
        'mongodb://kvs:%s@127.0.0.1/?replicaSett=rs' % SECRET,
        'mongodb://kvs:%s@127.0.0.1/?tls=maybe' % SECRET])
    def test_password_in_bad_uri_not_in_errors(self, hosts):
        with pytest.raises(exception.ConfigurationError) as info:
            make_store(**{**REQUIRED, 'db_hosts': hosts})
        assert 'db_hosts' in str(info.value) or 'MongoDB' in str(info.value)
        assert SECRET not in str(info.value)

    @pytest.mark.parametrize('in_uri', [False, True])
    def test_unreachable_server_names_hosts_not_password(
            self, closing, caplog, in_uri):
        caplog.set_level(logging.DEBUG)
        port = servers.free_port()
        quoted = SECRET.replace('-', '%2D')
        if in_uri:
            args = {'db_hosts': 'mongodb://kvs:%s@127.0.0.1:%d/?authSource'
                                '=admin' % (quoted, port)}
        else:
            args = {'db_hosts': ['127.0.0.1:%d' % port], 'username': 'kvs',
                    'password': SECRET}
        store = closing(**{**REQUIRED, **args},
                        server_selection_timeout=0.3)
        assert store.servers() == ['127.0.0.1:%d' % port]
        for call in (lambda: store.get('k'), lambda: store.set('k', 1),
                     lambda: store.get_lock('k').acquire()):
            with pytest.raises(exception.BackendError) as info:
                call()
            message = str(info.value)
            assert '127.0.0.1:%d' % port in message
            assert 'openstack.kvs.MongoDB' in message
            assert 'ServerSelectionTimeoutError' in message
            assert SECRET not in message and quoted not in message
            assert info.value.__cause__ is None
        assert caplog.records, 'pymongo logged nothing; nothing was checked'
        assert SECRET not in caplog.text and quoted not in caplog.text

    def test_auth_failure_message_is_redacted(self, served, monkeypatch,
                                              caplog):
        # Fault injection: pymongo's own exception, carrying the secret as
        # a careless message might, raised where the server would fail.
        caplog.set_level(logging.DEBUG)
        store = served(username='kvs', password=SECRET)

        def refuse(*args, **kwargs):
            raise mongo_errors.OperationFailure(
                'Authentication failed for mongodb://kvs:%s@127.0.0.1 '
                '(password %s)' % (SECRET, SECRET), 18)

        monkeypatch.setattr(mongo_collection_module.Collection, 'find_one',
                            refuse)
        with pytest.raises(exception.BackendError) as info:
            store.get('k')
        message = str(info.value)
        assert 'OperationFailure (code 18)' in message
        assert store.servers()[0] in message
        assert 'Authentication failed' in message
        assert SECRET not in message
        assert SECRET not in caplog.text


# --- documents, TTL index, read-side expiry -----------------------------

class TestMongoDocuments:
    def test_document_layout_and_single_ttl(self, served, mongo_collection):
        store = served(expire_time=60, no_expiry_keys=['forever'])
        before = utcnow()
        store.set('k', 'v')
        store.set_multi({'forever': 1, 'm': 2})
        after = utcnow()
        raw = mongo_collection
        doc = raw.find_one({'_id': stored_keys.data_key(store, 'k')})
        assert set(doc) == {'_id', 'value', 'expires_at'}
        assert type(doc['value']) is bytes
        # The TTL lives in expires_at alone; the index adds nothing.
        delta = datetime.timedelta(seconds=60)
        assert before + delta <= doc['expires_at']
        assert doc['expires_at'] <= after + delta + datetime.timedelta(
            milliseconds=1)
        multi = raw.find_one({'_id': stored_keys.data_key(store, 'm')})
        assert before + delta <= multi['expires_at']
        assert 'expires_at' not in raw.find_one(
            {'_id': stored_keys.data_key(store, 'forever')})

    def test_incr_changes_the_value_and_keeps_expires_at(
            self, served, mongo_collection):
        store = served(expire_time=60)
        store.set('n', 5)
        key = stored_keys.data_key(store, 'n')
        before = mongo_collection.find_one({'_id': key})
        assert before['value'] == b'5'
        assert store.incr('n', 2, expire_time=0) == 7
        after = mongo_collection.find_one({'_id': key})
        assert after == dict(before, value=b'7')
        # A counter in the old form: format byte, MessagePack int.
        mongo_collection.update_one({'_id': key},
                                    {'$set': {'value': b'\x01\x05'}})
        assert store.incr('n', expire_time=0) == 6
        assert mongo_collection.find_one({'_id': key}) == dict(
            before, value=b'6')
        mongo_collection.update_one({'_id': key},
                                    {'$set': {'value': b'1_0'}})
        with pytest.raises(exception.IntegrityError):
            store.incr('n')
        assert store.incr('created', 3) == 3
        created = mongo_collection.find_one(
            {'_id': stored_keys.data_key(store, 'created')})
        assert created['value'] == b'3' and 'expires_at' in created

    def test_no_expiry_without_expire_time(self, served, mongo_collection):
        store = served()
        store.set('k', 'v')
        store.add('a', 1)
        raw = mongo_collection
        assert all('expires_at' not in doc for doc in raw.find())

    def test_expiry_rounds_up_to_milliseconds(self):
        # Internal on purpose: a sub-millisecond rounding shows in no
        # stored document a test can read without timing it.
        now = datetime.datetime(2030, 1, 1, 0, 0, 0, 999001)
        assert mongo._expiry(now, 0.5) == datetime.datetime(
            2030, 1, 1, 0, 0, 1, 500000)
        assert mongo._expiry(now, 0) == datetime.datetime(
            2030, 1, 1, 0, 0, 1)

    def test_ttl_index_is_created_once_by_the_first_write(
            self, served, mongo_collection):
        store = served()
        raw = mongo_collection
        with pytest.raises(exception.NotFound):
            store.get('k')
        assert 'expires_at_1' not in raw.index_information()
        store.set('k', 1)
        index = raw.index_information()['expires_at_1']
        assert index['key'] == [('expires_at', 1)]
        assert index['expireAfterSeconds'] == 0
        raw.drop_index('expires_at_1')
        store.set('k', 2)
        store.set_multi({'a': 1})
        store.add('b', 1)
        with store.get_lock('k'):
            pass
        assert 'expires_at_1' not in raw.index_information()

    def test_refused_ttl_index_warns_once_and_writes_go_on(
            self, served, mongo_collection, monkeypatch, caplog):
        calls = []

        def refuse(self, *args, **kwargs):
            calls.append(args)
            raise mongo_errors.OperationFailure(
                'not authorized to createIndex', 13)

        monkeypatch.setattr(mongo_collection_module.Collection, 'create_index',
                            refuse)
        store = served()
        with caplog.at_level(logging.WARNING, logger=mongo.__name__):
            store.set('k', 1)
            store.set('k', 2)
        assert len(calls) == 1
        assert store.get('k') == 2
        assert 'TTL index' in caplog.text and 'code 13' in caplog.text

    def test_other_index_failure_is_a_backend_error_and_retried(
            self, served, mongo_collection, monkeypatch):
        calls = []

        def fail(self, *args, **kwargs):
            calls.append(args)
            raise mongo_errors.OperationFailure('Authentication failed', 18)

        monkeypatch.setattr(mongo_collection_module.Collection, 'create_index',
                            fail)
        store = served()
        for _ in range(2):
            with pytest.raises(exception.BackendError, match='code 18'):
                store.set('k', 1)
        assert len(calls) == 2

    def _expired_doc(self, raw, store, key, **fields):
        """An expired document the TTL monitor has not removed yet.

        The server's TTL monitor may run any second; the test's own
        collection loses its TTL index so the document stays in place
        (the backend creates the index once and does not look again).
        """
        store.set('warm-up', 0)  # creates the TTL index
        raw.drop_index('expires_at_1')
        stored = stored_keys.data_key(store, key)
        doc = {'_id': stored,
               'expires_at': utcnow() - datetime.timedelta(seconds=1),
               **fields}
        raw.insert_one(doc)
        return stored

    def test_expired_document_is_never_returned(self, served,
                                                mongo_collection):
        store = served(expire_time=60)
        value = oslo_kvs.serialization.dumps('stale')
        raw = mongo_collection
        stored = self._expired_doc(raw, store, 'k', value=value)
        with pytest.raises(exception.NotFound):
            store.get('k')
        with pytest.raises(exception.NotFound) as info:
            store.get_multi(['warm-up', 'k'])
        assert info.value.target == ['k']
        with pytest.raises(exception.NotFound):
            store.delete('k')
        assert raw.find_one({'_id': stored}) is not None

    def test_expired_document_does_not_block_add(self, served,
                                                 mongo_collection):
        store = served(expire_time=60)
        raw = mongo_collection
        stored = self._expired_doc(
            raw, store, 'k',
            value=oslo_kvs.serialization.dumps('stale'))
        assert store.add('k', 'fresh') is True
        assert store.get('k') == 'fresh'
        assert raw.count_documents({'_id': stored}) == 1
        assert raw.find_one({'_id': stored})['expires_at'] > utcnow()
        assert store.add('k', 'again') is False

    def test_expired_lock_is_taken_over_live_one_is_not(
            self, served, mongo_collection):
        store = served()
        store.set('warm-up', 0)
        raw = mongo_collection
        raw.drop_index('expires_at_1')
        lock_key = stored_keys.lock_key(store, 'k')
        raw.insert_one({'_id': lock_key, 'token': 'dead-holder',
                        'expires_at': utcnow() -
                        datetime.timedelta(seconds=1)})
        lock = store.get_lock('k')
        assert lock.acquire(blocking=False)
        doc = raw.find_one({'_id': lock_key})
        assert doc['token'] not in ('dead-holder', None)
        assert store.get_lock('k').acquire(blocking=False) is False
        lock.release()
        assert raw.find_one({'_id': lock_key}) is None


# --- locks and multi-key operations ---------------------------------------

class TestMongoLocksAndBatches:
    def test_release_deletes_only_the_holders_document(
            self, raw_backend, mongo_collection):
        backend = raw_backend
        raw = mongo_collection
        key = 'lock-%s' % uuid.uuid4()
        before = utcnow()
        assert backend.acquire_lock(key, 'mine', 30)
        assert backend.acquire_lock(key, 'other', 30) is False
        doc = raw.find_one({'_id': key})
        assert doc['token'] == 'mine'
        assert doc['expires_at'] >= before + datetime.timedelta(seconds=30)
        assert backend.release_lock(key, 'other') is False
        assert raw.find_one({'_id': key})['token'] == 'mine'
        assert backend.release_lock(key, 'mine') is True
        assert raw.find_one({'_id': key}) is None
        assert backend.release_lock(key, 'mine') is False

    def test_lock_without_timeout_never_expires(self, served,
                                                mongo_collection):
        store = served(lock_timeout=0)
        raw = mongo_collection
        with store.get_lock('k'):
            doc = raw.find_one({'_id': stored_keys.lock_key(store, 'k')})
            assert 'expires_at' not in doc

    def test_set_multi_is_one_unordered_bulk_command(self, served,
                                                     mongo_commands):
        store = served()
        store.set('warm-up', 0)  # the TTL index, created once
        mongo_commands.clear()
        store.set_multi({'a': 1, 'b': 2})
        (update,) = mongo_commands.requests()
        assert update['ordered'] is False
        assert len(update['updates']) == 2
        assert all(op['upsert'] for op in update['updates'])


# --- values are bytes ------------------------------------------------------

class TestMongoValues:
    def test_backend_returns_plain_bytes(self, served, raw_backend):
        store = served()
        store.set('k', b'payload')
        stored = stored_keys.data_key(store, 'k')
        got = raw_backend.get_serialized(stored)
        assert type(got) is bytes
        assert raw_backend.get_serialized_multi([stored]) == [got]

    @pytest.mark.parametrize('foreign', [
        'a string', 42, {'$binary': 'AAAA'}, None, ['list']])
    def test_foreign_value_is_an_integrity_error(
            self, served, mongo_collection, caplog, foreign):
        store = served()
        stored = stored_keys.data_key(store, 'k')
        mongo_collection.insert_one(
            {'_id': stored, 'value': foreign})
        with caplog.at_level(logging.WARNING, logger=mongo.__name__):
            with pytest.raises(exception.IntegrityError):
                store.get('k')
        assert 'no binary value' in caplog.text
        assert store.add('k', 'blocked') is False

    def test_value_too_large(self, served, mongo_collection):
        store = served()
        huge = b'x' * mongo.MAX_DOCUMENT_SIZE
        with pytest.raises(exception.ValueTooLarge):
            store.set('k', huge)
        with pytest.raises(exception.ValueTooLarge):
            store.set_multi({'a': 1, 'k': huge})
        with pytest.raises(exception.ValueTooLarge):
            store.add('k', huge)
        assert mongo_collection.count_documents({}) == 0

    def test_unmangled_key_must_be_valid_unicode(self, served,
                                                 mongo_collection):
        oslo_kvs.core.cfg.CONF.set_override('enable_key_mangler', False,
                                            group='kvs')
        store = served()
        store.set('plain key', 1)
        # Unmangled, the stored key is the store's prefix and the key.
        (doc,) = mongo_collection.find()
        assert doc['_id'].endswith(':plain key')
        with pytest.raises(exception.ConfigurationError, match='Unicode'):
            store.set('bad \ud800 key', 1)
