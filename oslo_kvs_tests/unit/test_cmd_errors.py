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

"""``oslo-kvs`` never shows a traceback: bad input is one line and exit 2,
symptoms exit 1, Ctrl-C exits 130 with a partial result; every subcommand
speaks JSON and ``--version`` works.

The console script itself is run in a subprocess where a traceback would
only show on stderr.
"""

import json
import os
import subprocess
import sys

import pytest

from oslo_kvs.cmd import main
from oslo_kvs.cmd import ping

COMMANDS = ['exercise', 'doctor', 'bench', 'ping', 'stats']
# Small enough to run quickly; every subcommand accepts these.
QUICK = {'exercise': ['--rounds', '2'], 'doctor': [],
         'bench': ['--operations', '50'], 'ping': ['--count', '1'],
         'stats': []}


def oslo_kvs(*argv, cwd=None):
    """Run the command as a user would; return status, stdout, stderr."""
    done = subprocess.run(
        [sys.executable, '-m', 'oslo_kvs.cmd.main'] + list(argv),
        capture_output=True, text=True, cwd=cwd, timeout=120,
        # Deprecation warnings of dependencies (oslo.cache's eventlet
        # import, reached through dogpile's backend entry points) are
        # theirs, not the command's output.
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path),
                 PYTHONWARNINGS='ignore'))
    return done.returncode, done.stdout, done.stderr


