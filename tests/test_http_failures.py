"""Every transport failure names its cause and where, against real sockets on 127.0.0.1.

A closed port, a listener that never accepts, one whose backlog is full, a
server that resets, closes early or breaks HTTP, a host that does not resolve,
a certificate that does not verify: each in the three modes (threads, asyncio,
trio), each checked for its kind and its exact words. None quotes a secret.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from segment_core import TransportFailure, TransportFailureKind
from segment_runtimes._transport.failures import redacted

from .loopback_http import (
    AUTHORIZATION,
    MODES,
    RawServer,
    batch_request,
    failure,
    perform_one,
    read_request,
    self_signed_certificate,
    tls_server,
)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


@pytest.fixture(autouse=True)
def no_environment_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def served_by(handler_reply: bytes) -> RawServer:
    """A server that reads the request, sends ``handler_reply`` and closes."""

    def handle(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(handler_reply)

    return RawServer(handle)


# --- connecting ------------------------------------------------------------------------------------


def test_a_closed_port_is_connection_refused(mode: str) -> None:
    with socket.socket() as closed:  # bound, not listening: connecting is refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        outcome = failure(perform_one(mode, batch_request(f"http://127.0.0.1:{port}/v1/batch")))
    assert outcome == TransportFailure(
        kind=TransportFailureKind.CONNECT, detail=f"connection refused (127.0.0.1:{port})"
    )


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A listener that never accepts, its backlog filled: a new connection's handshake never completes."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(16):  # until one cannot connect: the kernel now drops new handshakes
            filler = stack.enter_context(socket.socket())
            filler.settimeout(0.2)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                break
        else:
            pytest.fail("the listener's backlog never filled")
        yield port


def test_a_handshake_that_never_completes_times_out_connecting(mode: str) -> None:
    with full_backlog() as port:
        outcome = failure(perform_one(mode, batch_request(f"http://127.0.0.1:{port}/v1/batch"), timeout=0.3))
    assert outcome == TransportFailure(
        kind=TransportFailureKind.CONNECT, detail=f"timed out connecting after 0.3 s (127.0.0.1:{port})"
    )


def test_a_host_that_does_not_resolve_is_a_name_resolution_failure(mode: str) -> None:
    outcome = failure(perform_one(mode, batch_request("http://no-such-host.invalid/v1/batch")))
    assert outcome == TransportFailure(
        kind=TransportFailureKind.CONNECT, detail="name resolution failed (no-such-host.invalid)"
    )


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def test_a_certificate_that_does_not_verify_is_named(mode: str, certificate: tuple[Path, Path]) -> None:
    seen: list[bytes] = []
    server = tls_server(certificate, seen)
    outcome = failure(perform_one(mode, batch_request(f"https://127.0.0.1:{server.port}/v1/batch")))
    server.join()
    assert outcome == TransportFailure(
        kind=TransportFailureKind.CONNECT,
        detail=f"TLS certificate verify failed: self-signed certificate (127.0.0.1:{server.port})",
    )
    assert seen == []


def test_tls_to_a_plain_http_server_is_a_failed_handshake(mode: str) -> None:
    def plain(conn: socket.socket) -> None:
        conn.recv(65536)  # the TLS client hello, read as a broken request
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    server = RawServer(plain)
    outcome = failure(perform_one(mode, batch_request(f"https://127.0.0.1:{server.port}/v1/batch")))
    server.join()
    assert outcome.kind is TransportFailureKind.CONNECT
    assert outcome.detail.startswith("TLS handshake failed: ")
    assert outcome.detail.endswith(f" (127.0.0.1:{server.port})")


# --- writing and reading ---------------------------------------------------------------------------


def test_a_server_that_never_answers_times_out_reading(mode: str) -> None:
    # Listening, never accepting: the kernel completes the connection and takes the request.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        outcome = failure(perform_one(mode, batch_request(f"http://127.0.0.1:{port}/v1/batch"), timeout=0.3))
    assert outcome == TransportFailure(
        kind=TransportFailureKind.TIMEOUT, detail=f"timed out reading the response after 0.3 s (127.0.0.1:{port})"
    )


def test_a_server_that_never_reads_times_out_writing(mode: str) -> None:
    # Never accepting: once the kernel's buffers on both ends are full, the write waits.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        request = batch_request(f"http://127.0.0.1:{port}/v1/batch", body=bytes(64 * 1024 * 1024))
        outcome = failure(perform_one(mode, request, timeout=0.3))
    assert outcome == TransportFailure(
        kind=TransportFailureKind.TIMEOUT, detail=f"timed out writing the request after 0.3 s (127.0.0.1:{port})"
    )


def test_a_server_that_resets_is_a_connection_reset(mode: str) -> None:
    def reset(conn: socket.socket) -> None:
        read_request(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST

    server = RawServer(reset)
    outcome = failure(perform_one(mode, batch_request(f"{server.url}/v1/batch")))
    server.join()
    assert outcome == TransportFailure(
        kind=TransportFailureKind.RESET, detail=f"connection reset by peer (127.0.0.1:{server.port})"
    )


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (b"", "server closed the connection without sending a response"),
        (b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"succ', "server closed the connection mid-response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", "response body too large (over 4 MiB)"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", "response head too long (over 64 KiB)"),
    ],
)
def test_a_server_that_breaks_off_or_oversteps_is_named(mode: str, reply: bytes, words: str) -> None:
    server = served_by(reply)
    outcome = failure(perform_one(mode, batch_request(f"{server.url}/v1/batch")))
    server.join()
    assert outcome == TransportFailure(kind=TransportFailureKind.RESET, detail=f"{words} (127.0.0.1:{server.port})")


def test_a_malformed_response_is_a_reset_that_quotes_no_secret(mode: str) -> None:
    # A server that echoes the request's Authorization value into a broken status line.
    def echo(conn: socket.socket) -> None:
        request = read_request(conn)
        authorization = next(line for line in request.split(b"\r\n") if line.startswith(b"Authorization"))
        conn.sendall(b"HTTP/9 " + authorization + b"\r\n\r\n")

    server = RawServer(echo)
    outcome = failure(perform_one(mode, batch_request(f"{server.url}/v1/batch")))
    server.join()
    assert outcome.kind is TransportFailureKind.RESET
    assert outcome.detail.endswith(f"(127.0.0.1:{server.port})")


# --- what is refused before sending, and secrets -----------------------------------------------------


@pytest.mark.parametrize("value", ["Bearer very-secret-token\n", "Bearer very-secret-tökén"])
def test_a_header_that_cannot_be_sent_is_named_never_quoted(
    mode: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="segment")
    with socket.socket() as closed:  # nothing is connected: the header is refused first
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1/batch"
        outcome = failure(perform_one(mode, batch_request(url, authorization=value)))
    assert outcome.kind is TransportFailureKind.OTHER
    assert "'Authorization'" in outcome.detail
    assert "secret" not in outcome.detail
    assert caplog.records  # the failure was logged, without the value
    assert all("secret" not in record.getMessage() for record in caplog.records)


def test_an_unsupported_url_scheme_is_named(mode: str) -> None:
    outcome = failure(perform_one(mode, batch_request("ftp://127.0.0.1/v1/batch")))
    assert outcome == TransportFailure(kind=TransportFailureKind.OTHER, detail="unsupported URL scheme 'ftp'")


def test_redaction_removes_each_secret_and_bounds_the_detail() -> None:
    credentials = AUTHORIZATION.split()[1]
    text = f"boom near {AUTHORIZATION} and {credentials} " + "x" * 300
    outcome = redacted(TransportFailure(kind=TransportFailureKind.RESET, detail=text), [AUTHORIZATION, credentials])
    assert outcome.kind is TransportFailureKind.RESET
    assert outcome.detail.startswith("boom near [redacted] and [redacted] x")
    assert len(outcome.detail) == 200
    untouched = TransportFailure(kind=TransportFailureKind.RESET, detail="connection reset by peer (h:1)")
    assert redacted(untouched, [credentials]) is untouched
