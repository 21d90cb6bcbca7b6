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

"""``oslo-kvs doctor``: symptom checks on the configured store.

Each ``symptom_*`` function looks at one thing and returns ``True`` when the
symptom is present; its docstring is the advice printed with it, as in
``keystone-manage doctor``. Checks may add detail lines (which server,
which key position) through :meth:`Checkup.note`; nothing printed ever
contains a password or protection key.

Only :func:`symptom_unreachable_servers` and
:func:`symptom_requests_fail` talk to the servers; every other check reads
the configuration alone. What the store's settings refuse (see
:mod:`oslo_kvs.settings`) is reported in their words by
:func:`symptom_invalid_configuration`, not checked again here.
"""

import collections
import contextlib
import inspect
import math
import typing as ty

from oslo_config import cfg
from oslo_config import types
from oslo_utils import strutils

from oslo_kvs.backends import base
from oslo_kvs.cmd import common
from oslo_kvs.cmd import ping
from oslo_kvs import core
from oslo_kvs import exception
from oslo_kvs import protection
from oslo_kvs import settings

#: The token lifetime doctor compares expiry with. Keystone's option, so a
#: keystone.conf given with --config-file is read as it is; registered only
#: on the command's own ConfigOpts, never on a service's.
token_opts = [
    cfg.IntOpt(
        'expiration', min=0,
        help='Token lifetime in seconds, as Keystone reads it. Only '
             '"oslo-kvs doctor" reads it here, to warn when the store\'s '
             'expire_time would drop tokens before they expire.'),
]

# Where a foreign dogpile.cache backend's arguments name its servers.
_FOREIGN_SERVER_ARGUMENTS = ('url', 'host', 'db_hosts', 'sentinels',
                             'cluster_nodes')
# What turns TLS on within a server argument.
_TLS_MARKS = ('rediss://', 'mongodb+srv://', 'tls=true', 'ssl=true')


class Checkup:
    """The configuration under examination, and what checks found.

    The store's settings are parsed once, as a service parses them
    (:func:`oslo_kvs.settings.from_group`); when they do not parse, the
    error is kept for :func:`symptom_invalid_configuration`, and the other
    checks read each setting alone from what the group gives
    (:meth:`setting`), so that one mistake does not hide other symptoms.
    A store is configured on the servers when a check first asks for it.
    """

    def __init__(self, conf: cfg.ConfigOpts,
                 token_lifetime: int | None = None,
                 timeout: float = 1.0) -> None:
        self.conf = conf
        self.token_lifetime = token_lifetime
        self.timeout = timeout
        self.notes: list[str] = []
        self.errors: list[str] = []
        self.connect_error: str | None = None
        self.unreachable = False
        self.backing_store = common.backing_store(conf)
        self.backend_cls = common.backend_class(conf)
        #: The ``configure()`` arguments as the group gives them.
        self.arguments: dict[str, ty.Any] = {}
        #: The parsed settings; ``None`` when they do not parse.
        self.settings: settings.Settings | None = None
        self._store: core.KeyValueStore | None = None
        self._opened = False
        group = common.store_group(conf)
        try:
            self.arguments = settings.read_group(conf, group)[1]
            self.settings = settings.from_group(conf, group,
                                                owner='oslo-kvs')
        except ValueError as exc:
            # ConfigurationError, or oslo.config's error for an invalid
            # [kvs] option.
            self.errors.append(str(exc))

    def note(self, text: str) -> None:
        """Add a detail line to the symptom being checked."""
        self.notes.append(text)

    def setting(self, name: str) -> ty.Any:
        """``value_protection`` or ``lock_timeout``.

        As parsed; when the settings do not parse, this one setting parsed
        alone, or ``None`` when it is not valid either.
        """
        if self.settings is not None:
            return getattr(self.settings, name)
        parse, default = _ALONE[name]
        try:
            return parse(self.arguments.get(name, self.conf.kvs[default]))
        except ValueError:
            return None

    @property
    def local(self) -> bool:
        """Whether values stay in this process (no server involved)."""
        return bool(getattr(self.backend_cls, 'local', False))

    def store(self) -> core.KeyValueStore | None:
        """A store on the configured servers, or ``None``.

        Configured as a service would (value protection aside, which plays
        no part in reaching servers), when the settings parse and name an
        oslo_kvs backend. Its configuration errors go to ``errors``; a
        backend that connects while being configured (Redis Cluster) may
        fail to reach its servers, which goes to ``connect_error``.
        """
        if (not self._opened and self.settings is not None and
                self.settings.native):
            self._opened = True
            try:
                self._store = common.open_store(self.conf,
                                                **common.UNPROTECTED)
            except exception.ConfigurationError as exc:
                self.errors.append(str(exc))
            except exception.BackendError as exc:
                self.connect_error = str(exc)
        return self._store

    def close(self) -> None:
        """Release the store's connections, if one was configured."""
        if self._store is not None:
            self._store.close()


