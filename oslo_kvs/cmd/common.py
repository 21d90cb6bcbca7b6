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

"""What the ``oslo-kvs`` subcommands share.

The command works on one store described by the store options (``backend``,
``backend_argument``, ``expire_time``, ...) of the group named by
``--group`` (default ``[kvs]``, where the former ``backing_store`` is still
read as ``backend``), exactly as a service's store is configured from its
group by ``configure_from_conf``.
"""

import ipaddress
import json
import typing as ty
import uuid

from oslo_config import cfg

from oslo_kvs import backends
from oslo_kvs.backends import address
from oslo_kvs.backends import base
from oslo_kvs import core
from oslo_kvs import exception
from oslo_kvs import opts
from oslo_kvs import settings

#: ``configure()`` arguments the store keeps; the rest go to the backend.
STORE_ARGUMENTS = settings.STORE_ARGUMENTS

#: Redaction marker written where a secret would have been.
REDACTED = address.REDACTED


class CommandError(Exception):
    """A failure to report to the user, as ``oslo-kvs: <message>``."""


def store_group(conf: cfg.ConfigOpts) -> str:
    """The group holding the command's store (``--group``), registered."""
    group = conf.group if 'group' in conf else opts.GROUP
    opts.register_store_opts(conf, group)
    return group


def backing_store(conf: cfg.ConfigOpts) -> str:
    """The ``backend`` option of the command's group."""
    return conf[store_group(conf)].backend


def backend_arguments(conf: cfg.ConfigOpts) -> dict[str, ty.Any]:
    """The ``configure()`` arguments the command's group gives.

    Its ``backend_argument`` entries and every other store option that is
    set, as ``configure_from_conf`` reads them.

    :raises exception.ConfigurationError: for a malformed entry; the
        message never holds an entry's value, which may be a password.
    """
    return settings.read_group(conf, store_group(conf))[1]


def open_store(conf: cfg.ConfigOpts,
               **overrides: ty.Any) -> core.KeyValueStore:
    """A store configured from the command's group, as a service would.

    The store gets a fresh random name, so the command never sees a
    service's keys. ``overrides`` replace configured arguments.
    """
    store = core.get_key_value_store('oslo-kvs-%s' % uuid.uuid4(),
                                     conf=conf)
    store.configure_from_conf(store_group(conf), **overrides)
    return store


def load_backend_class(conf: cfg.ConfigOpts) -> type | None:
    """The class of the group's backend, without configuring anything.

    ``None`` for a dogpile.cache backend that could not be created.

    :raises exception.ConfigurationError: when it cannot be loaded.
    """
    backends.register_backends(conf.kvs.backends)
    return backends.load_class(backing_store(conf))


def secret_option_names(backend_cls: type | None) -> set[str]:
    """Names (and aliases) of the backend's secret arguments."""
    names = {'password', 'sentinel_password', 'protection_keys'}
    for option in getattr(backend_cls, 'options', ()):
        if isinstance(option, base.Option) and option.secret:
            names.update((option.name,) + option.aliases)
    return names


def secrets_of(conf: cfg.ConfigOpts) -> list[str]:
    """Every secret the configuration holds, for :func:`redact`.

    Protection keys, secret backend arguments, and passwords embedded in
    URLs. A secret argument that is a URL without a password (a Redis
    ``url``) is not itself a secret, so its text is kept.
    """
    group = store_group(conf)
    found = list(conf.kvs.protection_keys)
    try:
        found += conf[group].protection_keys or []
    except ValueError:
        pass  # not readable, so not printable either
    try:
        backend_cls: type | None = load_backend_class(conf)
    except exception.ConfigurationError:
        backend_cls = None
    secret_names = secret_option_names(backend_cls)
    for entry in conf[group].backend_argument:
        name, sep, value = entry.partition(':')
        if not sep:
            # Not name:value; the whole entry might be anything.
            found.append(entry.strip())
            continue
        name, value = name.strip(), value.strip()
        if name == 'protection_keys':
            for key in value.split(','):
                found += address.secrets_in(key.strip())
        else:
            found += address.secrets_in(value, name in secret_names)
    return sorted(set(found), key=len, reverse=True)


#: ``text`` with URL credentials and every secret replaced by a marker.
redact = address.redact


class RedactingWriter:
    """A text stream that never lets a known secret through."""

    def __init__(self, stream: ty.TextIO, secrets: ty.Iterable[str]):
        self._stream = stream
        self._secrets = list(secrets)

    def write(self, text: str) -> int:
        return self._stream.write(redact(text, self._secrets))

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine, decided without any DNS lookup.

    ``host`` is a name or an address, IPv6 maybe in brackets.
    """
    host = host.strip().strip('[]').lower()
    if host in ('localhost', 'localhost.localdomain', 'ip6-localhost'):
        return True
    try:
        return ipaddress.ip_address(host.partition('%')[0]).is_loopback
    except ValueError:
        return False


class Endpoint(ty.NamedTuple):
    """Where to reach one server: a TCP host and port, or a Unix socket."""

    label: str
    host: str | None = None
    port: int | None = None
    path: str | None = None


#: Default ports of the built-in backends, for addresses given without one.
DEFAULT_PORTS = {
    'openstack.kvs.Memcached': 11211,
    'openstack.kvs.Redis': 6379,
    'openstack.kvs.MongoDB': 27017,
}


def parse_endpoint(label: str, default_port: int | None) -> Endpoint | None:
    """Understand one server as a backend describes it.

    Accepts what :meth:`address.Address.parse` accepts. Returns ``None``
    when no address can be made of it (for example a DNS SRV name, or a
    host without a port on an unknown backend).
    """
    if '+srv://' in label:
        return None
    try:
        found = address.Address.parse(label, default_port)
    except address.AddressError:
        return None
    return Endpoint(label, host=found.host, port=found.port, path=found.path)


#: Exit statuses, the same on every subcommand: healthy, symptom found
#: (a failing server or check), could not run (bad arguments or
#: configuration), interrupted (Ctrl-C, as a shell reports SIGINT).
EXIT_OK = 0
EXIT_SYMPTOM = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

FORMATS = ('table', 'json')


def add_format_argument(parser: ty.Any) -> None:
    """``--format``, which every subcommand takes."""
    parser.add_argument('--format', choices=FORMATS, default='table',
                        help='table for people (default), json for '
                             'programs')


def require(condition: bool, message: str) -> None:
    """Refuse a bad command-line value before anything runs.

    :raises CommandError: with ``message`` when ``condition`` is false.
    """
    if not condition:
        raise CommandError(message)


class _Discard:
    """A text stream that drops everything: the table in JSON mode."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def text_stream(out: ty.TextIO, output_format: str) -> ty.TextIO:
    """Where a subcommand writes its table: ``out``, or nowhere for JSON."""
    if output_format == 'table':
        return out
    return ty.cast(ty.TextIO, _Discard())


def write_result(result: dict[str, ty.Any], out: ty.TextIO,
                 output_format: str) -> None:
    """Print ``result`` as JSON when asked; the table is already out."""
    if output_format == 'json':
        json.dump(result, out, indent=2)
        out.write('\n')
    elif result.get('interrupted'):
        out.write('interrupted: the result above is partial\n')
