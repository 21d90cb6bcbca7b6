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

"""Backend registration and lookup.

oslo_kvs backends are registered under ``openstack.kvs.<Class>`` names, as
Keystone registered its own, in oslo_kvs's own registry and with
dogpile.cache (``register_backend``), and are imported only when a store is
configured with them. Out-of-tree backends listed in ``[kvs] backends`` are
registered the same way. dogpile.cache's own backends are known by their
documented classes; other names are looked up among the ``dogpile.cache``
entry points, and what remains is left to dogpile's public
``CacheRegion.configure()``.
"""

import importlib
import importlib.metadata
import typing as ty

import dogpile.cache
from dogpile.cache import api
from oslo_utils import importutils

from oslo_kvs import _process
from oslo_kvs import exception

PREFIX = 'openstack.kvs.'

BUILTIN: dict[str, tuple[str, str]] = {
    PREFIX + 'Memory': ('oslo_kvs.backends.memory', 'MemoryBackend'),
    PREFIX + 'Memcached': ('oslo_kvs.backends.memcached', 'MemcachedBackend'),
    PREFIX + 'Redis': ('oslo_kvs.backends.redis', 'RedisBackend'),
    PREFIX + 'MongoDB': ('oslo_kvs.backends.mongo', 'MongoBackend'),
}

#: dogpile.cache's own backends, by their documented names and public
#: classes. dogpile registers them through a private loader, so they are
#: listed here to know a backend's class before anything is created.
DOGPILE_OWN: dict[str, tuple[str, str]] = {
    'dogpile.cache.%s' % short: ('dogpile.cache.backends.%s' % module, cls)
    for short, module, cls in [
        ('null', 'null', 'NullBackend'),
        ('dbm', 'file', 'DBMBackend'),
        ('pylibmc', 'memcached', 'PylibmcBackend'),
        ('bmemcached', 'memcached', 'BMemcachedBackend'),
        ('memcached', 'memcached', 'MemcachedBackend'),
        ('pymemcache', 'memcached', 'PyMemcacheBackend'),
        ('memory', 'memory', 'MemoryBackend'),
        ('memory_pickle', 'memory', 'MemoryPickleBackend'),
        ('redis', 'redis', 'RedisBackend'),
        ('redis_sentinel', 'redis', 'RedisSentinelBackend'),
        ('redis_cluster', 'redis', 'RedisClusterBackend'),
    ]
}

_registered: dict[str, tuple[str, str]] = {}
_lock = _process.Primitive('Lock')


def _register(name: str, module: str, cls: str) -> None:
    _registered[name] = (module, cls)
    dogpile.cache.register_backend(name, module, cls)


for _name, (_module, _cls) in BUILTIN.items():
    _register(_name, _module, _cls)


def register_backends(paths: ty.Iterable[str]) -> None:
    """Register out-of-tree backends given as dotted ``module.Class`` paths.

    Each becomes ``openstack.kvs.<Class>``. Registering the same path again
    is harmless.

    :raises exception.ConfigurationError: naming the path when it cannot be
        imported, is not a dogpile.cache backend class, or its name is
        already taken by another class.
    """
    for path in paths:
        module, _, cls_name = path.rpartition('.')
        if not module or not cls_name:
            raise exception.ConfigurationError(
                'KVS backend %r must be a dotted "module.Class" path' % path)
        try:
            cls = importutils.import_class(path)
        except (ImportError, AttributeError, ValueError) as exc:
            raise exception.ConfigurationError(
                'KVS backend %r cannot be imported: %s' % (path, exc)
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, api.CacheBackend)):
            raise exception.ConfigurationError(
                'KVS backend %r is not a dogpile.cache CacheBackend class'
                % path)
        name = PREFIX + cls_name
        with _lock:
            taken = _registered.get(name)
            if taken is not None and taken != (module, cls_name):
                raise exception.ConfigurationError(
                    'KVS backend %r cannot be registered as %s: that name '
                    'is already %s.%s' % ((path, name) + taken))
            _register(name, module, cls_name)


def load_class(name: str) -> type | None:
    """The backend class registered as ``name``, imported now.

    :returns: ``None`` for a name only dogpile.cache itself knows (its
        built-in backends); ``CacheRegion.configure()`` resolves those.
    :raises exception.ConfigurationError: for an unknown ``openstack.kvs.*``
        name or a backend that cannot be imported.
    """
    with _lock:
        found = _registered.get(name)
    if found is not None:
        module, cls_name = found
    elif name.startswith(PREFIX):
        raise unknown(name)
    elif name in DOGPILE_OWN:
        module, cls_name = DOGPILE_OWN[name]
    else:
        points = importlib.metadata.entry_points(group='dogpile.cache',
                                                 name=name)
        if not points:
            return None
        module, _, cls_name = next(iter(points)).value.partition(':')
    try:
        return getattr(importlib.import_module(module.strip()),
                       cls_name.strip())
    except (ImportError, AttributeError) as exc:
        raise exception.ConfigurationError(
            'KVS backend %r cannot be imported: %s' % (name, exc)) from exc


def unknown(name: str) -> exception.ConfigurationError:
    """The error for a backend name nobody registered."""
    return exception.ConfigurationError(
        'Unknown KVS backend %r; known oslo_kvs backends: %s (or any '
        'registered dogpile.cache backend)' % (name, ', '.join(registered())))


def registered() -> list[str]:
    """The ``openstack.kvs.*`` names known now."""
    with _lock:
        return sorted(_registered)
