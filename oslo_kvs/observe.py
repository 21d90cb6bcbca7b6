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

"""What a store counts, and what it exports to OpenTelemetry.

Every counted operation of :class:`~oslo_kvs.core.KeyValueStore` (and
:meth:`~oslo_kvs.locking.KeyValueStoreLock.acquire`) carries the
:func:`operation` decorator: this module is the one place that decides an
operation's outcome, counts it, and, when an OpenTelemetry SDK was set up
before the store was configured, times it.

Outcomes:

``hit``
    a read (``get``, ``get_multi``) found its value(s);
``miss``
    ``NotFound``: a read of a missing key (``get_multi``: one or more keys
    missing, counted once per call), a ``delete`` of a missing key; a lock
    ``acquire`` that returned ``False``;
``refused``
    ``IntegrityError``: a stored value failed verification or decoding;
``error``
    any other exception, counted by its class;
``ok``
    any other completed call.

Counting is exact under threads without a lock on the hot path: each
(operation, outcome) has an :func:`itertools.count`, and ``next()`` on it
is one C call, which the GIL never splits (``x += 1`` on a shared int is
a read, an add and a store, and loses counts when threads interleave).
A count cannot be read without advancing it, so :meth:`Counts.read`
advances each one too, under a lock, and subtracts the reads it made
before: reads are rare (``stats()``, a metrics export), calls are not.

Counts are per process (:class:`oslo_kvs._process.PerProcess`): a child
made by any fork starts from zero.

Durations are recorded for a random sample of calls, one in ``[kvs]
duration_sampling``: the Python SDK's ``Histogram.record`` costs several
microseconds, a sizeable part of a round trip, and a uniform sample keeps
the distribution unbiased while the counter above stays exact.
"""

import importlib.metadata
import itertools
import random
import threading
import time
import typing as ty
import weakref

from oslo_kvs import _process
from oslo_kvs import _wrapping
from oslo_kvs import exception

#: Operation names, in the order :meth:`Counts.read` lists them.
OPERATIONS = ('get', 'get_multi', 'set', 'set_multi', 'delete',
              'delete_multi', 'add', 'update', 'incr', 'touch', 'lock')
#: Outcome names (``oslo_kvs.outcome`` in OpenTelemetry).
OUTCOMES = ('hit', 'miss', 'ok', 'refused', 'error')
#: The keys of each operation's entry in ``stats()``, by outcome.
_PLURAL = {'hit': 'hits', 'miss': 'misses', 'ok': 'ok',
           'refused': 'refused'}

#: Whether stores configured from now on count (a switch for tests and
#: benchmarks; the counters are the price of ``stats()``).
ENABLED = True

F = ty.TypeVar('F', bound=ty.Callable[..., ty.Any])
_perf_counter = time.perf_counter
_random = random.random
_NOT_FOUND = exception.NotFound
_REFUSED = exception.IntegrityError


def _key(operation: str, outcome: str) -> str:
    """The name of the counter of ``operation``'s ``outcome``.

    A str, whose hash is cached, where a tuple's is computed on every
    lookup.
    """
    return operation + ':' + outcome


def _outcome_of(operation: str, result: ty.Any) -> str:
    """The outcome of a call of ``operation`` that returned ``result``.

    Reads hit; a lock ``acquire`` that returned False missed; an ``add``
    that returned False still worked (``ok``).
    """
    if operation in ('get', 'get_multi'):
        return 'hit'
    return 'miss' if operation == 'lock' and result is False else 'ok'


#: A kind of call: (operation, outcome, exception class or None).
Kind = tuple[str, str, ty.Optional[type]]
#: Counter name -> its kind of call, for reading.
_SPLIT: dict[str, Kind] = {
    _key(operation, outcome): (operation, outcome, None)
    for operation in OPERATIONS for outcome in _PLURAL}


