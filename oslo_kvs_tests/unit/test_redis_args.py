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

"""Arguments of ``openstack.kvs.Redis``, checked without a server.

Building a standalone or Sentinel client does not connect, so what the
backend hands to redis-py can be inspected directly.
"""

import socket
import uuid

import pytest
import redis
from redis import sentinel as redis_sentinel

import oslo_kvs
from oslo_kvs.backends import redis as redis_backend
from oslo_kvs import exception
from oslo_kvs_tests import servers
from oslo_kvs_tests import stored

SECRET = 'test-password-7c1e0b'  # fixed: test ids must match across workers


def make(**args):
    return redis_backend.RedisBackend(args)


def pool_of(backend):
    """The redis-py connection pool ``backend`` built from its arguments.

    Internal on purpose: only the pool shows how the arguments became
    redis-py settings, and no public API should exist just for that.
    """
    return backend._client.connection_pool


def pool_kwargs(backend):
    return pool_of(backend).connection_kwargs


class TestCoercion:
    def test_strings_from_config_files_are_coerced(self):
        backend = make(host='127.0.0.1', port='6390', db='3',
                       socket_timeout='1.5', socket_keepalive='false',
                       pool_maxsize='7', tls_enabled='False')
        kwargs = pool_kwargs(backend)
        assert kwargs['port'] == 6390 and kwargs['db'] == 3
        assert kwargs['socket_timeout'] == 1.5
        # The connect timeout follows socket_timeout unless given.
        assert kwargs['socket_connect_timeout'] == 1.5
        assert kwargs['socket_keepalive'] is False
        assert pool_of(backend).max_connections == 7
        assert 'ssl_ca_certs' not in kwargs

    def test_historical_expiry_name(self):
        store = oslo_kvs.get_key_value_store(uuid.uuid4().hex)
        store.configure('openstack.kvs.Redis', redis_expiration_time='0.25',
                        no_expiry_keys='a,b')
        ttl, keep = stored.expiry(store)
        assert ttl == 0.25 and len(keep) == 2
        store.close()

    def test_expiry_rounds_up_to_whole_milliseconds(self):
        assert redis_backend._px(0.0001) == 1
        assert redis_backend._px(1.0005) == 1001
        assert redis_backend._px(2) == 2000
        assert redis_backend._px(None) is None

    def test_keepalive_options(self):
        backend = make(socket_keepalive_idle='30',
                       socket_keepalive_interval=5, socket_keepalive_count=3)
        options = pool_kwargs(backend)['socket_keepalive_options']
        assert options == {socket.TCP_KEEPIDLE: 30, socket.TCP_KEEPINTVL: 5,
                           socket.TCP_KEEPCNT: 3}

    def test_defaults(self):
        backend = make()
        kwargs = pool_kwargs(backend)
        assert (kwargs['host'], kwargs['port'], kwargs['db']) == (
            'localhost', 6379, 0)
        assert kwargs['socket_timeout'] == 3.0
        assert kwargs['retry'].get_retries() == 0
        assert backend.servers() == ['redis://localhost:6379/0']
        assert backend.distributed_lock is True

    @pytest.mark.parametrize('name, value', [
        ('port', 'not-a-port'), ('port', 70000), ('db', -1),
        ('socket_timeout', 0), ('socket_timeout', True),
        ('pool_maxsize', 0), ('tls_enabled', 'perhaps'),
        ('socket_keepalive_idle', 0)])
    def test_bad_values_name_the_argument(self, name, value):
        with pytest.raises(exception.ConfigurationError, match=name):
            make(**{name: value})

    def test_unknown_argument_is_refused(self):
        with pytest.raises(exception.ConfigurationError,
                           match='redis_host'):
            make(redis_host='127.0.0.1')

    def test_configure_raises_configuration_error(self):
        store = oslo_kvs.get_key_value_store('redis-args-%s' % uuid.uuid4())
        with pytest.raises(exception.ConfigurationError, match='port'):
            store.configure('openstack.kvs.Redis', port='x')
        assert not store.is_configured


class TestModes:
    @pytest.mark.parametrize('args, mode', [
        ({}, redis_backend.StandaloneBackend),
        ({'url': 'redis://127.0.0.1:6390/0'},
         redis_backend.StandaloneBackend),
        ({'sentinels': '', 'cluster_nodes': ''},
         redis_backend.StandaloneBackend),
        ({'sentinels': ['127.0.0.1:26379'], 'service_name': 'm'},
         redis_backend.SentinelBackend)])
    def test_the_registered_class_picks_the_mode(self, args, mode):
        backend = make(**args)
        assert type(backend) is mode
        assert backend.name == 'openstack.kvs.Redis'
        assert backend.fenced_writes is True

    def test_a_mode_class_is_itself(self):
        backend = redis_backend.SentinelBackend(
            {'sentinels': ['127.0.0.1:26379'], 'service_name': 'm'})
        assert type(backend) is redis_backend.SentinelBackend
        assert redis_backend.ClusterBackend.fenced_writes is False

    def test_bad_arguments_fail_before_a_mode_is_picked(self):
        with pytest.raises(exception.ConfigurationError,
                           match='sentinels') as info:
            make(sentinels=7, password=SECRET)
        assert SECRET not in str(info.value)


