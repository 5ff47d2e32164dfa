"""segment_runtimes._transport.http over real loopback sockets: the collector, and tiny raw-socket servers.

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
import logging
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from segment_core import Request, RequestPurpose, Response, TransportFailure, TransportFailureKind
from segment_runtimes._transport.http import AsyncHTTP, SyncHTTP, select_proxy, transport_failure
from segment_runtimes.collector import Collector

WRITE_KEY = "http-test-write-key"
AUTHORIZATION = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
MODES = ("sync", "asyncio", "trio")
Outcome = Response | TransportFailure
TIMEOUT = 5.0  # for the client under test, unless a test is about timing out
WAIT = 10.0  # the longest a test waits on a server thread


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


def batch_request(url: str, *, authorization: str = AUTHORIZATION, index: int = 0) -> Request:
    message = {"type": "track", "event": "Tested", "userId": "user-1", "messageId": f"http-test-{index}"}
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
    return perform_all(mode, [request], **options)[0]


def failure(outcome: Outcome) -> TransportFailure:
    assert isinstance(outcome, TransportFailure), outcome
    assert WRITE_KEY not in outcome.detail
    assert AUTHORIZATION.split()[1] not in outcome.detail
    return outcome


# --- a raw-socket server ---------------------------------------------------------------------


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
        self._thread.join(WAIT)
        assert not self._thread.is_alive()


def answering(server_requests: list[bytes], reply: bytes, count: int = 1) -> Callable[[socket.socket], None]:
    def handle(conn: socket.socket) -> None:
        for _ in range(count):
            request = read_request(conn)
            if not request:
                return
            server_requests.append(request)
            conn.sendall(reply)

    return handle


# --- keep-alive --------------------------------------------------------------------------------


def test_requests_reuse_one_connection(mode: str, collector: Collector) -> None:
    requests = [batch_request(f"{collector.url}/v1/batch", index=index) for index in range(5)]
    outcomes = perform_all(mode, requests)
    assert [outcome.status for outcome in outcomes if isinstance(outcome, Response)] == [200] * 5
    assert collector.wait_for(5, timeout=WAIT)
    assert collector.stats.connections == 1
    assert collector.stats.requests == 5


def test_response_has_lower_case_headers_and_the_body(mode: str, collector: Collector) -> None:
    outcome = perform_one(mode, batch_request(f"{collector.url}/v1/batch"))
    assert isinstance(outcome, Response)
    assert outcome.status == 200
    assert json.loads(outcome.body) == {"success": True}
    assert outcome.headers["content-type"].startswith("application/json")
    assert all(name == name.lower() for name in outcome.headers)


def test_the_request_carries_exactly_the_engines_headers(mode: str) -> None:
    seen: list[bytes] = []
    server = RawServer(answering(seen, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    request = batch_request(f"{server.url}/v1/batch")
    outcome = perform_one(mode, request)
    server.join()
    assert isinstance(outcome, Response)
    assert outcome.body == b"ok"
    head, _, body = seen[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/batch HTTP/1.1"
    names = sorted(line.split(":", 1)[0].lower() for line in lines[1:])
    assert names == sorted(["host", "content-length", "content-type", "user-agent", "authorization"])
    assert f"Host: 127.0.0.1:{server.port}" in lines
    assert f"Content-Length: {len(request.body)}" in lines
    assert body == request.body


# --- redirects, failures -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_comes_back_as_a_response_and_is_not_followed(mode: str, status: int) -> None:
    seen: list[bytes] = []
    reply = f"HTTP/1.1 {status} Moved\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n".encode()
    server = RawServer(answering(seen, reply))
    outcome = perform_one(mode, batch_request(f"{server.url}/v1/batch"))
    server.join()
    assert isinstance(outcome, Response)
    assert outcome.status == status
    assert outcome.headers["location"] == "/elsewhere"
    assert len(seen) == 1
    assert server.accepted == 1


def test_a_server_that_never_answers_times_out(mode: str) -> None:
    # Listening, never accepting: the kernel completes the connection and takes the request.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1/batch"
        outcome = failure(perform_one(mode, batch_request(url), timeout=0.3))
    assert outcome.kind is TransportFailureKind.TIMEOUT
    assert outcome.detail.startswith("ReadTimeout")


def test_a_body_larger_than_the_socket_buffers_arrives_whole(mode: str) -> None:
    # 16 MiB cannot sit in the kernel's buffers at once: the client sends it in parts, waiting
    # for the socket in between, and the head and body must come out of that in order.
    body = bytes(range(256)) * (16 * 1024 * 4)
    received = bytearray()

    def handle(conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(65536)
        head, _, rest = head.partition(b"\r\n\r\n")
        received.extend(rest)
        while len(received) < len(body):
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            received.extend(chunk)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    server = RawServer(handle)
    template = batch_request(f"{server.url}/v1/batch")
    request = Request(
        id=0, purpose=template.purpose, method="POST", url=template.url, headers=template.headers, body=body
    )
    outcome = perform_one(mode, request)
    server.join()
    assert isinstance(outcome, Response)
    assert outcome.status == 200
    assert received == body


def test_a_server_that_never_reads_times_out_writing(mode: str) -> None:
    # Never accepting: once the kernel's buffers on both ends are full, the write waits.
    big = batch_request("")
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1/batch"
        request = Request(
            id=0, purpose=big.purpose, method="POST", url=url, headers=big.headers, body=bytes(64 * 1024 * 1024)
        )
        outcome = failure(perform_one(mode, request, timeout=0.3))
    assert outcome.kind is TransportFailureKind.TIMEOUT
    assert outcome.detail.startswith("WriteTimeout")


def test_a_refused_connection_is_a_connect_failure(mode: str) -> None:
    with socket.socket() as closed:  # bound, not listening: connecting is refused at once
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1/batch"
        outcome = failure(perform_one(mode, batch_request(url)))
    assert outcome.kind is TransportFailureKind.CONNECT
    assert outcome.detail.startswith("ConnectError")


def test_a_connection_closed_mid_response_is_a_reset(mode: str) -> None:
    def cut_short(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"succ')

    server = RawServer(cut_short)
    outcome = failure(perform_one(mode, batch_request(f"{server.url}/v1/batch")))
    server.join()
    assert outcome.kind is TransportFailureKind.RESET
    assert outcome.detail.startswith("RemoteProtocolError")


def test_a_connection_reset_before_the_response_is_a_reset(mode: str) -> None:
    def reset(conn: socket.socket) -> None:
        read_request(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST

    server = RawServer(reset)
    outcome = failure(perform_one(mode, batch_request(f"{server.url}/v1/batch")))
    server.join()
    assert outcome.kind is TransportFailureKind.RESET


def test_a_connection_the_server_closed_while_idle_is_replaced(mode: str) -> None:
    # Each connection answers one request and is then closed by the server, without saying so.
    closed = threading.Event()
    seen: list[bytes] = []

    def answer_then_close(conn: socket.socket) -> None:
        answering(seen, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")(conn)
        conn.close()
        closed.set()

    server = RawServer(answer_then_close, connections=2)
    requests = [batch_request(f"{server.url}/v1/batch", index=index) for index in range(2)]

    def between() -> None:
        assert closed.wait(WAIT)

    outcomes = perform_all(mode, requests, between=between)
    server.join()
    assert [outcome.status for outcome in outcomes if isinstance(outcome, Response)] == [200, 200]
    assert server.accepted == 2


# --- secrets -----------------------------------------------------------------------------------


def test_a_failure_never_quotes_the_authorization_value(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    # An illegal header value makes h11 raise an error that quotes the value.
    caplog.set_level(logging.DEBUG, logger="segment")
    secret = "Bearer very-secret-token\n"
    server = RawServer(lambda conn: None)
    outcome = perform_one(mode, batch_request(f"{server.url}/v1/batch", authorization=secret))
    with contextlib.suppress(OSError):  # SyncHTTP refuses the header before connecting: end the accept
        socket.create_connection(("127.0.0.1", server.port), timeout=WAIT).close()
    server.join()
    assert isinstance(outcome, TransportFailure)
    assert outcome.kind is TransportFailureKind.OTHER
    assert "very-secret-token" not in outcome.detail
    assert caplog.records  # the failure was logged, without the value
    assert all("very-secret-token" not in record.getMessage() for record in caplog.records)


def test_transport_failure_redacts_secrets_from_exception_text() -> None:
    exc = httpx.ReadError(f"boom near {AUTHORIZATION} and {AUTHORIZATION.split()[1]}")
    outcome = transport_failure(exc, [AUTHORIZATION, AUTHORIZATION.split()[1]])
    assert outcome.kind is TransportFailureKind.RESET
    assert AUTHORIZATION.split()[1] not in outcome.detail
    assert "[redacted]" in outcome.detail


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectError("refused"), TransportFailureKind.CONNECT),
        (httpx.ConnectTimeout("slow"), TransportFailureKind.CONNECT),
        (httpx.ProxyError("407"), TransportFailureKind.CONNECT),
        (httpx.ReadTimeout("slow"), TransportFailureKind.TIMEOUT),
        (httpx.WriteTimeout("slow"), TransportFailureKind.TIMEOUT),
        (httpx.PoolTimeout("busy"), TransportFailureKind.TIMEOUT),
        (httpx.ReadError("reset"), TransportFailureKind.RESET),
        (httpx.WriteError("pipe"), TransportFailureKind.RESET),
        (httpx.RemoteProtocolError("closed"), TransportFailureKind.RESET),
        (httpx.LocalProtocolError("Illegal header value b'secret'"), TransportFailureKind.OTHER),
        (ValueError("secret"), TransportFailureKind.OTHER),
    ],
)
def test_exception_kinds(exc: Exception, kind: TransportFailureKind) -> None:
    outcome = transport_failure(exc)
    assert outcome.kind is kind
    assert outcome.detail.startswith(type(exc).__name__)
    assert "secret" not in outcome.detail  # text only from exceptions that never echo the request
    assert len(outcome.detail) <= 200


# --- proxies -----------------------------------------------------------------------------------


@pytest.fixture
def no_environment_proxies(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


@pytest.mark.usefixtures("no_environment_proxies")
def test_requests_style_proxy_mapping_is_chosen_by_scheme_and_host() -> None:
    proxies = {
        "https": "http://secure-proxy:3128",
        "http://special.example": "http://special-proxy:3128",
        "all://other.example": "http://other-proxy:3128",
    }
    assert select_proxy(httpx.URL("https://api.segment.io/v1/batch"), proxies) == "http://secure-proxy:3128"
    assert select_proxy(httpx.URL("http://special.example/v1/batch"), proxies) == "http://special-proxy:3128"
    assert select_proxy(httpx.URL("https://other.example/token"), proxies) == "http://secure-proxy:3128"
    assert select_proxy(httpx.URL("http://other.example/token"), proxies) == "http://other-proxy:3128"
    assert select_proxy(httpx.URL("http://api.segment.io/v1/batch"), proxies) is None
    assert select_proxy(httpx.URL("http://x/"), {"all": "http://p:1"}) == "http://p:1"
    assert select_proxy(httpx.URL("https://x/"), {"https://": "http://p:1"}) == "http://p:1"
    assert select_proxy(httpx.URL("https://x/"), "http://p:2") == "http://p:2"
    assert select_proxy(httpx.URL("https://x/"), None) is None


def test_environment_proxies_apply_unless_no_proxy_says_otherwise(
    no_environment_proxies: pytest.MonkeyPatch,
) -> None:
    env = no_environment_proxies
    env.setenv("HTTPS_PROXY", "env-proxy:8080")
    env.setenv("NO_PROXY", "internal.example,10.0.0.0/8,localhost:8443,[::1]")
    url = httpx.URL
    assert select_proxy(url("https://api.segment.io/v1/batch"), None) == "http://env-proxy:8080"
    assert select_proxy(url("https://api.segment.io/v1/batch"), {"https": "http://mine:1"}) == "http://mine:1"
    assert select_proxy(url("https://api.segment.io/v1/batch"), {"http": "http://mine:1"}) == "http://env-proxy:8080"
    assert select_proxy(url("http://api.segment.io/v1/batch"), None) is None  # no HTTP_PROXY
    assert select_proxy(url("https://internal.example/"), None) is None
    assert select_proxy(url("https://a.internal.example/"), None) is None
    assert select_proxy(url("https://notinternal.example/"), None) == "http://env-proxy:8080"
    assert select_proxy(url("https://10.1.2.3/"), None) is None
    assert select_proxy(url("https://11.1.2.3/"), None) == "http://env-proxy:8080"
    assert select_proxy(url("https://localhost:8443/"), None) is None
    assert select_proxy(url("https://localhost/"), None) == "http://env-proxy:8080"
    assert select_proxy(url("https://[::1]/"), None) is None
    env.setenv("NO_PROXY", "*")
    assert select_proxy(url("https://api.segment.io/v1/batch"), None) is None


@pytest.mark.usefixtures("no_environment_proxies")
@pytest.mark.parametrize("form", ["mapping", "url"])
def test_requests_go_through_the_proxy(mode: str, form: str) -> None:
    # A plain-http proxy gets the absolute URL as the request target.
    seen: list[bytes] = []
    proxy = RawServer(answering(seen, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", count=2))
    proxies: Any = {"http": proxy.url} if form == "mapping" else proxy.url
    requests = [batch_request("http://segment.invalid/v1/batch", index=index) for index in range(2)]
    outcomes = perform_all(mode, requests, proxies=proxies)
    proxy.join()
    assert [outcome.status for outcome in outcomes if isinstance(outcome, Response)] == [200, 200]
    assert [request.split(b"\r\n", 1)[0] for request in seen] == [b"POST http://segment.invalid/v1/batch HTTP/1.1"] * 2
    assert proxy.accepted == 1  # kept alive


@pytest.mark.usefixtures("no_environment_proxies")
def test_a_proxy_url_with_an_unknown_scheme_is_a_failure_not_an_exception(mode: str) -> None:
    outcome = failure(perform_one(mode, batch_request("http://segment.invalid/v1/batch"), proxies="ftp://proxy:21"))
    assert outcome.kind is TransportFailureKind.OTHER


# --- TLS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
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
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def tls_server(certificate: tuple[Path, Path], seen: list[bytes]) -> RawServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)

    def handle(conn: socket.socket) -> None:
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                answering(seen, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")(tls)
        except ssl.SSLError:
            pass  # the client refused the certificate

    return RawServer(handle)


@pytest.fixture
def no_environment_ca(no_environment_proxies: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    no_environment_proxies.delenv("SSL_CERT_FILE", raising=False)
    no_environment_proxies.delenv("SSL_CERT_DIR", raising=False)
    return no_environment_proxies


def test_tls_certificates_are_verified(
    mode: str, certificate: tuple[Path, Path], no_environment_ca: pytest.MonkeyPatch
) -> None:
    seen: list[bytes] = []
    server = tls_server(certificate, seen)
    outcome = failure(perform_one(mode, batch_request(f"https://127.0.0.1:{server.port}/v1/batch")))
    server.join()
    assert outcome.kind is TransportFailureKind.CONNECT
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.detail
    assert seen == []


def test_tls_trusts_ssl_cert_file_as_httpx_does(
    mode: str, certificate: tuple[Path, Path], no_environment_ca: pytest.MonkeyPatch
) -> None:
    no_environment_ca.setenv("SSL_CERT_FILE", str(certificate[0]))
    seen: list[bytes] = []
    server = tls_server(certificate, seen)
    outcome = perform_one(mode, batch_request(f"https://127.0.0.1:{server.port}/v1/batch"))
    server.join()
    assert isinstance(outcome, Response)
    assert outcome.status == 200
    assert len(seen) == 1


# --- threads -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode_", ["asyncio", "trio"])
def test_async_requests_start_no_thread(mode_: str, collector: Collector) -> None:
    before = set(threading.enumerate())
    outcomes = perform_all(mode_, [batch_request(f"{collector.url}/v1/batch", index=index) for index in range(3)])
    assert all(isinstance(outcome, Response) for outcome in outcomes)
    assert set(threading.enumerate()) == before


def test_sync_client_is_shared_by_threads(collector: Collector) -> None:
    http = SyncHTTP(timeout=TIMEOUT)
    results: list[Outcome] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        for step in range(5):
            outcome = http.perform(batch_request(f"{collector.url}/v1/batch", index=index * 10 + step))
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    http.close()
    assert not any(thread.is_alive() for thread in threads)
    assert [outcome.status for outcome in results if isinstance(outcome, Response)] == [200] * 20
    assert collector.stats.connections <= 4
