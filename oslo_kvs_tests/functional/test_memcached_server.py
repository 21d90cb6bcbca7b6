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

"""openstack.kvs.Memcached on a real server: what the contract cannot see.

Raw bytes whatever the flags, item size limit, expiry as memcached sees
it, lock expiry rounding, keys without the mangler, TLS, unix sockets,
IPv6, keepalive and round trips per server.
"""

import pickle
import socket
import threading
import time
import unittest.mock
import uuid

import msgpack
from oslo_config import cfg
from pymemcache.client import base as pymc_base
import pytest

from oslo_kvs.backends import memcached
from oslo_kvs import exception
from oslo_kvs import serialization
from oslo_kvs_tests.functional import test_protection_servers as protection
from oslo_kvs_tests import stored

STORE = 'openstack.kvs.Memcached'
DAY = 86400

sprung = []


def _spring(note):
    sprung.append(note)


class _Trap:
    """Unpickling this calls _spring: proof that someone unpickled."""

    def __reduce__(self):
        return _spring, ('unpickled',)


def make_store(args, **extra):
    return stored.make_store(STORE, **dict(args, **extra))


stored_key = stored.data_key


def raw_client(server):
    return pymc_base.Client((server.host, server.port), default_noreply=False,
                            allow_unicode_keys=True)


def meta_ttl(server, key):
    """Seconds memcached says ``key`` has left (-1: never expires)."""
    with socket.create_connection((server.host, server.port), 2) as sock:
        sock.sendall(b'mg %s t\r\n' % key.encode())
        reply = sock.recv(256).split()
    assert reply[0] == b'HD', reply
    return int(reply[1][1:])


def after_tick(server):
    """Return just after memcached's one-second clock ticks."""
    client = raw_client(server)
    probe = 'tick-%s' % uuid.uuid4()
    client.set(probe, b'1', expire=1)
    deadline = time.monotonic() + 3
    while client.get(probe) is not None and time.monotonic() < deadline:
        time.sleep(0.005)
    return time.monotonic()


@pytest.fixture
def store(memcached_server):
    return make_store(memcached_server.store_args)


@pytest.fixture
def backend(memcached_server):
    """The backend itself, on the shared server, for its bytes API."""
    made = memcached.MemcachedBackend(dict(memcached_server.store_args))
    yield made
    made.close()


class TestRawBytes:
    def test_pickle_flags_from_the_server_are_never_honoured(
            self, store, backend, memcached_server):
        payload = pickle.dumps(_Trap())
        key = stored_key(store, 'k')
        # pymemcache's pickle serde marks pickles with flag 1.
        raw_client(memcached_server).set(key, payload, flags=1)
        assert backend.get_serialized(key) == payload
        assert backend.get_serialized_multi([key]) == [payload]
        with pytest.raises(exception.IntegrityError):
            store.get('k')
        with pytest.raises(exception.IntegrityError):
            store.get_multi(['k'])
        assert sprung == []

    @pytest.mark.parametrize('flags', [0, 2, 4, 16, 0xffff])
    def test_value_comes_back_as_bytes_whatever_the_flags(
            self, backend, memcached_server, flags):
        key = 'raw-%s' % uuid.uuid4()
        raw_client(memcached_server).set(key, b'12', flags=flags)
        value = backend.get_serialized(key)
        assert value == b'12' and type(value) is bytes


class TestItemSizeLimit:
    big = b'x' * (2 * 1024 * 1024)  # memcached's default limit is 1 MB

    def test_too_large_set_leaves_no_old_value(self, store):
        store.set('k', 'old')
        with pytest.raises(exception.ValueTooLarge):
            store.set('k', self.big)
        with pytest.raises(exception.NotFound):
            store.get('k')
        store.set('k', 'new')  # the connection is still usable
        assert store.get('k') == 'new'

    def test_too_large_set_multi_leaves_none_of_its_keys(self, store):
        store.set_multi({'a': 'old', 'b': 'old'})
        with pytest.raises(exception.ValueTooLarge):
            store.set_multi({'a': 'new', 'b': self.big})
        for key in ('a', 'b'):
            with pytest.raises(exception.NotFound):
                store.get(key)

    def test_too_large_add_keeps_the_existing_value(self, store):
        store.set('k', 'old')
        with pytest.raises(exception.ValueTooLarge):
            store.add('k', self.big)
        assert store.get('k') == 'old'

    def test_error_names_the_server(self, store, memcached_server):
        with pytest.raises(exception.ValueTooLarge,
                           match=memcached_server.address):
            store.set('k', self.big)


