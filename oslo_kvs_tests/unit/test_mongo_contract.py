"""The backend contract on ``openstack.kvs.MongoDB`` over mongomock.

mongomock is an in-process imitation of a MongoDB server. This run proves
the backend's logic (filters, upserts, the document layout, the lock
protocol) against MongoDB's query language as mongomock understands it; it
proves nothing about a real server. doc/source/user/backend-mongodb.rst
lists what it cannot prove; ``tox -e functional-mongo`` with
``OSLO_KVS_MONGO_URL`` runs the same contract against a real server.
"""

import functools
import inspect
import typing as ty

import mongomock
import mongomock.collection
import pytest

from oslo_kvs.backends import mongo
from oslo_kvs import testing

DB_NAME = 'oslo_kvs'
COLLECTION = 'kvs'


def allow_bulk_sort_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let mongomock's bulk builder take pymongo >= 4.10's ``sort=None``.

    pymongo 4.10 passes ``sort`` to the bulk builder for ReplaceOne and
    UpdateOne; mongomock 4.3 does not accept it (mongomock issue #912,
    still open). The backend never sorts, so an unsorted operation is
    forwarded unchanged and any real sort is refused. Nothing is patched
    once mongomock accepts ``sort``.
    """
    builder = mongomock.collection.BulkOperationBuilder
    original = builder.add_replace
    if 'sort' in inspect.signature(original).parameters:
        return

    def add_replace(self, selector, doc, upsert, sort=None, **kwargs):
        if sort is not None:
            raise NotImplementedError('mongomock cannot sort in bulk_write')
        return original(self, selector, doc, upsert, **kwargs)

    monkeypatch.setattr(builder, 'add_replace', add_replace)


def install_mongomock(monkeypatch: pytest.MonkeyPatch) -> ty.Any:
    """Make every backend configured from now on use one mongomock server.

    Backends reach it through ``MongoBackend.client_factory``. The returned
    server store lets a test open its own client on the same data
    (:func:`raw_collection`).
    """
    allow_bulk_sort_none(monkeypatch)
    server = mongomock.store.ServerStore()
    monkeypatch.setattr(mongo.MongoBackend, 'client_factory',
                        functools.partial(mongomock.MongoClient,
                                          _store=server))
    return server


@pytest.fixture
def mongomock_server(monkeypatch):
    """One mongomock server shared by every backend a test configures."""
    return install_mongomock(monkeypatch)


def raw_collection(server, collection=COLLECTION):
    """The test's own view of the collection the backends use."""
    return mongomock.MongoClient(_store=server)[DB_NAME][collection]


class TestMongoMockContract(testing.StoreContract):
    expire_time_alias = 'mongo_ttl_seconds'
    expiry_wait = 1.2
    hypothesis_examples = 100

    @pytest.fixture(autouse=True)
    def _backend(self, mongomock_server):
        self.backing_store = 'openstack.kvs.MongoDB'
        self.backend_args = {'db_hosts': '127.0.0.1:27017',
                             'db_name': DB_NAME,
                             'cache_collection': COLLECTION}
