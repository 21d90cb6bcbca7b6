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

"""The near cache: values read from the server, kept in this process.

Opt-in per store (``near_cache_ttl``, ``near_cache_size``). The store
(:mod:`oslo_kvs.core`) decides which reads may be served from here and
drops the keys it writes; this module keeps the entries:

- **Bounded staleness.** An entry is served for ``near_cache_ttl``
  seconds counted from when the server read *started*, so a write by
  another process that the read missed is hidden no longer than that.
- **No stale fill.** Every drop (a write of this process, an invalidation
  from the server) advances a counter and records it for the keys it
  drops; a read of a key dropped since the read began fills nothing,
  since a write may have landed after the server answered it. A
  :meth:`NearCache.suspend` or :meth:`NearCache.resume` does so for
  every key. Fills and drops take one lock, so neither can come between
  the other's check and change. The record keeps at most
  :data:`DROPS_KEPT` keys; when full it is emptied and reads begun
  before then fill nothing (as after a resume).
- **Isolation.** Each hit hands out a value no one else holds. An
  immutable value (:func:`oslo_kvs.serialization.plain`) is kept and
  handed out as itself. A dict, list or set of immutable values, and a
  dict whose values are immutable or such containers (a token's data
  with its list of roles), is kept as a copy and handed out as a copy
  made with the containers' own ``copy``: 0.05 to 0.15 us, where
  ``copy.deepcopy`` takes about 3 us. Anything else is kept pickled and
  unpickled anew on each hit (0.5 us for a small dict). Values arrive
  here verified and decoded, and the pickles are made here, so
  unpickling runs nothing foreign.
- **Bounded size.** At most ``near_cache_size`` entries, evicted in an
  approximation of least-recently-used order (CLOCK, "second chance"): a
  hit marks its entry; when full, the oldest entry goes unless marked, a
  marked one is unmarked and moved to the newest end. A hit only reads
  the dict and sets a mark, so it takes no lock: under the GIL each is
  one atomic step.
- **Per process.** Made by a :class:`oslo_kvs._process.PerProcess`, so a
  forked child starts empty.

A backend whose server can notify other clients' writes tells the cache
through :meth:`NearCache.drop`, :meth:`~NearCache.suspend` and
:meth:`~NearCache.resume` (see ``Backend.watch``).
"""

import collections
import itertools
import pickle
import threading
import time
import typing as ty

from oslo_kvs import _process
from oslo_kvs import serialization

if ty.TYPE_CHECKING:
    from oslo_kvs.backends import base

#: What :meth:`NearCache.lookup` returns for a key it does not serve.
MISS: ty.Any = object()
#: Most keys whose last drop a cache remembers (see the module's text):
#: with Redis's broadcast tracking every write to the server is a drop.
DROPS_KEPT = 65536

_monotonic = time.monotonic
_plain = serialization.plain
_IMMUTABLE = serialization.IMMUTABLE_TYPES
#: Containers whose own copy isolates them when they hold only immutables.
_COPIES: dict[type, ty.Callable[[ty.Any], ty.Any]] = {
    dict: dict.copy, list: list.copy, set: set.copy}


def _flat(value: ty.Any) -> bool:
    """Whether ``value`` is a dict, list or set of immutable values."""
    kind = type(value)
    if kind not in _COPIES:
        return False
    return _IMMUTABLE.issuperset(map(type, value.values() if kind is dict
                                     else value))


def _copy_nested(keys: tuple[ty.Any, ...]) -> ty.Callable[[ty.Any], ty.Any]:
    """A copy of a dict whose values under ``keys`` are flat containers."""
    def copy(value: dict[ty.Any, ty.Any]) -> dict[ty.Any, ty.Any]:
        value = value.copy()
        for key in keys:
            value[key] = value[key].copy()
        return value
    return copy


def keep(value: ty.Any) -> tuple[ty.Any, ty.Callable[[ty.Any], ty.Any] | None]:
    """What an entry holds for ``value``, and what copies it on a hit.

    Whatever is kept is this module's own object: the caller keeps
    ``value`` and may change it.

    :returns: ``(kept, copy)``; ``copy`` is None for a value handed out
        as itself.
    """
    if _plain(value) is not None:
        return value, None
    if _flat(value):
        copy = _COPIES[type(value)]
        return copy(value), copy
    if type(value) is dict:
        # Values stored are values dumps() accepted: an immutable member
        # needs no check of its text.
        mutable = [key for key, member in value.items()
                   if type(member) not in _IMMUTABLE]
        if all([_flat(value[key]) for key in mutable]):
            copy = _copy_nested(tuple(mutable))
            return copy(value), copy
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL), pickle.loads


