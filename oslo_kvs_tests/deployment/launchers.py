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

"""Run the sample service in real WSGI servers, one child process each.

Each :class:`WSGIServer` subclass is one server mode: its command line,
how it is stopped, and how it is known to be ready (``GET /health``
answers). A server runs on a free loopback port, in a new session (so
stopping it stops its workers too), with its output in a log file for
failure messages.

The modes, as deployed services run them:

* uWSGI (pip ``pyuwsgi``), ``--master --processes 4 --threads 4``: by
  default the application is loaded in the master, which uWSGI then forks
  in C, without running Python's fork hooks (no ``--py-call-osafterfork``,
  on purpose); and with ``--lazy-apps``, loaded in each worker.
* gunicorn, ``sync`` and ``gthread`` (4 threads) workers, each without
  and with ``--preload`` (loaded in the master, forked by ``os.fork()``).
* Apache mod_wsgi in daemon mode, ``mod_wsgi-express start-server
  --processes 4 --threads 4``.
* ``oslo_service.service.ProcessLauncher``, 4 workers of 4 threads, the
  service loaded in the parent (:mod:`.serve`).
* ``eventlet.wsgi.server`` after ``import oslo_kvs`` then
  ``eventlet.monkey_patch()``, one process, with and without hiredis
  (:mod:`.serve`).
"""

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time

import pytest

from oslo_kvs_tests.deployment import load
from oslo_kvs_tests.deployment import model
from oslo_kvs_tests.deployment import serve
from oslo_kvs_tests import servers

#: The sample service, as a WSGI server names it.
MODULE = 'oslo_kvs_tests.deployment.service'
#: The program that serves it in the modes that are Python programs.
SERVE = 'oslo_kvs_tests.deployment.serve'
#: The repository root, for the servers' Python path.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
#: Worker processes and threads per worker in every mode that has them
#: (:mod:`.serve` imports nothing of the tests, so they live there).
PROCESSES = serve.PROCESSES
THREADS = serve.THREADS
#: What the service imports; the mod_wsgi daemon user must read them.
_IMPORTS = ('oslo_kvs.backends.memcached', 'oslo_kvs.backends.redis',
            'oslo_kvs.backends.mongo', 'oslo_kvs.memoize', model.__name__)
#: Seconds a server may take to answer its first request.
START_TIMEOUT = 30.0


def script(name: str) -> str:
    """The path of console script ``name`` of this Python's packages.

    Looked up next to this interpreter first (a shim or another Python's
    script earlier on PATH would run another installation); missing, it
    skips the test (fails in CI).
    """
    path = os.path.join(sysconfig.get_path('scripts'), name)
    if os.access(path, os.X_OK):
        return path
    return servers.require_binary(name)


