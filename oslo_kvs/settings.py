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

"""A store's configuration, parsed once.

:func:`from_arguments` reads ``configure()`` arguments and
:func:`from_group` the store options of a configuration group; both return
a :class:`Settings`, which the store, ``configure_from_conf``, the test
fixture and ``oslo-kvs doctor`` all read. Every store argument is checked
here; backend arguments are checked by the backend, which knows its
server. A :class:`~oslo_kvs.exception.ConfigurationError` raised here
names its argument in ``argument``.
"""

import contextlib
import dataclasses
import typing as ty

from dogpile.cache import proxy as dogpile_proxy
from oslo_config import cfg
from oslo_config import types
from oslo_utils import importutils

from oslo_kvs import backends
from oslo_kvs.backends import address
from oslo_kvs.backends import base
from oslo_kvs import exception
from oslo_kvs import opts
from oslo_kvs import protection
from oslo_kvs import serialization

#: ``configure()`` arguments the store keeps whatever the backend; every
#: other argument goes to the backend. A backend's historical name for
#: ``expire_time`` (``expire_time_alias``) is the store's too.
EXPIRY_ARGUMENTS = frozenset(['expire_time', 'no_expiry_keys'])
STORE_ARGUMENTS = frozenset(['lock_timeout', 'lock_window',
                             'value_protection', 'protection_keys',
                             'serializer', 'near_cache_ttl',
                             'near_cache_size']) | EXPIRY_ARGUMENTS

#: The ``[kvs]`` option holding the default of each store argument.
_KVS_DEFAULTS = {'lock_timeout': 'default_lock_timeout',
                 'value_protection': 'value_protection',
                 'protection_keys': 'protection_keys',
                 'serializer': 'serializer'}

#: The default safety window of a lock, in seconds (Keystone's).
DEFAULT_LOCK_WINDOW = 1.0

#: Entries a near cache keeps by default (see :mod:`oslo_kvs.near`).
DEFAULT_NEAR_CACHE_SIZE = 10000

