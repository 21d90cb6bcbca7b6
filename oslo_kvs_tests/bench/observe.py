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


"""What counting and OpenTelemetry cost on memcached and Redis.

On one server of each kind, started here, ``get`` and ``set`` of one hot
key for four stores, interleaved:

- ``before``: a store whose operations are the undecorated methods
  (``__wrapped__``), exactly the code before counting was added: the
  baseline;
- ``counters``: a store as shipped, counting for ``stats()``, with no
  OpenTelemetry SDK when it was configured;
- ``counters + OTel SDK``: a store configured after an SDK
  ``MeterProvider`` (with an ``InMemoryMetricReader``) was set: it also
  records the duration of one call in ``[kvs] duration_sampling`` (the
  default, 20) in the histogram;
- ``... every call``: the same, recording every call's duration
  (``duration_sampling = 1``), for information;
- and on the memory backend the same, for information: its calls are so
  short (a fraction of a microsecond) that any counting shows.

Targets (issue 25): counters <= 1.03x before; with an SDK <= 1.10x.
"""

import contextlib
from unittest import mock
import uuid

from oslo_config import cfg

from oslo_kvs import core
from oslo_kvs import observe
from oslo_kvs import opts
from oslo_kvs_tests.bench import common
from oslo_kvs_tests import servers

VALUE = {'id': 'a' * 32, 'roles': ['admin', 'member'], 'expires': None}
SUITE = 'observe'
BEFORE = 'before (undecorated methods)'
COUNTERS = 'counters'
OTEL = 'counters + OTel SDK histogram'
OTEL_EVERY = '... every call (info)'


class Before(core.KeyValueStore):
    """A store running the methods as they were before counting."""


for _name in ('get', 'get_multi', 'set', 'set_multi', 'delete',
              'delete_multi', 'add'):
    setattr(Before, _name, getattr(core.KeyValueStore, _name).__wrapped__)


#: The reader of the SDK provider :func:`_sdk` set: a process's global
#: provider is set once (``--repeat`` runs the suite again).
_readers: list = []


def _sdk():
    """Set an SDK meter provider, once per process; its reader."""
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import export
    from opentelemetry.sdk.metrics import MeterProvider
    if not _readers:
        _readers.append(export.InMemoryMetricReader())
        metrics.set_meter_provider(MeterProvider(metric_readers=_readers))
    return _readers[0]


def run(rounds):
    """get and set, before, with counters, and with the SDK."""
    memcached = servers.MemcachedServer(extra=['-t', '1'],
                                        cpu=common.cpu()).start()
    redis = servers.RedisServer(cpu=common.cpu()).start()
    try:
        backends = [('memcached', 'openstack.kvs.Memcached',
                     memcached.store_args),
                    ('redis', 'openstack.kvs.Redis', redis.store_args),
                    ('memory (info)', 'openstack.kvs.Memory', {})]
        reader = _sdk()
        results = []
        for label, backend, args in backends:
            stores = _stores(backend, args, (BEFORE, COUNTERS, OTEL,
                                             OTEL_EVERY))
            results += _measure(label, stores, rounds)
        assert reader.get_metrics_data() is not None   # it did record
        return results
    finally:
        memcached.cleanup()
        redis.cleanup()


def _stores(backend, args, kinds):
    made = {}
    for kind in kinds:
        if kind == OTEL_EVERY:
            opts.register_opts(cfg.CONF)
            cfg.CONF.set_override('duration_sampling', 1, 'kvs')
        store = (Before if kind == BEFORE else core.KeyValueStore)(
            'bench-observe-%s' % uuid.uuid4())
        # A store looks for the SDK when it is configured: the baseline
        # and counters stores do not find it.
        with (contextlib.nullcontext() if kind in (OTEL, OTEL_EVERY) else
              mock.patch.object(observe, '_sdk_provider', lambda: None)):
            store.configure(backend, **args)
        cfg.CONF.clear_override('duration_sampling', 'kvs')
        store.set('hot', VALUE)
        made[kind] = store
    return made


def _measure(label, stores, rounds):
    for store in stores.values():
        assert store.get('hot') == VALUE
    return [
        common.Result(SUITE, '%s get' % label, common.compare({
            kind: (lambda store=store: store.get('hot'))
            for kind, store in stores.items()}, rounds), BEFORE),
        common.Result(SUITE, '%s set' % label, common.compare({
            kind: (lambda store=store: store.set('hot', VALUE))
            for kind, store in stores.items()}, rounds), BEFORE),
    ]
