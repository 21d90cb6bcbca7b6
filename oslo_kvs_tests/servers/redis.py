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

"""Redis servers for the tests: standalone, TLS, ACL, Sentinel, Cluster."""

import os
import subprocess
import time
import typing as ty

import pytest

from oslo_kvs_tests.servers.base import claim
from oslo_kvs_tests.servers.base import free_port
from oslo_kvs_tests.servers.base import LOOPBACK
from oslo_kvs_tests.servers.base import make_tls_files
from oslo_kvs_tests.servers.base import private_servers
from oslo_kvs_tests.servers.base import require_binary
from oslo_kvs_tests.servers.base import running
from oslo_kvs_tests.servers.base import ServerGroup
from oslo_kvs_tests.servers.base import ServerProcess


def redis_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 <= 65535 and claim(port + 10000):
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
            try:
                _wait_until(lambda: (
                    len(client.sentinel_sentinels(self.service_name)) == 2
                    and len(client.sentinel_slaves(self.service_name)) == 1),
                    'sentinel %s to discover its peers' % sentinel.address)
            except RuntimeError as e:
                raise RuntimeError('%s; its log:\n%s' % (
                    e, sentinel.log()[-4000:])) from None
        return self

    def current_master(self) -> RedisServer:
        """The server the sentinels currently name as master."""
        sentinel = self.sentinels[0].client()
        _, port = sentinel.sentinel_get_master_addr_by_name(self.service_name)
        return next(s for s in self.servers if s.port == int(port))


class RedisClusterGroup(ServerGroup):
    """Three Redis Cluster masters made with ``redis-cli --cluster create``.

    :param size: how many masters, each with a share of the slots.
    :param node_timeout_ms: ``cluster-node-timeout``: how long a node may
        not answer before the others count it as failing.
    """

    def __init__(self, size: int = 3, node_timeout_ms: int = 2000) -> None:
        self.nodes = [RedisServer(port=redis_cluster_port(), extra=[
            'cluster-enabled yes', 'cluster-config-file nodes.conf',
            'cluster-node-timeout %d' % node_timeout_ms]) for _ in range(size)]

    @property
    def store_args(self) -> dict[str, ty.Any]:
        """``configure()`` arguments of ``openstack.kvs.Redis`` for it."""
        return {'cluster_nodes': [node.address for node in self.nodes]}

    def processes(self) -> list[ServerProcess]:
        return list(self.nodes)

    def node_of(self, key: str) -> RedisServer:
        """The master that serves stored key ``key``, as the cluster says."""
        client = self.nodes[0].client()
        try:
            slot = client.cluster('keyslot', key)
            for first, last, master, *_ in client.cluster('slots'):
                if first <= slot <= last:
                    return next(node for node in self.nodes
                                if node.port == int(master[1]))
        finally:
            client.close()
        raise AssertionError('no node serves slot %d' % slot)

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


@pytest.fixture
def redis_factory() -> ty.Iterator[ty.Callable[..., RedisServer]]:
    """Make private redis-servers a test may stop, hang and restart.

    Call it with :class:`RedisServer` arguments; the servers are started
    and are cleaned up after the test.
    """
    yield from private_servers(RedisServer)


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


@pytest.fixture
def redis_sentinel_factory(
) -> ty.Iterator[ty.Callable[..., RedisSentinelGroup]]:
    """Make private Sentinel groups a test may stop, hang and restart.

    Call it with :class:`RedisSentinelGroup` arguments; the groups are
    started and are cleaned up after the test.
    """
    yield from private_servers(RedisSentinelGroup)


@pytest.fixture(scope='session')
def redis_cluster() -> ty.Iterator[RedisClusterGroup]:
    """A three-master Redis Cluster shared by the session."""
    yield from running(RedisClusterGroup())


@pytest.fixture
def redis_cluster_factory(
) -> ty.Iterator[ty.Callable[..., RedisClusterGroup]]:
    """Make private Redis Clusters a test may stop, hang and restart.

    Call it with :class:`RedisClusterGroup` arguments; the clusters are
    started and are cleaned up after the test.
    """
    yield from private_servers(RedisClusterGroup)
