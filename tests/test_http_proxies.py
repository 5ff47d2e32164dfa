"""Proxies: which one a request goes through, and its reply held to the direct bounds, over loopback.

The proxies here are raw-socket servers on 127.0.0.1 that answer a proxied
request themselves (a plain-http proxy gets the absolute URL as its target), so
every byte of their reply is the test's choice.
"""

from __future__ import annotations

import gzip
import socket
from typing import Any

import httpx
import pytest

from segment_core import Response, TransportFailure, TransportFailureKind
from segment_runtimes._transport.proxies import select_proxy
from segment_runtimes._transport.wire import MAX_BODY_BYTES

from .loopback_http import MODES, RawServer, answering, batch_request, failure, perform_all, perform_one, read_request

TARGET = "http://segment.invalid/v1/batch"  # never resolved: the proxy answers


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


@pytest.fixture(autouse=True)
def no_environment_proxies(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


# --- which proxy -------------------------------------------------------------------------------------


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


# --- through it ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["mapping", "url"])
def test_requests_go_through_the_proxy(mode: str, form: str) -> None:
    seen: list[bytes] = []
    proxy = RawServer(answering(seen, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", count=2))
    proxies: Any = {"http": proxy.url} if form == "mapping" else proxy.url
    requests = [batch_request(TARGET, index=index) for index in range(2)]
    outcomes = perform_all(mode, requests, proxies=proxies)
    proxy.join()
    assert [(o.status, o.body) for o in outcomes if isinstance(o, Response)] == [(200, b"ok"), (200, b"ok")]
    assert [request.split(b"\r\n", 1)[0] for request in seen] == [f"POST {TARGET} HTTP/1.1".encode()] * 2
    assert proxy.accepted == 1  # kept alive


def test_a_proxied_reply_is_decoded_as_a_direct_one(mode: str) -> None:
    encoded = gzip.compress(b'{"success": true}', mtime=0)
    reply = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(encoded), encoded)
    proxy = RawServer(answering([], reply))
    outcome = perform_one(mode, batch_request(TARGET), proxies=proxy.url)
    proxy.join()
    assert isinstance(outcome, Response)
    assert (outcome.status, outcome.body, outcome.headers["content-encoding"]) == (200, b'{"success": true}', "gzip")


def test_a_proxy_url_with_an_unknown_scheme_is_a_failure_not_an_exception(mode: str) -> None:
    outcome = failure(perform_one(mode, batch_request(TARGET), proxies="ftp://proxy:21"))
    assert outcome == TransportFailure(kind=TransportFailureKind.OTHER, detail="unsupported proxy URL scheme 'ftp'")


def test_a_refused_proxy_is_named_without_its_password(mode: str) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        outcome = failure(perform_one(mode, batch_request(TARGET), proxies=f"http://user:pr0xy-pass@127.0.0.1:{port}"))
    assert outcome == TransportFailure(
        kind=TransportFailureKind.CONNECT, detail=f"connection refused (proxy 127.0.0.1:{port})"
    )


def test_a_proxy_that_refuses_the_tunnel_is_named(mode: str) -> None:
    proxy = RawServer(answering([], b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"))
    outcome = failure(perform_one(mode, batch_request("https://segment.invalid/v1/batch"), proxies=proxy.url))
    proxy.join()
    assert outcome.kind is TransportFailureKind.CONNECT
    assert outcome.detail.startswith("proxy refused: ")
    assert "407" in outcome.detail
    assert outcome.detail.endswith(f"(proxy 127.0.0.1:{proxy.port})")


# --- the bounds of a direct reply ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1), "response body too large"),
        # Over our 64 KiB, under the 100 KiB httpcore would take.
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\nContent-Length: 0\r\n\r\n", "response head too long"),
    ],
)
def test_a_proxied_reply_over_a_bound_is_refused(mode: str, reply: bytes, words: str) -> None:
    proxy = RawServer(answering([], reply))
    outcome = failure(perform_one(mode, batch_request(TARGET), proxies=proxy.url))
    proxy.join()
    assert outcome.kind is TransportFailureKind.RESET
    assert outcome.detail.startswith(words)
    assert outcome.detail.endswith(f"(proxy 127.0.0.1:{proxy.port})")


def test_a_proxied_body_that_never_ends_is_read_only_up_to_the_bound(mode: str) -> None:
    # Chunked, so no length announces it: only reading it chunk by chunk finds it too large.
    chunk = b"a" * 65536
    total = 64 * 1024 * 1024
    sent = [0]

    def flood(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while sent[0] < total:
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent[0] += len(chunk)
        conn.sendall(b"0\r\n\r\n")

    proxy = RawServer(flood)
    outcome = failure(perform_one(mode, batch_request(TARGET), proxies=proxy.url))
    proxy.join()
    assert outcome == TransportFailure(
        kind=TransportFailureKind.RESET, detail=f"response body too large (over 4 MiB) (proxy 127.0.0.1:{proxy.port})"
    )
    assert sent[0] < total / 2  # the client hung up instead of reading it all
