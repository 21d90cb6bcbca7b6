"""Threading primitives made on first use, never at import time.

A service may import oslo_kvs before it calls ``eventlet.monkey_patch()``.
A lock or condition made at import is then a native one that green threads
cannot share (``RuntimeError: cannot notify on un-acquired lock``). Made on
first use, after the patch, it is the green one.
"""

import threading
import typing as ty


class Primitive:
    """A :mod:`threading` primitive made on first use.

    :param kind: its name in :mod:`threading` (``'Lock'``, ``'Condition'``,
        ...), looked up when first needed so that a monkey-patched module
        gives its own.

    Usable as a context manager, as the primitive itself is.
    """

    def __init__(self, kind: str = 'Lock') -> None:
        self._kind = kind
        self._made: dict[str, ty.Any] = {}

    def get(self) -> ty.Any:
        """The primitive, made now if this is its first use."""
        made = self._made.get(self._kind)
        if made is None:
            # dict.setdefault is atomic: threads racing here share one.
            made = self._made.setdefault(self._kind,
                                         getattr(threading, self._kind)())
        return made

    def __enter__(self) -> ty.Any:
        return self.get().__enter__()

    def __exit__(self, *exc_info: ty.Any) -> ty.Any:
        return self.get().__exit__(*exc_info)
