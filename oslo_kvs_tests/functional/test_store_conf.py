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

"""A service's store configured by the operator, from real config files.

The service registers a group (``register_store_opts``), the operator
writes ``backend`` and ``backend_argument`` in a file, and
``configure_from_conf`` gives a working store, or the same
``ConfigurationError`` as ``configure()`` with the group and option named.
"""

import json
import os
import subprocess
import sys
import textwrap
import uuid

from oslo_config import cfg
import pytest

import oslo_kvs
from oslo_kvs import exception
from oslo_kvs import opts
from oslo_kvs import settings
from oslo_kvs_tests import stored

GROUP = 'token_store'
# 32 bytes or more, not a placeholder the library refuses.
KEY = 'q8Jx2vR7mWc4Lp9Tz6Hn3Bd5Fy1Ks0GeUaVt'
SECRET = 'Zr4hunter2-never-printed-Wq9'


def conf_from(tmp_path, text: str) -> cfg.ConfigOpts:
    """A ConfigOpts loaded from a real file holding ``text``."""
    path = tmp_path / ('%s.conf' % uuid.uuid4().hex)
    path.write_text(textwrap.dedent(text))
    conf = cfg.ConfigOpts()
    oslo_kvs.register_store_opts(conf, GROUP)
    conf(['--config-file', str(path)], default_config_files=[])
    return conf


def test_operator_picks_redis_in_the_config_file(tmp_path, redis_server):
    conf = conf_from(tmp_path, """
        [token_store]
        backend = openstack.kvs.Redis
        backend_argument = url:%s
        backend_argument = socket_timeout:2.5
        expire_time = 120
        """ % redis_server.url)
    store = stored.configure_from_conf(stored.new_store(conf=conf), GROUP)
    store.set('token', {'user': 'alice'})
    assert store.get('token') == {'user': 'alice'}
    assert store.servers() == [redis_server.url]
    # The value really is on that server, with the operator's expiry.
    client = redis_server.client()
    assert 0 < client.pttl(stored.data_key(store, 'token')) <= 120000
    store.set('forever', 1, expire_time=0)
    assert client.pttl(stored.data_key(store, 'forever')) == -1  # no expiry
    store.delete_multi(['token', 'forever'])
    assert not client.exists(stored.data_key(store, 'token'))
    client.close()
    store.close()


def test_unset_options_leave_the_kvs_defaults(tmp_path):
    conf = conf_from(tmp_path, """
        [kvs]
        value_protection = mac
        protection_keys = %s
        default_lock_timeout = 7
        [token_store]
        backend = openstack.kvs.Memory
        """ % KEY)
    parsed = settings.from_group(conf, GROUP, 'test')
    assert parsed.value_protection == 'mac'
    assert parsed.lock_timeout == 7.0
    assert parsed.ttl is None
    store = stored.new_store(conf=conf)
    store.configure_from_conf(GROUP)
    assert store.is_configured


def test_store_options_override_the_kvs_defaults(tmp_path):
    conf = conf_from(tmp_path, """
        [kvs]
        value_protection = mac
        protection_keys = %s
        [token_store]
        value_protection = Encrypt
        lock_timeout = 3
        lock_window = 0.5
        expire_time = 30
        serializer = msgpack
        """ % KEY)
    parsed = settings.from_group(conf, GROUP, 'test')
    assert parsed.value_protection == 'encrypt'
    assert (parsed.lock_timeout, parsed.lock_window, parsed.ttl) == (
        3, 0.5, 30)
    store = stored.new_store(conf=conf)
    store.configure_from_conf(GROUP)
    store.set('k', {'v'})
    assert store.get('k') == {'v'}


def test_keyword_overrides_win(tmp_path):
    conf = conf_from(tmp_path, """
        [token_store]
        backend = openstack.kvs.Nowhere
        expire_time = 30
        backend_argument = no_expiry_keys:a
        """)
    overrides = dict(backing_store='openstack.kvs.Memory', expire_time=5,
                     no_expiry_keys=['b'], locking=False)
    parsed = settings.from_group(conf, GROUP, 'test', **overrides)
    assert parsed.ttl == 5.0
    assert parsed.no_expiry == ('b',)
    assert parsed.locking is False
    store = stored.new_store(conf=conf)
    store.configure_from_conf(GROUP, **overrides)
    assert store.is_configured


