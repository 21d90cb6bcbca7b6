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

"""openstack.kvs.Redis with and without hiredis, on a real redis-server.

hiredis (redis-py's C reply parser) is a requirement, but a platform
without a wheel for it must still work: redis-py then falls back to its
pure-Python parser by itself. A child process that cannot import hiredis
stands in for such a platform; it shares a server and a store with this
process, which uses hiredis.
"""

import json
import os
import subprocess
import sys
import textwrap
import uuid

import pytest
import redis
from redis import connection as redis_connection

import oslo_kvs
from oslo_kvs import exception

BACKEND = 'openstack.kvs.Redis'

# Values that take the parser's less common paths: CRLF inside a bulk
# reply, an empty one, and one larger than a socket read (64 KiB).
VALUES = {'crlf': b'a\r\nb\r\n', 'empty': '', 'big': 'x' * 200000,
          'dict': {'roles': ['admin'], 'n': 1}}

CHILD = textwrap.dedent('''
    import json, sys
    sys.modules['hiredis'] = None  # as if no wheel were installed
    import redis
    from redis import connection
    import oslo_kvs
    from oslo_kvs import exception
    name, url = sys.argv[1:]
    store = oslo_kvs.get_key_value_store(name)
    store.configure('openstack.kvs.Redis', url=url)
    values = store.get_multi(['crlf', 'empty', 'big', 'dict'])
    try:
        store.get('missing')
        missing = 'found'
    except exception.NotFound:
        missing = 'NotFound'
    store.set_multi({'from-child': ['pure', 1], 'big-child': 'y' * 100000})
    print(json.dumps({
        'hiredis': redis.utils.HIREDIS_AVAILABLE,
        'parser': connection.DefaultParser.__name__,
        'crlf': list(values[0]), 'empty': values[1],
        'big': values[2] == 'x' * 200000, 'dict': values[3],
        'missing': missing, 'added': store.add('crlf', 'other')}))
''')


def test_requirements_give_hiredis():
    # hiredis is in requirements.txt: the parser redis-py picks by itself.
    assert redis.utils.HIREDIS_AVAILABLE
    assert redis_connection.DefaultParser.__name__ == '_HiredisParser'


def test_store_works_with_the_pure_python_parser(redis_server):
    name = 'parser-%s' % uuid.uuid4()
    store = oslo_kvs.get_key_value_store(name)
    store.configure(BACKEND, url=redis_server.url)
    store.set_multi(VALUES)

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, '-c', CHILD, name,
                             redis_server.url], capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)

    assert seen['hiredis'] is False
    assert seen['parser'] != '_HiredisParser'
    assert bytes(seen['crlf']) == VALUES['crlf']
    assert seen['empty'] == ''
    assert seen['big'] is True
    assert seen['dict'] == VALUES['dict']
    assert seen['missing'] == 'NotFound'
    assert seen['added'] is False
    # What the pure parser's process wrote, this one reads with hiredis.
    assert store.get('from-child') == ['pure', 1]
    assert store.get('big-child') == 'y' * 100000
    with pytest.raises(exception.NotFound):
        store.get('missing')
