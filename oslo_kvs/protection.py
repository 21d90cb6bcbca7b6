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

"""Value protection: authenticated encryption or MAC, with key rotation.

A protected value is an envelope::

    magic (1) | mode (1) | key id (4) | body

``encrypt`` bodies are a 12-byte nonce and the AES-256-GCM ciphertext with
its tag; ``mac`` bodies are the serialized value followed by an
HMAC-SHA256 tag. Both authenticate the header and *associated data* made of
the store's namespace and the caller's original key, so a value copied to
another key or another store fails verification.

Each configured secret yields, through HKDF-SHA256, an encryption key, a
MAC key and a public key id. New values use the first secret; every secret
is accepted on read, so secrets rotate without losing data. Verification
always happens before the bytes reach the deserializer.
"""

import hmac
import os
import typing as ty

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from oslo_kvs import exception

MODES = ('none', 'mac', 'encrypt')
#: Shortest secret accepted, in bytes of UTF-8.
MIN_KEY_BYTES = 32

# First byte of an envelope; the serialization formats use other values.
MAGIC = b'\xf1'
_MODE_BYTES = {'mac': b'\x01', 'encrypt': b'\x02'}
_HEADER = 6
_NONCE = 12
_MAC = 32

#: Words found in the documentation's placeholder keys (compared in lower
#: case with everything but letters and digits removed). Each is long
#: enough that a random secret holds it with negligible probability, so a
#: real key is never refused for it.
PLACEHOLDER_MARKERS = ('tokenurlsafe', 'outputof', 'replacewith',
                       'pastethe', 'changeme', 'placeholder', 'yoursecret',
                       'yourkey')


def _derive(secret: bytes, purpose: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                info=b'oslo_kvs v1 ' + purpose).derive(secret)


def _length_prefixed(text: str) -> bytes:
    data = text.encode('utf-8', 'surrogatepass')
    return len(data).to_bytes(4, 'big') + data


class Protector:
    """Seals and opens values for one store.

    :param mode: ``'mac'`` or ``'encrypt'``.
    :param secrets: the secrets; the first protects new values.
    :param namespace: the store's identity, bound into every value.
    """

    def __init__(self, mode: str, secrets: ty.Sequence[bytes],
                 namespace: str) -> None:
        self.mode = mode
        self._encrypt = mode == 'encrypt'
        self._magic_mode = MAGIC + _MODE_BYTES[mode]
        self._min_length = _HEADER + (_NONCE + 16 if self._encrypt
                                      else _MAC)
        # Per key id, its AEAD, its HMAC (copied per tag, so the key's pads
        # are not derived again each time) and the start of its associated
        # data: header and namespace. Only the caller's key varies per call.
        self._by_id = {}
        for secret in secrets:
            key_id = _derive(secret, b'key id', 4)
            self._by_id[key_id] = (
                AESGCM(_derive(secret, b'encrypt', 32)),
                hmac.new(_derive(secret, b'mac', 32), digestmod='sha256'),
                self._magic_mode + key_id + _length_prefixed(namespace))
        #: The public id of the key that protects new values.
        self.active_key_id = next(iter(self._by_id))
        self._active = self._by_id[self.active_key_id]
        self._header = self._active[2][:_HEADER]

    def __repr__(self) -> str:
        return '<Protector mode=%s key ids=%s>' % (
            self.mode, ','.join(k.hex() for k in self._by_id))

    def seal(self, key: str, data: bytes) -> bytes:
        """Protect serialized ``data`` stored under the caller's ``key``."""
        aead, mac, prefix = self._active
        associated = prefix + _length_prefixed(key)
        if self._encrypt:
            nonce = os.urandom(_NONCE)
            return b''.join((self._header, nonce, aead.encrypt(
                nonce, data, associated)))
        return b''.join((self._header, data, _tag(mac, associated, data)))

    def open(self, key: str, envelope: bytes) -> bytes:
        """Verify ``envelope`` and return the serialized value inside.

        :raises exception.IntegrityError: for anything not sealed by this
            store under this key with one of its secrets, in its mode.
        """
        found = self._by_id.get(envelope[2:_HEADER])
        if (found is None or not envelope.startswith(self._magic_mode) or
                len(envelope) < self._min_length):
            raise exception.IntegrityError(key)
        aead, mac, prefix = found
        associated = prefix + _length_prefixed(key)
        if self._encrypt:
            try:
                return aead.decrypt(envelope[_HEADER:_HEADER + _NONCE],
                                    envelope[_HEADER + _NONCE:], associated)
            except InvalidTag:
                raise exception.IntegrityError(key) from None
        data = envelope[_HEADER:-_MAC]
        if not hmac.compare_digest(envelope[-_MAC:],
                                   _tag(mac, associated, data)):
            raise exception.IntegrityError(key)
        return data


def _tag(mac: ty.Any, associated: bytes, data: bytes) -> bytes:
    mac = mac.copy()
    mac.update(associated)
    mac.update(data)
    return mac.digest()


def normalize_mode(mode: ty.Any) -> str:
    """``value_protection`` in canonical form.

    :raises exception.ConfigurationError: for anything but none, mac or
        encrypt (in any case).
    """
    normalized = mode.strip().lower() if isinstance(mode, str) else mode
    if normalized not in MODES:
        raise exception.ConfigurationError(
            'value_protection must be one of %s (any case), not %r'
            % (', '.join(MODES), mode), 'value_protection')
    return normalized


def is_placeholder(secret: bytes) -> bool:
    """Whether ``secret`` is a documentation placeholder, not a real key.

    Examples show keys such as ``PASTE-THE-OUTPUT-OF-...``; a copied
    example must fail loudly rather than protect values with a key anyone
    can read in the documentation.
    """
    letters = bytes(c for c in secret.lower()
                    if c < 128 and chr(c).isalnum())
    return any(marker.encode('ascii') in letters
               for marker in PLACEHOLDER_MARKERS)


def check_secrets(secrets: ty.Iterable[ty.Any]) -> list[bytes]:
    """Validate ``protection_keys`` without ever echoing one.

    :raises exception.ConfigurationError: naming the position of a secret
        that is not a string, is too short, is a documentation placeholder,
        or repeats another.
    """
    checked: list[bytes] = []
    for position, secret in enumerate(secrets, 1):
        if isinstance(secret, str):
            secret = secret.encode('utf-8')
        if not isinstance(secret, bytes):
            raise exception.ConfigurationError(
                'protection key #%d must be a string' % position,
                'protection_keys')
        if len(secret) < MIN_KEY_BYTES:
            raise exception.ConfigurationError(
                'protection key #%d is too short: use at least %d bytes, '
                'for example from secrets.token_urlsafe(32)'
                % (position, MIN_KEY_BYTES), 'protection_keys')
        if is_placeholder(secret):
            raise exception.ConfigurationError(
                'protection key #%d is the placeholder of a documentation '
                'example, not a secret: generate a key with python3 -c '
                '"import secrets; print(secrets.token_urlsafe(32))"'
                % position, 'protection_keys')
        if secret in checked:
            raise exception.ConfigurationError(
                'protection key #%d repeats key #%d'
                % (position, checked.index(secret) + 1), 'protection_keys')
        checked.append(secret)
    return checked