_BOOL = types.Boolean()
_SECONDS = base.seconds()
_ENTRIES = base.count(min=1)
_SERIALIZER = types.String(choices=serialization.SERIALIZERS)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything ``configure()`` was told, checked and in final form."""

    #: The backend name as given, and its class (an oslo_kvs backend or a
    #: foreign dogpile.cache one).
    backing_store: str
    backend_cls: type
    #: What goes to the backend: every argument but the store's.
    backend_args: dict[str, ty.Any] = dataclasses.field(repr=False)
    key_mangler: ty.Callable[[str], str] | None = None
    #: dogpile.cache ProxyBackend classes or instances, outermost first.
    proxies: tuple[ty.Any, ...] = ()
    locking: bool = True
    lock_timeout: float = 5.0
    lock_window: float = DEFAULT_LOCK_WINDOW
    #: The store's expiry in seconds (None: never) and its exempt keys.
    ttl: float | None = None
    no_expiry: tuple[str, ...] = ()
    value_protection: str = 'none'
    protection_keys: tuple[bytes, ...] = dataclasses.field(default=(),
                                                           repr=False)
    serializer: str = 'msgpack'
    #: Seconds a value read from the server may be served from this
    #: process's memory (0: no near cache), and most entries kept.
    near_ttl: float = 0.0
    near_size: int = DEFAULT_NEAR_CACHE_SIZE
    #: Per argument, the option it was read from (:func:`from_group`).
    sources: ty.Mapping[str, str] = dataclasses.field(default_factory=dict,
                                                      repr=False)

    @property
    def native(self) -> bool:
        """Whether the backend is an oslo_kvs backend (not a foreign one)."""
        return issubclass(self.backend_cls, base.Backend)


def _error(owner: str, argument: str,
           message: str) -> exception.ConfigurationError:
    return exception.ConfigurationError(
        'Argument %r of %s: %s' % (argument, owner, message), argument)


def from_arguments(conf: cfg.ConfigOpts, owner: str, backing_store: ty.Any,
                   key_mangler: ty.Any = None, proxy_list: ty.Any = None,
                   locking: ty.Any = True, **arguments: ty.Any) -> Settings:
    """Parse ``configure()`` arguments; defaults come from ``[kvs]``.

    :param owner: who is configured, for messages (``KVS store 'x'``).
    :raises exception.ConfigurationError: for the first bad argument,
        before anything is created; never quoting a secret.
    """
    opts.register_opts(conf)
    kvs = conf[opts.GROUP]
    if not isinstance(backing_store, str):
        raise _error(owner, 'backing_store',
                     'must be a backend name, not %r' % (backing_store,))
    if key_mangler is not None and not callable(key_mangler):
        raise _error(owner, 'key_mangler',
                     'must be callable, not %r' % (key_mangler,))
    args = dict(arguments)
    lock_timeout = base.coerce(owner, 'lock_timeout', _SECONDS, _pop(
        args, 'lock_timeout', kvs.default_lock_timeout))
    mode, keys = _protection(owner, args, kvs)
    backends.register_backends(kvs.backends)
    backend_cls = backends.load_class(backing_store)
    ttl, no_expiry = _expiry(owner, backend_cls, args)
    serializer = base.coerce(owner, 'serializer', _SERIALIZER,
                             _pop(args, 'serializer', kvs.serializer))
    if serializer == 'pickle' and mode == 'none' and not getattr(
            backend_cls, 'local', False):
        raise _error(owner, 'serializer',
                     'pickle on %s needs value_protection (mac or encrypt):'
                     ' unpickling unauthenticated bytes from a server runs '
                     'whatever code they hold' % backing_store)
    window = _lock_window(owner, args.pop('lock_window', None), lock_timeout)
    near_ttl = base.coerce(owner, 'near_cache_ttl', _SECONDS,
                           _pop(args, 'near_cache_ttl', 0))
    near_size = base.coerce(owner, 'near_cache_size', _ENTRIES, _pop(
        args, 'near_cache_size', DEFAULT_NEAR_CACHE_SIZE))
    if not issubclass(backend_cls, base.Backend):
        # Imported only now: it imports the memcached and Redis client
        # libraries, which a service may monkey-patch after importing
        # oslo_kvs (eventlet).
        from oslo_kvs.backends import foreign
        args = foreign.arguments(backing_store, backend_cls, args)
    return Settings(
        backing_store=backing_store, backend_cls=backend_cls,
        backend_args=args, key_mangler=key_mangler,
        proxies=tuple(_load_proxy(owner, item) for item in proxy_list or ()),
        locking=base.coerce(owner, 'locking', _BOOL, locking),
        lock_timeout=lock_timeout, lock_window=window, ttl=ttl,
        no_expiry=tuple(no_expiry), value_protection=mode,
        protection_keys=tuple(keys), serializer=serializer,
        near_ttl=near_ttl, near_size=near_size)


def _pop(args: dict[str, ty.Any], name: str, default: ty.Any) -> ty.Any:
    """``args[name]`` taken out of ``args``; unset means ``default``."""
    value = args.pop(name, None)
    return default if base.is_unset(value) else value


def _str_list(owner: str, name: str, value: ty.Any) -> list[str]:
    """A list of str given as any iterable of str or a comma-separated str.

    The value is never quoted: ``protection_keys`` are secrets.
    """
    if base.is_unset(value):
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(',') if item.strip()]
    if isinstance(value, (list, tuple, set, frozenset)) and all(
            isinstance(item, str) for item in value):
        return list(value)
    raise _error(owner, name, 'expected a list, tuple or set of str, or a '
                              'comma-separated string')


def _protection(owner: str, args: dict[str, ty.Any],
                kvs: ty.Any) -> tuple[str, list[bytes]]:
    """``value_protection`` and the checked ``protection_keys``."""
    try:
        mode = protection.normalize_mode(
            _pop(args, 'value_protection', kvs.value_protection))
    except exception.ConfigurationError as exc:
        raise _error(owner, 'value_protection', str(exc)) from None
    given = args.pop('protection_keys', None)
    secrets = _str_list(owner, 'protection_keys',
                        kvs.protection_keys if given is None else given)
    try:
        keys = protection.check_secrets(secrets)
    except exception.ConfigurationError as exc:
        raise _error(owner, 'protection_keys', str(exc)) from None
    if mode != 'none' and not keys:
        raise _error(owner, 'value_protection',
                     '%s needs at least one protection key' % mode)
    return mode, keys


def _expiry(owner: str, backend_cls: type,
            args: dict[str, ty.Any]) -> tuple[float | None, list[str]]:
    """The store's ``expire_time`` (or its alias) and ``no_expiry_keys``."""
    given = base.given_name(
        owner, ('expire_time', getattr(backend_cls, 'expire_time_alias',
                                       None)), args)
    expire_time = args.pop(given) if given else None
    no_expiry = _str_list(owner, 'no_expiry_keys',
                          args.pop('no_expiry_keys', None))
    if not issubclass(backend_cls, base.Backend) and (given or no_expiry):
        # Foreign dogpile backends expire values their own way.
        name = given or 'no_expiry_keys'
        raise _error(owner, name, "not supported by a dogpile backend; use"
                                  " that backend's own expiry arguments")
    if given is None or base.is_unset(expire_time):
        return None, no_expiry
    return base.coerce(owner, given, _SECONDS, expire_time) or None, no_expiry


