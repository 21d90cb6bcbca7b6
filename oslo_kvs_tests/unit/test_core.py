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

"""Registry, configure() errors, mangler precedence, proxies, concurrency."""

import gc
import math
import threading
import time
import uuid

from dogpile.cache import proxy
from dogpile.cache import region as dogpile_region
from oslo_config import cfg
from oslo_config import types as cfg_types
import pytest

import oslo_kvs
from oslo_kvs import backends
from oslo_kvs.backends import base
from oslo_kvs.backends import memory
from oslo_kvs import exception
from oslo_kvs_tests import stored


def new_name():
    return 'unit-%s' % uuid.uuid4()


def fresh_store(**kwargs):
    return oslo_kvs.get_key_value_store(new_name(), **kwargs)


# --- registry ----------------------------------------------------------------

def test_same_name_gives_same_store_while_referenced():
    name = new_name()
    first = oslo_kvs.get_key_value_store(name)
    assert oslo_kvs.get_key_value_store(name) is first


def test_store_is_fresh_once_unreferenced():
    name = new_name()
    store = oslo_kvs.get_key_value_store(name)
    store.configure('openstack.kvs.Memory')
    first_id = id(store)
    del store
    gc.collect()
    again = oslo_kvs.get_key_value_store(name)
    assert not again.is_configured
    assert id(again) != first_id or not again.is_configured


def test_store_name_must_be_str():
    with pytest.raises(TypeError):
        oslo_kvs.get_key_value_store(b'bytes')


def test_many_threads_get_one_store():
    name = new_name()
    seen = []
    barrier = threading.Barrier(16)

    def fetch():
        barrier.wait()
        seen.append(oslo_kvs.get_key_value_store(name))

    threads = [threading.Thread(target=fetch) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(store) for store in seen}) == 1


# --- configure ---------------------------------------------------------------

def test_use_before_configure_names_the_store():
    store = fresh_store()
    for call in (lambda: store.get('k'), lambda: store.set('k', 1),
                 lambda: store.get_multi(['k']), lambda: store.add('k', 1),
                 lambda: store.delete('k'), lambda: store.get_lock('k')):
        with pytest.raises(exception.NotConfigured, match=store.name):
            call()
    assert not store.is_configured


def test_configure_twice_raises_already_configured():
    store = fresh_store()
    store.configure('openstack.kvs.Memory')
    assert store.is_configured
    with pytest.raises(exception.AlreadyConfigured) as info:
        store.configure('openstack.kvs.Memory')
    assert isinstance(info.value, RuntimeError)


