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

"""The client's instructions per call, counted by valgrind: no VM noise.

``python -m oslo_kvs_tests.bench.instructions [--calls N]``

Wall-clock ratios on a shared VM move by several per cent from run to run.
This suite counts instead what the client process executes per call, with
``valgrind --tool=callgrind``, for oslo_kvs and the raw client on the same
memcached and Redis servers (started here, outside valgrind). The count is
the same on a busy machine as on an idle one, so a change to a hot path
shows as a number that does not move by itself.

What it does not count: the server, the kernel (system calls, the network
stack) and waiting. It is the client's share of a call, so its ratios are
larger than the wall-clock ones of the other suites; read it as "how much
client work the facade adds", next to them.

The operations are those of the wall-clock suites: ``get`` and ``set`` of
one key, the 100-key forms, and ``get`` of cold keys (a key the store has
not hashed yet on every call; the raw client is given its key hashed).

Each figure is (instructions with N calls - instructions with none) / N,
so start-up, imports and connecting cancel out. Under valgrind a call is
some fifty times slower, so the memcached pool would take every reused
connection for an idle one and poll it for a hang-up, which a busy
process skips; the child raises ``memcache_pool.TRUSTED_IDLE`` so that
the busy path, the one the wall-clock suites time, is the one counted.
"""

import argparse
from concurrent import futures
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import typing as ty
import uuid

from pymemcache.client import base as pymc_base
import redis

import oslo_kvs
from oslo_kvs.backends import memcache_pool
from oslo_kvs import core
from oslo_kvs import serialization
from oslo_kvs_tests.bench import common
from oslo_kvs_tests import servers

VALUE = {'id': 'a' * 32, 'roles': ['admin', 'member'], 'expires': None}
KEYS = ['key-%03d' % i for i in range(100)]
COLD = 'get, cold keys'
OPERATIONS = ('get', 'set', 'get_multi 100', 'set_multi 100', COLD)
#: Keys read once each by the cold-key operation, in a cycle longer than
#: the store's memory of stored keys, so every call hashes a new key.
COLD_KEYS = ['cold-%05d' % i for i in range(core.KEY_CACHE_SIZE + 1000)]
SECRET = 'bench-instructions-' + 'x' * 32
_stores: list[ty.Any] = []
MODULE = 'oslo_kvs_tests.bench.instructions'


def _operations(get, set_, get_many, set_many,
                cold_keys=None) -> dict[str, ty.Callable]:
    """The operations of one contender, from its four calls.

    ``cold_keys``, when given, are the stored keys of :data:`COLD_KEYS`
    for the cold-key operation; without them it is left out.
    """
    mapping = dict.fromkeys(KEYS, VALUE)
    operations = {'get': lambda: get(KEYS[1]),
                  'set': lambda: set_(KEYS[2], VALUE),
                  'get_multi 100': lambda: get_many(KEYS),
                  'set_multi 100': lambda: set_many(mapping)}
    if cold_keys is not None:
        operations[COLD] = (
            lambda key=itertools.cycle(cold_keys).__next__: get(key()))
    return operations


def _in_chunks(write: ty.Callable, mapping: dict) -> None:
    items = list(mapping.items())
    for start in range(0, len(items), 1000):
        write(dict(items[start:start + 1000]))


def _store(cold: bool, backend: str,
           **args: ty.Any) -> dict[str, ty.Callable]:
    name = 'instructions-%s' % uuid.uuid4()
    store = oslo_kvs.get_key_value_store(name)
    store.configure(backend, **args)
    store.set_multi(dict.fromkeys(KEYS, VALUE))
    _stores.append(store)  # stores are weakly held: keep it alive
    if cold:
        # Written through a second store of the same name: same stored
        # keys, but the measured store has hashed none of them.
        writer = core.KeyValueStore(name)
        writer.configure(backend, **args)
        _in_chunks(writer.set_multi, dict.fromkeys(COLD_KEYS, VALUE))
    return _operations(store.get, store.set, store.get_multi,
                       store.set_multi, COLD_KEYS if cold else None)


def _raw_cold_keys(set_many: ty.Callable, cold: bool) -> list[str] | None:
    """Write :data:`COLD_KEYS` with a raw client; their raw keys."""
    if not cold:
        return None
    raw_keys = [common.raw_key(key) for key in COLD_KEYS]
    _in_chunks(set_many, dict.fromkeys(raw_keys, VALUE))
    return raw_keys


def _raw_memcached(cold: bool, host: str, port: int) -> dict[str, ty.Callable]:
    dumps, loads = serialization.dumps, serialization.loads
    client = pymc_base.Client((host, port), no_delay=True, timeout=1.0,
                              connect_timeout=1.0, default_noreply=False)
    client.set_many({key: dumps(VALUE) for key in KEYS})

    def get_many(keys):
        found = client.get_many(keys)
        return [loads(found[key]) for key in keys]

    def set_many(mapping):
        client.set_many({key: dumps(value) for key, value in mapping.items()})

    return _operations(
        lambda key: loads(client.get(key)),
        lambda key, value: client.set(key, dumps(value)),
        get_many, set_many, _raw_cold_keys(set_many, cold))


