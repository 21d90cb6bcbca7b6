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

"""update() and incr() while their server hangs: nothing applied twice.

The fault half of the contention check in ``test_atomic.py``: forked
processes (4) each run 8 threads that append unique items to one list
with ``update()`` and count on one counter with ``incr()``, until the
parent stops them. Once some calls have succeeded the parent freezes the
server (SIGSTOP) for 2 s, then lets it run again (SIGCONT) and waits for
more calls to succeed. Meanwhile calls fail with BackendError after the
short ``socket_timeout``. Afterwards:

- every item whose ``update()`` returned is in the list, exactly once;
- no item is there twice, and none that no call wrote; an item whose
  update raised may be there (the server applied the compare-and-set and
  only the reply was lost) or not;
- the counter is at least the number of ``incr()`` calls that returned
  and at most that plus the number that raised.

The run is bounded by progress, not by a call count: ``PROGRESS`` (64)
increments before the hang and again after it, so each thread makes
some 5 to 12 calls of each kind: 150-400 updates and as many increments
per backend, a few dozen of them failing, the 2 s hang included. A
backend takes 3-6 s, SecantusDB's start included, a Sentinel group some
10 s (its sentinels take seconds to find each other). Every test starts
its own servers (``*_factory``): freezing a shared one would stall the
tests running beside it.

The frozen server is the one holding both keys: the master of a Sentinel
group, the master of the keys' slots in a Cluster (three masters, no
replicas). Sentinel's ``down-after-milliseconds`` and the Cluster's
``cluster-node-timeout`` are 10 s there, well above the hang: this test
is about a hung server, not a failover (with 2 s, a ping left
unanswered a little longer than that lets the other Cluster nodes mark
the frozen one failed and the cluster's state fail). Both take the
0.5 s timeout of a standalone Redis: the backend turns redis-py's
retries off in every mode, and on a hung Sentinel master or Cluster
node as many calls failed, each as quickly, as on a standalone server.

MongoDB's timeouts are shorter (0.25 s): with 8 threads on a hung
SecantusDB and 0.5 s timeouts, pymongo failed the calls one after
another, 3.5 to 5.6 s into the hang (a retry, and new connections made
in turn), so every call outlasted a 2 s hang and none failed.
"""

import multiprocessing
import time
import uuid

from oslo_config import cfg
from pymemcache.client import base as pymc_base
import pytest

from oslo_kvs import exception
from oslo_kvs_tests import faults
from oslo_kvs_tests import stored

PROCESSES, THREADS = 4, 8
#: Seconds the server stays frozen.
HANG = 2.0
#: The stores' socket (and, for MongoDB, selection) timeouts, seconds.
TIMEOUT = {'memcached': 0.5, 'redis': 0.5, 'mongo': 0.25}
#: Increments to see before the hang and again after it.
PROGRESS = 64
# Generous bounds that catch a hang, not measures of speed (seconds):
# waiting for progress, one call, and a child's whole run.
WAIT, CALL_BOUND, DEADLINE = 30, 20, 120
#: Seconds a thread waits after a call failed, as a client would, rather
#: than spin on a server its store skips (memcached fails those at once).
PAUSE = 0.05
# 32 writers on one key: enough attempts that none gives up (as in
# test_atomic), so a Conflict is a failure here.
ATTEMPTS = 500

#: Milliseconds a Sentinel or Cluster node must not answer to be counted
#: down: well above the hang, which is not a failover (see the module
#: docstring).
DOWN_AFTER_MS = 10000

BACKENDS = ['memcached', 'memcached-3', 'redis', 'redis-sentinel',
            'redis-cluster', 'mongo']


