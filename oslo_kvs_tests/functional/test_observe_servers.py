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


"""``store.stats()`` and OpenTelemetry metrics on real servers.

The OpenTelemetry tests run in a forked child: the SDK's meter provider
is set once per process, and the other tests of this worker must not
pay for (or see) it.
"""

import itertools

from oslo_config import cfg
import pytest
import redis

import oslo_kvs
from oslo_kvs import exception
from oslo_kvs_tests import faults
from oslo_kvs_tests import stored
from oslo_kvs_tests.unit import test_observe

SECRET = 'observe-secret-' + 's' * 32
OUTCOME_KEYS = {'oslo_kvs.store', 'oslo_kvs.backend', 'db.system.name',
                'db.operation.name', 'oslo_kvs.outcome'}


@pytest.fixture(params=['memcached', 'redis'])
def server_store(request):
    if request.param == 'memcached':
        server = request.getfixturevalue('memcached_server')
        store = stored.make_store('openstack.kvs.Memcached',
                                  **server.store_args)
    else:
        server = request.getfixturevalue('redis_server')
        store = stored.make_store('openstack.kvs.Redis', **server.store_args)
    yield store
    store.close()


def test_counts_add_up_exactly_under_threads(server_store):
    test_observe.run_threads(server_store)
    assert server_store.stats()['operations'] == test_observe.expected(
        test_observe.THREADS * test_observe.CALLS // test_observe.ROUND)


def _tamper(store, redis_server, key):
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    client.set(stored.data_key(store, key), b'\x00' * 48)


def test_tampered_values_are_counted_refused(redis_server):
    store = stored.make_store('openstack.kvs.Redis', value_protection='mac',
                              protection_keys=[SECRET],
                              **redis_server.store_args)
    try:
        store.set_multi({'a': 1, 'b': 2})
        _tamper(store, redis_server, 'a')
        before = store.stats()['operations']
        with pytest.raises(exception.IntegrityError):
            store.get('a')
        with pytest.raises(exception.IntegrityError):
            store.get_multi(['b', 'a'])
        after = store.stats()['operations']
        for operation in ('get', 'get_multi'):
            assert after[operation]['refused'] == 1
            assert (after[operation]['calls'] -
                    before[operation]['calls']) == 1
        assert after['get']['misses'] == after['get_multi']['misses'] == 0
    finally:
        store.close()


def test_a_stopped_server_is_counted_as_errors(memcached_factory):
    server = memcached_factory()
    store = stored.make_store('openstack.kvs.Memcached', socket_timeout=1,
                              **server.store_args)
    try:
        store.set('a', 1)
        server.stop()
        with pytest.raises(exception.BackendError):
            store.get('a')
        with pytest.raises(exception.BackendError):
            store.set('a', 2)
        ops = store.stats()['operations']
        assert ops['get'] == {'calls': 1, 'hits': 0, 'misses': 0, 'ok': 0,
                              'refused': 0, 'errors': {'BackendError': 1}}
        assert ops['set']['errors'] == {'BackendError': 1}
        assert ops['set']['calls'] == 2
    finally:
        store.close()


def _points(reader):
    """Every oslo.kvs data point: (metric, unit, attributes, number)."""
    points = []
    data = reader.get_metrics_data()     # None before any instrument
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            if scope.scope.name != 'oslo.kvs':
                continue
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    points.append([metric.name, metric.unit,
                                   dict(point.attributes),
                                   getattr(point, 'value', None) or
                                   getattr(point, 'count', None)])
    return points


def _every_outcome(store, redis_server):
    """One call of each kind the test expects to see exported."""
    store.set('a', 1)                                   # set ok
    store.get('a')                                      # get hit
    store.set_multi({'b': 2})
    store.get_multi(['a', 'b'])                         # get_multi hit
    with pytest.raises(exception.NotFound):
        store.get('missing')                            # get miss
    with pytest.raises(exception.NotFound):
        store.delete('missing')                         # delete miss
    with pytest.raises(TypeError):
        store.get(1)                                    # get error
    with store.get_lock('a') as lock:                   # lock ok
        store.delete('a', lock=lock)                    # delete ok
    store.add('c', 3)                                   # add ok
    store.delete_multi(['c'])
    _tamper(store, redis_server, 'b')
    with pytest.raises(exception.IntegrityError):
        store.get('b')                                  # get refused


def test_open_telemetry_sees_every_operation_and_outcome(redis_server):
    def child(index):
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import export
        from opentelemetry.sdk.metrics import MeterProvider
        reader = export.InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        cfg.CONF.set_override('duration_sampling', 1, 'kvs')
        store = stored.make_store(
            'openstack.kvs.Redis', name='otel-store',
            value_protection='mac', protection_keys=[SECRET],
            **redis_server.store_args)
        _every_outcome(store, redis_server)
        return {'points': _points(reader), 'stats': store.stats()}

    [result] = faults.in_forked_children(1, child)
    assert 'crash' not in result, result.get('crash')
    counter = {(p[2]['db.operation.name'], p[2]['oslo_kvs.outcome'],
                p[2].get('error.type')): p for p in result['points']
               if p[0] == 'oslo_kvs.client.operations'}
    histogram = {(p[2]['db.operation.name'], p[2]['oslo_kvs.outcome'],
                  p[2].get('error.type')): p for p in result['points']
                 if p[0] == 'db.client.operation.duration'}
    # stats() counts data_key's reads too: compare with it, not by hand.
    kinds = {(operation, outcome, None)
             for operation, entry in result['stats']['operations'].items()
             for outcome, plural in (('hit', 'hits'), ('miss', 'misses'),
                                     ('ok', 'ok'), ('refused', 'refused'))
             if entry[plural]}
    kinds.add(('get', 'error', 'TypeError'))
    assert {('get', 'hit', None), ('get', 'miss', None),
            ('get', 'refused', None), ('get_multi', 'hit', None),
            ('set', 'ok', None), ('set_multi', 'ok', None),
            ('delete', 'miss', None), ('delete', 'ok', None),
            ('delete_multi', 'ok', None), ('add', 'ok', None),
            ('lock', 'ok', None)} <= kinds
    assert set(counter) == set(histogram) == kinds
    for kind, (name, unit, attributes, number) in counter.items():
        assert unit == '{operation}'
        entry = result['stats']['operations'][kind[0]]
        assert number == (entry['errors'][kind[2]] if kind[2] else
                          entry[{'hit': 'hits', 'miss': 'misses'}.get(
                              kind[1], kind[1])])
        expected = dict(zip(('db.operation.name', 'oslo_kvs.outcome'),
                            kind[:2]), **{
            'oslo_kvs.store': 'otel-store',
            'oslo_kvs.backend': 'openstack.kvs.Redis',
            'db.system.name': 'redis'})
        if kind[2]:
            expected['error.type'] = 'TypeError'
        assert attributes == expected
        assert histogram[kind][1] == 's'
        assert histogram[kind][2] == attributes
        assert histogram[kind][3] == number     # one duration per call
    # Never a key, a value or a secret in an attribute.
    shown = repr(result['points'])
    for secret in (SECRET, "'a'", "'missing'", 'otel-store:'):
        assert secret not in shown


def test_durations_are_sampled_and_counts_stay_exact(redis_server):
    def child(index):
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import export
        from opentelemetry.sdk.metrics import MeterProvider
        reader = export.InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        cfg.CONF.set_override('duration_sampling', 4, 'kvs')
        store = stored.make_store('openstack.kvs.Redis', name='sampled',
                                  **redis_server.store_args)
        store.set('a', 1)
        # One draw in four falls under 1/4: exactly a quarter is timed.
        oslo_kvs.observe._random = itertools.cycle(
            [0.9, 0.1, 0.6, 0.3]).__next__
        for _ in range(400):
            store.get('a')
        return {'points': _points(reader)}

    [result] = faults.in_forked_children(1, child)
    assert 'crash' not in result, result.get('crash')
    gets = {p[0]: p[3] for p in result['points']
            if p[2]['db.operation.name'] == 'get'}
    assert gets == {'oslo_kvs.client.operations': 400,
                    'db.client.operation.duration': 100}


def test_without_an_sdk_at_configure_nothing_is_exported(redis_server):
    def child(index):
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import export
        from opentelemetry.sdk.metrics import MeterProvider
        early = stored.make_store('openstack.kvs.Redis', name='early',
                                  **redis_server.store_args)
        early.set('a', 1)
        reader = export.InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        early.get('a')
        nothing = _points(reader)
        late = stored.make_store('openstack.kvs.Redis', name='late',
                                 **redis_server.store_args)
        late.set('a', 1)
        return {'nothing': nothing, 'late': _points(reader),
                'early': early.stats()['operations']['get']['calls']}

    [result] = faults.in_forked_children(1, child)
    assert 'crash' not in result, result.get('crash')
    assert result['nothing'] == [] and result['early'] == 1
    assert {p[2]['oslo_kvs.store'] for p in result['late']} == {'late'}


def test_a_store_is_not_timed_without_an_sdk(redis_server, monkeypatch):
    # No provider set in this process: a store counts and does not time.
    store = stored.make_store('openstack.kvs.Redis',
                              **redis_server.store_args)
    try:
        monkeypatch.setattr(oslo_kvs.observe, '_perf_counter', None)
        store.set('a', 1)
        assert store.get('a') == 1
        assert store.stats()['operations']['get']['hits'] == 1
    finally:
        store.close()
