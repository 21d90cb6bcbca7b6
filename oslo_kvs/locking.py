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

"""Store locks: fenced writes, a safety window, fair hand-off in a process.

A :class:`KeyValueStoreLock` is a lease on one key: a random token the
backend keeps under the key's lock key for ``lock_timeout`` seconds. Three
rules make a write made with it safe to bet a token on:

- **Fencing.** A backend with ``fenced_writes`` (Redis, one server or
  Sentinel) checks the token and writes in one server-side step, so a write
  delayed past the lease never lands once another holder has the lock.
- **Window.** Elsewhere a write is refused with
  :class:`~oslo_kvs.exception.LockTimeout` when less than ``lock_window``
  seconds of the lease remain, so a write slower than that in transit is
  the only one that can land late.
- **Fair hand-off.** The threads of one process that want the same lock
  queue here, first come first served, and only the head of the queue asks
  the server; a release hands the turn to the next thread at once. A lock
  held by another process is waited for on the server where it notifies
  releases (Redis), else with short jittered retries; either way bounded
  by the caller's ``timeout``.

:class:`RegionMutex` is the lock a plain dogpile.cache region takes on an
oslo_kvs backend; it waits the same way.
"""

import collections
import logging
import math
import random
import secrets
import threading
import time
import typing as ty
import weakref

from dogpile.cache import api

from oslo_kvs import _process
from oslo_kvs import exception
from oslo_kvs import observe

if ty.TYPE_CHECKING:
    from oslo_kvs.backends import base
    from oslo_kvs import settings as kvs_settings

LOG = logging.getLogger(__name__)


class _Queue:
    """A contended or leased turn: its owner, and the threads waiting."""

    __slots__ = ('owner', 'lease_end', 'waiters')

    def __init__(self, owner: object) -> None:
        self.owner: object | None = owner    # the one with the turn
        self.lease_end = math.inf            # when the owner's lease ends
        #: The threads of this process waiting, in arrival order.
        self.waiters: collections.deque = collections.deque()