#: How :meth:`Checkup.setting` parses a setting alone, and its ``[kvs]``
#: default.
_ALONE: dict[str, tuple[ty.Callable[[ty.Any], ty.Any], str]] = {
    'value_protection': (protection.normalize_mode, 'value_protection'),
    'lock_timeout': (base.seconds(), 'default_lock_timeout'),
}


def symptom_invalid_configuration(check: Checkup) -> bool:
    """The store cannot be configured as written.

    Services using these settings fail when they start. Fix the setting
    named above: ``backend`` must name a known backend, every
    ``backend_argument`` must be ``name:value`` with a name the backend
    accepts (see the backend's page in the user guide), and pickle on a
    server needs value protection.
    """
    if not check.errors:
        check.store()
    for error in check.errors:
        check.note(error)
    return bool(check.errors)


def _is_memcached(backend_cls: type | None) -> bool:
    """Whether the backend is a memcached client.

    oslo_kvs's and dogpile.cache's memcached backends, and classes derived
    from them, all come from modules named ``memcached``.
    """
    return any(cls.__module__.rpartition('.')[2] == 'memcached'
               for cls in getattr(backend_cls, '__mro__', ()))


def symptom_key_mangler_disabled_with_memcached(check: Checkup) -> bool:
    """Key mangling is disabled on a memcached backend.

    memcached refuses keys longer than 250 bytes or holding spaces or
    control characters, so such keys fail. Set ``[kvs] enable_key_mangler
    = true`` (the default): keys then become fixed-length SHA-256 digests.
    """
    return (not check.conf.kvs.enable_key_mangler and
            _is_memcached(check.backend_cls))


def symptom_unprotected_values_on_network_backend(check: Checkup) -> bool:
    """Values go to a server without value protection.

    Anyone who can reach the server can read them and, worse, replace them
    (a forged token record is accepted as genuine). Set ``[kvs]
    value_protection = encrypt`` (or ``mac`` when values may be read but
    must not be forged) and at least one ``[kvs] protection_keys`` secret,
    for example from
    ``python3 -c "import secrets; print(secrets.token_urlsafe(32))"``.
    """
    return (check.backend_cls is not None and not check.local and
            check.setting('value_protection') in (None, 'none'))


def _hosts_in_clear(check: Checkup) -> list[str]:
    """Hosts off this machine that the backend arguments reach without TLS.

    Reads the arguments only: nothing is resolved or connected to. A
    server argument is a list, or a comma-separated string, of addresses
    or URLs; a URL may name several hosts (``mongodb://a,b/``).
    """
    arguments, cls = check.arguments, check.backend_cls
    names = (sorted(cls.argument_names(server=True))
             if isinstance(cls, type) and issubclass(cls, base.Backend)
             else _FOREIGN_SERVER_ARGUMENTS)
    # ssl: the historical name in dogpile.cache and Keystone's MongoDB.
    tls = any(strutils.bool_from_string(arguments.get(flag))
              for flag in ('tls_enabled', 'ssl'))
    hosts = []
    for name in names:
        value = arguments.get(name) or ()
        for item in [value] if isinstance(value, str) else value:
            tls = tls or any(mark in item.lower() for mark in _TLS_MARKS)
            scheme, sep, rest = item.strip().rpartition('://')
            for part in rest.split(','):
                server = common.server_address(scheme + sep + part, 1)
                if server is not None and server.host:
                    hosts.append(server.host)
    return [] if tls else [host for host in hosts
                           if not common.is_loopback(host)]