def private_servers(request, name):
    """Servers of this test only: (backend, configure() args, locate).

    ``locate(store, key)`` is the server that holds ``key``.
    """
    kind = name.partition('-')[0]
    timeout = TIMEOUT[kind]
    if kind == 'mongo':
        server = request.getfixturevalue('mongo_factory')()
        args = server.collection_args('kvs_%s' % uuid.uuid4().hex)
        args.update(server_selection_timeout=timeout,
                    connect_timeout=timeout, socket_timeout=timeout)
        return 'openstack.kvs.MongoDB', args, lambda store, key: server
    if name == 'redis':
        server = request.getfixturevalue('redis_factory')()
        return ('openstack.kvs.Redis',
                dict(server.store_args, socket_timeout=timeout),
                lambda store, key: server)
    if name == 'redis-sentinel':
        group = request.getfixturevalue('redis_sentinel_factory')(
            down_after_ms=DOWN_AFTER_MS)
        master = group.current_master()
        return ('openstack.kvs.Redis',
                dict(group.store_args, socket_timeout=timeout),
                lambda store, key: master)
    if name == 'redis-cluster':
        cluster = request.getfixturevalue('redis_cluster_factory')(
            node_timeout_ms=DOWN_AFTER_MS)
        args = dict(cluster.store_args, socket_timeout=timeout)
        return 'openstack.kvs.Redis', args, lambda store, key: (
            cluster.node_of(args.get('key_prefix', '') +
                            stored.data_key(store, key)))
    make = request.getfixturevalue('memcached_factory')
    servers = [make() for _ in range(3 if name == 'memcached-3' else 1)]
    # No ejection: it would move the keys to another server, which starts
    # them afresh from the default. That is memcached's placement (see
    # test_memcached_rejoin), not what this test checks.
    return 'openstack.kvs.Memcached', dict(
        url=[server.address for server in servers], socket_timeout=timeout,
        pool_connection_get_timeout=timeout, retry_attempts=1000), (
            lambda store, key: holder(store, key, servers))


def holder(store, key, servers):
    """The memcached of ``servers`` that holds ``key``, asked of each."""
    stored_key = stored.data_key(store, key)
    for server in servers:
        raw = pymc_base.Client((server.host, server.port))
        try:
            if raw.get(stored_key) is not None:
                return server
        finally:
            raw.close()
    raise AssertionError('no server holds %s' % key)


def keys_on_one_server(store, locate):
    """The list and counter keys, and the server that holds both."""
    store.set('list', [])
    victim = locate(store, 'list')
    for n in range(100):
        counter = 'counter-%d' % n
        store.set(counter, 0)
        if locate(store, counter) is victim:
            return 'list', counter, victim
        store.delete(counter)
    raise AssertionError('no counter key on the server of the list')


def timed(kind, item, call):
    """Run ``call``: (kind, item, started, ended, outcome)."""
    started = time.monotonic()
    try:
        call()
        outcome = 'ok'
    except exception.BackendError:
        outcome = 'failed'
        time.sleep(PAUSE)
    except Exception as exc:  # Conflict or worse: recorded, fails the test
        outcome = repr(exc)
    return kind, item, started, time.monotonic(), outcome


def hammer(store, keys, process, stop):
    """THREADS threads of update()-appends and incr()s until ``stop``."""
    list_key, counter_key = keys
    calls = []

    def work(thread):
        n = 0
        while not stop.is_set():
            item = [process, thread, n]
            n += 1
            calls.append(timed('update', item, lambda item=item: store.update(
                list_key, lambda items: items + [item], default=[])))
            calls.append(timed('incr', item,
                               lambda: store.incr(counter_key)))

    faults.run_threads(work, THREADS, timeout=DEADLINE)
    return summary(calls)


def summary(calls):
    """What the parent checks of a child's calls, in a few KB of JSON.

    The items of the updates that returned and that raised, how many
    increments returned and raised, per kind when the first call that
    returned ended and the last one began, the longest call and the
    outcomes other than success and BackendError.
    """
    result = {'odd': [call for call in calls
                      if call[4] not in ('ok', 'failed')][:3],
              'longest': max(call[3] - call[2] for call in calls)}
    for outcome in ('ok', 'failed'):
        done = [call for call in calls if call[4] == outcome]
        result['update_' + outcome] = [call[1] for call in done
                                       if call[0] == 'update']
        result['incr_' + outcome] = sum(call[0] == 'incr' for call in done)
    for kind in ('update', 'incr'):
        ok = [call for call in calls if call[0] == kind and call[4] == 'ok']
        # None: none of this child's calls of this kind returned (a
        # child that started late under load); the parent looks at all.
        result['first_%s_ended' % kind] = min(
            (call[3] for call in ok), default=None)
        result['last_%s_began' % kind] = max(
            (call[2] for call in ok), default=None)
    return result


