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

"""oslo_kvs.memoize on real memcached and Redis servers."""

import json
import logging
import subprocess
import sys
import time
import uuid

import pytest

from oslo_kvs import exception
from oslo_kvs_tests import servers
from oslo_kvs_tests.unit import test_memoize as unit_memoize

BACKENDS = {'memcached_server': 'openstack.kvs.Memcached',
            'redis_server': 'openstack.kvs.Redis'}
# Short timeouts so a stopped server fails fast; memcached must not keep
# a failed server out of use after it is back.
FAST_FAILURE = {'memcached_server': {'socket_timeout': 1.0,
                                     'dead_retry': 0},
                'redis_server': {'socket_timeout': 1.0,
                                 'socket_connect_timeout': 1.0}}
LOGGER = unit_memoize.LOGGER


class Env(unit_memoize.Env):
    """The unit tests' Env, with its stores on a real server."""

    def __init__(self, fixture_name, server):
        super().__init__()
        self.conf.clear_override('backends', group='kvs')
        self.fixture_name = fixture_name
        self.server = server
        self.backing_store = BACKENDS[fixture_name]

    def store(self, server=None, args=None, **extra):
        if args is None:
            args = (server or self.server).store_args
        args = dict(args, **FAST_FAILURE[self.fixture_name])
        args.update(extra)
        return super().store(self.backing_store, **args)


@pytest.fixture(params=sorted(BACKENDS))
def env(request):
    environment = Env(request.param, request.getfixturevalue(request.param))
    yield environment
    for store in environment.stores:
        store.close()


warnings_of = unit_memoize.warnings_of


def test_hits_and_misses(env):
    double = env.doubler(env.decorator())
    assert double(21) == 42
    assert double(21) == 42
    assert double((1, 'a')) == (1, 'a', 1, 'a')
    assert double((1, 'a')) == (1, 'a', 1, 'a')
    assert env.calls == [21, (1, 'a')]


def test_keyword_arguments_and_defaults_share_an_entry(env):
    @env.decorator()
    def add(a, b=2):
        env.calls.append((a, b))
        return a + b

    assert add(1, 2) == add(1, b=2) == add(b=2, a=1) == add(1) == 3
    assert env.calls == [(1, 2)]


def test_methods_of_two_classes_do_not_collide(env):
    decorator = env.decorator()

    class Users:
        @decorator
        def get(self, x):
            return 'user-%s' % x

    class Groups:
        @decorator
        def get(self, x):
            return 'group-%s' % x

    for _ in range(2):
        assert Users().get(1) == 'user-1'
        assert Groups().get(1) == 'group-1'


# The unit tests' scenario, run on each real server by this module's env.
test_cache_time_expires_results = (
    unit_memoize.test_cache_time_expires_results)


def test_toggles(env):
    double = env.doubler(env.decorator())
    env.override('caching', False, group='token')
    double(1)
    double(1)
    env.override('caching', True, group='token')
    env.override('memoize_enabled', False)
    double(1)
    assert env.calls == [1, 1, 1]
    env.override('memoize_enabled', True)
    double(1)
    double(1)
    assert env.calls == [1, 1, 1, 1]


def test_invalidate_refresh_get_set(env):
    double = env.doubler(env.decorator())
    double(1)
    assert double.get(1) == 2
    double.invalidate(1)
    with pytest.raises(exception.NotFound):
        double.get(1)
    double(1)
    assert env.calls == [1, 1]
    assert double.refresh(1) == 2
    assert env.calls == [1, 1, 1]
    double.set(7, 1)
    assert double(1) == 7
    assert env.calls == [1, 1, 1]


def _stampede(env, separate, threads=6):
    """The unit suite's stampede check, on a real server's store."""
    if separate:
        # Separate decorated objects, as in separate processes.
        def make(decorator, fn, count):
            return [decorator(fn) for _ in range(count)]
    else:
        def make(decorator, fn, count):
            return [decorator(fn)] * count
    unit_memoize._stampede(env, make, threads)


def test_stampede_runs_the_function_once(env):
    _stampede(env, separate=False)


def test_stampede_is_stopped_by_the_server_lock(env):
    _stampede(env, separate=True)


