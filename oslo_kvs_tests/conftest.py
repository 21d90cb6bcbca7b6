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

"""Shared pytest fixtures: a clean ``[kvs]`` configuration per test."""

from oslo_config import cfg
import pytest

from oslo_kvs import opts

# Server fixtures (memcached, Redis, MongoDB) live in the servers package.
pytest_plugins = ['oslo_kvs_tests.servers']


@pytest.fixture(autouse=True)
def _clean_kvs_options():
    """Undo any ``[kvs]`` override a test makes on ``cfg.CONF``."""
    opts.register_opts(cfg.CONF)
    yield
    cfg.CONF.clear_override('backends', group='kvs')
    cfg.CONF.reset()
