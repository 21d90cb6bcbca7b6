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

"""The sample service: a plain WSGI application on three oslo_kvs stores.

It behaves like a Keystone-style service. Importing it (in a pre-fork
server, in the master, before the workers are forked) reads the JSON file
named by ``OSLO_KVS_DEPLOY_CONFIG`` and configures:

* ``TOKENS``: ``openstack.kvs.Memcached`` on several nodes, encrypted,
  with short timeouts and dead-server retry so a hung node fails fast;
* ``INDEX``: ``openstack.kvs.Redis``, each user's list of token ids,
  updated under the user's lock (or, when the configuration's
  ``index_writes`` is ``update``, by ``INDEX.update()``); when it is
  ``oslo.cache``, the index lives instead in an oslo.cache region on the
  same Redis (:data:`INDEX_REGION`), as a Keystone driver on oslo.cache
  keeps it, and is updated under the region backend's distributed
  dogpile lock;
* ``CATALOG_STORE``: ``openstack.kvs.MongoDB``, holding the results of the
  memoized :func:`catalog`.

Then it uses each store once and queues a warm-up, as a service warming
its caches at start-up does: whatever connection or thread that makes in
the master is what its forked workers inherit.

Every reply is JSON and names the worker's pid. A store failure
(``BackendError``, ``LockTimeout``, ``Conflict``) is a 503 naming the
error and its message (which names the server); anything else is a 500
with the raw exception's class and message.
"""

import contextlib
import json
import logging
import os
import sys
import typing as ty
import urllib.parse
import uuid

from dogpile.cache import api as dogpile_api
from oslo_config import cfg

import oslo_kvs
from oslo_kvs import exception
from oslo_kvs import memoize
from oslo_kvs_tests.deployment import model

LOG = logging.getLogger(__name__)

#: Seconds a store waits for a server's reply: a hung server fails fast.
SOCKET_TIMEOUT = 0.5
#: Seconds a user's index lock lives; short, so the lock of a request that
#: failed mid-update (its release failed too) frees itself soon.
LOCK_TIMEOUT = 2.0
#: Longest wait for a user's index lock: a little past LOCK_TIMEOUT, so a
#: lock whose holder failed is waited out rather than reported.
LOCK_WAIT = LOCK_TIMEOUT + 1.0

# A private configuration object: the service's options are its own, not
# those of whatever process imports it.
CONF = cfg.ConfigOpts()
CONF(args=[], project='oslo_kvs_deploy', default_config_files=[],
     default_config_dirs=[])

# Stores are held weakly by the registry; these module names keep them.
TOKENS = oslo_kvs.get_key_value_store('deploy-tokens', conf=CONF)
INDEX = oslo_kvs.get_key_value_store('deploy-index', conf=CONF)
CATALOG_STORE = oslo_kvs.get_key_value_store('deploy-catalog', conf=CONF)

#: How a new token joins its user's index: ``lock`` (Keystone's way: take
#: the user's lock, read, write with ``lock=``, release), ``update``, or
#: ``oslo.cache`` (the same steps on :data:`INDEX_REGION`).
INDEX_WRITES = {'mode': 'lock'}
INDEX_WRITE_MODES = ('lock', 'update', 'oslo.cache')

#: The index's oslo.cache region, configured only in ``oslo.cache`` mode.
INDEX_REGION: ty.Any = None
#: The Redis client's exceptions, which the region lets through.
_REGION_ERRORS: tuple[type[Exception], ...] = ()

MEMOIZE = memoize.get_memoization_decorator(CONF, 'catalog',
                                            store=CATALOG_STORE)


@MEMOIZE
def catalog(region: str) -> dict[str, ty.Any]:
    """The catalog of ``region``, memoized in ``CATALOG_STORE``."""
    return model.region_catalog(region)


def configure(config: ty.Mapping[str, ty.Any]) -> None:
    """Configure the three stores from the service's configuration."""
    mode = config.get('index_writes', 'lock')
    if mode not in INDEX_WRITE_MODES:
        # A mistyped mode would otherwise measure or test another one.
        raise ValueError('index_writes must be one of %s, not %r'
                         % (', '.join(INDEX_WRITE_MODES), mode))
    INDEX_WRITES['mode'] = mode
    if INDEX_WRITES['mode'] == 'oslo.cache':
        _configure_index_region(config['redis'])
    TOKENS.configure(
        'openstack.kvs.Memcached', url=config['memcached'],
        value_protection='encrypt',
        protection_keys=config['protection_keys'],
        socket_timeout=SOCKET_TIMEOUT,
        # One failed retry ejects a node for a second; its keys move to
        # the others meanwhile, and it is flushed when it comes back.
        retry_attempts=1, retry_delay=0.25, dead_retry=1.0)
    INDEX.configure('openstack.kvs.Redis', url=config['redis'],
                    socket_timeout=SOCKET_TIMEOUT,
                    lock_timeout=LOCK_TIMEOUT)
    CATALOG_STORE.configure(
        'openstack.kvs.MongoDB', db_hosts=config['mongodb'],
        db_name=config['mongodb_db'],
        cache_collection=config['mongodb_collection'],
        server_selection_timeout=5, socket_timeout=5)


