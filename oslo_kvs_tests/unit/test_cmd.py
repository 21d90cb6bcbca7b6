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

"""``oslo-kvs``: exercise, bench and ping on the in-memory backend, and
the helpers every subcommand shares (argument parsing, redaction,
addresses).
"""

import io
import json
import sys

import pytest

from oslo_kvs.cmd import bench
from oslo_kvs.cmd import common
from oslo_kvs.cmd import main
from oslo_kvs import core
from oslo_kvs import exception
from oslo_kvs_tests import servers

PASSWORD = 'pa55-word-that-must-stay-hidden'
KEY = 'protection-key-that-must-stay-hidden-0123456789'


def write_conf(tmp_path, text: str) -> str:
    path = tmp_path / 'oslo_kvs.conf'
    path.write_text(text)
    return str(path)


def run(tmp_path, capsys, text: str, *argv: str) -> tuple[int, str, str]:
    status = main.main(['--config-file', write_conf(tmp_path, text)] +
                       list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


class TestExercise:
    def test_runs_every_operation(self, tmp_path, capsys):
        status, out, _ = run(tmp_path, capsys, '', 'exercise', '--rounds',
                             '3')
        assert status == 0
        for label in ('set', 'get', 'get_multi (100 keys)', 'add + delete',
                      'lock + set', 'delete_multi'):
            assert '  %-22s ok' % label in out


class TestBench:
    def test_table(self, tmp_path, capsys):
        status, out, err = run(tmp_path, capsys, '', 'bench',
                               '--operations', '500')
        assert status == 0
        lines = out.splitlines()
        assert lines[0].startswith('openstack.kvs.Memory: 500 operations')
        rows = {line.split()[0]: line.split() for line in lines[2:]}
        assert set(rows) == set(bench.MIX)
        assert sum(int(row[1]) for row in rows.values()) == 500
        assert err == ''  # no progress bar off a terminal

    def test_near_cache_counts(self, tmp_path, capsys):
        status, out, _ = run(tmp_path, capsys, '[kvs]\nnear_cache_ttl = 60\n',
                             'bench', '--operations', '500')
        assert status == 0
        last = out.splitlines()[-1]
        assert last.startswith('near cache: ')
        hits, misses = [int(word) for word in last.split()
                        if word.isdigit()]
        assert hits > 0 and misses >= 0
        status, out, _ = run(tmp_path, capsys, '', 'bench', '--operations',
                             '100', '--format', 'json')
        assert json.loads(out)['near_cache'] is None

    def test_json_is_all_of_stdout(self, tmp_path, capsys):
        status, out, _ = run(tmp_path, capsys, '', 'bench', '--operations',
                             '400', '--format', 'json', '--keys', '50',
                             '--batch', '5')
        assert status == 0
        result = json.loads(out)
        assert result['backend'] == 'openstack.kvs.Memory'
        assert result['operations'] == 400
        assert set(result['results']) == set(bench.MIX)
        assert sum(r['count'] for r in result['results'].values()) == 400
        for row in result['results'].values():
            assert row['count'] > 0
            assert 0 < row['p50_ms'] <= row['p99_ms'] <= row['max_ms']
            assert row['ops_per_second'] > 0

    def test_duration_bounds_the_run(self, tmp_path, capsys):
        status, out, _ = run(tmp_path, capsys, '', 'bench', '--operations',
                             '100000000', '--duration', '0.2', '--format',
                             'json')
        assert status == 0
        result = json.loads(out)
        assert 0 < result['operations'] < 100000000
        assert result['seconds'] >= 0.2

    def test_keys_are_deleted_afterwards(self, tmp_path):
        conf_path = write_conf(tmp_path, '')
        conf = main.cfg.ConfigOpts()
        main.opts.register_command_opts(conf)
        conf(['--config-file', conf_path], default_config_files=[])
        stores = []
        real_open = common.open_store

        def keep(conf, **kwargs):
            stores.append(real_open(conf, **kwargs))
            return stores[-1]

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(common, 'open_store', keep)
            # Keep the store open after the run to look at what is left.
            patch.setattr(core.KeyValueStore, 'close', lambda store: None)
            assert bench.run(conf, io.StringIO(), operations=300,
                             keys=20) == 0
        store, = stores
        written = (['bench-%d' % i for i in range(20)] +
                   ['added-%d' % i for i in range(300)])
        with pytest.raises(exception.NotFound) as info:
            store.get_multi(written)
        assert info.value.target == written
        store.close()

    def test_interrupt_reports_what_was_measured(self, tmp_path, capsys,
                                                 monkeypatch):
        real_get = bench.Workload.get
        calls = []

        def get(self):
            calls.append(1)
            if len(calls) == 50:
                raise KeyboardInterrupt
            real_get(self)

        monkeypatch.setattr(bench.Workload, 'get', get)
        status, out, _ = run(tmp_path, capsys, '', 'bench', '--operations',
                             '100000', '--format', 'json')
        assert status == 130
        result = json.loads(out)
        assert result['interrupted'] is True
        assert result['results']['get']['count'] == 49
        assert 49 < result['operations'] < 100000

    @pytest.mark.parametrize('argv', [['--operations', '0'],
                                      ['--keys', '0'],
                                      ['--duration', '0'],
                                      ['--batch', '-1']])
    def test_bad_bounds(self, tmp_path, capsys, argv):
        status, out, err = run(tmp_path, capsys, '', 'bench', *argv)
        assert status == 2
        assert out == ''
        assert err.startswith('oslo-kvs: --')

    def test_unknown_format_is_a_usage_error(self, tmp_path, capsys):
        with pytest.raises(SystemExit) as exc:
            run(tmp_path, capsys, '', 'bench', '--format', 'xml')
        assert exc.value.code == 2

    def test_plot_without_matplotlib(self, tmp_path, capsys, monkeypatch):
        monkeypatch.setitem(sys.modules, 'matplotlib', None)
        status, out, err = run(tmp_path, capsys, '', 'bench', '--plot',
                               str(tmp_path / 'latency.png'))
        assert status == 2
        assert out == ''  # refused before running anything
        assert 'matplotlib' in err and 'oslo.kvs[plot]' in err
        assert not (tmp_path / 'latency.png').exists()

    def test_plot(self, tmp_path, capsys):
        pytest.importorskip('matplotlib')
        path = tmp_path / 'latency.png'
        status, out, _ = run(tmp_path, capsys, '', 'bench', '--operations',
                             '300', '--plot', str(path), '--format', 'json')
        assert status == 0
        assert json.loads(out)['operations'] == 300
        with open(path, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'

    def test_secret_arguments_never_printed(self, tmp_path, capsys):
        text = ('[kvs]\nbackend_argument = colour:%s\n'
                'protection_keys = %s\n' % (PASSWORD, KEY))
        status, out, err = run(tmp_path, capsys, text, 'bench')
        assert status == 2
        assert 'colour' in err
        assert PASSWORD not in out + err and KEY not in out + err


class TestProgress:
    def test_draws_on_a_terminal_then_erases(self):
        stream = FakeTerminal()
        progress = bench.Progress(stream, operations=1000, duration=60)
        progress.update(10, 0.1)  # too early: short runs show nothing
        assert stream.getvalue() == ''
        progress.update(500, 1.0)
        assert '50%' in stream.getvalue() and '500 ops' in stream.getvalue()
        progress.update(501, 1.05)  # at most ten redraws a second
        assert '501 ops' not in stream.getvalue()
        progress.finish()
        assert stream.getvalue().endswith('\r')

    def test_time_bound_drives_the_bar(self):
        stream = FakeTerminal()
        progress = bench.Progress(stream, operations=10 ** 9, duration=4)
        progress.update(10, 3.0)
        assert ' 75%' in stream.getvalue()

    def test_silent_off_a_terminal(self):
        stream = io.StringIO()
        progress = bench.Progress(stream, operations=10, duration=1)
        progress.update(5, 2.0)
        progress.finish()
        assert stream.getvalue() == ''


class TestPercentile:
    def test_nearest_rank(self):
        ordered = list(range(1, 101))
        assert bench.percentile(ordered, 50) == 50
        assert bench.percentile(ordered, 99) == 99
        assert bench.percentile(ordered, 99.9) == 100
        assert bench.percentile([7], 50) == 7


class TestPing:
    def test_memory_is_in_process(self, tmp_path, capsys):
        status, out, _ = run(tmp_path, capsys, '', 'ping')
        assert status == 0
        assert 'keeps values in this process' in out
        assert 'store round trip' in out

    def test_unreachable_server(self, tmp_path, capsys):
        port = servers.free_port()
        text = ('[kvs]\nbacking_store = openstack.kvs.Redis\n'
                'backend_argument = url:redis://user:%s@127.0.0.1:%d/0\n'
                'backend_argument = socket_timeout:0.5\n' % (PASSWORD, port))
        status, out, err = run(tmp_path, capsys, text, 'ping', '--timeout',
                               '0.5')
        assert status == 1
        assert 'redis://127.0.0.1:%d/0  UNREACHABLE' % port in out
        assert 'store round trip skipped' in out
        assert PASSWORD not in out + err

    def test_invalid_configuration(self, tmp_path, capsys):
        text = '[kvs]\nbacking_store = openstack.kvs.Nowhere\n'
        status, out, err = run(tmp_path, capsys, text, 'ping')
        assert status == 2
        assert 'Unknown KVS backend' in err


class TestBackendArguments:
    def test_entry_without_colon_is_not_echoed(self, tmp_path, capsys):
        text = ('[kvs]\nbackend_argument = expire_time:5\n'
                'backend_argument = password=%s\n' % PASSWORD)
        status, out, err = run(tmp_path, capsys, text, 'exercise')
        assert status == 2
        assert 'entry #2' in err
        assert PASSWORD not in out + err
        assert 'password=' not in err


class TestSecrets:
    def test_secrets_of(self, tmp_path):
        conf = main.cfg.ConfigOpts()
        main.opts.register_command_opts(conf)
        conf(['--config-file', write_conf(tmp_path, '''[kvs]
backing_store = openstack.kvs.Redis
backend_argument = url:redis://u:%s@127.0.0.1:1/0
backend_argument = sentinel_password:sentinel-secret
backend_argument = host:not-a-secret
protection_keys = %s
''' % (PASSWORD, KEY))], default_config_files=[])
        found = common.secrets_of(conf)
        assert PASSWORD in found and KEY in found
        assert 'sentinel-secret' in found
        assert 'not-a-secret' not in found
        assert not any(s.startswith('redis://') for s in found)

    def test_redact(self):
        text = 'redis://me:hunter2@h:1/0 and %s and %s' % (KEY, PASSWORD)
        shown = common.redact(text, [KEY, PASSWORD])
        assert shown == ('redis://me:<secret>@h:1/0 and <secret> and '
                         '<secret>')


class TestAddresses:
    @pytest.mark.parametrize('label,expected', [
        ('127.0.0.1:11211', ('127.0.0.1', 11211, None)),
        ('[::1]:6380', ('::1', 6380, None)),
        ('db.example.org', ('db.example.org', 27017, None)),
        ('::1', ('::1', 27017, None)),
        ('redis://127.0.0.1:7000/3', ('127.0.0.1', 7000, None)),
        ('rediss://[::1]:7001/0', ('::1', 7001, None)),
        ('unix:///run/redis.sock', (None, None, '/run/redis.sock')),
        ('unix:/run/mc.sock', (None, None, '/run/mc.sock')),
        ('/run/mc.sock', (None, None, '/run/mc.sock')),
    ])
    def test_server_address(self, label, expected):
        server = common.server_address(label, 27017)
        assert (server.host, server.port, server.path) == expected

    @pytest.mark.parametrize('label,port', [
        ('mongodb+srv://cluster.example.org', 27017),
        ('db.example.org', None),
        ('host:notaport', None),
    ])
    def test_unusable(self, label, port):
        assert common.server_address(label, port) is None

    @pytest.mark.parametrize('host', ['127.0.0.1', '127.8.9.10', '::1',
                                      '[::1]', 'localhost', 'LOCALHOST'])
    def test_loopback(self, host):
        assert common.is_loopback(host)

    @pytest.mark.parametrize('host', ['192.0.2.1', '10.0.0.1', '2001:db8::1',
                                      'cache.example.org', '0.0.0.0'])
    def test_not_loopback(self, host):
        assert not common.is_loopback(host)
