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

"""``oslo-kvs stats`` against real servers.

The servers count every client's reads since they started, so the tests
compare two samples around reads of their own: 3 hits and 2 misses more.
"""

import contextlib
import json
import uuid

import pytest

import oslo_kvs
from oslo_kvs.backends import base
from oslo_kvs import exception
from oslo_kvs_tests import faults
from oslo_kvs_tests.functional.test_cmd_servers import conf_text
from oslo_kvs_tests.functional.test_cmd_servers import run
from oslo_kvs_tests import servers

ROW_KEYS = {'server', 'error', 'extra', 'hit_ratio', 'memory_used',
            'delta', *base.STAT_KEYS}
SAMPLE_KEYS = {'command', 'backend', 'interrupted', 'time', 'interval',
               'servers', 'total', 'warnings'}


@contextlib.contextmanager
def store_on(backend, args):
    store = oslo_kvs.get_key_value_store('stats-%s' % uuid.uuid4())
    store.configure(backend, **args)
    try:
        yield store
    finally:
        store.close()


def read_known(store):
    """3 hits and 2 misses, on keys written first."""
    store.set_multi({'hit-%d' % i: i for i in range(3)})
    for i in range(3):
        assert store.get('hit-%d' % i) == i
    for i in range(2):
        with pytest.raises(exception.NotFound):
            store.get('miss-%d' % i)


def stats_json(tmp_path, capsys, text):
    status, out, err = run(tmp_path, capsys, text, 'stats', '--format',
                           'json')
    result = json.loads(out)
    assert set(result) == SAMPLE_KEYS
    for row in result['servers'] + [result['total']]:
        assert set(row) == ROW_KEYS
    return status, result, out + err


def check_reads_counted(tmp_path, capsys, backend, args, labels):
    text = conf_text(backend, args)
    with store_on(backend, args) as store:
        store.set('warm-up', 0)
        status, before, _ = stats_json(tmp_path, capsys, text)
        assert status == 0
        read_known(store)
        status, after, _ = stats_json(tmp_path, capsys, text)
    assert status == 0
    assert [row['server'] for row in after['servers']] == labels
    assert all(row['error'] is None for row in after['servers'])
    moved = {name: after['total'][name] - before['total'][name]
             for name in ('hits', 'misses')}
    assert moved == {'hits': 3, 'misses': 2}
    total = after['total']
    assert total['hit_ratio'] == pytest.approx(
        total['hits'] / (total['hits'] + total['misses']))
    assert total['items'] >= 4 and total['connections'] >= 1
    assert 0 < total['bytes_used']
    return after


def test_memcached(tmp_path, capsys, memcached_server):
    after = check_reads_counted(
        tmp_path, capsys, 'openstack.kvs.Memcached',
        memcached_server.store_args, [memcached_server.address])
    [row] = after['servers']
    assert row['bytes_limit'] > 0
    assert row['memory_used'] == row['bytes_used'] / row['bytes_limit']
    assert row['extra']['version'][0].isdigit()


def test_memcached_three_nodes(tmp_path, capsys, memcached_cluster):
    after = check_reads_counted(
        tmp_path, capsys, 'openstack.kvs.Memcached',
        memcached_cluster.store_args, memcached_cluster.addresses)
    assert after['total']['bytes_limit'] == sum(
        row['bytes_limit'] for row in after['servers'])


def test_redis(tmp_path, capsys, redis_server):
    after = check_reads_counted(
        tmp_path, capsys, 'openstack.kvs.Redis', redis_server.store_args,
        [redis_server.url])
    [row] = after['servers']
    assert row['bytes_limit'] is None and row['memory_used'] is None
    assert row['extra']['maxmemory_policy']


def test_redis_sentinel(tmp_path, capsys, redis_sentinel_group):
    master = redis_sentinel_group.current_master()
    after = check_reads_counted(
        tmp_path, capsys, 'openstack.kvs.Redis',
        redis_sentinel_group.store_args, [master.address])
    assert redis_sentinel_group.master.password not in json.dumps(after)