def count_reaches(store, key, target):
    """Wait until ``key`` holds ``target`` or more; its last value."""
    deadline = time.monotonic() + WAIT
    value = -1
    while value < target and time.monotonic() < deadline:
        try:
            value = store.get(key)
        except exception.BackendError:
            pass  # the server is not back yet
        time.sleep(0.02)
    return value


def hang_mid_run(store, counter_key, server, stop, marks):
    """Freeze ``server`` once calls succeed; stop them after more did."""
    try:
        count_reaches(store, counter_key, PROGRESS)
        marks['hang'] = time.monotonic()
        server.hang()
        try:
            time.sleep(HANG)
        finally:
            server.resume()
            marks['resume'] = time.monotonic()
        after = count_reaches(store, counter_key, 0)
        count_reaches(store, counter_key, after + PROGRESS)
    finally:
        stop.set()


def total(results, name):
    """The children's ``name`` results, added up (lists or counts)."""
    return sum((result[name] for result in results),
               start=[] if isinstance(results[0][name], list) else 0)


def assert_nothing_lost_or_doubled(store, keys, results):
    list_key, counter_key = keys
    assert total(results, 'odd') == []
    returned = {tuple(item) for item in total(results, 'update_ok')}
    raised = {tuple(item) for item in total(results, 'update_failed')}
    final = [tuple(item) for item in store.get(list_key)]
    assert len(final) == len(set(final)), 'an update was applied twice'
    assert returned - set(final) == set(), 'lost updates'
    assert set(final) - returned - raised == set(), 'items no call wrote'
    incremented = total(results, 'incr_ok')
    assert incremented <= store.get(counter_key) <= (
        incremented + total(results, 'incr_failed'))


def known(results, name):
    """The children's ``name`` results that are not None."""
    return [result[name] for result in results if result[name] is not None]


def assert_hang_happened(results, marks):
    """Calls succeeded before and after the hang, and some failed."""
    assert 'resume' in marks, 'the server was never frozen'
    for kind in ('update', 'incr'):
        firsts = known(results, 'first_%s_ended' % kind)
        lasts = known(results, 'last_%s_began' % kind)
        assert firsts and min(firsts) < marks['hang'], (
            'no %s before the hang' % kind)
        assert lasts and max(lasts) > marks['resume'], (
            'no %s after the hang' % kind)
        assert total(results, kind + '_failed'), 'no %s failed' % kind
    assert max(result['longest'] for result in results) < CALL_BOUND


@pytest.mark.parametrize('backend', BACKENDS)
def test_hung_server_loses_and_doubles_no_update(request, backend):
    store_name, args, locate = private_servers(request, backend)
    conf = cfg.ConfigOpts()
    store = stored.make_store(store_name, conf=conf, **args)
    conf.set_override('update_attempts', ATTEMPTS, group='kvs')
    list_key, counter_key, victim = keys_on_one_server(store, locate)
    keys = (list_key, counter_key)
    stop = multiprocessing.get_context('fork').Event()
    marks = {}
    results = faults.in_forked_children(
        PROCESSES, lambda n: hammer(store, keys, n, stop),
        meanwhile=lambda: hang_mid_run(store, counter_key, victim, stop,
                                       marks),
        deadline=DEADLINE)
    for result in results:
        assert 'crash' not in result, result.get('crash')
    assert_hang_happened(results, marks)
    assert_nothing_lost_or_doubled(store, keys, results)
