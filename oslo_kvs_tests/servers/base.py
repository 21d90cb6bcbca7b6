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

"""What every test server has: a child process on a free loopback port.

Every server runs as a child process on a free loopback port, with its own
temporary directory, and is stopped afterwards. Nothing here touches a
server already running on the machine (a Redis may listen on 6379).

A missing server binary skips the tests that need it, except in CI
(``CI=true``), where it fails them: CI must never pass by skipping.
"""

import datetime
import ipaddress
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import typing as ty

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography import x509
from cryptography.x509.oid import NameOID
import pytest

LOOPBACK = '127.0.0.1'


def missing(message: str) -> ty.NoReturn:
    """Skip for want of a server, except in CI, which must fail."""
    if os.environ.get('CI', '').lower() == 'true':
        pytest.fail(message + ' (CI must install it; see .ci/run)')
    pytest.skip(message)


def require_binary(name: str) -> str:
    """The path of server binary ``name``; skip (fail in CI) if missing."""
    path = shutil.which(name)
    if path is None:
        missing('%s is not installed' % name)
    return path


# Ports this process has handed out; see free_port().
_handed_out: set[int] = set()


def _worker() -> tuple[int, int]:
    """(this pytest-xdist worker's number, how many workers): (0, 1) alone."""
    name = os.environ.get('PYTEST_XDIST_WORKER', 'gw0')
    return int(name[2:]), int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', 1))


def free_port() -> int:
    """A loopback TCP port that nothing listens on and no test here owns.

    Tests kill servers and restart them on the same port, and use a port
    with no server as a dead address. Had another pytest-xdist worker taken
    such a port meanwhile, its test and this one would talk to each other's
    servers (a Sentinel watching a killed master would adopt the other
    worker's server). So each worker draws only from its own residue class
    of the ephemeral range, and never hands a port out twice.
    """
    index, count = _worker()
    with open('/proc/sys/net/ipv4/ip_local_port_range') as f:
        low, high = (int(n) for n in f.read().split())
    for _ in range(1000):
        port = random.randrange(low + (index - low) % count, high + 1, count)
        if claim(port):
            return port
    raise RuntimeError('no free port left for worker %d' % index)


def claim(port: int) -> bool:
    """Hand ``port`` out if it was never handed out and nothing holds it.

    For a port a server derives from its own (a Redis Cluster bus port).
    """
    if port in _handed_out:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    _handed_out.add(port)
    return True