class TestExpiryOnServer:
    def test_beyond_30_days_is_kept_for_that_long(self, memcached_server):
        store = make_store(memcached_server.store_args,
                           expire_time=31 * DAY, no_expiry_keys=['keep'])
        store.set_multi({'k': 1, 'keep': 2})
        assert store.get('k') == 1
        # memcached's own clock is a few seconds off the Unix time.
        left = meta_ttl(memcached_server, stored_key(store, 'k'))
        assert 31 * DAY - 5 <= left <= 31 * DAY + 5
        assert meta_ttl(memcached_server, stored_key(store, 'keep')) == -1

    def test_fractional_expiry_is_rounded_up(self, memcached_server):
        store = make_store(memcached_server.store_args, expire_time=0.2)
        store.set('k', 1)
        assert meta_ttl(memcached_server, stored_key(store, 'k')) >= 0
        assert store.get('k') == 1

    def test_no_expiry_keys_follow_a_custom_mangler(self, memcached_server):
        store = stored.make_store(
            STORE, mangle=lambda key: 'custom-' + key[-40:], expire_time=60,
            no_expiry_keys=['keep'], **memcached_server.store_args)
        store.set_multi({'keep': 1, 'gone': 2})
        assert meta_ttl(memcached_server, stored_key(store, 'keep')) == -1
        assert 0 < meta_ttl(memcached_server, stored_key(store, 'gone')) <= 60


class Holder:
    """The server of a topology that holds a stored key, raw."""

    def __init__(self, servers, key):
        self.key = key
        found = [server for server in getattr(servers, 'servers', [servers])
                 if raw_client(server).get(key) is not None]
        assert len(found) == 1, found
        self.server, self.client = found[0], raw_client(found[0])

    def get(self):
        return self.client.get(self.key)

    def ttl(self):
        return meta_ttl(self.server, self.key)


def counted_exchanges():
    """Counts pymemcache request/reply exchanges (see CountingRoundTrips)."""
    counter = CountingRoundTrips()
    patches = [counter.patch(name) for name in
               ('_store_cmd', '_fetch_cmd', '_misc_cmd')]
    return counter, patches


@pytest.mark.parametrize('topology', ['memcached_server',
                                      'memcached_cluster'])
