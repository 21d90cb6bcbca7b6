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

"""openstack.kvs.Memcached arguments, key checks and pool, without a server.

Stores here point at a loopback port nothing listens on: a request that
reaches the network fails with ``BackendError``, so a ``ConfigurationError``
proves the store refused before sending anything.
"""

import socket
import ssl
import threading
import time
import uuid

from oslo_config import cfg
import pytest

import oslo_kvs
from oslo_kvs.backends import memcache_pool
from oslo_kvs.backends import memcached
from oslo_kvs import exception
from oslo_kvs_tests import servers
from oslo_kvs_tests import stored

STORE = 'openstack.kvs.Memcached'


@pytest.fixture
def dead_url():
    return '127.0.0.1:%d' % servers.free_port()


def configure(**args):
    store = oslo_kvs.get_key_value_store('mc-args-%s' % uuid.uuid4())
    store.configure(STORE, **args)
    return store


def backend(**args):
    """A backend made directly, as a backend author would."""
    return memcached.MemcachedBackend(args)


def cluster_of(be):
    """The cluster ``be`` built, with its nodes and their pools.

    Internal on purpose: these tests check how arguments became pool,
    cluster and client settings, which only the transport shows; no
    public API should exist just for that.
    """
    return be._clients.get()


def pool_of(be):
    """The pool of the first (or only) server of ``be``."""
    return cluster_of(be).nodes[0]


def client_kwargs(be):
    return pool_of(be)._make.keywords


class TestUrl:
    @pytest.mark.parametrize('url, servers', [
        ('10.0.0.1:11212', ['10.0.0.1:11212']),
        ('localhost', ['localhost:11211']),
        (' a:1 , b:2 ', ['a:1', 'b:2']),
        (['a:1', 'b:2', 'c:3'], ['a:1', 'b:2', 'c:3']),
        ('[::1]:11300', ['[::1]:11300']),
        ('inet6:[::1]:11300', ['[::1]:11300']),
        ('[fe80::1]', ['[fe80::1]:11211']),
        ('/run/memcached.sock', ['/run/memcached.sock']),
        ('unix:/run/memcached.sock,a:1', ['/run/memcached.sock', 'a:1']),
    ])
    def test_forms(self, url, servers):
        assert backend(url=url).servers() == servers

    def test_repr_names_the_class_and_servers(self):
        assert repr(backend(url='a:1,b:2')) == '<MemcachedBackend a:1, b:2>'

    def test_close_closes_the_cluster_once(self, monkeypatch):
        be = backend(url='a:1')
        closed = []
        monkeypatch.setattr(cluster_of(be), 'close',
                            lambda: closed.append(True))
        be.close()
        be.close()
        assert closed == [True]

    def test_ipv6_server_is_a_host_port_pair(self):
        assert pool_of(backend(url='[::1]:11300')).server == ('::1', 11300)

    @pytest.mark.parametrize('url', [
        '::1:11211', 'host:port', 'host:0', 'host:70000', '[::1', '[::1]x',
        'unix:relative.sock', ':11211', ',', []])
    def test_bad_entries_are_refused_naming_url(self, url):
        with pytest.raises(exception.ConfigurationError, match='url'):
            configure(url=url)

    def test_same_server_twice_is_refused(self):
        with pytest.raises(exception.ConfigurationError, match='twice'):
            configure(url='a:1,a:1')

    @pytest.mark.parametrize('url', ['a:1', 'a:1,b:2'])
    def test_one_server_or_several_make_one_cluster(self, url):
        be = backend(url=url, retry_attempts='3', retry_delay='0.5',
                     dead_retry='7', flush_on_rejoin='false')
        cluster = cluster_of(be)
        assert [node.name for node in cluster.nodes] == url.split(',')
        assert (cluster.retry_attempts, cluster.retry_delay,
                cluster.dead_retry, cluster.flush_on_rejoin) == (
                    3, 0.5, 7, False)
        assert all(isinstance(node, memcache_pool.Node)
                   for node in cluster.nodes)
        assert cluster_of(backend(url=url)).flush_on_rejoin


