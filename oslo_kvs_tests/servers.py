"""Start and stop real servers for the tests.

Every server runs as a child process on a free loopback port, with its own
temporary directory, and is stopped afterwards. Nothing here touches a
server already running on the machine (a Redis may listen on 6379).

A missing server binary skips the tests that need it, except in CI
(``CI=true``), where it fails them: CI must never pass by skipping.
"""

import datetime
import ipaddress
import os
import shutil
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


def require_binary(name: str) -> str:
    """The path of server binary ``name``; skip (fail in CI) if missing."""
    path = shutil.which(name)
    if path is None:
        message = '%s is not installed' % name
        if os.environ.get('CI', '').lower() == 'true':
            pytest.fail(message + ' (CI must install it; see .ci/run)')
        pytest.skip(message)
    return path


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


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


class ServerProcess:
    """One server child process on a loopback port, with a temp dir.

    :meth:`start` may be called again after :meth:`stop` to restart the
    server on the same port, as fault tests need.
    """

    binary = ''

    def __init__(self, port: int | None = None) -> None:
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

    def start(self) -> 'ServerProcess':
        require_binary(self.binary)
        log = open(os.path.join(self.tmpdir, 'server.log'), 'ab')
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=self.tmpdir)
        log.close()
        wait_for_port(self.port, self.process)
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

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def log(self) -> str:
        """The server's output so far, for failure messages."""
        with open(os.path.join(self.tmpdir, 'server.log'), 'rb') as f:
            return f.read().decode('utf-8', 'replace')


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


# --- memcached -------------------------------------------------------------
# (memcached server classes and fixtures go here)


# --- redis -----------------------------------------------------------------
# (redis server classes and fixtures go here)