def test_group_registered_on_demand(tmp_path):
    path = tmp_path / 'late.conf'
    path.write_text('[late]\nbackend = openstack.kvs.Memory\n'
                    'expire_time = 9\n')
    conf = cfg.ConfigOpts()
    conf(['--config-file', str(path)], default_config_files=[])
    store = stored.new_store(conf=conf)
    store.configure_from_conf('late')
    assert settings.from_group(conf, 'late', 'test').ttl == 9.0


def test_already_configured_as_configure(tmp_path):
    store = stored.new_store(conf=conf_from(tmp_path, '[token_store]\n'))
    store.configure_from_conf(GROUP)
    with pytest.raises(exception.AlreadyConfigured):
        store.configure_from_conf(GROUP)


# (file lines in [token_store], the configure() arguments that say the
# same in code, the option the message must name)
BAD = [
    (['backend = openstack.kvs.Nowhere'],
     ('openstack.kvs.Nowhere', {}), 'backend'),
    (['backend = openstack.kvs.Redis', 'backend_argument = colour:blue'],
     ('openstack.kvs.Redis', {'colour': 'blue'}), 'backend_argument'),
    (['backend = openstack.kvs.Redis',
      'backend_argument = socket_timeout:soon'],
     ('openstack.kvs.Redis', {'socket_timeout': 'soon'}),
     'backend_argument'),
    (['backend = openstack.kvs.Redis', 'backend_argument = port:99999'],
     ('openstack.kvs.Redis', {'port': '99999'}), 'backend_argument'),
    (['backend_argument = lock_window:-1'],
     ('openstack.kvs.Memory', {'lock_window': '-1'}), 'backend_argument'),
    (['lock_timeout = 2', 'lock_window = 1.5'],
     ('openstack.kvs.Memory', {'lock_timeout': 2.0, 'lock_window': 1.5}),
     'lock_window'),
    (['value_protection = mac'],
     ('openstack.kvs.Memory', {'value_protection': 'mac'}),
     'value_protection'),
    (['backend = openstack.kvs.Redis', 'serializer = pickle'],
     ('openstack.kvs.Redis', {'serializer': 'pickle'}), 'serializer'),
    (['backend_argument = no_expiry_keys:a', 'expire_time = nan'],
     ('openstack.kvs.Memory', {'expire_time': float('nan')}),
     'expire_time'),
]


@pytest.mark.parametrize('lines,in_code,option', BAD)
def test_bad_values_give_configures_error(tmp_path, lines, in_code,
                                          option):
    backing_store, arguments = in_code
    with pytest.raises(exception.ConfigurationError) as in_code_error:
        stored.new_store(conf=cfg.ConfigOpts()).configure(
            backing_store, **arguments)
    conf = conf_from(tmp_path, '[token_store]\n' + '\n'.join(lines) + '\n')
    store = stored.new_store(conf=conf)
    with pytest.raises(exception.ConfigurationError) as from_file:
        store.configure_from_conf(GROUP)
    message = str(from_file.value)
    # Store names differ; the rest of configure()'s message is the same.
    expected = str(in_code_error.value).split("KVS store '")[0]
    assert expected in message
    assert message.startswith('[%s] %s: ' % (GROUP, option))
    assert not store.is_configured


@pytest.mark.parametrize('lines,option', [
    (['expire_time = soon'], 'expire_time'),
    (['lock_timeout = -3'], 'lock_timeout'),
    (['value_protection = scramble'], 'value_protection'),
    (['serializer = yaml'], 'serializer'),
    (['backend_argument = no-colon-%s' % SECRET], 'backend_argument'),
    (['backend_argument = :%s' % SECRET], 'backend_argument'),
])
def test_values_oslo_config_refuses(tmp_path, lines, option):
    conf = conf_from(tmp_path, '[token_store]\n' + '\n'.join(lines) + '\n')
    with pytest.raises(exception.ConfigurationError) as caught:
        stored.new_store(conf=conf).configure_from_conf(GROUP)
    message = str(caught.value)
    assert option in message and '[%s]' % GROUP in message
    assert SECRET not in message


