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

"""Redis tells a near cache of other clients' writes, on real servers.

The watcher (``RedisBackend.watch``) is given a :class:`RecordingCache`,
a test double of the near cache's three methods that records what it is
told and when. Every mode (one server, Sentinel, Cluster) is shown to
resume only once tracking is on, to deliver the exact stored keys of
other clients' writes, and to suspend when its connection is killed and
resume once it is back; then a server restart, a Sentinel failover, a
fork and a stop.
"""

import functools
import gc
import subprocess
import sys
import threading
import time
import types
import uuid

import pytest
import redis

from oslo_kvs.backends import redis as redis_backend
from oslo_kvs.backends import redis_tracking
from oslo_kvs_tests import faults
from oslo_kvs_tests import servers
from oslo_kvs_tests import stored

BACKEND = 'openstack.kvs.Redis'
#: Seconds a watcher may take to tell the cache anything; generous, as
#: the machine is shared. Measured delays are printed (run with -s).
PROMPT = 2.0


class RecordingCache:
    """A near cache double: records ``drop``, ``suspend`` and ``resume``.

    :param on_resume: called inside ``resume()``, before it is recorded,
        in the watcher's thread: a write made there proves tracking was on
        when the watcher resumed, if its key later reaches ``drop()``.
    """

    def __init__(self, on_resume=None):
        self.events = []
        self.on_resume = on_resume
        self._changed = threading.Condition()

    def _record(self, name, keys=()):
        with self._changed:
            self.events.append((time.monotonic(), name, tuple(keys)))
            self._changed.notify_all()

    def drop(self, stored_keys):
        self._record('drop', stored_keys)

    def suspend(self):
        self._record('suspend')

    def resume(self):
        if self.on_resume is not None:
            self.on_resume()
        self._record('resume')

    def wait_for(self, name, key=None, after=0, timeout=10.0):
        """The time of the first ``name`` event (of ``key``) after ``after``.

        Fails the test when none comes within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for at, event, keys in self.events:
                    if (at > after and event == name and
                            (key is None or key in keys)):
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail('no %s%s within %ss; events: %s' % (
                        name, ' of %r' % key if key else '', timeout,
                        [(e, k[:3]) for _, e, k in self.events[-10:]]))
                self._changed.wait(left)

    def names(self):
        return [name for _, name, _ in self.events]


class Mode:
    """A Redis deployment of one mode: backend arguments and raw writes."""

    def __init__(self, name, args, writer, servers):
        self.name = name
        self.args = args
        #: A raw redis-py client of its own: "another client".
        self.writer = writer
        #: Raw clients of each primary, for CLIENT LIST and CLIENT KILL.
        self.servers = servers

    def backend(self, **args):
        return redis_backend.RedisBackend(dict(self.args, **args))

    def probe_keys(self, prefix=''):
        """A key on each primary (one on a single server)."""
        if self.name != 'cluster':
            return [prefix + 'probe-%s' % uuid.uuid4().hex]
        keys, owners = [], set()
        while len(owners) < len(self.servers):
            key = prefix + 'probe-%s' % uuid.uuid4().hex
            owner = self.writer.get_node_from_key(key).name
            if owner not in owners:
                owners.add(owner)
                keys.append(key)
        return keys

    def watchers(self):
        """Per primary, the connections with broadcast tracking on."""
        return [[c for c in server.client_list(_type='pubsub')
                 if 'B' in c['flags'] and 't' in c['flags']]
                for server in self.servers]


@pytest.fixture(params=['standalone', 'sentinel', 'cluster'])
def mode(request):
    if request.param == 'standalone':
        server = request.getfixturevalue('redis_server')
        return Mode('standalone', server.store_args, server.client(),
                    [server.client()])
    if request.param == 'sentinel':
        group = request.getfixturevalue('redis_sentinel_group')
        master = group.current_master()
        return Mode('sentinel', group.store_args, master.client(),
                    [master.client()])
    group = request.getfixturevalue('redis_cluster')
    writer = redis.RedisCluster(host=group.nodes[0].host,
                                port=group.nodes[0].port, socket_timeout=5)
    return Mode('cluster', group.store_args, writer,
                [node.client() for node in group.nodes])


@pytest.fixture
def watching(request):
    """Start a watcher on a backend; stop it and close after the test."""
    started = []

    def watch(backend, near):
        stop = backend.watch(near)
        started.append((backend, stop))
        return stop
    yield watch
    for backend, stop in started:
        stop()
        backend.close()


def written_during_resume(mode, prefix=''):
    """An ``on_resume`` that writes a probe key on each primary."""
    keys = mode.probe_keys(prefix)

    def write():
        for key in keys:
            mode.writer.set(key, b'probe', px=60000)
    return keys, write


def test_resume_comes_only_once_tracking_is_on(mode, watching):
    keys, write = written_during_resume(mode)
    near = RecordingCache(on_resume=write)
    watching(mode.backend(), near)
    resumed = near.wait_for('resume')
    # Written inside resume(), so only seen if tracking was already on.
    for key in keys:
        near.wait_for('drop', key)
    assert near.names()[0] == 'suspend'
    assert resumed > near.events[0][0]
    # One tracking connection on each primary.
    assert [len(found) for found in mode.watchers()] == [1] * len(
        mode.servers)


def test_other_clients_writes_reach_drop_with_the_stored_key(mode, watching):
    near = RecordingCache()
    watching(mode.backend(), near)
    near.wait_for('resume')
    delays = []
    for i in range(100):
        key = 'k-%s-%d' % (uuid.uuid4().hex, i)
        sent = time.monotonic()
        mode.writer.set(key, b'v')
        seen = near.wait_for('drop', key, after=sent, timeout=PROMPT)
        delays.append(seen - sent)
    delays.sort()
    print('\n%s: invalidation delay p50 %.2f ms, p99 %.2f ms, max %.2f ms'
          % (mode.name, delays[49] * 1000, delays[98] * 1000,
             delays[-1] * 1000))
    assert delays[-1] < PROMPT


def test_a_stores_mangled_key_reaches_drop(mode, watching):
    # The store writes through its own backend and connections; the
    # watcher's backend is another client of the same servers.
    store = stored.make_store(BACKEND, **mode.args)
    try:
        near = RecordingCache()
        watching(mode.backend(), near)
        near.wait_for('resume')
        key = stored.data_key(store, 'token')
        sent = time.monotonic()
        store.set('token', {'user': 'u1'})
        near.wait_for('drop', key, after=sent, timeout=PROMPT)
    finally:
        store.close()


def test_only_keys_under_the_key_prefix_without_it(redis_server, watching):
    mode = Mode('standalone', redis_server.store_args,
                redis_server.client(), [redis_server.client()])
    near = RecordingCache()
    watching(mode.backend(key_prefix='app1:'), near)
    near.wait_for('resume')
    other = 'app2:%s' % uuid.uuid4().hex
    mine = uuid.uuid4().hex
    mode.writer.set(other, b'v')
    sent = time.monotonic()
    mode.writer.set('app1:' + mine, b'v')
    near.wait_for('drop', mine, after=sent, timeout=PROMPT)
    dropped = {key for _, name, keys in near.events if name == 'drop'
               for key in keys}
    assert other not in dropped and 'app1:' + mine not in dropped


def test_a_flush_empties_the_cache(redis_factory, watching):
    server = redis_factory()
    near = RecordingCache()
    watching(redis_backend.RedisBackend(server.store_args), near)
    first = near.wait_for('resume')
    server.client().flushall()
    flushed = near.wait_for('suspend', after=first, timeout=PROMPT)
    near.wait_for('resume', after=flushed, timeout=PROMPT)


def kill_watchers(mode, index=0):
    """CLIENT KILL the watcher's connection on primary ``index``."""
    found = mode.watchers()[index]
    assert len(found) == 1
    mode.servers[index].client_kill_filter(_id=found[0]['id'])