def _configure_index_region(redis_url: str) -> None:
    """Configure :data:`INDEX_REGION` through oslo.cache's own options.

    As an operator would write them in the service's ``[cache]`` section:
    the Redis backend on the server ``INDEX`` uses, with the same socket
    timeout, and a distributed lock (``get_mutex()`` is a Redis lock, not
    a thread lock) with the same lifetime and the same longest wait as
    ``INDEX``'s. Everything else keeps oslo.cache's and dogpile.cache's
    defaults, as a deployment would.
    """
    global INDEX_REGION, _REGION_ERRORS
    # Imported here: only this mode needs oslo.cache.
    from oslo_cache import core as cache
    from redis import exceptions as redis_exceptions

    address = urllib.parse.urlsplit(redis_url)
    cache.configure(CONF)
    CONF.set_override('enabled', True, group='cache')
    CONF.set_override('backend', 'dogpile.cache.redis', group='cache')
    CONF.set_override('redis_server', '%s:%d' % (address.hostname,
                                                 address.port),
                      group='cache')
    # oslo.cache 3.8.0, the oldest allowed, names it redis_socket_timeout.
    CONF.set_override('socket_timeout' if 'socket_timeout' in CONF.cache
                      else 'redis_socket_timeout', SOCKET_TIMEOUT,
                      group='cache')
    CONF.set_override('backend_argument', [
        'distributed_lock:true', 'thread_local_lock:false',
        'lock_timeout:%s' % LOCK_TIMEOUT,
        'lock_blocking_timeout:%s' % LOCK_WAIT], group='cache')
    INDEX_REGION = cache.create_region()
    cache.configure_cache_region(CONF, INDEX_REGION)
    _REGION_ERRORS = (redis_exceptions.RedisError,)


def warm_up() -> None:
    """Use every store once, as a service warming its caches at start-up.

    In a pre-fork server this runs in the master: the connections it
    opens and the warm-up thread it starts exist before the fork. The
    token store is primed with a batch of keys, which reaches every
    memcached node, so the master holds a connection to each.
    """
    probes = {'startup-%d-%d' % (os.getpid(), n):
              model.token_value('startup', str(n)) for n in range(24)}
    TOKENS.set_multi(probes)
    TOKENS.get_multi(list(probes))
    probe = 'startup-%d' % os.getpid()
    INDEX.set(probe, [probe])
    INDEX.get(probe)
    if INDEX_REGION is not None:
        INDEX_REGION.set(probe, [probe])
        INDEX_REGION.get(probe)
    catalog('startup')
    catalog.warm('startup-warm')


# --- the WSGI application ---------------------------------------------------