class TestUrl:
    def test_url_gives_server_credentials_and_db(self):
        backend = make(url='redis://user:%s@127.0.0.1:6390/4' % SECRET)
        kwargs = pool_kwargs(backend)
        assert (kwargs['host'], kwargs['port'], kwargs['db']) == (
            '127.0.0.1', 6390, 4)
        assert (kwargs['username'], kwargs['password']) == ('user', SECRET)
        assert backend.servers() == ['redis://127.0.0.1:6390/4']
        assert SECRET not in repr(backend)

    def test_rediss_url_enables_tls(self, tmp_path):
        ca = tmp_path / 'ca.pem'
        ca.write_text('not used before connecting')
        backend = make(url='rediss://127.0.0.1:6390', tls_cafile=str(ca),
                       tls_allowed_ciphers='ECDHE+AESGCM',
                       tls_check_hostname='false')
        pool = pool_of(backend)
        assert pool.connection_class is redis.SSLConnection
        kwargs = pool.connection_kwargs
        assert kwargs['ssl_ca_certs'] == str(ca)
        assert kwargs['ssl_ciphers'] == 'ECDHE+AESGCM'
        assert kwargs['ssl_check_hostname'] is False
        assert backend.servers() == ['rediss://127.0.0.1:6390/0']

    def test_url_may_leave_out_port_and_db(self):
        backend = make(url='redis://127.0.0.1')
        kwargs = pool_kwargs(backend)
        assert (kwargs['host'], kwargs['port'], kwargs['db']) == (
            '127.0.0.1', 6379, 0)
        assert backend.servers() == ['redis://127.0.0.1:6379/0']

    def test_unix_url(self):
        backend = make(url='unix:///run/redis/redis.sock?db=2')
        kwargs = pool_kwargs(backend)
        assert kwargs['path'] == '/run/redis/redis.sock'
        assert kwargs['db'] == 2
        assert 'socket_keepalive' not in kwargs
        assert backend.servers() == ['unix:///run/redis/redis.sock']

    def test_ipv6_host_is_named_in_brackets(self):
        assert make(host='::1', port=6390).servers() == [
            'redis://[::1]:6390/0']

    @pytest.mark.parametrize('url', [
        'http://user:%s@127.0.0.1' % SECRET,
        'redis://user:%s@127.0.0.1/0?socket_timeout=nope' % SECRET])
    def test_bad_url_is_refused_without_echoing_it(self, url):
        with pytest.raises(exception.ConfigurationError) as info:
            make(url=url)
        assert 'url' in str(info.value)
        assert SECRET not in str(info.value)

    @pytest.mark.parametrize('extra', [
        {'host': '127.0.0.1'}, {'port': 6390}, {'db': 1},
        {'sentinels': ['127.0.0.1:26379'], 'service_name': 'm'},
        {'cluster_nodes': ['127.0.0.1:7000']}, {'password': SECRET}])
    def test_url_conflicts(self, extra):
        with pytest.raises(exception.ConfigurationError,
                           match='together') as info:
            make(url='redis://u:%s@127.0.0.1:6390/0' % SECRET, **extra)
        assert SECRET not in str(info.value)

    @pytest.mark.parametrize('query', [
        'decode_responses=true', 'max_connections=5', 'protocol=3',
        'socket_timeout=9'])
    def test_url_query_cannot_override_the_backend(self, query):
        name = query.split('=')[0]
        with pytest.raises(exception.ConfigurationError, match=name):
            make(url='redis://127.0.0.1:6390/0?' + query)

    def test_unix_socket_and_tls_conflict(self):
        with pytest.raises(exception.ConfigurationError, match='together'):
            make(url='unix:///tmp/redis.sock', tls_enabled=True)


class TestKeyPrefix:
    @pytest.mark.parametrize('prefix', ['', 'keystone:', 'a.b/c_d-1:'])
    def test_sane_prefixes(self, prefix):
        assert make(key_prefix=prefix)._prefix == prefix

    @pytest.mark.parametrize('prefix', [
        'with space', '{tag}', 'new\nline', 'ключ', 'x' * 129, '*'])
    def test_other_prefixes_are_refused(self, prefix):
        with pytest.raises(exception.ConfigurationError,
                           match='key_prefix'):
            make(key_prefix=prefix)


