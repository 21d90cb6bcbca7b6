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

"""What belongs to one process: connections, locks, queues, threads.

Pre-fork servers configure stores in a master process and then fork
workers. A worker must never use what it inherited: a pooled connection
would carry replies meant for another process, a lock held by another
thread at the fork stays held forever, and a background thread does not
exist in the child at all. Whoever forks (``os.fork()``, uWSGI and
mod_wsgi in C, any embedding code), the process id changes, so every
such object lives in a :class:`PerProcess` that compares the id where
the object is handed out and makes a new one when it differs.

Asking the kernel for the process id is a system call (about 0.2 µs,
more than the rest of a counted operation), so :func:`pid` asks once per
process: it keeps the id beside one byte of memory that Linux zeroes in
every child, whoever forks (``MADV_WIPEONFORK``). A set byte means the
kept id is still this process's; a zeroed one means a fork happened and
the id is read again. Where the kernel cannot wipe memory on fork, every
call asks it.

``os.register_at_fork`` only drops the inherited objects early when
Python itself forked; nothing depends on it, since uWSGI does not run
Python's fork hooks by default.

Nothing is made at import either: a service may import oslo_kvs before
``eventlet.monkey_patch()``, and a lock made then would be a native one
that green threads cannot share. Made on first use, after the patch, it
is the green one.
"""

import mmap
import os
import sys
import threading
import typing as ty
import weakref

T = ty.TypeVar('T')

_instances: 'weakref.WeakSet[PerProcess[ty.Any]]' = weakref.WeakSet()

#: madvise() advice that zeroes a private mapping in a forked child
#: (Linux 4.14 and later); Python's mmap module names it from 3.12 on.
_MADV_WIPEONFORK = getattr(mmap, 'MADV_WIPEONFORK', 18)


def _wiped_on_fork() -> tuple[ty.Any, int]:
    """A byte every fork zeroes in the child, and the value to set it to.

    Where the OS cannot wipe memory on fork: a byte that stays 0, so
    :func:`pid` asks the kernel every time.
    """
    if sys.platform.startswith('linux'):
        try:
            page = mmap.mmap(-1, mmap.PAGESIZE,
                             flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            page.madvise(_MADV_WIPEONFORK)
            return page, 1
        except (OSError, ValueError):
            pass
    return bytearray(1), 0


_page, _SET = _wiped_on_fork()
#: The id :func:`pid` read last; this process's while ``_page[0]`` is set.
_known = [0]


def pid() -> int:
    """This process's id: a read of memory, a system call after a fork."""
    if _page[0]:
        return _known[0]
    known = _known[0] = os.getpid()
    # Set after the id, so a thread that sees the byte sees the id.
    _page[0] = _SET
    return known


class PerProcess(ty.Generic[T]):
    """The object ``factory()`` makes, made anew in each process.

    :param factory: makes the object; called on first use in a process,
        and when threads race there, possibly more than once (one result
        wins, the others are dropped).
    """

    __slots__ = ('_factory', '_made', '__weakref__')

    def __init__(self, factory: ty.Callable[[], T]) -> None:
        self._factory = factory
        # pid -> object; only this process's entry is ever used.
        self._made: dict[int, T] = {}
        _instances.add(self)

    def get(self) -> T:
        """This process's object, made now if this is its first use here."""
        # pid(), inlined: this runs on every counted operation.
        made = self._made.get(_known[0] if _page[0] else pid())
        if made is None:
            here = pid()
            for other in [p for p in self._made if p != here]:
                # The parent's: dropped, never closed, as the parent still
                # uses it. Only other pids are popped, so two threads
                # making this process's object cannot drop each other's.
                self._made.pop(other, None)
            # dict.setdefault is atomic: threads racing here share one.
            made = self._made.setdefault(here, self._factory())
        return made

    @property
    def by_pid(self) -> dict[int, T]:
        """pid -> the object made in that process (read it, never change it).

        The one dict for the holder's life: a truth test of it is
        cheaper than any call. It holds this process's object once made
        (until :meth:`forget`), and, in a child forked without Python's
        hooks, its parent's until the first :meth:`get` there.
        """
        return self._made

    def peek(self) -> T | None:
        """This process's object if it was made, else ``None``."""
        return self._made.get(pid())

    def forget(self) -> T | None:
        """Drop this process's object (to close it); return it, if made."""
        return self._made.pop(pid(), None)


class Primitive(PerProcess[ty.Any]):
    """A :mod:`threading` primitive of this process, usable as it is.

    :param kind: its name in :mod:`threading` (``'Lock'``,
        ``'Condition'``, ...), looked up when first needed so that a
        monkey-patched module gives its own.
    """

    __slots__ = ()

    def __init__(self, kind: str = 'Lock') -> None:
        super().__init__(lambda: getattr(threading, kind)())

    def __enter__(self) -> ty.Any:
        return self.get().__enter__()

    def __exit__(self, *exc_info: ty.Any) -> ty.Any:
        return self.get().__exit__(*exc_info)


def will_fork_without_hooks() -> bool:
    """Whether this process is a uWSGI master that has yet to fork workers.

    uWSGI forks in C and, unless told to (``py-call-osafterfork``), skips
    the interpreter's own after-fork work, which resets the GIL. A Python
    thread that holds or waits for the GIL at that moment leaves every
    worker hung on it, so nothing here starts a thread in such a process.
    """
    uwsgi = sys.modules.get('uwsgi')
    worker_id = getattr(uwsgi, 'worker_id', None)
    return worker_id is not None and worker_id() == 0


def _drop_in_child() -> None:
    for instance in list(_instances):
        instance._made.clear()


os.register_at_fork(after_in_child=_drop_in_child)