class NearCache:
    """One process's near cache for one store.

    :param ttl: seconds an entry is served, from the start of its read.
    :param size: most entries kept.
    """

    def __init__(self, ttl: float, size: int) -> None:
        self.ttl, self.size = ttl, size
        #: The store's key -> [served until, kept, copy, marked, stored
        #: key] (see keep()), so that a hit needs no stored key; and
        #: stored key -> the store's key, for drops.
        self._entries: collections.OrderedDict[str, list[ty.Any]] = (
            collections.OrderedDict())
        self._keys: dict[str, str] = {}
        self._lock = threading.Lock()
        #: Drops so far; per key, the count at its last drop; reads
        #: begun before ``_floor`` fill nothing.
        self._drops = 0
        self._dropped: dict[str, int] = {}
        self._floor = 0
        self._suspended = False
        #: Stops the backend's watch (``Backend.watch``), if it watches.
        self.stop: ty.Callable[[], None] | None = None
        # Exact under threads without a lock: next() is one C call. Keys
        # of multi-key reads are added under a lock, which costs less
        # than advancing a count that many times.
        self._hits, self._misses = itertools.count(), itertools.count()
        self._reads = 0
        self._more = [0, 0]     # hits, misses
        self._more_lock = threading.Lock()

    # --- the store's side ------------------------------------------------

    def hit(self, key: str) -> ty.Any:
        """The value kept for ``key`` while fresh, else :data:`MISS`.

        Counts the hit, not the miss: see :meth:`lookup`. For a store
        whose stored keys are a pure function of its keys, and an exact
        str ``key``.
        """
        entry = self._entries.get(key)
        if entry is None or _monotonic() >= entry[0]:
            return MISS
        entry[3] = True
        next(self._hits)
        copy = entry[2]
        return entry[1] if copy is None else copy(entry[1])

    def lookup(self, key: str, stored: str) -> ty.Any:
        """:meth:`hit` of ``key`` if kept as ``stored``; counts a miss too."""
        entry = self._entries.get(key)
        if entry is not None and entry[4] == stored:
            value = self.hit(key)
            if value is not MISS:
                return value
        next(self._misses)
        return MISS

    def hit_all(self, keys: ty.Iterable[ty.Any]) -> list[ty.Any] | None:
        """The values of every key if each is kept and fresh, else None.

        As :meth:`hit`, for each key; only exact str keys can hit. Counts
        the hits when every key hits, else nothing.
        """
        now, get = _monotonic(), self._entries.get
        values: list[ty.Any] = []
        add = values.append
        for key in keys:
            entry = get(key) if type(key) is str else None
            if entry is None or now >= entry[0]:
                return None
            entry[3] = True
            copy = entry[2]
            add(entry[1] if copy is None else copy(entry[1]))
        self._count(len(values), 0)
        return values

    def lookup_many(self, keys: list[str],
                    stored_keys: list[str]) -> list[ty.Any]:
        """:meth:`lookup` of each key, in one call."""
        now, get = _monotonic(), self._entries.get
        values: list[ty.Any] = []
        add = values.append
        for key, stored in zip(keys, stored_keys):
            entry = get(key)
            if entry is not None and now < entry[0] and entry[4] == stored:
                entry[3] = True
                copy = entry[2]
                add(entry[1] if copy is None else copy(entry[1]))
            else:
                add(MISS)
        missed = values.count(MISS)
        self._count(len(values) - missed, missed)
        return values

    def _count(self, hits: int, misses: int) -> None:
        with self._more_lock:
            more = self._more
            more[0] += hits
            more[1] += misses

    def begin(self) -> tuple[int, float]:
        """Mark the start of a server read (or write) that may fill."""
        return self._drops, _monotonic()

    def fill(self, begun: tuple[int, float],
             found: ty.Iterable[tuple[str, str, ty.Any]],
             written: bool = False, ttl: float | None = None) -> None:
        """Keep values read (or written) since ``begun`` (:meth:`begin`).

        :param found: ``(key, stored key, value)`` triples; values read
            are verified and decoded.
        :param written: whether this process wrote the values (with the
            server's ``ttl``), rather than read them. A written key that
            another drop overtook is dropped, not kept, since the server
            may hold either value; one that was not makes reads of it
            begun before the write fill nothing.
        """
        drops, started = begun
        until = started + (self.ttl if not ttl else min(ttl, self.ttl))
        made = [(key, stored, keep(value)) for key, stored, value in found]
        with self._lock:
            # Kept: what no drop overtook since ``begun`` (it may be stale).
            if drops < self._floor or self._suspended:
                fresh = []
            else:
                dropped = self._dropped
                fresh = [item for item in made
                         if dropped.get(item[1], -1) <= drops]
            if written:
                # Reads of these keys begun before now are stale too.
                self._drop([stored for _, stored, _ in made])
            entries, keys = self._entries, self._keys
            for key, stored, (kept, copy) in fresh:
                old = entries.get(key)
                if old is not None:
                    keys.pop(old[4], None)
                elif len(entries) >= self.size:
                    self._evict()
                entries[key] = [until, kept, copy, False, stored]
                keys[stored] = key

    def _evict(self) -> None:
        """Remove one entry (CLOCK); under the lock, with entries.

        The oldest goes unless it is marked and fresh; a marked one is
        unmarked and moved to the newest end.
        """
        entries, now = self._entries, _monotonic()
        for _ in range(len(entries)):
            key, entry = entries.popitem(last=False)
            if not entry[3] or entry[0] <= now:
                break
            entry[3] = False     # a second chance, at the newest end
            entries[key] = entry
        else:
            key, entry = entries.popitem(last=False)  # all were marked
        self._keys.pop(entry[4], None)

    # --- the watcher's side (and the store's writes) -----------------------

    def drop(self, stored_keys: ty.Iterable[str]) -> None:
        """Forget these stored keys (written by this or another client)."""
        with self._lock:
            self._drop(stored_keys)

    def _drop(self, stored_keys: ty.Iterable[str]) -> None:
        """Drop keys, remembering when; under the lock."""
        self._drops += 1
        drops, dropped, pop = self._drops, self._dropped, self._entries.pop
        key_of = self._keys.pop
        for stored in stored_keys:
            key = key_of(stored, None)
            if key is not None:
                pop(key, None)
            dropped[stored] = drops
        if len(dropped) > DROPS_KEPT:
            self._forget_drops()

    def _forget_drops(self) -> None:
        """Make every read begun before now fill nothing; under the lock."""
        self._drops += 1
        self._floor = self._drops
        self._dropped.clear()

    def suspend(self) -> None:
        """Forget everything and serve nothing until :meth:`resume`."""
        with self._lock:
            self._suspended = True
            self._forget_drops()
            self._entries.clear()
            self._keys.clear()

    def resume(self) -> None:
        """Serve again; reads begun before now still fill nothing."""
        with self._lock:
            self._suspended = False
            self._forget_drops()

    # --- counts -----------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Hits and misses so far (keys read), and entries kept now."""
        with self._lock:
            # A count is read by advancing it: subtract the reads made.
            hits, misses = next(self._hits), next(self._misses)
            hits, misses = hits - self._reads, misses - self._reads
            self._reads += 1
            with self._more_lock:
                hits, misses = hits + self._more[0], misses + self._more[1]
            return {'hits': hits, 'misses': misses,
                    'entries': len(self._entries)}


