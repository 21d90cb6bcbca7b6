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

"""Start and stop real servers for the tests.

memcached and Redis are their own binaries; MongoDB is SecantusDB's Python
server (the ``SecantusDB`` test requirement), a MongoDB-wire server on
WiredTiger that pymongo talks to as to a one-member mongod 8 replica set.
``OSLO_KVS_MONGO_URL`` points the MongoDB fixtures at a real server instead.

Every server runs as a child process on a free loopback port, with its own
temporary directory, and is stopped afterwards. Nothing here touches a
server already running on the machine (a Redis may listen on 6379).

A missing server binary skips the tests that need it, except in CI
(``CI=true``), where it fails them: CI must never pass by skipping.
"""

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import typing as ty
import urllib.parse
import uuid

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography import x509
from cryptography.x509.oid import NameOID
from pymongo import monitoring
import pytest

LOOPBACK = '127.0.0.1'


def _missing(message: str) -> ty.NoReturn:
    """Skip for want of a server, except in CI, which must fail."""
    if os.environ.get('CI', '').lower() == 'true':
        pytest.fail(message + ' (CI must install it; see .ci/run)')
    pytest.skip(message)


def require_binary(name: str) -> str:
    """The path of server binary ``name``; skip (fail in CI) if missing."""
    path = shutil.which(name)
    if path is None:
        _missing('%s is not installed' % name)
    return path


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen,
                  timeout: float = 10.0, host: str = LOOPBACK) -> None:
    """Block until something accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError('server exited with status %s before '
                               'listening on %d' % (process.returncode, port))
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError('nothing listens on port %d after %ss'
                       % (port, timeout))


def pinned(command: list[str], cpu: int | None) -> list[str]:
    """``command`` confined to CPU ``cpu`` with ``taskset``; None: as is.

    Benchmarks pin a server to their own CPU: on a VM, a reply from a
    server thread woken on another vCPU costs a random tens of
    microseconds, more than the client library being measured.
    """
    if cpu is None:
        return command
    return [require_binary('taskset'), '-c', str(cpu)] + command


class ServerProcess:
    """One server child process on a loopback port, with a temp dir.

    :meth:`start` may be called again after :meth:`stop` to restart the
    server on the same port, as fault tests need. ``cpu`` pins the server
    to that CPU (for benchmarks; tests leave it None).
    """

    binary = ''

    def __init__(self, port: int | None = None,
                 cpu: int | None = None) -> None:
        self.cpu = cpu
        self.host = LOOPBACK
        self.port = port or free_port()
        self.tmpdir = tempfile.mkdtemp(prefix='oslo-kvs-%s-' % self.binary)
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return '%s:%d' % (self.host, self.port)

    def command(self) -> list[str]:
        """The command line that starts the server."""
        raise NotImplementedError

    def require(self) -> None:
        """Skip the test (fail in CI) when the server is not installed."""
        require_binary(self.binary)

    def spawn(self) -> subprocess.Popen:
        """Run :meth:`command`, its output in ``server.log``; no waiting."""
        self.require()
        log = open(os.path.join(self.tmpdir, 'server.log'), 'ab')
        self.process = subprocess.Popen(
            pinned(self.command(), self.cpu), stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=self.tmpdir)
        log.close()
        return self.process

    def start(self) -> 'ServerProcess':
        wait_for_port(self.port, self.spawn())
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def hang(self) -> None:
        """Freeze the server (SIGSTOP): connected, but it answers nothing.

        Returns once every thread of the server has stopped: kill() returns
        before the stop takes effect, and on a busy machine a server thread
        could still answer the next request.
        """
        pid = self.process.pid
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            states = set()
            for task in os.listdir('/proc/%d/task' % pid):
                with open('/proc/%d/task/%s/stat' % (pid, task)) as f:
                    states.add(f.read().rpartition(')')[2].split()[0])
            if states == {'T'}:
                return
            time.sleep(0.01)
        raise AssertionError('server process %d did not stop' % pid)

    def resume(self) -> None:
        """Let a hung server run again (SIGCONT)."""
        self.process.send_signal(signal.SIGCONT)

    def cleanup(self) -> None:
        if self.process is not None:
            self.resume()  # a stopped process ignores SIGTERM until then
        self.stop()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def log(self) -> str:
        """The server's output so far, for failure messages."""
        with open(os.path.join(self.tmpdir, 'server.log'), 'rb') as f:
            return f.read().decode('utf-8', 'replace')


