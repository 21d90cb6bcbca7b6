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

"""MongoDB for the tests: SecantusDB, a real mongod, or mongomock.

MongoDB is SecantusDB's Python server (the ``SecantusDB`` test
requirement), a MongoDB-wire server on WiredTiger that pymongo talks to as
to a one-member mongod 8 replica set. ``OSLO_KVS_MONGO_URL`` points the
MongoDB fixtures at a real server instead.

mongomock (:func:`install_mongomock`) serves only what a real server cannot
give: the MongoDB user guide's examples name made-up hosts, credentials and
replica sets, which mongomock accepts as they are.
"""

import functools
import inspect
import os
import sys
import typing as ty
import urllib.parse
import uuid

from pymongo import monitoring
import pytest

from oslo_kvs_tests.servers.base import missing
from oslo_kvs_tests.servers.base import private_servers
from oslo_kvs_tests.servers.base import running
from oslo_kvs_tests.servers.base import ServerProcess
from oslo_kvs_tests.servers.base import wait_for_port

MONGO_URL_VARIABLE = 'OSLO_KVS_MONGO_URL'


class MongoServer(ServerProcess):
    """SecantusDB's MongoDB server on a loopback port.

    Its WiredTiger files live in the temp dir, so a restart (:meth:`stop`
    then :meth:`start`) reopens the same data, as a restarted mongod
    would. It advertises itself as the primary of a one-member replica set
    and sweeps TTL indexes every 60 s, like mongod's TTL monitor.
    """

    binary = 'secantusdb'

    def __init__(self, port: int | None = None,
                 cpu: int | None = None) -> None:
        super().__init__(port, cpu)
        self.db_name = 'oslo_kvs_tests'
        # An explicit (empty) configuration file stops SecantusDB from
        # reading one from the user's home or /etc.
        self.config = os.path.join(self.tmpdir, 'secantusd.toml')
        open(self.config, 'w').close()

    @property
    def url(self) -> str:
        return 'mongodb://%s/' % self.address

    def command(self) -> list[str]:
        return [sys.executable, '-m', 'secantus', '--config', self.config,
                '--host', self.host, '--port', str(self.port),
                '--storage-path', os.path.join(self.tmpdir, 'data'),
                '--log-level', 'WARNING']

    def require(self) -> None:
        try:
            import secantus  # noqa: F401
        except ImportError:
            missing('SecantusDB is not installed (pip install -r '
                    'test-requirements.txt)')

    def start(self) -> 'MongoServer':
        self.spawn()
        try:
            # Importing the server and opening WiredTiger take a moment on
            # a busy machine; then it must answer the handshake.
            wait_for_port(self.port, self.process, timeout=60)
            with self.client() as client:
                client.admin.command('ping')
        except Exception as exc:
            self.stop()
            raise RuntimeError('SecantusDB did not start: %s\n%s'
                               % (exc, self.log())) from None
        return self

    def client(self, **kwargs: ty.Any) -> ty.Any:
        """A raw pymongo client for this server, for test assertions."""
        import pymongo
        args: dict[str, ty.Any] = {'serverSelectionTimeoutMS': 30000}
        args.update(kwargs)
        return pymongo.MongoClient(self.url, **args)

    def collection_args(self, collection: str) -> dict[str, ty.Any]:
        """``configure()`` arguments of openstack.kvs.MongoDB for it."""
        return {'db_hosts': self.url, 'db_name': self.db_name,
                'cache_collection': collection,
                'server_selection_timeout': 10}


