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

"""Importing oslo_kvs creates no threading primitive (eventlet services).

A service may import oslo_kvs before ``eventlet.monkey_patch()``; a lock
made at import would then be a native one that green threads cannot share.
Each check runs in a fresh interpreter.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import oslo_kvs

PACKAGE = pathlib.Path(oslo_kvs.__file__).parent

# Records every threading primitive made while the package's modules are
# imported, when the module being imported at that moment (the innermost
# module-level frame) is a file of the package. A dependency's own
# import-time locks are its business; a call made at module level by the
# package, even into a dependency, is the package's.
_RECORDER = '''
import importlib, json, pathlib, sys, threading

package = pathlib.Path(sys.argv[1]).resolve()
made = []


def record(kind):
    frame = sys._getframe()
    while frame is not None and frame.f_code.co_name != '<module>':
        frame = frame.f_back
    if frame is not None:
        path = pathlib.Path(frame.f_code.co_filename).resolve()
        if path.is_relative_to(package):
            made.append('%s at %s:%d' % (kind, path, frame.f_lineno))


def factory(kind, original):
    def make(*args, **kwargs):
        record(kind)
        return original(*args, **kwargs)
    return make


def subclass(kind, original):
    def __init__(self, *args, **kwargs):
        record(kind)
        original.__init__(self, *args, **kwargs)
    return type(kind, (original,), {'__init__': __init__})


for kind in ('Lock', 'RLock'):
    setattr(threading, kind, factory(kind, getattr(threading, kind)))
for kind in ('Condition', 'Event', 'Semaphore', 'BoundedSemaphore',
             'Barrier'):
    setattr(threading, kind, subclass(kind, getattr(threading, kind)))
threads = threading.active_count()
elsewhere = []
for name in sys.argv[2:]:
    module = importlib.import_module(name)
    if not pathlib.Path(module.__file__).resolve().is_relative_to(package):
        elsewhere.append(name)
print(json.dumps({'made': made, 'elsewhere': elsewhere,
                  'new_threads': threading.active_count() - threads}))
'''


def _modules(package):
    """Every module of ``package``, found from its files."""
    names = []
    for path in sorted(package.rglob('*.py')):
        parts = list(path.relative_to(package.parent).with_suffix('').parts)
        if parts[-1] == '__init__':
            parts.pop()
        names.append('.'.join(parts))
    return names


def _run(script, *args, path=None):
    """Run ``script`` in a fresh interpreter; its last line, as JSON."""
    env = dict(os.environ)
    if path is not None:
        env['PYTHONPATH'] = os.pathsep.join(
            filter(None, [str(path), env.get('PYTHONPATH')]))
    result = subprocess.run([sys.executable, '-c', script, *args],
                            capture_output=True, text=True, timeout=120,
                            check=False, env=env)
    assert result.returncode == 0, result.stderr
    assert 'RuntimeError' not in result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def _record_imports(package, path=None):
    recorded = _run(_RECORDER, str(package), *_modules(package), path=path)
    # The files checked are the ones imported.
    assert recorded.pop('elsewhere') == []
    return recorded


def test_importing_every_module_creates_no_threading_primitive():
    modules = _modules(PACKAGE)
    assert {'oslo_kvs.core', 'oslo_kvs.memoize',
            'oslo_kvs.backends', 'oslo_kvs.backends.redis'} <= set(modules)
    recorded = _record_imports(PACKAGE)
    assert recorded == {'made': [], 'new_threads': 0}


def test_the_recorder_sees_import_time_primitives(tmp_path):
    # The same check on a package that does make primitives at import,
    # directly, in a class body and through a call: all are seen.
    package = tmp_path / 'lockmaker'
    package.mkdir()
    (package / '__init__.py').write_text(textwrap.dedent('''
        import threading
        import oslo_kvs
        LOCK = threading.Lock()
    '''))
    (package / 'inner.py').write_text(textwrap.dedent('''
        import queue
        import threading

        class Holder:
            cond = threading.Condition()

        def make():
            return threading.Event()

        EVENT = make()
        QUEUE = queue.Queue()
    '''))
    made = _record_imports(package, path=tmp_path)['made']
    kinds = sorted(entry.split(' ')[0] for entry in made)
    # Condition makes an RLock, Event a Condition and a Lock, and the
    # queue three Conditions on one Lock.
    assert kinds.count('Lock') == 3
    assert kinds.count('Event') == 1
    assert kinds.count('Condition') == 5
    assert all('lockmaker' in entry for entry in made)


_EVENTLET_SERVICE = '''
import importlib, json, sys

# A service imports everything first, then patches.
for name in sys.argv[1:]:
    importlib.import_module(name)
import oslo_kvs
from oslo_kvs import memoize

import eventlet
eventlet.monkey_patch()

from oslo_config import cfg

conf = cfg.ConfigOpts()
store = oslo_kvs.get_key_value_store('eventlet-service', conf=conf)
store.configure('openstack.kvs.Memory')
calls = []


@memoize.get_memoization_decorator(conf, 'token', store=store)
def double(x):
    calls.append(x)
    eventlet.sleep(0.01)    # let other green threads run meanwhile
    return x * 2


queued = [double.warm(x) for x in range(5)]
joined = memoize.warm_queue.join(timeout=30)
warmed = [double.get(x) for x in range(5)]
# A stampede of green threads on one key computes it once.
pool = eventlet.GreenPool()
stampede = list(pool.imap(double, [10] * 8))
print(json.dumps({'queued': queued, 'joined': joined, 'warmed': warmed,
                  'stampede': stampede, 'calls': calls}))
'''


def test_memoize_warm_up_after_eventlet_monkey_patch():
    assert _run(_EVENTLET_SERVICE, *_modules(PACKAGE)) == {
        'queued': [True] * 5, 'joined': True,
        'warmed': [0, 2, 4, 6, 8], 'stampede': [20] * 8,
        'calls': [0, 1, 2, 3, 4, 10]}


_CLIENT_LIBRARIES = ('redis', 'hiredis', 'pymongo', 'pymemcache')

# What a service imports of oslo_kvs, then the stores it configures, one
# by one: which client libraries are imported at each step.
_IMPORTS_BY_STEP = '''
import json, sys

CLIENTS = %r
seen = {}


def step(name):
    seen[name] = sorted(m for m in CLIENTS if m in sys.modules)


import oslo_kvs
from oslo_kvs import exception, fixture, memoize, opts, testing
from oslo_kvs.cmd import main
step('import')
memory = oslo_kvs.get_key_value_store('memory')
memory.configure('openstack.kvs.Memory')
step('memory')
# No I/O at configure time for these two.
redis = oslo_kvs.get_key_value_store('redis')
redis.configure('openstack.kvs.Redis', url='redis://127.0.0.1:1/0')
step('redis')
mongo = oslo_kvs.get_key_value_store('mongo')
mongo.configure('openstack.kvs.MongoDB', db_hosts='127.0.0.1:1',
                db_name='d', cache_collection='c')
step('mongo')
print(json.dumps(seen))
''' % (_CLIENT_LIBRARIES,)


def test_server_clients_are_imported_only_by_configuring_their_backend():
    assert _run(_IMPORTS_BY_STEP) == {
        'import': [], 'memory': [],
        'redis': ['hiredis', 'redis'],
        'mongo': ['hiredis', 'pymongo', 'redis']}