def test_redis_cluster(tmp_path, capsys, redis_cluster):
    check_reads_counted(
        tmp_path, capsys, 'openstack.kvs.Redis', redis_cluster.store_args,
        sorted(node.address for node in redis_cluster.nodes))


def test_mongo(tmp_path, capsys, mongo_server, mongo_collection):
    backend = 'openstack.kvs.MongoDB'
    args = mongo_server.collection_args(mongo_collection.name)
    text = conf_text(backend, args)
    # Nothing written yet: no collection, no TTL index.
    status, result, _ = stats_json(tmp_path, capsys, text)
    assert status == 0
    [row] = result['servers']
    assert row['items'] == 0 and row['extra']['ttl_index'] is False
    assert any('no TTL index' in line for line in result['warnings'])
    with store_on(backend, args) as store:
        store.set_multi({'key-%d' % i: i for i in range(5)})
    status, result, _ = stats_json(tmp_path, capsys, text)
    assert status == 0
    [row] = result['servers']
    assert row['server'] == mongo_server.address
    assert row['items'] == 5 and row['extra']['ttl_index'] is True
    assert row['extra']['collection'] == '%s.%s' % (
        mongo_server.db_name, mongo_collection.name)
    assert row['hits'] is None and row['hit_ratio'] is None
    assert result['warnings'] == []


def test_down_server_is_reported(tmp_path, capsys, memcached_server):
    dead = '127.0.0.1:%d' % servers.free_port()
    args = dict(memcached_server.store_args,
                url=[memcached_server.address, dead])
    text = conf_text('openstack.kvs.Memcached', args)
    status, result, _ = stats_json(tmp_path, capsys, text)
    assert status == 1
    live, down = result['servers']
    assert live['error'] is None and live['hits'] is not None
    assert down['server'] == dead and dead in down['error']
    assert down['hits'] is None
    assert result['total']['hits'] == live['hits']
    assert any(line.startswith('%s did not answer' % dead)
               for line in result['warnings'])
    status, out, _ = run(tmp_path, capsys, text, 'stats')
    assert status == 1
    assert '%-22s FAILED' % dead in out


def test_password_never_printed(tmp_path, capsys, redis_acl_server):
    args = dict(redis_acl_server.store_args)
    user, password = args.pop('username'), args.pop('password')
    args['url'] = 'redis://%s:%s@%s/0' % (user, password,
                                          redis_acl_server.address)
    text = conf_text('openstack.kvs.Redis', args)
    status, result, output = stats_json(tmp_path, capsys, text)
    assert status == 0
    assert result['servers'][0]['server'] == redis_acl_server.url
    status, out, err = run(tmp_path, capsys, text, 'stats')
    assert status == 0
    assert password not in output + out + err


def test_watch_shows_reads_between_samples(tmp_path, capsys, monkeypatch,
                                           memcached_server):
    backend, args = 'openstack.kvs.Memcached', memcached_server.store_args
    naps = []

    def nap(seconds):
        # Between the samples, the test's own reads; then Ctrl-C.
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt
        read_known(store)

    with store_on(backend, args) as store:
        faults.sleep_here(monkeypatch, nap)
        status, out, _ = run(tmp_path, capsys, conf_text(backend, args),
                             'stats', '--watch', '0.5', '--format', 'json')
    assert status == 130 and naps == [0.5, 0.5]
    first, second = [json.loads(line) for line in out.splitlines()]
    assert first['total']['delta'] is None
    assert second['total']['delta'] == {'hits': 3, 'misses': 2,
                                        'hit_ratio': 0.6}
    assert second['servers'][0]['delta']['hits'] == 3


def test_cluster_down_while_configuring(tmp_path, capsys):
    dead = '127.0.0.1:%d' % servers.free_port()
    text = conf_text('openstack.kvs.Redis', {'cluster_nodes': [dead]})
    status, out, _ = run(tmp_path, capsys, text, 'stats', '--format', 'json')
    assert status == 1
    result = json.loads(out)
    assert set(result) == {'command', 'backend', 'interrupted', 'error'}
    assert dead in result['error']
