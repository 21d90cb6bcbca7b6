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

"""Wrappers with the wrapped method's own parameters (oslo_kvs._wrapping)."""

import functools
import inspect

import pytest

from oslo_kvs import _wrapping

#: Calls the method and records what the wrapper was given to pass on.
TEMPLATE = """
def wrap(method, seen):
    def recorded(self{params}):
        seen.append({args})
        return method(self{call})
    return recorded
"""
REQUIRED = object()


class Target:
    def plain(self, key, value=REQUIRED, ttl=None):
        return key, value, ttl

    def loose(self, *keys, ttl=None):
        return keys, ttl

    def clashing(self, seen, method=1):
        return seen, method


def wrapped(name):
    seen = []
    wrapper = _wrapping.wrapper(getattr(Target, name), TEMPLATE,
                                {'method', 'seen'}, {}, seen)
    return wrapper, seen


def test_the_wrapper_has_the_methods_parameters_and_default_objects():
    wrapper, seen = wrapped('plain')
    assert inspect.signature(wrapper) == inspect.signature(Target.plain)
    assert wrapper.__code__.co_varnames[:4] == ('self', 'key', 'value',
                                                'ttl')
    assert wrapper(Target(), 'k') == ('k', REQUIRED, None)
    assert wrapper(Target(), 'k', ttl=3) == ('k', REQUIRED, 3)
    assert wrapper(Target(), key='k', value=2) == ('k', 2, None)
    assert seen == [('k', REQUIRED, None), ('k', REQUIRED, 3),
                    ('k', 2, None)]
    assert wrapper.__name__ == 'plain'
    with pytest.raises(TypeError):
        wrapper(Target())


@pytest.mark.parametrize('name', ['loose', 'clashing'])
def test_other_parameters_get_a_wrapper_of_any_arguments(name):
    wrapper, seen = wrapped(name)
    assert wrapper.__code__.co_flags & inspect.CO_VARARGS
    method = getattr(Target, name)
    assert wrapper(Target(), 1, 2) == method(Target(), 1, 2)
    assert seen == [(1, 2)]


def test_the_signature_seen_through_a_wrapper_below():
    @functools.wraps(Target.plain)
    def below(self, *args, **kwargs):
        return Target.plain(self, *args, **kwargs)
    wrapper = _wrapping.wrapper(below, TEMPLATE, {'method', 'seen'}, {}, [])
    assert wrapper(Target(), 'k', ttl=5) == ('k', REQUIRED, 5)