def running(server: ty.Any) -> ty.Iterator[ty.Any]:
    """Start ``server`` for a fixture to yield, and clean it up after."""
    try:
        yield server.start()
    finally:
        server.cleanup()


class TLSFiles(ty.NamedTuple):
    """Paths of a throwaway CA and a server/client certificate it signed."""

    ca: str
    cert: str
    key: str


def make_tls_files(directory: str, hostname: str = 'localhost') -> TLSFiles:
    """Write a CA and a certificate for ``hostname`` and 127.0.0.1."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject, issuer, public_key, signing_key, is_ca, sans=None):
        builder = (x509.CertificateBuilder()
                   .subject_name(subject).issuer_name(issuer)
                   .public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=is_ca,
                                                        path_length=None),
                                  critical=True))
        if sans:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                            'oslo_kvs test CA')])
    ca_cert = build(ca_name, ca_name, ca_key.public_key(), ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    sans = [x509.DNSName(hostname),
            x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
    cert = build(name, ca_name, key.public_key(), ca_key, False, sans)

    paths = TLSFiles(*(os.path.join(directory, n)
                       for n in ('ca.pem', 'cert.pem', 'key.pem')))
    pem = serialization.Encoding.PEM
    with open(paths.ca, 'wb') as f:
        f.write(ca_cert.public_bytes(pem))
    with open(paths.cert, 'wb') as f:
        f.write(cert.public_bytes(pem))
    with open(paths.key, 'wb') as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return paths


# --- memcached -------------------------------------------------------------


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


class ServerGroup:
    """Server processes started and cleaned up together.

    Subclasses give :meth:`processes`; those that must wait for their
    members to work together extend :meth:`start`.
    """

    def processes(self) -> list[ServerProcess]:
        """Every process of the group, in the order they start and stop."""
        raise NotImplementedError

    def start(self) -> 'ServerGroup':
        """Start every process; returns the group."""
        for process in self.processes():
            process.start()
        return self

    def cleanup(self) -> None:
        """Stop every process and remove its files."""
        for process in self.processes():
            process.cleanup()


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


def _private_servers(cls: ty.Any) -> ty.Iterator[ty.Callable[..., ty.Any]]:
    """A maker of servers of ``cls``, started on demand, cleaned up after."""
    made: list[ty.Any] = []

    def make(**kwargs: ty.Any) -> ty.Any:
        server = cls(**kwargs)
        made.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in made:
            server.cleanup()


@pytest.fixture
def memcached_factory() -> ty.Iterator[ty.Callable[..., MemcachedServer]]:
    """Make private memcached servers a test may stop and restart.

    Call it with :class:`MemcachedServer` arguments; the servers are
    started and are cleaned up after the test.
    """
    yield from _private_servers(MemcachedServer)


# --- redis -----------------------------------------------------------------


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def redis_cluster_port(taken: ty.Collection[int] = ()) -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        port = free_port()
        bus = port + 10000
        if (bus <= 65535 and port not in taken and bus not in taken and
                port - 10000 not in taken and _bindable(bus)):
            return port
    raise RuntimeError('no free port pair for a Redis cluster node')


class RedisServer(ServerProcess):
    """redis-server on a loopback port, with no persistence.

    :param tls: serve TLS only, with certificates made here; clients must
        present a certificate too.
    :param users: ACL users (name -> password); the default user is then
        disabled, so every client must authenticate.
    :param password: ``requirepass`` (and ``masterauth``, for replication).
    :param extra: more configuration lines.
    :param cpu: run it on that CPU only (benchmarks).
    """

    binary = 'redis-server'

    def __init__(self, port: int | None = None, tls: bool = False,
                 users: ty.Mapping[str, str] | None = None,
                 password: str | None = None,
                 extra: ty.Iterable[str] = (),
                 cpu: int | None = None) -> None:
        super().__init__(port, cpu)
        self.tls = make_tls_files(self.tmpdir) if tls else None
        self.users = dict(users or {})
        self.password = password
        self.extra = list(extra)

    @property
    def url(self) -> str:
        return '%s://%s/0' % ('rediss' if self.tls else 'redis', self.address)

    @property
    def store_args(self) -> dict[str, ty.Any]:
        """``configure()`` arguments of ``openstack.kvs.Redis`` for it."""
        args: dict[str, ty.Any] = {'url': self.url}
        if self.tls:
            args.update(tls_cafile=self.tls.ca, tls_certfile=self.tls.cert,
                        tls_keyfile=self.tls.key)
        if self.users:
            args['username'], args['password'] = next(iter(
                self.users.items()))
        elif self.password:
            args['password'] = self.password
        return args

    def command(self) -> list[str]:
        # Secrets go to a private file rather than the command line, which
        # every local user can read.
        conf = os.path.join(self.tmpdir, 'redis.conf')
        lines = list(self.extra)
        if self.password:
            lines += ['requirepass %s' % self.password,
                      'masterauth %s' % self.password]
        if self.users:
            lines.append('user default off')
            lines += ['user %s on >%s ~* &* +@all' % item
                      for item in self.users.items()]
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(''.join(line + '\n' for line in lines))
        command = [self.binary, conf, '--bind', LOOPBACK, '--save', '',
                   '--appendonly', 'no', '--dir', self.tmpdir]
        if self.tls:
            command += ['--port', '0', '--tls-port', str(self.port),
                        '--tls-cert-file', self.tls.cert,
                        '--tls-key-file', self.tls.key,
                        '--tls-ca-cert-file', self.tls.ca]
        else:
            command += ['--port', str(self.port)]
        return command

    def client(self, **kwargs: ty.Any) -> ty.Any:
        """A raw redis-py client for this server, for test assertions."""
        import redis
        args: dict[str, ty.Any] = {'host': self.host, 'port': self.port,
                                   'socket_timeout': 5}
        if self.tls:
            args.update(ssl=True, ssl_ca_certs=self.tls.ca,
                        ssl_certfile=self.tls.cert, ssl_keyfile=self.tls.key)
        if self.users:
            args['username'], args['password'] = next(iter(
                self.users.items()))
        elif self.password:
            args['password'] = self.password
        args.update(kwargs)
        return redis.Redis(**args)


def _wait_until(check: ty.Callable[[], bool], what: str,
                timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # the server may still be starting
            pass
        time.sleep(0.05)
    raise RuntimeError('timed out waiting for %s' % what)


class RedisSentinel(ServerProcess):
    """One Redis Sentinel watching ``master`` as ``service_name``."""

    binary = 'redis-server'

    def __init__(self, master: RedisServer, service_name: str,
                 password: str | None = None,
                 down_after_ms: int = 1000) -> None:
        super().__init__()
        self.master = master
        self.service_name = service_name
        self.password = password
        self.down_after_ms = down_after_ms

    def command(self) -> list[str]:
        conf = os.path.join(self.tmpdir, 'sentinel.conf')
        # Sentinel rewrites its file with what it learns; keep that state
        # across a restart.
        if not os.path.exists(conf):
            name = self.service_name
            lines = ['port %d' % self.port, 'bind %s' % LOOPBACK,
                     'dir %s' % self.tmpdir,
                     'sentinel monitor %s %s %d 2' % (
                         name, self.master.host, self.master.port),
                     'sentinel down-after-milliseconds %s %d' % (
                         name, self.down_after_ms),
                     'sentinel failover-timeout %s 10000' % name]
            if self.master.password:
                lines.append('sentinel auth-pass %s %s' % (
                    name, self.master.password))
            if self.password:
                lines.append('requirepass %s' % self.password)
            fd = os.open(conf, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, 'w') as f:
                f.write(''.join(line + '\n' for line in lines))
        return [self.binary, conf, '--sentinel']

    def client(self) -> ty.Any:
        """A raw redis-py client for this sentinel."""
        import redis
        return redis.Redis(host=self.host, port=self.port,
                           password=self.password, socket_timeout=5)


class RedisSentinelGroup(ServerGroup):
    """A master, one replica and three sentinels watching them."""

    service_name = 'kvs-master'

    def __init__(self, password: str | None = None,
                 sentinel_password: str | None = None,
                 down_after_ms: int = 1000) -> None:
        self.master = RedisServer(password=password)
        self.replica = RedisServer(password=password, extra=[
            'replicaof %s %d' % (self.master.host, self.master.port)])
        self.servers = [self.master, self.replica]
        self.sentinel_password = sentinel_password
        self.sentinels = [
            RedisSentinel(self.master, self.service_name, sentinel_password,
                          down_after_ms) for _ in range(3)]

    @property
    def store_args(self) -> dict[str, ty.Any]:
        """``configure()`` arguments of ``openstack.kvs.Redis`` for it."""
        args: dict[str, ty.Any] = {
            'sentinels': [s.address for s in self.sentinels],
            'service_name': self.service_name}
        if self.master.password:
            args['password'] = self.master.password
        if self.sentinel_password:
            args['sentinel_password'] = self.sentinel_password
        return args

    def processes(self) -> list[ServerProcess]:
        return [*self.sentinels, *self.servers]

    def start(self) -> 'RedisSentinelGroup':
        # The sentinels start once the replica follows the master.
        for server in self.servers:
            server.start()
        replica = self.replica.client()
        _wait_until(lambda: replica.info('replication')[
            'master_link_status'] == 'up', 'the replica to sync')
        for sentinel in self.sentinels:
            sentinel.start()
        for sentinel in self.sentinels:
            client = sentinel.client()
            # Failover needs every sentinel to know the others and the
            # replica, which they learn from the master over a few seconds.
            _wait_until(lambda: (
                len(client.sentinel_sentinels(self.service_name)) == 2 and
                len(client.sentinel_slaves(self.service_name)) == 1),
                'sentinel %s to discover its peers' % sentinel.address)
        return self

    def current_master(self) -> RedisServer:
        """The server the sentinels currently name as master."""
        sentinel = self.sentinels[0].client()
        _, port = sentinel.sentinel_get_master_addr_by_name(self.service_name)
        return next(s for s in self.servers if s.port == int(port))


class RedisClusterGroup(ServerGroup):
    """Three Redis Cluster masters made with ``redis-cli --cluster create``."""

    def __init__(self, size: int = 3) -> None:
        ports: list[int] = []
        for _ in range(size):
            ports.append(redis_cluster_port(ports))
        self.nodes = [RedisServer(port=port, extra=[
            'cluster-enabled yes', 'cluster-config-file nodes.conf',
            'cluster-node-timeout 2000']) for port in ports]

    @property
    def store_args(self) -> dict[str, ty.Any]:
        """``configure()`` arguments of ``openstack.kvs.Redis`` for it."""
        return {'cluster_nodes': [node.address for node in self.nodes]}

    def processes(self) -> list[ServerProcess]:
        return list(self.nodes)

    def start(self) -> 'RedisClusterGroup':
        super().start()
        cli = require_binary('redis-cli')
        subprocess.run(
            [cli, '--cluster', 'create'] +
            [node.address for node in self.nodes] + ['--cluster-yes'],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, timeout=60)
        for node in self.nodes:
            client = node.client()
            _wait_until(lambda: client.cluster('info')['cluster_state']
                        == 'ok', 'cluster node %s to be ready' % node.address)
        return self


@pytest.fixture(scope='session')
def redis_server() -> ty.Iterator[RedisServer]:
    """A standalone redis-server shared by the session."""
    yield from running(RedisServer())


@pytest.fixture(scope='session')
def redis_tls_server() -> ty.Iterator[RedisServer]:
    """A redis-server that speaks TLS only and wants client certificates."""
    server = RedisServer(tls=True)
    try:
        try:
            server.start()
        except RuntimeError:
            # A build without TLS (BUILD_TLS=no) refuses the tls-* options.
            if 'tls' not in server.log().lower():
                raise
            message = 'redis-server is built without TLS'
            if os.environ.get('CI', '').lower() == 'true':
                pytest.fail(message + ' (CI must install one with TLS)')
            pytest.skip(message)
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope='session')
def redis_acl_server() -> ty.Iterator[RedisServer]:
    """A redis-server whose only user is an ACL user with a password."""
    import secrets
    yield from running(
        RedisServer(users={'kvs-user': secrets.token_hex(12)}))


@pytest.fixture(scope='session')
def redis_sentinel_group() -> ty.Iterator[RedisSentinelGroup]:
    """Master, replica and three sentinels, all password protected."""
    import secrets
    yield from running(RedisSentinelGroup(
        password=secrets.token_hex(12),
        sentinel_password=secrets.token_hex(12)))


@pytest.fixture
def redis_failover_group() -> ty.Iterator[RedisSentinelGroup]:
    """A Sentinel group of its own, for a test that kills its master."""
    yield from running(RedisSentinelGroup(down_after_ms=500))


@pytest.fixture(scope='session')
def redis_cluster() -> ty.Iterator[RedisClusterGroup]:
    """A three-master Redis Cluster shared by the session."""
    yield from running(RedisClusterGroup())


# --- MongoDB (SecantusDB) --------------------------------------------------

#: Set to a ``mongodb://`` URI to run the MongoDB tests on a real mongod.
MONGO_URL_VARIABLE = 'OSLO_KVS_MONGO_URL'


class MongoServer(ServerProcess):
    """SecantusDB's MongoDB server on a loopback port.

    Its WiredTiger files live in the temp dir, so a restart (:meth:`stop`
    then :meth:`start`) reopens the same data, as a restarted mongod
    would. It advertises itself as the primary of a one-member replica set
    and sweeps TTL indexes every 60 s, like mongod's TTL monitor.
    """

    binary = 'secantusdb'

    def __init__(self, port: int | None = None,
                 cpu: int | None = None) -> None:
        super().__init__(port, cpu)
        self.db_name = 'oslo_kvs_tests'
        # An explicit (empty) configuration file stops SecantusDB from
        # reading one from the user's home or /etc.
        self.config = os.path.join(self.tmpdir, 'secantusd.toml')
        open(self.config, 'w').close()

    @property
    def url(self) -> str:
        return 'mongodb://%s/' % self.address

    def command(self) -> list[str]:
        return [sys.executable, '-m', 'secantus', '--config', self.config,
                '--host', self.host, '--port', str(self.port),
                '--storage-path', os.path.join(self.tmpdir, 'data'),
                '--log-level', 'WARNING']

    def require(self) -> None:
        try:
            import secantus  # noqa: F401
        except ImportError:
            _missing('SecantusDB is not installed (pip install -r '
                     'test-requirements.txt)')

    def start(self) -> 'MongoServer':
        self.spawn()
        try:
            # Importing the server and opening WiredTiger take a moment on
            # a busy machine; then it must answer the handshake.
            wait_for_port(self.port, self.process, timeout=60)
            with self.client() as client:
                client.admin.command('ping')
        except Exception as exc:
            self.stop()
            raise RuntimeError('SecantusDB did not start: %s\n%s'
                               % (exc, self.log())) from None
        return self

    def client(self, **kwargs: ty.Any) -> ty.Any:
        """A raw pymongo client for this server, for test assertions."""
        import pymongo
        args: dict[str, ty.Any] = {'serverSelectionTimeoutMS': 30000}
        args.update(kwargs)
        return pymongo.MongoClient(self.url, **args)

    def collection_args(self, collection: str) -> dict[str, ty.Any]:
        """``configure()`` arguments of openstack.kvs.MongoDB for it."""
        return {'db_hosts': self.url, 'db_name': self.db_name,
                'cache_collection': collection,
                'server_selection_timeout': 10}


class ExternalMongo:
    """A real MongoDB server named by ``OSLO_KVS_MONGO_URL``.

    It is never started, stopped or cleaned: the tests create collections
    with unique names in one database and drop only those.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        path = urllib.parse.urlsplit(url).path.strip('/')
        self.db_name = path or 'oslo_kvs_tests'
        netloc = urllib.parse.urlsplit(url).netloc.rpartition('@')[2]
        self.address = netloc

    def client(self, **kwargs: ty.Any) -> ty.Any:
        """A raw pymongo client for this server, for test assertions."""
        import pymongo
        args: dict[str, ty.Any] = {'serverSelectionTimeoutMS': 10000}
        args.update(kwargs)
        return pymongo.MongoClient(self.url, **args)

    collection_args = MongoServer.collection_args

    def cleanup(self) -> None:
        pass


