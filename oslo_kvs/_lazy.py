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

"""Objects made on first use in each process, never at import time.

A service may import oslo_kvs before it calls ``eventlet.monkey_patch()``.
A lock or condition made at import is then a native one that green threads
cannot share (``RuntimeError: cannot notify on un-acquired lock``). Made on
first use, after the patch, it is the green one.

A forked child makes its own again: a lock another thread of the parent
held at the fork would stay held in the child forever.
"""

import os
import threading
import typing as ty
import weakref

_instances: 'weakref.WeakSet[PerProcess]' = weakref.WeakSet()


class PerProcess:
    """What ``factory()`` makes, on first use in each process."""

    def __init__(self, factory: ty.Callable[[], ty.Any]) -> None:
        self._factory = factory
        self._made: dict[str, ty.Any] = {}
        _instances.add(self)

    def get(self) -> ty.Any:
        """The object, made now if this is its first use here."""
        made = self._made.get('made')
        if made is None:
            # dict.setdefault is atomic: threads racing here share one.
            made = self._made.setdefault('made', self._factory())
        return made


class Primitive(PerProcess):
    """A :mod:`threading` primitive made on first use in each process.

    :param kind: its name in :mod:`threading` (``'Lock'``, ``'Condition'``,
        ...), looked up when first needed so that a monkey-patched module
        gives its own.

    Usable as a context manager, as the primitive itself is.
    """

    def __init__(self, kind: str = 'Lock') -> None:
        super().__init__(lambda: getattr(threading, kind)())

    def __enter__(self) -> ty.Any:
        return self.get().__enter__()

    def __exit__(self, *exc_info: ty.Any) -> ty.Any:
        return self.get().__exit__(*exc_info)


def _forget_in_child() -> None:
    for instance in list(_instances):
        instance._made.clear()


os.register_at_fork(after_in_child=_forget_in_child)