def _lock_window(owner: str, value: ty.Any, lock_timeout: float) -> float:
    """The safety window of the store's locks.

    By default :data:`DEFAULT_LOCK_WINDOW`, shrunk to half of a short
    ``lock_timeout``; more than half is refused, since a lease would then
    be mostly unusable. Locks that never expire need no window.
    """
    limit = lock_timeout / 2
    if base.is_unset(value):
        return min(DEFAULT_LOCK_WINDOW, limit)
    window = base.coerce(owner, 'lock_window', _SECONDS, value)
    if lock_timeout and window > limit:
        raise _error(owner, 'lock_window', 'invalid value %r: at most half '
                     'of lock_timeout (%ss)' % (value, lock_timeout))
    return window if lock_timeout else 0.0


def _load_proxy(owner: str, item: ty.Any) -> ty.Any:
    """Resolve a ``proxy_list`` entry to a ProxyBackend class or instance."""
    original = item
    if isinstance(item, str):
        try:
            item = importutils.import_class(item)
        except (ImportError, AttributeError, ValueError) as exc:
            raise _error(owner, 'proxy_list', 'proxy %r cannot be imported:'
                         ' %s' % (original, exc)) from exc
    proxy_cls = dogpile_proxy.ProxyBackend
    if (isinstance(item, type) and issubclass(item, proxy_cls)) or \
            isinstance(item, proxy_cls):
        return item
    raise _error(owner, 'proxy_list', 'proxy %r is not a '
                 'dogpile.cache.proxy.ProxyBackend' % (original,))


def redirect_arguments(backing_store: str, target_cls: type,
                       arguments: ty.Mapping[str, ty.Any]
                       ) -> dict[str, ty.Any]:
    """Arguments given for ``backing_store``, made fit for ``target_cls``.

    What the test fixture does to every ``configure()`` call. The store's
    arguments are kept, the backend's historical name for ``expire_time``
    becomes ``expire_time``, and backend arguments the target does not
    take (servers, passwords, TLS files) are dropped.
    """
    if issubclass(target_cls, base.Backend):
        accepted = STORE_ARGUMENTS | target_cls.argument_names()
    else:
        accepted = STORE_ARGUMENTS - EXPIRY_ARGUMENTS
    kept = {name: value for name, value in arguments.items()
            if name in accepted}
    try:
        alias = getattr(backends.load_class(backing_store),
                        'expire_time_alias', None)
    except exception.ConfigurationError:
        alias = None  # an unknown backend has no historical names
    if alias and alias in arguments and 'expire_time' in accepted:
        kept.setdefault('expire_time', arguments[alias])
    return kept


# --- configuration groups --------------------------------------------------

def from_group(conf: cfg.ConfigOpts, group: str, owner: str,
               **overrides: ty.Any) -> Settings:
    """Parse the store options of ``[group]``, as ``configure()`` would.

    The options are those of :func:`oslo_kvs.register_store_opts`
    (registered here if need be). ``overrides`` are ``configure()``
    arguments (``backing_store`` included) that win over the options.

    :raises exception.ConfigurationError: the message naming the group and
        the option, ``argument`` the option's name; never a secret.
    """
    backing_store, arguments, sources = read_group(conf, group)
    sources.update({name: '' for name in overrides})
    arguments.update(overrides)
    with blaming(group, sources):
        parsed = from_arguments(conf, owner, arguments.pop(
            'backing_store', backing_store), **arguments)
    return dataclasses.replace(parsed, sources=sources)


