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

"""``oslo-kvs doctor``: every symptom found when present, silent when not.

Configurations are real files read by oslo.config. Addresses outside
loopback appear only in checks that read the configuration and never
connect (TEST-NET-1, 192.0.2.0/24, which is never routed).
"""

import json
import pathlib
import re
import socket
import textwrap
import threading

from oslo_config import cfg
import pytest

from oslo_kvs.cmd import doctor
from oslo_kvs.cmd import main
from oslo_kvs import opts
from oslo_kvs_tests import servers

# Real keys, as secrets.token_urlsafe(32) makes them.
GOOD_KEY = '8NAdnSMgML5veDMiRauynkVzfVmGk6jfFgMpnFn97Ew'
OTHER_KEY = 'PBsZYcv83feowLD3qhCbFZMlX-3jyaVxN_JHkKmXVn4'
PASSWORD = 'pa55-word-that-must-stay-hidden'
REMOTE = '192.0.2.10'


def write_conf(tmp_path, text: str) -> str:
    path = tmp_path / 'oslo_kvs.conf'
    path.write_text(textwrap.dedent(text))
    return str(path)


def checkup(tmp_path, text: str, **kwargs) -> doctor.Checkup:
    conf = cfg.ConfigOpts()
    opts.register_command_opts(conf)
    conf.register_opts(doctor.token_opts, group='token')
    conf(['--config-file', write_conf(tmp_path, text)], project='oslo_kvs',
         default_config_files=[])
    return doctor.Checkup(conf, **kwargs)


def present(symptom, tmp_path, text: str, **kwargs) -> bool:
    check = checkup(tmp_path, text, **kwargs)
    try:
        return symptom(check)
    finally:
        check.close()


def redis_conf(*arguments: str, kvs: str = '') -> str:
    lines = ''.join('backend_argument = %s\n' % a for a in arguments)
    return ('[kvs]\nbacking_store = openstack.kvs.Redis\n%s%s\n'
            % (lines, kvs))


PROTECTED = 'value_protection = encrypt\nprotection_keys = %s\n' % GOOD_KEY


@pytest.fixture
def closed_port():
    """A loopback port nothing listens on."""
    return servers.free_port()