class TestArguments:
    @pytest.mark.parametrize('name', memcached.BACKEND_NAMES)
    def test_keystone_backend_names_are_accepted(self, name, dead_url):
        assert backend(url=dead_url, memcached_backend=name)

    def test_unknown_backend_name_lists_valid_ones(self, dead_url):
        with pytest.raises(exception.ConfigurationError) as info:
            configure(url=dead_url, memcached_backend='python-memcached')
        message = str(info.value)
        assert 'memcached_backend' in message
        for name in memcached.BACKEND_NAMES:
            assert name in message

    def test_historical_expire_time_name(self, dead_url):
        store = configure(url=dead_url, memcached_expire_time='5')
        assert stored.expiry(store)[0] == 5

    def test_expire_time_and_its_alias_together_are_refused(self, dead_url):
        with pytest.raises(exception.ConfigurationError, match='alias'):
            configure(url=dead_url, expire_time=1, memcached_expire_time=2)

    def test_unknown_argument_is_refused(self, dead_url):
        with pytest.raises(exception.ConfigurationError,
                           match='sockettimeout'):
            configure(url=dead_url, sockettimeout=1)

    def test_strings_are_coerced(self, dead_url):
        be = backend(url=dead_url, socket_timeout='0.5', pool_maxsize='3',
                     pool_unused_timeout='7', enable_socket_keepalive='true',
                     socket_keepalive_idle='4',
                     socket_keepalive_interval='5',
                     socket_keepalive_count='6')
        kwargs = client_kwargs(be)
        assert kwargs['timeout'] == 0.5
        assert kwargs['connect_timeout'] == 0.5
        keepalive = kwargs['socket_keepalive']
        assert (keepalive.idle, keepalive.intvl, keepalive.cnt) == (4, 5, 6)
        assert pool_of(be).max_size == 3
        assert pool_of(be).idle_timeout == 7

    def test_false_string_is_false(self, dead_url):
        be = backend(url=dead_url, enable_socket_keepalive='False',
                     tls_enabled='false')
        assert client_kwargs(be)['socket_keepalive'] is None
        assert client_kwargs(be)['tls_context'] is None

    def test_connect_timeout_is_its_own(self, dead_url):
        kwargs = client_kwargs(backend(url=dead_url, socket_timeout=2,
                                       connect_timeout=0.25))
        assert (kwargs['timeout'], kwargs['connect_timeout']) == (2, 0.25)

    def test_keystone_pool_names(self, dead_url):
        be = backend(url=dead_url, max_pool_size=4, pool_idle_timeout=9,
                     pool_wait_timeout=0.5)
        pool = pool_of(be)
        assert (pool.max_size, pool.idle_timeout, pool.wait_timeout) == (
            4, 9, 0.5)

    @pytest.mark.parametrize('name, value', [
        ('socket_timeout', 0), ('socket_timeout', 'soon'),
        ('pool_maxsize', 0), ('retry_attempts', -1), ('dead_retry', True),
        ('enable_socket_keepalive', 'perhaps'),
        ('socket_keepalive_count', 0)])
    def test_bad_values_name_the_argument(self, name, value, dead_url):
        with pytest.raises(exception.ConfigurationError, match=name):
            configure(url=dead_url, **{name: value})

    def test_raw_bytes_whatever_the_flags(self, dead_url):
        # The serde of the clients the pool makes: pymemcache's default.
        serde = pool_of(backend(url=dead_url))._make().serde
        assert serde.serialize('k', b'v') == (b'v', 0)
        for flags in (0, 1, 2, 4, 0xffff):
            assert serde.deserialize('k', b'\x80\x04K\x01.', flags) == (
                b'\x80\x04K\x01.')


class TestTLS:
    @pytest.fixture
    def tls(self, tmp_path):
        return servers.make_tls_files(str(tmp_path))

    def test_context_verifies_the_server(self, tls, dead_url):
        context = client_kwargs(backend(
            url=dead_url, tls_enabled=True, tls_cafile=tls.ca,
            tls_certfile=tls.cert, tls_keyfile=tls.key,
            tls_allowed_ciphers='ECDHE+AESGCM'))['tls_context']
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname

    def test_tls_files_without_tls_enabled_are_refused(self, tls, dead_url):
        with pytest.raises(exception.ConfigurationError,
                           match='tls_cafile.*tls_enabled'):
            configure(url=dead_url, tls_cafile=tls.ca)

    @pytest.mark.parametrize('name', ['tls_cafile', 'tls_certfile'])
    def test_missing_file_names_the_argument(self, name, tls, dead_url):
        with pytest.raises(exception.ConfigurationError, match=name):
            configure(url=dead_url, tls_enabled=True,
                      **{name: tls.ca + '.missing'})

    def test_bad_ciphers_name_the_argument(self, dead_url):
        with pytest.raises(exception.ConfigurationError,
                           match='tls_allowed_ciphers'):
            configure(url=dead_url, tls_enabled=True,
                      tls_allowed_ciphers='NO-SUCH-CIPHER')

    def test_keyfile_needs_certfile(self, tls, dead_url):
        with pytest.raises(exception.ConfigurationError,
                           match='tls_certfile'):
            configure(url=dead_url, tls_enabled=True, tls_keyfile=tls.key)

    def test_tls_over_unix_socket_is_refused(self):
        with pytest.raises(exception.ConfigurationError, match='unix'):
            configure(url='/tmp/mc.sock', tls_enabled=True)