@pytest.fixture(scope='session')
def mongo_server() -> ty.Iterator[ty.Any]:
    """The MongoDB server of the session: SecantusDB, or a real mongod.

    With ``OSLO_KVS_MONGO_URL`` set, that server (never stopped or
    cleaned); otherwise a SecantusDB this session starts and stops. Never
    stop it in a test; use :func:`mongo_factory` for that.
    """
    url = os.environ.get(MONGO_URL_VARIABLE, '')
    if url:
        yield ExternalMongo(url)
        return
    yield from running(MongoServer())


@pytest.fixture
def mongo_collection(mongo_server: ty.Any) -> ty.Iterator[ty.Any]:
    """A collection of its own for one test, dropped afterwards.

    The name is unique per test, so nothing this run did not create is
    ever touched, also on a shared real server.
    """
    with mongo_server.client() as client:
        collection = client[mongo_server.db_name][
            'kvs_%s' % uuid.uuid4().hex]
        try:
            yield collection
        finally:
            collection.drop()


@pytest.fixture
def mongo_factory() -> ty.Iterator[ty.Callable[..., MongoServer]]:
    """Make private SecantusDB servers a test may stop and restart.

    Always SecantusDB, also with ``OSLO_KVS_MONGO_URL`` set: a fault test
    stops its server, which it must never do to a shared one.
    """
    yield from _private_servers(MongoServer)