class _Turns:
    """Per-process FIFO turns for locks, keyed by (backend, lock key).

    Only the thread holding the turn talks to the server, so threads of
    one process never race each other there and a release passes the lock
    to the longest waiting thread instead of back to the releasing one.
    A turn whose owner's lease ran out (an owner that never released) is
    taken by the head of the queue, as the server would free the lock.
    Every change of turn or lease wakes the waiters to look again.

    ``queues`` maps a key nobody holds to nothing, a key held without
    lease or waiters (an update's turn, uncontended) to its owner, and
    any other to a :class:`_Queue`. The uncontended turn is taken with
    one ``dict.setdefault``, atomic under the GIL, and given back under
    the plain lock; only a thread that has to wait uses the condition.
    The lock makes a release and a waiter's arrival exclude each other,
    so the turn goes to the waiter, never to nobody.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._changed = threading.Condition(self.lock)
        self.queues: dict[tuple[int, str], ty.Any] = {}

    def take(self, key: tuple[int, str], owner: object,
             deadline: float, blocking: bool) -> bool:
        """Wait for the turn until ``deadline``; return whether it came."""
        if self.queues.setdefault(key, owner) is owner:
            return True
        with self.lock:
            queue = self.queues.setdefault(key, owner)
            if queue is owner:
                return True    # given back meanwhile
            if queue.__class__ is not _Queue:
                queue = self.queues[key] = _Queue(queue)
            return self._wait(key, queue, owner, deadline, blocking)

    def _wait(self, key: tuple[int, str], queue: _Queue, owner: object,
              deadline: float, blocking: bool) -> bool:
        """:meth:`take` of a turn someone has or waits for; under the lock."""
        waiters = queue.waiters
        waiters.append(owner)
        while True:
            now = time.monotonic()
            head = waiters[0] is owner
            if head and (queue.owner is None or queue.lease_end <= now):
                waiters.popleft()
                queue.owner, queue.lease_end = owner, math.inf
                return True
            if not blocking or now >= deadline:
                waiters.remove(owner)
                if queue.owner is None and not waiters:
                    del self.queues[key]    # nobody has or wants it
                else:
                    self._changed.notify_all()    # maybe a new head
                return False
            # Only the head waits for the lease to run out.
            wake = min(queue.lease_end if head else math.inf, deadline)
            self._changed.wait(None if wake == math.inf else wake - now)

    def hold(self, key: tuple[int, str], owner: object,
             lease_end: float | None) -> None:
        """Record when the lease of ``owner`` ends (it now holds the lock).

        ``None`` passes its turn to the next waiter instead. Only while
        ``owner`` has the turn: a turn taken over after the owner's lease
        ran out stays where it is.
        """
        with self.lock:
            queue = self.queues.get(key)
            if queue is owner:    # uncontended: nobody waits
                if lease_end is None:
                    del self.queues[key]
                else:
                    queue = self.queues[key] = _Queue(owner)
                    queue.lease_end = lease_end
                return
            if queue is None or queue.owner is not owner:
                return
            if lease_end is not None:
                queue.lease_end = lease_end
            elif not queue.waiters:
                del self.queues[key]    # nobody wants it any more
                return
            else:
                queue.owner, queue.lease_end = None, math.inf
            if queue.waiters:
                self._changed.notify_all()


# This process's turns: a forked child must not wait for threads of its
# parent.
_turns = _process.PerProcess(_Turns)


_Held = dict[int, list['weakref.ref[KeyValueStoreLock]']]

#: Threads of this process that hold a store lock: thread ident -> the
#: locks it took (weak references). A read made by one of them never
#: comes from a near cache (:mod:`oslo_kvs.near`). A lock abandoned
#: without release counts until its lease ends (or it is collected), so
#: a reused thread ident is not taken for a holder. This process's only
#: while it has any (under ``_holders_lock``): removed once empty.
_holders: _process.PerProcess[_Held] = _process.PerProcess(dict)
_holders_lock = _process.Primitive('Lock')
#: pid -> that process's holders, only while it has any: empty while no
#: thread of any process holds a lock, as is usual, so a read pays one
#: truth test of it. A child forked without Python's hooks (uWSGI)
#: finds its parent's entry here, which :func:`holds_a_lock` never
#: reads and drops on its first look.
holders = _holders.by_pid


def holds_a_lock() -> bool:
    """Whether the calling thread holds a store lock (any store, key)."""
    if not holders:
        return False
    mine = _holders.peek()
    if mine is None:
        _drop_inherited()
        return False
    held = mine.get(threading.get_ident())
    if not held:
        return False
    now = time.monotonic()
    for ref in tuple(held):
        lock = ref()
        if lock is not None and lock.active and now < lock._lease_end:
            return True
    return False


def _drop_inherited() -> None:
    """Forget the holders of a parent process (a fork without hooks)."""
    with _holders_lock:
        if not _holders.get():    # drops the parent's entry
            _holders.forget()


def _holding(lock: 'KeyValueStoreLock', held: bool) -> None:
    """Record that ``lock``'s holder thread took (or released) it."""
    now = time.monotonic()
    with _holders_lock:
        mine = _holders.get()
        refs = [ref for ref in mine.get(lock._holder, ())
                if (other := ref()) is not None and other is not lock
                and other.active and now < other._lease_end]
        if held:
            refs.append(weakref.ref(lock))
        if refs:
            mine[lock._holder] = refs
        else:
            mine.pop(lock._holder, None)
            if not mine:
                _holders.forget()


#: Longest wait, in seconds, for this process's turn to update a key.
#: Past it the update goes ahead and races the one holding the turn, so
#: no ``fn`` (one that updates another key, or takes a lock) can make
#: two updates wait for each other for ever.
UPDATE_TURN_WAIT = 5.0


def take_update_turn(backend: 'base.Backend', key: str) -> tuple | None:
    """Wait for this process's turn to update ``backend``'s ``key``.

    Threads of one process that update one key take turns, first come
    first served, as they do for a lock: of several compare-and-sets of
    one version at most one can succeed, so the others would only have
    read, decoded, run ``fn`` and encoded in vain, taking the CPU from
    the one that wins (a conflict storm). Only other processes race.

    :returns: what :func:`end_update_turn` takes, or None when the turn
        did not come within :data:`UPDATE_TURN_WAIT`.
    """
    # Data keys and lock keys are in different spaces of the store, so
    # they never share a queue.
    turns = _turns.get()
    # The tuple is the turn's owner too: a new object each time.
    turn = (turns, (id(backend), key))
    if turns.queues.setdefault(turn[1], turn) is turn or turns.take(
            turn[1], turn, time.monotonic() + UPDATE_TURN_WAIT, True):
        return turn
    return None