@contextlib.contextmanager
def blaming(group: str, sources: ty.Mapping[str, str]) -> ty.Iterator[None]:
    """Name the group and option of a ConfigurationError raised inside.

    ``sources`` maps arguments to options; an argument given in code (an
    empty source) is not blamed on the group, and one the group left to
    its ``[kvs]`` default is blamed on that default.
    """
    try:
        yield
    except exception.ConfigurationError as exc:
        argument = exc.argument or ''
        option = sources.get(argument)
        if option is None and argument in _KVS_DEFAULTS:
            group, option = opts.GROUP, _KVS_DEFAULTS[argument]
        if option == '':
            raise
        raise exception.ConfigurationError('[%s] %s: %s' % (
            group, option or 'options', exc), option) from None


def read_group(conf: cfg.ConfigOpts, group: str
               ) -> tuple[str, dict[str, ty.Any], dict[str, str]]:
    """What ``[group]`` gives, unparsed.

    The backend name, the ``configure()`` arguments and, per argument, the
    option it is in.

    :raises exception.ConfigurationError: for a value oslo.config refuses,
        a malformed ``backend_argument`` or an argument given twice.
    """
    opts.register_store_opts(conf, group)
    by_name = {opt.name: opt for opt in opts.group_store_opts(group)}
    backend = _read(conf, group, by_name.pop(opts.BACKEND))
    arguments: dict[str, ty.Any] = _backend_arguments(
        group, _read(conf, group, by_name.pop(opts.ARGUMENTS)))
    sources = {name: opts.ARGUMENTS for name in arguments}
    sources['backing_store'] = opts.BACKEND
    for name, opt in by_name.items():
        value = _read(conf, group, opt)
        if value is None:
            continue
        if name in arguments:
            raise exception.ConfigurationError(
                'Argument %r is given both by option %s and in %s of [%s]; '
                'give it once' % (name, name, opts.ARGUMENTS, group), name)
        arguments[name] = value
        sources[name] = name
    return backend, arguments, sources


def _read(conf: cfg.ConfigOpts, group: str, opt: cfg.Opt) -> ty.Any:
    try:
        return conf[group][opt.name]
    except (cfg.ConfigFileValueError, ValueError) as exc:
        # oslo.config's text starts with the file's location, then says
        # why; the group and option are named here.
        detail = ('not valid' if opt.secret else
                  str(exc).rpartition('is not valid: ')[2] or str(exc))
        raise exception.ConfigurationError(
            'Invalid value for option %s in [%s]: %s'
            % (opt.name, group, detail), opt.name) from None


def _backend_arguments(group: str,
                       entries: ty.Iterable[str]) -> dict[str, str]:
    """``backend_argument`` entries (``name:value``) as a dict.

    The message of an error gives the entry's position or name, never its
    value, which may be a password.
    """
    arguments: dict[str, str] = {}
    for position, entry in enumerate(entries, 1):
        name, sep, value = entry.partition(':')
        name = name.strip()
        if not sep or not name:
            raise exception.ConfigurationError(
                'Option %s in [%s]: entries must be "name:value"; entry #%d '
                'is not' % (opts.ARGUMENTS, group, position), opts.ARGUMENTS)
        if name in arguments:
            raise exception.ConfigurationError(
                'Option %s in [%s] gives argument %r twice'
                % (opts.ARGUMENTS, group, name), opts.ARGUMENTS)
        arguments[name] = value.strip()
    return arguments


def group_secrets(conf: cfg.ConfigOpts, group: str) -> list[str]:
    """Every secret ``[group]`` and ``[kvs]`` hold, even unparseable ones.

    For redacting what a command prints about them.
    """
    opts.register_store_opts(conf, group)
    found = list(conf[opts.GROUP].protection_keys)
    try:
        found += conf[group].protection_keys or []
    except ValueError:
        pass  # not readable, so not printable either
    try:
        secret_names: set[str] | None = ty.cast(
            type[base.Backend], backends.load_class(conf[group].backend)
        ).argument_names(secret=True)
    except (exception.ConfigurationError, AttributeError):
        secret_names = None  # nothing tells which are secret: all are
    for entry in conf[group].backend_argument:
        name, sep, value = entry.partition(':')
        name, value = name.strip(), value.strip()
        if not sep:
            found.append(entry.strip())  # not name:value: anything at all
        elif name == 'protection_keys':
            found += _str_list(group, name, value)
        else:
            found += address.secrets_in(
                value, secret_names is None or name in secret_names)
    return sorted(set(found), key=len, reverse=True)
