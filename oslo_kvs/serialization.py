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

"""Safe, type-preserving encoding of values to bytes.

Values are encoded with MessagePack. Types that MessagePack does not tell
apart (tuple from list, set, frozenset, datetime, integers wider than 64
bits) travel as extension types, so every supported type comes back as the
same type. Nothing here can run code while decoding: there is no pickle.

An int in [-2**63, 2**63) (the range of ``DECIMAL_MIN`` and
``DECIMAL_END``) is written as its plain ASCII decimal digits
(``b'-12'``), under either serializer, so that a server's own increment
(memcached's ``incr``, Redis's ``INCRBY``) works on it. Every other
encoded form starts with one format byte, so that a later format (or an
opt-in one) can be recognised without guessing. The format bytes (0x01,
0x02) are control characters: they never collide with ``-`` or a digit,
so the first byte alone tells a counter from a formatted value.
"""

import dataclasses
import datetime
import pickle
import threading
import typing as ty

import msgpack

from oslo_kvs import exception

FORMAT_MSGPACK = b'\x01'
FORMAT_PICKLE = b'\x02'
SERIALIZERS = ('msgpack', 'pickle')

#: Ints from DECIMAL_MIN up to (not including) DECIMAL_END are stored as
#: their decimal digits: the range both memcached's and Redis's
#: increments read (memcached counts in unsigned 64 bits, Redis in
#: signed). A counter a server incremented past it is written again in
#: the serializer's own form, so no server ever wraps it.
DECIMAL_MIN = -(2 ** 63)
DECIMAL_END = 2 ** 63

_EXT_DATETIME = 4
_EXT_BIGINT = 5
#: Extension codes of the containers MessagePack would read back as lists.
_EXT_CONTAINERS: dict[type, int] = {tuple: 1, set: 2, frozenset: 3}
_CONTAINER_OF_EXT = {code: kind for kind, code in _EXT_CONTAINERS.items()}


def _encode_ext(obj: ty.Any) -> msgpack.ExtType:
    kind = type(obj)
    if kind in _EXT_CONTAINERS:
        return msgpack.ExtType(_EXT_CONTAINERS[kind], _pack(list(obj)))
    if kind is datetime.datetime:
        offset = obj.utcoffset()
        offset_us = (None if offset is None
                     else offset // datetime.timedelta(microseconds=1))
        fields = [obj.year, obj.month, obj.day, obj.hour, obj.minute,
                  obj.second, obj.microsecond, obj.fold, offset_us]
        return msgpack.ExtType(_EXT_DATETIME, _pack(fields))
    if kind is int:
        # Only reached for integers outside MessagePack's 64-bit range.
        return msgpack.ExtType(_EXT_BIGINT, str(obj).encode('ascii'))
    raise TypeError(
        'oslo_kvs cannot store a value of type %s.%s; supported types are '
        'None, bool, int, float, str, bytes, list, tuple, dict, set, '
        'frozenset and datetime.datetime'
        % (kind.__module__, kind.__qualname__))


def _decode_ext(code: int, data: bytes) -> ty.Any:
    if code in _CONTAINER_OF_EXT:
        return _CONTAINER_OF_EXT[code](_unpack(data))
    if code == _EXT_DATETIME:
        year, month, day, hour, minute, second, micro, fold, offset_us = (
            _unpack(data))
        tz = (None if offset_us is None else datetime.timezone(
            datetime.timedelta(microseconds=offset_us)))
        return datetime.datetime(year, month, day, hour, minute, second,
                                 micro, tzinfo=tz, fold=fold)
    if code == _EXT_BIGINT:
        return int(data.decode('ascii'))
    raise ValueError('unknown extension type %d in stored value' % code)


def _pack(obj: ty.Any) -> bytes:
    # strict_types sends tuples and subclasses of the base types through
    # _encode_ext, so nothing silently changes type on the way back.
    return msgpack.packb(obj, use_bin_type=True, strict_types=True,
                         default=_encode_ext)


def _unpack(data: bytes) -> ty.Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False,
                           ext_hook=_decode_ext)


# A Packer costs more to make than a small value costs to pack, so each
# thread keeps one for top-level values (a Packer is not thread-safe).
# Extension payloads nested inside a value use _pack: the thread's Packer
# is busy with the outer value then. A failed pack empties the Packer.
_packers = threading.local()


