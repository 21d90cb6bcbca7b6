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

"""What ``openstack.kvs.Redis`` adds to the contract, on real redis-server.

Round trips, the key prefix, TLS and ACL, failures and recovery, locks
across processes, Cluster slots and Sentinel failover.
"""

import functools
import multiprocessing
import operator
import random
import re
import socket
import socketserver
import threading
import time
import uuid

import msgpack
import pytest
import redis
from redis import connection as redis_connection
from redis import crc as redis_crc

from oslo_kvs.backends import redis as redis_backend
from oslo_kvs import exception
from oslo_kvs import serialization
from oslo_kvs_tests import servers
from oslo_kvs_tests import stored

BACKEND = 'openstack.kvs.Redis'


make_store = functools.partial(stored.make_store, BACKEND)


def stored_key(store, key, key_prefix=''):
    """The key as the server sees it, key_prefix included."""
    return key_prefix + stored.data_key(store, key)


@pytest.fixture
def sends(monkeypatch):
    """Counts writes to Redis sockets: one per round trip."""
    counter = {'sends': 0}
    original = redis_connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        counter['sends'] += 1
        return original(self, command, check_health)

    monkeypatch.setattr(redis_connection.AbstractConnection,
                        'send_packed_command', counting)
    return counter


def command_calls(client, name):
    stats = client.info('commandstats')
    return stats.get('cmdstat_%s' % name, {}).get('calls', 0)


@pytest.fixture
def own_server():
    """A redis-server this test may stop and restart."""
    server = servers.RedisServer(password='pw-%s' % uuid.uuid4().hex)
    try:
        yield server.start()
    finally:
        server.cleanup()


# --- round trips ----------------------------------------------------------

class TestRoundTrips:
    def test_multi_operations_take_one_round_trip_each(self, redis_server,
                                                       sends):
        store = make_store(expire_time=60, **redis_server.store_args)
        raw = redis_server.client()
        data = {'key-%03d' % i: {'n': i} for i in range(100)}
        store.set('warm-up', 1)  # connect outside the counted calls

        sets = command_calls(raw, 'set')
        sends['sends'] = 0
        store.set_multi(data)
        assert sends['sends'] == 1
        assert command_calls(raw, 'set') - sets == 100
        ttls = [raw.pttl(stored_key(store, key)) for key in data]
        assert all(0 < ttl <= 60000 for ttl in ttls), ttls

        mgets = command_calls(raw, 'mget')
        sends['sends'] = 0
        assert store.get_multi(list(data)) == list(data.values())
        assert sends['sends'] == 1
        assert command_calls(raw, 'mget') - mgets == 1

        dels = command_calls(raw, 'del')
        sends['sends'] = 0
        store.delete_multi(list(data))
        assert sends['sends'] == 1
        assert command_calls(raw, 'del') - dels == 1
        assert raw.exists(*[stored_key(store, key) for key in data]) == 0

    def test_set_multi_without_expiry_is_one_mset(self, redis_server, sends):
        store = make_store(**redis_server.store_args)
        raw = redis_server.client()
        store.set('warm-up', 1)
        msets = command_calls(raw, 'mset')
        sends['sends'] = 0
        store.set_multi({'a': 1, 'b': 2, 'c': 3})
        assert sends['sends'] == 1
        assert command_calls(raw, 'mset') - msets == 1
        assert raw.pttl(stored_key(store, 'a')) == -1

    def test_no_expiry_keys_in_one_pipeline(self, redis_server):
        store = make_store(expire_time=60, no_expiry_keys=['keep'],
                           **redis_server.store_args)
        raw = redis_server.client()
        store.set_multi({'keep': 1, 'expire': 2})
        assert store.add('added', 3)
        assert raw.pttl(stored_key(store, 'keep')) == -1
        assert 0 < raw.pttl(stored_key(store, 'expire')) <= 60000
        assert 0 < raw.pttl(stored_key(store, 'added')) <= 60000

    def test_lock_expiry_comes_from_lock_timeout(self, redis_server):
        raw = redis_server.client()
        store = make_store(lock_timeout=7, key_prefix='locks:',
                           **redis_server.store_args)
        key = 'locks:' + stored.lock_key(store, 'k')
        with store.get_lock('k') as lock:
            # Internal on purpose: a lock shows no token, and only the
            # token tells this lock's entry from any other value.
            assert raw.get(key) == lock._token.encode()
            assert 6000 < raw.pttl(key) <= 7100     # plus the margin
        assert raw.exists(key) == 0

        forever = make_store(lock_timeout=0, **redis_server.store_args)
        with forever.get_lock('k') as lock:
            key = stored.lock_key(forever, 'k')
            assert raw.get(key) == lock._token.encode()
            assert raw.pttl(key) == -1


