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

"""Redis calls on a dropped connection: repeated when safe, never wrong.

A call whose pooled connection was dropped is repeated once on a new
connection when repeating it cannot change its answer (reads, plain
writes, multi-key deletes). Other calls (add, delete of one key, locks,
fenced writes) raise ``BackendError`` rather than a wrong answer, even when
the server ran them and only the reply was lost.

The drops are real: ``CLIENT KILL`` from another client, and a loopback
TCP relay in front of the server that closes the connection either before
a request reaches the server or after the server ran it and before the
reply comes back.
"""

import select
import socket
import threading
import uuid

import pytest

import oslo_kvs
from oslo_kvs import exception
from oslo_kvs_tests import servers


class DroppingRelay:
    """A TCP relay to a server that can drop the next request's connection.

    :meth:`arm` ``'before'``: the next request is not forwarded and its
    connection is closed; ``'after'``: it is forwarded, the server's reply
    is read and thrown away, then the connection is closed; ``'swallow'``:
    it is not forwarded and the connection stays open (a hung server).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.bind((servers.LOOPBACK, 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.dropped = 0
        self._armed: str | None = None
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, mode: str) -> None:
        with self._lock:
            self._armed = mode

    def _take(self) -> str | None:
        with self._lock:
            mode, self._armed = self._armed, None
            return mode

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(
                (servers.LOOPBACK, self.target_port))
            threading.Thread(target=self._relay, args=(client, upstream),
                             daemon=True).start()

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while True:
                readable, _, _ = select.select([client, upstream], [], [])
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is upstream:
                        client.sendall(data)
                        continue
                    mode = self._take()
                    if mode == 'swallow':
                        self.dropped += 1
                        continue
                    if mode != 'before':
                        upstream.sendall(data)
                    if mode == 'after':
                        upstream.recv(65536)  # the server ran it
                    if mode is not None:
                        self.dropped += 1
                        return
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def relay(redis_server):
    relay = DroppingRelay(redis_server.port)
    yield relay
    relay.close()


def relayed_store(relay, **args):
    store = oslo_kvs.get_key_value_store('retry-%s' % uuid.uuid4().hex)
    store.configure('openstack.kvs.Redis',
                    url='redis://%s:%d/0' % (servers.LOOPBACK, relay.port),
                    lock_timeout=30, **args)
    # Warm the pooled connection, so the armed drop hits the call itself
    # and not the connection's handshake.
    store.set('warm', 0)
    return store


KEYS = ['a', 'b', 'c']

SAFE = {
    'get': (lambda store: store.get('a'), 1),
    'get_multi': (lambda store: store.get_multi(KEYS), [1, 2, 3]),
    'set': (lambda store: (store.set('a', 9), store.get('a'))[1], 9),
    'set with expiry': (
        lambda store: (store.set('a', 9, expire_time=60),
                       store.get('a'))[1], 9),
    'set_multi': (
        lambda store: (store.set_multi({'a': 7, 'd': 8}),
                       store.get_multi(['a', 'd']))[1], [7, 8]),
    'set_multi with expiry': (
        lambda store: (store.set_multi({'a': 7, 'd': 8}, expire_time=60),
                       store.get_multi(['a', 'd']))[1], [7, 8]),
    'delete_multi': (
        lambda store: (store.delete_multi(['a', 'b']),
                       store.get_multi(['c']))[1], [3]),
}


@pytest.mark.parametrize('mode', ['before', 'after'])
@pytest.mark.parametrize('name', sorted(SAFE))
def test_safe_call_repeated_on_a_new_connection(relay, name, mode):
    store = relayed_store(relay)
    store.set_multi({'a': 1, 'b': 2, 'c': 3})
    call, expected = SAFE[name]
    relay.arm(mode)
    assert call(store) == expected
    assert relay.dropped == 1
    if name == 'delete_multi':
        with pytest.raises(exception.NotFound):
            store.get('a')


def test_without_retry_the_drop_is_a_backend_error(relay):
    store = relayed_store(relay, enable_retry_client=False)
    store.set('a', 1)
    relay.arm('before')
    with pytest.raises(exception.BackendError, match='get'):
        store.get('a')
    assert relay.dropped == 1
    assert store.get('a') == 1  # the next call reconnects


def test_timeout_is_not_repeated(relay):
    """A hung server fails the call; a repeat would have answered."""
    store = relayed_store(relay, socket_timeout=0.5)
    relay.arm('swallow')
    with pytest.raises(exception.BackendError, match='Timeout'):
        store.get('warm')
    assert relay.dropped == 1
    assert store.get('warm') == 0


def test_one_attempt_is_no_retry(relay):
    store = relayed_store(relay, retry_attempts=1)
    relay.arm('before')
    with pytest.raises(exception.BackendError):
        store.get('warm')


def test_reply_lost_after_add_is_an_error_not_false(relay, redis_server):
    store = relayed_store(relay)
    relay.arm('after')
    with pytest.raises(exception.BackendError):
        store.add('new', 1)
    # The server did add it; a repeat would have answered False.
    assert store.get('new') == 1
    assert store.add('new', 2) is False


def test_reply_lost_after_delete_is_an_error_not_not_found(relay):
    store = relayed_store(relay)
    store.set('gone', 1)
    relay.arm('after')
    with pytest.raises(exception.BackendError):
        store.delete('gone')
    with pytest.raises(exception.NotFound):
        store.get('gone')


def test_reply_lost_after_lock_acquire_is_an_error(relay):
    store = relayed_store(relay)
    lock = store.get_lock('k')
    relay.arm('after')
    with pytest.raises(exception.BackendError):
        lock.acquire()
    assert not lock.active


def test_reply_lost_after_fenced_write_is_an_error(relay):
    store = relayed_store(relay)
    with store.get_lock('k') as lock:
        # The script is loaded, so the next request is the write itself.
        store.set('k', 'v0', lock=lock)
        relay.arm('after')
        with pytest.raises(exception.BackendError):
            store.set('k', 'v', lock=lock)
        # The write landed under the lock; no LockTimeout was claimed.
        assert store.get('k') == 'v'


def test_client_kill_between_calls(redis_server):
    """Every pooled connection killed server-side between two calls."""
    store = oslo_kvs.get_key_value_store('kill-%s' % uuid.uuid4().hex)
    store.configure('openstack.kvs.Redis', url=redis_server.url,
                    lock_timeout=30)
    admin = redis_server.client()

    def kill():
        admin.client_kill_filter(_type='normal', skipme=True)

    store.set_multi({'a': 1, 'b': 2})
    kill()
    assert store.get('a') == 1
    kill()
    assert store.get_multi(['a', 'b']) == [1, 2]
    kill()
    store.set('a', 3)
    kill()
    store.set_multi({'a': 4, 'b': 5}, expire_time=60)
    kill()
    assert store.add('c', 6) is True
    kill()
    assert store.add('c', 7) is False
    kill()
    store.delete('c')
    kill()
    with store.get_lock('a') as lock:
        kill()
        store.set('a', 8, lock=lock)
        kill()
    kill()
    store.delete_multi(['a', 'b'])
    kill()
    with pytest.raises(exception.NotFound):
        store.get_multi(['a', 'b'])
    admin.close()


@pytest.mark.parametrize('arguments', [
    {'retry_attempts': 0}, {'retry_attempts': 11},
    {'retry_delay': -1}, {'retry_delay': 'nan'},
    {'enable_retry_client': 'maybe'},
])
def test_retry_arguments_checked(arguments):
    store = oslo_kvs.get_key_value_store('args-%s' % uuid.uuid4().hex)
    with pytest.raises(exception.ConfigurationError,
                       match=next(iter(arguments))):
        store.configure('openstack.kvs.Redis', **arguments)


def test_memcached_retry_names_are_not_redis_ones():
    """oslo.cache's HashClient names have no meaning here: refused."""
    store = oslo_kvs.get_key_value_store('args-%s' % uuid.uuid4().hex)
    with pytest.raises(exception.ConfigurationError,
                       match='hashclient_retry_attempts'):
        store.configure('openstack.kvs.Redis', hashclient_retry_attempts=2)
