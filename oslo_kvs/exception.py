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

"""Exceptions raised by oslo_kvs.

Every exception derives from :class:`KVSError`. Several also derive from a
built-in type (``ValueError``, ``RuntimeError``) so that callers written
against Keystone's KVS layer, which raised those, keep working.

Messages never contain secrets: passwords and protection keys are not passed
to these constructors anywhere in oslo_kvs.
"""

import reprlib
import typing as ty

_short = reprlib.Repr()
_short.maxstring = 80
_short.maxother = 80
_short.maxlist = 10

#: A bounded, printable rendering of a key or list of keys; the bound
#: method itself, as a miss (NotFound) calls it.
_describe: ty.Callable[[ty.Any], str] = _short.repr


class KVSError(Exception):
    """Base class of every oslo_kvs exception."""


class NotFound(KVSError):
    """A key (or several keys) is not in the store.

    ``target`` holds the key, or the list of missing keys for
    ``get_multi``.
    """

    def __init__(self, target: ty.Any, message: str | None = None) -> None:
        self.target = target
        if message is None:
            message = ('Keys not found: %s' if isinstance(target, list)
                       else 'Key not found: %s') % _describe(target)
        super().__init__(message)


class NotConfigured(KVSError):
    """The store was used before ``configure()`` was called."""

    def __init__(self, name: str, hint: str = '') -> None:
        self.name = name
        super().__init__(
            'Key value store %r is not configured: call configure() '
            'before using it%s' % (name, hint))


class AlreadyConfigured(KVSError, RuntimeError):
    """``configure()`` was called on a store that is already configured."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__('Key value store %r is already configured' % name)


class ConfigurationError(KVSError, ValueError):
    """An option or ``configure()`` argument is wrong.

    ``argument`` names the ``configure()`` argument (or option) the error is
    about, when there is one, so callers that map arguments to their source
    (a configuration group) need not read the message.
    """

    def __init__(self, message: str, argument: str | None = None) -> None:
        self.argument = argument
        super().__init__(message)


class LockError(KVSError, ValueError):
    """A lock was misused: wrong key, not held, or released twice."""


class LockTimeout(KVSError):
    """A lock expired (``lock_timeout`` passed) while the caller held it."""

    def __init__(self, target: ty.Any) -> None:
        self.target = target
        super().__init__('Lock for key %s timed out' % _describe(target))


class BackendError(KVSError):
    """The backend server is unreachable or failing.

    The message names the backend and the server, never a secret.
    """


class ValueTooLarge(KVSError, ValueError):
    """A value is larger than the backend can store."""


class IntegrityError(NotFound):
    """A stored value failed authentication (tampered, moved or wrong key).

    It is a :class:`NotFound` so that code treating a missing value as
    missing keeps working; the value is never deserialized.
    """

    def __init__(self, target: ty.Any) -> None:
        super().__init__(
            target, 'Stored value for %s failed integrity verification'
            % _describe(target))


class Conflict(KVSError):
    """``update()`` lost ``[kvs] update_attempts`` races in a row.

    Other writers changed the key between each read and its
    compare-and-set; nothing of this call was written. ``target`` is the
    key, ``attempts`` how many times it was tried.
    """

    def __init__(self, target: ty.Any, attempts: int) -> None:
        self.target = target
        self.attempts = attempts
        super().__init__(
            'Update of key %s lost %d races in a row to other writers; '
            'nothing was written' % (_describe(target), attempts))