def per_process(ttl: float, size: int, backend: 'base.Backend'
                ) -> '_process.PerProcess[NearCache] | None':
    """A store's near caches, one per process; None when ``ttl`` is 0.

    Each process's cache is made on first use, and ``backend`` is asked
    then to watch other clients' writes for it (``Backend.watch``).
    """
    if not ttl:
        return None
    # PerProcess may call make() twice when threads race to a process's
    # first use; only one cache may be watched, so the first is shared.
    guard = _process.Primitive('Lock')
    made: dict[int, NearCache] = {}

    def make() -> NearCache:
        pid = _process.pid()
        with guard:
            cache = made.get(pid)
            if cache is None:
                cache = NearCache(ttl, size)
                # Kept only once watched: a watch that raised is asked
                # again on the next use.
                cache.stop = backend.watch(cache)
                made.clear()    # a parent's: its watch is the parent's
                made[pid] = cache
            return cache
    return _process.PerProcess(make)


def close(caches: '_process.PerProcess[NearCache] | None') -> None:
    """Empty this process's cache for good and stop its watch, if any.

    A thread still using the closed store's configuration finds the cache
    suspended: it serves and keeps nothing.
    """
    cache = caches.forget() if caches is not None else None
    if cache is not None:
        if cache.stop is not None:
            cache.stop()     # then nothing resumes it
        cache.suspend()


def counts(caches: '_process.PerProcess[NearCache] | None'
           ) -> dict[str, int] | None:
    """``stats()``'s ``near_cache``: this process's counts, or None (off)."""
    if caches is None:
        return None
    cache = caches.peek()
    if cache is None:
        return {'hits': 0, 'misses': 0, 'entries': 0}
    return cache.counts()
