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

"""The contenders of the instruction-count suite do what they are named.

valgrind is not run here (it takes minutes); the contenders it would run
are made and called on real servers, so the suite cannot rot into timing
misses or errors.
"""

import pytest

from oslo_kvs_tests.bench import instructions


def _contenders(memcached, redis):
    address = {'memcached': [memcached.host, memcached.port],
               'redis': [redis.host, redis.port]}
    return [(suite, name, spec)
            for suite, made in instructions.contenders(address).items()
            for name, spec in made.items()]


@pytest.mark.parametrize('index', range(6))
def test_every_contender_reads_and_writes_the_value(index, memcached_server,
                                                    redis_server):
    contenders = _contenders(memcached_server, redis_server)
    assert len(contenders) == 6
    suite, name, (kind, args) = contenders[index]
    operations = instructions.make(kind, args, cold=True)
    assert set(operations) == set(instructions.OPERATIONS)
    operations['set']()
    operations['set_multi 100']()
    assert operations['get']() == instructions.VALUE, (suite, name)
    assert operations['get_multi 100']() == [instructions.VALUE] * 100
    if kind == 'store':
        # The measured store has hashed none of the cold keys. Internal
        # on purpose: a key recorder would add calls to what is measured,
        # and no public API shows the keys a store has hashed.
        remembered = instructions._stores[-1]._state.keys
        assert not set(instructions.COLD_KEYS) & set(remembered)
    # Every cold key is stored, and the cycle goes round more than once.
    cold = operations[instructions.COLD]
    for _ in range(len(instructions.COLD_KEYS) + 10):
        assert cold() == instructions.VALUE, (suite, name)
