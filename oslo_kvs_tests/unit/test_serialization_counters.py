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

"""Ints as the servers' counters: plain decimal digits, read strictly."""

import enum

from hypothesis import given
from hypothesis import strategies as st
import msgpack
import pytest

from oslo_kvs import exception
from oslo_kvs import protection
from oslo_kvs import serialization

LOW, END = serialization.DECIMAL_MIN, serialization.DECIMAL_END
CODECS = [serialization.Codec('msgpack'), serialization.Codec('pickle')]
#: The bytes of a counter: any int of the decimal range.
counters = st.integers(LOW, END - 1)
#: Ints at and around both edges of the range, and far beyond.
edges = st.one_of(
    st.integers(LOW - 2 ** 10, LOW + 2 ** 10),
    st.integers(END - 2 ** 10, END + 2 ** 10),
    st.integers(-2 ** 80, 2 ** 80), counters)


class Small(int):
    pass


class Flag(enum.IntFlag):
    ON = 1


def test_the_range_is_what_both_servers_add_to():
    assert (LOW, END) == (-2 ** 63, 2 ** 63)


@pytest.mark.parametrize('value, data', [
    (0, b'0'), (5, b'5'), (-12, b'-12'), (END - 1, b'9223372036854775807'),
    (LOW, b'-9223372036854775808')])
@pytest.mark.parametrize('codec', CODECS, ids=['msgpack', 'pickle'])
def test_ints_of_the_range_are_their_digits(codec, value, data):
    assert serialization.dumps(value) == data
    assert codec.encode('k', value) == data
    assert codec.decode('k', data) == value


@pytest.mark.parametrize('value', [END, LOW - 1, 2 ** 64, -2 ** 70])
def test_ints_beyond_keep_the_formatted_form(value):
    data = serialization.dumps(value)
    assert data[:1] == serialization.FORMAT_MSGPACK
    assert serialization.loads(data) == value


@pytest.mark.parametrize('value', [True, False])
def test_bools_are_not_counters(value):
    data = serialization.dumps(value)
    assert data[:1] == serialization.FORMAT_MSGPACK
    assert serialization.loads(data) is value


@pytest.mark.parametrize('value', [Small(3), Flag.ON])
def test_int_subclasses_are_not_counters(value):
    # Refused, as every subclass of a stored type is: it would come
    # back as a plain int.
    with pytest.raises(TypeError):
        serialization.dumps(value)


def test_the_format_bytes_are_never_a_counters_first_byte():
    first_bytes = set(b'-0123456789')
    assert serialization.FORMAT_MSGPACK[0] not in first_bytes
    assert serialization.FORMAT_PICKLE[0] not in first_bytes


@given(edges)
def test_any_int_round_trips_as_itself(value):
    for codec in CODECS:
        got = codec.decode('k', codec.encode('k', value))
        assert got == value and type(got) is int
    data = serialization.dumps(value)
    assert (data == str(value).encode('ascii')) is (LOW <= value < END)


@given(counters, st.integers(0, 20))
def test_spaces_after_the_digits_are_memcacheds_padding(value, spaces):
    assert serialization.loads(b'%d' % value + b' ' * spaces) == value


def test_old_form_ints_still_read():
    for value in (0, 5, -12, 2 ** 40, END - 1, LOW):
        old = serialization.FORMAT_MSGPACK + msgpack.packb(value)
        assert serialization.loads(old) == value
        assert serialization.loads_many([old, b'7']) == [value, 7]


@pytest.mark.parametrize('data', [
    b'12x', b'1_0', b' 12', b'+5', b'-', b'--5', b'- 5', b'5-', b'1 2',
    b'5\t', b'5\r\n', b'5\x00', b'\xd9\xa0', b'1e3', b'0x10', b'',
    b'9' * 5000])
def test_other_bytes_of_that_shape_are_refused(data):
    with pytest.raises(ValueError):
        serialization.loads(data)
    with pytest.raises(ValueError):
        serialization.loads_many([b'1', data])
    for codec in CODECS:
        with pytest.raises(exception.IntegrityError):
            codec.decode('k', data)


@given(st.lists(edges, max_size=8), st.integers(0, 3))
def test_loads_many_reads_counters_among_other_values(ints, spaces):
    values = [*ints, 'text', [1, 2], None]
    encoded = [serialization.dumps(value) for value in values]
    encoded = [data + b' ' * spaces if data[:1] != b'\x01' else data
               for data in encoded]
    assert serialization.loads_many(encoded) == values


def test_protection_seals_the_digits_as_they_are():
    protector = protection.Protector(
        'mac', [b'counters-test-key-0123456789abcdef'], 'store')
    codec = serialization.Codec('msgpack', protector)
    sealed = codec.encode('k', 5)
    assert sealed != b'5'
    assert protector.open('k', sealed) == b'5'
    assert codec.decode('k', sealed) == 5
    # Digits alone are no sealed value.
    with pytest.raises(exception.IntegrityError):
        codec.decode('k', b'5')