def end_update_turn(turn: tuple | None) -> None:
    """Pass the turn :func:`take_update_turn` gave to the next thread."""
    if turn is not None:
        turns, key = turn
        with turns.lock:
            if turns.queues.get(key) is turn:    # nobody waits
                del turns.queues[key]
                return
        turns.hold(key, turn, None)


#: Longest pause between two tries to take a lock held elsewhere.
MAX_BACKOFF = 0.05


def take_lock(backend: 'base.Backend', key: str, token: str, ttl: float,
              blocking: bool = True,
              deadline: float = math.inf) -> float | None:
    """Take ``backend``'s lock ``key`` for ``token``, retrying while held.

    Between two tries it waits for the holder's release where the
    backend can tell (:meth:`~oslo_kvs.backends.base.Backend.wait_released`);
    else it pauses, doubling from 1 ms up to :data:`MAX_BACKOFF`, each
    pause shortened by a random part, so that processes waiting for one
    lock do not all ask at the same moment.

    :param blocking: ``False`` tries once.
    :param deadline: a :func:`time.monotonic` time after which no try
        starts (default: no limit).
    :returns: the monotonic time the winning try started (a lease
        counted from then ends no later than the server's), or None when
        the lock was not taken.
    """
    delay = 0.001
    while True:
        started = time.monotonic()
        if backend.acquire_lock(key, token, ttl):
            return started
        if not blocking or started >= deadline:
            return None
        if backend.wait_released(key, deadline - time.monotonic()):
            continue
        time.sleep(min(delay * random.uniform(0.5, 1.0),
                       max(deadline - time.monotonic(), 0)))
        delay = min(delay * 2, MAX_BACKOFF)


class RegionMutex(api.CacheMutex):
    """A dogpile region's mutex on an oslo_kvs backend's token lock.

    It takes :meth:`oslo_kvs.backends.base.Backend.acquire_lock`, so it is
    as far-reaching as that lock (across hosts on a server). Lock
    keys get their own ``_lock:`` namespace, apart from the region's data
    keys; a holder that dies frees the lock after :attr:`ttl` seconds.
    """

    ttl = 30.0

    def __init__(self, backend: 'base.Backend', key: str) -> None:
        self._backend = backend
        self._key = '_lock:' + key
        self._token: str | None = None

    def acquire(self, wait: bool = True) -> bool:
        """Take the lock; ``wait=False`` tries once. Return whether held."""
        token = secrets.token_hex(16)
        if take_lock(self._backend, self._key, token, self.ttl,
                     blocking=wait) is None:
            return False
        self._token = token
        return True

    def release(self) -> None:
        """Free the lock if this mutex holds it."""
        token, self._token = self._token, None
        if token is not None:
            self._backend.release_lock(self._key, token)

    def locked(self) -> bool:
        """Whether anyone holds the lock (asks the backend)."""
        if self._token is not None:
            return True
        probe = secrets.token_hex(16)
        if self._backend.acquire_lock(self._key, probe, self.ttl):
            self._backend.release_lock(self._key, probe)
            return False
        return True


