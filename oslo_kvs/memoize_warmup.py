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

"""The warm-up queue behind :meth:`oslo_kvs.memoize.MemoizedFunction.warm`.

A bounded, deduplicated queue of calls that one background daemon thread
runs. Nothing here is made at import: the condition and the thread come
with the first :meth:`WarmQueue.put` in each process (see
:mod:`oslo_kvs._process`).
"""

import collections
import logging
import threading
import typing as ty

from oslo_kvs import _process

# Memoization logs under one name, so one logging setting covers it.
LOG = logging.getLogger('oslo_kvs.memoize')


class _Work:
    """One process's queue: its waiting calls and the thread running them."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: collections.deque[tuple[str, ty.Callable[[], ty.Any]]]
        self.items = collections.deque()
        self.pending: set[str] = set()
        self.unfinished = 0
        self.thread: threading.Thread | None = None


class WarmQueue:
    """A bounded queue of calls computed by one background daemon thread.

    :meth:`~oslo_kvs.memoize.MemoizedFunction.warm` adds to the module's
    :data:`warm_queue`. A call already waiting is not queued twice. Tests
    can wait for the queue with :meth:`join`.

    Each process has its own calls and thread: a forked child (whoever
    forked it) starts with an empty queue and starts its own thread on its
    first :meth:`put`, since the parent's thread does not exist there.
    """

    def __init__(self, maxsize: int = 1000) -> None:
        #: Most calls waiting; further :meth:`put` calls are refused.
        self.maxsize = maxsize
        self._work = _process.PerProcess(_Work)

    def __len__(self) -> int:
        return len(self._work.get().items)

    @property
    def size(self) -> int:
        """Calls waiting, not counting the one being computed."""
        return len(self._work.get().items)

    @property
    def unfinished(self) -> int:
        """Calls waiting or being computed."""
        return self._work.get().unfinished

    def put(self, key: str, task: ty.Callable[[], ty.Any]) -> bool:
        """Queue ``task`` under ``key``.

        In a uWSGI master that has yet to fork its workers, ``task`` runs
        at once in the calling thread instead: a thread running at the
        fork would hang the workers (see
        :func:`oslo_kvs._process.will_fork_without_hooks`).

        :returns: ``True`` when queued, already waiting or done, ``False``
            when the queue is full.
        """
        if _process.will_fork_without_hooks():
            self._run_one(task)
            return True
        work = self._work.get()
        with work.cond:
            if key in work.pending:
                return True
            if len(work.items) >= self.maxsize:
                return False
            work.items.append((key, task))
            work.pending.add(key)
            work.unfinished += 1
            if work.thread is None or not work.thread.is_alive():
                work.thread = threading.Thread(
                    target=self._run, args=(work,),
                    name='oslo-kvs-memoize-warm', daemon=True)
                work.thread.start()
            work.cond.notify_all()
        return True

    @staticmethod
    def _run(work: _Work) -> None:
        cond = work.cond
        while True:
            with cond:
                cond.wait_for(lambda: work.items)
                key, task = work.items.popleft()
            try:
                WarmQueue._run_one(task)
            finally:
                with cond:
                    work.pending.discard(key)
                    work.unfinished -= 1
                    cond.notify_all()

    @staticmethod
    def _run_one(task: ty.Callable[[], ty.Any]) -> None:
        try:
            task()
        except Exception:
            LOG.warning('Warming a memoized result failed', exc_info=True)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every queued call is computed.

        Do not call it from a function being warmed.

        :returns: ``False`` if ``timeout`` seconds passed first.
        """
        work = self._work.get()
        with work.cond:
            return work.cond.wait_for(lambda: work.unfinished == 0, timeout)

    def clear(self) -> int:
        """Drop the waiting calls; return how many were dropped."""
        work = self._work.get()
        with work.cond:
            dropped = len(work.items)
            for key, _ in work.items:
                work.pending.discard(key)
            work.items.clear()
            work.unfinished -= dropped
            work.cond.notify_all()
            return dropped


#: The queue behind :meth:`~oslo_kvs.memoize.MemoizedFunction.warm`.
warm_queue = WarmQueue()