@pytest.fixture
def listening_port():
    """A loopback port that accepts connections (and never answers)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        sock.listen(16)
        yield sock.getsockname()[1]


class TestInvalidConfiguration:
    symptom = staticmethod(doctor.symptom_invalid_configuration)

    @pytest.mark.parametrize('text', [
        '[kvs]\nbacking_store = openstack.kvs.Nowhere\n',
        '[kvs]\nbackend_argument = no-colon-here\n',
        '[kvs]\nbackend_argument = colour:blue\n',
        '[kvs]\nbackend_argument = expire_time:soon\n',
        '[kvs]\nvalue_protection = sometimes\n',
        '[kvs]\nvalue_protection = encrypt\n',
        '[kvs]\ndefault_lock_timeout = -1\n',
        redis_conf('url:redis://127.0.0.1:1/0', 'host:127.0.0.1'),
    ])
    def test_detected(self, tmp_path, text):
        check = checkup(tmp_path, text)
        assert self.symptom(check)
        assert check.notes

    @pytest.mark.parametrize('text', [
        '',
        '[kvs]\nbackend_argument = expire_time:60\n',
        redis_conf('host:127.0.0.1', 'port:1', kvs=PROTECTED),
    ])
    def test_not_detected(self, tmp_path, text):
        assert not present(self.symptom, tmp_path, text)


class TestKeyManglerDisabledWithMemcached:
    symptom = staticmethod(doctor.symptom_key_mangler_disabled_with_memcached)

    @pytest.mark.parametrize('store', ['openstack.kvs.Memcached',
                                       'dogpile.cache.pymemcache'])
    def test_detected(self, tmp_path, store):
        assert present(self.symptom, tmp_path, '''
            [kvs]
            backing_store = %s
            enable_key_mangler = false
            ''' % store)

    @pytest.mark.parametrize('store,mangler', [
        ('openstack.kvs.Memcached', 'true'),
        ('openstack.kvs.Redis', 'false'),
        ('openstack.kvs.Memory', 'false'),
    ])
    def test_not_detected(self, tmp_path, store, mangler):
        assert not present(self.symptom, tmp_path, '''
            [kvs]
            backing_store = %s
            enable_key_mangler = %s
            ''' % (store, mangler))


class TestUnprotectedValues:
    symptom = staticmethod(
        doctor.symptom_unprotected_values_on_network_backend)

    @pytest.mark.parametrize('text', [
        redis_conf('host:127.0.0.1'),
        redis_conf('host:127.0.0.1', kvs='value_protection = NONE\n'),
        '[kvs]\nbacking_store = openstack.kvs.Memcached\n',
    ])
    def test_detected(self, tmp_path, text):
        assert present(self.symptom, tmp_path, text)

    @pytest.mark.parametrize('text', [
        '',
        redis_conf('host:127.0.0.1', kvs=PROTECTED),
        # Given as configure() arguments rather than [kvs] defaults.
        redis_conf('host:127.0.0.1', 'value_protection:MAC',
                   'protection_keys:%s' % GOOD_KEY),
    ])
    def test_not_detected(self, tmp_path, text):
        assert not present(self.symptom, tmp_path, text)


class TestPickleWithoutProtection:
    """Refused by the settings, so reported as an invalid configuration."""

    symptom = staticmethod(doctor.symptom_invalid_configuration)

    @pytest.mark.parametrize('text', [
        redis_conf('host:127.0.0.1', kvs='serializer = pickle\n'),
        redis_conf('host:127.0.0.1', 'serializer:pickle'),
    ])
    def test_detected(self, tmp_path, text):
        check = checkup(tmp_path, text)
        assert self.symptom(check)
        assert any('pickle' in note and 'value_protection' in note
                   for note in check.notes)

    @pytest.mark.parametrize('text', [
        redis_conf('host:127.0.0.1'),
        redis_conf('host:127.0.0.1', kvs='serializer = pickle\n' + PROTECTED),
        # Values never leave the process: pickle is allowed there.
        '[kvs]\nserializer = pickle\n',
    ])
    def test_not_detected(self, tmp_path, text):
        assert not present(self.symptom, tmp_path, text)


class TestTLSOffTowardRemoteServer:
    symptom = staticmethod(doctor.symptom_tls_off_toward_remote_server)

    @pytest.mark.parametrize('store,arguments', [
        ('openstack.kvs.Redis', ['host:%s' % REMOTE]),
        ('openstack.kvs.Redis', ['url:redis://:%s@%s:6380/0'
                                 % (PASSWORD, REMOTE)]),
        ('openstack.kvs.Redis', ['sentinels:127.0.0.1:26379,%s:26379'
                                 % REMOTE, 'service_name:main']),
        ('openstack.kvs.Redis', ['cluster_nodes:cache.example.org:7000']),
        ('openstack.kvs.Memcached', ['url:127.0.0.1:11211,%s:11211'
                                     % REMOTE]),
        ('openstack.kvs.Memcached', ['url:[2001:db8::1]:11211']),
        ('openstack.kvs.MongoDB', ['db_hosts:%s:27017' % REMOTE,
                                   'db_name:ks', 'cache_collection:c']),
        ('openstack.kvs.MongoDB', ['db_hosts:mongodb://u:%s@%s/ks'
                                   % (PASSWORD, REMOTE),
                                   'db_name:ks', 'cache_collection:c']),
        # A foreign backend's arguments are read by their usual names.
        ('dogpile.cache.pymemcache', ['url:%s:11211' % REMOTE]),
    ])
    def test_detected(self, tmp_path, store, arguments):
        check = checkup(tmp_path, '[kvs]\nbacking_store = %s\n%s' % (
            store, ''.join('backend_argument = %s\n' % a
                           for a in arguments)))
        assert self.symptom(check)
        assert any(REMOTE in note or 'example.org' in note or
                   '2001:db8::1' in note for note in check.notes)
        assert not any(PASSWORD in note for note in check.notes)

    @pytest.mark.parametrize('store,arguments', [
        ('openstack.kvs.Memory', []),
        ('openstack.kvs.Redis', []),  # localhost by default
        ('openstack.kvs.Redis', ['host:127.0.0.1']),
        ('openstack.kvs.Redis', ['host:localhost']),
        ('openstack.kvs.Redis', ['url:redis://[::1]:6380/0']),
        ('openstack.kvs.Redis', ['url:unix:///run/redis.sock']),
        ('openstack.kvs.Redis', ['host:%s' % REMOTE, 'tls_enabled:true']),
        ('openstack.kvs.Redis', ['url:rediss://%s:6380/0' % REMOTE]),
        ('openstack.kvs.Memcached', ['url:127.0.0.1:11211,/run/mc.sock']),
        ('openstack.kvs.Memcached', ['url:%s:11211' % REMOTE,
                                     'tls_enabled:True']),
        ('openstack.kvs.MongoDB', ['db_hosts:mongodb://%s/ks?tls=true'
                                   % REMOTE,
                                   'db_name:ks', 'cache_collection:c']),
        ('openstack.kvs.MongoDB', ['db_hosts:%s:27017' % REMOTE,
                                   'ssl:true', 'db_name:ks',
                                   'cache_collection:c']),
    ])
    def test_not_detected(self, tmp_path, store, arguments):
        assert not present(
            self.symptom, tmp_path, '[kvs]\nbacking_store = %s\n%s' % (
                store, ''.join('backend_argument = %s\n' % a
                               for a in arguments)))


class TestProtectionKeysWeak:
    symptom = staticmethod(doctor.symptom_protection_keys_weak)

    @pytest.mark.parametrize('keys,expected', [
        ('too-short-to-be-safe', 'protection key #1 is too short'),
        ('%s,%s' % (GOOD_KEY, GOOD_KEY), 'protection key #2 repeats key #1'),
        ('%s,%s,tiny-secret-value' % (GOOD_KEY, OTHER_KEY),
         'protection key #3 is too short'),
        ('PASTE-THE-OUTPUT-OF-secrets.token_urlsafe-32-HERE,%s' % GOOD_KEY,
         'protection key #1 is the placeholder of a documentation example'),
        ('ReplaceWithTheOutputOfSecretsTokenUrlsafe32,%s' % GOOD_KEY,
         'protection key #1 is the placeholder of a documentation example'),
    ])
    def test_refused_keys_reported_without_showing_them(
            self, tmp_path, keys, expected):
        # The settings refuse them: doctor reports that refusal.
        check = checkup(tmp_path, '[kvs]\nprotection_keys = %s\n' % keys)
        assert doctor.symptom_invalid_configuration(check)
        [note] = check.notes
        assert expected in note
        assert not any(key in note for key in keys.split(','))

    @pytest.mark.parametrize('weak', [
        'a' * 40, 'password' * 5, 'abcabcabcabcabcabcabcabcabcabcabcabc'])
    def test_low_entropy(self, tmp_path, weak):
        check = checkup(tmp_path, '[kvs]\nprotection_keys = %s,%s\n'
                        % (weak, GOOD_KEY))
        assert self.symptom(check)
        assert len(check.notes) == 1
        assert check.notes[0].startswith('key #1 looks guessable')
        assert weak not in check.notes[0]

    def test_random_keys_have_enough_entropy(self):
        import secrets
        for _ in range(200):
            key = secrets.token_urlsafe(32)
            assert doctor.estimated_bits(key) >= doctor.MIN_KEY_BITS, key
        assert doctor.estimated_bits(secrets.token_hex(32)) >= 96

    def test_detected_in_backend_arguments(self, tmp_path):
        assert present(self.symptom, tmp_path,
                       '[kvs]\nbackend_argument = protection_keys:%s,%s\n'
                       % ('a' * 40, GOOD_KEY))

    @pytest.mark.parametrize('keys', ['', GOOD_KEY,
                                      '%s,%s' % (GOOD_KEY, OTHER_KEY)])
    def test_not_detected(self, tmp_path, keys):
        assert not present(self.symptom, tmp_path,
                           '[kvs]\nprotection_keys = %s\n' % keys)


class TestLockTimeoutZero:
    symptom = staticmethod(
        doctor.symptom_lock_timeout_zero_with_distributed_lock)

    @pytest.mark.parametrize('text', [
        redis_conf('host:127.0.0.1', kvs='default_lock_timeout = 0\n'),
        redis_conf('host:127.0.0.1', 'lock_timeout:0'),
        '[kvs]\nbacking_store = openstack.kvs.Memcached\n'
        'backend_argument = lock_timeout:0.0\n',
    ])
    def test_detected(self, tmp_path, text):
        assert present(self.symptom, tmp_path, text)

    @pytest.mark.parametrize('text', [
        redis_conf('host:127.0.0.1'),
        redis_conf('host:127.0.0.1', 'lock_timeout:0.5',
                   kvs='default_lock_timeout = 0\n'),
        # In-process locks die with their process.
        '[kvs]\ndefault_lock_timeout = 0\n',
    ])
    def test_not_detected(self, tmp_path, text):
        assert not present(self.symptom, tmp_path, text)


class TestExpiryShorterThanTokenLifetime:
    symptom = staticmethod(doctor.symptom_expiry_shorter_than_token_lifetime)

    @pytest.mark.parametrize('text,lifetime', [
        (redis_conf('host:127.0.0.1', 'expire_time:600')
         + '[token]\nexpiration = 3600\n', None),
        (redis_conf('host:127.0.0.1', 'redis_expiration_time:600'), 3600),
        ('[kvs]\nbackend_argument = expire_time:59.5\n'
         '[token]\nexpiration = 60\n', None),
    ])
    def test_detected(self, tmp_path, text, lifetime):
        check = checkup(tmp_path, text, token_lifetime=lifetime)
        assert self.symptom(check)
        assert check.notes and 'token lifetime' in check.notes[0]

    @pytest.mark.parametrize('text,lifetime', [
        (redis_conf('host:127.0.0.1', 'expire_time:600'), None),
        (redis_conf('host:127.0.0.1', 'expire_time:3600')
         + '[token]\nexpiration = 3600\n', None),
        (redis_conf('host:127.0.0.1') + '[token]\nexpiration = 3600\n',
         None),  # never expires
        (redis_conf('host:127.0.0.1', 'expire_time:600')
         + '[token]\nexpiration = 3600\n', 300),  # the flag wins
    ])
    def test_not_detected(self, tmp_path, text, lifetime):
        assert not present(self.symptom, tmp_path, text,
                           token_lifetime=lifetime)


class TestUnreachableServers:
    symptom = staticmethod(doctor.symptom_unreachable_servers)

    def test_detected(self, tmp_path, closed_port):
        check = checkup(tmp_path, redis_conf(
            'url:redis://:%s@127.0.0.1:%d/0' % (PASSWORD, closed_port)))
        assert self.symptom(check)
        assert check.notes == ['redis://127.0.0.1:%d/0: '
                               'ConnectionRefusedError' % closed_port]

    def test_one_of_several_memcached_servers(self, tmp_path, closed_port,
                                              listening_port):
        check = checkup(tmp_path, '''
            [kvs]
            backing_store = openstack.kvs.Memcached
            backend_argument = url:127.0.0.1:%d,127.0.0.1:%d
            ''' % (listening_port, closed_port))
        assert self.symptom(check)
        assert check.notes == ['127.0.0.1:%d: ConnectionRefusedError'
                               % closed_port]

    @pytest.mark.parametrize('store', ['openstack.kvs.Redis',
                                       'openstack.kvs.Memcached'])
    def test_not_detected(self, tmp_path, listening_port, store):
        address = '127.0.0.1:%d' % listening_port
        argument = ('url:redis://%s/0' % address
                    if store.endswith('Redis') else 'url:%s' % address)
        assert not present(self.symptom, tmp_path, '''
            [kvs]
            backing_store = %s
            backend_argument = %s
            ''' % (store, argument))

    def test_not_detected_in_memory(self, tmp_path):
        assert not present(self.symptom, tmp_path, '')


class TestRequestsFail:
    symptom = staticmethod(doctor.symptom_requests_fail)

    def test_detected_when_server_hangs_up(self, tmp_path):
        # Accepts connections, then closes them without a word.
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            sock.listen(16)
            sock.settimeout(5)
            port = sock.getsockname()[1]
            check = checkup(tmp_path, redis_conf(
                'url:redis://127.0.0.1:%d/0' % port, 'socket_timeout:0.5'))
            assert not doctor.symptom_unreachable_servers(check)
            check.notes = []

            def hang_up():
                for _ in range(2):
                    try:
                        conn, _ = sock.accept()
                    except OSError:
                        return
                    conn.close()
            thread = threading.Thread(target=hang_up, daemon=True)
            thread.start()
            try:
                assert self.symptom(check)
            finally:
                check.close()
            assert 'openstack.kvs.Redis' in check.notes[0]

    def test_not_detected_when_unreachable_already(self, tmp_path,
                                                   closed_port):
        check = checkup(tmp_path, redis_conf(
            'url:redis://127.0.0.1:%d/0' % closed_port))
        assert doctor.symptom_unreachable_servers(check)
        assert not self.symptom(check)

    def test_not_detected_in_memory(self, tmp_path):
        assert not present(self.symptom, tmp_path, '')


class TestCommand:
    """``oslo-kvs doctor`` end to end: output, exit status, secrets."""

    def test_healthy_memory_store(self, tmp_path, capsys):
        assert main.main(['--config-file', write_conf(tmp_path, ''),
                          'doctor']) == 0
        out = capsys.readouterr().out
        assert 'found no symptom' in out
        assert '%d checks' % len(doctor.symptoms()) in out

    def test_symptoms_printed_with_advice(self, tmp_path, capsys,
                                          closed_port):
        conf = write_conf(tmp_path, redis_conf(
            'url:redis://:%s@127.0.0.1:%d/0' % (PASSWORD, closed_port),
            'password:%s' % PASSWORD, 'lock_timeout:0',
            kvs='protection_keys = %s,tiny-protection-key\n' % GOOD_KEY))
        # The redis url with a password next to a password argument is
        # invalid too; doctor says so without echoing either.
        assert main.main(['--config-file', conf, 'doctor',
                          '--timeout', '0.5']) == 1
        captured = capsys.readouterr()
        text = captured.out + captured.err
        for name in ('invalid_configuration',
                     'unprotected_values_on_network_backend',
                     'protection_keys_weak',
                     'lock_timeout_zero_with_distributed_lock'):
            symptom = getattr(doctor, 'symptom_' + name)
            headline, advice = doctor.describe(symptom)
            assert '[%s] %s' % (symptom.__name__, headline) in text
            assert advice.splitlines()[0] in text
        assert PASSWORD not in text
        assert GOOD_KEY not in text
        assert 'tiny-protection-key' not in text
        assert 'protection key #2 is too short' in text
        assert '4 of %d checks' % len(doctor.symptoms()) in text

    def test_unreachable_server_exit_status(self, tmp_path, capsys,
                                            closed_port):
        conf = write_conf(tmp_path, redis_conf(
            'url:redis://127.0.0.1:%d/0' % closed_port, kvs=PROTECTED))
        assert main.main(['--config-file', conf, 'doctor']) == 1
        out = capsys.readouterr().out
        assert '[symptom_unreachable_servers]' in out
        assert out.count('[symptom_') == 1
        assert GOOD_KEY not in out

    def test_json(self, tmp_path, capsys, closed_port):
        conf = write_conf(tmp_path, redis_conf(
            'url:redis://127.0.0.1:%d/0' % closed_port, kvs=PROTECTED))
        assert main.main(['--config-file', conf, 'doctor', '--format',
                          'json']) == 1
        result = json.loads(capsys.readouterr().out)
        assert result['command'] == 'doctor'
        assert result['interrupted'] is False
        assert [s['name'] for s in result['symptoms']] == [
            'symptom_unreachable_servers']
        assert result['symptoms'][0]['details']
        assert result['checks'] == len(doctor.symptoms())

    def test_interrupted_reports_checks_so_far(self, tmp_path, capsys,
                                               monkeypatch):
        def interrupt(check):
            raise KeyboardInterrupt
        monkeypatch.setattr(doctor, 'symptom_unreachable_servers',
                            interrupt)
        conf = write_conf(tmp_path, '[kvs]\nprotection_keys = %s\n'
                          % ('a' * 40))
        assert main.main(['--config-file', conf, 'doctor', '--format',
                          'json']) == 130
        result = json.loads(capsys.readouterr().out)
        assert result['interrupted'] is True
        names = [s['name'] for s in result['symptoms']]
        assert 'symptom_protection_keys_weak' in names

    @pytest.mark.parametrize('argv', [['--timeout', '0'],
                                      ['--timeout', 'nan'],
                                      ['--token-lifetime', '-1']])
    def test_bad_arguments_exit_2(self, tmp_path, capsys, argv):
        conf = write_conf(tmp_path, '')
        assert main.main(['--config-file', conf, 'doctor'] + argv) == 2
        captured = capsys.readouterr()
        assert captured.out == ''
        assert captured.err.startswith('oslo-kvs: --')
        assert captured.err.count('\n') == 1

    def test_user_guide_lists_every_check(self):
        guide = (pathlib.Path(__file__).resolve().parents[2] / 'doc' /
                 'source' / 'user' / 'command.rst').read_text()
        names = [s.__name__ for s in doctor.symptoms()]
        assert '1 of %d checks found a symptom' % len(names) in guide
        listed = re.findall(r'^``(\w+)``  ', guide, re.MULTILINE)
        assert ['symptom_' + name for name in listed] == names

    def test_every_symptom_has_advice(self):
        for symptom in doctor.symptoms():
            headline, advice = doctor.describe(symptom)
            assert headline.endswith('.') and len(advice) > 40, symptom

    def test_token_lifetime_flag(self, tmp_path, capsys):
        conf = write_conf(tmp_path, '[kvs]\nbackend_argument = '
                                    'expire_time:30\n')
        assert main.main(['--config-file', conf, 'doctor']) == 0
        assert main.main(['--config-file', conf, 'doctor',
                          '--token-lifetime', '60']) == 1
        assert ('[symptom_expiry_shorter_than_token_lifetime]'
                in capsys.readouterr().out)
