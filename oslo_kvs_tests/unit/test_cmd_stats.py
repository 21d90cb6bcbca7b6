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

"""``oslo-kvs stats``: its arithmetic and warnings, and the command on the
in-memory and foreign backends (real servers: functional/test_cmd_stats).
"""

import json

import pytest

from oslo_kvs.cmd import main
from oslo_kvs.cmd import stats
from oslo_kvs_tests import faults


def row(label='a:1', **counts):
    return stats.server_row(label, counts)


@pytest.mark.parametrize('hits,misses,ratio', [
    (3, 1, 0.75), (0, 5, 0.0), (5, 0, 1.0), (0, 0, None), (None, 4, None),
    (4, None, None)])
def test_hit_ratio(hits, misses, ratio):
    assert stats.hit_ratio(hits, misses) == ratio


@pytest.mark.parametrize('used,limit,share', [
    (50, 200, 0.25), (0, 10, 0.0), (5, None, None), (5, 0, None),
    (None, 10, None)])
def test_memory_used(used, limit, share):
    assert stats.memory_used(used, limit) == share


def test_warnings():
    assert stats.warnings_of(row(evictions=0, bytes_used=89,
                                 bytes_limit=100)) == []
    [line] = stats.warnings_of(row(evictions=7))
    assert line.startswith('a:1 evicted 7 item(s)')
    [line] = stats.warnings_of(row(bytes_used=90, bytes_limit=100))
    assert line == 'a:1 uses 90% of its memory limit'
    [line] = stats.warnings_of(row(ttl_index=False))
    assert 'no TTL index' in line
    [line] = stats.warnings_of(row(error='down'))
    assert line == 'a:1 did not answer: down'
    assert len(stats.warnings_of(row(evictions=1, bytes_used=99,
                                     bytes_limit=100))) == 2


def test_row_keeps_extras_apart():
    found = row(hits=1, misses=1, version='1.6', uptime=5)
    assert found['extra'] == {'version': '1.6', 'uptime': 5}
    assert found['hit_ratio'] == 0.5 and found['bytes_limit'] is None


def test_total():
    rows = [row('a:1', hits=3, misses=1, items=2, bytes_used=10,
                bytes_limit=100, evictions=0, connections=1),
            row('b:1', hits=1, misses=3, items=1, bytes_used=30,
                bytes_limit=None, evictions=2, connections=2),
            row('c:1', error='down')]
    total = stats.total_row(rows)
    assert (total['hits'], total['misses'], total['items']) == (4, 4, 3)
    assert total['hit_ratio'] == 0.5 and total['evictions'] == 2
    # One server without a limit: the total has none either.
    assert total['bytes_limit'] is None and total['memory_used'] is None
    assert stats.total_row([rows[2]])['hits'] is None


def test_delta():
    before = row(hits=10, misses=5)
    after = stats.server_row('a:1', {'hits': 13, 'misses': 7}, before)
    assert after['delta'] == {'hits': 3, 'misses': 2, 'hit_ratio': 0.6}
    # The server restarted: its counters went back.
    restarted = stats.server_row('a:1', {'hits': 1, 'misses': 7}, before)
    assert restarted['delta'] is None


def run(tmp_path, capsys, text, *argv):
    path = tmp_path / 'oslo_kvs.conf'
    path.write_text(text)
    status = main.main(['--config-file', str(path), 'stats'] + list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_memory_backend(tmp_path, capsys):
    status, out, _ = run(tmp_path, capsys, '', '--format', 'json')
    assert status == 0
    result = json.loads(out)
    assert result['backend'] == 'openstack.kvs.Memory'
    [server] = result['servers']
    assert server['server'] == 'this process' and server['items'] == 0
    assert result['interrupted'] is False and result['warnings'] == []
    status, out, _ = run(tmp_path, capsys, '')
    assert status == 0
    assert out.splitlines()[1].split()[:3] == ['server', 'hits', 'misses']


def test_foreign_backend_is_not_supported(tmp_path, capsys):
    status, out, err = run(tmp_path, capsys,
                           '[kvs]\nbackend = dogpile.cache.memory\n')
    assert status == 2 and out == ''
    assert err == ('oslo-kvs: dogpile.cache.memory does not report server '
                   'statistics\n')


def test_watch_table(tmp_path, capsys, monkeypatch):
    naps = []

    def nap(seconds):
        naps.append(seconds)
        if len(naps) == 3:
            raise KeyboardInterrupt
    faults.sleep_here(monkeypatch, nap)
    status, out, _ = run(tmp_path, capsys, '', '--watch', '2')
    assert status == 130 and naps == [2.0] * 3
    assert out.count('openstack.kvs.Memory: 1 server(s)') == 3


def test_watch_must_be_positive(tmp_path, capsys):
    status, _, err = run(tmp_path, capsys, '', '--watch', '0')
    assert status == 2
    assert err == 'oslo-kvs: --watch must be a positive number of seconds\n'