class Counts:
    """One process's counts for one store; exact under threads."""

    def __init__(self) -> None:
        #: Seconds since the epoch when this process started counting.
        self.since = time.time()
        #: ``_key(operation, outcome)`` -> its count.
        self.counters: dict[str, ty.Iterator[int]] = {
            key: itertools.count() for key in _SPLIT}
        #: (operation, exception class) -> its count.
        self.errors: dict[tuple[str, type], ty.Iterator[int]] = {}
        self._reads: dict[ty.Any, int] = {}
        self._lock = threading.Lock()

    def failed(self, operation: str, error: Exception) -> str:
        """Count a call of ``operation`` that raised; return its outcome."""
        if isinstance(error, _REFUSED):
            outcome = 'refused'
        elif isinstance(error, _NOT_FOUND):
            outcome = 'miss'
        else:
            key = (operation, type(error))
            counter = self.errors.get(key)
            if counter is None:
                # One C call: racing threads end up sharing one count.
                counter = self.errors.setdefault(key, itertools.count())
            next(counter)
            return 'error'
        next(self.counters[_key(operation, outcome)])
        return outcome

    def read(self) -> dict[Kind, int]:
        """Every count, exactly, by (operation, outcome, error class)."""
        counts: dict[Kind, int] = {}
        with self._lock:
            found: list[tuple[Kind, ty.Iterator[int]]] = [
                (_SPLIT[key], counter)
                for key, counter in self.counters.items()]
            # A copy: another thread may add an error class meanwhile.
            found += [((operation, 'error', error), counter)
                      for (operation, error), counter
                      in self.errors.copy().items()]
            for key, counter in found:
                reads = self._reads.get(key, 0)
                counts[key] = next(counter) - reads
                self._reads[key] = reads + 1
        return counts


def summary(counts: dict[Kind, int]) -> dict[str, ty.Any]:
    """``stats()``'s ``operations``: per operation, counts by outcome."""
    operations: dict[str, dict[str, ty.Any]] = {
        operation: dict({plural: 0 for plural in _PLURAL.values()},
                        errors={})
        for operation in OPERATIONS}
    for (operation, outcome, error), count in counts.items():
        entry = operations[operation]
        if error is None:
            entry[_PLURAL[outcome]] += count
        elif count:
            entry['errors'][error.__name__] = (
                entry['errors'].get(error.__name__, 0) + count)
    for entry in operations.values():
        entry['calls'] = (sum(entry[plural] for plural in _PLURAL.values())
                          + sum(entry['errors'].values()))
    return operations


class Observer:
    """A configured store's counts and, if exporting, its instruments."""

    def __init__(self, store: str, backend: ty.Any,
                 sampling: int = 1) -> None:
        self.counts: _process.PerProcess[Counts] = _process.PerProcess(
            Counts)
        self.attributes = {'oslo_kvs.store': store,
                           'oslo_kvs.backend': backend.name}
        if getattr(backend, 'db_system', None):
            self.attributes['db.system.name'] = backend.db_system
        #: ``record(seconds, operation, outcome, error class)``, or None
        #: when nothing is exported: then calls are counted, not timed.
        self.record: ty.Callable[..., None] | None = None
        #: The share of calls timed while exporting, ``1 / sampling``.
        self.sampled = 1.0 / sampling
        _otel_setup(self)

    def stats(self) -> dict[str, ty.Any]:
        """This process's counts (see ``KeyValueStore.stats``)."""
        counts = self.counts.get()
        return {'since': counts.since,
                'operations': summary(counts.read())}

    def attributes_of(self, operation: str, outcome: str,
                      error: type | None = None) -> dict[str, str]:
        """The OpenTelemetry attributes of one kind of call."""
        attributes = dict(self.attributes, **{
            'db.operation.name': operation, 'oslo_kvs.outcome': outcome})
        if error is not None:
            attributes['error.type'] = _qualified(error)
        return attributes

    def timed(self, method: ty.Callable[..., ty.Any], operation: str,
              counts: Counts, target: ty.Any, args: tuple[ty.Any, ...],
              kwargs: dict[str, ty.Any]) -> ty.Any:
        """Call, count and time ``method``, for the duration histogram."""
        started = _perf_counter()
        try:
            result = method(target, *args, **kwargs)
        except Exception as exc:
            outcome = counts.failed(operation, exc)
            self.record(  # type: ignore[misc]
                _perf_counter() - started, operation, outcome,
                type(exc) if outcome == 'error' else None)
            raise
        outcome = _outcome_of(operation, result)
        next(counts.counters[_key(operation, outcome)])
        self.record(  # type: ignore[misc]
            _perf_counter() - started, operation, outcome, None)
        return result


def _qualified(error: type) -> str:
    """``error.type``: the class's fully qualified name (semconv)."""
    if error.__module__ == 'builtins':
        return error.__qualname__
    return '%s.%s' % (error.__module__, error.__qualname__)


