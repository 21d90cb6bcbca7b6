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

"""What the migration guide promises Keystone users."""

import pathlib
import re

from dogpile.cache import region as dogpile_region
from oslo_config import cfg
import pytest

import oslo_kvs
from oslo_kvs.cmd import common
from oslo_kvs import opts

GUIDE = (pathlib.Path(__file__).parents[2] / 'doc' / 'source' / 'user' /
         'migration.rst')


def test_keystone_style_constructor_points_to_get_key_value_store():
    region = dogpile_region.make_region()
    with pytest.raises(TypeError) as info:
        oslo_kvs.KeyValueStore(region)
    message = str(info.value)
    assert 'get_key_value_store(name, kvs_region=region)' in message
    assert 'CacheRegion' in message


def test_memcache_options_example_configures(tmp_path):
    """The guide's [kvs] translation of [memcache] is accepted as written."""
    text = GUIDE.read_text()
    example = re.search(r'becomes::\n\n((?:   .*\n)+)', text).group(1)
    path = tmp_path / 'kvs.conf'
    path.write_text(example.replace('\n   ', '\n').strip() + '\n')
    conf = cfg.ConfigOpts()
    opts.register_command_opts(conf)
    conf(['--config-file', str(path)], default_config_files=[])
    store = common.open_store(conf)
    try:
        assert sorted(store.servers()) == [
            '10.0.0.1:11211',
            '10.0.0.2:11211']
    finally:
        store.close()


def test_every_memcache_option_is_a_backend_argument():
    from oslo_kvs.backends import memcached
    names = set()
    for option in memcached.MemcachedBackend.options:
        names.update((option.name,) + option.aliases)
    table = GUIDE.read_text().split("Keystone's ``[memcache]`` options")[1]
    table = table.split('For example')[0]
    mapped = re.findall(r'^     - ``(\w+)``', table, re.MULTILINE)
    assert len(mapped) == 6
    assert set(mapped) <= names
