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

"""``oslo-kvs exercise``: every API operation, checked and timed.

A quick end-to-end check of an installation: each operation runs
``--rounds`` times on a store of its own, its result is checked and its
median time printed; the keys are deleted afterwards.
"""

import contextlib
import statistics
import typing as ty

from oslo_config import cfg

import oslo_kvs
from oslo_kvs.cmd import common
from oslo_kvs import exception


class _WrongAnswer(Exception):
    """An operation returned something other than what was stored."""


def _exercise(store: oslo_kvs.KeyValueStore, rounds: int, out: ty.TextIO,
              timed: dict[str, ty.Any]) -> None:
    """Time each operation into ``timed``, then check what is stored.

    :raises _WrongAnswer: when an operation returned a wrong answer.
    """
    value = {'id': 'a' * 32, 'roles': ['admin', 'member'], 'expires': None}
    keys = ['key-%03d' % i for i in range(100)]
    store.set_multi(dict.fromkeys(keys, value))
    out.write('store %r on %s, %d rounds each\n'
              % (store.name, ', '.join(store.servers()) or 'this process',
                 rounds))

    def lock_cycle() -> None:
        with store.get_lock('locked') as lock:
            store.set('locked', value, lock=lock)

    def add_delete() -> None:
        if not store.add('added', value):
            raise _WrongAnswer('add refused a key that was absent')
        store.delete('added')

    for label, operation in [
            ('set', lambda: store.set('one', value)),
            ('get', lambda: store.get('one')),
            ('set_multi (100 keys)',
             lambda: store.set_multi(dict.fromkeys(keys, value))),
            ('get_multi (100 keys)', lambda: store.get_multi(keys)),
            ('add + delete', add_delete),
            ('lock + set', lock_cycle)]:
        median = statistics.median(common.timed(operation, rounds))
        timed[label] = {'median_us': median * 1e6}
        out.write('  %-22s ok  median %9.1f us\n' % (label, median * 1e6))
    if store.get_multi(keys) != [value] * len(keys):
        raise _WrongAnswer('get_multi returned different values')
    store.delete_multi(keys + ['one', 'locked'])
    with contextlib.suppress(exception.NotFound):
        store.get('one')
        raise _WrongAnswer('delete_multi left a key behind')
    timed['delete_multi'] = {}
    out.write('  %-22s ok\n' % 'delete_multi')


def run(conf: cfg.ConfigOpts, out: ty.TextIO, rounds: int = 200,
        output_format: str = 'table') -> int:
    """Run each API operation, check its result, report its median time.

    On a store configured from the command's group.

    :returns: 0 when every operation gave the right answer, 1 when one did
        not or a server failed, 130 when interrupted (the operations timed
        so far are reported).
    """
    common.require(rounds >= 1, '--rounds must be at least 1')
    timed: dict[str, ty.Any] = {}
    with contextlib.closing(common.open_store(conf)) as store:
        result = {'command': 'exercise', 'store': store.name,
                  'rounds': rounds, 'operations': timed, 'error': None}

        def body(out: ty.TextIO) -> int:
            try:
                _exercise(store, rounds, out, timed)
            except (_WrongAnswer, exception.BackendError,
                    exception.LockTimeout, exception.NotFound) as exc:
                # The store is misbehaving: a symptom, reported like one.
                result['error'] = str(exc)
                out.write('FAILED: %s\n' % exc)
                return common.EXIT_SYMPTOM
            return common.EXIT_OK
        return common.report(out, output_format, result, body)
