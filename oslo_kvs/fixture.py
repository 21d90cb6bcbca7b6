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

"""A fixture giving consumers' tests isolated, in-memory stores.

.. code-block:: python

    import testtools

    from oslo_kvs import fixture as kvs_fixture

    class TestTokens(testtools.TestCase):
        def setUp(self):
            super().setUp()
            self.useFixture(kvs_fixture.KVSFixture())

    def test_tokens():                      # pytest
        with kvs_fixture.KVSFixture():
            ...

While it is set up, ``oslo_kvs.get_key_value_store()`` works on an empty
registry, and every ``configure()`` call uses ``openstack.kvs.Memory``
whatever backend the code under test asks for, so no server is needed and
nothing leaks between tests. Cleaning up restores the previous registry
and ``configure()``.

:class:`KVSFixture` is a ``fixtures.Fixture``: testtools' ``useFixture``
takes it, and it works as a context manager.
"""

import typing as ty
import weakref

import fixtures
from oslo_config import cfg

from oslo_kvs import backends
from oslo_kvs import core
from oslo_kvs import exception
from oslo_kvs import memoize
from oslo_kvs import opts
from oslo_kvs import settings

MEMORY = 'openstack.kvs.Memory'


class KVSFixture(fixtures.Fixture):
    """Isolated in-memory stores and a clean registry for one test.

    :param conf: the ``ConfigOpts`` to work on (``cfg.CONF`` by default);
        ``[kvs]`` and the memoization options are registered on it.
    :param backing_store: the backend every ``configure()`` call is
        redirected to.
    :param force_backing_store: ``False`` leaves ``configure()`` alone and
        only gives a clean registry.
    :param memoize_enabled: when not None, ``[kvs] memoize_enabled`` is
        overridden for the test (the override is cleared afterwards).

    Redirected ``configure()`` calls keep ``key_mangler``, ``proxy_list``,
    ``locking``, the store's own arguments (``lock_timeout``, protection,
    ``serializer``), ``expire_time`` (also under its historical names)
    and whatever else the target backend accepts; other backend
    arguments (servers, passwords, TLS files) are dropped.
    """

    def __init__(self, conf: cfg.ConfigOpts | None = None,
                 backing_store: str = MEMORY,
                 force_backing_store: bool = True,
                 memoize_enabled: bool | None = None) -> None:
        super().__init__()
        self.conf = conf if conf is not None else cfg.CONF
        self.backing_store = backing_store
        self.force_backing_store = force_backing_store
        self.memoize_enabled = memoize_enabled
        self._stores: list[core.KeyValueStore] = []

    def _setUp(self) -> None:
        opts.register_opts(self.conf)
        memoize.register_opts(self.conf)
        self.addCleanup(self._swap_registry, self._swap_registry(
            weakref.WeakValueDictionary()))
        self.addCleanup(self._stores.clear)
        if self.force_backing_store:
            original = core.KeyValueStore.__dict__['configure']
            core.KeyValueStore.configure = (  # type: ignore[method-assign]
                self._redirect(original))
            self.addCleanup(setattr, core.KeyValueStore, 'configure',
                            original)
        if self.memoize_enabled is not None:
            self.conf.set_override('memoize_enabled',
                                   self.memoize_enabled, group=opts.GROUP)
            self.addCleanup(self.conf.clear_override, 'memoize_enabled',
                            group=opts.GROUP)
        # Warm-ups queued by this test must not run into the next one.
        self.addCleanup(memoize.warm_queue.clear)

    @staticmethod
    def _swap_registry(registry: ty.Any) -> ty.Any:
        """Make ``registry`` the store registry; return the previous one."""
        with core._registry_lock:
            saved, core._registry = core._registry, registry
        return saved

    def _redirect(self, original: ty.Callable[..., None]
                  ) -> ty.Callable[..., None]:
        target = self.backing_store
        target_cls = backends.load_class(target)

        def configure(store: core.KeyValueStore, backing_store: str,
                      key_mangler: ty.Any = None, proxy_list: ty.Any = None,
                      locking: ty.Any = True, **arguments: ty.Any) -> None:
            original(store, target, key_mangler=key_mangler,
                     proxy_list=proxy_list, locking=locking,
                     **settings.redirect_arguments(backing_store, target_cls,
                                                   arguments))
        configure.__doc__ = original.__doc__
        return configure

    def store(self, name: str, **arguments: ty.Any) -> core.KeyValueStore:
        """The store ``name``, configured with the fixture's backend.

        The fixture keeps a reference until cleanup, so the test and the
        code under test see the same store however they get it.
        """
        kvs = core.get_key_value_store(name, conf=self.conf)
        try:
            kvs.configure(self.backing_store, **arguments)
        except exception.AlreadyConfigured:
            pass
        self._stores.append(kvs)
        return kvs