class TestTLS:
    def test_missing_file_is_named(self, tmp_path):
        with pytest.raises(exception.ConfigurationError,
                           match='tls_cafile'):
            make(tls_enabled=True, tls_cafile=str(tmp_path / 'nope.pem'))

    def test_key_without_certificate(self, tmp_path):
        key = tmp_path / 'key.pem'
        key.write_text('x')
        with pytest.raises(exception.ConfigurationError,
                           match='tls_certfile'):
            make(tls_enabled=True, tls_keyfile=str(key))

    @pytest.mark.parametrize('name', ['tls_cafile', 'tls_certfile',
                                      'tls_allowed_ciphers'])
    def test_tls_arguments_without_tls_enabled_are_named(self, tmp_path,
                                                         name):
        with pytest.raises(exception.ConfigurationError) as info:
            make(**{name: str(tmp_path)})
        assert str(info.value) == (
            'Argument(s) %s of openstack.kvs.Redis need tls_enabled=True'
            % name)


class TestSentinel:
    def test_sentinel_arguments(self):
        backend = make(sentinels='127.0.0.1:26379, [::1]:26380',
                       service_name='mymaster', password=SECRET,
                       sentinel_username='watcher',
                       sentinel_password=SECRET + 'x', db='2',
                       socket_timeout='0.5')
        pool = pool_of(backend)
        assert pool.service_name == 'mymaster'
        assert pool.connection_kwargs['password'] == SECRET
        assert pool.connection_kwargs['db'] == 2
        sentinels = pool.sentinel_manager.sentinels
        assert [s.connection_pool.connection_kwargs['port']
                for s in sentinels] == [26379, 26380]
        sentinel_kwargs = sentinels[0].connection_pool.connection_kwargs
        assert sentinel_kwargs['username'] == 'watcher'
        assert sentinel_kwargs['password'] == SECRET + 'x'
        assert sentinel_kwargs['socket_timeout'] == 0.5
        assert sentinel_kwargs['protocol'] == 2
        assert backend.servers() == ['127.0.0.1:26379', '[::1]:26380']
        assert SECRET not in repr(backend)

    def test_tls_reaches_masters_and_sentinels(self, tmp_path):
        ca = tmp_path / 'ca.pem'
        ca.write_text('not used before connecting')
        backend = make(sentinels=['127.0.0.1:26379'], service_name='m',
                       tls_enabled='true', tls_cafile=str(ca))
        pool = pool_of(backend)
        assert pool.connection_class is (
            redis_sentinel.SentinelManagedSSLConnection)
        assert pool.connection_kwargs['ssl_ca_certs'] == str(ca)
        sentinel = pool.sentinel_manager.sentinels[0].connection_pool
        assert sentinel.connection_class is redis.SSLConnection
        assert sentinel.connection_kwargs['ssl_ca_certs'] == str(ca)

    def test_service_name_is_required(self):
        with pytest.raises(exception.ConfigurationError,
                           match='service_name'):
            make(sentinels=['127.0.0.1:26379'])

    @pytest.mark.parametrize('item', ['127.0.0.1', 'host:port', ':26379'])
    def test_items_must_be_host_port(self, item):
        with pytest.raises(exception.ConfigurationError, match='sentinels'):
            make(sentinels=[item], service_name='m')

    def test_sentinels_conflict_with_host_and_cluster(self):
        with pytest.raises(exception.ConfigurationError, match='together'):
            make(sentinels=['127.0.0.1:26379'], service_name='m',
                 host='127.0.0.1')
        with pytest.raises(exception.ConfigurationError, match='together'):
            make(sentinels=['127.0.0.1:26379'], service_name='m',
                 cluster_nodes=['127.0.0.1:7000'])


class TestCluster:
    def test_cluster_has_only_db_zero(self):
        with pytest.raises(exception.ConfigurationError, match='db'):
            make(cluster_nodes=['127.0.0.1:7000'], db=1)

    def test_items_must_be_host_port(self):
        with pytest.raises(exception.ConfigurationError,
                           match='cluster_nodes'):
            make(cluster_nodes=['127.0.0.1'])

    def test_unreachable_cluster_fails_configure_naming_it(self):
        address = '127.0.0.1:%d' % servers.free_port()
        store = oslo_kvs.get_key_value_store('redis-args-%s' % uuid.uuid4())
        with pytest.raises(exception.BackendError, match=address):
            store.configure('openstack.kvs.Redis', cluster_nodes=[address],
                            password=SECRET)
        assert not store.is_configured


@pytest.mark.parametrize('key', [
    'ab12' * 16,           # a mangled key
    'l:user{tenant}x',     # a hash tag of its own
    'l:}odd{',             # a brace but no tag
    'l:{}x}y',             # an empty tag, which Redis ignores
    'l:{',
])
@pytest.mark.parametrize('prefix', ['', 'svc:'])
def test_release_notices_are_in_the_lock_slot(prefix, key):
    # One script frees the lock and notifies: on a Cluster every key
    # must hash to its slot, and ACL key patterns see the prefix.
    slot = redis.crc.key_slot((prefix + key).encode())
    keys = redis_backend._notice_keys(prefix, key)
    assert len(set(keys)) == 2
    for notice in keys:
        assert notice.startswith(prefix)
        assert notice != prefix + key
        assert redis.crc.key_slot(notice.encode()) == slot
    # Keys of their own for each lock.
    assert not set(keys) & set(redis_backend._notice_keys(prefix, key + 'x'))
