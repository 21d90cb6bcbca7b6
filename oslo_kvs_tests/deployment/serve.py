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

"""Serve the sample service as OpenStack services serve themselves.

The server modes that are a Python program rather than a server's command
line; :mod:`.launchers` runs them as::

    python -m oslo_kvs_tests.deployment.serve process-launcher HOST PORT
    python -m oslo_kvs_tests.deployment.serve eventlet HOST PORT [--no-hiredis]

``process-launcher``
    The parent imports the sample service (which configures and uses its
    stores, before any fork) and binds the listening socket; then
    ``oslo_service.service.ProcessLauncher`` forks :data:`PROCESSES`
    workers, with the backend oslo.service selects by default (eventlet,
    not monkey-patched: the launcher's own loop is green, the serving
    threads are native). Each worker serves with :data:`THREADS` threads,
    each accepting a connection on the shared socket only when it is free,
    as a pre-fork server's threads do.

``eventlet``
    ``import oslo_kvs`` first, as a service whose package imports the
    library before its entry point patches; then ``eventlet.monkey_patch()``;
    then the sample service, served by ``eventlet.wsgi.server`` in green
    threads, in one process. ``--no-hiredis`` hides hiredis
    (``sys.modules['hiredis'] = None``) before anything can import redis,
    so redis-py uses its pure-Python parser.

Imports are made inside the functions, in the order each mode needs: this
module imports only :mod:`sys` before them.
"""

import sys
import warnings

#: Worker processes and threads per worker, as the other modes have.
PROCESSES = 4
THREADS = 4
#: Seconds a serving thread blocks in ``accept()`` before it checks
#: whether its worker is stopping.
ACCEPT_TIMEOUT = 0.2
#: Seconds a connection may stay silent before its thread gives it up.
CONNECTION_TIMEOUT = 30.0
#: Connections the kernel queues on the listening socket.
BACKLOG = 128


def process_launcher(host: str, port: int) -> None:
    """Serve with ``oslo_service.service.ProcessLauncher``; never returns."""
    import logging
    import threading
    import wsgiref.simple_server

    # The service first: its stores are configured and used here, in the
    # parent, and the workers inherit them across the fork.
    from oslo_kvs_tests.deployment import service
    from oslo_service import backend
    from oslo_service import service as os_service

    class Handler(wsgiref.simple_server.WSGIRequestHandler):
        # A silent client frees its thread eventually.
        timeout = CONNECTION_TIMEOUT

        def log_message(self, format: str, *args: object) -> None:
            """No access log (the load would fill the server's log)."""

    class Server(wsgiref.simple_server.WSGIServer):
        request_queue_size = BACKLOG

    class Worker(os_service.ServiceBase):
        """One worker process: :data:`THREADS` threads on ``server``."""

        def __init__(self, server: Server) -> None:
            self.server = server
            self.stopping = threading.Event()
            self.threads: list[threading.Thread] = []

        def start(self) -> None:
            self.stopping.clear()
            self.threads = [threading.Thread(target=self.serve, daemon=True,
                                             name='wsgi-%d' % n)
                            for n in range(THREADS)]
            for thread in self.threads:
                thread.start()

        def serve(self) -> None:
            # A thread takes a connection only when it is free, so
            # connections arriving together spread over every worker.
            sock = self.server.socket
            while not self.stopping.is_set():
                try:
                    conn, address = sock.accept()
                except (TimeoutError, BlockingIOError, InterruptedError):
                    continue
                try:
                    self.server.finish_request(conn, address)
                except Exception:
                    self.server.handle_error(conn, address)
                finally:
                    self.server.shutdown_request(conn)

        def stop(self, graceful: bool = False) -> None:
            # Each thread ends after its request in flight.
            self.stopping.set()
            self.wait()

        def wait(self) -> None:
            # No thread before start(): the eventlet backend calls wait()
            # before the green thread that calls start() has run, then
            # waits on that green thread itself. (Blocking here until
            # stop() would keep its hub, and so the signal handlers it
            # runs, from ever running.)
            for thread in self.threads:
                thread.join(CONNECTION_TIMEOUT)

        def reset(self) -> None:
            """Nothing to reset on SIGHUP."""

    logging.getLogger(__name__).warning(
        'oslo.service backend: %s', backend.get_backend_type().value)
    server = Server((host, port), Handler)
    server.set_app(service.application)
    # Every worker's accept() gives up after ACCEPT_TIMEOUT to check its
    # stop flag; the socket is shared, so set it once, before the fork.
    server.socket.settimeout(ACCEPT_TIMEOUT)
    launcher = os_service.ProcessLauncher(service.CONF)
    launcher.launch_service(Worker(server), workers=PROCESSES)
    launcher.wait()


def eventlet(host: str, port: int, hiredis: bool) -> None:
    """Serve with ``eventlet.wsgi.server``, patched after the import."""
    if not hiredis:
        # Before anything imports redis: redis-py then finds no hiredis.
        sys.modules['hiredis'] = None  # type: ignore[assignment]
    # The library first, then eventlet and its patch: the order under test.
    import oslo_kvs  # noqa: F401
    import eventlet as eventlet_module  # noqa: H306
    eventlet_module.monkey_patch()

    import logging

    import eventlet.wsgi
    from redis import utils as redis_utils

    from oslo_kvs_tests.deployment import service

    # The mode must be what its name says: fail at start, not pass
    # having tested the other parser.
    if redis_utils.HIREDIS_AVAILABLE != hiredis:
        raise SystemExit('redis-py %s hiredis, which this mode %s'
                         % ('uses' if redis_utils.HIREDIS_AVAILABLE
                            else 'does not use',
                            'needs' if hiredis else 'hides'))
    logging.getLogger(__name__).warning(
        'eventlet %s, hiredis %s', eventlet_module.__version__,
        'used' if hiredis else 'hidden')
    sock = eventlet_module.listen((host, port), backlog=BACKLOG)
    eventlet.wsgi.server(sock, service.application, log_output=False,
                         socket_timeout=CONNECTION_TIMEOUT)


def main(argv: list[str]) -> None:
    """Run the mode ``argv[0]`` on host ``argv[1]``, port ``argv[2]``."""
    mode, host, port, *options = argv
    # Both modes import eventlet (oslo.service's default backend does);
    # its deprecation notice would fill the log tail failures show.
    warnings.filterwarnings('ignore', r'\s*Eventlet is deprecated')
    if mode == 'process-launcher' and not options:
        process_launcher(host, int(port))
    elif mode == 'eventlet' and options in ([], ['--no-hiredis']):
        eventlet(host, int(port), hiredis=not options)
    else:
        raise SystemExit('usage: %s' % __doc__)


if __name__ == '__main__':
    main(sys.argv[1:])