class TestIncrOnServer:
    """incr() as memcached's own incr on the digits the codec writes."""

    @pytest.fixture
    def servers(self, topology, request):
        return request.getfixturevalue(topology)

    def test_set_writes_digits_that_memcacheds_incr_counts_on(self, servers):
        store = make_store(servers.store_args)
        store.set('n', 5)
        held = Holder(servers, stored_key(store, 'n'))
        assert held.get() == b'5'
        assert held.client.incr(held.key, 2) == 7
        assert store.get('n') == 7
        counter, patches = counted_exchanges()
        with patches[0], patches[1], patches[2]:
            assert store.incr('n') == 8
            assert store.incr('new', 3) == 3    # incr, then add
        assert [name for name, _ in counter.calls] == [
            '_misc_cmd', '_misc_cmd', '_store_cmd']
        assert held.get() == b'8'
        assert Holder(servers, stored_key(store, 'new')).get() == b'3'
        # memcached pads a number that got shorter with spaces.
        held.client.set(held.key, b'100')
        assert held.client.decr(held.key, 1) == 99
        assert held.get() == b'99 '
        assert store.get('n') == 99
        assert store.incr('n') == 100

    def test_expiry_for_a_created_key_kept_for_an_existing_one(
            self, servers):
        store = make_store(servers.store_args, expire_time=60,
                           no_expiry_keys=['keep'])
        assert store.incr('n') == 1
        held = Holder(servers, stored_key(store, 'n'))
        assert 55 <= held.ttl() <= 60
        assert store.incr('n', expire_time=0) == 2
        assert store.incr('n', -5, expire_time=0) == -3   # compare-and-set
        assert store.incr('n', 10, expire_time=0) == 7    # from b'-3': too
        assert 55 <= held.ttl() <= 60
        assert store.incr('never', expire_time=0) == 1
        assert store.incr('never', expire_time=5) == 2
        assert Holder(servers, stored_key(store, 'never')).ttl() == -1
        assert store.incr('keep', expire_time=5) == 1
        assert Holder(servers, stored_key(store, 'keep')).ttl() == -1
        store.touch('never', expire_time=30)
        assert store.incr('never', -1) == 1
        assert 25 <= Holder(servers, stored_key(store, 'never')).ttl() <= 30
        assert store.get_multi(['n', 'never', 'keep']) == [7, 1, 1]

    @pytest.mark.parametrize('protection', ['mac', 'encrypt'])
    def test_protected_values_keep_their_expiry(self, servers, protection):
        store = make_store(servers.store_args, value_protection=protection,
                           protection_keys=['incr-%s' % uuid.uuid4()])
        store.set('n', 5, expire_time=100)
        assert store.incr('n', expire_time=0) == 6
        held = Holder(servers, stored_key(store, 'n'))
        assert held.get() != b'6'
        assert 95 <= held.ttl() <= 100
        assert store.get('n') == 6

    def test_a_counter_in_the_old_form_counts_on(self, servers):
        store = make_store(servers.store_args)
        for value in (5, -3, 2 ** 40, 2 ** 63 - 1):
            store.set('old%d' % value, 'placeholder')
            held = Holder(servers, stored_key(store, 'old%d' % value))
            # The format byte, then the MessagePack int.
            held.client.set(held.key, serialization.FORMAT_MSGPACK +
                            msgpack.packb(value), expire=100)
            assert store.incr('old%d' % value) == value + 1
            assert held.get() == serialization.dumps(value + 1)
            assert 95 <= held.ttl() <= 100

    def test_past_2_to_63_the_form_is_rewritten_and_never_wraps(
            self, servers):
        store = make_store(servers.store_args)
        store.set('n', 2 ** 63 - 1, expire_time=100)
        held = Holder(servers, stored_key(store, 'n'))
        assert held.get() == b'9223372036854775807'
        assert store.incr('n') == 2 ** 63
        # Written again as MessagePack, which memcached's incr refuses.
        assert held.get() == serialization.dumps(2 ** 63)
        assert held.get()[:1] == serialization.FORMAT_MSGPACK
        assert store.incr('n') == 2 ** 63 + 1
        assert store.incr('n', 2 ** 64) == 2 ** 64 + 2 ** 63 + 1
        assert store.get('n') == 2 ** 64 + 2 ** 63 + 1
        assert 95 <= held.ttl() <= 100
        assert store.incr('n', -(2 ** 64) - 2) == 2 ** 63 - 1
        assert held.get() == b'9223372036854775807'

    @pytest.mark.parametrize('delta', [-1, 2 ** 32, 2 ** 63, -(2 ** 70)])
    def test_deltas_memcached_cannot_add_take_compare_and_set(
            self, servers, delta):
        store = make_store(servers.store_args)
        store.set('n', 10)
        counter, patches = counted_exchanges()
        with patches[0], patches[1], patches[2]:
            assert store.incr('n', delta) == 10 + delta
        # gets, mg, cas: no incr was tried.
        assert [name for name, _ in counter.calls] == [
            '_fetch_cmd', '_misc_cmd', '_store_cmd']
        assert store.get('n') == 10 + delta

    @pytest.mark.parametrize('foreign', [b'12x', b'1_0', b'-', b'5-',
                                         b'\x01\x05\x00', b'\x02\x05'])
    def test_bytes_the_codec_did_not_write_are_refused(self, servers,
                                                       foreign):
        store, held = self._holding(servers, foreign)
        with pytest.raises(exception.IntegrityError):
            store.incr('v')
        with pytest.raises(exception.IntegrityError):
            store.get('v')
        assert held.get() == foreign

    @pytest.mark.parametrize('foreign', [b' 12', b'+12', b'12 x', b'12\n'])
    def test_bytes_memcacheds_own_parser_reads_are_refused_on_get(
            self, servers, foreign):
        # memcached's incr reads these as 12 (strtoull), but nothing the
        # store writes looks like them and the codec reads none of them.
        store, _ = self._holding(servers, foreign)
        with pytest.raises(exception.IntegrityError):
            store.get('v')

    @staticmethod
    def _holding(servers, foreign):
        """A store whose ``v`` holds ``foreign``, written raw; a Holder."""
        store = make_store(servers.store_args)
        store.set('v', 'placeholder')
        held = Holder(servers, stored_key(store, 'v'))
        held.client.set(held.key, foreign)
        return store, held


