"""Value protection on the memory backend, and its configuration."""

import logging
import pickle
import uuid

import pytest

import oslo_kvs
from oslo_kvs import backends
from oslo_kvs.backends import memory
from oslo_kvs import exception
from oslo_kvs import protection
from oslo_kvs_tests import contract
from oslo_kvs_tests.unit import test_mongo_contract as mongo
from oslo_kvs_tests.unit.test_mongo_contract import mongomock_server  # noqa

OLD_SECRET = 'old-secret-' + 'o' * 32
NEW_SECRET = 'new-secret-' + 'n' * 32
PLAINTEXT = 'PLAINTEXT-MARKER-4242'


def make_store(**args):
    store = oslo_kvs.get_key_value_store('protect-%s' % uuid.uuid4())
    store.configure('openstack.kvs.Memory', **args)
    return store


def raw_values(store):
    """What the backend holds, exactly as it holds it."""
    return [value for value, _ in store._state.backend._data.values()]


def raw_items(store):
    return store._state.backend._data


class TestMemoryEncryptedContract(contract.StoreContract):
    expiry_wait = 1.2
    hypothesis_examples = 30

    @pytest.fixture(autouse=True)
    def _backend(self):
        self.backing_store = 'openstack.kvs.Memory'
        self.backend_args = {'value_protection': 'encrypt',
                             'protection_keys': [NEW_SECRET, OLD_SECRET]}


class TestMemoryMacContract(TestMemoryEncryptedContract):
    @pytest.fixture(autouse=True)
    def _backend(self):
        self.backing_store = 'openstack.kvs.Memory'
        self.backend_args = {'value_protection': 'MAC',
                             'protection_keys': NEW_SECRET}


class TestMongoMockEncryptedContract(mongo.TestMongoMockContract):
    hypothesis_examples = 20
    protection_args = {'value_protection': 'encrypt',
                       'protection_keys': [NEW_SECRET]}


@pytest.mark.parametrize('mode', ['encrypt', 'ENCRYPT', 'Encrypt',
                                  ' encrypt '])
def test_any_case_really_encrypts(mode):
    store = make_store(value_protection=mode, protection_keys=[NEW_SECRET])
    store.set('k', PLAINTEXT)
    assert store._state.protector.mode == 'encrypt'
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
    data = raw_items(store)
    (stored_key, (envelope, expires)), = data.items()
    for position in range(len(envelope)):
        tampered = bytearray(envelope)
        tampered[position] ^= 0x01
        data[stored_key] = (bytes(tampered), expires)
        with pytest.raises(exception.IntegrityError):
            store.get('k')
    data[stored_key] = (envelope[:-1], expires)
    with pytest.raises(exception.IntegrityError):
        store.get('k')
    data[stored_key] = (envelope, expires)
    assert store.get('k') == 'v'


@pytest.mark.parametrize('mode', ['mac', 'encrypt'])
def test_swapped_values_fail_verification(mode):
    store = make_store(value_protection=mode, protection_keys=[NEW_SECRET])
    store.set_multi({'alice': 'alice-token', 'bob': 'bob-token'})
    data = raw_items(store)
    first, second = list(data)
    data[first], data[second] = data[second], data[first]
    for key in ('alice', 'bob'):
        with pytest.raises(exception.IntegrityError):
            store.get(key)
    with pytest.raises(exception.NotFound):
        store.get_multi(['alice', 'bob'])


def test_value_moved_to_another_store_fails_verification():
    backend_args = dict(value_protection='encrypt',
                        protection_keys=[NEW_SECRET])
    source, target = make_store(**backend_args), make_store(**backend_args)
    source.set('k', 'v')
    target.set('k', 'other')
    (envelope, expires), = raw_items(source).values()
    (target_key,) = raw_items(target)
    raw_items(target)[target_key] = (envelope, expires)
    with pytest.raises(exception.IntegrityError):
        target.get('k')


def twin(store, **args):
    """A second store with the same name, holding a copy of the raw data.

    Same name means same stored keys and namespace, over its own memory
    backend: what another process would see on a shared server.
    """
    other = oslo_kvs.KeyValueStore(store.name)
    other.configure('openstack.kvs.Memory', **args)
    raw_items(other).update(raw_items(store))
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
    (old_envelope, _), = raw_items(old).values()
    rotated = twin(old, value_protection='encrypt',
                   protection_keys=[NEW_SECRET, OLD_SECRET])
    assert rotated.get('k') == 'written-with-old'
    rotated.set('k', 'rewritten')
    (new_envelope, _), = raw_items(rotated).values()
    assert new_envelope[2:6] == rotated._state.protector.active_key_id
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
    raw_items(protected)[key] = next(iter(raw_items(plain).values()))
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
    (key, (_, expires)), = raw_items(store).items()
    for poison in (pickle.dumps(Gadget()), b'\x02' + pickle.dumps(Gadget())):
        raw_items(store)[key] = (poison, expires)
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
    store = oslo_kvs.get_key_value_store('conf-%s' % uuid.uuid4(), conf=conf)
    conf.set_override('value_protection', 'Encrypt', group='kvs')
    conf.set_override('protection_keys', [NEW_SECRET], group='kvs')
    store.configure('openstack.kvs.Memory')
    store.set('k', PLAINTEXT)
    assert PLAINTEXT.encode() not in raw_values(store)[0]


def test_secrets_never_in_logs_messages_or_repr(caplog):
    caplog.set_level(logging.DEBUG)
    texts = []
    store = make_store(value_protection='encrypt',
                       protection_keys=[NEW_SECRET, OLD_SECRET])
    store.set('k', 'v')
    (key, (envelope, expires)), = raw_items(store).items()
    raw_items(store)[key] = (envelope[:-1] + b'\x00', expires)
    with pytest.raises(exception.IntegrityError) as info:
        store.get('k')
    texts += [str(info.value), repr(store), repr(store._state.protector),
              repr(store._state.protector._active)]
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
