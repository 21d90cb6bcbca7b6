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
with the first :meth:`WarmQueue.put`, so a service may import oslo_kvs
before ``eventlet.monkey_patch()``.
"""

import collections
import logging
import os
import threading
import typing as ty

from oslo_kvs import _lazy

# Memoization logs under one name, so one logging setting covers it.
LOG = logging.getLogger('oslo_kvs.memoize')


class WarmQueue:
    """A bounded queue of calls computed by one background daemon thread.

    :meth:`~oslo_kvs.memoize.MemoizedFunction.warm` adds to the module's
    :data:`warm_queue`. A call already waiting is not queued twice. Tests
    can wait for the queue with :meth:`join`.
    """

    def __init__(self, maxsize: int = 1000) -> None:
        #: Most calls waiting; further :meth:`put` calls are refused.
        self.maxsize = maxsize
        self._reset()

    def _reset(self) -> None:
        self._cond = _lazy.Primitive('Condition')
        self._items: collections.deque[tuple[str, ty.Callable[[], ty.Any]]]
        self._items = collections.deque()
        self._pending: set[str] = set()
        self._unfinished = 0
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        """Calls waiting, not counting the one being computed."""
        return len(self._items)

    @property
    def unfinished(self) -> int:
        """Calls waiting or being computed."""
        return self._unfinished

    def put(self, key: str, task: ty.Callable[[], ty.Any]) -> bool:
        """Queue ``task`` under ``key``.

        :returns: ``True`` when queued or already waiting, ``False`` when
            the queue is full.
        """
        cond = self._cond.get()
        with cond:
            if key in self._pending:
                return True
            if len(self._items) >= self.maxsize:
                return False
            self._items.append((key, task))
            self._pending.add(key)
            self._unfinished += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name='oslo-kvs-memoize-warm',
                    daemon=True)
                self._thread.start()
            cond.notify_all()
        return True

    def _work(self) -> None:
        cond = self._cond.get()
        while True:
            with cond:
                cond.wait_for(lambda: self._items)
                key, task = self._items.popleft()
            try:
                task()
            except Exception:
                LOG.warning('Warming a memoized result failed',
                            exc_info=True)
            finally:
                with cond:
                    self._pending.discard(key)
                    self._unfinished -= 1
                    cond.notify_all()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every queued call is computed.

        Do not call it from a function being warmed.

        :returns: ``False`` if ``timeout`` seconds passed first.
        """
        cond = self._cond.get()
        with cond:
            return cond.wait_for(lambda: self._unfinished == 0, timeout)

    def clear(self) -> int:
        """Drop the waiting calls; return how many were dropped."""
        cond = self._cond.get()
        with cond:
            dropped = len(self._items)
            for key, _ in self._items:
                self._pending.discard(key)
            self._items.clear()
            self._unfinished -= dropped
            cond.notify_all()
            return dropped


#: The queue behind :meth:`~oslo_kvs.memoize.MemoizedFunction.warm`.
warm_queue = WarmQueue()
# A forked child has no worker thread and must not inherit queued calls.
os.register_at_fork(after_in_child=warm_queue._reset)