def test_argument_given_twice_is_refused(tmp_path):
    conf = conf_from(tmp_path, """
        [token_store]
        backend_argument = expire_time:5
        expire_time = 6
        """)
    with pytest.raises(exception.ConfigurationError,
                       match=r"'expire_time' .*both .* \[token_store\]"):
        stored.new_store(conf=conf).configure_from_conf(GROUP)
    conf = conf_from(tmp_path, """
        [token_store]
        backend = openstack.kvs.Redis
        backend_argument = password:%s
        backend_argument = password:%s
        """ % (SECRET, SECRET))
    with pytest.raises(exception.ConfigurationError,
                       match="'password' twice") as caught:
        stored.new_store(conf=conf).configure_from_conf(GROUP)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize('lines', [
    ['backend = openstack.kvs.Redis',
     'backend_argument = url:redis://:%s@127.0.0.1:1/0' % SECRET,
     'backend_argument = password:%s' % SECRET],
    ['backend = openstack.kvs.Redis',
     'backend_argument = password:%s' % SECRET,
     'backend_argument = socket_timeout:0'],
    ['value_protection = mac', 'protection_keys = %s' % SECRET],
    ['value_protection = mac',
     'backend_argument = protection_keys:%s' % SECRET],
])
def test_errors_never_show_a_secret(tmp_path, lines):
    conf = conf_from(tmp_path, '[token_store]\n' + '\n'.join(lines) + '\n')
    with pytest.raises(exception.ConfigurationError) as caught:
        stored.new_store(conf=conf).configure_from_conf(GROUP)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value.__cause__)


def test_no_clash_with_oslo_cache():
    from oslo_cache import core as cache_core
    conf = cfg.ConfigOpts()
    cache_core.configure(conf)
    opts.register_command_opts(conf)
    oslo_kvs.register_store_opts(conf, GROUP)
    oslo_kvs.register_store_opts(conf, GROUP)  # again: no error
    conf([], default_config_files=[])
    assert conf.cache.backend == 'dogpile.cache.null'
    assert conf[GROUP].backend == 'openstack.kvs.Memory'
    assert conf.kvs.backend == 'openstack.kvs.Memory'
    # oslo.cache's [cache] already has backend and backend_argument.
    with pytest.raises(exception.ConfigurationError,
                       match=r"'backend' in \[cache\]"):
        oslo_kvs.register_store_opts(conf, 'cache')


def test_command_options_left_the_published_list():
    (group, options), = opts.list_opts()
    names = {opt.name for opt in options}
    assert not names & {'backing_store', 'backend_argument', 'backend'}


def test_kvs_backing_store_still_read(tmp_path):
    path = tmp_path / 'old.conf'
    path.write_text('[kvs]\nbacking_store = openstack.kvs.Redis\n')
    conf = cfg.ConfigOpts()
    opts.register_command_opts(conf)
    conf(['--config-file', str(path)], default_config_files=[])
    assert conf.kvs.backend == 'openstack.kvs.Redis'


CONSUMER = '''
from oslo_kvs import opts


def list_opts():
    return [('token_store', opts.store_opts())]
'''


def test_config_generator_shows_store_opts(tmp_path):
    """A consumer's own list_opts() including store_opts(), generated."""
    (tmp_path / 'kvs_consumer.py').write_text(CONSUMER)
    dist = tmp_path / 'kvs_consumer-1.0.dist-info'
    dist.mkdir()
    (dist / 'METADATA').write_text(
        'Metadata-Version: 2.1\nName: kvs-consumer\nVersion: 1.0\n')
    (dist / 'entry_points.txt').write_text(
        '[oslo.config.opts]\nkvs_consumer = kvs_consumer:list_opts\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path)] + sys.path))

    def generate(*extra):
        return subprocess.run(
            [sys.executable, '-m', 'oslo_config.generator',
             '--namespace', 'kvs_consumer', *extra],
            capture_output=True, text=True, check=True, env=env).stdout

    described = json.loads(generate('--format', 'json'))
    options = {opt['name']: opt for opt in
               described['options'][GROUP]['opts']}
    assert sorted(options) == sorted(opt.name for opt in opts.store_opts())
    assert options['backend']['default'] == 'openstack.kvs.Memory'
    assert options['backend_argument']['secret'] is True
    assert options['backend_argument']['type'] == 'multi valued'
    assert options['protection_keys']['secret'] is True
    assert not options['expire_time']['secret']
    assert all(opt['help'] for opt in options.values())
    ini = generate()
    assert '[token_store]' in ini
    assert '#backend = openstack.kvs.Memory' in ini
    assert '#backend_argument =' in ini
    assert 'name:value' in ini


def test_a_bad_kvs_default_is_blamed_on_its_kvs_option(tmp_path):
    conf = conf_from(tmp_path, """
        [kvs]
        protection_keys = s3cr3t-but-short
        [token_store]
        value_protection = mac
        """)
    with pytest.raises(exception.ConfigurationError) as caught:
        stored.new_store(conf=conf).configure_from_conf(GROUP)
    assert str(caught.value).startswith('[kvs] protection_keys: ')
    assert caught.value.argument == 'protection_keys'
    assert "s3cr3t-but-short" not in str(caught.value)
