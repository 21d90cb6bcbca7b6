"""Shared pytest fixtures: a clean ``[kvs]`` configuration per test."""

from oslo_config import cfg
import pytest

from oslo_kvs import opts

# Server fixtures (memcached, Redis) live in servers.py.
pytest_plugins = ['oslo_kvs_tests.servers']


@pytest.fixture(autouse=True)
def _clean_kvs_options():
    """Undo any ``[kvs]`` override a test makes on ``cfg.CONF``."""
    opts.register_opts(cfg.CONF)
    yield
    cfg.CONF.clear_override('backends', group='kvs')
    cfg.CONF.reset()