class HTTPError(Exception):
    """A reply other than 200 that is not a store failure."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_token(user: str) -> dict[str, ty.Any]:
    """Store a new token for ``user`` and add it to the user's index.

    Acknowledged (returned) only once both writes are.
    """
    token = uuid.uuid4().hex
    TOKENS.set(token, model.token_value(user, token))
    if INDEX_WRITES['mode'] == 'oslo.cache':
        _add_to_region_index(user, token)
        return {'token': token}
    if INDEX_WRITES['mode'] == 'update':
        INDEX.update(user, lambda tokens: tokens + [token], default=[])
        return {'token': token}
    lock = INDEX.get_lock(user)
    if not lock.acquire(timeout=LOCK_WAIT):
        raise exception.LockTimeout(
            'the index lock of a user was not free within %ss' % LOCK_WAIT)
    try:
        try:
            tokens = INDEX.get(user)
        except exception.NotFound:
            tokens = []
        tokens.append(token)
        INDEX.set(user, tokens, lock=lock)
    finally:
        lock.release()
    return {'token': token}


@contextlib.contextmanager
def _region_errors() -> ty.Iterator[None]:
    """A Redis failure under :data:`INDEX_REGION` as a ``BackendError``.

    A service on oslo.cache sees the client's own exception; it is
    reported as the other modes' store failures are (a 503 naming it).
    """
    try:
        yield
    except _REGION_ERRORS as exc:
        raise exception.BackendError(
            'oslo.cache index on Redis: %s: %s'
            % (type(exc).__name__, exc)) from None


def _add_to_region_index(user: str, token: str) -> None:
    """Add ``token`` to ``user``'s index in :data:`INDEX_REGION`.

    Under the region backend's mutex for the user (a Redis lock): take
    it, read, write, release, as ``lock`` mode does on ``INDEX``.
    """
    with _region_errors():
        mutex = INDEX_REGION.backend.get_mutex(user)
        if not mutex.acquire():
            raise exception.LockTimeout(
                'the index lock of a user was not free within %ss'
                % LOCK_WAIT)
        try:
            tokens = INDEX_REGION.get(user)
            if tokens is dogpile_api.NO_VALUE:
                tokens = []
            tokens.append(token)
            INDEX_REGION.set(user, tokens)
        finally:
            mutex.release()


def get_token(token: str) -> dict[str, ty.Any]:
    """The value stored under ``token``; 404 when there is none."""
    try:
        return {'value': TOKENS.get(token)}
    except exception.NotFound as exc:
        # IntegrityError is a NotFound too; its name tells them apart.
        raise HTTPError(404, '%s: %s' % (type(exc).__name__, exc)) from None


def get_index(user: str) -> dict[str, ty.Any]:
    """The token ids of ``user`` (none yet: an empty list)."""
    if INDEX_REGION is not None:
        with _region_errors():
            tokens = INDEX_REGION.get(user)
        return {'tokens': [] if tokens is dogpile_api.NO_VALUE else tokens}
    try:
        return {'tokens': INDEX.get(user)}
    except exception.NotFound:
        return {'tokens': []}


def is_cached(region: str) -> dict[str, ty.Any]:
    """Whether the memoized catalog of ``region`` is in its store now."""
    try:
        value = catalog.get(region)
    except exception.NotFound:
        return {'cached': False}
    return {'cached': True, 'value': value}


def route(method: str, path: str, query: dict[str, list[str]]
          ) -> dict[str, ty.Any]:
    """The reply body of one request; raises for any other status."""
    parts = [urllib.parse.unquote(part) for part in path.strip('/').split('/')]
    if parts == ['health'] and method == 'GET':
        return {}
    if parts == ['tokens'] and method == 'POST':
        users = query.get('user')
        if not users:
            raise HTTPError(400, 'POST /tokens needs ?user=')
        return create_token(users[0])
    if len(parts) == 2 and method == 'GET':
        if parts[0] == 'tokens':
            return get_token(parts[1])
        if parts[0] == 'index':
            return get_index(parts[1])
        if parts[0] == 'catalog':
            return {'value': catalog(parts[1])}
    if len(parts) == 3 and parts[0] == 'catalog':
        if parts[2] == 'warm' and method == 'POST':
            return {'queued': catalog.warm(parts[1])}
        if parts[2] == 'cached' and method == 'GET':
            return is_cached(parts[1])
    raise HTTPError(404, 'no such resource: %s %s' % (method, path))


def application(environ: dict[str, ty.Any],
                start_response: ty.Callable[..., ty.Any]) -> list[bytes]:
    """The WSGI entry point."""
    status = 200
    try:
        body = route(environ['REQUEST_METHOD'], environ['PATH_INFO'],
                     urllib.parse.parse_qs(environ.get('QUERY_STRING', '')))
    except HTTPError as exc:
        status, body = exc.status, {'error': 'HTTPError',
                                    'message': str(exc)}
    except (exception.BackendError, exception.LockTimeout,
            exception.Conflict) as exc:
        # A store failure the library reports properly: the message names
        # the failing server.
        status, body = 503, {'error': type(exc).__name__,
                             'message': str(exc)}
    except Exception as exc:
        # Anything else is a raw exception escaping the library (or a bug
        # here); the client counts it as such.
        LOG.exception('Request failed with a raw exception')
        status, body = 500, {'error': type(exc).__name__,
                             'message': str(exc)}
    body['pid'] = os.getpid()
    data = json.dumps(body).encode('utf-8')
    start_response('%d %s' % (status, _REASONS.get(status, 'Error')),
                   [('Content-Type', 'application/json'),
                    ('Content-Length', str(len(data)))])
    return [data]


_REASONS = {200: 'OK', 400: 'Bad Request', 404: 'Not Found',
            500: 'Internal Server Error', 503: 'Service Unavailable'}


def _load_config() -> dict[str, ty.Any]:
    path = os.environ.get(model.CONFIG_VARIABLE)
    if not path:
        raise RuntimeError('%s must name the service\'s JSON configuration'
                           % model.CONFIG_VARIABLE)
    with open(path) as f:
        return json.load(f)


# At import, as a service configures itself: in the master of a pre-fork
# server, before its workers exist.
logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                    format='%(process)d %(levelname)s %(name)s %(message)s')
configure(_load_config())
warm_up()