def _raw_redis(cold: bool, host: str, port: int) -> dict[str, ty.Callable]:
    dumps, loads = serialization.dumps, serialization.loads
    client = redis.Redis(host=host, port=port, protocol=2, socket_timeout=3,
                         socket_connect_timeout=3)
    client.mset({key: dumps(VALUE) for key in KEYS})

    def set_many(mapping):
        # What the store sends when nothing expires: one MSET.
        client.mset({key: dumps(value) for key, value in mapping.items()})

    return _operations(
        lambda key: loads(client.get(key)),
        lambda key, value: client.set(key, dumps(value)),
        lambda keys: [loads(data) for data in client.mget(keys)],
        set_many, _raw_cold_keys(set_many, cold))


def contenders(address: dict[str, ty.Any]) -> dict[str, dict[str, ty.Any]]:
    """Suite name -> contender name -> how to make it (in the child)."""
    memcached, redis_address = address['memcached'], address['redis']
    return {
        'memcached': {
            'raw pymemcache': ('raw_memcached', memcached),
            'oslo_kvs': ('store', ['openstack.kvs.Memcached',
                                   {'url': '%s:%d' % tuple(memcached)}]),
        },
        'redis': {
            'raw redis-py': ('raw_redis', redis_address),
            'oslo_kvs': ('store', ['openstack.kvs.Redis', {
                'url': 'redis://%s:%d' % tuple(redis_address)}]),
        },
        'protection (memcached)': {
            'unprotected': ('store', ['openstack.kvs.Memcached',
                                      {'url': '%s:%d' % tuple(memcached)}]),
            'encrypt': ('store', ['openstack.kvs.Memcached', {
                'url': '%s:%d' % tuple(memcached),
                'value_protection': 'encrypt',
                'protection_keys': [SECRET]}]),
        },
    }


def make(kind: str, args: ty.Any,
         cold: bool = False) -> dict[str, ty.Callable]:
    """The operations of the contender that :func:`contenders` describes.

    :param cold: also write :data:`COLD_KEYS` and make the cold-key
        operation (thousands of writes, so only when it is measured).
    """
    if kind == 'store':
        return _store(cold, args[0], **args[1])
    if kind == 'raw_memcached':
        return _raw_memcached(cold, *args)
    return _raw_redis(cold, *args)


def child(spec: str) -> None:
    """Make one contender and call one operation ``calls`` times."""
    kind, args, operation, calls = json.loads(spec)
    memcache_pool.TRUSTED_IDLE = 60.0  # see the module's docstring
    call = make(kind, args, cold=operation == COLD)[operation]
    call()  # warm: the first call may connect
    for _ in range(calls):
        call()


def _count(spec: list[ty.Any]) -> int:
    done = subprocess.run(
        ['valgrind', '--tool=callgrind', '--callgrind-out-file=/dev/null',
         sys.executable, '-m', MODULE, '--child', json.dumps(spec)],
        capture_output=True, text=True, check=True,
        # One string hash for every run: dict probing then repeats too.
        env=dict(os.environ, PYTHONHASHSEED='0'))
    found = re.search(r'Collected : (\d+)', done.stderr)
    if found is None:
        raise RuntimeError('valgrind printed no count:\n' + done.stderr)
    return int(found.group(1))


def per_call(kind: str, args: ty.Any, operation: str, calls: int) -> float:
    """Instructions per call of one contender's operation."""
    with futures.ThreadPoolExecutor(2) as pool:  # valgrind is slow
        with_calls, without = pool.map(_count, [
            [kind, args, operation, calls], [kind, args, operation, 0]])
    return (with_calls - without) / calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--calls', type=int, default=2000)
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    if shutil.which('valgrind') is None:
        print('valgrind is not installed (apt-get install valgrind)',
              file=sys.stderr)
        return 1
    memcached = servers.MemcachedServer().start()
    redis_server = servers.RedisServer().start()
    try:
        address = {'memcached': [memcached.host, memcached.port],
                   'redis': [redis_server.host, redis_server.port]}
        print('python %s; client instructions per call (valgrind)'
              % sys.version.split()[0])
        for suite, made in contenders(address).items():
            baseline = next(iter(made))
            for operation in OPERATIONS:
                calls = args.calls if '100' not in operation else max(
                    args.calls // 10, 50)
                counts = {name: per_call(kind, spec, operation, calls)
                          for name, (kind, spec) in made.items()}
                print('%s / %s' % (suite, operation))
                for name, count in counts.items():
                    print('  %-38s %10.0f  %6.2fx' % (
                        name, count, count / counts[baseline]))
                sys.stdout.flush()
    finally:
        memcached.cleanup()
        redis_server.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