class MongoCommands(monitoring.CommandListener):
    """The commands pymongo sent, in order: what went over the wire.

    A pymongo command listener; :func:`mongo_commands` hands it to every
    client the backends build.
    """

    #: Not requests of the backend: handshakes, authentication, the
    #: session clean-up of a closing client.
    NOISE = frozenset(['hello', 'isMaster', 'ismaster', 'saslStart',
                       'saslContinue', 'endSessions', 'ping'])

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, ty.Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def requests(self) -> list[dict[str, ty.Any]]:
        """The commands sent since :meth:`clear`, without the noise."""
        return [command for name, command in self.sent
                if name not in self.NOISE]

    def names(self) -> list[str]:
        """The names of :meth:`requests`, e.g. ``['find']``."""
        return [name for name, _ in self.sent if name not in self.NOISE]

    def clear(self) -> None:
        del self.sent[:]


@pytest.fixture
def mongo_commands(monkeypatch: pytest.MonkeyPatch) -> MongoCommands:
    """Record every command of the MongoDB backends a test configures.

    It wraps ``MongoBackend.client_factory``, the backend's public hook
    for building its client, to pass pymongo ``event_listeners``.
    """
    from oslo_kvs.backends import mongo
    listener = MongoCommands()
    build = mongo.MongoBackend.client_factory

    def counting(hosts: ty.Any, **kwargs: ty.Any) -> ty.Any:
        return build(hosts, event_listeners=[listener], **kwargs)

    monkeypatch.setattr(mongo.MongoBackend, 'client_factory', counting)
    return listener