def test_client_kill_suspends_then_resumes_and_misses_nothing(mode,
                                                              watching):
    near = RecordingCache()
    backend = mode.backend()
    watching(backend, near)
    first = near.wait_for('resume')
    index = len(mode.servers) - 1  # on a Cluster, not the first channel
    killed = time.monotonic()
    kill_watchers(mode, index)
    suspended = near.wait_for('suspend', after=first, timeout=PROMPT)
    print('\n%s: suspended %.1f ms after CLIENT KILL'
          % (mode.name, (suspended - killed) * 1000))
    # Written while the channel is down or being rebuilt.
    key = mode.probe_keys()[-1]
    mode.writer.set(key, b'during')
    written = time.monotonic()
    resumed = near.wait_for('resume', after=suspended)
    # Not missed: the cache was emptied (suspend) after the kill and
    # before the write, and either served nothing until tracking came
    # back after it, or the write's invalidation reached drop().
    dropped = [at for at, name, keys in near.events
               if name == 'drop' and key in keys and at > suspended]
    assert suspended < written and (resumed > written or dropped)
    sent = time.monotonic()
    mode.writer.set(key, b'after')
    near.wait_for('drop', key, after=sent, timeout=PROMPT)
    assert [len(found) for found in mode.watchers()] == [1] * len(
        mode.servers)


