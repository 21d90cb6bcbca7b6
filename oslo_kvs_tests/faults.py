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

"""Workloads and scenarios for fault tests, and their measurement script.

The fork workloads are shared by ``functional/test_fork.py`` (small,
bounded runs that assert behaviour) and ``python -m
oslo_kvs_tests.bench.faults`` (the large runs whose figures the
documentation quotes). The server scenarios (a server stopped, restarted
or stopped mid-run) are written once here and run by each backend's
``functional/test_*_faults.py`` against servers it starts itself.
"""

import ctypes
import json
import multiprocessing
import os
import signal
import tempfile
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
                path: str, deadline: int) -> None:
    """Run ``body`` in a forked child, write its result; never returns.

    Each child has a file of its own: results written to one shared pipe
    interleave once they are larger than the pipe's atomic write size.
    """
    code = 1
    try:
        signal.alarm(deadline)
        result = body(index)
        code = 0
    except BaseException:
        result = {'crash': traceback.format_exc()}
    finally:
        try:
            with open(path + '.part', 'w') as out:
                json.dump(result, out)
            os.rename(path + '.part', path)
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
    with tempfile.TemporaryDirectory(prefix='oslo-kvs-children-') as tmp:
        paths = [os.path.join(tmp, '%d.json' % index)
                 for index in range(count)]
        if method in ('os', 'c'):
            fork = c_fork if method == 'c' else os.fork
            pids = []
            for index in range(count):
                pid = fork()
                if pid == 0:
                    _child_main(body, index, paths[index], deadline)
                pids.append(pid)
            waits = [lambda pid=pid: os.waitpid(pid, 0) for pid in pids]
        else:
            context = multiprocessing.get_context('fork')
            procs = [context.Process(target=_child_main,
                                     args=(body, index, paths[index],
                                           deadline))
                     for index in range(count)]
            for proc in procs:
                proc.start()
            waits = [proc.join for proc in procs]
        meanwhile()
        for wait in waits:
            wait()
        results = []
        for path in paths:
            try:
                with open(path) as found:
                    results.append(json.load(found))
            except FileNotFoundError:
                results.append({'crash': 'no result'})
    return results


def sleep_here(monkeypatch: ty.Any, nap: ty.Callable[[float], ty.Any]
               ) -> None:
    """Make ``time.sleep`` call ``nap`` in the calling thread only.

    Other threads, such as a client library's monitor left running by an
    earlier test, keep sleeping for real and never reach ``nap``.
    """
    real, here = time.sleep, threading.current_thread()

    def sleep(seconds: float) -> ty.Any:
        if threading.current_thread() is here:
            return nap(seconds)
        return real(seconds)
    monkeypatch.setattr(time, 'sleep', sleep)


def run_threads(target: ty.Callable[[int], ty.Any], count: int,
                timeout: float | None = None) -> None:
    """Run ``target(n)`` for n in ``range(count)``, each in a thread.

    Returns once all have ended; with ``timeout``, fails when one is still
    running that many seconds after the join began.
    """
    threads = [threading.Thread(target=target, args=(n,))
               for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), 'a thread is still running'


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


# Scenarios shared by the backends' fault tests: each backend's test file
# starts and stops its own server, these say what must hold meanwhile.

def operations(store: ty.Any) -> dict[str, ty.Callable[[], ty.Any]]:
    """Every kind of store call on keys ``k`` and ``j``, by name."""
    return {
        'get': lambda: store.get('k'),
        'set': lambda: store.set('k', 1),
        'get_multi': lambda: store.get_multi(['k', 'j']),
        'set_multi': lambda: store.set_multi({'k': 1, 'j': 2}),
        'delete_multi': lambda: store.delete_multi(['k', 'j']),
        'add': lambda: store.add('k', 1),
        'delete': lambda: store.delete('k'),
        'lock': lambda: store.get_lock('k').acquire(blocking=False),
    }


