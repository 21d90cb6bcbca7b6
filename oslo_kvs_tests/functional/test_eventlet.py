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

"""Redis under eventlet, patched after ``import oslo_kvs``.

A service's entry module often imports oslo libraries first and calls
``eventlet.monkey_patch()`` later. The Redis client must then be imported
only when the store is configured, after the patch, so that it uses green
sockets and ``select``; with or without hiredis. Each case runs in a
fresh interpreter.
"""

import json
import subprocess
import sys

import pytest

_SERVICE = '''
import json, sys

if sys.argv[2] == 'without':
    sys.modules['hiredis'] = None   # as where no wheel is installed
import oslo_kvs

import eventlet
eventlet.monkey_patch()

store = oslo_kvs.get_key_value_store('eventlet-redis')
store.configure('openstack.kvs.Redis', url=sys.argv[1], socket_timeout=5)


def worker(n):
    wrong = 0
    for i in range(50):
        key = 'k%d-%d' % (n, i % 5)
        store.set(key, [n, i])
        wrong += store.get(key) != [n, i]
        with store.get_lock('count') as lock:
            store.set('count', store.get('count') + 1, lock=lock)
    return wrong


store.set('count', 0)
pool = eventlet.GreenPool()
wrong = sum(pool.imap(worker, range(10)))
from redis import utils
print(json.dumps({'wrong': wrong, 'count': store.get('count'),
                  'hiredis': utils.HIREDIS_AVAILABLE}))
'''


@pytest.mark.parametrize('hiredis', ['with', 'without'])
def test_redis_works_when_patched_after_import(redis_server, hiredis):
    result = subprocess.run(
        [sys.executable, '-c', _SERVICE, redis_server.url, hiredis],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {
        'wrong': 0, 'count': 500, 'hiredis': hiredis == 'with'}
