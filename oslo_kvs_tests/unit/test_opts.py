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

"""The [kvs] options and their config-generator entry point."""

import subprocess
import sys

from oslo_config import cfg

from oslo_kvs import opts


def test_list_opts_names_every_kvs_option():
    (group, options), = opts.list_opts()
    assert group == 'kvs'
    names = {opt.dest for opt in options}
    assert {'backends', 'config_prefix', 'enable_key_mangler',
            'default_lock_timeout'} <= names


def test_list_opts_returns_copies():
    (_, options), = opts.list_opts()
    options[0].default = 'changed'
    assert opts.kvs_opts[0].default != 'changed'


def test_options_do_not_clash_with_oslo_cache():
    from oslo_cache import core as cache_core
    conf = cfg.ConfigOpts()
    cache_core.configure(conf)
    opts.register_opts(conf)
    opts.register_command_opts(conf)
    conf([], default_config_files=[])
    assert conf.kvs.default_lock_timeout == 5
    assert conf.cache.enabled is False


def test_config_generator_prints_kvs_options():
    result = subprocess.run(
        [sys.executable, '-m', 'oslo_config.generator',
         '--namespace', 'oslo.kvs'],
        capture_output=True, text=True, check=True)
    assert '[kvs]' in result.stdout
    for name in ('backends', 'config_prefix', 'enable_key_mangler',
                 'default_lock_timeout'):
        assert '\n#%s =' % name in result.stdout
