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

"""Method wrappers that take the wrapped method's own parameters.

The store counts every operation and every backend method translates its
errors, so their wrappers run on every call. CPython calls a function of
plain parameters inline; one taking ``(*args, **kwargs)`` builds a tuple
and a dict and calls slowly, some 0.2 us more per wrapper. So a wrapper
is written out from a template with the method's parameters and compiled
once per method, as :mod:`dataclasses` writes ``__init__``.

A template is the source of a function ``wrap`` that takes the wrapped
method and the values it needs, and returns the wrapper. In it,
``{params}`` stands for the wrapper's parameters after ``self``,
``{call}`` for the arguments to pass on after ``self`` and ``{args}``
for them as a tuple (each with a leading comma or as a tuple literal).
"""

import functools
import inspect
import typing as ty

#: What the placeholders become for a method whose parameters are not all
#: plain (``*args``, keyword-only, or a name the template uses itself).
_ANY = {'params': ', *args, **kwargs', 'call': ', *args, **kwargs',
        'args': 'args', 'kwargs': 'kwargs'}


def wrapper(method: ty.Callable[..., ty.Any], template: str,
            names: ty.Collection[str], scope: dict[str, ty.Any],
            *bound: ty.Any) -> ty.Callable[..., ty.Any]:
    """The wrapper ``template`` makes of ``method``, bound to ``bound``.

    :param names: the names the template uses: a method with a parameter
        of one of them gets the ``(*args, **kwargs)`` wrapper.
    :param scope: the globals the wrapper reads when it runs (its
        module's, so that what tests replace there is seen).
    """
    # The signature of what ``method`` wraps, if it is a wrapper itself.
    parameters = list(inspect.signature(method).parameters.values())[1:]
    defaults = tuple(p.default for p in parameters
                     if p.default is not p.empty)
    if all(p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in names
           for p in parameters):
        fill = {
            # Defaults are set below, as objects, not written as text.
            'params': ''.join(', %s%s' % (p.name, '' if p.default is p.empty
                                          else '=None')
                              for p in parameters),
            'call': ''.join(', ' + p.name for p in parameters),
            'args': '(%s)' % ''.join(p.name + ', ' for p in parameters),
            'kwargs': '{}'}
    else:
        fill, defaults = _ANY, ()
    made: dict[str, ty.Any] = {}
    exec(template.format(**fill), scope, made)
    made_wrapper = made['wrap'](method, *bound)
    if defaults:
        made_wrapper.__defaults__ = defaults
    return functools.wraps(method)(made_wrapper)
