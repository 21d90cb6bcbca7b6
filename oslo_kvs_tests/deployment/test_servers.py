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

"""The sample service in real WSGI servers, under real HTTP load.

For every server mode of :mod:`.launchers`: a load with no fault must get
every reply right and reach every worker, and ``warm()`` from a worker
must fill the cache (under uWSGI, also with the index written by
``update()`` and kept in an oslo.cache region instead); under continuous
load, a hung memcached node, a killed and restarted one and a hung Redis
may fail only requests that need that server (with a 503 naming it),
never with a raw exception or a wrong value, and the service must serve
without failure 1 s after each fault clears, without losing an
acknowledged write.

Each test prints its counts per phase and, when ``OSLO_KVS_DEPLOY_REPORT``
names a file, appends them to it as JSON lines.
"""

import json
import os
import secrets
import subprocess
import tempfile
import typing as ty
import uuid

import pytest

from oslo_kvs_tests.deployment import launchers
from oslo_kvs_tests.deployment import load
from oslo_kvs_tests import servers

REPORT_VARIABLE = 'OSLO_KVS_DEPLOY_REPORT'
#: Seconds of load with no fault.
LOAD_SECONDS = 5.0
#: Seconds a fault lasts under load.
FAULT_SECONDS = 2.0
#: Seconds after a fault clears before the service must not fail.
SETTLE_SECONDS = 1.0
#: Seconds of the load phase that must not fail after a fault.
AFTER_SECONDS = 1.5
#: Seconds for the requests in flight at the end of a phase to finish.
IN_FLIGHT_SECONDS = 0.25
#: Seconds within which a warmed result must be in the store.
WARM_WITHIN = 2.0

MODES = list(launchers.MODES)


class Backends(ty.NamedTuple):
    """The servers behind the sample service and its configuration."""

    memcached: servers.MemcachedCluster
    redis: servers.RedisServer
    mongo: servers.MongoServer
    config: str


@pytest.fixture(scope='module')
def backends() -> ty.Iterator[Backends]:
    """Three memcached nodes, a Redis, a SecantusDB, and the config file.

    The config file and its directory are readable by every user: the
    mod_wsgi daemon processes run as ``nobody`` when the tests run as
    root.
    """
    started: list[ty.Any] = []
    directory = tempfile.mkdtemp(prefix='oslo-kvs-deploy-')
    try:
        for server in (servers.MemcachedCluster(3), servers.RedisServer(),
                       servers.MongoServer()):
            started.append(server)
            server.start()
        memcached, redis, mongo = started
        os.chmod(directory, 0o755)
        config = os.path.join(directory, 'service.json')
        with open(config, 'w') as f:
            json.dump({
                'memcached': memcached.addresses, 'redis': redis.url,
                'mongodb': mongo.url, 'mongodb_db': mongo.db_name,
                'mongodb_collection': 'catalog_%s' % uuid.uuid4().hex,
                'protection_keys': [secrets.token_hex(32)]}, f)
        os.chmod(config, 0o644)
        yield Backends(memcached, redis, mongo, config)
    finally:
        for server in started:
            server.cleanup()
        subprocess.run(['rm', '-rf', directory], check=False)


@pytest.fixture(params=MODES)
def service(request: pytest.FixtureRequest,
            backends: Backends) -> ty.Iterator[launchers.WSGIServer]:
    """The sample service in one WSGI server mode, started for a test."""
    server = launchers.MODES[request.param](backends.config)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def _library_commit() -> str:
    """The commit of the library under test, "+dirty" if edited."""
    root = launchers.ROOT

    def git(*args: str) -> str:
        return subprocess.run(['git', '-C', root, *args],
                              capture_output=True, text=True).stdout.strip()
    commit = git('rev-parse', '--short', 'HEAD') or 'unknown'
    if git('status', '--porcelain', '--', 'oslo_kvs'):
        commit += '+dirty'
    return commit


def report(test: str, server: launchers.WSGIServer,
           client: load.LoadClient, **extra: ty.Any) -> None:
    """Print the counts per phase; append them to the report file."""
    record = dict(test=test, mode=server.name, library=_library_commit(),
                  phases=client.summary(), **extra)
    print('\n%s %s: %s' % (test, server.name, json.dumps(record, indent=1)))
    path = os.environ.get(REPORT_VARIABLE)
    if path:
        with open(path, 'a') as f:
            f.write(json.dumps(record) + '\n')