# --- key prefix -------------------------------------------------------------

class TestKeyPrefix:
    def test_every_stored_key_carries_the_prefix(self, redis_server):
        prefix = 'tenant-%s:' % uuid.uuid4().hex
        store = make_store(key_prefix=prefix, **redis_server.store_args)
        raw = redis_server.client()
        store.set_multi({'a': 1, 'b': 2})
        store.set('c', 3)
        assert store.add('d', 4)
        with store.get_lock('a'):
            found = set(raw.scan_iter(match=prefix + '*', count=1000))
            assert len(found) == 5  # four values and the lock
        for key in 'abcd':
            assert stored_key(store, key, prefix).encode() in found
        store.delete_multi(['a', 'b', 'c', 'd'])
        assert not list(raw.scan_iter(match=prefix + '*', count=1000))

    def test_prefixes_separate_stores_of_the_same_name(self, redis_server):
        name = 'same-name-%s' % uuid.uuid4()
        first = make_store(name, key_prefix='one:',
                           **redis_server.store_args)
        first.set('k', 'one')
        del first  # the registry forgets the name
        second = make_store(name, key_prefix='two:',
                            **redis_server.store_args)
        with pytest.raises(exception.NotFound):
            second.get('k')


# --- TLS and authentication -----------------------------------------------

class TestSecurity:
    def test_tls_round_trip(self, redis_tls_server):
        store = make_store(**redis_tls_server.store_args)
        store.set_multi({'a': b'\x00secret', 'b': [1, 2]})
        assert store.get_multi(['a', 'b']) == [b'\x00secret', [1, 2]]
        with store.get_lock('a') as lock:
            store.delete('a', lock=lock)

    def test_tls_with_host_port_and_tls_enabled(self, redis_tls_server):
        args = dict(redis_tls_server.store_args)
        del args['url']
        store = make_store(host=redis_tls_server.host,
                           port=str(redis_tls_server.port),
                           tls_enabled='true', tls_check_hostname='True',
                           **args)
        store.set('k', 'v')
        assert store.get('k') == 'v'

    def test_tls_refuses_an_unknown_certificate_authority(
            self, redis_tls_server, tmp_path):
        other_ca = servers.make_tls_files(str(tmp_path)).ca
        args = dict(redis_tls_server.store_args, tls_cafile=other_ca)
        store = make_store(**args)
        with pytest.raises(exception.BackendError) as info:
            store.get('k')
        assert redis_tls_server.address in str(info.value)

    def test_acl_user_round_trip(self, redis_acl_server):
        store = make_store(**redis_acl_server.store_args)
        store.set('k', 'v')
        assert store.get('k') == 'v'

    def test_credentials_in_the_url(self, redis_acl_server):
        (user, password), = redis_acl_server.users.items()
        store = make_store(url='redis://%s:%s@%s/0' % (
            user, password, redis_acl_server.address))
        store.set('k', 'v')
        assert store.get('k') == 'v'
        assert password not in repr(store)
        assert password not in ' '.join(store.servers())

    @pytest.mark.parametrize('how', ['arguments', 'url'])
    def test_auth_failure_is_clear_and_hides_the_password(
            self, redis_acl_server, how):
        (user, _), = redis_acl_server.users.items()
        wrong = 'wrong-%s' % uuid.uuid4().hex
        if how == 'url':
            args = {'url': 'redis://%s:%s@%s/0' % (
                user, wrong, redis_acl_server.address)}
        else:
            args = dict(redis_acl_server.store_args, password=wrong)
        store = make_store(**args)
        with pytest.raises(exception.BackendError) as info:
            store.set('k', 'v')
        message = str(info.value)
        assert 'authentication' in message
        assert redis_acl_server.address in message
        assert wrong not in message
        assert info.value.__cause__ is None  # no chained redis-py error

    def test_failed_pipeline_does_not_quote_values(self, redis_acl_server):
        raw = redis_acl_server.client()
        user, password = 'limited-%s' % uuid.uuid4().hex, uuid.uuid4().hex
        # May run commands, but only on keys nobody uses.
        raw.acl_setuser(user, enabled=True, passwords=['+' + password],
                        keys=['nothing-here:*'], commands=['+@all'])
        try:
            store = make_store(url=redis_acl_server.url, username=user,
                               password=password, expire_time=60)
            with pytest.raises(exception.BackendError) as info:
                store.set_multi({'k': 'zzzz-token-zzzz', 'j': 1})
        finally:
            raw.acl_deluser(user)
        message = str(info.value)
        assert 'NoPermissionError' in message
        assert 'pipelined command #1' in message
        assert 'zz' not in message  # hex keys never contain a z

    def test_missing_credentials_are_reported(self, redis_acl_server):
        store = make_store(url=redis_acl_server.url)
        with pytest.raises(exception.BackendError,
                           match=redis_acl_server.address):
            store.get('k')


