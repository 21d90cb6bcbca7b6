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
    each took (:mod:`oslo_kvs.cmd.exercise`);
``doctor``
    looks for symptoms of an unsafe or broken configuration
    (:mod:`oslo_kvs.cmd.doctor`);
``bench``
    runs a mixed workload and reports throughput and latency
    (:mod:`oslo_kvs.cmd.bench`);
``ping``
    measures how each server answers (:mod:`oslo_kvs.cmd.ping`);
``stats``
    shows what each server reports: hit ratio, evictions, memory
    (:mod:`oslo_kvs.cmd.stats`).

Nothing printed contains a password or protection key.
"""

import importlib.metadata
import sys
import typing as ty

from oslo_config import cfg

from oslo_kvs.cmd import bench
from oslo_kvs.cmd import common
from oslo_kvs.cmd import doctor
from oslo_kvs.cmd import exercise
from oslo_kvs.cmd import ping
from oslo_kvs.cmd import stats
from oslo_kvs import exception
from oslo_kvs import opts


def _seconds(default: float, what: str) -> dict[str, ty.Any]:
    return dict(type=float, default=default, metavar='SECONDS',
                help='%s (default %g)' % (what, default))


#: The subcommands: the function that runs each, its help, and its
#: arguments (``--format`` is added to all). The function is called with
#: the configuration, the output stream and each argument by its ``dest``.
COMMANDS: dict[str, tuple[ty.Callable[..., int], str,
                          dict[str, dict[str, ty.Any]]]] = {
    'exercise': (
        exercise.run, 'run every operation once per round and time it',
        {'--rounds': dict(type=int, default=200,
                          help='calls of each operation (default 200)')}),
    'doctor': (
        doctor.run, 'look for symptoms of an unsafe or broken '
                    'configuration; exit status 1 when any is found',
        {'--token-lifetime': dict(
            type=int, default=None, metavar='SECONDS',
            help='token lifetime to compare expiry with (default: [token] '
                 'expiration, when the configuration sets it)'),
         '--timeout': _seconds(1.0, 'longest wait for a connection to each '
                                    'server')}),
    'bench': (
        bench.run, 'run a mixed workload; print ops/s and latency '
                   'percentiles per operation',
        {'--operations': dict(type=int, default=10000,
                              help='stop after this many operations '
                                   '(default 10000)'),
         '--duration': _seconds(60.0, 'stop after this many seconds'),
         '--keys': dict(type=int, default=1000,
                        help='distinct keys read and written (default 1000)'),
         '--value-size': dict(type=int, default=256, metavar='CHARS',
                              help='size of the text in each value '
                                   '(default 256)'),
         '--batch': dict(type=int, default=10,
                         help='keys per get_multi (default 10)'),
         '--plot': dict(metavar='FILE.png', dest='plot_path',
                        help='draw latency percentiles to this file (needs '
                             'matplotlib: the "plot" extra)'),
         '--seed': dict(type=int, default=0,
                        help='seed of the operation mix (default 0)')}),
    'ping': (
        ping.run, 'connectivity and round-trip time to each server; exit '
                  'status 1 when one is unreachable',
        {'--count': dict(type=int, default=3,
                         help='tries per server (default 3)'),
         '--timeout': _seconds(2.0, 'longest wait for a connection')}),
    'stats': (
        stats.run, 'hits, misses, evictions and memory each server '
                   'reports; exit status 1 when one does not answer',
        {'--watch': dict(type=float, default=None, metavar='SECONDS',
                         help='take a sample every SECONDS until Ctrl-C '
                              '(default: once)')}),
}


def _add_commands(subparsers: ty.Any) -> None:
    for name, (run, summary, arguments) in COMMANDS.items():
        parser = subparsers.add_parser(name, help=summary)
        dests = [parser.add_argument(flag, **kwargs).dest
                 for flag, kwargs in arguments.items()]
        dests.append(parser.add_argument(
            '--format', choices=('table', 'json'), default='table',
            dest='output_format',
            help='table for people (default), json for programs').dest)
        parser.set_defaults(run=run, dests=dests)


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
        command = conf.command
        return command.run(conf, out, **{dest: getattr(command, dest)
                                         for dest in command.dests})
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