def _failures(phase: load.Phase, kinds: ty.Collection[str]) -> list[str]:
    """The replies of ``kinds`` in ``phase``, for assertion messages."""
    return ['%s %s %s -> %s %s: %s' % (f.kind, f.method, f.path, f.status,
                                       f.error, f.message[:200])
            for f in phase.failures if f.kind in kinds][:10]


def assert_clean(phase: load.Phase, server: launchers.WSGIServer,
                 kinds: ty.Collection[str] = ('failed', 'raw', 'wrong',
                                              'missing', 'integrity')
                 ) -> None:
    """No reply of ``kinds`` in ``phase``."""
    bad = {kind: phase.counts[kind] for kind in kinds if phase.counts[kind]}
    assert not bad, '%s, phase %s: %s of %d replies, e.g. %s\n%s' % (
        server.name, phase.name, bad, phase.requests,
        _failures(phase, kinds), server.log()[-3000:])


def assert_workers_serve(server: launchers.WSGIServer,
                         replies: list[load.Reply]) -> None:
    """Every reply of ``held_health()`` came, from every worker.

    The server was ready only once every worker had answered, so one
    that does not answer now is stuck.
    """
    errors = [reply.body for reply in replies if reply.status != 200]
    assert not errors, '%s: %d of %d held requests failed, e.g. %s\n%s' % (
        server.name, len(errors), len(replies), errors[:3],
        server.log()[-3000:])
    if server.spreads_held:
        pids = {reply.body.get('pid') for reply in replies}
        assert len(pids) == server.processes, (
            '%s: only %d of %d workers answered %d requests held together '
            '(the others are stuck)' % (server.name, len(pids),
                                        server.processes, len(replies)))


def test_no_fault(service: launchers.WSGIServer) -> None:
    """Every reply right under load; every worker serves and warms."""
    health = service.held_health()
    client = load.LoadClient(service.url)
    # Requests arriving together first, on every worker at once, as a
    # service meets them after a (re)start; then steady load.
    burst = client.burst('burst')
    steady = client.run('load', LOAD_SECONDS)
    lost = client.lost_index_entries()
    regions = ['warm-%s-%d' % (uuid.uuid4().hex[:8], n)
               for n in range(service.processes * launchers.THREADS)]
    warmed = load.warm_and_wait(service.url, regions, WARM_WITHIN)
    warm_pids = {w.reply.body.get('pid') for w in warmed}
    report('no_fault', service, client, lost=sum(lost.values()),
           workers=len({r.body.get('pid') for r in health
                        if r.status == 200}),
           warm={'requests': len(warmed), 'workers': len(warm_pids),
                 'cached': sum(w.cached_after is not None for w in warmed),
                 'slowest': max((w.cached_after or WARM_WITHIN
                                 for w in warmed), default=None)})

    for phase in (burst, steady, client.phases['final']):
        assert_clean(phase, service)
    assert steady.requests and client.acknowledged
    assert not sum(lost.values()), lost
    assert all(w.reply.status == 200 and w.reply.body.get('queued') is True
               for w in warmed), [w.reply for w in warmed]
    not_cached = ['%s (warmed by pid %s)' % (w.region, w.reply.body['pid'])
                  for w in warmed if w.cached_after is None]
    assert not not_cached, (
        '%s: warm() from a worker left %d of %d results uncached after '
        '%ss: %s' % (service.name, len(not_cached), len(warmed),
                     WARM_WITHIN, not_cached[:5]))
    assert not [w for w in warmed if w.wrong_value is not None], warmed
    assert_workers_serve(service, health)
    if service.spreads_held:
        assert len(warm_pids) == service.processes, warm_pids


