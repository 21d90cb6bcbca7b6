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

"""Workloads for fault tests and their measurement script.

Shared by ``oslo_kvs_tests/functional/test_fork.py`` (small, bounded runs
that assert behaviour) and ``python -m oslo_kvs_tests.bench.faults`` (the
large runs whose figures the documentation quotes).
"""

import ctypes
import json
import multiprocessing
import os
import signal
import threading
import time
import traceback
import typing as ty

from oslo_kvs import exception

#: Seconds a forked child may run before it is killed as hung.
CHILD_DEADLINE = 120


def workload(store: ty.Any, tag: str, ops: int) -> dict[str, ty.Any]:
    """``ops`` writes and reads of keys only this caller uses.

    Any value that comes back other than the one just written is counted:
    ``foreign`` when it carries another caller's tag (a reply meant for
    someone else), ``errors`` for exceptions and other wrong values.
    """
    errors: list[str] = []
    foreign = 0
    keys = ['%s-%d' % (tag, n) for n in range(8)]
    for n in range(ops):
        key = keys[n % len(keys)]
        try:
            if n % 10 == 9:
                store.set_multi({k: [tag, n] for k in keys[:4]})
                got = store.get_multi(keys[:4])
                expected = [[tag, n]] * 4
            else:
                store.set(key, [tag, n])
                got = store.get(key)
                expected = [tag, n]
        except Exception as exc:
            errors.append('%s: %s' % (type(exc).__name__, exc))
            continue
        if got != expected:
            if _tags(got) - {tag}:
                foreign += 1
            else:
                errors.append('wrong value %r' % (got,))
    return {'ops': ops, 'errors': len(errors), 'foreign': foreign,
            'first_errors': errors[:3]}


def _tags(value: ty.Any) -> set[str]:
    """The tags in a value :func:`workload` wrote, or in a list of them."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        return {value[0]}
    if isinstance(value, list):
        return set().union(*(_tags(item) for item in value))
    return set()


def lock_rounds(store: ty.Any, tag: str, rounds: int) -> dict[str, int]:
    """Take one lock ``rounds`` times; count times someone else held it too.

    Inside the lock a marker key is added (it must be absent) and removed
    before release: a second holder finds the marker there.
    """
    doubles = 0
    for _ in range(rounds):
        with store.get_lock('the-lock'):
            if not store.add('holder', tag):
                doubles += 1
            store.delete('holder')
    return {'rounds': rounds, 'doubles': doubles}


def _child_main(body: ty.Callable[[int], dict], index: int,
                write_fd: int, deadline: int) -> None:
    """Run ``body`` in a forked child and send its result; never returns."""
    code = 1
    try:
        signal.alarm(deadline)
        result = body(index)
        code = 0
    except BaseException:
        result = {'crash': traceback.format_exc()}
    finally:
        try:
            os.write(write_fd, (json.dumps(result) + '\n').encode())
        finally:
            os._exit(code)


def c_fork() -> int:
    """Fork as C code does, without Python's ``os.register_at_fork`` hooks.

    uWSGI's master forks its workers this way unless told otherwise
    (``py-call-osafterfork``). PyDLL keeps the GIL across the call, so the
    child's only thread holds it, as in a uWSGI worker.
    """
    return ctypes.PyDLL(None).fork()


def in_forked_children(count: int, body: ty.Callable[[int], dict],
                       method: str = 'os',
                       meanwhile: ty.Callable[[], ty.Any] = lambda: None,
                       deadline: int = CHILD_DEADLINE) -> list[dict]:
    """Run ``body(index)`` in ``count`` forked children; their results.

    ``method`` is ``'os'`` (``os.fork()``), ``'c'`` (libc's ``fork()``
    called from C, as uWSGI and mod_wsgi fork: Python's fork hooks do not
    run) or ``'multiprocessing'`` (a ``multiprocessing`` 'fork' context).
    Every child runs at the same time, and the parent runs ``meanwhile()``
    while they do; a child that crashes or hangs (past ``deadline``
    seconds) gives a result with ``crash``.
    """
    read_fd, write_fd = os.pipe()
    try:
        if method in ('os', 'c'):
            fork = c_fork if method == 'c' else os.fork
            pids = []
            for index in range(count):
                pid = fork()
                if pid == 0:
                    os.close(read_fd)
                    _child_main(body, index, write_fd, deadline)
                pids.append(pid)
            waits = [lambda pid=pid: os.waitpid(pid, 0) for pid in pids]
        else:
            context = multiprocessing.get_context('fork')
            procs = [context.Process(target=_child_main,
                                     args=(body, index, write_fd,
                                           deadline))
                     for index in range(count)]
            for proc in procs:
                proc.start()
            waits = [proc.join for proc in procs]
        os.close(write_fd)
        write_fd = -1
        meanwhile()
        with os.fdopen(read_fd, 'rb') as reader:
            read_fd = -1
            lines = reader.read().decode().splitlines()
        for wait in waits:
            wait()
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
    results = [json.loads(line) for line in lines]
    results += [{'crash': 'no result'}] * (count - len(results))
    return results


class BusyThreads:
    """Threads that keep using a store until stopped (a context manager).

    Forking while they run leaves the child with locks and connections
    they held mid-operation.
    """

    def __init__(self, store: ty.Any, count: int = 8) -> None:
        self.store = store
        self.stop = threading.Event()
        self.calls = 0
        self.threads = [threading.Thread(target=self._run, args=(n,),
                                         daemon=True) for n in range(count)]

    def _run(self, n: int) -> None:
        key = 'busy-%d' % n
        while not self.stop.is_set():
            try:
                self.store.set(key, n)
                self.store.get_multi([key, 'busy-0'])
                with self.store.get_lock(key):
                    pass
            except exception.KVSError:
                pass
            self.calls += 1

    def __enter__(self) -> 'BusyThreads':
        for thread in self.threads:
            thread.start()
        # Until every thread is inside the store's code.
        deadline = time.monotonic() + 10
        while self.calls < 50 and time.monotonic() < deadline:
            time.sleep(0.001)
        return self

    def __exit__(self, *exc_info: ty.Any) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)
