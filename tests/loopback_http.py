"""Helpers for the transport's tests: requests, one client per mode, and tiny raw-socket servers on 127.0.0.1.

Each behaviour is checked on the three ways requests are performed: ``SyncHTTP``
(the threaded runtime), and ``AsyncHTTP`` under asyncio and under trio.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from segment_core import Request, RequestPurpose, Response, TransportFailure
from segment_runtimes._transport import AsyncHTTP, SyncHTTP

__all__ = [
    "AUTHORIZATION",
    "MODES",
    "TIMEOUT",
    "WAIT",
    "WRITE_KEY",
    "Outcome",
    "RawServer",
    "answering",
    "batch_request",
    "failure",
    "perform_all",
    "perform_one",
    "read_request",
    "self_signed_certificate",
    "tls_server",
]

WRITE_KEY = "http-test-write-key"
AUTHORIZATION = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
MODES = ("sync", "asyncio", "trio")
Outcome = Response | TransportFailure
TIMEOUT = 5.0  # for the client under test, unless a test is about timing out
WAIT = 10.0  # the longest a test waits on a server thread


def batch_request(
    url: str, *, authorization: str = AUTHORIZATION, index: int = 0, body: bytes | None = None
) -> Request:
    """A batch of one message to ``url`` (or carrying ``body``), as the engine would ask for it."""
    message = {"type": "track", "event": "Tested", "userId": "user-1", "messageId": f"http-test-{index}"}
    if body is None:
        body = json.dumps({"batch": [message], "sentAt": "2026-01-01T00:00:00.000Z"}).encode()
    return Request(
        id=index,
        purpose=RequestPurpose.BATCH,
        method="POST",
        url=url,
        headers=(("Content-Type", "application/json"), ("User-Agent", "test"), ("Authorization", authorization)),
        body=body,
        message_count=1,
    )


def perform_all(
    mode: str,
    requests: list[Request],
    *,
    timeout: float = TIMEOUT,
    between: Callable[[], None] = lambda: None,
    **options: Any,
) -> list[Outcome]:
    """Perform ``requests`` one after another on one client of ``mode``, calling ``between`` between them."""
    if mode == "sync":
        http = SyncHTTP(timeout=timeout, **options)
        try:
            outcomes = []
            for index, request in enumerate(requests):
                if index:
                    between()
                outcomes.append(http.perform(request))
            return outcomes
        finally:
            http.close()

    async def run() -> list[Outcome]:
        client = AsyncHTTP(timeout=timeout, **options)
        try:
            outcomes = []
            for index, request in enumerate(requests):
                if index:
                    between()  # blocks the loop: nothing else runs in these tests
                outcomes.append(await client.perform(request))
            return outcomes
        finally:
            await client.aclose()

    if mode == "asyncio":
        return asyncio.run(run())
    return trio.run(run)


def perform_one(mode: str, request: Request, **options: Any) -> Outcome:
    """The outcome of ``request`` on a client of ``mode`` made for it."""
    return perform_all(mode, [request], **options)[0]


def failure(outcome: Outcome) -> TransportFailure:
    """``outcome``, checked to be a failure that quotes neither the write key nor its Basic form."""
    assert isinstance(outcome, TransportFailure), outcome
    assert WRITE_KEY not in outcome.detail
    assert AUTHORIZATION.split()[1] not in outcome.detail
    return outcome


def read_request(conn: socket.socket) -> bytes:
    """One HTTP/1.1 request with a Content-Length body, head and body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


class RawServer:
    """Accepts ``connections`` connections on 127.0.0.1, one after another, each handled by ``handler``."""

    def __init__(self, handler: Callable[[socket.socket], None], *, connections: int = 1) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(WAIT)  # a client that never comes must not hang the thread
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[bytes] = []
        self.accepted = 0
        self._handler = handler
        self._connections = connections
        self._thread = threading.Thread(target=self._serve, name="raw-http-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with self._listener:
            for _ in range(self._connections):
                try:
                    conn, _ = self._listener.accept()
                except OSError:
                    return
                self.accepted += 1
                with conn:
                    conn.settimeout(WAIT)
                    with contextlib.suppress(OSError):
                        self._handler(conn)

    def join(self) -> None:
        """Wait for the server thread to finish; fail if it does not."""
        self._thread.join(WAIT)
        assert not self._thread.is_alive()


def answering(server_requests: list[bytes], reply: bytes, count: int = 1) -> Callable[[socket.socket], None]:
    """A handler that reads up to ``count`` requests into ``server_requests``, answering each with ``reply``."""

    def handle(conn: socket.socket) -> None:
        for _ in range(count):
            request = read_request(conn)
            if not request:
                return
            server_requests.append(request)
            conn.sendall(reply)

    return handle


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, written to ``directory``: (cert path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "segment-sansio test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def tls_server(certificate: tuple[Path, Path], seen: list[bytes]) -> RawServer:
    """A RawServer over TLS with ``certificate`` that answers one request with a 200."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)

    def handle(conn: socket.socket) -> None:
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                answering(seen, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")(tls)
        except ssl.SSLError:
            pass  # the client refused the certificate

    return RawServer(handle)