class KeyValueStoreLock:
    """A lock on one key of a store.

    Distributed across processes and hosts on backends that can do it,
    in-process on the memory backend. A lock whose holder never releases it
    frees itself after the store's ``lock_timeout``; the holder sees
    :attr:`expired` then and writes made with it raise ``LockTimeout``, as
    do writes made in the last ``lock_window`` seconds of the lease on a
    backend that cannot check the lock and write in one step.
    """

    def __init__(self, store: ty.Any, key: str, lock_key: str,
                 backend: 'base.Backend',
                 settings: 'kvs_settings.Settings') -> None:
        self.store = store
        self.key = key
        self._lock_key = lock_key
        self._backend = backend
        self._turn_key = (id(backend), lock_key)
        self.enabled = settings.locking
        self.lock_timeout = settings.lock_timeout
        self.lock_window = settings.lock_window
        self.active = False
        self._token = ''     # the lease's, while held
        self._lease_end = math.inf     # monotonic time, while held
        self._turns: _Turns | None = None
        self._holder = 0     # the ident of the thread that took it

    def __repr__(self) -> str:
        return '<KeyValueStoreLock %s active=%s>' % (
            exception._describe(self.key), self.active)

    @observe.operation('lock', lambda lock: getattr(lock.store, '_observer',
                                                    None))
    def acquire(self, blocking: bool = True,
                timeout: float | None = None) -> bool:
        """Take the lock, in turn among this process's threads.

        Then, while another process holds it, wait for its release: on
        the server where it notifies releases (Redis), else with short
        jittered retries.

        :param blocking: ``False`` tries once.
        :param timeout: the longest wait in seconds (None: no limit); the
            call never waits longer.
        :returns: whether the lock is now held.
        :raises exception.LockError: when this object already holds it.
        """
        if self.active:
            raise exception.LockError(
                'lock for %s is already held' % exception._describe(self.key))
        lease = self.lock_timeout or math.inf
        started = time.monotonic()
        if self.enabled:
            deadline = math.inf if timeout is None else started + timeout
            turns = self._turns = _turns.get()
            if not turns.take(self._turn_key, self, deadline, blocking):
                return False
            token = secrets.token_hex(16)
            won = None
            try:
                won = take_lock(self._backend, self._lock_key, token,
                                self.lock_timeout, blocking, deadline)
            finally:
                # The lease's end, or (not taken) the turn passes on.
                turns.hold(self._turn_key, self,
                           None if won is None else won + lease)
            if won is None:
                return False
            started, self._token = won, token
        self._lease_end = started + lease
        self._holder = threading.get_ident()
        self.active = True
        _holding(self, True)
        return True

    def release(self) -> None:
        """Free the lock; only this holder's own lock is ever removed.

        The next thread of this process waiting for it goes at once.

        :raises exception.LockError: when the lock is not held.
        """
        if not self.active:
            raise exception.LockError(
                'lock for %s is not held' % exception._describe(self.key))
        expired = self.expired
        self.active = False
        _holding(self, False)
        if self.enabled:
            try:
                self._backend.release_lock(self._lock_key, self._token)
            finally:
                if self._turns is _turns.get():    # not after a fork
                    self._turns.hold(self._turn_key, self, None)
        if expired:
            LOG.warning('KVS store %r: a lock was held longer than its '
                        'lock_timeout (%ss) and may have been taken by '
                        'another holder meanwhile', self.store.name,
                        self.lock_timeout)

    @property
    def expired(self) -> bool:
        """Whether the held lock outlived ``lock_timeout``."""
        return self.active and time.monotonic() >= self._lease_end

    @property
    def fenced(self) -> bool:
        """Whether writes with this lock are checked by the server."""
        return self.enabled and self._backend.fenced_writes

    def __enter__(self) -> 'KeyValueStoreLock':
        self.acquire()
        return self

    def __exit__(self, *exc_info: ty.Any) -> None:
        self.release()


def check_write(lock: ty.Any, store: ty.Any,
                key: str) -> tuple[str, str] | None:
    """Check a write to ``key`` of ``store`` made with ``lock``.

    The store calls it last before the write, so the lease left is
    measured as late as possible.

    :returns: the fence, ``(lock key, token)``, when the backend must
        check the lock and write in one step; None when it need not.
    :raises exception.LockError: for anything but a held lock of this
        store on this key.
    :raises exception.LockTimeout: when the lease has expired, or (while
        locking, unless the backend fences writes) ends within
        ``lock_window``.
    """
    if not isinstance(lock, KeyValueStoreLock) or lock.store is not store:
        raise exception.LockError(
            'lock must be a KeyValueStoreLock from store %r' % store.name)
    if lock.key != key:
        raise exception.LockError(
            'lock is for another key (%s) than the target (%s)'
            % (exception._describe(lock.key), exception._describe(key)))
    if not lock.active:
        raise exception.LockError(
            'lock for %s is not held' % exception._describe(key))
    fenced = lock.fenced
    margin = lock.lock_window if lock.enabled and not fenced else 0.0
    if time.monotonic() >= lock._lease_end - margin:
        raise exception.LockTimeout(key)
    return (lock._lock_key, lock._token) if fenced else None
