"""What the ``oslo-kvs`` subcommands share.

The command works on one store described by ``[kvs] backing_store`` and
``[kvs] backend_argument``. Arguments are handed to ``configure()`` as
given, so ``lock_timeout``, ``value_protection``, ``protection_keys`` and
``serializer`` given there override their ``[kvs]`` defaults, exactly as
they would in a service.
"""

import ipaddress
import json
import re
import typing as ty
import urllib.parse
import uuid

from oslo_config import cfg

from oslo_kvs import backends
from oslo_kvs.backends import base
from oslo_kvs import core
from oslo_kvs import exception

#: ``configure()`` arguments the store keeps; the rest go to the backend.
STORE_ARGUMENTS = ('lock_timeout', 'value_protection', 'protection_keys',
                   'serializer')

#: Redaction marker written where a secret would have been.
REDACTED = '<secret>'

# Shorter "secrets" cannot be hidden without mangling ordinary text, and
# the store refuses protection keys that short anyway.
_MIN_REDACTED = 4

# user:password@ in any URL-like text.
_URL_PASSWORD = re.compile(r'://[^/@:\s]*:([^/@\s]+)@')


class CommandError(Exception):
    """A failure to report to the user, as ``oslo-kvs: <message>``."""


def backend_arguments(conf: cfg.ConfigOpts) -> dict[str, str]:
    """``[kvs] backend_argument`` entries as a dict.

    :raises exception.ConfigurationError: for an entry without ``:``; the
        message gives the entry's position, never its text, which may be a
        password.
    """
    arguments = {}
    for position, entry in enumerate(conf.kvs.backend_argument, 1):
        name, sep, value = entry.partition(':')
        if not sep or not name.strip():
            raise exception.ConfigurationError(
                '[kvs] backend_argument entries must be "name:value"; '
                'entry #%d is not' % position)
        arguments[name.strip()] = value.strip()
    return arguments


def open_store(conf: cfg.ConfigOpts,
               **overrides: ty.Any) -> core.KeyValueStore:
    """A store configured from ``[kvs] backing_store`` and its arguments.

    The store gets a fresh random name, so the command never sees a
    service's keys. ``overrides`` replace configured arguments.
    """
    store = core.get_key_value_store('oslo-kvs-%s' % uuid.uuid4(),
                                     conf=conf)
    arguments: dict[str, ty.Any] = dict(backend_arguments(conf))
    arguments.update(overrides)
    store.configure(conf.kvs.backing_store, **arguments)
    return store


def load_backend_class(conf: cfg.ConfigOpts) -> type:
    """The class of ``[kvs] backing_store``, without configuring anything.

    :raises exception.ConfigurationError: when it cannot be loaded.
    """
    backends.register_backends(conf.kvs.backends)
    return core._load_backend_class(conf.kvs.backing_store)


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
    found = list(conf.kvs.protection_keys)
    try:
        backend_cls: type | None = load_backend_class(conf)
    except exception.ConfigurationError:
        backend_cls = None
    secret_names = secret_option_names(backend_cls)
    for entry in conf.kvs.backend_argument:
        name, sep, value = entry.partition(':')
        if not sep:
            # Not name:value; the whole entry might be anything.
            found.append(entry.strip())
            continue
        name, value = name.strip(), value.strip()
        passwords = _URL_PASSWORD.findall(value)
        for password in passwords:
            found += [password, urllib.parse.unquote(password)]
        if name == 'protection_keys':
            found += [key.strip() for key in value.split(',')]
        elif name in secret_names and '://' not in value:
            found.append(value)
    return sorted({s for s in found if len(s) >= _MIN_REDACTED},
                  key=len, reverse=True)


def redact(text: str, secrets: ty.Iterable[str]) -> str:
    """``text`` with every secret (longest first) replaced by a marker."""
    text = _URL_PASSWORD.sub(
        lambda m: m.group(0).replace(m.group(1), REDACTED), text)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


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

    Accepts ``host:port``, ``[v6]:port``, ``host``, ``/socket/path``,
    ``unix:/path``, ``unix:///path`` and ``scheme://host:port/...``.
    Returns ``None`` when no address can be made of it (for example a DNS
    SRV name, or a host without a port on an unknown backend).
    """
    text = label.strip()
    if text.startswith('unix:'):
        text = '/' + text[len('unix:'):].lstrip('/')
    if text.startswith('/'):
        return Endpoint(label, path=text)
    if '://' in text:
        split = urllib.parse.urlsplit(text)
        if split.scheme.endswith('+srv'):
            return None
        try:
            host, port = split.hostname, split.port
        except ValueError:
            return None
    elif text.startswith('['):
        host, _, rest = text[1:].partition(']')
        port = int(rest[1:]) if rest[1:].isdigit() else None
    elif text.count(':') == 1:
        host, _, port_text = text.partition(':')
        port = int(port_text) if port_text.isdigit() else None
    else:
        # A bare name, or a bare IPv6 address, carries no port.
        host, port = text, None
    port = port or default_port
    if not host or not port:
        return None
    return Endpoint(label, host=host, port=port)


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
