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

"""memcached servers for the tests: alone, in threes, with TLS or users."""

import os
import socket
import subprocess
import time
import typing as ty

import pytest

from oslo_kvs_tests.servers.base import LOOPBACK
from oslo_kvs_tests.servers.base import make_tls_files
from oslo_kvs_tests.servers.base import private_servers
from oslo_kvs_tests.servers.base import require_binary
from oslo_kvs_tests.servers.base import running
from oslo_kvs_tests.servers.base import ServerGroup
from oslo_kvs_tests.servers.base import ServerProcess
from oslo_kvs_tests.servers.base import wait_for_port


class MemcachedServer(ServerProcess):
    """memcached on a loopback TCP port (or a unix socket).

    :param tls: serve TLS only, with certificates made here; clients must
        trust :attr:`tls`'s CA.
    :param unix_socket: listen on a socket file in the temp dir, no TCP.
    :param host: ``'::1'`` to listen on IPv6 loopback.
    :param extra: more memcached arguments (e.g. ``['-I', '2m']``).
    :param cpu: run it on that CPU only (benchmarks).
    :param users: ASCII-protocol users (name -> password), written to an
        auth file given with ``-Y``; every client must then authenticate.
    """

    binary = 'memcached'

    def __init__(self, port: int | None = None, tls: bool = False,
                 unix_socket: bool = False, host: str = LOOPBACK,
                 extra: ty.Sequence[str] = (),
                 cpu: int | None = None,
                 users: ty.Mapping[str, str] | None = None) -> None:
        if tls:
            self._require_tls()
        super().__init__(port, cpu)
        self.host = host
        self.extra = list(extra)
        self.users = dict(users or {})
        self.socket_path = (os.path.join(self.tmpdir, 'memcached.sock')
                            if unix_socket else None)
        self.tls = make_tls_files(self.tmpdir) if tls else None

    def _require_tls(self) -> None:
        usage = subprocess.run([require_binary(self.binary), '-h'],
                               capture_output=True, text=True).stdout
        if '--enable-ssl' not in usage:
            message = 'memcached is built without TLS (-Z)'
            if os.environ.get('CI', '').lower() == 'true':
                pytest.fail(message + ' (CI must install one with TLS)')
            pytest.skip(message)

    @property
    def address(self) -> str:
        if self.socket_path:
            return self.socket_path
        if ':' in self.host:
            return '[%s]:%d' % (self.host, self.port)
        return super().address

    @property
    def store_args(self) -> dict[str, ty.Any]:
        """``configure()`` arguments of openstack.kvs.Memcached for it."""
        args: dict[str, ty.Any] = {'url': self.address}
        if self.tls:
            args.update(tls_enabled=True, tls_cafile=self.tls.ca)
        if self.users:
            args['username'], args['password'] = next(iter(
                self.users.items()))
        return args

    def command(self) -> list[str]:
        cmd = [require_binary(self.binary), '-U', '0', '-m', '64',
               '-t', '2']
        if self.users:
            # A private file, like RedisServer's: not the command line.
            path = os.path.join(self.tmpdir, 'auth')
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, 'w') as f:
                f.write(''.join('%s:%s\n' % item
                                for item in self.users.items()))
            cmd += ['-Y', path]
        if self.socket_path:
            cmd += ['-s', self.socket_path]
        else:
            cmd += ['-l', self.host, '-p', str(self.port)]
        if os.geteuid() == 0:
            cmd += ['-u', 'root']  # memcached refuses root without it
        if self.tls:
            cmd += ['-Z', '-o', 'ssl_chain_cert=%s,ssl_key=%s'
                    % (self.tls.cert, self.tls.key)]
        return cmd + self.extra

    def start(self) -> 'MemcachedServer':
        self.spawn()
        if not self.socket_path:
            wait_for_port(self.port, self.process, host=self.host)
            return self
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            with socket.socket(socket.AF_UNIX) as sock:
                try:
                    sock.connect(self.socket_path)
                    return self
                except OSError:
                    time.sleep(0.02)
        raise RuntimeError('memcached did not listen on %s: %s'
                           % (self.socket_path, self.log()))


class MemcachedCluster(ServerGroup):
    """Several memcached servers used together through one url list."""

    def __init__(self, count: int = 3) -> None:
        self.servers = [MemcachedServer() for _ in range(count)]

    def processes(self) -> list[ServerProcess]:
        return list(self.servers)

    @property
    def addresses(self) -> list[str]:
        return [server.address for server in self.servers]

    @property
    def store_args(self) -> dict[str, ty.Any]:
        """``configure()`` arguments naming every server of the cluster."""
        return {'url': self.addresses}


@pytest.fixture(scope='session')
def memcached_server() -> ty.Iterator[MemcachedServer]:
    """One memcached shared by a test session; never stop it in a test."""
    yield from running(MemcachedServer())


@pytest.fixture(scope='session')
def memcached_cluster() -> ty.Iterator[MemcachedCluster]:
    """Three memcached servers shared by a test session."""
    yield from running(MemcachedCluster(3))


@pytest.fixture(scope='session')
def memcached_tls_server() -> ty.Iterator[MemcachedServer]:
    """A TLS-only memcached (``-Z``) with a throwaway CA in ``.tls``."""
    yield from running(MemcachedServer(tls=True))


@pytest.fixture
def memcached_factory() -> ty.Iterator[ty.Callable[..., MemcachedServer]]:
    """Make private memcached servers a test may stop and restart.

    Call it with :class:`MemcachedServer` arguments; the servers are
    started and are cleaned up after the test.
    """
    yield from private_servers(MemcachedServer)
