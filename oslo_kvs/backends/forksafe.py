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

"""Resetting inherited state in a forked child, in one place.

A pre-fork server (uwsgi, mod_wsgi, gunicorn) configures its stores in the
master and then forks workers, possibly while other threads of the master
are mid-operation. The child has only the forking thread: a lock another
thread held stays locked forever, and a connection it was using carries
replies meant for the parent. Objects that hold such state register here
and get their ``after_fork()`` called in every child, before any of its
code runs.
"""

import os
import typing as ty
import weakref

# Weak, so a closed store is not kept alive by having been registered.
_REGISTERED: 'weakref.WeakSet[ty.Any]' = weakref.WeakSet()


def register(obj: ty.Any) -> None:
    """Call ``obj.after_fork()`` in every child forked from now on."""
    _REGISTERED.add(obj)


def _reset_in_child() -> None:
    for obj in list(_REGISTERED):
        obj.after_fork()


os.register_at_fork(after_in_child=_reset_in_child)
