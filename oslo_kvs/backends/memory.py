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

"""``openstack.kvs.Memory``: the embedded, in-process default backend."""

import collections
import heapq
import math
import time
import typing as ty

from oslo_kvs import _process
from oslo_kvs.backends import base

MAX_ITEMS = base.Option(
    'max_items', base.count(), 0,
    help='Most values kept; beyond it the least recently used is evicted. '
         '0 means no bound.')


_NEVER = math.inf
#: The entry of a missing key: it reads as expired.
_MISSING = (base.NO_VALUE, 0.0)


class MemoryBackend(base.Backend):
    """Thread-safe in-process store with expiry and optional LRU bound.

    Expired values are never returned and are purged as time passes (a
    heap of expiry times is drained on every write), so memory does not
    grow with dead entries. Locks exclude the threads of this process.

    Without ``max_items`` reads take no lock: an entry is a tuple that is
    replaced whole, never changed in place, and a dict lookup is atomic
    under the GIL. With it, every read moves the key to the recent end,
    under the lock. The store may hand over a
    :class:`~oslo_kvs.serialization.Plain` immutable value instead of
    bytes; it is kept and returned as it is.
    """

    name = 'openstack.kvs.Memory'
    local = True
    options = (MAX_ITEMS,)

    def __init__(self, arguments: ty.Mapping[str, ty.Any]) -> None:
        super().__init__(arguments)
        self.max_items: int = self.args['max_items']
        # key -> (value, expires_at); insertion order is recency order.
        self._data: collections.OrderedDict[str, tuple[bytes, float]] = (
            collections.OrderedDict())
        self._expiries: list[tuple[float, str]] = []
        # Per process: a thread of the parent may have held it at a fork.
        self._mutex = _process.Primitive('Lock')
        self._locks = base.LocalLocks()

    def __len__(self) -> int:
        """Live entries, counting ones expired but not yet purged."""
        return len(self._data)

    def stat_sources(self):
        # No server: this process's own entries.
        return [('this process', lambda: {
            'items': len(self), 'bytes_limit': None,
            'max_items': self.max_items or None})]

    # Callers hold self._mutex for every helper below.
    def _read(self, key: str, now: float) -> ty.Any:
        entry = self._data.get(key, _MISSING)
        if entry[1] <= now:
            self._data.pop(key, None)  # expired, or missing
            return base.NO_VALUE
        if self.max_items:
            self._data.move_to_end(key)
        return entry[0]

    def _write(self, key: str, value: bytes, now: float,
               ttl: float | None) -> None:
        expires_at = now + ttl if ttl else _NEVER
        self._data[key] = (value, expires_at)
        if self.max_items:
            self._data.move_to_end(key)
        if ttl:
            heapq.heappush(self._expiries, (expires_at, key))

    def _purge(self, now: float) -> None:
        heap = self._expiries
        while heap and heap[0][0] <= now:
            expires_at, key = heapq.heappop(heap)
            entry = self._data.get(key)
            # The key may have been rewritten since; only drop this entry.
            if entry is not None and entry[1] == expires_at:
                del self._data[key]
        # Overwritten keys leave stale heap entries; rebuild before the
        # heap outgrows the data it describes.
        if len(heap) > 2 * len(self._data) + 64:
            self._expiries = [(exp, key) for key, (_, exp)
                              in self._data.items() if exp != _NEVER]
            heapq.heapify(self._expiries)
        if self.max_items:
            while len(self._data) > self.max_items:
                self._data.popitem(last=False)

    def get_serialized(self, key):
        if not self.max_items:
            # Expired entries are left to the purge of the next write.
            value, expires_at = self._data.get(key, _MISSING)
            if expires_at is _NEVER or expires_at > time.monotonic():
                return value
            return base.NO_VALUE
        with self._mutex.get():
            return self._read(key, time.monotonic())

    def get_serialized_multi(self, keys):
        now = time.monotonic()
        if not self.max_items:
            get = self._data.get
            return [entry[0] if entry[1] > now else base.NO_VALUE
                    for entry in [get(key, _MISSING) for key in keys]]
        with self._mutex.get():
            return [self._read(key, now) for key in keys]

    def set_serialized(self, key, value, ttl=None):
        now = time.monotonic()
        with self._mutex.get():
            self._write(key, value, now, ttl)
            self._purge(now)

    def set_serialized_multi(self, mapping, ttl=None):
        now = time.monotonic()
        with self._mutex.get():
            for key, value in mapping.items():
                self._write(key, value, now, ttl)
            self._purge(now)

    def delete_multi(self, keys):
        with self._mutex.get():
            for key in keys:
                self._data.pop(key, None)

    def delete_existing(self, key):
        now = time.monotonic()
        with self._mutex.get():
            entry = self._data.pop(key, None)
            return entry is not None and entry[1] > now

    def add_serialized(self, key, value, ttl=None):
        now = time.monotonic()
        with self._mutex.get():
            if self._read(key, now) is not base.NO_VALUE:
                return False
            self._write(key, value, now, ttl)
            self._purge(now)
            return True

    # The version token of a value is its entry tuple: every write makes
    # a new one, so an unchanged identity means an unchanged key.
    def _entry(self, key: str, now: float) -> tuple[ty.Any, float] | None:
        """The live entry of ``key``; the caller holds the mutex."""
        entry = self._data.get(key)
        return entry if entry is not None and entry[1] > now else None

    def get_versioned(self, key):
        with self._mutex.get():
            entry = self._entry(key, time.monotonic())
        return (base.NO_VALUE, None) if entry is None else (entry[0], entry)

    def compare_and_set(self, key, token, value, ttl=None):
        now = time.monotonic()
        with self._mutex.get():
            entry = self._entry(key, now)
            if entry is not token:
                return False
            if entry is not None and ttl is base.KEEP_EXPIRY:
                # The deadline stays, and so does its heap entry.
                self._data[key] = (value, entry[1])
                if self.max_items:
                    self._data.move_to_end(key)
            else:
                self._write(key, value, now, ttl)
            self._purge(now)
            return True

    def touch_serialized(self, key, ttl=None):
        now = time.monotonic()
        with self._mutex.get():
            entry = self._entry(key, now)
            if entry is None:
                return False
            self._write(key, entry[0], now, ttl)
            self._purge(now)
            return True

    def acquire_lock(self, key, token, ttl):
        return self._locks.acquire(key, token, ttl)

    def release_lock(self, key, token):
        return self._locks.release(key, token)