# dumps() looks for MessagePack's bin headers (0xc4-0xc6): msgpack packs
# bytearray and memoryview as bin itself, without asking _encode_ext, and
# they would come back as bytes. Those byte values are common inside
# other data too (floats, ints 196-198, UTF-8 of Latin Extended-A), so
# the walk that tells them apart must be cheap.
class _BufferFinder(pickle.Pickler):
    """Visits every object of a value, to find a bytearray or memoryview.

    pickle's C pickler walks a value some ten times faster than Python
    code can, and asks :meth:`reducer_override` about every object but
    the exact basic types. A bytearray is one of those, but up to
    protocol 4 the pickler saves it as a call of the ``bytearray`` type,
    which it then asks about. Its output is thrown away: nothing is ever
    unpickled. Only values :func:`dumps` packed reach it, so the only
    other objects it is asked about are datetimes, whose tzinfo need not
    be picklable and can hold no buffer: they are not looked into.
    """

    def reducer_override(self, obj: ty.Any) -> ty.Any:
        if obj is bytearray or isinstance(obj, memoryview):
            raise TypeError(
                'oslo_kvs cannot store a %s: it would come back as bytes; '
                'store bytes(value) instead'
                % ('bytearray' if obj is bytearray else 'memoryview'))
        if type(obj) is datetime.datetime:
            return int, ()
        return NotImplemented


class _Discard:
    """A file that drops what is written to it."""

    @staticmethod
    def write(data: ty.Any) -> None:
        pass


def _refuse_buffers(value: ty.Any) -> None:
    """Raise TypeError if ``value`` holds a bytearray or memoryview."""
    # Protocol 4: see _BufferFinder.
    _BufferFinder(_Discard(), 4).dump(value)


def _decimal(data: bytes) -> int:
    """The int of a counter's decimal bytes: ``-?[0-9]+``, then spaces.

    memcached pads a number its increment made shorter with spaces, in
    place. Nothing else is read: not a ``+``, a leading space or an
    underscore, which ``int()`` alone would accept.

    :raises ValueError: for any other bytes.
    """
    digits = data.rstrip(b' ')
    # bytes.isdigit() is true only for ASCII digits, and false for b''.
    if not (digits[1:] if digits[:1] == b'-' else digits).isdigit():
        raise ValueError('stored value has an unknown format')
    return int(digits)


def dumps(value: ty.Any) -> bytes:
    """Encode ``value`` to bytes.

    An int in the decimal range becomes its digits; see the module.

    :raises TypeError: if the value (or anything nested in it) is of a type
        that cannot be stored without changing type.
    """
    # The exact type: bool and int subclasses keep their own form.
    if type(value) is int and DECIMAL_MIN <= value < DECIMAL_END:
        return b'%d' % value
    try:
        pack = _packers.pack
    except AttributeError:
        pack = _packers.pack = msgpack.Packer(
            use_bin_type=True, strict_types=True, default=_encode_ext).pack
    try:
        packed = pack(value)
    except (OverflowError, UnicodeEncodeError, ValueError) as exc:
        raise TypeError('oslo_kvs cannot store this value: %s' % exc) from exc
    # Only values holding binary data need the walk; a byte scan is cheap.
    if b'\xc4' in packed or b'\xc5' in packed or b'\xc6' in packed:
        _refuse_buffers(value)
    return FORMAT_MSGPACK + packed


def loads(data: bytes) -> ty.Any:
    """Decode bytes made by :func:`dumps`.

    :raises ValueError: if the bytes are not a value this module wrote.
    """
    if data[:1] != FORMAT_MSGPACK:
        return _decimal(data)
    try:
        return msgpack.unpackb(data[1:], raw=False, strict_map_key=False,
                               ext_hook=_decode_ext)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ValueError('stored value cannot be decoded: %s' % exc) from exc