def operation(name: str, observer_of: ty.Callable[[ty.Any], ty.Any]
              ) -> ty.Callable[[F], F]:
    """Count (and maybe time) every call of the decorated method.

    :param name: the operation, one of :data:`OPERATIONS`.
    :param observer_of: the :class:`Observer` of the method's ``self``,
        or None (store not configured, counting disabled): then the call
        is neither counted nor timed.
    """
    def decorate(method: F) -> F:
        # This module's globals: the wrapper looks up _random (which
        # tests replace) when called, as code written here would.
        return ty.cast(F, _wrapping.wrapper(
            method, _OBSERVED, _TEMPLATE_NAMES, globals(), observer_of,
            name, _key(name, _outcome_of(name, True)),
            _key(name, _outcome_of(name, False))))
    return decorate


# The observed method's wrapper (see oslo_kvs._wrapping).
_OBSERVED = """
def wrap(method, observer_of, name, done, not_done):
    def observed(self{params}):
        observer = observer_of(self)
        if observer is None:
            return method(self{call})
        counts = observer.counts.get()
        if observer.record is not None and _random() < observer.sampled:
            return observer.timed(method, name, counts, self, {args},
                                  {kwargs})
        try:
            result = method(self{call})
        except Exception as exc:
            counts.failed(name, exc)
            raise
        next(counts.counters[done if result is not False else not_done])
        return result
    return observed
"""
#: The names _OBSERVED uses.
_TEMPLATE_NAMES = frozenset(['method', 'observer_of', 'name', 'done',
                             'not_done', 'observer', 'counts', 'result',
                             'exc', 'args', 'kwargs', '_random'])

# --- OpenTelemetry ------------------------------------------------------

#: Observers of configured stores, read by the operations counter.
_observers: 'weakref.WeakSet[Observer]' = weakref.WeakSet()
#: (meter provider, its histogram), made with the first observer that
#: finds an SDK provider; a provider set later gets its own.
_instruments: list[ty.Any] = [None, None]
_instruments_lock = _process.Primitive('Lock')

#: Histogram buckets the semantic conventions advise for
#: ``db.client.operation.duration``, in seconds.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10)


def _sdk_provider() -> ty.Any:
    """The global MeterProvider if an SDK set one, else None.

    Without ``opentelemetry-api``, or with only the API's own providers
    (its proxy before anything is set, its no-op one), nothing is
    exported, so no instrument is made and no call is timed.
    """
    try:
        from opentelemetry import metrics
    except ImportError:
        return None
    provider = metrics.get_meter_provider()
    if type(provider).__module__.startswith('opentelemetry.metrics'):
        return None
    return provider


def _otel_setup(observer: Observer) -> None:
    """Give ``observer`` a histogram to record to, if an SDK is set."""
    provider = _sdk_provider()
    if provider is None:
        return
    with _instruments_lock:
        if _instruments[0] is not provider:
            _instruments[:] = [provider, _make_instruments(provider)]
        histogram = _instruments[1]
    _observers.add(observer)
    attributes: dict[tuple[ty.Any, ...], dict[str, str]] = {}
    record_histogram = histogram.record

    def record(seconds: float, operation: str, outcome: str,
               error: type | None) -> None:
        key = (operation, outcome, error)
        shown = attributes.get(key)
        if shown is None:
            shown = attributes.setdefault(
                key, observer.attributes_of(operation, outcome, error))
        record_histogram(seconds, shown)

    observer.record = record


def _make_instruments(provider: ty.Any) -> ty.Any:
    """The operations counter (observed) and the duration histogram."""
    try:
        version = importlib.metadata.version('oslo.kvs')
    except importlib.metadata.PackageNotFoundError:
        version = None
    meter = provider.get_meter('oslo.kvs', version)
    # Counting every call on the SDK's Counter costs microseconds; the
    # store counts anyway, so the counter reads those counts when the
    # SDK collects: exact, and free per call.
    meter.create_observable_counter(
        'oslo_kvs.client.operations', callbacks=[_observe_counts],
        unit='{operation}',
        description='Operations of oslo_kvs stores, by outcome')
    return meter.create_histogram(
        'db.client.operation.duration', unit='s',
        description='Duration of oslo_kvs store operations',
        explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS))


def _observe_counts(options: ty.Any) -> ty.Iterator[ty.Any]:
    """The operations counter's callback: every store's counts."""
    from opentelemetry.metrics import Observation
    for observer in list(_observers):
        counts = observer.counts.peek()
        if counts is None:
            continue
        for (operation, outcome, error), count in counts.read().items():
            if count:
                yield Observation(count, observer.attributes_of(
                    operation, outcome, error))


def forget(observer: Observer | None) -> None:
    """Stop exporting ``observer``'s counts (its store was closed)."""
    if observer is not None:
        _observers.discard(observer)
