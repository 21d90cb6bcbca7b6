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

"""The keys a store gives its backend, found through the public API.

Tests that look at a server's raw contents need the stored key of a user
key. Rather than reading the store's internals, the store is configured
with :class:`KeyRecorder` as its ``key_mangler`` (the default mangling
function, so stored keys are what a default store writes); a store
operation on the key then shows the stored key the mangler produced.

It is also where tests look into a store where no public API can tell:
:func:`expiry` and :func:`memcached_pool`.
"""

import typing as ty
import uuid
import weakref

from oslo_config import cfg

import oslo_kvs
from oslo_kvs import core
from oslo_kvs import exception


class KeyRecorder:
    """A key mangler that remembers the last key it produced.

    :param mangle: the mangling function, the store's default unless given.
    """

    def __init__(self, mangle: ty.Callable[[str], str] = (
            core.sha256_mangle_key)) -> None:
        self.mangle = mangle
        self.last: str | None = None

    def __call__(self, key: str) -> str:
        self.last = self.mangle(key)
        return self.last


_recorders: 'weakref.WeakKeyDictionary[oslo_kvs.KeyValueStore, KeyRecorder]'
_recorders = weakref.WeakKeyDictionary()


def configure(store: oslo_kvs.KeyValueStore, backing_store: str,
              mangle: ty.Callable[[str], str] = core.sha256_mangle_key,
              **args: ty.Any) -> oslo_kvs.KeyValueStore:
    """``store.configure`` with a :class:`KeyRecorder`; returns ``store``."""
    recorder = KeyRecorder(mangle)
    store.configure(backing_store, key_mangler=recorder, **args)
    _recorders[store] = recorder
    return store


def configure_from_conf(store: oslo_kvs.KeyValueStore, group: str,
                        **overrides: ty.Any) -> oslo_kvs.KeyValueStore:
    """``store.configure_from_conf`` with a :class:`KeyRecorder`.

    The recorder mangles as the default does, so the stored keys are
    those of the operator's configuration. Returns ``store``.
    """
    recorder = KeyRecorder()
    store.configure_from_conf(group, key_mangler=recorder, **overrides)
    _recorders[store] = recorder
    return store


def new_store(name: str | None = None,
              conf: cfg.ConfigOpts | None = None) -> oslo_kvs.KeyValueStore:
    """A new, unconfigured store (unique name unless given).

    :param conf: the store's ``ConfigOpts`` (``cfg.CONF`` by default).
    """
    return oslo_kvs.get_key_value_store(
        name or 'stored-%s' % uuid.uuid4(), conf=conf)


def make_store(backing_store: str, name: str | None = None,
               conf: cfg.ConfigOpts | None = None,
               **args: ty.Any) -> oslo_kvs.KeyValueStore:
    """A new store (unique name unless given) set up by :func:`configure`.

    The one store factory of the tests: files with defaults of their own
    bind them with ``functools.partial``.
    """
    return configure(new_store(name, conf), backing_store, **args)


def data_key(store: oslo_kvs.KeyValueStore, key: str) -> str:
    """The stored key of ``key``.

    Found by reading ``key``: not for tests where a read matters (the
    memory backend's LRU order).
    """
    try:
        store.get(key)
    except exception.NotFound:
        pass
    return _recorders[store].last


def lock_key(store: oslo_kvs.KeyValueStore, key: str) -> str:
    """The stored key of the lock on ``key`` (no lock is taken)."""
    store.get_lock(key)
    return _recorders[store].last


def expiry(store: oslo_kvs.KeyValueStore
           ) -> tuple[float | None, frozenset[str]]:
    """The store's ``expire_time`` and its no-expiry stored keys.

    Read from the store's internals on purpose: without a server, or before
    anything expires, no public API shows how the expiry arguments were
    read, and none should be added just for tests. The one place tests
    look.
    """
    state = store._state
    return state.ttl, state.no_expiry


def memcached_pool(store: oslo_kvs.KeyValueStore) -> ty.Any:
    """The connection pool of a one-server memcached store.

    Read from the store's internals on purpose: the pool's own state
    (open, idle or busy connections) is what fault and pool tests check,
    and no public API shows it, nor should just for tests.
    """
    return store._state.backend._clients.get().nodes[0]


def backend_args(request: ty.Any, name: str) -> tuple[str, dict[str, ty.Any]]:
    """The backend and arguments of a store on a test's named server.

    ``name`` is ``memory``, ``memcached``, ``memcached-3``, ``redis``,
    ``sentinel``, ``cluster`` or ``mongo``; the server comes from the
    session fixtures of ``oslo_kvs_tests.servers``.
    """
    if name == 'memory':
        return 'openstack.kvs.Memory', {}
    if name == 'mongo':
        server = request.getfixturevalue('mongo_server')
        collection = request.getfixturevalue('mongo_collection')
        return 'openstack.kvs.MongoDB', server.collection_args(
            collection.name)
    if name.startswith('memcached'):
        servers = request.getfixturevalue(
            'memcached_cluster' if name == 'memcached-3'
            else 'memcached_server')
        return 'openstack.kvs.Memcached', dict(servers.store_args,
                                               socket_timeout=5)
    group = request.getfixturevalue({
        'redis': 'redis_server', 'sentinel': 'redis_sentinel_group',
        'cluster': 'redis_cluster'}[name])
    return 'openstack.kvs.Redis', dict(group.store_args)


def backend(store: oslo_kvs.KeyValueStore) -> ty.Any:
    """The backend object of a configured store.

    Read from the store's internals on purpose: how often a store calls
    its backend (a lock waiter's tries) is what some tests count, by
    wrapping a method of this object, and no public API shows it.
    """
    return store._state.backend