def test_configure_race_has_exactly_one_winner():
    store = fresh_store()
    outcomes = []
    barrier = threading.Barrier(12)

    def configure():
        barrier.wait()
        try:
            store.configure('openstack.kvs.Memory')
            outcomes.append('won')
        except exception.AlreadyConfigured:
            outcomes.append('lost')

    threads = [threading.Thread(target=configure) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count('won') == 1
    assert outcomes.count('lost') == 11


def test_concurrent_use_from_many_threads():
    store = fresh_store()
    store.configure('openstack.kvs.Memory')
    errors = []

    def work(n):
        try:
            for i in range(200):
                key = 'thread-%d-%d' % (n, i % 10)
                store.set(key, i)
                assert store.get(key) == i
                with store.get_lock('shared') as lock:
                    store.set('shared', n, lock=lock)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.get('shared') in range(8)


@pytest.mark.parametrize('backing_store', ['openstack.kvs.Nope', 'nope', ''])
def test_unknown_backend_is_named(backing_store):
    store = fresh_store()
    with pytest.raises(exception.ConfigurationError) as info:
        store.configure(backing_store)
    assert repr(backing_store) in str(info.value)
    assert not store.is_configured


def test_backing_store_must_be_a_name():
    with pytest.raises(exception.ConfigurationError):
        fresh_store().configure(memory.MemoryBackend)


@pytest.mark.parametrize('args, named', [
    ({'expire_time': 'soon'}, 'expire_time'),
    ({'expire_time': -1}, 'expire_time'),
    ({'expire_time': True}, 'expire_time'),
    ({'max_items': '1.5'}, 'max_items'),
    ({'lock_timeout': 'never'}, 'lock_timeout'),
    ({'lock_timeout': -3}, 'lock_timeout'),
    ({'locking': 'maybe'}, 'locking'),
    ({'typo_argument': 1}, 'typo_argument'),
])
def test_bad_arguments_are_configuration_errors(args, named):
    store = fresh_store()
    with pytest.raises(exception.ConfigurationError, match=named):
        store.configure('openstack.kvs.Memory', **args)
    assert not store.is_configured
    store.configure('openstack.kvs.Memory')  # still configurable


@pytest.mark.parametrize('text, expected', [
    ('False', False), ('false', False), ('0', False), ('no', False),
    ('True', True), ('1', True), (False, False), (True, True)])
def test_locking_strings_are_coerced(text, expected):
    store = fresh_store()
    store.configure('openstack.kvs.Memory', locking=text)
    assert store.get_lock('k').enabled is expected


def test_string_arguments_are_coerced():
    store = stored.configure(fresh_store(), 'openstack.kvs.Memory',
                             expire_time='2.5', no_expiry_keys='a, b',
                             lock_timeout='7')
    assert stored.expiry(store) == (2.5, {stored.data_key(store, 'a'),
                                          stored.data_key(store, 'b')})
    assert store.get_lock('k').lock_timeout == 7


def test_lock_timeout_defaults_from_config():
    conf = cfg.ConfigOpts()
    store = fresh_store(conf=conf)
    conf.set_override('default_lock_timeout', 11, group='kvs')
    store.configure('openstack.kvs.Memory')
    assert store.get_lock('k').lock_timeout == 11


def test_non_callable_key_mangler_is_refused():
    store = fresh_store()
    with pytest.raises(exception.ConfigurationError, match="'sha'"):
        store.configure('openstack.kvs.Memory', key_mangler='sha')


def test_kvs_region_is_used_and_must_be_unconfigured():
    region = dogpile_region.make_region()
    store = fresh_store(kvs_region=region)
    store.configure('openstack.kvs.Memory')
    assert isinstance(region.actual_backend, memory.MemoryBackend)

    configured = dogpile_region.make_region().configure(
        'dogpile.cache.memory')
    with pytest.raises(exception.AlreadyConfigured):
        fresh_store(kvs_region=configured).configure('openstack.kvs.Memory')


# --- key mangling ------------------------------------------------------------

def _entries(store):
    """The memory backend's entries: stored key -> (value, deadline).

    Internal on purpose: they show the keys and expiry deadlines the store
    gave its backend, without waiting for anything to expire.
    """
    return store._state.backend._data


def _stored_keys(store):
    return list(_entries(store))


def upper_mangler(key):
    return 'UPPER:' + key.upper()


class ManglingBackend(memory.MemoryBackend):
    """A backend with a mangler of its own."""

    name = 'openstack.kvs.ManglingBackend'

    @staticmethod
    def key_mangler(key):
        return 'backend:' + key


class InsistingBackend(ManglingBackend):
    """A backend that wants its mangler even over an explicit one."""

    name = 'openstack.kvs.InsistingBackend'
    use_backend_key_mangler = True


@pytest.fixture
def mangling_backends():
    prefix = __name__ + '.'
    backends.register_backends([prefix + 'ManglingBackend',
                                prefix + 'InsistingBackend'])


def test_default_mangler_is_fixed_length_hash():
    store = fresh_store()
    store.configure('openstack.kvs.Memory')
    store.set('x' * 5000, 1)
    store.set('ключ', 2)
    assert all(len(key) == 64 for key in _stored_keys(store))


# Who mangles: an explicit mangler beats the backend's, the backend's
# beats the default, and a backend that insists beats them all.
@pytest.mark.parametrize('backing_store, mangler, prefix', [
    ('openstack.kvs.Memory', upper_mangler, 'UPPER:'),
    ('openstack.kvs.ManglingBackend', None, 'backend:'),
    ('openstack.kvs.ManglingBackend', upper_mangler, 'UPPER:'),
    ('openstack.kvs.InsistingBackend', upper_mangler, 'backend:'),
], ids=['explicit-is-used', 'backend-beats-default',
        'explicit-beats-backend', 'insisting-backend-beats-explicit'])
def test_mangler_precedence(mangling_backends, backing_store, mangler,
                            prefix):
    store = fresh_store()
    store.configure(backing_store, key_mangler=mangler)
    store.set('k', 1)
    assert _stored_keys(store)
    assert all(key.startswith(prefix) for key in _stored_keys(store))


def test_disabled_mangler_stores_namespaced_keys():
    conf = cfg.ConfigOpts()
    store = fresh_store(conf=conf)
    conf.set_override('enable_key_mangler', False, group='kvs')
    store.configure('openstack.kvs.Memory', key_mangler=upper_mangler)
    store.set('plain', 1)
    with store.get_lock('plain'):
        pass
    assert _stored_keys(store) == ['openstack.kvs:%s:k:plain' % store.name]


def test_no_expiry_keys_follow_the_mangler():
    store = fresh_store()
    store.configure('openstack.kvs.Memory', key_mangler=upper_mangler,
                    expire_time=100, no_expiry_keys=['keep'])
    store.set_multi({'keep': 1, 'other': 2})
    entries = _entries(store)
    expiries = {key.rpartition(':')[2]: entries[key][1] - time.monotonic()
                for key in _stored_keys(store)}
    assert expiries['KEEP'] == math.inf
    assert 99 < expiries['OTHER'] <= 100


def test_any_str_names_a_store():
    # Keys may hold lone surrogates, and so may names.
    suffix = uuid.uuid4()
    conf = cfg.ConfigOpts()
    oslo_kvs.opts.register_opts(conf)
    conf.set_override('enable_key_mangler', False, group='kvs')
    written = []

    class Recorder(proxy.ProxyBackend):
        def set_serialized(self, key, value):
            written.append(key)
            self.proxied.set_serialized(key, value)

    stores = [oslo_kvs.get_key_value_store(name % suffix, conf=conf)
              for name in ('surrogate-\ud800-%s', 'surrogate-\udfff-%s',
                           'ключ-%s')]
    for number, store in enumerate(stores):
        store.configure('openstack.kvs.Memory', proxy_list=[Recorder])
        store.set('k', number)
        assert store.get('k') == number
    assert len(set(written)) == len(stores)
    assert all(key.isascii() and key.endswith(':k:k') for key in written)


def test_config_prefix_separates_deployments():
    conf_a, conf_b = cfg.ConfigOpts(), cfg.ConfigOpts()
    region = dogpile_region.make_region()
    a = oslo_kvs.core.KeyValueStore('same', kvs_region=region, conf=conf_a)
    b = oslo_kvs.core.KeyValueStore('same', conf=conf_b)
    conf_b.set_override('config_prefix', 'other', group='kvs')
    stored.configure(a, 'openstack.kvs.Memory')
    stored.configure(b, 'openstack.kvs.Memory')
    assert stored.data_key(a, 'k') != stored.data_key(b, 'k')


def test_sha1_mangler_stays_available():
    assert oslo_kvs.sha1_mangle_key('k') == \
        '13fbd79c3d390e5d6585a21e11ff5ec1970cff0c'


# --- proxies -----------------------------------------------------------------

class RecordingProxy(proxy.ProxyBackend):
    """Records its tag, in :attr:`calls` and :attr:`seen`, on each set."""

    #: Tags of every proxy's sets, in call order (cleared by tests).
    seen: list[str] = []

    def __init__(self, tag='inner'):
        super().__init__()
        self.tag = tag
        self.calls = []

    def set_serialized(self, key, value):
        self.calls.append(self.tag)
        RecordingProxy.seen.append(self.tag)
        return self.proxied.set_serialized(key, value)


class OuterProxy(RecordingProxy):
    def __init__(self):
        super().__init__('outer')


def test_first_proxy_is_outermost():
    outer, inner = OuterProxy(), RecordingProxy('inner')
    store = fresh_store()
    store.configure('openstack.kvs.Memory', proxy_list=[outer, inner])
    RecordingProxy.seen.clear()
    store.set('k', 1)
    assert RecordingProxy.seen == ['outer', 'inner']
    assert outer.proxied is inner
    assert outer.calls == ['outer'] and inner.calls == ['inner']


def test_proxy_by_dotted_path_and_class():
    store = fresh_store()
    store.configure('openstack.kvs.Memory',
                    proxy_list=[__name__ + '.OuterProxy', RecordingProxy])
    RecordingProxy.seen.clear()
    store.set('k', 1)
    assert RecordingProxy.seen == ['outer', 'inner']
    assert store.get('k') == 1


@pytest.mark.parametrize('bad', ['no.such.Proxy', 'oslo_kvs.core.Nothing',
                                 dict, 42, object()])
def test_bad_proxy_is_named(bad):
    store = fresh_store()
    with pytest.raises(exception.ConfigurationError) as info:
        store.configure('openstack.kvs.Memory', proxy_list=[bad])
    assert repr(bad) in str(info.value)
    assert not store.is_configured


# --- out-of-tree backends ----------------------------------------------------

class ExtraBackend(memory.MemoryBackend):
    """An out-of-tree backend for the registration tests."""

    name = 'openstack.kvs.ExtraBackend'
    #: Every instance made, so tests see which backend a store got.
    made: list['ExtraBackend'] = []

    def __init__(self, arguments):
        super().__init__(arguments)
        ExtraBackend.made.append(self)


def test_backend_from_config_is_registered():
    conf = cfg.ConfigOpts()
    store = fresh_store(conf=conf)
    conf.set_override('backends', [__name__ + '.ExtraBackend'], group='kvs')
    ExtraBackend.made.clear()
    store.configure('openstack.kvs.ExtraBackend')
    assert len(ExtraBackend.made) == 1
    store.set('k', 'v')
    assert len(ExtraBackend.made[0]) == 1  # the store's value went there
    assert 'openstack.kvs.ExtraBackend' in backends.registered()


@pytest.mark.parametrize('path', ['no_such_module.Backend',
                                  'oslo_kvs.core.NoSuchClass', 'NoDots',
                                  'oslo_kvs.core.KeyValueStore'])
def test_bad_backend_path_is_named(path):
    conf = cfg.ConfigOpts()
    store = fresh_store(conf=conf)
    conf.set_override('backends', [path], group='kvs')
    with pytest.raises(exception.ConfigurationError, match=path):
        store.configure('openstack.kvs.Memory')


def test_backend_name_clash_with_builtin_is_refused():
    with pytest.raises(exception.ConfigurationError,
                       match='openstack.kvs.Memory'):
        backends.register_backends([__name__ + '.Memory'])


def test_backend_name_clash_between_modules_is_refused():
    backends.register_backends([__name__ + '.ExtraBackend'])
    with pytest.raises(exception.ConfigurationError, match='already'):
        backends.register_backends(['oslo_kvs_tests.unit.test_memory_contract'
                                    '.ExtraBackend'])


Memory = ExtraBackend  # a class whose name is the built-in backend's


# --- locks -------------------------------------------------------------------

def test_lock_from_another_store_is_refused():
    a, b = fresh_store(), fresh_store()
    a.configure('openstack.kvs.Memory')
    b.configure('openstack.kvs.Memory')
    with a.get_lock('k') as lock:
        with pytest.raises(exception.LockError):
            b.set('k', 1, lock=lock)


def test_lock_must_be_a_lock():
    store = fresh_store()
    store.configure('openstack.kvs.Memory')
    with pytest.raises(exception.LockError):
        store.set('k', 1, lock=threading.Lock())


def test_lock_cannot_be_acquired_twice_by_one_object():
    store = fresh_store()
    store.configure('openstack.kvs.Memory')
    lock = store.get_lock('k')
    lock.acquire()
    with pytest.raises(exception.LockError):
        lock.acquire()
    lock.release()
    assert not lock.active and not lock.expired


def test_zero_lock_timeout_never_expires():
    store = fresh_store()
    store.configure('openstack.kvs.Memory', lock_timeout=0)
    with store.get_lock('k') as lock:
        assert not lock.expired
        store.set('k', 1, lock=lock)


def test_lock_error_is_value_error():
    assert issubclass(exception.LockError, ValueError)
    assert issubclass(exception.ConfigurationError, ValueError)
    assert issubclass(exception.IntegrityError, exception.NotFound)
    assert issubclass(exception.ValueTooLarge, ValueError)


class CountingProxy(proxy.ProxyBackend):
    """Counts the writes that reach the backend through it."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def set_serialized_multi(self, mapping):
        self.batches.append(sorted(mapping))
        return self.proxied.set_serialized_multi(mapping)


def test_mixed_batch_is_one_backend_call_per_ttl_through_proxies():
    counting = CountingProxy()
    store = fresh_store()
    store.configure('openstack.kvs.Memory', proxy_list=[counting],
                    key_mangler=upper_mangler, expire_time=100,
                    no_expiry_keys=('keep', 'also'))
    store.set_multi({'keep': 1, 'also': 2, 'a': 3, 'b': 4})
    assert sorted(len(batch) for batch in counting.batches) == [2, 2]
    store.set('c', 5, expire_time=7)
    entries = _entries(store)
    left = {key.rpartition(':')[2]: entries[key][1] - time.monotonic()
            for key in _stored_keys(store)}
    assert left['KEEP'] == left['ALSO'] == math.inf
    assert 99 < left['A'] <= 100 and 99 < left['B'] <= 100
    assert 6 < left['C'] <= 7


@pytest.mark.parametrize('keys', [{'keep'}, ('keep',), ['keep'], 'keep, x'])
def test_no_expiry_keys_forms(keys):
    store = stored.configure(fresh_store(), 'openstack.kvs.Memory',
                             expire_time=100, no_expiry_keys=keys)
    assert stored.data_key(store, 'keep') in stored.expiry(store)[1]


@pytest.mark.parametrize('keys', [5, [b'keep'], {'keep': 1}, ['k', None]])
def test_bad_no_expiry_keys_are_refused(keys):
    with pytest.raises(exception.ConfigurationError, match='no_expiry_keys'):
        fresh_store().configure('openstack.kvs.Memory', no_expiry_keys=keys)


# --- error translation -------------------------------------------------------

class FailingBackend(memory.MemoryBackend):
    """Fails the way a client does: OSError, TypeError or a KVSError."""

    name = 'openstack.kvs.FailingBackend'
    server_errors = (OSError,)
    options = memory.MemoryBackend.options + (
        base.Option('password', cfg_types.String(), secret=True),)
    failure: BaseException | None = None

    def servers(self):
        return ['127.0.0.1:1']

    @base.translate_errors
    def get_serialized(self, key):
        raise self.failure


@pytest.mark.parametrize('password', [None, 'hunter2-secret'])
def test_server_errors_become_backend_errors(password, monkeypatch):
    backends.register_backends([__name__ + '.FailingBackend'])
    store = fresh_store()
    store.configure('openstack.kvs.FailingBackend', password=password)
    backend = FailingBackend  # what its instance raises
    monkeypatch.setattr(backend, 'failure', None)
    cause = OSError('connection to 127.0.0.1:1 refused (password %s)'
                    % password)
    backend.failure = cause
    with pytest.raises(exception.BackendError) as info:
        store.get('k')
    message = str(info.value)
    assert 'openstack.kvs.FailingBackend' in message
    assert '127.0.0.1:1' in message and 'OSError' in message
    # The cause is chained unless it may carry a secret.
    if password:
        assert password not in message and info.value.__cause__ is None
    else:
        assert info.value.__cause__ is cause
    backend.failure = TypeError('a bug')
    with pytest.raises(TypeError, match='a bug'):
        store.get('k')
    backend.failure = exception.ValueTooLarge('exact words')
    with pytest.raises(exception.ValueTooLarge, match='^exact words$'):
        store.get('k')


@pytest.mark.parametrize('call', ['set', 'add', 'set_multi'])
def test_bad_call_expiry_is_refused_for_a_no_expiry_key_too(call):
    store = oslo_kvs.get_key_value_store('exempt-%s' % uuid.uuid4())
    store.configure('openstack.kvs.Memory', no_expiry_keys=['k'])
    write = getattr(store, call)
    with pytest.raises(ValueError, match='expire_time'):
        if call == 'set_multi':
            write({'k': 1}, expire_time=-1)
        else:
            write('k', 1, expire_time=-1)
    with pytest.raises(exception.NotFound):
        store.get('k')


class _SlowClock:
    """Stands for ``time`` in oslo_kvs.core: sleeps are recorded, not slept.

    Every read of a version takes ``read_takes`` seconds of it, as on a
    server that stalls and then answers.
    """

    def __init__(self, read_takes):
        self.now = 0.0
        self.read_takes = read_takes
        self.sleeps = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_update_pauses_stay_short_after_slow_attempts(monkeypatch):
    # Unbounded, each pause was up to 2**7 slow attempts long: minutes.
    clock = _SlowClock(read_takes=1.0)
    monkeypatch.setattr(oslo_kvs.core, 'time', clock)
    store = fresh_store()
    store.configure('openstack.kvs.Memory')
    backend = store._state.backend
    read = backend.get_versioned

    def slow_read(key):
        clock.now += clock.read_takes
        return read(key)
    monkeypatch.setattr(backend, 'get_versioned', slow_read)
    store.set('k', 0)

    def always_losing(value):
        store.set('k', value + 1)
        return 'never stored'
    with pytest.raises(exception.Conflict):
        store.update('k', always_losing)
    attempts = cfg.CONF.kvs.update_attempts
    assert len(clock.sleeps) == attempts - 1
    assert max(clock.sleeps) <= oslo_kvs.core.UPDATE_BACKOFF_MAX