def wait_for_port(port: int, process: subprocess.Popen,
                  timeout: float = 10.0, host: str = LOOPBACK) -> None:
    """Block until something accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError('server exited with status %s before '
                               'listening on %d' % (process.returncode, port))
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError('nothing listens on port %d after %ss'
                       % (port, timeout))


def pinned(command: list[str], cpu: int | None) -> list[str]:
    """``command`` confined to CPU ``cpu`` with ``taskset``; None: as is.

    Benchmarks pin a server to their own CPU: on a VM, a reply from a
    server thread woken on another vCPU costs a random tens of
    microseconds, more than the client library being measured.
    """
    if cpu is None:
        return command
    return [require_binary('taskset'), '-c', str(cpu)] + command


class ServerProcess:
    """One server child process on a loopback port, with a temp dir.

    :meth:`start` may be called again after :meth:`stop` to restart the
    server on the same port, as fault tests need. ``cpu`` pins the server
    to that CPU (for benchmarks; tests leave it None).
    """

    binary = ''

    def __init__(self, port: int | None = None,
                 cpu: int | None = None) -> None:
        self.cpu = cpu
        self.host = LOOPBACK
        self.port = port or free_port()
        self.tmpdir = tempfile.mkdtemp(prefix='oslo-kvs-%s-' % self.binary)
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return '%s:%d' % (self.host, self.port)

    def command(self) -> list[str]:
        """The command line that starts the server."""
        raise NotImplementedError

    def require(self) -> None:
        """Skip the test (fail in CI) when the server is not installed."""
        require_binary(self.binary)

    def spawn(self) -> subprocess.Popen:
        """Run :meth:`command`, its output in ``server.log``; no waiting."""
        self.require()
        log = open(os.path.join(self.tmpdir, 'server.log'), 'ab')
        self.process = subprocess.Popen(
            pinned(self.command(), self.cpu), stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=self.tmpdir)
        log.close()
        return self.process

    def start(self) -> 'ServerProcess':
        wait_for_port(self.port, self.spawn())
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def hang(self) -> None:
        """Freeze the server (SIGSTOP): connected, but it answers nothing.

        Returns once every thread of the server has stopped: kill() returns
        before the stop takes effect, and on a busy machine a server thread
        could still answer the next request.
        """
        pid = self.process.pid
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            states = set()
            for task in os.listdir('/proc/%d/task' % pid):
                with open('/proc/%d/task/%s/stat' % (pid, task)) as f:
                    states.add(f.read().rpartition(')')[2].split()[0])
            if states == {'T'}:
                return
            time.sleep(0.01)
        raise AssertionError('server process %d did not stop' % pid)

    def resume(self) -> None:
        """Let a hung server run again (SIGCONT)."""
        self.process.send_signal(signal.SIGCONT)

    def cleanup(self) -> None:
        if self.process is not None:
            self.resume()  # a stopped process ignores SIGTERM until then
        self.stop()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def log(self) -> str:
        """The server's output so far, for failure messages."""
        with open(os.path.join(self.tmpdir, 'server.log'), 'rb') as f:
            return f.read().decode('utf-8', 'replace')


def running(server: ty.Any) -> ty.Iterator[ty.Any]:
    """Start ``server`` for a fixture to yield, and clean it up after."""
    try:
        yield server.start()
    finally:
        server.cleanup()


class TLSFiles(ty.NamedTuple):
    """Paths of a throwaway CA and a server/client certificate it signed."""

    ca: str
    cert: str
    key: str


def make_tls_files(directory: str, hostname: str = 'localhost') -> TLSFiles:
    """Write a CA and a certificate for ``hostname`` and 127.0.0.1."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject, issuer, public_key, signing_key, is_ca, sans=None):
        builder = (x509.CertificateBuilder()
                   .subject_name(subject).issuer_name(issuer)
                   .public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=is_ca,
                                                        path_length=None),
                                  critical=True))
        if sans:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                            'oslo_kvs test CA')])
    ca_cert = build(ca_name, ca_name, ca_key.public_key(), ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    sans = [x509.DNSName(hostname),
            x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
    cert = build(name, ca_name, key.public_key(), ca_key, False, sans)

    paths = TLSFiles(*(os.path.join(directory, n)
                       for n in ('ca.pem', 'cert.pem', 'key.pem')))
    pem = serialization.Encoding.PEM
    with open(paths.ca, 'wb') as f:
        f.write(ca_cert.public_bytes(pem))
    with open(paths.cert, 'wb') as f:
        f.write(cert.public_bytes(pem))
    with open(paths.key, 'wb') as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return paths


class ServerGroup:
    """Server processes started and cleaned up together.

    Subclasses give :meth:`processes`; those that must wait for their
    members to work together extend :meth:`start`.
    """

    def processes(self) -> list[ServerProcess]:
        """Every process of the group, in the order they start and stop."""
        raise NotImplementedError

    def start(self) -> 'ServerGroup':
        """Start every process; returns the group."""
        for process in self.processes():
            process.start()
        return self

    def cleanup(self) -> None:
        """Stop every process and remove its files."""
        for process in self.processes():
            process.cleanup()


def private_servers(cls: ty.Any) -> ty.Iterator[ty.Callable[..., ty.Any]]:
    """A maker of servers of ``cls``, started on demand, cleaned up after."""
    made: list[ty.Any] = []

    def make(**kwargs: ty.Any) -> ty.Any:
        server = cls(**kwargs)
        made.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in made:
            server.cleanup()