@pytest.mark.parametrize('index_writes', ['update', 'oslo.cache'])
def test_index_writes(backends: Backends, index_writes: str) -> None:
    """Every reply right with the index's other writers, under uWSGI.

    The service's default writes its index under the store's lock; the
    deployment benchmark compares it with ``update()`` and with an
    oslo.cache region under the backend's distributed mutex, which must
    be right too for the comparison to mean anything.
    """
    with open(backends.config) as f:
        config = dict(json.load(f), index_writes=index_writes)
    path = os.path.join(os.path.dirname(backends.config),
                        'service-%s.json' % index_writes)
    with open(path, 'w') as f:
        json.dump(config, f)
    os.chmod(path, 0o644)
    server = launchers.UWSGI(path)
    try:
        server.start()
        client = load.LoadClient(server.url)
        burst = client.burst('burst')
        steady = client.run('load', LOAD_SECONDS)
        lost = client.lost_index_entries()
        report('index_writes', server, client, index_writes=index_writes,
               lost=sum(lost.values()))
        for phase in (burst, steady, client.phases['final']):
            assert_clean(phase, server)
    finally:
        server.cleanup()
    assert steady.requests and client.acknowledged
    assert not sum(lost.values()), lost


def _names(address: str) -> ty.Callable[[load.Failure], bool]:
    """Whether a failure's message names the server at ``address``."""
    return lambda failure: address in failure.message


def _index_failure(address: str) -> ty.Callable[[load.Failure], bool]:
    """Whether a failure is an index request failing on Redis.

    An index read, or a token creation in its index step: the message
    names Redis, or the user's index lock was not had in time (a lock
    whose holder failed mid-update frees itself only after its timeout).
    """
    def check(failure: load.Failure) -> bool:
        on_index = (failure.path.startswith('/index/') or
                    (failure.method == 'POST' and
                     failure.path.startswith('/tokens')))
        return on_index and (address in failure.message or
                             failure.error == 'LockTimeout')
    return check


def assert_only(phase: load.Phase, server: launchers.WSGIServer,
                allowed: ty.Callable[[load.Failure], bool],
                what: str) -> None:
    """Every failure of ``phase`` is an ``allowed`` 503."""
    others = [f for f in phase.failures
              if f.kind == 'failed' and not allowed(f)]
    assert not others, '%s, phase %s: %d failures not %s, e.g. %s' % (
        server.name, phase.name, len(others), what, others[:5])


def test_faults(service: launchers.WSGIServer, backends: Backends) -> None:
    """Faults fail only requests needing that server, and then none.

    Under continuous load: one memcached node hung (SIGSTOP) then
    resumed; one killed and restarted on its port; Redis hung then
    resumed. A token read back 404 after a memcached fault is allowed
    (memcached lost it, or the node was flushed when it rejoined); a
    different value never is.
    """
    node = backends.memcached.servers[0]
    redis = backends.redis
    client = load.LoadClient(service.url)
    checks: list[tuple[load.Phase, ty.Callable[[load.Failure], bool],
                       str]] = []
    after: list[load.Phase] = []
    try:
        client.begin('baseline')
        with client.running(max_seconds=60):
            baseline = client.phase('baseline', AFTER_SECONDS)
            for fault, server, allowed, what, stop, restart in (
                    ('memcached-hang', node, _names(node.address),
                     'naming the hung memcached node', node.hang,
                     node.resume),
                    ('memcached-kill', node, _names(node.address),
                     'naming the killed memcached node', node.kill,
                     node.start),
                    ('redis-hang', redis, _index_failure(redis.address),
                     'index requests failing on Redis', redis.hang,
                     redis.resume)):
                # Each phase begins before the fault does, so every
                # request the fault can touch counts in it; requests of
                # the phase before, still in flight, finish first.
                phase = client.phase(fault, IN_FLIGHT_SECONDS)
                stop()
                client.phase(fault, FAULT_SECONDS)
                restart()
                settle = client.phase(fault + '-settle', SETTLE_SECONDS)
                checks += [(phase, allowed, what), (settle, allowed, what)]
                after.append(client.phase(fault + '-after', AFTER_SECONDS))
    finally:
        # Whatever failed, leave the servers running for other tests.
        if node.process is None:
            node.start()
        node.resume()
        redis.resume()
    lost = client.lost_index_entries()
    report('faults', service, client, lost=sum(lost.values()))

    for phase in client.phases.values():
        assert_clean(phase, service, ('raw', 'wrong', 'integrity'))
    assert_clean(baseline, service)
    for phase, allowed, what in checks:
        assert_only(phase, service, allowed, what)
        assert phase.requests, phase
    for phase in after:
        assert phase.requests, phase
        assert_clean(phase, service, ('failed',))
    assert_clean(client.phases['final'], service, ('failed', 'wrong'))
    assert not sum(lost.values()), lost