def conf_file(tmp_path, text=''):
    path = tmp_path / 'oslo_kvs.conf'
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize('argv,message', [
    (['--config-file', '/nonexistent/oslo_kvs.conf', 'exercise'],
     'config files'),
    (['--config-file', '.', 'exercise'], 'Is a directory'),
    (['--config-dir', '/nonexistent', 'exercise'], 'directory'),
    (['exercise', '--rounds', '0'], '--rounds must be at least 1'),
    (['exercise', '--rounds', '-3'], '--rounds must be at least 1'),
    (['bench', '--plot', 'x.txt'], 'must end with one of'),
    (['bench', '--plot', '/nonexistent/dir/x.png'], 'does not exist'),
    (['bench', '--duration', 'inf'], '--duration must be positive'),
    (['bench', '--duration', '-1'], '--duration must be positive'),
    (['bench', '--value-size', '-1'], '--value-size not negative'),
    (['ping', '--count', '0'], '--count must be at least 1'),
    (['ping', '--timeout', '0'], '--timeout must be a positive'),
    (['doctor', '--timeout', '-1'], '--timeout must be a positive'),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, argv, message):
    if '--plot' in argv:
        pytest.importorskip('matplotlib')
    status, out, err = oslo_kvs(*argv, cwd=tmp_path)
    assert status == 2, err
    assert 'Traceback' not in err
    assert err.startswith('oslo-kvs: ') and err.count('\n') == 1, err
    assert message in err
    assert out == ''


@pytest.mark.parametrize('text,message', [
    ('[kvs]\nbackend = openstack.kvs.Nowhere\n', 'Unknown KVS'),
    ('[kvs]\nbackend_argument = expire_time:soon\n', 'expire_time'),
    ('[kvs]\nbackend_argument = no-colon\n', 'entry #1'),
    ('[kvs]\ndefault_lock_timeout = forever\n', 'default_lock_timeout'),
    ('[kvs\nbroken', 'oslo_kvs.conf'),
    ('[kvs]\nvalue_protection = encrypt\nprotection_keys = '
     'PASTE-THE-OUTPUT-OF-secrets.token_urlsafe-32-HERE\n', 'placeholder'),
])
@pytest.mark.parametrize('command', ['exercise', 'bench'])
def test_bad_configuration_is_one_line_and_exit_2(tmp_path, command,
                                                  text, message):
    status, out, err = oslo_kvs('--config-file', conf_file(tmp_path, text),
                                command, *QUICK[command])
    assert status == 2, err
    assert 'Traceback' not in err
    assert err.startswith('oslo-kvs: ') and err.count('\n') == 1, err
    assert message in err
    assert 'PASTE-THE-OUTPUT' not in err


def test_usage_errors_exit_2(tmp_path):
    for argv in (['no-such-command'], ['bench', '--operations', 'many'],
                 ['ping', '--format', 'xml'], []):
        status, _, err = oslo_kvs(*argv, cwd=tmp_path)
        assert status == 2, argv
        assert 'Traceback' not in err


def test_version(tmp_path):
    status, out, err = oslo_kvs('--version', cwd=tmp_path)
    assert status == 0
    assert (out + err).strip() == main.version()
    assert main.version()[0].isdigit()


@pytest.mark.parametrize('command', COMMANDS)
def test_json_on_every_subcommand(tmp_path, capsys, command):
    status = main.main(['--config-file', conf_file(tmp_path), command,
                        '--format', 'json'] + QUICK[command])
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert result['command'] == command
    assert result['interrupted'] is False


def test_bench_json_holds_the_run_parameters(tmp_path, capsys):
    assert main.main(['--config-file', conf_file(tmp_path), 'bench',
                      '--format', 'json', '--operations', '40', '--keys',
                      '7', '--batch', '3', '--value-size', '11', '--seed',
                      '5', '--duration', '30']) == 0
    result = json.loads(capsys.readouterr().out)
    parameters = result['parameters']
    assert {name: parameters[name] for name in
            ('operations', 'keys', 'batch', 'value_size', 'seed',
             'duration')} == {'operations': 40, 'keys': 7, 'batch': 3,
                              'value_size': 11, 'seed': 5, 'duration': 30.0}
    assert set(parameters['mix']) == set(result['results'])


def test_exercise_wrong_answer_is_a_symptom(tmp_path, capsys, monkeypatch):
    from oslo_kvs import core
    monkeypatch.setattr(core.KeyValueStore, 'add',
                        lambda self, key, value, **kw: False)
    status = main.main(['--config-file', conf_file(tmp_path), 'exercise',
                        '--rounds', '1', '--format', 'json'])
    assert status == 1
    result = json.loads(capsys.readouterr().out)
    assert result['error'] == 'add refused a key that was absent'


def test_exercise_interrupted(tmp_path, capsys, monkeypatch):
    from oslo_kvs import core

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(core.KeyValueStore, 'get_lock', interrupted)
    status = main.main(['--config-file', conf_file(tmp_path), 'exercise',
                        '--rounds', '1'])
    out = capsys.readouterr().out
    assert status == 130
    assert '  get ' in out and 'lock + set' not in out
    assert out.endswith('interrupted: the result above is partial\n')


def test_ping_interrupted(tmp_path, capsys, monkeypatch):
    def interrupted(store, count):
        raise KeyboardInterrupt
    monkeypatch.setattr(ping, 'store_round_trips', interrupted)
    status = main.main(['--config-file', conf_file(tmp_path), 'ping',
                        '--format', 'json'])
    assert status == 130
    assert json.loads(capsys.readouterr().out)['interrupted'] is True


def test_interrupt_outside_a_run_exits_130(tmp_path, capsys, monkeypatch):
    from oslo_kvs.cmd import common

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(common, 'open_store', interrupted)
    assert main.main(['--config-file', conf_file(tmp_path), 'bench']) == 130
    assert capsys.readouterr().err == 'oslo-kvs: interrupted\n'


@pytest.mark.parametrize('command', ['exercise', 'bench'])
def test_unreachable_server_is_a_symptom(tmp_path, command):
    from oslo_kvs_tests import servers
    text = ('[kvs]\nbacking_store = openstack.kvs.Memcached\n'
            'backend_argument = url:127.0.0.1:%d\n'
            'backend_argument = socket_timeout:0.5\n' % servers.free_port())
    status, _, err = oslo_kvs('--config-file', conf_file(tmp_path, text),
                              command, *QUICK[command])
    assert status == 1, err
    assert 'Traceback' not in err