# --- failures and recovery ------------------------------------------------

class _SilentServer:
    """Accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind((servers.LOOPBACK, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


class _HostileHandler(socketserver.BaseRequestHandler):
    """Answers every command with integers, never with a string."""

    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            # One reply per command; the client may pipeline several.
            for command in _COMMAND_START.split(data):
                if not command:
                    continue
                if b'MGET' in command.upper():
                    self.request.sendall(b'*2\r\n:7\r\n*1\r\n:8\r\n')
                else:
                    self.request.sendall(b':7\r\n')


# A command is an array header ('*<count>') at the start of a line.
_COMMAND_START = re.compile(rb'(?:^|(?<=\r\n))(?=\*\d)')


class TestFailures:
    def test_server_down_then_back(self, own_server):
        store = make_store(socket_timeout=2, **own_server.store_args)
        store.set('k', 'before')
        own_server.stop()
        for call in (lambda: store.get('k'), lambda: store.set('k', 1),
                     lambda: store.get_multi(['k']),
                     lambda: store.set_multi({'k': 1}),
                     lambda: store.delete_multi(['k']),
                     lambda: store.add('k', 1), lambda: store.delete('k'),
                     lambda: store.get_lock('k').acquire()):
            with pytest.raises(exception.BackendError) as info:
                call()
            message = str(info.value)
            assert own_server.address in message
            assert 'openstack.kvs.Redis' in message
            assert own_server.password not in message
        own_server.start()  # same port, empty: nothing was persisted
        with pytest.raises(exception.NotFound):
            store.get('k')
        store.set('k', 'after')
        assert store.get('k') == 'after'

    def test_silent_server_fails_within_the_socket_timeout(self):
        silent = _SilentServer()
        try:
            store = make_store(host=servers.LOOPBACK, port=silent.port,
                               socket_timeout='0.3')
            started = time.monotonic()
            with pytest.raises(exception.BackendError) as info:
                store.get('k')
            elapsed = time.monotonic() - started
        finally:
            silent.close()
        assert '%s:%d' % (servers.LOOPBACK, silent.port) in str(info.value)
        # One timeout, no hidden retries (a loose bound, not a benchmark).
        assert elapsed < 2.5

    def test_non_bytes_replies_are_refused(self):
        server = socketserver.ThreadingTCPServer(
            (servers.LOOPBACK, 0), _HostileHandler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            store = make_store(host=servers.LOOPBACK,
                               port=server.server_address[1])
            for call in (lambda: store.get('k'),
                         lambda: store.get_multi(['a', 'b'])):
                with pytest.raises(exception.BackendError,
                                   match='returned a'):
                    call()
        finally:
            server.shutdown()
            server.server_close()

    def test_wrong_type_stored_by_someone_else(self, redis_server):
        store = make_store(**redis_server.store_args)
        redis_server.client().rpush(stored_key(store, 'k'), b'x')
        with pytest.raises(exception.BackendError, match='WRONGTYPE'):
            store.get('k')

    def test_close_drops_the_connections(self, redis_server):
        raw = redis_server.client()
        store = make_store(**redis_server.store_args)
        threads = [threading.Thread(target=store.set, args=('k%d' % i, i))
                   for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        clients = raw.info('clients')['connected_clients']
        store.close()
        deadline = time.monotonic() + 5
        while (raw.info('clients')['connected_clients'] >= clients and
               time.monotonic() < deadline):
            time.sleep(0.02)
        assert raw.info('clients')['connected_clients'] < clients

    def test_unix_socket(self, tmp_path):
        path = str(tmp_path / 'redis.sock')
        server = servers.RedisServer(extra=['unixsocket %s' % path,
                                            'unixsocketperm 700'])
        try:
            server.start()
            store = make_store(url='unix://%s?db=2' % path)
            store.set('k', 'v')
            assert store.get('k') == 'v'
            assert server.client(db=2).dbsize() == 1
        finally:
            server.cleanup()


# --- locks across processes -----------------------------------------------

def _append(store_name, args, worker, times, barrier):
    """Runs in a child process: read, append, write, under the lock."""
    store = make_store(store_name, **args)
    barrier.wait(60)
    for _ in range(times):
        with store.get_lock('log') as lock:
            log = store.get('log')
            store.set('log', log + [worker], lock=lock)
        # Work between two updates, as a service does: the other
        # processes' retries then find the lock free, so turns alternate.
        time.sleep(random.uniform(0.005, 0.02))


def test_lock_across_processes_loses_no_update(redis_server):
    name = 'log-%s' % uuid.uuid4()
    store = make_store(name, **redis_server.store_args)
    store.set('log', [])
    context = multiprocessing.get_context('spawn')
    barrier = context.Barrier(4)
    workers = [context.Process(target=_append, args=(
        name, redis_server.store_args, worker, 40, barrier))
        for worker in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0] * 4
    log = store.get('log')
    assert sorted(log) == sorted(list(range(4)) * 40)
    # The workers really took turns, so the lock was contended.
    assert sum(1 for a, b in zip(log, log[1:]) if a != b) > 3


# --- incr in one round trip ------------------------------------------------

#: Counters across Redis's int64, both edges included.
INCR_VALUES = sorted({sign * 2 ** bits + offset
                      for bits in (0, 7, 8, 31, 32, 53, 62)
                      for sign in (1, -1) for offset in (-1, 0, 1)}
                     | {2 ** 63 - 1, -2 ** 63})


def raw_clients(request, servers_fixture):
    """A raw client of each mode, to read what a store wrote."""
    group = request.getfixturevalue(servers_fixture)
    if servers_fixture == 'redis_cluster':
        node = group.nodes[0]
        client = redis.RedisCluster(host=node.host, port=node.port)
        request.addfinalizer(client.close)
        return group, client
    if servers_fixture == 'redis_sentinel_group':
        return group, group.current_master().client()
    return group, group.client()


class TestIncr:
    def test_one_round_trip_on_the_digits_the_codec_writes(
            self, redis_server, sends):
        store = make_store(**redis_server.store_args)
        raw = redis_server.client()
        store.incr('warm-up')  # connects
        for value in INCR_VALUES:
            key = 'n%d' % value
            sends['sends'] = 0
            assert store.incr(key, value) == value  # missing: from 0
            assert sends['sends'] == 1
            assert raw.get(stored_key(store, key)) == b'%d' % value
            new = value - 1 if value > 0 else value + 1
            sends['sends'] = 0
            assert store.incr(key, new - value) == new
            assert sends['sends'] == 1
            assert raw.get(stored_key(store, key)) == b'%d' % new
            assert store.get(key) == new and type(store.get(key)) is int
            # A compare-and-set on the bytes written still matches.
            assert store.update(key, operator.neg) == -new
            assert store.get(key) == -new

    def test_set_writes_digits_that_incrby_counts_on(self, redis_server,
                                                     sends):
        store = make_store(key_prefix='counters:', **redis_server.store_args)
        raw = redis_server.client()
        store.set('n', 5)
        key = stored_key(store, 'n', 'counters:')
        assert raw.get(key) == b'5'
        assert raw.incrby(key, 2) == 7
        assert store.get('n') == 7
        sends['sends'] = 0
        assert store.incr('n') == 8
        assert sends['sends'] == 1
        assert raw.get(key) == b'8'
        # Someone's own INCRBY counter is an int the store reads.
        raw.set(stored_key(store, 'theirs', 'counters:'), b'41')
        assert store.incr('theirs') == 42

    def test_a_counter_in_the_old_form_counts_on(self, redis_server):
        store = make_store(**redis_server.store_args)
        raw = redis_server.client()
        for value in (5, -3, 2 ** 40, 2 ** 63 - 1):
            key = stored_key(store, 'old%d' % value)
            # The format byte, then the MessagePack int.
            raw.set(key, serialization.FORMAT_MSGPACK + msgpack.packb(value),
                    px=100000)
            assert store.incr('old%d' % value) == value + 1
            assert raw.get(key) == serialization.dumps(value + 1)
            assert 0 < raw.pttl(key) <= 100000   # its expiry kept

    @pytest.mark.parametrize('start, delta, sent', [
        (2 ** 63 - 1, 1, 3),            # INCRBY overflows: 2**63
        (-(2 ** 63), -1, 3),
        (2 ** 63, -1, 3),               # beyond int64: MessagePack form
        (2 ** 64 - 1, 1, 3),
        (2 ** 70, -1, 3),               # the big-int extension type
        (None, 2 ** 63, 2),             # delta is beyond: no INCRBY
        (5, -(2 ** 63) - 1, 2),
    ])
    def test_numbers_beyond_int64_take_compare_and_set(
            self, redis_server, sends, start, delta, sent):
        store = make_store(**redis_server.store_args)
        raw = redis_server.client()
        store.incr('warm-up')  # connects
        store.update('warm-up', operator.neg)  # loads the cas script
        if start is not None:
            store.set('n', start)
        sends['sends'] = 0
        assert store.incr('n', delta) == (start or 0) + delta
        # INCRBY refused (one), then a read and a compare-and-set.
        assert sends['sends'] == sent
        assert store.get('n') == (start or 0) + delta
        assert raw.get(stored_key(store, 'n')) == serialization.dumps(
            (start or 0) + delta)

    @pytest.mark.parametrize('value', [5.0, -3.0, 0.0, True, False, None,
                                       '5', b'5', [5], {}, (5,)])
    def test_other_values_raise_type_error_and_stay(self, redis_server,
                                                    value):
        store = make_store(**redis_server.store_args)
        raw = redis_server.client()
        store.set('v', value)
        written = raw.get(stored_key(store, 'v'))
        with pytest.raises(TypeError, match='needs an int'):
            store.incr('v')
        assert raw.get(stored_key(store, 'v')) == written
        assert store.get('v') == value and type(store.get('v')) is type(value)

    @pytest.mark.parametrize('foreign', [
        b'12x', b'1_0', b' 12', b'+5', b'5\n', b'-', b'',
        b'\x01\x05\x00',             # an int with a byte after it
        b'\x01\xcd\x01',             # a uint16 cut short
        b'\x01',
        b'\x02\x05'])                # another format
    def test_bytes_the_codec_did_not_write_are_refused(self, redis_server,
                                                       foreign):
        store = make_store(**redis_server.store_args)
        raw = redis_server.client()
        raw.set(stored_key(store, 'v'), foreign)
        with pytest.raises(exception.IntegrityError):
            store.incr('v')
        with pytest.raises(exception.IntegrityError):
            store.get('v')
        assert raw.get(stored_key(store, 'v')) == foreign

    def test_expiry_for_a_created_key_kept_for_an_existing_one(
            self, redis_server, sends):
        store = make_store(expire_time=60, no_expiry_keys=['keep'],
                           **redis_server.store_args)
        raw = redis_server.client()
        store.incr('warm-up')

        def pttl_after(key, **kwargs):
            sends['sends'] = 0
            store.incr(key, **kwargs)
            assert sends['sends'] == 1
            return raw.pttl(stored_key(store, key))

        assert 0 < pttl_after('n') <= 60000               # created
        assert 0 < pttl_after('n', expire_time=0) <= 60000    # kept
        assert 0 < pttl_after('short', expire_time=5) <= 5000
        assert 0 < pttl_after('short', expire_time=0) <= 5000
        assert pttl_after('never', expire_time=0) == -1
        assert pttl_after('never', expire_time=5) == -1
        assert pttl_after('keep') == -1
        assert pttl_after('keep', expire_time=5) == -1  # no_expiry wins
        assert store.get_multi(['n', 'short', 'never', 'keep']) == [2] * 4
        store.touch('never', expire_time=30)
        assert 0 < pttl_after('never') <= 30000
        # A store without expire_time: a plain INCRBY.
        forever = make_store(**redis_server.store_args)
        forever.set('n', 1, expire_time=60)
        sends['sends'] = 0
        assert forever.incr('n') == 2
        assert forever.incr('new') == 1
        assert sends['sends'] == 2
        assert 0 < raw.pttl(stored_key(forever, 'n')) <= 60000
        assert raw.pttl(stored_key(forever, 'new')) == -1

    @pytest.mark.parametrize('protection', ['mac', 'encrypt'])
    def test_protected_values_stay_sealed(self, redis_server, sends,
                                          protection):
        store = make_store(value_protection=protection,
                           protection_keys=['incr-%s' % uuid.uuid4()],
                           **redis_server.store_args)
        raw = redis_server.client()
        store.set('warm-up', 1)
        store.update('warm-up', operator.neg)  # loads the cas script
        store.set('n', 5, expire_time=100)
        sends['sends'] = 0
        assert store.incr('n', expire_time=0) == 6
        # A read and a compare-and-set: the server never added to it.
        assert sends['sends'] == 2
        sealed = raw.get(stored_key(store, 'n'))
        assert sealed != serialization.dumps(6)
        assert 0 < raw.pttl(stored_key(store, 'n')) <= 100000
        assert store.get('n') == 6
        assert store.incr('new', 3) == 3

    def test_a_server_without_the_script_gets_it(self, redis_server, sends):
        store = make_store(expire_time=60, **redis_server.store_args)
        raw = redis_server.client()
        assert store.incr('n') == 1
        raw.script_flush()
        sends['sends'] = 0
        assert store.incr('n') == 2
        # NOSCRIPT, SCRIPT LOAD, then the increment once.
        assert sends['sends'] == 3
        assert store.get('n') == 2
        # The compare-and-set and touch scripts the same way.
        raw.script_flush()
        assert store.update('n', lambda n: n * 10) == 20
        store.touch('n', 100)
        assert store.get('n') == 20
        assert 0 < raw.pttl(stored_key(store, 'n')) <= 100000

    @pytest.mark.parametrize('servers_fixture', [
        'redis_server', 'redis_sentinel_group', 'redis_cluster'])
    @pytest.mark.parametrize('expire_time', [60, 0])
    def test_every_mode(self, request, sends, servers_fixture, expire_time):
        group, raw = raw_clients(request, servers_fixture)
        store = make_store(expire_time=expire_time, **group.store_args)
        keys = ['counter-%d' % i for i in range(30)]  # over many slots
        for key in keys:
            assert store.incr(key, 5) == 5
        for key in keys:
            sends['sends'] = 0
            assert store.incr(key, -7) == -2
            assert sends['sends'] == 1
            stored = stored_key(store, key)
            assert raw.get(stored) == b'-2'
            assert raw.incrby(stored, 1) == -1
            if expire_time:
                assert 0 < raw.pttl(stored) <= 60000
            else:
                assert raw.pttl(stored) == -1
        assert store.get_multi(keys) == [-1] * len(keys)
        store.set('big', 2 ** 63 - 1)
        assert store.incr('big') == 2 ** 63
        assert store.incr('big') == 2 ** 63 + 1
        store.close()


# --- modes -------------------------------------------------------------------

@pytest.mark.parametrize('servers_fixture, mode, fenced', [
    ('redis_server', redis_backend.StandaloneBackend, True),
    ('redis_sentinel_group', redis_backend.SentinelBackend, True),
    ('redis_cluster', redis_backend.ClusterBackend, False)])
def test_the_arguments_pick_the_mode(request, servers_fixture, mode, fenced):
    args = request.getfixturevalue(servers_fixture).store_args
    store = make_store(lock_timeout=5, **args)
    # Internal on purpose: the modes differ publicly only in fencing
    # (checked below); only the backend's class names the mode.
    assert type(store._state.backend) is mode
    with store.get_lock('k') as lock:
        # Only one server checks a lock and writes in one step.
        assert lock.fenced is fenced
        store.set('k', 1, lock=lock)
    assert store.get('k') == 1
    store.close()


# --- Cluster -----------------------------------------------------------------

def test_cluster_multi_key_operations_over_many_slots(redis_cluster, sends,
                                                      request):
    store = make_store(expire_time=60, **redis_cluster.store_args)
    data = {'key-%04d' % i: i for i in range(600)}
    stored = [stored_key(store, key) for key in data]
    node = redis_cluster.nodes[0]
    client = redis.RedisCluster(host=node.host, port=node.port)
    request.addfinalizer(client.close)
    slots = {redis_crc.key_slot(k.encode()) for k in stored}
    nodes = {client.get_node_from_key(k).name for k in stored}
    assert len(slots) > 500 and len(nodes) == 3

    store.set_multi({key: -1 for key in data})  # connect to every node
    sends['sends'] = 0
    store.set_multi(data)
    assert sends['sends'] <= 3  # one pipeline per node
    sends['sends'] = 0
    assert store.get_multi(list(data)) == list(data.values())
    assert sends['sends'] <= 3
    assert all(0 < client.pttl(k) <= 60000 for k in stored[:50])
    reordered = list(reversed(list(data)))
    assert store.get_multi(reordered) == [data[k] for k in reordered]

    sends['sends'] = 0
    store.delete_multi(list(data)[:300] + ['never-there'])
    assert sends['sends'] <= 3
    assert client.exists(*stored[:300]) == 0
    assert store.get_multi(list(data)[300:]) == list(data.values())[300:]


# --- Sentinel failover ----------------------------------------------------

def test_sentinel_failover_keeps_acknowledged_writes(redis_failover_group):
    group = redis_failover_group
    store = make_store(socket_timeout=1, **group.store_args)
    acked = []
    errors = []
    failed_over = threading.Event()
    written_after = threading.Event()

    def writer():
        i = 0
        while not written_after.is_set():
            during = failed_over.is_set()
            try:
                store.set('w-%d' % i, i)
            except exception.BackendError as exc:
                errors.append(str(exc))
                time.sleep(0.05)
                continue
            acked.append(i)
            if during:
                written_after.set()
            i += 1

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while len(acked) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        # Every write acknowledged before this marker is on the replica
        # once WAIT confirms the marker reached it.
        replicated = len(acked)
        master = group.master.client()
        master.set('marker', 1)
        assert master.execute_command('WAIT', 1, 5000) == 1
        group.master.process.kill()
        group.master.process.wait()
        group.master.process = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if group.current_master() is group.replica:
                    break
            except Exception:
                pass
            time.sleep(0.1)
        else:
            pytest.fail('no failover within 30s')
        failed_over.set()
        assert written_after.wait(30), errors[-3:]
    finally:
        written_after.set()
        thread.join(10)

    assert replicated >= 200
    keys = ['w-%d' % i for i in acked[:replicated]]
    assert store.get_multi(keys) == acked[:replicated]
    store.set('after', 'failover')
    assert store.get('after') == 'failover'
    # It went to the promoted replica, through the same store object.
    assert group.replica.client().get(stored_key(store, 'after'))