def test_server_restart(redis_factory, watching):
    server = redis_factory()
    near = RecordingCache()
    watching(redis_backend.RedisBackend(server.store_args), near)
    first = near.wait_for('resume')
    stopped = time.monotonic()
    server.stop()
    suspended = near.wait_for('suspend', after=first, timeout=PROMPT)
    print('\nsuspended %.1f ms after the server stopped'
          % ((suspended - stopped) * 1000))
    server.start()
    resumed = near.wait_for('resume', after=suspended, timeout=10)
    sent = time.monotonic()
    server.client().set('after-restart', b'v')
    near.wait_for('drop', 'after-restart', after=max(sent, resumed),
                  timeout=PROMPT)


def test_a_silent_server_is_given_up_within_the_socket_timeout(
        redis_factory, watching):
    server = redis_factory()
    near = RecordingCache()
    watching(redis_backend.RedisBackend(
        dict(server.store_args, socket_timeout=0.5)), near)
    first = near.wait_for('resume')
    server.hang()
    try:
        # A PING after PING_INTERVAL idle, unanswered for socket_timeout.
        near.wait_for('suspend', after=first,
                      timeout=redis_tracking.PING_INTERVAL + 0.5 + PROMPT)
    finally:
        server.resume()
    near.wait_for('resume', after=first, timeout=10)


