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

"""The benchmark harness: interleaving, per-round ratios, remote contenders.

Behaviour only; no timing is asserted.
"""

import collections
import io
import os
import sys

from oslo_kvs_tests.bench import common


def test_compare_interleaves_in_changing_orders():
    order = []
    names = 'abcd'
    timings = common.compare({name: lambda name=name: order.append(name)
                              for name in names}, rounds=400, batches=400)
    # One warm-up call each, then every contender once per round.
    assert order[:4] == list(names)
    rounds = [order[start:start + 4] for start in range(4, len(order), 4)]
    assert len(rounds) == 400
    assert all(sorted(round_) == list(names) for round_ in rounds)
    # No contender is stuck behind another: within rounds, each one
    # follows each other one about equally often (1/3 of 1,200 pairs).
    follows = collections.Counter(
        pair for round_ in rounds for pair in zip(round_, round_[1:]))
    assert set(follows) == {(x, y) for x in names for y in names if x != y}
    assert all(70 < count < 130 for count in follows.values()), follows
    assert set(timings) == set(names)
    assert all(len(samples) == 400 for samples in timings.samples.values())


def test_report_gives_per_round_ratio_spread():
    timings = common.Timings({'base': [1.0, 2.0, 1.0, 2.0],
                              'other': [2.0, 4.0, 3.0, 2.0]})
    result = common.Result('suite', 'op', timings, 'base')
    assert result.round_ratios('other') == [2.0, 2.0, 3.0, 1.0]
    out = io.StringIO()
    common.report([result], out)
    lines = out.getvalue().splitlines()
    assert lines[0] == 'suite / op'
    assert '1.00x' in lines[1] and '[' not in lines[1]
    # Median of the per-round ratios, then their quartiles.
    assert '2.00x' in lines[2] and '[1.25-2.75]' in lines[2]


def test_report_gives_speedups_round_by_round():
    timings = common.Timings({'raw': [1.0, 1.0, 1.0],
                              'mine': [1.0, 2.0, 1.0],
                              'theirs': [4.0, 4.0, 2.0]})
    result = common.Result('suite', 'op', timings, 'raw',
                           speedups=[('mine', 'theirs')])
    out = io.StringIO()
    common.report([result], out)
    # Per round theirs / mine: 4, 2, 2; the median, then the quartiles.
    last = out.getvalue().splitlines()[-1]
    assert last.startswith('  mine: 2.00x faster than theirs'), last
    assert last.endswith('[2.00-4.00]'), last


def test_plain_medians_still_report():
    # Suites may build a Result from a plain dict of medians.
    out = io.StringIO()
    common.report([common.Result('s', 'op', {'a': 1e-6, 'b': 3e-6}, 'a')],
                  out)
    assert '3.00x' in out.getvalue()


def test_remote_contender_hides_modules(monkeypatch):
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(sys.path))
    remote = common.Remote(__name__ + ':hidden_json', hide=['json'])
    try:
        assert remote.time(3) >= 0
    finally:
        remote.close()


def hidden_json():
    """A Remote factory that fails unless ``json`` is hidden."""
    try:
        import json  # noqa: F401
    except ImportError:
        return lambda: None
    raise AssertionError('json was importable')


def test_pin_confines_this_process():
    before = os.sched_getaffinity(0)
    cpu = max(before)
    try:
        common.pin(cpu)
        assert os.sched_getaffinity(0) == {cpu}
        assert common.cpu() == cpu
    finally:
        os.sched_setaffinity(0, before)
        common.pin(None)
    assert common.cpu() is None
