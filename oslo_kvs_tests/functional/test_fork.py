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

"""Stores survive a fork, as under pre-fork WSGI servers.

The parent configures and uses a store, then forks; children and parent
keep using it at the same time. A child must never get a reply meant for
another process, never wait on a lock or pool slot a parent thread held
at the fork, and distributed locks must still exclude across processes.
Each test forks with ``os.fork()`` and with libc's ``fork()`` called from
C, which runs none of Python's fork hooks (as uWSGI forks by default).
"""

import pytest

from oslo_kvs_tests import faults
from oslo_kvs_tests import stored

BACKENDS = ['memory', 'memcached', 'memcached-3', 'redis', 'sentinel',
            'cluster']
DISTRIBUTED = [name for name in BACKENDS if name != 'memory']
OPS = 300
# Seconds before a child counts as hung; the runs take about one.
DEADLINE = 30


@pytest.fixture
def make_store(request):
    """Configure a store on the named backend (a test's param)."""
    def make(name, **extra):
        backend, args = stored.backend_args(request, name)
        args.update(extra)
        store = stored.make_store(backend, **args)
        # Warm: the parent holds open connections when it forks.
        store.set('warm', 'parent')
        assert store.get('warm') == 'parent'
        return store
    return make


def assert_clean(results, parent=None):
    for result in results + ([parent] if parent else []):
        assert 'crash' not in result, result.get('crash')
        assert (result['errors'], result['foreign']) == (0, 0), result


@pytest.mark.parametrize('method', ['os', 'c', 'multiprocessing'])
@pytest.mark.parametrize('backend', BACKENDS)
def test_children_and_parent_get_only_their_own_replies(
        make_store, backend, method):
    store = make_store(backend)
    parent = {}

    def meanwhile():
        parent.update(faults.workload(store, 'parent', OPS))

    results = faults.in_forked_children(
        4, lambda n: faults.workload(store, 'child%d' % n, OPS),
        method=method, meanwhile=meanwhile, deadline=DEADLINE)
    assert_clean(results, parent)
    assert store.get('warm') == 'parent'


# os.fork() only: a fork from C while other Python threads run may leave
# the child hung on the GIL itself (CPython resets it only in its own
# after-fork code), whatever the library does; see deployment/.
@pytest.mark.parametrize('backend', BACKENDS)
def test_child_forked_during_busy_threads_works_at_once(make_store, backend):
    # Two connections per server: in the parent, busy threads hold them at
    # the fork; a child that inherited the accounting would wait for them.
    extra = ({'pool_maxsize': 2, 'pool_connection_get_timeout': 5}
             if backend.startswith('memcached') else {})
    store = make_store(backend, **extra)
    with faults.BusyThreads(store, 8) as busy:
        results = faults.in_forked_children(
            2, lambda n: faults.workload(store, 'child%d' % n, OPS),
            deadline=DEADLINE)
        assert busy.calls
    assert_clean(results)
    # And the parent is unharmed.
    assert_clean([], faults.workload(store, 'parent', OPS))


@pytest.mark.parametrize('method', ['os', 'c'])
@pytest.mark.parametrize('backend', DISTRIBUTED)
def test_lock_is_never_held_by_two_processes(make_store, backend, method):
    store = make_store(backend)
    results = faults.in_forked_children(
        3, lambda n: faults.lock_rounds(store, 'child%d' % n, 30),
        method=method, deadline=DEADLINE)
    for result in results:
        assert 'crash' not in result, result.get('crash')
        assert result == {'rounds': 30, 'doubles': 0}
