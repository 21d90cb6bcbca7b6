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

"""Safe, type-preserving value encoding."""

import collections
import datetime
import enum
import pickle

from hypothesis import given
from hypothesis import strategies as st
import pytest

from oslo_kvs import serialization
from oslo_kvs import testing


@pytest.mark.parametrize('value', testing.ROUND_TRIP_VALUES,
                         ids=testing.ROUND_TRIP_IDS)
def test_round_trip(value):
    got = serialization.loads(serialization.dumps(value))
    assert got == value and type(got) is type(value)


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize('value', [
    object(), collections.OrderedDict(), Colour.RED, [1, object()],
    {'k': collections.defaultdict(list)}, datetime.date(2020, 1, 1),
    '\udc80'])
def test_unsupported_values_raise_type_error(value):
    with pytest.raises(TypeError):
        serialization.dumps(value)


def test_pickle_bytes_are_refused_not_run():
    class Boom:
        def __reduce__(self):
            return (exec, ('raise SystemExit("pickle ran")',))

    with pytest.raises(ValueError):
        serialization.loads(pickle.dumps(Boom()))


@pytest.mark.parametrize('data', [
    b'', b'\x01', b'\x01\xc1', b'\x01\xd4\x63\x00', b'\x02anything'])
def test_garbage_is_a_value_error(data):
    with pytest.raises(ValueError):
        serialization.loads(data)


def test_aware_datetime_keeps_its_instant_and_offset():
    value = datetime.datetime(2021, 3, 28, 1, 30, tzinfo=datetime.timezone(
        datetime.timedelta(hours=2)))
    got = serialization.loads(serialization.dumps(value))
    assert got == value and got.utcoffset() == value.utcoffset()


@given(testing.value_strategy())
def test_any_generated_value_round_trips(value):
    got = serialization.loads(serialization.dumps(value))
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize('value', [
    bytearray(b'ab'), memoryview(b'ab'), [1, bytearray(b'x')],
    {'k': (b'ok', memoryview(b'x'))}, (frozenset([1]), (bytearray(),))])
def test_buffers_are_refused_not_turned_into_bytes(value):
    with pytest.raises(TypeError, match='bytearray|memoryview'):
        serialization.dumps(value)


def test_bytes_beside_other_values_still_pass():
    value = {'a': b'\xc4\xc5', 'b': ['\u0100', (b'', 1)]}
    assert serialization.loads(serialization.dumps(value)) == value


@pytest.mark.parametrize('buffer', [bytearray(b'x'), memoryview(b'x')])
def test_buffers_are_found_as_dict_keys_and_deep_inside(buffer):
    if isinstance(buffer, memoryview):
        with pytest.raises(TypeError, match='memoryview'):
            serialization.dumps({buffer: 1})
    with pytest.raises(TypeError, match=type(buffer).__name__):
        serialization.dumps([{'a': ({1}, [[buffer]])}])


def test_any_tzinfo_passes_the_buffer_check():
    # Only the offset is stored; a tzinfo that cannot be pickled (a local
    # class) must not trip the check that bin headers (b'x') start.
    class Local(datetime.tzinfo):
        def utcoffset(self, dt):
            return datetime.timedelta(hours=2)

    value = [b'x', datetime.datetime(2024, 5, 1, 12, tzinfo=Local())]
    got = serialization.loads(serialization.dumps(value))
    assert got == value
    assert got[1].utcoffset() == datetime.timedelta(hours=2)


@given(st.lists(testing.value_strategy(), max_size=8))
def test_loads_many_decodes_what_loads_decodes(values):
    encoded = [serialization.dumps(value) for value in values]
    assert serialization.loads_many(encoded) == [
        serialization.loads(data) for data in encoded]


@given(st.lists(testing.value_strategy(), min_size=2, max_size=6),
       st.data())
def test_loads_many_never_reads_one_value_into_another(values, data):
    # A value cut short, or one with trailing bytes, is refused even when
    # its neighbour would make the whole run of bytes parse. (The digits
    # of a counter cut in two are two counters: each item is read from
    # its own bytes, exactly as loads reads it.)
    encoded = [serialization.dumps(value) for value in values]
    index = data.draw(st.integers(0, len(encoded) - 2))
    cut = data.draw(st.integers(1, max(len(encoded[index]) - 1, 1)))
    moved = encoded[:]
    moved[index], moved[index + 1] = (encoded[index][:cut],
                                      encoded[index][cut:] + encoded[
                                          index + 1])
    try:
        one_by_one = [serialization.loads(item) for item in moved]
    except ValueError:
        with pytest.raises(ValueError):
            serialization.loads_many(moved)
    else:
        assert serialization.loads_many(moved) == one_by_one


@pytest.mark.parametrize('values', [
    [serialization.dumps(1), b'\x02' + pickle.dumps(1)],
    [serialization.dumps(1), serialization.dumps(2) + b'\x00'],
    [serialization.dumps(1), None],
    [b''],
])
def test_loads_many_refuses_what_loads_refuses(values):
    with pytest.raises(ValueError):
        serialization.loads_many(values)
