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

"""configure() refuses every bad argument with a ConfigurationError.

For each backend, hypothesis picks an argument the backend or the store
accepts and gives it a value of the wrong kind (NaN, infinities, huge and
negative numbers, wrong types, None among them); unknown names are tried
too. Nothing connects: clients are built lazily or not at all. Every
rejection must be a ConfigurationError naming the argument and never
echoing a secret.
"""

import math
import uuid

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from oslo_config import cfg
import pytest

import oslo_kvs
from oslo_kvs.backends import base
from oslo_kvs.backends import memcached
from oslo_kvs.backends import memory
from oslo_kvs.backends import mongo
from oslo_kvs.backends import redis as redis_backend
from oslo_kvs import exception
from oslo_kvs import settings as kvs_settings
from oslo_kvs_tests import stored

SECRET = 'fuzz-secret-4d1f9a2c'

# Arguments each backend needs to get as far as checking the rest.
BACKENDS = {
    memory.MemoryBackend: {},
    memcached.MemcachedBackend: {'url': '127.0.0.1:1'},
    redis_backend.RedisBackend: {'host': '127.0.0.1', 'port': 1},
    mongo.MongoBackend: {'db_hosts': '127.0.0.1:1', 'db_name': 'd',
                         'cache_collection': 'c'},
}

# Values no numeric option accepts.
BAD_NUMBERS = st.sampled_from([
    math.nan, math.inf, -math.inf, 1e308, 2 ** 63, -(2 ** 63), -1, -0.5,
    'nan', 'inf', '-inf', '1e308', str(2 ** 64), '-3', 'soon', True,
    [1], {'a': 1}, object(), b'1'])


def _numeric(opt):
    return isinstance(opt.type, base.Number)


def _cases(backend_cls):
    numeric = [opt.name for opt in backend_cls.options if _numeric(opt)]
    numeric += ['lock_timeout', 'expire_time']
    if backend_cls.expire_time_alias:
        numeric.append(backend_cls.expire_time_alias)
    wrong_type = st.sampled_from(
        [object(), [object()], 3j, b'\xff', {'x': object()}])
    return st.one_of(
        st.tuples(st.sampled_from(sorted(numeric)), BAD_NUMBERS),
        st.tuples(st.sampled_from(['no_expiry_keys', 'protection_keys']),
                  wrong_type),
        st.tuples(st.text(min_size=1).filter(
            lambda name: name not in _known(backend_cls)).map(
                lambda name: 'zz_' + name), st.just(SECRET)))


def _known(backend_cls):
    alias = backend_cls.expire_time_alias
    return (kvs_settings.STORE_ARGUMENTS | backend_cls.argument_names() |
            ({alias} if alias else set()))


@pytest.mark.parametrize('backend_cls', list(BACKENDS),
                         ids=lambda cls: cls.name)
def test_bad_arguments_are_configuration_errors(backend_cls):
    @settings(max_examples=150, deadline=None)
    @given(_cases(backend_cls))
    def check(case):
        name, value = case
        store = oslo_kvs.get_key_value_store(uuid.uuid4().hex)
        arguments = dict(BACKENDS[backend_cls], password=SECRET)
        if backend_cls is memory.MemoryBackend:
            del arguments['password']
        arguments[name] = value
        with pytest.raises(exception.ConfigurationError) as info:
            store.configure(backend_cls.name, **arguments)
        message = str(info.value)
        assert name in message
        assert SECRET not in message
        assert not store.is_configured

    check()


@pytest.mark.parametrize('backend_cls', list(BACKENDS),
                         ids=lambda cls: cls.name)
@pytest.mark.parametrize('blank', ['', '  ', None])
def test_blank_means_the_default(backend_cls, blank):
    arguments = dict(BACKENDS[backend_cls])
    for opt in backend_cls.options:
        if _numeric(opt) and opt.name not in arguments:
            arguments[opt.name] = blank
    arguments.update(lock_timeout=blank, expire_time=blank)
    store = stored.make_store(backend_cls.name, **arguments)
    try:
        assert stored.expiry(store)[0] is None
        # The store reads [kvs] of cfg.CONF, as it was given no conf.
        assert store.get_lock('k').lock_timeout == (
            cfg.CONF.kvs.default_lock_timeout)
    finally:
        store.close()


def test_redis_pool_maxsize_is_bounded():
    store = oslo_kvs.get_key_value_store(uuid.uuid4().hex)
    with pytest.raises(exception.ConfigurationError, match='pool_maxsize'):
        store.configure('openstack.kvs.Redis', host='127.0.0.1',
                        pool_maxsize=10 ** 9)