def test_sentinel_failover_follows_the_new_master(redis_failover_group,
                                                  watching):
    group = redis_failover_group
    near = RecordingCache()
    watching(redis_backend.RedisBackend(group.store_args), near)
    first = near.wait_for('resume')
    group.master.kill()
    suspended = near.wait_for('suspend', after=first, timeout=PROMPT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if group.current_master() is group.replica:
                break
        except Exception:  # the sentinels may be voting
            pass
        time.sleep(0.1)
    else:
        pytest.fail('no failover within 30s')
    resumed = near.wait_for('resume', after=suspended, timeout=30)
    promoted = group.replica.client()
    watchers = [c for c in promoted.client_list(_type='pubsub')
                if 'B' in c['flags']]
    assert len(watchers) == 1
    sent = time.monotonic()
    promoted.set('after-failover', b'v')
    near.wait_for('drop', 'after-failover', after=max(sent, resumed),
                  timeout=PROMPT)


def test_sentinel_manual_failover_leaves_the_demoted_master(
        redis_failover_group, watching):
    # The old master lives on as a replica: its writes stop, and the
    # watcher must move to the new master.
    group = redis_failover_group
    near = RecordingCache()
    watching(redis_backend.RedisBackend(group.store_args), near)
    first = near.wait_for('resume')
    group.sentinels[0].client().execute_command(
        'SENTINEL', 'FAILOVER', group.service_name)
    deadline = time.monotonic() + 30
    while group.current_master() is not group.replica:
        if time.monotonic() > deadline:
            pytest.fail('no failover within 30s')
        time.sleep(0.1)
    suspended = near.wait_for(
        'suspend', after=first,
        timeout=redis_tracking.TOPOLOGY_INTERVAL + PROMPT)
    resumed = near.wait_for('resume', after=suspended, timeout=30)
    promoted = group.replica.client()
    deadline = time.monotonic() + 30
    while promoted.info('replication')['role'] != 'master':
        if time.monotonic() > deadline:
            pytest.fail('the replica was not promoted within 30s')
        time.sleep(0.1)
    # Its channel may first have gone back to the old master, if that
    # was still named; the topology check then moves it.
    deadline = time.monotonic() + redis_tracking.TOPOLOGY_INTERVAL + PROMPT
    while True:
        watchers = [c for c in promoted.client_list(_type='pubsub')
                    if 'B' in c['flags']]
        if watchers or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(watchers) == 1
    sent = time.monotonic()
    promoted.set('after-manual-failover', b'v')
    near.wait_for('drop', 'after-manual-failover',
                  after=max(sent, resumed), timeout=PROMPT)


@pytest.fixture
def own_cluster():
    """A Cluster of this test's own, which it may reshape."""
    yield from servers.running(servers.RedisClusterGroup())


def test_cluster_topology_change_rebuilds_the_channels(own_cluster,
                                                       watching):
    group = own_cluster
    near = RecordingCache()
    watching(redis_backend.RedisBackend(group.store_args), near)
    first = near.wait_for('resume')
    # A fourth master joins and takes slots from the first.
    node = servers.RedisServer(
        port=servers.redis_cluster_port(),
        extra=['cluster-enabled yes', 'cluster-config-file nodes.conf',
               'cluster-node-timeout 2000'])
    group.nodes.append(node)
    node.start()
    cli = servers.require_binary('redis-cli')
    run = functools.partial(subprocess.run, check=True, timeout=60,
                            stdout=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    run([cli, '--cluster', 'add-node', node.address,
         group.nodes[0].address])
    new_id = node.client().execute_command('CLUSTER', 'MYID').decode()
    old_id = group.nodes[0].client().execute_command(
        'CLUSTER', 'MYID').decode()
    deadline = time.monotonic() + 30
    while True:
        try:
            run([cli, '--cluster', 'reshard', group.nodes[0].address,
                 '--cluster-from', old_id, '--cluster-to', new_id,
                 '--cluster-slots', '100', '--cluster-yes'])
            break
        except subprocess.CalledProcessError:
            # The new node may not be known to every master yet.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    suspended = near.wait_for(
        'suspend', after=first,
        timeout=redis_tracking.TOPOLOGY_INTERVAL + PROMPT)
    resumed = near.wait_for('resume', after=suspended, timeout=10)
    watchers = [c for c in node.client().client_list(_type='pubsub')
                if 'B' in c['flags']]
    assert len(watchers) == 1
    # A key of one of the slots the new master took.
    writer = redis.RedisCluster(host=node.host, port=node.port,
                                socket_timeout=5)
    key = next(key for key in ('moved-%d' % i for i in range(100000))
               if writer.get_node_from_key(key).port == node.port)
    sent = time.monotonic()
    writer.set(key, b'v')
    near.wait_for('drop', key, after=max(sent, resumed), timeout=PROMPT)
    writer.close()


def test_tls_and_acl_servers(redis_tls_server, redis_acl_server, watching):
    for server in (redis_tls_server, redis_acl_server):
        near = RecordingCache()
        watching(redis_backend.RedisBackend(server.store_args), near)
        resumed = near.wait_for('resume')
        key = 'secure-%s' % uuid.uuid4().hex
        server.client().set(key, b'v')
        near.wait_for('drop', key, after=resumed, timeout=PROMPT)


@pytest.mark.parametrize('method', ['os', 'c'])
def test_watch_in_a_forked_child_starts_its_own_listener(redis_server,
                                                         watching, method):
    args = redis_server.store_args
    backend = redis_backend.RedisBackend(args)
    near = RecordingCache()
    stop_parent = watching(backend, near)
    near.wait_for('resume')
    if method == 'c':
        # As in a uWSGI master, which starts no thread: CPython cannot
        # be forked from C while another thread may hold one of its own
        # locks (the child would wait on it for ever).
        stop_parent()
    key = 'forked-%s' % uuid.uuid4().hex

    def child(index):
        # The parent's watcher thread is not here; this one is new.
        mine = RecordingCache()
        stop = backend.watch(mine)
        mine.wait_for('resume')
        threads = [t.name for t in threading.enumerate()
                   if t.name.startswith('oslo-kvs-watch')]
        sent = time.monotonic()
        redis_server.client().set(key, b'child')
        mine.wait_for('drop', key, after=sent, timeout=PROMPT)
        stop()
        return {'threads': threads}

    # 'c': forked as uWSGI forks, without Python's fork hooks.
    results = faults.in_forked_children(1, child, method=method)
    assert 'crash' not in results[0], results[0]
    assert len(results[0]['threads']) == 1
    if method == 'os':
        # The parent's watcher saw the child's write too, on its own
        # channel.
        near.wait_for('drop', key)
        assert near.names().count('resume') == 1


def test_stop_joins_the_thread_and_closes_the_connection(mode):
    near = RecordingCache()
    backend = mode.backend()
    try:
        stop = backend.watch(near)
        near.wait_for('resume')
        # A Cluster's other channels get their readers just after.
        deadline = time.monotonic() + PROMPT
        while True:
            before = {t for t in threading.enumerate()
                      if t.name.startswith('oslo-kvs-watch')}
            if (len(before) == len(mode.servers) or
                    time.monotonic() > deadline):
                break
            time.sleep(0.01)
        assert len(before) == len(mode.servers)
        stop()
        assert not any(t.is_alive() for t in before)
        assert near.names()[-1] == 'suspend'
        deadline = time.monotonic() + PROMPT
        while any(mode.watchers()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not any(mode.watchers())
        stop()  # idempotent
    finally:
        backend.close()


def test_a_cache_dropped_without_stop_ends_the_thread(redis_server,
                                                      watching):
    mode = Mode('standalone', redis_server.store_args,
                redis_server.client(), [redis_server.client()])
    near = RecordingCache()
    watching(mode.backend(), near)
    near.wait_for('resume')
    threads = [t for t in threading.enumerate()
               if t.name.startswith('oslo-kvs-watch')]
    assert len(threads) == 1 and len(mode.watchers()[0]) == 1
    del near
    gc.collect()
    threads[0].join(PROMPT)
    assert not threads[0].is_alive()
    deadline = time.monotonic() + PROMPT
    while any(mode.watchers()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(mode.watchers())


def test_no_thread_in_a_uwsgi_master(redis_server, monkeypatch):
    monkeypatch.setitem(sys.modules, 'uwsgi',
                        types.SimpleNamespace(worker_id=lambda: 0))
    near = RecordingCache()
    backend = redis_backend.RedisBackend(redis_server.store_args)
    try:
        threads = threading.active_count()
        stop = backend.watch(near)
        assert near.names() == ['suspend']
        assert threading.active_count() == threads
        stop()
        assert 'resume' not in near.names()
    finally:
        backend.close()


def test_backends_without_notification_return_none():
    from oslo_kvs.backends import memory
    assert memory.MemoryBackend({}).watch(RecordingCache()) is None
