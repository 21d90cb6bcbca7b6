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
Keystone registered its own, with dogpile.cache (``register_backend``), and
are imported only when a store is configured with them. Out-of-tree
backends listed in ``[kvs] backends`` are registered the same way. Every
name, ours and dogpile.cache's own or third-party ones, is then resolved by
dogpile.cache's registry, so a backend dogpile knows is known here.
"""

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

# dogpile.cache's registry, the loader behind its public register_backend:
# load(name) imports and returns the class registered as ``name``, also
# from the ``dogpile.cache`` entry points.
_dogpile_registry = dogpile.cache.register_backend.__self__  # type: ignore

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


def load_class(name: str) -> type:
    """The backend class registered as ``name``, imported now.

    :raises exception.ConfigurationError: for a name nobody registered or
        a backend that cannot be imported.
    """
    if name.startswith(PREFIX) and name not in registered():
        raise unknown(name)  # before dogpile imports every entry point
    try:
        return _dogpile_registry.load(name)
    except _dogpile_registry.NotFound:
        raise unknown(name) from None
    except (ImportError, AttributeError) as exc:
        raise exception.ConfigurationError(
            'KVS backend %r cannot be imported: %s' % (name, exc),
            'backing_store') from exc


def unknown(name: str) -> exception.ConfigurationError:
    """The error for a backend name nobody registered."""
    return exception.ConfigurationError(
        'Unknown KVS backend %r; known oslo_kvs backends: %s (or any '
        'registered dogpile.cache backend)' % (name, ', '.join(registered())),
        'backing_store')


def registered() -> list[str]:
    """The ``openstack.kvs.*`` names known now."""
    with _lock:
        return sorted(_registered)