class TestLocksOnServer:
    def test_lock_outlives_its_ttl_on_the_coarse_clock(
            self, backend, memcached_server):
        key = 'lock-%s' % uuid.uuid4()
        # Taken just before memcached's clock ticks, the worst moment: an
        # item sent with exptime 1 would die at that tick, 0.1s later.
        time.sleep(max(after_tick(memcached_server) + 0.9 -
                       time.monotonic(), 0))
        assert backend.acquire_lock(key, 'a' * 32, 0.3)
        time.sleep(0.35)
        assert not backend.acquire_lock(key, 'b' * 32, 0.3)

    def test_release_removes_only_the_holders_lock(self, backend):
        key = 'lock-%s' % uuid.uuid4()
        assert backend.acquire_lock(key, 'holder', 5)
        assert backend.release_lock(key, 'intruder') is False
        assert not backend.acquire_lock(key, 'other', 5)
        assert backend.release_lock(key, 'holder') is True
        assert backend.release_lock(key, 'holder') is False
        assert backend.acquire_lock(key, 'other', 5)

    def test_release_loses_to_a_concurrent_change(self, backend,
                                                  memcached_server):
        key = 'lock-%s' % uuid.uuid4()
        assert backend.acquire_lock(key, 'holder', 5)
        real_gets = pymc_base.Client.gets

        def interleave(client, *args, **kwargs):
            result = real_gets(client, *args, **kwargs)
            # Between gets and cas, the lock expires and is retaken.
            raw_client(memcached_server).set(key, b'newcomer')
            return result

        with unittest.mock.patch.object(pymc_base.Client, 'gets',
                                        interleave):
            assert backend.release_lock(key, 'holder') is False
        assert raw_client(memcached_server).get(key) == b'newcomer'

    def test_abandoned_lock_expires_on_the_server(self, memcached_server):
        store = make_store(memcached_server.store_args, lock_timeout=2)
        lock = store.get_lock('k')
        after_tick(memcached_server)
        lock.acquire()
        # Right after a tick memcached counts whole seconds: lock_timeout
        # plus the second that covers its clock's granularity.
        assert meta_ttl(memcached_server, stored.lock_key(store, 'k')) == 3


