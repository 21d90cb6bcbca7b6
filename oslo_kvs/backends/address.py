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

"""Server addresses: parse, label and redact, in one place.

Backends and the ``oslo-kvs`` command describe servers the same way:
``host:port``, ``[IPv6]:port``, a Unix socket path (``/path``,
``unix:/path``, ``unix:///path``) or a URL (``scheme://[user:pw@]host:port/``).
A label is what messages show; it never holds a credential.
"""

import dataclasses
import ipaddress
import re
import typing as ty
import urllib.parse

#: Written where a secret would have been.
REDACTED = '<secret>'

# Shorter "secrets" cannot be hidden without mangling ordinary text.
_MIN_SECRET = 4

# The password of user:password@ in any URL-like text.
_URL_PASSWORD = re.compile(r'(://[^/@:\s]*:)[^/@\s]+@')


class AddressError(ValueError):
    """Text that is no server address; the message never quotes it."""


@dataclasses.dataclass(frozen=True)
class Address:
    """One server: a TCP host and port, or a Unix socket path."""

    host: str | None = None
    port: int | None = None
    path: str | None = None

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    @property
    def label(self) -> str:
        """``host:port``, ``[v6]:port`` or the socket path."""
        if self.path is not None:
            return self.path
        host = '[%s]' % self.host if ':' in (self.host or '') else self.host
        return '%s:%s' % (host, self.port) if self.port else str(host)

    @property
    def tcp(self) -> tuple[str, int]:
        """``(host, port)`` of a TCP address, as socket clients take it.

        :raises AddressError: for a Unix socket path.
        """
        if self.host is None or self.port is None:
            raise AddressError('a TCP host:port is needed, not a socket path')
        return self.host, self.port

    def __str__(self) -> str:
        return self.label

    @classmethod
    def parse(cls, text: str, default_port: int | None = None) -> 'Address':
        """Understand one server given as text.

        :raises AddressError: saying what is wrong, not quoting ``text``
            (it may be a URL holding a password).
        """
        if not isinstance(text, str):
            raise AddressError('a server address must be a string')
        entry = text.strip()
        if entry.startswith('unix:'):
            entry = entry[len('unix:'):]
            entry = entry[2:] if entry.startswith('///') else entry
            if not entry.startswith('/'):
                raise AddressError('a unix socket path must be absolute')
        if entry.startswith('/'):
            return cls(path=entry)
        entry = entry.removeprefix('inet6:').removeprefix('inet:')
        if '://' in entry:
            split = urllib.parse.urlsplit(entry)
            try:
                host, port = split.hostname, split.port
            except ValueError:
                raise AddressError('the port must be a number from 1 to '
                                   '65535') from None
        elif entry.startswith('['):
            host, closed, rest = entry[1:].partition(']')
            if not closed or (rest and not rest.startswith(':')):
                raise AddressError('expected [IPv6 address]:port')
            port = _port(rest[1:]) if rest else None
        elif entry.count(':') > 1:
            # Only a bare IPv6 address, without port, is unambiguous.
            try:
                host, port = str(ipaddress.IPv6Address(entry)), None
            except ValueError:
                raise AddressError('write an IPv6 address in brackets, as '
                                   '[::1]:port') from None
        else:
            host, sep, port_text = entry.partition(':')
            port = _port(port_text) if sep else None
        if not host:
            raise AddressError('no host')
        port = port or default_port
        if port is None:
            raise AddressError('no port')
        return cls(host=host, port=port)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise AddressError('the port must be a number from 1 to 65535')
    return int(text)


def label(text: str, default_port: int | None = None) -> str:
    """The label of ``text`` if it parses, else ``text`` less credentials."""
    try:
        return Address.parse(text, default_port).label
    except AddressError:
        return redact(text)


def secrets_in(value: str, secret: bool = True) -> list[str]:
    """What to hide of ``value``: its URL password, or all of it if secret.

    A secret argument that is a URL (a Redis ``url``) is not itself a
    secret; only its password is.
    """
    found = []
    if '://' in value:
        password = urllib.parse.urlsplit(value.strip()).password
        if password:
            found += [password, urllib.parse.unquote(password)]
    elif secret:
        found += [value, urllib.parse.quote(value, safe='')]
    return [s for s in found if len(s) >= _MIN_SECRET]


def redact(text: str, secrets: ty.Iterable[str] = ()) -> str:
    """``text`` with URL credentials and every secret replaced by a marker.

    Longer secrets go first, so one that contains another is hidden whole.
    """
    text = _URL_PASSWORD.sub(r'\1%s@' % REDACTED, text)
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= _MIN_SECRET:
            text = text.replace(secret, REDACTED)
    return text