class TestKeysWithoutMangler:
    @pytest.fixture
    def store(self, dead_url):
        cfg.CONF.set_override('enable_key_mangler', False, group='kvs')
        return configure(url=dead_url, socket_timeout=0.5)

    def prefix_length(self, store):
        # The namespace prefix (default config_prefix) sets the
        # longest key memcached takes.
        return len(('openstack.kvs:%s:k:' % store.name).encode())

    @pytest.mark.parametrize('key', [
        'with space', 'new\nline', 'tab\t', 'nul\x00', 'del\x7f',
        'carriage\rreturn', '\udcff lone surrogate'])
    def test_unstorable_keys_are_refused_before_sending(self, store, key):
        for call in (lambda: store.get(key), lambda: store.set(key, 1),
                     lambda: store.add(key, 1), lambda: store.delete(key),
                     lambda: store.get_multi(['ok', key]),
                     lambda: store.set_multi({key: 1}),
                     lambda: store.get_lock(key)):
            with pytest.raises(exception.ConfigurationError):
                call()

    def test_key_length_counts_utf8_bytes(self, store):
        room = memcached.MAX_KEY_LENGTH - self.prefix_length(store)
        with pytest.raises(exception.ConfigurationError, match='250'):
            store.get('x' * (room + 1))
        with pytest.raises(exception.ConfigurationError, match='250'):
            store.get('é' * (room // 2 + 1))
        # A key that fits is sent, and this server is down.
        for fits in ('x' * room, 'é' * (room // 2), 'ключ'):
            with pytest.raises(exception.BackendError):
                store.get(fits)


class TestExpiry:
    @pytest.mark.parametrize('seconds, sent', [
        (0, 0), (0.2, 1), (1, 1), (1.5, 2), (30 * 86400, 30 * 86400)])
    def test_relative(self, seconds, sent):
        assert memcached.exptime(seconds) == sent

    def test_beyond_30_days_is_absolute(self):
        seconds = 30 * 86400 + 0.5
        before = time.time()
        sent = memcached.exptime(seconds)
        assert before + seconds <= sent <= time.time() + seconds + 1

    @pytest.mark.parametrize('ttl, sent', [
        (0, 0), (0.2, 2), (1, 2), (1.01, 3), (5, 6)])
    def test_lock_expiry_rounds_up_past_the_clock_tick(self, ttl, sent):
        assert memcached.lock_exptime(ttl) == sent


class FakeClient:
    """Stands in for a pymemcache Client in pool tests."""

    def __init__(self):
        self.closed = 0
        self.release = threading.Event()
        self.release.set()
        # A connected socket, so the pool can poll it; ``peer`` plays
        # the server.
        self.sock, self.peer = socket.socketpair()

    def hold(self):
        self.release.wait(5)
        return self

    def meet(self, barrier):
        barrier.wait(5)

    def close(self):
        self.closed += 1
        self.sock.close()
        self.peer.close()
        self.sock, self.peer = socket.socketpair()


class TestPool:
    def make(self, **options):
        options.setdefault('idle_timeout', 0)
        options.setdefault('wait_timeout', 5)
        pool = memcache_pool.Node(('127.0.0.1', 1), **options)
        made = []

        def make_client():
            made.append(FakeClient())
            return made[-1]

        pool._make = make_client
        return pool, made

    def test_reuses_one_client_when_calls_do_not_overlap(self):
        pool, made = self.make(max_size=5)
        assert pool.run('hold') is pool.run('hold')
        assert len(made) == 1

    def test_waits_for_a_busy_client_then_gets_it(self):
        pool, made = self.make(max_size=1)
        pool.run('hold')
        made[0].release.clear()
        holder = threading.Thread(target=pool.run, args=('hold',))
        holder.start()
        while not pool._size or pool._idle:
            time.sleep(0.001)
        threading.Timer(0.1, made[0].release.set).start()
        assert pool.run('hold') is made[0]
        holder.join()
        assert len(made) == 1

    def test_gives_up_after_wait_timeout(self):
        pool, made = self.make(max_size=1, wait_timeout=0.05)
        pool.run('hold')
        made[0].release.clear()
        holder = threading.Thread(target=pool.run, args=('hold',))
        holder.start()
        try:
            while pool._idle:
                time.sleep(0.001)
            with pytest.raises(memcache_pool.ServerError,
                               match='no free connection'):
                pool.run('hold')
        finally:
            made[0].release.set()
            holder.join()

    def test_idle_connection_is_closed_before_reuse(self):
        pool, made = self.make(max_size=1, idle_timeout=0.02)
        pool.run('hold')
        pool.run('hold')
        assert made[0].closed == 0
        time.sleep(0.05)
        pool.run('hold')
        assert made[0].closed == 1

    def test_connection_closed_by_the_server_is_replaced_before_use(self):
        pool, made = self.make(max_size=1)
        pool.run('hold')
        made[0].peer.close()  # the server restarted, which takes a while
        time.sleep(2 * memcache_pool.TRUSTED_IDLE)
        assert pool.run('hold') is made[0]
        assert made[0].closed == 1
        time.sleep(2 * memcache_pool.TRUSTED_IDLE)
        pool.run('hold')
        assert made[0].closed == 1  # a live connection is kept

    def test_every_idle_connection_past_its_timeout_is_reaped(self):
        pool, made = self.make(max_size=8, idle_timeout=0.05)
        burst = threading.Barrier(8)
        threads = [threading.Thread(target=pool.run, args=('meet', burst))
                   for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(made) == pool._size == 8
        time.sleep(0.1)
        pool.run('hold')  # the call-driven sweep
        assert pool._size == 1
        # The one reused was closed at checkout and reconnected.
        assert all(client.closed == 1 for client in made)

    def test_failed_call_closes_its_connection_and_keeps_the_slot(self):
        pool, made = self.make(max_size=1)
        with pytest.raises(AttributeError):
            pool.run('no_such_command')
        assert made[0].closed == 1
        assert pool.run('hold') is made[0]

    def test_pool_timeout_becomes_backend_error(self):
        # A server that accepts connections and never answers holds the
        # only connection while another caller asks for one.
        with socket.socket() as silent:
            silent.bind(('127.0.0.1', 0))
            silent.listen()
            url = '127.0.0.1:%d' % silent.getsockname()[1]
            be = memcached.MemcachedBackend({
                'url': url, 'pool_maxsize': 1, 'socket_timeout': 5,
                'pool_connection_get_timeout': 0})
            holder = threading.Thread(target=_swallow_backend_error,
                                      args=(be.get_serialized, 'k'))
            holder.start()
            try:
                deadline = time.monotonic() + 30
                while True:
                    with pytest.raises(exception.BackendError) as info:
                        be.get_serialized('k')
                    if 'no free connection' in str(info.value) or \
                            time.monotonic() > deadline:
                        break
            finally:
                holder.join()
                be.close()
        assert url in str(info.value) and 'pool_maxsize 1' in str(info.value)


def _swallow_backend_error(call, *args):
    try:
        call(*args)
    except exception.BackendError:
        pass


class TestServerDown:
    def test_backend_error_names_backend_and_server(self, dead_url):
        store = configure(url=dead_url)
        for call in (lambda: store.get('k'), lambda: store.set('k', 1),
                     lambda: store.get_multi(['a', 'b']),
                     lambda: store.delete_multi(['a']),
                     lambda: store.add('k', 1), lambda: store.delete('k'),
                     lambda: store.get_lock('k').acquire()):
            with pytest.raises(exception.BackendError) as info:
                call()
            assert STORE in str(info.value)
            assert dead_url in str(info.value)

    @pytest.mark.parametrize('count', [1, 3])
    def test_the_last_live_server_is_tried_on_every_call(self, count):
        urls = ['127.0.0.1:%d' % servers.free_port() for _ in range(count)]
        be = backend(url=urls, retry_attempts=0, retry_delay=60,
                     dead_retry=60)
        messages = []
        for key in ['k%d' % n for n in range(30)] * 2:
            with pytest.raises(exception.BackendError) as info:
                be.get_serialized(key)
            messages.append(str(info.value))
        # Each failure ejected a server until one was left; that one is
        # neither skipped nor ejected, so its calls reach the network.
        last = cluster_of(be).node_for('any').label
        assert all(last in message and 'skipped' not in message and
                   'Connection refused' in message
                   for message in messages[count:])
        assert {cluster_of(be).node_for(key).label
                for key in ('a', 'b', 'c', 'd')} == {last}
