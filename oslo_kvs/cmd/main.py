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

"""The ``oslo-kvs`` command.

Every subcommand works on the store described by the store options
(``backend``, ``backend_argument``, ...) of ``[kvs]``, or of the group given
with ``--group``, in the files given with ``--config-file`` (the in-memory
backend by default):

``exercise``
    runs every operation of the API, checks its result and prints how long
    each took;
``doctor``
    looks for symptoms of an unsafe or broken configuration
    (:mod:`oslo_kvs.cmd.doctor`);
``bench``
    runs a mixed workload and reports throughput and latency
    (:mod:`oslo_kvs.cmd.bench`);
``ping``
    measures how each server answers (:mod:`oslo_kvs.cmd.ping`).

Nothing printed contains a password or protection key.
"""

import importlib.metadata
import statistics
import sys
import time
import typing as ty

from oslo_config import cfg

import oslo_kvs
from oslo_kvs.cmd import bench
from oslo_kvs.cmd import common
from oslo_kvs.cmd import doctor
from oslo_kvs.cmd import ping
from oslo_kvs import exception
from oslo_kvs import opts

# Kept here for callers of the first version of this module.
backend_arguments = common.backend_arguments
open_store = common.open_store


def _timed(operation: ty.Callable[[], ty.Any], rounds: int) -> float:
    """Median seconds of ``rounds`` calls."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        operation()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def exercise(store: oslo_kvs.KeyValueStore, rounds: int,
             out: ty.TextIO, output_format: str = 'table') -> int:
    """Run each API operation, check its result, report its median time.

    :returns: 0 when every operation gave the right answer, 1 when one did
        not or a server failed, 130 when interrupted (the operations timed
        so far are reported).
    """
    common.require(rounds >= 1, '--rounds must be at least 1')
    value = {'id': 'a' * 32, 'roles': ['admin', 'member'], 'expires': None}
    keys = ['key-%03d' % i for i in range(100)]
    result: dict[str, ty.Any] = {
        'command': 'exercise', 'store': store.name, 'rounds': rounds,
        'operations': {}, 'error': None, 'interrupted': False}
    result_out, out = out, common.text_stream(out, output_format)

    def lock_cycle():
        with store.get_lock('locked') as lock:
            store.set('locked', value, lock=lock)

    def add_delete():
        if not store.add('added', value):
            raise _WrongAnswer('add refused a key that was absent')
        store.delete('added')

    steps = [
        ('set', lambda: store.set('one', value)),
        ('get', lambda: store.get('one')),
        ('set_multi (100 keys)',
         lambda: store.set_multi({key: value for key in keys})),
        ('get_multi (100 keys)', lambda: store.get_multi(keys)),
        ('add + delete', add_delete),
        ('lock + set', lock_cycle),
    ]
    status = common.EXIT_OK
    try:
        store.set_multi({key: value for key in keys})
        out.write('store %r on %s, %d rounds each\n'
                  % (store.name,
                     ', '.join(store.servers()) or 'this process', rounds))
        for label, operation in steps:
            median = _timed(operation, rounds)
            result['operations'][label] = {'median_us': median * 1e6}
            out.write('  %-22s ok  median %9.1f us\n'
                      % (label, median * 1e6))
        if store.get_multi(keys) != [value] * len(keys):
            raise _WrongAnswer('get_multi returned different values')
        store.delete_multi(keys + ['one', 'locked'])
        try:
            store.get('one')
        except exception.NotFound:
            result['operations']['delete_multi'] = {}
            out.write('  %-22s ok\n' % 'delete_multi')
        else:
            raise _WrongAnswer('delete_multi left a key behind')
    except (_WrongAnswer, exception.BackendError, exception.LockTimeout,
            exception.NotFound) as exc:
        # The store is misbehaving: a symptom, reported like one.
        result['error'] = str(exc)
        out.write('FAILED: %s\n' % exc)
        status = common.EXIT_SYMPTOM
    except KeyboardInterrupt:
        result['interrupted'] = True
        status = common.EXIT_INTERRUPTED
    common.write_result(result, result_out, output_format)
    return status


class _WrongAnswer(Exception):
    """An operation returned something other than what was stored."""


def _exercise(conf: cfg.ConfigOpts, out: ty.TextIO) -> int:
    common.require(conf.command.rounds >= 1, '--rounds must be at least 1')
    return exercise(open_store(conf), conf.command.rounds, out,
                    conf.command.format)


def _doctor(conf: cfg.ConfigOpts, out: ty.TextIO) -> int:
    return doctor.run(conf, out, token_lifetime=conf.command.token_lifetime,
                      timeout=conf.command.timeout,
                      output_format=conf.command.format)


def _bench(conf: cfg.ConfigOpts, out: ty.TextIO) -> int:
    command = conf.command
    return bench.run(conf, out, operations=command.operations,
                     duration=command.duration, keys=command.keys,
                     value_size=command.value_size, batch=command.batch,
                     output_format=command.format, plot_path=command.plot,
                     seed=command.seed)


def _ping(conf: cfg.ConfigOpts, out: ty.TextIO) -> int:
    return ping.run(conf, out, count=conf.command.count,
                    timeout=conf.command.timeout,
                    output_format=conf.command.format)


def _add_commands(subparsers: ty.Any) -> None:
    parser = subparsers.add_parser(
        'exercise', help='run every operation once per round and time it')
    parser.add_argument('--rounds', type=int, default=200,
                        help='calls of each operation (default 200)')
    common.add_format_argument(parser)
    parser.set_defaults(func=_exercise)

    parser = subparsers.add_parser(
        'doctor', help='look for symptoms of an unsafe or broken '
                       'configuration; exit status 1 when any is found')
    parser.add_argument(
        '--token-lifetime', type=int, default=None, metavar='SECONDS',
        help='token lifetime to compare expiry with (default: [token] '
             'expiration, when the configuration sets it)')
    parser.add_argument(
        '--timeout', type=float, default=1.0, metavar='SECONDS',
        help='longest wait for a connection to each server (default 1)')
    common.add_format_argument(parser)
    parser.set_defaults(func=_doctor)

    parser = subparsers.add_parser(
        'bench', help='run a mixed workload; print ops/s and latency '
                      'percentiles per operation')
    parser.add_argument(
        '--operations', type=int, default=10000,
        help='stop after this many operations (default 10000)')
    parser.add_argument(
        '--duration', type=float, default=60.0, metavar='SECONDS',
        help='stop after this many seconds (default 60)')
    parser.add_argument('--keys', type=int, default=1000,
                        help='distinct keys read and written (default 1000)')
    parser.add_argument('--value-size', type=int, default=256,
                        metavar='CHARS',
                        help='size of the text in each value (default 256)')
    parser.add_argument('--batch', type=int, default=10,
                        help='keys per get_multi (default 10)')
    common.add_format_argument(parser)
    parser.add_argument('--plot', metavar='FILE.png',
                        help='draw latency percentiles to this file '
                             '(needs matplotlib: the "plot" extra)')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the operation mix (default 0)')
    parser.set_defaults(func=_bench)

    parser = subparsers.add_parser(
        'ping', help='connectivity and round-trip time to each server; '
                     'exit status 1 when one is unreachable')
    parser.add_argument('--count', type=int, default=3,
                        help='tries per server (default 3)')
    parser.add_argument(
        '--timeout', type=float, default=2.0, metavar='SECONDS',
        help='longest wait for a connection (default 2)')
    common.add_format_argument(parser)
    parser.set_defaults(func=_ping)


def version() -> str:
    """The installed version of oslo.kvs."""
    try:
        return importlib.metadata.version('oslo.kvs')
    except importlib.metadata.PackageNotFoundError:
        return 'unknown (not installed)'


#: Errors that mean the command could not run as asked: exit status 2.
_USAGE_ERRORS = (common.CommandError, exception.ConfigurationError,
                 exception.NotConfigured, cfg.Error, ValueError, OSError)


def main(argv: ty.Sequence[str] | None = None) -> int:
    """Entry point of ``oslo-kvs``; returns the exit status.

    0: healthy; 1: a symptom found (a check failed, a server is
    unreachable or failing); 2: could not run (bad arguments or
    configuration, printed as one ``oslo-kvs: <message>`` line); 130:
    interrupted with Ctrl-C, after printing the partial result.
    """
    conf = cfg.ConfigOpts()
    opts.register_command_opts(conf)
    conf.register_cli_opt(cfg.SubCommandOpt(
        'command', title='commands', handler=_add_commands))
    secrets: list[str] = []
    try:
        conf(list(sys.argv[1:] if argv is None else argv),
             project='oslo_kvs', version=version(),
             default_config_files=[])
        secrets = common.secrets_of(conf)
        out = common.RedactingWriter(sys.stdout, secrets)
        return conf.command.func(conf, out)
    except KeyboardInterrupt:
        sys.stderr.write('oslo-kvs: interrupted\n')
        return common.EXIT_INTERRUPTED
    except _USAGE_ERRORS as exc:
        status = common.EXIT_ERROR
        message = str(exc) or type(exc).__name__
    except exception.KVSError as exc:
        # A server failed or answered wrongly: a symptom of the deployment.
        status = common.EXIT_SYMPTOM
        message = str(exc) or type(exc).__name__
    # One line, whatever the exception held, and no secret in it.
    line = ' '.join(message.split())
    sys.stderr.write(common.redact('oslo-kvs: %s\n' % line, secrets))
    return status


if __name__ == '__main__':
    sys.exit(main())
