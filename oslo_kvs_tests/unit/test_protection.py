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

"""Value protection on the memory backend, and its configuration."""

import logging
import pickle
import uuid
import weakref

from dogpile.cache import api
from dogpile.cache import proxy
import pytest

import oslo_kvs
from oslo_kvs import backends
from oslo_kvs.backends import memory
from oslo_kvs import exception
from oslo_kvs import protection
from oslo_kvs_tests import stored
from oslo_kvs_tests.unit import test_memory_contract

OLD_SECRET = 'old-secret-' + 'o' * 32
NEW_SECRET = 'new-secret-' + 'n' * 32
PLAINTEXT = 'PLAINTEXT-MARKER-4242'


class RawView(proxy.ProxyBackend):
    """The bytes a store's backend holds, through dogpile's proxy API.

    It notes the stored keys the store writes, reads them back from the
    backend and writes raw bytes under them, as a hostile server would.
    """

    def __init__(self):
        super().__init__()
        self.keys = []

    def _note(self, keys):
        self.keys.extend(key for key in keys if key not in self.keys)

    def set_serialized(self, key, value):
        self._note([key])
        return self.proxied.set_serialized(key, value)

    def set_serialized_multi(self, mapping):
        self._note(mapping)
        return self.proxied.set_serialized_multi(mapping)

    def items(self):
        found = zip(self.keys, self.proxied.get_serialized_multi(self.keys))
        return {key: value for key, value in found
                if value is not api.NO_VALUE}

    def put(self, key, value):
        self.proxied.set_serialized(key, value)


_views = weakref.WeakKeyDictionary()


def configure(store, **args):
    """Configure ``store`` on the memory backend with a :class:`RawView`."""
    view = RawView()
    stored.configure(store, 'openstack.kvs.Memory', proxy_list=[view], **args)
    _views[store] = view
    return store


def make_store(**args):
    return configure(stored.new_store(), **args)


def raw_values(store):
    """What the backend holds, exactly as it holds it."""
    return list(_views[store].items().values())


def raw_items(store):
    return _views[store].items()


def put(store, key, value):
    _views[store].put(key, value)


class TestMemoryEncryptedContract(test_memory_contract.TestMemoryContract):
    """The memory backend's contract with every value encrypted."""

    hypothesis_examples = 30
    protection_args = {'value_protection': 'encrypt',
                       'protection_keys': [NEW_SECRET, OLD_SECRET]}


class TestMemoryMacContract(TestMemoryEncryptedContract):
    """The memory backend's contract with every value authenticated."""

    protection_args = {'value_protection': 'MAC',
                       'protection_keys': NEW_SECRET}


@pytest.mark.parametrize('mode', ['encrypt', 'ENCRYPT', 'Encrypt',
                                  ' encrypt '])
def test_any_case_really_encrypts(mode):
    store = make_store(value_protection=mode, protection_keys=[NEW_SECRET])
    store.set('k', PLAINTEXT)
    assert protection.normalize_mode(mode) == 'encrypt'
    (stored,) = raw_values(store)
    assert PLAINTEXT.encode() not in stored
    assert store.get('k') == PLAINTEXT


def test_mac_mode_is_readable_but_authenticated():
    store = make_store(value_protection='mac', protection_keys=[NEW_SECRET])
    store.set('k', PLAINTEXT)
    (stored,) = raw_values(store)
    assert PLAINTEXT.encode() in stored
    assert store.get('k') == PLAINTEXT


@pytest.mark.parametrize('mode', ['mac', 'encrypt'])
def test_flipping_any_byte_fails_verification(mode):
    store = make_store(value_protection=mode, protection_keys=[NEW_SECRET])
    store.set('k', 'v')
    (stored_key, envelope), = raw_items(store).items()
    for position in range(len(envelope)):
        tampered = bytearray(envelope)
        tampered[position] ^= 0x01
        put(store, stored_key, bytes(tampered))
        with pytest.raises(exception.IntegrityError):
            store.get('k')
    put(store, stored_key, envelope[:-1])
    with pytest.raises(exception.IntegrityError):
        store.get('k')
    put(store, stored_key, envelope)
    assert store.get('k') == 'v'


@pytest.mark.parametrize('mode', ['mac', 'encrypt'])
def test_swapped_values_fail_verification(mode):
    store = make_store(value_protection=mode, protection_keys=[NEW_SECRET])
    store.set_multi({'alice': 'alice-token', 'bob': 'bob-token'})
    data = raw_items(store)
    first, second = list(data)
    put(store, first, data[second])
    put(store, second, data[first])
    for key in ('alice', 'bob'):
        with pytest.raises(exception.IntegrityError):
            store.get(key)
    with pytest.raises(exception.NotFound):
        store.get_multi(['alice', 'bob'])


@pytest.mark.parametrize('mode', ['mac', 'encrypt'])
def test_update_and_incr_never_feed_a_tampered_value(mode):
    store = make_store(value_protection=mode, protection_keys=[NEW_SECRET])
    store.set_multi({'alice': 1, 'bob': 2})
    data = raw_items(store)
    first, second = list(data)
    put(store, first, data[second])  # bob's sealed value under alice's key
    calls = []
    for call in (lambda: store.update('alice', calls.append),
                 lambda: store.update('alice', calls.append, default=0),
                 lambda: store.incr('alice')):
        with pytest.raises(exception.IntegrityError):
            call()
    assert calls == []
    assert raw_items(store)[first] == data[second]  # nothing written