def assert_every_operation_fails(store: ty.Any, address: str,
                                 backing_store: str,
                                 bound: float | None = None) -> None:
    """Each operation raises BackendError naming the server and backend.

    :param bound: seconds each failure may take at most (not checked when
        ``None``); generous, it catches a hang.
    """
    for name, call in operations(store).items():
        started = time.monotonic()
        try:
            call()
        except exception.BackendError as exc:
            message = str(exc)
        else:
            raise AssertionError('%s did not fail' % name)
        if bound is not None:
            assert time.monotonic() - started < bound, name
        assert address in message, name
        assert backing_store in message, name


def assert_every_operation_works(store: ty.Any) -> None:
    """Each operation does its job again (``k`` may hold anything)."""
    store.set('k', 'after')
    assert store.get('k') == 'after'
    store.set_multi({'k': 1, 'j': 2})
    assert store.get_multi(['k', 'j']) == [1, 2]
    store.delete_multi(['j'])
    assert store.add('j', 3)
    store.delete('j')
    with store.get_lock('k') as lock:
        store.set('k', 'locked', lock=lock)
    assert store.get('k') == 'locked'


def stop_mid_run(store: ty.Any, server: ty.Any, down_for: float,
                 recovery_deadline: float) -> list[tuple[str, float]]:
    """Stop and restart ``server`` while a thread sets and gets a key.

    Returns each round's outcome (``'ok'`` or the error's text) and the
    seconds it took; the run ends once a round succeeds after the restart
    or ``recovery_deadline`` seconds pass.
    """
    outcomes: list[tuple[str, float]] = []
    stop = threading.Event()

    def rounds() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            started = time.monotonic()
            try:
                store.set('k', n)
                assert store.get('k') == n
                outcome = 'ok'
            except exception.BackendError as exc:
                outcome = str(exc)
            except Exception as exc:  # recorded, and fails the test
                outcome = repr(exc)
            outcomes.append((outcome, time.monotonic() - started))
            time.sleep(0.005)

    worker = threading.Thread(target=rounds)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while not outcomes and time.monotonic() < deadline:
            time.sleep(0.05)
        server.stop()
        time.sleep(down_for)
        server.start()
        deadline = time.monotonic() + recovery_deadline
        while outcomes[-1][0] != 'ok' and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join()
    return outcomes


def assert_stop_noticed_and_recovered(outcomes: list[tuple[str, float]],
                                      address: str, bound: float) -> None:
    """Check the rounds of :func:`stop_mid_run`.

    Some failed, each naming ``address``; the last succeeded; none took
    ``bound`` seconds or more.
    """
    failures = [outcome for outcome, _ in outcomes if outcome != 'ok']
    assert failures, 'the stop went unnoticed'
    assert all(address in outcome for outcome in failures), failures
    assert outcomes[-1][0] == 'ok', 'no recovery after the restart'
    assert max(took for _, took in outcomes) < bound


class WriteLoad:
    """Threads writing and reading back keys of their own.

    A context manager: the threads run inside it, while a test or a
    benchmark kills and restarts servers.

    Records every BackendError as ``(key, value, message)`` in
    ``failures``, the keys of failed writes that were stored all the same
    in ``stored_failures``, the keys that read back another value in
    ``wrong``, and counts the operations in ``ops``.
    """

    def __init__(self, store: ty.Any, threads: int = 4,
                 keys: int = 50) -> None:
        self.store = store
        self.keys = keys
        self.stop = threading.Event()
        self.failures: list[tuple[str, int, str]] = []
        self.stored_failures: list[str] = []
        self.wrong: list[str] = []
        self.ops = 0
        self._count = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(n,))
                        for n in range(threads)]

    def _run(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            self._round('w%d-%d' % (n, i % self.keys), i)
            with self._count:
                self.ops += 2

    def _round(self, key: str, value: int) -> None:
        """Set ``key`` to ``value`` and read it back."""
        try:
            self.store.set(key, value)
        except exception.BackendError as exc:
            self.failures.append((key, value, str(exc)))
            try:
                if self.store.get(key) == value:
                    self.stored_failures.append(key)
            except exception.KVSError:
                pass
            return
        try:
            if self.store.get(key) != value:
                self.wrong.append(key)
        except exception.BackendError as exc:
            self.failures.append((key, value, str(exc)))
        except exception.NotFound:
            pass  # the server died between the set and the get

    def __enter__(self) -> 'WriteLoad':
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: ty.Any) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
