"""The ``oslo-kvs`` command.

Every subcommand works on the store described by ``[kvs] backing_store``
and ``[kvs] backend_argument`` in the files given with ``--config-file``
(the in-memory backend by default):

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
             out: ty.TextIO) -> None:
    """Run each API operation, check its result, print its median time."""
    value = {'id': 'a' * 32, 'roles': ['admin', 'member'], 'expires': None}
    keys = ['key-%03d' % i for i in range(100)]

    def lock_cycle():
        with store.get_lock('locked') as lock:
            store.set('locked', value, lock=lock)

    def add_delete():
        if not store.add('added', value):
            raise RuntimeError('add refused a key that was absent')
        store.delete('added')

    store.set_multi({key: value for key in keys})
    steps = [
        ('set', lambda: store.set('one', value)),
        ('get', lambda: store.get('one')),
        ('set_multi (100 keys)',
         lambda: store.set_multi({key: value for key in keys})),
        ('get_multi (100 keys)', lambda: store.get_multi(keys)),
        ('add + delete', add_delete),
        ('lock + set', lock_cycle),
    ]
    out.write('store %r on %s, %d rounds each\n'
              % (store.name, ', '.join(store.servers()) or 'this process',
                 rounds))
    for label, operation in steps:
        median = _timed(operation, rounds)
        out.write('  %-22s ok  median %9.1f us\n' % (label, median * 1e6))
    if store.get_multi(keys) != [value] * len(keys):
        raise RuntimeError('get_multi returned different values')
    store.delete_multi(keys + ['one', 'locked'])
    try:
        store.get('one')
    except exception.NotFound:
        out.write('  %-22s ok\n' % 'delete_multi')
    else:
        raise RuntimeError('delete_multi left a key behind')


def _exercise(conf: cfg.ConfigOpts, out: ty.TextIO) -> int:
    exercise(open_store(conf), conf.command.rounds, out)
    return 0


def _doctor(conf: cfg.ConfigOpts, out: ty.TextIO) -> int:
    return doctor.run(conf, out, token_lifetime=conf.command.token_lifetime,
                      timeout=conf.command.timeout)


def _bench(conf: cfg.ConfigOpts, out: ty.TextIO) -> int:
    command = conf.command
    return bench.run(conf, out, operations=command.operations,
                     duration=command.duration, keys=command.keys,
                     value_size=command.value_size, batch=command.batch,
                     output_format=command.format, plot_path=command.plot,
                     seed=command.seed)


def _ping(conf: cfg.ConfigOpts, out: ty.TextIO) -> int:
    return ping.run(conf, out, count=conf.command.count,
                    timeout=conf.command.timeout)


def _add_commands(subparsers: ty.Any) -> None:
    parser = subparsers.add_parser(
        'exercise', help='run every operation once per round and time it')
    parser.add_argument('--rounds', type=int, default=200)
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
    parser.add_argument('--format', choices=('table', 'json'),
                        default='table',
                        help='table for people, json for programs')
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
    parser.set_defaults(func=_ping)


def main(argv: ty.Sequence[str] | None = None) -> int:
    """Entry point of ``oslo-kvs``; returns the exit status."""
    conf = cfg.ConfigOpts()
    opts.register_command_opts(conf)
    conf.register_cli_opt(cfg.SubCommandOpt(
        'command', title='commands', handler=_add_commands))
    conf(list(sys.argv[1:] if argv is None else argv), project='oslo_kvs',
         default_config_files=[])
    secrets = common.secrets_of(conf)
    out = common.RedactingWriter(sys.stdout, secrets)
    try:
        return conf.command.func(conf, out)
    except (exception.KVSError, common.CommandError,
            cfg.ConfigFileValueError) as exc:
        sys.stderr.write(common.redact('oslo-kvs: %s\n' % exc, secrets))
        return 1


if __name__ == '__main__':
    sys.exit(main())