def test_update_and_incr_keep_values_sealed():
    store = make_store(value_protection='encrypt',
                       protection_keys=[NEW_SECRET])
    store.set_multi({'text': 'seed', 'n': 1})
    store.update('text', lambda value: value + PLAINTEXT)
    store.incr('n', 2 ** 40)
    values = raw_values(store)
    assert len(values) == 2
    assert all(PLAINTEXT.encode() not in value and b'seed' not in value
               for value in values)
    assert store.get_multi(['text', 'n']) == ['seed' + PLAINTEXT,
                                              1 + 2 ** 40]


def test_value_moved_to_another_store_fails_verification():
    backend_args = dict(value_protection='encrypt',
                        protection_keys=[NEW_SECRET])
    source, target = make_store(**backend_args), make_store(**backend_args)
    source.set('k', 'v')
    target.set('k', 'other')
    (envelope,) = raw_items(source).values()
    (target_key,) = raw_items(target)
    put(target, target_key, envelope)
    with pytest.raises(exception.IntegrityError):
        target.get('k')


def twin(store, **args):
    """A second store with the same name, holding a copy of the raw data.

    Same name means same stored keys and namespace, over its own memory
    backend: what another process would see on a shared server.
    """
    other = configure(oslo_kvs.KeyValueStore(store.name), **args)
    for key, value in raw_items(store).items():
        put(other, key, value)
        _views[other].keys.append(key)
    return other


def test_wrong_key_fails_verification():
    writer = make_store(value_protection='encrypt',
                        protection_keys=[OLD_SECRET])
    writer.set('k', 'v')
    reader = twin(writer, value_protection='encrypt',
                  protection_keys=[NEW_SECRET])
    with pytest.raises(exception.IntegrityError):
        reader.get('k')
    with pytest.raises(exception.IntegrityError):
        twin(writer, value_protection='mac',
             protection_keys=[OLD_SECRET]).get('k')


def test_rotation_reads_old_values_and_writes_with_new_key():
    old = make_store(value_protection='encrypt', protection_keys=[OLD_SECRET])
    old.set('k', 'written-with-old')
    (old_envelope,) = raw_items(old).values()
    rotated = twin(old, value_protection='encrypt',
                   protection_keys=[NEW_SECRET, OLD_SECRET])
    assert rotated.get('k') == 'written-with-old'
    rotated.set('k', 'rewritten')
    (new_envelope,) = raw_items(rotated).values()
    active = protection.Protector('encrypt', [NEW_SECRET.encode()],
                                  rotated.name)
    assert new_envelope[2:6] == active.active_key_id
    assert new_envelope[2:6] != old_envelope[2:6]
    assert rotated.get('k') == 'rewritten'
    # Once the old secret is retired, its values no longer read.
    retired = twin(old, value_protection='encrypt',
                   protection_keys=[NEW_SECRET])
    with pytest.raises(exception.IntegrityError):
        retired.get('k')


def test_unprotected_value_is_refused_when_protection_is_on():
    plain = make_store()
    plain.set('k', 'v')
    protected = make_store(value_protection='mac',
                           protection_keys=[NEW_SECRET])
    protected.set('k', 'x')
    (key,) = raw_items(protected)
    put(protected, key, next(iter(raw_items(plain).values())))
    with pytest.raises(exception.IntegrityError):
        protected.get('k')


class Gadget:
    """Records whether unpickling ran it."""

    ran = False

    def __reduce__(self):
        return (Gadget._run, ())

    @staticmethod
    def _run():
        Gadget.ran = True
        return 'gadget ran'


@pytest.mark.parametrize('args', [
    {},
    {'serializer': 'pickle', 'value_protection': 'mac',
     'protection_keys': [NEW_SECRET]},
    {'serializer': 'pickle', 'value_protection': 'encrypt',
     'protection_keys': [NEW_SECRET]},
])
def test_poisoned_pickle_is_never_run(args):
    store = make_store(**args)
    store.set('k', 'v')
    (key,) = raw_items(store)
    for poison in (pickle.dumps(Gadget()), b'\x02' + pickle.dumps(Gadget())):
        put(store, key, poison)
        with pytest.raises(exception.IntegrityError):
            store.get('k')
    assert Gadget.ran is False


def test_pickle_allowed_on_memory_and_keeps_any_type():
    store = make_store(serializer='pickle')
    store.set('k', Gadget)
    assert store.get('k') is Gadget


class NetworkBackend(memory.MemoryBackend):
    """Pretends to keep values on a server."""

    name = 'openstack.kvs.NetworkBackend'
    local = False