def loads_many(values: ty.Sequence[bytes]) -> list[ty.Any]:
    """:func:`loads` of every item of ``values``, in one pass.

    One unpacker reads all of them, which costs about half as much as a
    :func:`loads` call per value. Each value must end exactly where its
    bytes end, so a value with trailing bytes, or one cut short, is refused
    as :func:`loads` would refuse it, never read into its neighbour.

    :raises ValueError: if any item is not bytes that :func:`dumps` wrote;
        the caller finds which with :func:`loads`.
    """
    try:
        data = b''.join(values)
    except TypeError:
        raise ValueError('not every stored value is bytes') from None
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False,
                                ext_hook=_decode_ext,
                                max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    read_bytes, unpack, tell = (unpacker.read_bytes, unpacker.unpack,
                                unpacker.tell)
    decoded = []
    end = 0
    try:
        for value in values:
            end += len(value)
            if value[:1] == FORMAT_MSGPACK:
                read_bytes(1)
                decoded.append(unpack())
            else:
                # A counter's digits (or refused): read from the item
                # itself and skipped in the unpacker's buffer.
                decoded.append(_decimal(value))
                read_bytes(len(value))
            if tell() != end:
                raise ValueError('stored value does not end where it should')
    except (TypeError, msgpack.UnpackException) as exc:
        raise ValueError('stored value cannot be decoded: %s' % exc) from exc
    return decoded


# Values of these exact types cannot change after they are made.
#: The types whose values cannot change (exact types: a subclass may).
IMMUTABLE_TYPES = frozenset([type(None), bool, int, float, str, bytes])


@dataclasses.dataclass(slots=True, eq=False, repr=False)
class Plain:
    """An immutable value kept as itself, not encoded.

    Only for a backend whose values never leave this process: no caller
    can change the object, so sharing it isolates as well as a copy does.
    """

    value: ty.Any


def plain(value: ty.Any) -> Plain | None:
    """``value`` as a :class:`Plain` if it is immutable and storable.

    Exact types only (a subclass may be mutable), and only what
    :func:`dumps` would accept, so that a value refused elsewhere is not
    accepted here: a str with a lone surrogate goes to :func:`dumps` to be
    refused there. None for everything else.
    """
    kind = type(value)  # not __class__, which an object may fake
    if kind not in IMMUTABLE_TYPES:
        return None
    if kind is str and not value.isascii():
        try:
            value.encode('utf-8')
        except UnicodeEncodeError:
            return None
    return Plain(value)


def _pickle_dumps(value: ty.Any) -> bytes:
    # Counters as dumps() writes them: see the module.
    if type(value) is int and DECIMAL_MIN <= value < DECIMAL_END:
        return b'%d' % value
    return FORMAT_PICKLE + pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


def _pickle_loads(data: bytes) -> ty.Any:
    # Counters, and MessagePack values written before a switch to pickle,
    # read as loads() reads them.
    if data[:1] == FORMAT_PICKLE:
        return pickle.loads(data[1:])
    return loads(data)


class Codec:
    """A store's values to bytes and back: the one encoding path.

    Writing serializes, then protects the bytes bound to the caller's key;
    reading verifies, then deserializes, so bytes from a server reach the
    deserializer only once authenticated.

    :param serializer: ``msgpack`` (safe, the default) or ``pickle``: any
        picklable type, but unpickling runs code chosen by whoever wrote
        the bytes, so the store allows it only where they cannot come from
        anyone else (the in-process backend, or behind protection).
    :param protector: a :class:`~oslo_kvs.protection.Protector`, or None.
    """

    __slots__ = ('name', 'protector', '_dumps', '_loads')

    def __init__(self, serializer: str = 'msgpack',
                 protector: ty.Any = None) -> None:
        self.name = serializer
        self.protector = protector
        self._dumps, self._loads = ((_pickle_dumps, _pickle_loads)
                                    if serializer == 'pickle'
                                    else (dumps, loads))

    def encode(self, key: str, value: ty.Any) -> bytes:
        """Bytes to store for ``value`` under the caller's ``key``.

        :raises TypeError: for a value the serializer cannot keep.
        """
        data = self._dumps(value)
        if self.protector is None:
            return data
        return self.protector.seal(key, data)

    def decode(self, key: str, data: bytes) -> ty.Any:
        """The value :meth:`encode` made ``data`` of, under ``key``.

        :raises exception.IntegrityError: for data protection refuses or
            the serializer did not write.
        """
        try:
            if self.protector is not None:
                data = self.protector.open(key, data)
            return self._loads(data)
        except (ValueError, TypeError):
            raise exception.IntegrityError(key) from None

    def decode_many(self, keys: ty.Sequence[str],
                    values: ty.Sequence[bytes]) -> list[ty.Any]:
        """:meth:`decode` of each value, in one pass where it can.

        :raises exception.IntegrityError: naming the first refused key.
        """
        if self._loads is loads and self.protector is None:
            try:
                return loads_many(values)
            except ValueError:
                pass  # find which one, below
        return [self.decode(key, data) for key, data in zip(keys, values)]
