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

"""Per-process objects follow the process id, not Python's fork hooks.

A child forked from C (uWSGI, mod_wsgi) runs no ``os.register_at_fork``
hook; these tests change what ``os.getpid()`` says and zero the page the
kernel zeroes in a child, as such a child sees them, and nothing else.
The real forks are in ``functional/test_fork.py`` and the WSGI servers in
``deployment/``.
"""

import math
import os
import sys
import threading

import pytest

from oslo_kvs import _process
from oslo_kvs.backends import base
from oslo_kvs import locking
from oslo_kvs import memoize
from oslo_kvs_tests import faults
from oslo_kvs_tests import stored


@pytest.fixture(autouse=True)
def parent_again():
    """After each test, the next pid() asks the (real) kernel again."""
    yield
    wipe()


def as_child(monkeypatch, pid=-1):
    monkeypatch.setattr(_process.os, 'getpid', lambda: pid)
    wipe()


def wipe():
    """What the kernel does to the page in a forked child."""
    _process._page[0] = 0


def test_made_once_per_process_and_anew_in_a_child(monkeypatch):
    made = []
    per = _process.PerProcess(lambda: made.append(object()) or made[-1])
    parent = per.get()
    assert per.get() is parent and len(made) == 1
    as_child(monkeypatch)
    child = per.get()
    assert child is not parent and per.get() is child
    # Internal on purpose: only the holder shows that the parent's object
    # is dropped rather than kept alive.
    assert list(per._made) == [-1]


def test_threads_racing_in_a_new_process_share_one_object(monkeypatch):
    per = _process.PerProcess(object)
    per.get()
    as_child(monkeypatch)
    barrier = threading.Barrier(8)
    seen = []

    def take():
        barrier.wait()
        seen.append(per.get())

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(obj) for obj in seen}) == 1


def test_peek_and_forget_see_only_this_process(monkeypatch):
    per = _process.PerProcess(object)
    assert per.peek() is None
    made = per.get()
    assert per.peek() is made
    as_child(monkeypatch)
    assert per.peek() is None and per.forget() is None
    monkeypatch.undo()
    wipe()
    assert per.forget() is made and per.peek() is None


def test_a_lock_held_in_the_parent_is_free_in_the_child(monkeypatch):
    primitive = _process.Primitive('Lock')
    primitive.get().acquire()  # a parent thread holds it at the fork
    as_child(monkeypatch)
    assert primitive.get().acquire(blocking=False)


def test_local_locks_held_by_parent_threads_are_free_in_the_child(
        monkeypatch):
    locks = base.LocalLocks()
    assert locks.acquire('k', 'parent', 0)
    as_child(monkeypatch)
    assert locks.acquire('k', 'child', 0)
    assert not locks.release('k', 'parent')


def test_lock_turns_of_the_parent_are_not_waited_for(monkeypatch):
    turns = locking._turns.get()
    assert turns.take(('b', 'k'), 'parent', math.inf, True)
    as_child(monkeypatch)
    child = locking._turns.get()
    assert child is not turns
    assert child.take(('b', 'k'), 'child', math.inf, False)


def test_lock_holders_of_the_parent_are_not_seen_in_the_child(monkeypatch):
    # The forking thread keeps its ident in the child: the parent's lock
    # must not count there, or the child's reads would skip the near
    # cache for as long as the parent's lease lasts.
    store = stored.make_store('openstack.kvs.Memory', lock_timeout=30)
    parent = store.get_lock('k')
    assert parent.acquire()
    try:
        assert locking.holds_a_lock()
        as_child(monkeypatch)
        assert not locking.holds_a_lock()
        # Internal on purpose: the near cache's one truth test passes
        # again, with nothing of the parent's kept.
        assert not locking.holders
        with store.get_lock('k'):
            assert locking.holds_a_lock()
            assert list(locking.holders) == [-1]
        assert not locking.holds_a_lock() and not locking.holders
    finally:
        monkeypatch.undo()
        wipe()
        parent.release()


def test_warm_queue_starts_its_own_thread_in_a_child(monkeypatch):
    queue = memoize.WarmQueue()
    gate = threading.Event()
    assert queue.put('parent', gate.wait)  # the parent's thread is busy
    as_child(monkeypatch, pid=-2)
    ran = threading.Event()
    assert queue.unfinished == 0  # nothing of the parent's is inherited
    assert queue.put('child', ran.set)
    assert queue.join(timeout=10) and ran.is_set()
    monkeypatch.undo()
    wipe()
    gate.set()
    assert queue.join(timeout=10)


class FakeUwsgi:
    """What ``import uwsgi`` gives inside uWSGI: the worker's number."""

    def __init__(self, worker):
        self.worker = worker

    def worker_id(self):
        return self.worker


def test_warm_runs_inline_in_a_uwsgi_master_before_the_fork(monkeypatch):
    queue = memoize.WarmQueue()
    monkeypatch.setitem(sys.modules, 'uwsgi', FakeUwsgi(0))
    caller = []
    assert queue.put('k', lambda: caller.append(threading.current_thread()))
    assert caller == [threading.current_thread()]
    # Internal on purpose: no public call tells that nothing was queued.
    assert queue._work.peek() is None


def test_warm_uses_its_thread_in_a_uwsgi_worker(monkeypatch):
    queue = memoize.WarmQueue()
    monkeypatch.setitem(sys.modules, 'uwsgi', FakeUwsgi(3))
    caller = []
    assert queue.put('k', lambda: caller.append(threading.current_thread()))
    assert queue.join(timeout=10)
    assert caller and caller[0] is not threading.current_thread()


def test_pid_is_read_again_only_after_a_fork(monkeypatch):
    assert _process.pid() == os.getpid()
    asked = []
    monkeypatch.setattr(_process.os, 'getpid',
                        lambda: asked.append(1) or 42)
    for _ in range(3):
        _process.pid()
    # On Linux the id is kept beside the page; elsewhere asked each time.
    assert len(asked) == (0 if _process._SET else 3)
    wipe()
    assert _process.pid() == 42


def test_a_c_fork_zeroes_the_page():
    # libc's fork(): no Python hook runs in the child.
    if not _process._SET:
        pytest.skip('no MADV_WIPEONFORK on this platform')
    parent = _process.pid()
    read, write = os.pipe()
    child = faults.c_fork()
    if child == 0:
        try:
            os.write(write, b'%d %d %d' % (_process._page[0], _process.pid(),
                                           os.getpid()))
        finally:
            os._exit(0)
    os.close(write)
    page, seen, real = map(int, os.read(read, 100).split())
    os.close(read)
    os.waitpid(child, 0)
    assert page == 0 and seen == real != parent