def _note_hosts_in_clear(check: Checkup, text: str) -> bool:
    """Note ``text`` about each host of :func:`_hosts_in_clear`."""
    for host in _hosts_in_clear(check):
        check.note(text % host)
    return bool(check.notes)


def symptom_tls_off_toward_remote_server(check: Checkup) -> bool:
    """TLS is off toward a server on another host.

    Values, passwords and lock tokens cross the network in clear. Turn on
    TLS for the backend (``tls_enabled:true`` with ``tls_cafile``, or a
    ``rediss://`` URL for Redis), or keep the server on this host.
    """
    return (check.backend_cls is not None and not check.local and
            _note_hosts_in_clear(check, 'no TLS toward %s'))


def symptom_memcached_password_without_tls(check: Checkup) -> bool:
    """memcached authenticates with a password, without TLS.

    memcached's authentication sends the username and password as plain
    text on every new connection, so anyone on the network path can read
    them. Turn on TLS (``tls_enabled:true`` with ``tls_cafile``; memcached
    started with ``-Z``), or keep the servers on this host.
    """
    return (_is_memcached(check.backend_cls) and
            bool(check.arguments.get('password')) and
            _note_hosts_in_clear(check, 'the password goes to %s in clear'))


def estimated_bits(secret: str) -> float:
    """A rough upper bound of the entropy of ``secret``, in bits.

    Its length times the Shannon entropy of its characters, counting a
    repeated pattern once: ``'a' * 40`` and ``'password' * 5`` score low,
    ``secrets.token_urlsafe(32)`` about 200.
    """
    # The shortest period of a string that repeats a pattern at least
    # twice (``secret[:period]`` repeated makes ``secret``).
    period = next((period for period in range(1, len(secret) // 2 + 1)
                   if secret[period:] == secret[:-period]), len(secret))
    pattern = secret[:period]
    return len(pattern) * -sum(n / period * math.log2(n / period)
                               for n in collections.Counter(pattern).values())


#: Keys estimated below this many bits are reported as guessable.
MIN_KEY_BITS = 96


def symptom_protection_keys_weak(check: Checkup) -> bool:
    """A protection key looks guessable.

    Its characters repeat a short pattern or vary little, so it holds far
    fewer bits than its length suggests and can be guessed. Generate each
    key with ``secrets.token_urlsafe(32)``. (A key that is too short, a
    placeholder from the documentation, or a repeat of another is refused
    outright: see the invalid configuration above.)
    """
    # As written (which must never be printed), also when the settings do
    # not parse.
    keys = types.List()(check.arguments.get('protection_keys',
                                            check.conf.kvs.protection_keys))
    for position, key in enumerate(keys, 1):
        bits = estimated_bits(key)
        if bits < MIN_KEY_BITS:
            check.note('key #%d looks guessable: about %d bits of entropy, '
                       'want at least %d' % (position, bits, MIN_KEY_BITS))
    return bool(check.notes)


def symptom_lock_timeout_zero_with_distributed_lock(check: Checkup) -> bool:
    """Locks never expire, and they are shared across hosts.

    ``lock_timeout`` is 0 on a backend whose locks exclude every process
    and host: a process that dies holding a lock leaves it held forever,
    and every later writer of that key waits in vain. Set ``[kvs]
    default_lock_timeout`` (or the ``lock_timeout`` argument) to a few
    seconds, longer than any locked section lasts.
    """
    return (check.setting('lock_timeout') == 0 and
            bool(getattr(check.backend_cls, 'distributed_lock', False)))


def symptom_expiry_shorter_than_token_lifetime(check: Checkup) -> bool:
    """Values expire before the tokens they hold.

    The backend's ``expire_time`` is shorter than the token lifetime
    (``[token] expiration`` or ``--token-lifetime``): tokens vanish from
    the store while still valid, and users must authenticate again. Raise
    ``expire_time`` to at least the token lifetime, or list the keys that
    must outlive it in ``no_expiry_keys``.
    """
    lifetime = check.token_lifetime
    if lifetime is None:
        try:
            lifetime = check.conf.token.expiration
        except ValueError as exc:
            check.note('[token] expiration is not valid: %s' % exc)
            return True
    expire_time = check.settings.ttl if check.settings else None
    if lifetime and expire_time and expire_time < lifetime:
        check.note('expire_time is %gs, the token lifetime %ds'
                   % (expire_time, lifetime))
    return bool(check.notes)


def symptom_unreachable_servers(check: Checkup) -> bool:
    """A server cannot be reached.

    Requests to it fail (or, for memcached with several servers, its keys
    move to the others until it returns). Check that the server runs and
    listens on the configured address, and that no firewall is in the way;
    ``oslo-kvs ping`` measures each server.
    """
    store = check.store()
    if check.connect_error is not None:
        check.note(check.connect_error)
    for label in store.servers() if store is not None else ():
        try:
            ping.connect_times(label, getattr(check.backend_cls,
                                              'default_port', None),
                               1, check.timeout)
        except OSError as exc:
            check.note('%s: %s' % (label, type(exc).__name__))
    check.unreachable = bool(check.notes)
    return check.unreachable


def symptom_requests_fail(check: Checkup) -> bool:
    """The servers accept connections, but requests fail.

    Usually a wrong user or password, TLS on one side only, or a
    certificate the client does not trust. The error above names the
    server; fix the backend's credentials or TLS arguments.
    """
    store = check.store()
    if store is None or check.local or check.unreachable:
        # Nothing to ask, or already reported as unreachable.
        return False
    try:
        ping.store_round_trips(store, 1)
    except exception.BackendError as exc:
        check.note(str(exc))
    return bool(check.notes)


def symptoms() -> list[ty.Callable[[Checkup], bool]]:
    """Every check, in the order they are run."""
    return [value for name, value in globals().items()
            if name.startswith('symptom_') and callable(value)]


def describe(symptom: ty.Callable[..., ty.Any]) -> tuple[str, str]:
    """A symptom's headline and advice, from its docstring."""
    doc = inspect.cleandoc(symptom.__doc__ or symptom.__name__)
    headline, _, advice = doc.partition('\n')
    return headline, advice.strip()


def run(conf: cfg.ConfigOpts, out: ty.TextIO,
        token_lifetime: int | None = None, timeout: float = 1.0,
        output_format: str = 'table') -> int:
    """Run every check and print the symptoms found.

    :returns: 1 when a check found a symptom, else 0; 130 when
        interrupted (the checks run so far are reported).
    """
    common.require(token_lifetime is None or token_lifetime >= 0,
                   '--token-lifetime must not be negative')
    common.require(0 < timeout < math.inf,
                   '--timeout must be a positive number of seconds')
    conf.register_opts(token_opts, group='token')
    with contextlib.closing(Checkup(conf, token_lifetime, timeout)) as check:
        result = {'command': 'doctor', 'backend': check.backing_store,
                  'checks': len(symptoms()), 'symptoms': []}
        return common.report(out, output_format, result,
                             lambda out: _examine(check, result, out))


def _examine(check: Checkup, result: dict[str, ty.Any],
             out: ty.TextIO) -> int:
    """Run every check; print and add to ``result`` each symptom found.

    With its details and advice.
    """
    found = result['symptoms']
    try:
        for symptom in symptoms():
            check.notes = []
            if not symptom(check):
                continue
            headline, advice = describe(symptom)
            out.write('\n[%s] %s\n' % (symptom.__name__, headline))
            out.write(''.join('  - %s\n' % line for line in check.notes))
            out.write(''.join('  %s\n' % line
                              for line in advice.splitlines()))
            found.append({'name': symptom.__name__, 'headline': headline,
                          'details': check.notes, 'advice': advice})
    except KeyboardInterrupt:
        out.write('\n%d symptom(s) found before the checks were '
                  'interrupted.\n' % len(found))
        raise
    if not found:
        out.write('%d checks found no symptom in the %s store.\n'
                  % (result['checks'], check.backing_store))
        return common.EXIT_OK
    out.write('\n%d of %d checks found a symptom in the %s store.\n'
              % (len(found), result['checks'], check.backing_store))
    return common.EXIT_SYMPTOM