class ExternalMongo:
    """A real MongoDB server named by ``OSLO_KVS_MONGO_URL``.

    It is never started, stopped or cleaned: the tests create collections
    with unique names in one database and drop only those.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        path = urllib.parse.urlsplit(url).path.strip('/')
        self.db_name = path or 'oslo_kvs_tests'
        netloc = urllib.parse.urlsplit(url).netloc.rpartition('@')[2]
        self.address = netloc

    def client(self, **kwargs: ty.Any) -> ty.Any:
        """A raw pymongo client for this server, for test assertions."""
        import pymongo
        args: dict[str, ty.Any] = {'serverSelectionTimeoutMS': 10000}
        args.update(kwargs)
        return pymongo.MongoClient(self.url, **args)

    collection_args = MongoServer.collection_args

    def cleanup(self) -> None:
        pass


@pytest.fixture(scope='session')
def mongo_server() -> ty.Iterator[ty.Any]:
    """The MongoDB server of the session: SecantusDB, or a real mongod.

    With ``OSLO_KVS_MONGO_URL`` set, that server (never stopped or
    cleaned); otherwise a SecantusDB this session starts and stops. Never
    stop it in a test; use :func:`mongo_factory` for that.
    """
    url = os.environ.get(MONGO_URL_VARIABLE, '')
    if url:
        yield ExternalMongo(url)
        return
    yield from running(MongoServer())


@pytest.fixture
def mongo_collection(mongo_server: ty.Any) -> ty.Iterator[ty.Any]:
    """A collection of its own for one test, dropped afterwards.

    The name is unique per test, so nothing this run did not create is
    ever touched, also on a shared real server.
    """
    with mongo_server.client() as client:
        collection = client[mongo_server.db_name][
            'kvs_%s' % uuid.uuid4().hex]
        try:
            yield collection
        finally:
            collection.drop()


@pytest.fixture
def mongo_factory() -> ty.Iterator[ty.Callable[..., MongoServer]]:
    """Make private SecantusDB servers a test may stop and restart.

    Always SecantusDB, also with ``OSLO_KVS_MONGO_URL`` set: a fault test
    stops its server, which it must never do to a shared one.
    """
    yield from private_servers(MongoServer)


class MongoCommands(monitoring.CommandListener):
    """The commands pymongo sent, in order: what went over the wire.

    A pymongo command listener; :func:`mongo_commands` hands it to every
    client the backends build.
    """

    #: Not requests of the backend: handshakes, authentication, the
    #: session clean-up of a closing client.
    NOISE = frozenset(['hello', 'isMaster', 'ismaster', 'saslStart',
                       'saslContinue', 'endSessions', 'ping'])

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, ty.Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def requests(self) -> list[dict[str, ty.Any]]:
        """The commands sent since :meth:`clear`, without the noise."""
        return [command for name, command in self.sent
                if name not in self.NOISE]

    def names(self) -> list[str]:
        """The names of :meth:`requests`, e.g. ``['find']``."""
        return [name for name, _ in self.sent if name not in self.NOISE]

    def clear(self) -> None:
        del self.sent[:]


@pytest.fixture
def mongo_commands(monkeypatch: pytest.MonkeyPatch) -> MongoCommands:
    """Record every command of the MongoDB backends a test configures.

    It wraps ``MongoBackend.client_factory``, the backend's public hook
    for building its client, to pass pymongo ``event_listeners``.
    """
    from oslo_kvs.backends import mongo
    listener = MongoCommands()
    build = mongo.MongoBackend.client_factory

    def counting(hosts: ty.Any, **kwargs: ty.Any) -> ty.Any:
        return build(hosts, event_listeners=[listener], **kwargs)

    monkeypatch.setattr(mongo.MongoBackend, 'client_factory', counting)
    return listener


def _allow_bulk_sort_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let mongomock's bulk builder take pymongo >= 4.10's ``sort=None``.

    mongomock 4.3 does not accept the ``sort`` argument (mongomock issue
    #912); the backend never sorts, so an unsorted operation is forwarded
    and a real sort refused. Nothing is patched once mongomock takes it.
    """
    import mongomock.collection
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

    Backends reach it through ``MongoBackend.client_factory``, the
    backend's public hook for building its client. mongomock is imported
    here, by the few tests that use it, not by every test session.
    """
    import mongomock
    from oslo_kvs.backends import mongo
    _allow_bulk_sort_none(monkeypatch)
    server = mongomock.store.ServerStore()
    monkeypatch.setattr(mongo.MongoBackend, 'client_factory',
                        functools.partial(mongomock.MongoClient,
                                          _store=server))
    return server