def test_unreachable_server_function_still_answers(env, caplog):
    dead = '%s:%d' % (servers.LOOPBACK, servers.free_port())
    args = {name: (value.replace(env.server.address, dead)
                   if isinstance(value, str) else value)
            for name, value in env.server.store_args.items()}
    assert dead in str(args)
    env.override('memoize_dead_retry', 0)
    double = env.doubler(env.decorator(env.store(args=args)))
    assert [double(3) for _ in range(3)] == [6, 6, 6]
    assert env.calls == [3, 3, 3]
    double.invalidate(3)
    assert len(warnings_of(caplog)) == 1


def test_server_stopped_and_restarted(env, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = type(env.server)()
    try:
        server.start()
        env.override('memoize_dead_retry', 0)
        double = env.doubler(env.decorator(env.store(server)))
        double(1)
        double(1)
        assert env.calls == [1]
        server.stop()
        assert double(1) == 2 and double(2) == 4
        assert env.calls == [1, 1, 2]
        assert len(warnings_of(caplog)) == 1
        server.start()
        # A client may need one failed call to reconnect.
        deadline = time.monotonic() + 10
        while not any('answers again' in r.getMessage()
                      for r in caplog.records):
            assert time.monotonic() < deadline, 'the store never recovered'
            double(len(env.calls) + 100)
        calls = len(env.calls)
        double(5)
        double(5)
        assert len(env.calls) == calls + 1
    finally:
        server.cleanup()


# Run by each process of the cross-process stampede test. Files in the
# marks directory tell the processes apart from the outside: "ready-*"
# once started, "get-*" per store read, "call-*" per function run.
_PROCESS_SCRIPT = '''
import json, os, sys, time, uuid
from dogpile.cache import proxy
from oslo_config import cfg
import oslo_kvs
from oslo_kvs import memoize

spec = json.loads(sys.argv[1])
marks = spec['marks']


def mark(kind):
    open(os.path.join(marks, '%s-%s' % (kind, uuid.uuid4())), 'w').close()


def count(kind):
    return sum(name.startswith(kind + '-') for name in os.listdir(marks))


def wait_for(check, timeout=20, required=True):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            if required:
                sys.exit('timed out')
            return
        time.sleep(0.005)


class Marking(proxy.ProxyBackend):
    def get_serialized(self, key):
        mark('get')
        return self.proxied.get_serialized(key)


conf = cfg.ConfigOpts()
store = oslo_kvs.get_key_value_store(spec['store'], conf=conf)
store.configure(spec['backing_store'], proxy_list=[Marking()],
                **spec['args'])


@memoize.get_memoization_decorator(conf, 'token', store=store)
def compute(x):
    mark('call')
    # Every process has missed (the winner twice) before it computes.
    wait_for(lambda: count('get') >= spec['processes'] + 1)
    # Without a working lock the others would now run too; give them the
    # chance to show it (correct code passes however long this takes).
    wait_for(lambda: count('call') > 1, timeout=0.5, required=False)
    return x * 2


mark('ready')
wait_for(lambda: os.path.exists(spec['go']))
print(json.dumps(compute(21)))
'''


def test_stampede_across_processes_runs_the_function_once(env, tmp_path):
    processes = 4
    marks = tmp_path / 'marks'
    marks.mkdir()
    spec = json.dumps({
        'marks': str(marks), 'go': str(tmp_path / 'go'),
        'processes': processes, 'store': 'memoize-mp-%s' % uuid.uuid4(),
        'backing_store': env.backing_store,
        'args': env.server.store_args})
    script = tmp_path / 'stampede.py'
    script.write_text(_PROCESS_SCRIPT)
    children = [subprocess.Popen([sys.executable, str(script), spec],
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
                for _ in range(processes)]
    try:
        deadline = time.monotonic() + 60
        while sum(p.name.startswith('ready-')
                  for p in marks.iterdir()) < processes:
            assert time.monotonic() < deadline, 'children did not start'
            assert all(c.poll() is None for c in children), [
                c.communicate() for c in children]
            time.sleep(0.01)
        (tmp_path / 'go').touch()
        outputs = [child.communicate(timeout=60) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert [child.returncode for child in children] == [0] * processes, (
        outputs)
    assert [out.strip() for out, _ in outputs] == ['42'] * processes
    assert sum(p.name.startswith('call-') for p in marks.iterdir()) == 1