def test_pickle_refused_on_network_backend_without_protection():
    backends.register_backends([__name__ + '.NetworkBackend'])
    store = oslo_kvs.get_key_value_store('pickle-%s' % uuid.uuid4())
    with pytest.raises(exception.ConfigurationError, match='pickle'):
        store.configure('openstack.kvs.NetworkBackend', serializer='pickle')
    store.configure('openstack.kvs.NetworkBackend', serializer='pickle',
                    value_protection='encrypt', protection_keys=[NEW_SECRET])
    store.set('k', {'any': Gadget})
    assert store.get('k') == {'any': Gadget}


@pytest.mark.parametrize('args, message', [
    ({'value_protection': 'aes'}, 'value_protection'),
    ({'value_protection': 'encrypt'}, 'needs at least one'),
    ({'value_protection': 'mac', 'protection_keys': ['short-secret']},
     'too short'),
    ({'value_protection': 'mac', 'protection_keys': [NEW_SECRET, NEW_SECRET]},
     'repeats'),
    ({'value_protection': 'mac', 'protection_keys': 5}, 'protection_keys'),
    ({'serializer': 'yaml'}, 'serializer'),
])
def test_bad_protection_settings(args, message):
    store = oslo_kvs.get_key_value_store('bad-%s' % uuid.uuid4())
    with pytest.raises(exception.ConfigurationError, match=message):
        store.configure('openstack.kvs.Memory', **args)
    assert not store.is_configured


def test_protection_defaults_from_config():
    from oslo_config import cfg
    conf = cfg.ConfigOpts()
    store = stored.new_store(conf=conf)
    conf.set_override('value_protection', 'Encrypt', group='kvs')
    conf.set_override('protection_keys', [NEW_SECRET], group='kvs')
    configure(store)
    store.set('k', PLAINTEXT)
    assert PLAINTEXT.encode() not in raw_values(store)[0]


def test_secrets_never_in_logs_messages_or_repr(caplog):
    caplog.set_level(logging.DEBUG)
    texts = []
    store = make_store(value_protection='encrypt',
                       protection_keys=[NEW_SECRET, OLD_SECRET])
    store.set('k', 'v')
    (key, envelope), = raw_items(store).items()
    # Flip a bit of the tag: setting a byte could leave it as it was.
    put(store, key, envelope[:-1] + bytes([envelope[-1] ^ 1]))
    with pytest.raises(exception.IntegrityError) as info:
        store.get('k')
    protector = protection.Protector(
        'encrypt', [NEW_SECRET.encode(), OLD_SECRET.encode()], store.name)
    texts += [str(info.value), repr(store), repr(protector),
              repr(protector._active)]
    short = 'tiny-' + NEW_SECRET[:8]
    with pytest.raises(exception.ConfigurationError) as info:
        make_store(value_protection='mac', protection_keys=[short])
    texts.append(str(info.value))
    with pytest.raises(exception.ConfigurationError) as info:
        make_store(value_protection='mac', protection_keys=5)
    texts.append(str(info.value))
    texts += [record.getMessage() for record in caplog.records]
    assert any('failed verification' in text for text in texts)
    for text in texts:
        for secret in (NEW_SECRET, OLD_SECRET, short, 'o' * 32, 'n' * 32):
            assert secret not in text


# Every placeholder the documentation shows, and variants a reader might
# make of them while editing.
DOC_PLACEHOLDERS = [
    'PASTE-THE-OUTPUT-OF-secrets.token_urlsafe-32-HERE',
    'ReplaceWithTheOutputOfSecretsTokenUrlsafe32',
    'paste the output of secrets.token_urlsafe(32) here',
    'CHANGE_ME_CHANGE_ME_CHANGE_ME_CHANGE_ME',
    '<your-secret-key-from-token_urlsafe-goes-here>',
]


@pytest.mark.parametrize('placeholder', DOC_PLACEHOLDERS)
@pytest.mark.parametrize('position', [0, 1])
def test_documentation_placeholders_are_refused(placeholder, position):
    keys = [NEW_SECRET, OLD_SECRET]
    keys[position] = placeholder
    store = oslo_kvs.get_key_value_store('placeholder-%s' % uuid.uuid4())
    expected = '#%d is the placeholder' % (position + 1)
    with pytest.raises(exception.ConfigurationError, match=expected) as info:
        store.configure('openstack.kvs.Memory', value_protection='encrypt',
                        protection_keys=keys)
    assert placeholder not in str(info.value)
    assert 'token_urlsafe(32)' in str(info.value)
    assert not store.is_configured


def test_placeholders_in_the_docs_are_recognized():
    """Each key the docs show in a configuration example is refused."""
    import pathlib
    import re
    docs = pathlib.Path(__file__).parents[2] / 'doc' / 'source'
    shown = set()
    for page in docs.rglob('*.rst'):
        shown.update(re.findall(r'protection_keys\s*=\s*([A-Za-z][\w.-]+)',
                                page.read_text()))
    # OLD and NEW name keys in the rotation walkthrough, not values.
    shown -= {'OLD', 'NEW'}
    assert shown, 'no example key found in the docs'
    for key in shown:
        assert protection.is_placeholder(key.encode()), key


def test_random_keys_are_never_placeholders():
    import secrets
    for _ in range(2000):
        assert not protection.is_placeholder(
            secrets.token_urlsafe(32).encode())
