"""segment_runtimes._transport over real loopback sockets: exchanges, keep-alive, TLS and threads.

Each behaviour is checked on the three ways requests are performed: ``SyncHTTP``
(the threaded runtime), and ``AsyncHTTP`` under asyncio and under trio. Failures
are in test_http_failures.py, proxies in test_http_proxies.py.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from segment_core import Request, Response
from segment_runtimes._transport import SyncHTTP
from segment_runtimes.collector import Collector

from .loopback_http import (
    MODES,
    TIMEOUT,
    WAIT,
    Outcome,
    RawServer,
    answering,
    batch_request,
    perform_all,
    perform_one,
    self_signed_certificate,
    tls_server,
)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


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


def test_requests_to_two_paths_of_one_origin_share_a_connection_and_keep_their_targets(mode: str) -> None:
    seen: list[bytes] = []
    server = RawServer(answering(seen, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", count=3))
    paths = ["/token", "/v1/batch", "/token"]
    outcomes = perform_all(mode, [batch_request(server.url + path, index=i) for i, path in enumerate(paths)])
    server.join()
    assert [outcome.status for outcome in outcomes if isinstance(outcome, Response)] == [200] * 3
    assert [request.split(b" ")[1].decode() for request in seen] == paths
    assert server.accepted == 1


# --- redirects, large bodies, idle connections ------------------------------------------------


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


# --- TLS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def no_environment_ca(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


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
