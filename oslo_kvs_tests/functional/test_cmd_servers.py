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

"""``oslo-kvs ping``, ``bench`` and ``doctor`` against real servers.

The servers are the session fixtures of ``oslo_kvs_tests.servers``, on
loopback ports of their own.
"""

import json
import typing as ty

import pytest

from oslo_kvs.cmd import bench
from oslo_kvs.cmd import main

KEY = 'protection-key-that-must-stay-hidden-0123456789'
PROTECTED = 'value_protection = encrypt\nprotection_keys = %s\n' % KEY


def conf_text(store: str, args: ty.Mapping[str, ty.Any],
              extra: str = '') -> str:
    lines = ['[kvs]', 'backing_store = %s' % store]
    for name, value in args.items():
        if isinstance(value, (list, tuple)):
            value = ','.join(value)
        elif isinstance(value, bool):
            value = str(value).lower()
        lines.append('backend_argument = %s:%s' % (name, value))
    return '\n'.join(lines) + '\n' + extra


def run(tmp_path, capsys, text: str, *argv: str) -> tuple[int, str, str]:
    path = tmp_path / 'oslo_kvs.conf'
    path.write_text(text)
    status = main.main(['--config-file', str(path)] + list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(params=['memcached', 'redis'])
def server(request):
    """``(backing_store, configure() arguments, address)`` of a server."""
    if request.param == 'memcached':
        found = request.getfixturevalue('memcached_server')
        return 'openstack.kvs.Memcached', found.store_args, found.address
    found = request.getfixturevalue('redis_server')
    return 'openstack.kvs.Redis', found.store_args, found.address


def test_ping(tmp_path, capsys, server):
    store, args, address = server
    status, out, _ = run(tmp_path, capsys, conf_text(store, args), 'ping')
    assert status == 0, out
    assert '%s: 1 server(s)' % store in out
    [line] = [line for line in out.splitlines() if address in line]
    assert 'reachable' in line and 'UNREACHABLE' not in line
    assert 'store round trip (get of a missing key)' in out


def test_bench_json(tmp_path, capsys, server):
    store, args, _ = server
    status, out, _ = run(tmp_path, capsys, conf_text(store, args, PROTECTED),
                         'bench', '--operations', '300', '--keys', '50',
                         '--format', 'json')
    assert status == 0
    result = json.loads(out)
    assert result['backend'] == store
    assert result['operations'] == 300
    assert set(result['results']) == set(bench.MIX)
    for row in result['results'].values():
        assert row['count'] > 0 and row['p50_ms'] <= row['p99_ms']


def test_bench_table(tmp_path, capsys, server):
    store, args, _ = server
    status, out, _ = run(tmp_path, capsys, conf_text(store, args, PROTECTED),
                         'bench', '--operations', '200', '--keys', '20')
    assert status == 0
    assert out.startswith('%s: 200 operations' % store)
    for name in bench.MIX:
        assert '\n%-10s ' % name in out


def test_doctor_healthy(tmp_path, capsys, server):
    store, args, _ = server
    status, out, _ = run(tmp_path, capsys, conf_text(store, args, PROTECTED),
                         'doctor')
    assert status == 0, out
    assert 'found no symptom in the %s store' % store in out
    assert KEY not in out


def test_doctor_unprotected(tmp_path, capsys, server):
    store, args, _ = server
    status, out, _ = run(tmp_path, capsys, conf_text(store, args), 'doctor')
    assert status == 1
    assert out.count('[symptom_') == 1
    assert '[symptom_unprotected_values_on_network_backend]' in out


def test_ping_and_doctor_with_password(tmp_path, capsys, redis_acl_server):
    args = dict(redis_acl_server.store_args)
    password = args['password']
    text = conf_text('openstack.kvs.Redis', args, PROTECTED)
    status, out, err = run(tmp_path, capsys, text, 'ping')
    assert status == 0, out + err
    status, out, err = run(tmp_path, capsys, text, 'doctor')
    assert status == 0, out + err
    assert password not in out + err


def test_wrong_password(tmp_path, capsys, redis_acl_server):
    args = dict(redis_acl_server.store_args)
    right = args['password']
    args['password'] = 'not-the-password-%s' % right[::-1]
    text = conf_text('openstack.kvs.Redis', args, PROTECTED)
    status, out, err = run(tmp_path, capsys, text, 'ping')
    assert status == 1
    assert 'reachable' in out
    assert 'store round trip FAILED' in out and 'authentication' in out
    assert args['password'] not in out + err and right not in out + err
    status, out, err = run(tmp_path, capsys, text, 'doctor')
    assert status == 1
    assert out.count('[symptom_') == 1
    assert '[symptom_requests_fail]' in out
    assert args['password'] not in out + err and right not in out + err


def test_ping_tls(tmp_path, capsys, redis_tls_server):
    text = conf_text('openstack.kvs.Redis', redis_tls_server.store_args)
    status, out, _ = run(tmp_path, capsys, text, 'ping')
    assert status == 0, out
    assert 'rediss://%s/0  reachable' % redis_tls_server.address in out
