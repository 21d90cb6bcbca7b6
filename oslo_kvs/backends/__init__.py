"""Backend registration.

oslo_kvs backends are registered with dogpile.cache under
``openstack.kvs.<Class>`` names, as Keystone registered its own, and are
imported only when a store is configured with them. Out-of-tree backends
listed in ``[kvs] backends`` are registered the same way.
"""

import typing as ty

import dogpile.cache
from dogpile.cache import api
from oslo_utils import importutils

from oslo_kvs import _lazy
from oslo_kvs import exception

PREFIX = 'openstack.kvs.'

BUILTIN: dict[str, tuple[str, str]] = {
    PREFIX + 'Memory': ('oslo_kvs.backends.memory', 'MemoryBackend'),
    PREFIX + 'Memcached': ('oslo_kvs.backends.memcached', 'MemcachedBackend'),
    PREFIX + 'Redis': ('oslo_kvs.backends.redis', 'RedisBackend'),
    PREFIX + 'MongoDB': ('oslo_kvs.backends.mongo', 'MongoBackend'),
}

_registered: dict[str, tuple[str, str]] = {}
_lock = _lazy.Primitive('Lock')


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


def registered() -> list[str]:
    """The ``openstack.kvs.*`` names known now."""
    with _lock:
        return sorted(_registered)
