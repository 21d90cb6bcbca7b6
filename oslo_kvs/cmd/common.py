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
group by ``configure_from_conf``. It also holds what every subcommand
does alike: exit statuses, redaction, timing, and printing a result as a
table or as JSON (:func:`report`).
"""

import io
import ipaddress
import json
import time
import typing as ty
import uuid

from oslo_config import cfg

from oslo_kvs import backends
from oslo_kvs.backends import address
from oslo_kvs import core
from oslo_kvs import exception
from oslo_kvs import opts
from oslo_kvs import settings


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


def backend_class(conf: cfg.ConfigOpts) -> type | None:
    """The class of the ``backend``; ``None`` when it cannot be loaded."""
    try:
        backends.register_backends(conf.kvs.backends)
        return backends.load_class(backing_store(conf))
    except exception.ConfigurationError:
        return None


#: Overrides for a store that only reaches its servers: value protection
#: plays no part in that, and doctor reports its mistakes.
UNPROTECTED: dict[str, ty.Any] = {
    'value_protection': 'none', 'protection_keys': [],
    'serializer': 'msgpack'}


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


def secrets_of(conf: cfg.ConfigOpts) -> list[str]:
    """Every secret the configuration holds, for :func:`redact`.

    Also of a configuration that does not parse, whose error message is
    printed.
    """
    return settings.group_secrets(conf, store_group(conf))


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


def server_address(label: str,
                   default_port: int | None) -> address.Address | None:
    """Where to connect to the server a backend labels ``label``.

    ``None`` when there is nowhere to connect to: a DNS SRV name, or text
    that :meth:`address.Address.parse` refuses (such as a host without a
    port on a backend that has no default port).
    """
    if '+srv://' in label:
        return None
    try:
        return address.Address.parse(label, default_port)
    except address.AddressError:
        return None


#: Exit statuses, the same on every subcommand: healthy, symptom found
#: (a failing server or check), could not run (bad arguments or
#: configuration), interrupted (Ctrl-C, as a shell reports SIGINT).
EXIT_OK = 0
EXIT_SYMPTOM = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def require(condition: bool, message: str) -> None:
    """Refuse a bad command-line value before anything runs.

    :raises CommandError: with ``message`` when ``condition`` is false.
    """
    if not condition:
        raise CommandError(message)


def timed(call: ty.Callable[[], ty.Any], count: int) -> list[float]:
    """Seconds each of ``count`` calls of ``call`` took."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def report(out: ty.TextIO, output_format: str, result: dict[str, ty.Any],
           body: ty.Callable[[ty.TextIO], int]) -> int:
    """Run a subcommand's ``body`` and print its result.

    ``body`` writes its table as it goes to the stream it is given (which
    drops everything for ``--format json``), fills ``result`` and returns
    the exit status. Ctrl-C within it marks ``result`` interrupted; what
    it filled until then is reported. For JSON, ``result`` is then the one
    document printed.

    :returns: the exit status: ``body``'s, or ``EXIT_INTERRUPTED``.
    """
    result.setdefault('interrupted', False)
    # In JSON mode the table is written to a buffer nobody reads.
    table = out if output_format == 'table' else io.StringIO()
    try:
        status = body(table)
    except KeyboardInterrupt:
        result['interrupted'] = True
    if output_format == 'json':
        json.dump(result, out, indent=2)
        out.write('\n')
    elif result['interrupted']:
        out.write('interrupted: the result above is partial\n')
    return EXIT_INTERRUPTED if result['interrupted'] else status
