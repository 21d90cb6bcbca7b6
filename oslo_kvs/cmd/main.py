"""The ``oslo-kvs`` command.

``oslo-kvs [--config-file FILE] exercise`` configures the store described
by ``[kvs] backing_store`` and ``[kvs] backend_argument`` (the in-memory
backend by default), runs every operation of the API against it and prints
what it did and how long each operation took.
"""

import statistics
import sys
import time
import typing as ty
import uuid

from oslo_config import cfg

import oslo_kvs
from oslo_kvs import exception
from oslo_kvs import opts


def backend_arguments(conf: cfg.ConfigOpts) -> dict[str, str]:
    """``[kvs] backend_argument`` entries as a dict.

    :raises exception.ConfigurationError: for an entry without ``:``; the
        message names the argument, never its value.
    """
    arguments = {}
    for entry in conf.kvs.backend_argument:
        name, sep, value = entry.partition(':')
        if not sep or not name.strip():
            raise exception.ConfigurationError(
                '[kvs] backend_argument entries must be "name:value"; one '
                'starts with %r' % entry[:entry.find(':')][:20])
        arguments[name.strip()] = value.strip()
    return arguments


def open_store(conf: cfg.ConfigOpts) -> oslo_kvs.KeyValueStore:
    """A store configured from ``[kvs] backing_store`` and its arguments."""
    store = oslo_kvs.get_key_value_store('oslo-kvs-%s' % uuid.uuid4(),
                                         conf=conf)
    store.configure(conf.kvs.backing_store, **backend_arguments(conf))
    return store


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
              % (store.name, store._state.backend.name, rounds))
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


def _add_commands(subparsers: ty.Any) -> None:
    parser = subparsers.add_parser(
        'exercise', help='run every operation once per round and time it')
    parser.add_argument('--rounds', type=int, default=200)
    parser.set_defaults(func=lambda conf: exercise(
        open_store(conf), conf.command.rounds, sys.stdout))


def main(argv: ty.Sequence[str] | None = None) -> int:
    """Entry point of ``oslo-kvs``."""
    conf = cfg.ConfigOpts()
    opts.register_command_opts(conf)
    conf.register_cli_opt(cfg.SubCommandOpt(
        'command', title='commands', handler=_add_commands))
    conf(list(sys.argv[1:] if argv is None else argv), project='oslo_kvs',
         default_config_files=[])
    try:
        conf.command.func(conf)
    except exception.KVSError as exc:
        sys.stderr.write('oslo-kvs: %s\n' % exc)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