class TestKeysWithoutMangler:
    def test_longest_key_and_unicode_keys_are_stored(self, memcached_factory):
        cfg.CONF.set_override('enable_key_mangler', False, group='kvs')
        server = memcached_factory()
        store = make_store(server.store_args)
        # The server is private: its one key is the store's prefix + 'k'.
        store.set('k', 0)
        (only,) = protection.RawMemcached(server).keys()
        prefix = only[:-1]
        room = memcached.MAX_KEY_LENGTH - len(prefix.encode())
        keys = ['x' * room, 'é' * (room // 2), 'ключ', 'a:b/c']
        store.set_multi({key: i for i, key in enumerate(keys)})
        assert store.get_multi(keys) == list(range(len(keys)))
        raw = raw_client(server)
        assert raw.get(prefix + 'ключ') is not None
        with pytest.raises(exception.ConfigurationError):
            store.set('x' * (room + 1), 1)
        with pytest.raises(exception.ConfigurationError):
            store.set('two words', 1)
        with store.get_lock('ключ') as lock:
            store.set('ключ', 'locked', lock=lock)
        assert store.get('ключ') == 'locked'


class TestConnections:
    def test_tls(self, memcached_tls_server):
        store = make_store(memcached_tls_server.store_args)
        store.set('k', {'over': 'tls'})
        assert store.get('k') == {'over': 'tls'}
        with store.get_lock('k') as lock:
            store.delete('k', lock=lock)

    def test_tls_server_refuses_an_unknown_ca(self, memcached_tls_server):
        store = make_store({'url': memcached_tls_server.address,
                            'tls_enabled': True})
        with pytest.raises(exception.BackendError,
                           match='CERTIFICATE_VERIFY_FAILED'):
            store.get('k')

    def test_plain_client_fails_on_a_tls_server(self, memcached_tls_server):
        store = make_store({'url': memcached_tls_server.address,
                            'socket_timeout': 0.5})
        with pytest.raises(exception.BackendError,
                           match=memcached_tls_server.address):
            store.set('k', 1)

    def test_tls_with_client_certificate_and_ciphers(self,
                                                     memcached_tls_server):
        tls = memcached_tls_server.tls
        store = make_store(memcached_tls_server.store_args,
                           tls_certfile=tls.cert, tls_keyfile=tls.key,
                           tls_allowed_ciphers='ECDHE+AESGCM')
        store.set('k', 1)
        assert store.get('k') == 1

    def test_unix_socket(self, memcached_factory):
        server = memcached_factory(unix_socket=True)
        store = make_store(server.store_args)
        store.set('k', 'unix')
        assert store.get('k') == 'unix'
        assert store.servers() == [server.socket_path]

    def test_ipv6_loopback(self, memcached_factory):
        try:
            socket.socket(socket.AF_INET6).bind(('::1', 0))
        except OSError:
            pytest.skip('no IPv6 loopback here')
        server = memcached_factory(host='::1')
        store = make_store(server.store_args)
        store.set('k', 'v6')
        assert store.get('k') == 'v6'
        assert server.address.startswith('[::1]:')

    def test_keepalive_is_set_on_connections(self, memcached_server):
        store = make_store(memcached_server.store_args,
                           enable_socket_keepalive=True,
                           socket_keepalive_idle=30)
        store.set('k', 1)
        # Internal on purpose: the socket options of a pooled connection
        # are visible only on that connection.
        client, _ = stored.memcached_pool(store)._idle[-1]
        sock = client.sock
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30

    def test_pool_never_opens_more_than_maxsize(self, memcached_factory):
        server = memcached_factory()
        raw = raw_client(server)
        before = int(raw.stats()[b'curr_connections'])
        store = make_store(server.store_args, pool_maxsize=2)
        errors = []

        def work(n):
            try:
                for i in range(20):
                    store.set('k%d' % n, i)
                    assert store.get('k%d' % n) == i
            except Exception as exc:  # collected for the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,))
                   for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        # What the server sees: at most two more connections than before.
        assert int(raw.stats()[b'curr_connections']) - before <= 2


class CountingRoundTrips:
    """Counts pymemcache request/reply exchanges, per server."""

    def __init__(self):
        self.calls = []

    def patch(self, name):
        real = getattr(pymc_base.Client, name)
        calls = self.calls

        def counted(client, *args, **kwargs):
            calls.append((name, client.server))
            return real(client, *args, **kwargs)

        return unittest.mock.patch.object(pymc_base.Client, name, counted)


@pytest.mark.parametrize('topology', ['memcached_server',
                                      'memcached_cluster'])
def test_multi_key_operations_cost_one_round_trip_per_server(
        topology, request):
    servers = request.getfixturevalue(topology)
    store = make_store(servers.store_args)
    count = len(getattr(servers, 'servers', [servers]))
    keys = ['key-%d' % i for i in range(60)]
    counter = CountingRoundTrips()
    with counter.patch('_store_cmd'), counter.patch('_fetch_cmd'), \
            counter.patch('_misc_cmd'):
        store.set_multi({key: key for key in keys})
        sets = list(counter.calls)
        del counter.calls[:]
        assert store.get_multi(keys) == keys
        gets = list(counter.calls)
        del counter.calls[:]
        store.delete_multi(keys)
        deletes = list(counter.calls)
    for calls in (sets, gets, deletes):
        # One exchange per server, and the keys spread over all of them.
        assert len(calls) == len(set(calls)) == count
