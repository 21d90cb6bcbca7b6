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

"""The test servers' port allocation: no two workers share a port."""

import socket

import pytest

from oslo_kvs_tests import servers
from oslo_kvs_tests.servers import base


def test_each_worker_draws_from_its_own_ports(monkeypatch):
    monkeypatch.setattr(base, '_handed_out', set())
    monkeypatch.setenv('PYTEST_XDIST_WORKER_COUNT', '3')
    drawn = {}
    for index in range(3):
        monkeypatch.setenv('PYTEST_XDIST_WORKER', 'gw%d' % index)
        drawn[index] = {base.free_port() for _ in range(50)}
    assert {port % 3 for port in drawn[0]} | {
        port % 3 for port in drawn[1]} | {
        port % 3 for port in drawn[2]} == {0, 1, 2}
    for index, ports in drawn.items():
        assert len({port % 3 for port in ports}) == 1
        assert len(ports) == 50
        assert not ports & set().union(
            *(drawn[other] for other in drawn if other != index))


def test_a_port_is_never_handed_out_twice(monkeypatch):
    monkeypatch.setattr(base, '_handed_out', set())
    monkeypatch.setenv('PYTEST_XDIST_WORKER_COUNT', '1')
    monkeypatch.setenv('PYTEST_XDIST_WORKER', 'gw0')
    first = base.free_port()
    # Whatever the draws, the port is off the table once handed out.
    monkeypatch.setattr(base.random, 'randrange', lambda *args: first)
    with pytest.raises(RuntimeError, match='no free port'):
        base.free_port()


def test_a_listening_port_is_skipped(monkeypatch):
    monkeypatch.setattr(base, '_handed_out', set())
    with socket.socket() as spare:
        spare.bind((base.LOOPBACK, 0))
        free = spare.getsockname()[1]
    with socket.socket() as taken:
        taken.bind((base.LOOPBACK, 0))
        taken.listen()
        busy = taken.getsockname()[1]
        draws = iter([busy, free])
        monkeypatch.setattr(base.random, 'randrange',
                            lambda *args: next(draws))
        assert base.free_port() == free


def test_a_cluster_port_is_drawn_with_its_bus_port(monkeypatch):
    monkeypatch.setattr(base, '_handed_out', set())
    port = servers.redis_cluster_port()
    assert port + 10000 in base._handed_out
    assert not base.claim(port + 10000)
