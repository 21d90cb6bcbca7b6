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

"""Key placement on several memcached servers matches pymemcache's own."""

from hypothesis import given
from hypothesis import strategies as st
from pymemcache.client import murmur3
from pymemcache.client import rendezvous

from oslo_kvs.backends import memcache_pool

NODES = ['127.0.0.1:11211', '127.0.0.1:11212', '[::1]:11213']


@given(st.text(max_size=300), st.integers(min_value=0, max_value=2 ** 32 - 1))
def test_hash_equals_pymemcache_murmur3(text, seed):
    expected = murmur3.murmur3_32(text, seed)
    assert memcache_pool.murmur3_32(text, seed) == expected


@given(st.lists(st.text(alphabet='0123456789abcdef', min_size=64,
                        max_size=64), min_size=1, max_size=20))
def test_placement_equals_pymemcache_default(keys):
    ours = rendezvous.RendezvousHash(list(NODES),
                                     hash_function=memcache_pool.murmur3_32)
    theirs = rendezvous.RendezvousHash(list(NODES))
    assert [ours.get_node(k) for k in keys] == [theirs.get_node(k)
                                                for k in keys]