class WSGIServer:
    """The sample service in one WSGI server mode, as a child process.

    :param config: the path of the service's JSON configuration.
    """

    #: The mode's name, as tests and reports show it.
    name = ''
    #: Whether the master imports the service (and so uses its stores)
    #: before it forks the workers.
    loads_in_master = False
    #: The signal that stops the server and its workers.
    stop_signal = signal.SIGTERM
    #: Worker processes.
    processes = PROCESSES
    #: Whether requests held open together (load.held_requests) reach
    #: every worker: true where a worker takes a connection only when one
    #: of its threads is free to read it.
    spreads_held = True

    def __init__(self, config: str) -> None:
        self.config = config
        self.port = servers.free_port()
        self.tmpdir = tempfile.mkdtemp(prefix='oslo-kvs-wsgi-')
        self.log_path = os.path.join(self.tmpdir, 'server.log')
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The service's base URL."""
        return 'http://%s:%d' % (servers.LOOPBACK, self.port)

    @property
    def bind(self) -> str:
        return '%s:%d' % (servers.LOOPBACK, self.port)

    def command(self) -> list[str]:
        """The command line that starts the server."""
        raise NotImplementedError

    def environ(self) -> dict[str, str]:
        """The server's environment: the configuration, the package."""
        env = dict(os.environ)
        path = env.get('PYTHONPATH')
        env['PYTHONPATH'] = ROOT + (os.pathsep + path if path else '')
        env[model.CONFIG_VARIABLE] = self.config
        env['PYTHONUNBUFFERED'] = '1'
        return env

    def start(self) -> 'WSGIServer':
        """Start the server; return once it answers ``GET /health``."""
        command = self.command()
        with open(self.log_path, 'ab') as log:
            # A session of its own: stopping the group stops every worker.
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.tmpdir,
                env=self.environ(), start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def held_health(self) -> list[load.Reply]:
        """``GET /health`` on as many connections as the server has threads.

        Requests held open together reach every worker of a server whose
        workers take a connection only when a thread is free (see
        :func:`load.held_requests` and :attr:`spreads_held`).
        """
        return load.held_requests(
            self.url, [('GET', '/health')] * (self.processes * THREADS))

    def _wait_ready(self) -> None:
        """Wait until the server answers, then until every worker does.

        A worker that loads the application itself (``--lazy-apps``,
        gunicorn without ``--preload``) takes no connection until it has;
        one that never answers is stuck (a pre-fork server
        that forked while another thread of the master held the GIL
        leaves its child waiting for it forever).
        """
        deadline = time.monotonic() + START_TIMEOUT
        connection = load.Connection(self.url)
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        '%s exited with status %s before serving:\n%s'
                        % (self.name, self.process.returncode, self.log()))
                if connection.request('GET', '/health').status == 200:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError('%s did not serve within %ss:\n%s'
                                       % (self.name, START_TIMEOUT,
                                          self.log()))
                time.sleep(0.1)
        finally:
            connection.close()
        workers: set[object] = set()
        while self.spreads_held and len(workers) < self.processes:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    '%s: only %d of %d workers answered within %ss (the '
                    'others are stuck):\n%s' % (
                        self.name, len(workers), self.processes,
                        START_TIMEOUT, self.log()))
            workers = {reply.body.get('pid') for reply in self.held_health()
                       if reply.status == 200}

    def stop(self) -> None:
        """Stop the server and every process of its session."""
        process, self.process = self.process, None
        if process is None:
            return
        # Only the group this object started (its pid is the group's id).
        for sig, wait in ((self.stop_signal, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # The leader is gone; give its workers a moment to follow.
            if self._group_gone(process.pid, wait):
                break
        process.wait()

    @staticmethod
    def _group_gone(pgid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.05)
        return False

    def cleanup(self) -> None:
        """Stop the server and remove its files."""
        self.stop()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def log(self) -> str:
        """The server's output so far (the tail), for failure messages."""
        try:
            with open(self.log_path, 'rb') as f:
                data = f.read()
        except OSError:
            return ''
        return data[-20000:].decode('utf-8', 'replace')


class UWSGI(WSGIServer):
    """uWSGI's default pre-fork: the app is loaded in the master."""

    name = 'uwsgi'
    loads_in_master = True
    # SIGTERM makes uWSGI 2.0 reload, not exit (without --die-on-term).
    stop_signal = signal.SIGINT

    def command(self) -> list[str]:
        return [script('uwsgi'), '--master',
                '--processes', str(PROCESSES), '--threads', str(THREADS),
                '--http-socket', self.bind, '--module',
                MODULE + ':application', '--need-app', '--die-on-term',
                # uWSGI closes the connection after each reply on an
                # http-socket; saying so lets the client reconnect at once.
                '--add-header', 'Connection: close',
                '--disable-logging']


class UWSGILazy(UWSGI):
    """uWSGI loading the app in each worker after the fork."""

    name = 'uwsgi-lazy-apps'
    loads_in_master = False

    def command(self) -> list[str]:
        return super().command() + ['--lazy-apps']


class Gunicorn(WSGIServer):
    """gunicorn with ``worker_class`` workers; ``preload`` in the master."""

    worker_class = 'sync'
    preload = False

    @property
    def loads_in_master(self) -> bool:  # type: ignore[override]
        return self.preload

    @property
    def spreads_held(self) -> bool:  # type: ignore[override]
        # A gthread worker accepts any number of connections and queues
        # them for its threads, so one worker may take them all.
        return self.worker_class != 'gthread'

    def command(self) -> list[str]:
        command = [script('gunicorn'), '--bind', self.bind,
                   '--workers', str(PROCESSES),
                   '--worker-class', self.worker_class,
                   '--timeout', '60', '--graceful-timeout', '5']
        if self.worker_class == 'gthread':
            command += ['--threads', str(THREADS)]
        if self.preload:
            command.append('--preload')
        return command + [MODULE + ':application']


def _gunicorn(worker_class: str, preload: bool) -> type[Gunicorn]:
    name = 'gunicorn-%s%s' % (worker_class, '-preload' if preload else '')
    return type(name.replace('-', '_'), (Gunicorn,), {
        'name': name, 'worker_class': worker_class, 'preload': preload,
        '__doc__': 'gunicorn %s workers%s.' % (
            worker_class, ', app loaded in the master' if preload else '')})


class ModWSGI(WSGIServer):
    """Apache with mod_wsgi in daemon mode, via ``mod_wsgi-express``.

    As root, Apache's children and the daemon processes run as ``nobody``
    (``--user``/``--group``; neither Apache nor mod_wsgi runs them as
    root): every file they read must be readable by that user, which
    :meth:`start` checks first.
    """

    name = 'mod_wsgi'
    user = 'nobody'
    # Apache's children hold the partial requests; a daemon process gets
    # each only once it is complete, and answers in well under a
    # millisecond, so one daemon process can answer several before another
    # takes one (2 of 20 rounds of 16 held requests reached only 2 or 3 of
    # the 4). _wait_ready() checks instead that every daemon answers.
    spreads_held = False

    def __init__(self, config: str) -> None:
        super().__init__(config)
        # The daemon user must reach the server root and the config.
        os.chmod(self.tmpdir, 0o755)

    def group(self) -> str:
        import grp
        for name in ('nogroup', 'nobody'):
            try:
                grp.getgrnam(name)
                return name
            except KeyError:
                pass
        return str(os.getgid())

    def command(self) -> list[str]:
        command = [script('mod_wsgi-express'), 'start-server',
                   '--host', servers.LOOPBACK, '--port', str(self.port),
                   '--server-root', os.path.join(self.tmpdir, 'apache'),
                   '--processes', str(PROCESSES), '--threads', str(THREADS),
                   '--python-path', ROOT, '--log-to-terminal',
                   '--application-type', 'module', MODULE]
        if os.geteuid() == 0:
            command += ['--user', self.user, '--group', self.group()]
        return command

    def start(self) -> 'WSGIServer':
        servers.require_binary('apachectl')
        if os.geteuid() == 0:
            self._check_readable()
        return super().start()

    def _wait_ready(self) -> None:
        """Wait until every daemon process has answered ``GET /health``.

        Each daemon loads the service at its start, so the first to have
        loaded it would otherwise meet the test's first requests alone;
        and one that never answers is stuck.
        """
        super()._wait_ready()
        deadline = time.monotonic() + START_TIMEOUT
        pids: set[int] = set()
        while time.monotonic() < deadline:
            replies = load.held_requests(
                self.url, [('GET', '/health')] * (PROCESSES * THREADS))
            pids.update(reply.body['pid'] for reply in replies
                        if reply.status == 200)
            if len(pids) >= self.processes:
                return
            time.sleep(0.1)
        raise RuntimeError(
            'only %d of the %d %s daemon processes answered within %ss:\n%s'
            % (len(pids), self.processes, self.name, START_TIMEOUT,
               self.log()))

    def _check_readable(self) -> None:
        """Fail at once if the daemon user cannot import the service.

        Apache refuses to run as root and mod_wsgi refuses a root daemon
        user, so the daemon processes run as :attr:`user`, which must
        reach this Python and the repository: a Python under ``/root``
        (usually mode 700) needs the traverse permission ``.ci/run``
        grants. Without it the daemons would only fail every request.
        """
        import pwd
        entry = pwd.getpwnam(self.user)
        try:
            probe = subprocess.run(
                [sys.executable, '-c', 'import ' + ', '.join(_IMPORTS)],
                env=self.environ(), cwd='/', capture_output=True,
                text=True, user=entry.pw_uid, group=entry.pw_gid,
                extra_groups=[], timeout=60)
        except OSError as exc:
            error = str(exc)
        else:
            if not probe.returncode:
                return
            error = (probe.stderr.strip().splitlines() or ['?'])[-1]
        pytest.fail(
            'the mod_wsgi daemon user %s cannot import the service with %s '
            'from %s: %s. Give others traverse permission (chmod o+x) on '
            'the directories on the way to both, as .ci/run does.'
            % (self.user, sys.executable, ROOT, error), pytrace=False)


class Program(WSGIServer):
    """A mode of :mod:`.serve`, run by this Python.

    ``python -m`` with this interpreter: the program imports what the
    tests import, with the repository first on its path.
    """

    #: The :mod:`.serve` mode and its options.
    arguments: tuple[str, ...] = ()

    def command(self) -> list[str]:
        mode, *options = self.arguments
        return [sys.executable, '-m', SERVE, mode, servers.LOOPBACK,
                str(self.port), *options]


class ProcessLauncher(Program):
    """``oslo_service.service.ProcessLauncher``, 4 workers of 4 threads.

    The parent loads the service and binds the socket; the workers are
    forked by ``os.fork()`` and share it.
    """

    name = 'oslo.service'
    loads_in_master = True
    arguments = ('process-launcher',)


class Eventlet(Program):
    """``eventlet.wsgi.server``, patched after ``import oslo_kvs``."""

    name = 'eventlet-hiredis'
    processes = 1
    hiredis = True

    @property
    def arguments(self) -> tuple[str, ...]:  # type: ignore[override]
        return ('eventlet',) + (() if self.hiredis else ('--no-hiredis',))

    def start(self) -> 'WSGIServer':
        if self.hiredis:
            try:
                import hiredis  # noqa: F401
            except ImportError:
                servers.missing('hiredis is not installed')
        return super().start()


class EventletNoHiredis(Eventlet):
    """``eventlet.wsgi.server``, redis-py's pure-Python parser."""

    name = 'eventlet-no-hiredis'
    hiredis = False


#: Every mode, by name, in the order tests run them.
MODES: dict[str, type[WSGIServer]] = {
    cls.name: cls for cls in (
        UWSGI, UWSGILazy,
        _gunicorn('sync', False), _gunicorn('sync', True),
        _gunicorn('gthread', False), _gunicorn('gthread', True),
        ModWSGI, ProcessLauncher, Eventlet, EventletNoHiredis)}
