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

"""Every Python example of the documentation runs, as a reader would run it.

Examples are the ``.. code-block:: python`` blocks of README.rst, of every
page under doc/source, and of every docstring in oslo_kvs. The blocks of
one page run in order in one namespace. Where an example names a server,
the test starts a real one (oslo_kvs_tests.servers) and puts its address
where the page shows an example address; each such replacement must find
its text, so a page that changes is noticed here. Names a page declares as
coming from the reader's service (``secret``, ``conf``) are given values
here. ``test_*`` functions and testtools test cases an example defines are
run too.
"""

import gc
import importlib
import inspect
import pathlib
import pkgutil
import re
import secrets
import textwrap
import types
import typing as ty
import unittest

import pytest

import oslo_kvs
from oslo_kvs_tests import servers

ROOT = pathlib.Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r'^( *)\.\. code-block:: python\n((?:\1 +.*\n|\s*\n)+)',
                    re.MULTILINE)


def code_blocks(text: str) -> list[str]:
    """The Python code blocks of reStructuredText, dedented."""
    return [textwrap.dedent(match.group(2))
            for match in _BLOCK.finditer(text)]


def pages() -> dict[str, list[str]]:
    """Page name -> its Python examples, for every page that has some."""
    found = {}
    for path in [ROOT / 'README.rst'] + sorted(
            (ROOT / 'doc' / 'source').rglob('*.rst')):
        blocks = code_blocks(path.read_text())
        if blocks:
            found[str(path.relative_to(ROOT))] = blocks
    for module in pkgutil.walk_packages(oslo_kvs.__path__, 'oslo_kvs.'):
        loaded = importlib.import_module(module.name)
        docs = [loaded.__doc__ or '']
        for _, member in inspect.getmembers(loaded):
            if getattr(member, '__module__', None) == module.name:
                docs.append(inspect.getdoc(member) or '')
        blocks = [block for doc in docs for block in code_blocks(doc)]
        if blocks:
            found[module.name] = blocks
    return found


class Example(ty.NamedTuple):
    """What a page needs: names it assumes, addresses to replace."""

    namespace: dict[str, ty.Any]
    replace: dict[str, str]


# The passwords the Redis page calls secret and sentinel_secret.
PASSWORD = secrets.token_urlsafe(16)
SENTINEL_PASSWORD = secrets.token_urlsafe(16)


@pytest.fixture(scope='module')
def redis_with_password():
    yield from servers.running(servers.RedisServer(password=PASSWORD))


@pytest.fixture(scope='module')
def sentinels_with_passwords():
    yield from servers.running(servers.RedisSentinelGroup(
        password=PASSWORD, sentinel_password=SENTINEL_PASSWORD))


def _redis_page(request) -> Example:
    server = request.getfixturevalue('redis_with_password')
    group = request.getfixturevalue('sentinels_with_passwords')
    cluster = request.getfixturevalue('redis_cluster')
    return Example(
        {'secret': PASSWORD, 'sentinel_secret': SENTINEL_PASSWORD},
        {"'redis://redis.example.net:6379/0'": repr(server.url),
         "['10.0.0.1:26379', '10.0.0.2:26379']":
         repr(list(group.store_args['sentinels'])),
         "'mymaster'": repr(group.service_name),
         "'10.0.0.1:7000,10.0.0.2:7000'":
         repr(','.join(cluster.store_args['cluster_nodes']))})


def _memcached_page(request) -> Example:
    cluster = request.getfixturevalue('memcached_cluster')
    return Example({}, {"'10.0.0.1:11211,10.0.0.2:11211,10.0.0.3:11211'":
                        repr(','.join(cluster.addresses))})


def _security_page(request) -> Example:
    server = request.getfixturevalue('memcached_server')
    conf = types.SimpleNamespace(my_service=types.SimpleNamespace(
        kvs_key=secrets.token_urlsafe(32)))
    return Example({'conf': conf},
                   {"'10.0.0.11:11211'": repr(server.address)})


def _memoize_page(request) -> Example:
    server = request.getfixturevalue('memcached_server')
    return Example({}, {"'10.0.0.5:11211'": repr(server.address)})


def _mongodb_page(request) -> Example:
    # No MongoDB server in CI: the page runs on mongomock, which accepts
    # any address and credentials.
    monkeypatch = request.getfixturevalue('monkeypatch')
    servers.install_mongomock(monkeypatch)
    return Example({'store': oslo_kvs.get_key_value_store('tokens'),
                    'secret': secrets.token_urlsafe(16)}, {})


CONTEXTS: dict[str, ty.Callable[[ty.Any], Example]] = {
    'doc/source/user/backend-redis.rst': _redis_page,
    'doc/source/user/backend-memcached.rst': _memcached_page,
    'doc/source/user/security.rst': _security_page,
    'doc/source/user/memoize.rst': _memoize_page,
    'doc/source/user/backend-mongodb.rst': _mongodb_page,
}
PAGES = pages()


def test_every_page_with_examples_is_found():
    assert {'README.rst', 'doc/source/user/usage.rst',
            'oslo_kvs.fixture'} <= set(PAGES)
    assert set(CONTEXTS) <= set(PAGES)


def _run_defined_tests(namespace: dict[str, ty.Any]) -> None:
    for name, value in list(namespace.items()):
        if name.startswith('test_') and callable(value):
            value()
        elif (isinstance(value, type) and
              issubclass(value, unittest.TestCase)):
            suite = unittest.TestSuite()
            # A case without test methods still runs setUp and cleanups.
            names = unittest.getTestCaseNames(value, 'test') or ['id']
            suite.addTests(value(method) for method in names)
            result = unittest.TestResult()
            suite.run(result)
            assert result.wasSuccessful(), result.errors + result.failures


@pytest.mark.parametrize('page', sorted(PAGES))
def test_examples_run(page, request):
    gc.collect()  # stores of earlier pages are gone: names are free again
    example = CONTEXTS.get(page, lambda request: Example({}, {}))(request)
    namespace = dict(example.namespace, __name__='doc_example')
    unused = set(example.replace)
    try:
        for number, block in enumerate(PAGES[page], 1):
            for shown, real in example.replace.items():
                if shown in block:
                    block = block.replace(shown, real)
                    unused.discard(shown)
            code = compile(block, '%s (example %d)' % (page, number), 'exec')
            exec(code, namespace)
        assert not unused, 'the page no longer shows %s' % sorted(unused)
        _run_defined_tests(namespace)
    finally:
        for value in namespace.values():
            if isinstance(value, oslo_kvs.KeyValueStore):
                if value.is_configured:
                    value.close()
        namespace.clear()
