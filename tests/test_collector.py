"""The loopback collector over real sockets: httpx for well-formed traffic, raw sockets for hostile.

Every hostile case is followed by a good request on a new connection, to show one bad client
never stops the server. Waits are condition waits (``wait_for``) or socket timeouts, never sleeps.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import segment_runtimes.collector as collector_module
from segment_core.limits import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES
from segment_runtimes.collector import (
    DEFAULT_FAULT_KINDS,
    Collector,
    Faults,
    OAuthServerSettings,
)
from segment_runtimes.collector._protocol import HttpRequest, TokenAuthority

from . import keys

WRITE_KEY = "test-write-key"
KID = "key-1"
CLIENT_ID = "client-1"
TYPES = ("track", "identify", "group", "alias", "page", "screen")


# --- helpers ---------------------------------------------------------------------------------


def message(message_id: str | None = None, kind: str = "track", **fields: Any) -> dict[str, Any]:
    """A valid message of ``kind`` (the per-type required field filled in)."""
    body: dict[str, Any] = {"type": kind, "userId": "user-1", "messageId": message_id or str(uuid.uuid4())}
    body.update(
        {"track": {"event": "Signed Up"}, "group": {"groupId": "g1"}, "alias": {"previousId": "p1"}}.get(kind, {})
    )
    body.update(fields)
    return body


def batch(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"batch": list(messages), "sentAt": "2024-01-01T00:00:00.000Z"}


def basic(key: str = WRITE_KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


# Building an SSL context costs ~50 ms per httpx client; every URL here is plain http, so share one.
_SSL_CONTEXT = ssl.create_default_context()


def client(**kwargs: Any) -> httpx.Client:
    return httpx.Client(verify=_SSL_CONTEXT, timeout=5.0, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    with client() as one_shot:
        return one_shot.post(url, **kwargs)


def get(url: str, **kwargs: Any) -> httpx.Response:
    with client() as one_shot:
        return one_shot.get(url, **kwargs)


@pytest.fixture
def http(collector: Collector) -> Iterator[httpx.Client]:
    with client(base_url=collector.url, headers=basic()) as shared:
        yield shared


def raw_exchange(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_until_closed(sock)


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:80]
    return int(response.split(b" ", 2)[1])


def post_head(path: str, length: int, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {length}", *extra]
    lines.append("Authorization: " + basic()["Authorization"])
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def assert_still_serves(collector: Collector) -> None:
    """A good request on a new connection succeeds and is stored."""
    before = collector.count()
    mid = str(uuid.uuid4())
    response = post(f"{collector.url}/v1/batch", json=batch(message(mid)), headers=basic(), timeout=5.0)
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert collector.wait_for(before + 1, timeout=5.0)
    assert collector.message_ids()[-1] == mid


# --- endpoints, storage, keep-alive ----------------------------------------------------------


def test_batch_is_stored_with_its_fields(collector: Collector, http: httpx.Client) -> None:
    first = message("m-1", userId="u1", timestamp="2024-01-01T00:00:00.000+00:00", properties={"plan": "pro"})
    second = message("m-2", kind="page", userId=None, anonymousId="anon-2", name="Home")
    response = http.post("/v1/batch", json=batch(first, second))
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert response.headers["content-type"] == "application/json"
    stored = collector.messages()
    assert [m.message_id for m in stored] == ["m-1", "m-2"]
    assert (stored[0].type, stored[0].user_id, stored[0].event_or_name) == ("track", "u1", "Signed Up")
    assert stored[0].timestamp == "2024-01-01T00:00:00.000+00:00"
    assert stored[0].sent_at == "2024-01-01T00:00:00.000Z"  # from the batch envelope
    assert stored[0].received_at.endswith("Z")
    assert stored[0].json["properties"] == {"plan": "pro"}
    assert (stored[1].user_id, stored[1].anonymous_id, stored[1].event_or_name) == (None, "anon-2", "Home")
    assert not any(m.duplicate for m in stored)
    stats = collector.stats
    assert (stats.requests, stats.batches_accepted, stats.messages_stored) == (1, 1, 2)


@pytest.mark.parametrize("kind", TYPES)
def test_single_call_endpoints_take_the_type_from_the_path(collector: Collector, http: httpx.Client, kind: str) -> None:
    body = message("single-1", kind=kind)
    del body["type"]
    body["writeKey"] = WRITE_KEY
    response = http.post(f"/v1/{kind}", json=body)
    assert response.status_code == 200
    (stored,) = collector.messages()
    assert stored.type == kind
    assert "writeKey" not in stored.json  # a credential is never stored


def test_single_call_type_must_match_the_path(collector: Collector, http: httpx.Client) -> None:
    response = http.post("/v1/identify", json=message(kind="track"))
    assert response.status_code == 400
    assert collector.count() == 0


def test_gzip_bodies_are_inflated(collector: Collector, http: httpx.Client) -> None:
    body = gzip.compress(json.dumps(batch(message("gz-1"), message("gz-2"))).encode())
    response = http.post("/v1/batch", content=body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert collector.message_ids() == ["gz-1", "gz-2"]


def test_keep_alive_serves_many_requests_on_one_connection(collector: Collector, http: httpx.Client) -> None:
    for index in range(5):
        assert http.post("/v1/batch", json=batch(message(f"ka-{index}"))).status_code == 200
    assert collector.stats.connections == 1
    assert collector.count() == 5


def test_pipelined_requests_are_answered_in_order(collector: Collector) -> None:
    bodies = [json.dumps(batch(message(f"pipe-{i}"))).encode() for i in range(3)]
    data = b"".join(post_head("/v1/batch", len(body)) + body for body in bodies[:-1])
    data += post_head("/v1/batch", len(bodies[-1]), "Connection: close") + bodies[-1]
    response = raw_exchange(collector.port, data)
    assert response.count(b"HTTP/1.1 200 ") == 3
    assert collector.message_ids() == ["pipe-0", "pipe-1", "pipe-2"]


def test_expect_100_continue_is_honoured(collector: Collector) -> None:
    body = json.dumps(batch(message("continue-1"))).encode()
    with socket.create_connection(("127.0.0.1", collector.port), timeout=5.0) as sock:
        sock.sendall(post_head("/v1/batch", len(body), "Expect: 100-continue", "Connection: close"))
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 ")
        sock.sendall(body)
        assert status_of(read_until_closed(sock)) == 200
    assert collector.message_ids() == ["continue-1"]


def test_duplicates_are_stored_and_flagged(collector: Collector, http: httpx.Client) -> None:
    assert http.post("/v1/batch", json=batch(message("dup"), message("other"))).status_code == 200
    assert http.post("/v1/batch", json=batch(message("dup"), message("dup"))).status_code == 200
    assert [(m.message_id, m.duplicate) for m in collector.messages()] == [
        ("dup", False),
        ("other", False),
        ("dup", True),
        ("dup", True),
    ]
    assert (collector.count(), collector.count(unique=True), collector.duplicate_count()) == (4, 2, 2)
    assert collector.wait_for(2, timeout=0.1, unique=True)
    assert not collector.wait_for(3, timeout=0.05, unique=True)


def test_a_message_without_message_id_gets_one(collector: Collector, http: httpx.Client) -> None:
    body = message()
    del body["messageId"]
    assert http.post("/v1/batch", json=batch(body)).status_code == 200
    (stored,) = collector.messages()
    assert stored.message_id.startswith("collector-")


def test_an_empty_batch_is_accepted_and_stores_nothing(collector: Collector, http: httpx.Client) -> None:
    assert http.post("/v1/batch", json=batch()).status_code == 200
    assert collector.count() == 0


def test_unknown_path_and_wrong_method(collector: Collector, http: httpx.Client) -> None:
    missing = http.post("/v2/batch", json=batch(message()))
    assert missing.status_code == 404
    assert missing.json()["success"] is False
    assert http.post("/v1/nope", json=batch(message())).status_code == 404
    assert http.post("/token", content=b"x").status_code == 404  # OAuth is off
    wrong = http.get("/v1/batch")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert wrong.json()["code"] == "method_not_allowed"
    assert dict(collector.stats.rejected) == {404: 3, 405: 1}


# --- authentication --------------------------------------------------------------------------


def test_auth_is_required(collector: Collector) -> None:
    url = f"{collector.url}/v1/batch"
    body = batch(message())
    cases = [
        ({}, body),  # nothing at all
        (basic(""), body),  # an empty write key
        ({"Authorization": "Basic !!not-base64!!"}, body),
        ({"Authorization": "Bearer some-token"}, body),  # Bearer without OAuth mode
        ({"Authorization": "Digest abc"}, body),
        ({}, {**body, "writeKey": ""}),
    ]
    for headers, payload in cases:
        response = post(url, json=payload, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["code"] == "unauthorized"
    assert collector.count() == 0
    assert post(url, json={**body, "writeKey": "in-the-body"}).status_code == 200
    assert collector.count() == 1


def test_write_keys_restrict_who_may_send() -> None:
    with Collector(write_keys=["good-key"]) as collector:
        url = f"{collector.url}/v1/batch"
        assert post(url, json=batch(message()), headers=basic("bad-key")).status_code == 401
        assert post(url, json={**batch(message()), "writeKey": "bad-key"}).status_code == 401
        assert post(url, json=batch(message()), headers=basic("good-key")).status_code == 200
        assert post(url, json={**batch(message()), "writeKey": "good-key"}).status_code == 200
        assert collector.count() == 2


def test_secrets_never_reach_logs_or_replies(collector: Collector, caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-very-secret-write-key"
    caplog.set_level(logging.DEBUG, logger="segment_runtimes")
    with Collector(write_keys=["other"]) as strict:
        rejected = post(f"{strict.url}/v1/batch", json=batch(message()), headers=basic(secret))
    accepted = post(f"{collector.url}/v1/batch", json=batch(message()), headers=basic(secret))
    assert (rejected.status_code, accepted.status_code) == (401, 200)
    assert secret not in rejected.text
    assert caplog.records  # the collector does log requests at DEBUG...
    assert secret not in caplog.text  # ...but never the key
    assert base64.b64encode(f"{secret}:".encode()).decode() not in caplog.text


# --- validation ------------------------------------------------------------------------------


INVALID_BATCHES = {
    "body not an object": [1, 2],
    "batch not a list": {"batch": {"type": "track"}},
    "batch missing": {"sentAt": "x"},
    "message not an object": {"batch": ["track"]},
    "type missing": {"batch": [{"userId": "u", "event": "E"}]},
    "type unknown": {"batch": [{"type": "purchase", "userId": "u"}]},
    "no user or anonymous id": {"batch": [{"type": "identify"}]},
    "empty ids": {"batch": [{"type": "identify", "userId": "", "anonymousId": ""}]},
    "numeric user id": {"batch": [{"type": "identify", "userId": 42}]},
    "track without event": {"batch": [{"type": "track", "userId": "u"}]},
    "group without groupId": {"batch": [{"type": "group", "userId": "u"}]},
    "alias without previousId": {"batch": [{"type": "alias", "userId": "u"}]},
    "messageId not a string": {"batch": [{"type": "identify", "userId": "u", "messageId": 7}]},
}


@pytest.mark.parametrize("payload", INVALID_BATCHES.values(), ids=INVALID_BATCHES.keys())
def test_invalid_requests_get_400(collector: Collector, http: httpx.Client, payload: Any) -> None:
    response = http.post("/v1/batch", json=payload)
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert body["code"] in ("invalid_request", "invalid_message")
    assert body["message"]
    assert collector.count() == 0


def test_one_invalid_message_rejects_the_whole_batch(collector: Collector, http: httpx.Client) -> None:
    response = http.post("/v1/batch", json=batch(message("ok-1"), {"type": "track", "userId": "u"}))
    assert response.status_code == 400
    assert "batch[1]" in response.json()["message"]
    assert collector.count() == 0


def test_message_size_limit_is_32_kb(collector: Collector, http: httpx.Client) -> None:
    base = message("size")
    room = MAX_MESSAGE_BYTES - len(json.dumps({**base, "properties": {"p": ""}}, separators=(",", ":")))
    at_limit = {**base, "properties": {"p": "x" * room}}
    assert http.post("/v1/batch", json=batch(at_limit)).status_code == 200
    over = {**base, "messageId": "size-2", "properties": {"p": "x" * (room + 1)}}
    response = http.post("/v1/batch", json=batch(over))
    assert response.status_code == 400
    assert response.json()["code"] == "message_too_large"
    assert collector.message_ids() == ["size"]


def test_body_size_limit_is_500_000_bytes(collector: Collector, http: httpx.Client) -> None:
    body = json.dumps(batch(message("big"))).encode()
    padded = body[:-1] + b" " * (MAX_BATCH_BYTES - len(body)) + b"}"
    assert len(padded) == MAX_BATCH_BYTES
    assert http.post("/v1/batch", content=padded).status_code == 200
    too_big = http.post("/v1/batch", content=padded + b" ")
    assert too_big.status_code == 413
    assert too_big.json()["code"] == "request_too_large"
    assert collector.count() == 1
    assert_still_serves(collector)


# --- fault injection -------------------------------------------------------------------------


def test_default_fault_kinds_are_the_retryable_ones() -> None:
    assert "400" not in Faults().kinds
    assert set(Faults().kinds) == set(DEFAULT_FAULT_KINDS)
    assert Faults(kinds=[500, "drop"]).kinds == ("500", "drop")
    with pytest.raises(ValueError, match="unknown fault"):
        Faults(kinds=["418"])
    with pytest.raises(ValueError, match="rate"):
        Faults(rate=1.5)


@pytest.mark.parametrize("status", [500, 503, 429, 408, 400])
def test_status_faults(status: int) -> None:
    with Collector(faults=Faults(rate=1.0, kinds=[status], retry_after=2)) as collector:
        response = post(f"{collector.url}/v1/batch", json=batch(message()), headers=basic())
        assert response.status_code == status
        assert response.json()["success"] is False
        if status == 429:
            assert response.headers["retry-after"] == "2"
        else:
            assert "retry-after" not in response.headers
        assert collector.count() == 0
        assert dict(collector.stats.faults) == {str(status): 1}
        assert dict(collector.stats.rejected) == {}  # faults are counted apart


def test_fractional_retry_after_is_sent_as_a_decimal() -> None:
    with Collector(faults=Faults(rate=1.0, kinds=["429"], retry_after=0.25)) as collector:
        response = post(f"{collector.url}/v1/batch", json=batch(message()), headers=basic())
        assert response.headers["retry-after"] == "0.25"


def test_drop_closes_without_storing_or_replying() -> None:
    with Collector(faults=Faults(rate=1.0, kinds=["drop"])) as collector:
        with pytest.raises(httpx.RemoteProtocolError):
            post(f"{collector.url}/v1/batch", json=batch(message("dropped")), headers=basic())
        assert collector.count() == 0
        collector.set_faults(None)
        assert_still_serves(collector)


def test_lose_reply_stores_then_closes_and_the_retry_is_a_duplicate() -> None:
    with Collector(faults=Faults(rate=1.0, kinds=["lose_reply"])) as collector:
        url = f"{collector.url}/v1/batch"
        with pytest.raises(httpx.RemoteProtocolError):
            post(url, json=batch(message("lost")), headers=basic())
        assert collector.message_ids() == ["lost"]
        collector.set_faults(Faults())
        assert post(url, json=batch(message("lost")), headers=basic()).status_code == 200
        assert [m.duplicate for m in collector.messages()] == [False, True]
        assert collector.stats.batches_accepted == 2


def test_latency_is_a_timer_not_a_sleep() -> None:
    """Four delayed requests on four connections finish together, not one after another."""
    latency = 0.4
    with Collector(faults=Faults(rate=1.0, kinds=["latency"], latency=latency)) as collector:
        body = json.dumps(batch(message())).encode()
        request = post_head("/v1/batch", len(body), "Connection: close") + body
        socks = [socket.create_connection(("127.0.0.1", collector.port), timeout=5.0) for _ in range(4)]
        started = time.monotonic()
        for sock in socks:
            sock.sendall(request)
        statuses = [status_of(read_until_closed(sock)) for sock in socks]
        elapsed = time.monotonic() - started
        for sock in socks:
            sock.close()
        assert statuses == [200] * 4
        assert latency <= elapsed < 3 * latency
        assert collector.count() == 4
        assert collector.stats.faults["latency"] == 4


def outcomes(seed: int, rate: float, count: int) -> list[str]:
    faults = Faults(rate=rate, seed=seed, latency=0.001, retry_after=0)
    results = []
    with Collector(faults=faults) as collector, client(headers=basic()) as session:
        for index in range(count):
            try:
                response = session.post(f"{collector.url}/v1/batch", json=batch(message(f"r-{index}")))
                results.append(str(response.status_code))
            except httpx.RemoteProtocolError:
                results.append("closed")
    return results


def test_faults_are_reproducible_by_seed() -> None:
    first = outcomes(seed=7, rate=0.5, count=30)
    assert outcomes(seed=7, rate=0.5, count=30) == first
    assert {"200", "500", "503", "429", "408", "closed"} <= set(first)
    assert outcomes(seed=8, rate=0.5, count=30) != first


def test_set_faults_changes_them_while_running(collector: Collector) -> None:
    url = f"{collector.url}/v1/batch"
    assert post(url, json=batch(message()), headers=basic()).status_code == 200
    collector.set_faults(Faults(rate=1.0, kinds=["503"]))
    assert collector.faults.kinds == ("503",)
    assert post(url, json=batch(message()), headers=basic()).status_code == 503
    collector.set_faults(None)
    assert post(url, json=batch(message()), headers=basic()).status_code == 200
    assert collector.count() == 2


# --- hostile input: each case is followed by a good request ----------------------------------


def test_garbage_bytes_get_400_and_a_close(collector: Collector) -> None:
    response = raw_exchange(collector.port, b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n")
    assert status_of(response) == 400
    assert b"connection: close" in response.lower()
    assert_still_serves(collector)


def test_oversized_headers_get_431(collector: Collector) -> None:
    # A head still growing past 16 KiB, its end never sent.
    response = raw_exchange(collector.port, b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000)
    assert status_of(response) == 431
    assert_still_serves(collector)


def test_invalid_content_length_gets_400(collector: Collector) -> None:
    response = raw_exchange(collector.port, b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}")
    assert status_of(response) == 400
    assert_still_serves(collector)


def test_content_length_shorter_than_the_body() -> None:
    """The body is cut at Content-Length (bad JSON: 400); the rest never forms a request (408)."""
    with Collector(read_timeout=0.3) as collector:
        body = json.dumps(batch(message("short"))).encode()
        response = raw_exchange(collector.port, post_head("/v1/batch", 10) + body)
        assert status_of(response) == 400
        assert b"invalid_json" in response
        assert response.count(b"HTTP/1.1 ") == 2
        assert b"HTTP/1.1 408 " in response
        assert collector.count() == 0
        assert_still_serves(collector)


def test_content_length_longer_than_the_body_times_out_with_408() -> None:
    with Collector(read_timeout=0.3) as collector:
        body = json.dumps(batch(message("long"))).encode()
        response = raw_exchange(collector.port, post_head("/v1/batch", len(body) + 100) + body)
        assert status_of(response) == 408
        assert collector.count() == 0
        assert collector.stats.rejected[408] == 1
        assert_still_serves(collector)


def test_oversized_content_length_is_refused_before_reading_the_body(collector: Collector) -> None:
    # Only the head is sent: the 413 cannot have waited for the body.
    response = raw_exchange(collector.port, post_head("/v1/batch", MAX_BATCH_BYTES + 1))
    assert status_of(response) == 413
    assert b"request_too_large" in response
    assert_still_serves(collector)


def test_oversized_chunked_body_is_refused(collector: Collector) -> None:
    head = b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"x" * 100_000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(6))
    response = raw_exchange(collector.port, head + chunks + b"0\r\n\r\n")
    assert status_of(response) == 413
    assert_still_serves(collector)


def test_slow_sender_is_cut_off_while_others_are_served() -> None:
    with Collector(read_timeout=0.5) as collector:
        with socket.create_connection(("127.0.0.1", collector.port), timeout=5.0) as slow:
            slow.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\n")  # ...and nothing more
            assert_still_serves(collector)  # served while the slow sender holds its connection
            started = time.monotonic()
            response = read_until_closed(slow)
            waited = time.monotonic() - started
        assert status_of(response) == 408
        assert waited < 3.0
        assert_still_serves(collector)


def test_idle_keep_alive_connections_are_closed_quietly() -> None:
    with Collector(read_timeout=0.3) as collector:
        body = json.dumps(batch(message("idle"))).encode()
        with socket.create_connection(("127.0.0.1", collector.port), timeout=5.0) as sock:
            sock.sendall(post_head("/v1/batch", len(body)) + body)
            response = read_until_closed(sock)  # the reply, then a quiet close when idle
        assert response.count(b"HTTP/1.1 ") == 1
        assert status_of(response) == 200
        assert_still_serves(collector)


def test_client_vanishing_mid_body_is_harmless(collector: Collector) -> None:
    with socket.create_connection(("127.0.0.1", collector.port), timeout=5.0) as sock:
        sock.sendall(post_head("/v1/batch", 1000) + b'{"batch": [')
    assert_still_serves(collector)
    assert collector.count() == 1


BAD_BODIES = {
    "invalid gzip": (b"\x1f\x8b\x08\x00not really gzip", "gzip", 400, "invalid_gzip"),
    "truncated gzip": (gzip.compress(b'{"batch": []}')[:-6], "gzip", 400, "invalid_gzip"),
    "gzip bomb": (gzip.compress(b" " * (MAX_BATCH_BYTES + 1)), "gzip", 413, "request_too_large"),
    "unknown encoding": (b"{}", "br", 415, "unsupported_encoding"),
    "NaN": (b'{"batch": [{"type": "identify", "userId": "u", "traits": {"x": NaN}}]}', None, 400, "invalid_json"),
    "Infinity": (b'{"batch": [{"type": "identify", "userId": "u", "n": Infinity}]}', None, 400, "invalid_json"),
    "not UTF-8": (b'{"batch": ["\xff"]}', None, 400, "invalid_json"),
    "truncated JSON": (b'{"batch": [', None, 400, "invalid_json"),
    "deep nesting": (b"[" * 100_000 + b"]" * 100_000, None, 400, "invalid_json"),
}


@pytest.mark.parametrize("case", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_bodies(collector: Collector, http: httpx.Client, case: tuple[bytes, str | None, int, str]) -> None:
    body, encoding, status, code = case
    headers = {"Content-Encoding": encoding} if encoding else {}
    response = http.post("/v1/batch", content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["code"] == code
    assert collector.count() == 0
    assert_still_serves(collector)


def test_gzip_with_several_members_is_read_whole(collector: Collector, http: httpx.Client) -> None:
    text = json.dumps(batch(message("member"))).encode()
    body = gzip.compress(text[:10]) + gzip.compress(text[10:])
    assert http.post("/v1/batch", content=body, headers={"Content-Encoding": "gzip"}).status_code == 200
    assert collector.message_ids() == ["member"]


# --- threads and lifecycle -------------------------------------------------------------------


def test_one_thread_serves_every_connection() -> None:
    before = threading.active_count()
    with Collector() as collector:
        assert threading.active_count() == before + 1
        body = json.dumps(batch(message())).encode()
        socks = [socket.create_connection(("127.0.0.1", collector.port), timeout=5.0) for _ in range(20)]
        for sock in socks:
            sock.sendall(post_head("/v1/batch", len(body), "Connection: close") + body)
        assert threading.active_count() == before + 1
        assert [status_of(read_until_closed(sock)) for sock in socks] == [200] * 20
        for sock in socks:
            sock.close()
        assert threading.active_count() == before + 1
        assert collector.count() == 20
    assert threading.active_count() == before


def test_stop_is_idempotent_and_closes_the_port() -> None:
    collector = Collector()
    collector.stop()  # before start: a no-op that retires it
    with pytest.raises(RuntimeError):
        collector.start()
    collector = Collector().start()
    port = collector.port
    idle = socket.create_connection(("127.0.0.1", port), timeout=5.0)
    collector.stop()
    collector.stop()
    assert not collector.running
    assert idle.recv(1) == b""  # the open connection was closed too
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5.0).close()
    with pytest.raises(RuntimeError):
        collector.start()


def test_messages_stay_readable_after_stop(collector: Collector, http: httpx.Client) -> None:
    http.post("/v1/batch", json=batch(message("kept")))
    collector.stop()
    assert collector.message_ids() == ["kept"]
    assert collector.messages()[0].message_id == "kept"
    assert collector.count() == 1


def test_url_needs_a_started_collector() -> None:
    collector = Collector()
    with pytest.raises(RuntimeError):
        _ = collector.url
    with pytest.raises(RuntimeError):
        collector.messages()


def test_a_busy_port_raises_in_the_callers_thread(collector: Collector) -> None:
    with pytest.raises(OSError):
        Collector(port=collector.port).start()


def test_a_db_file_persists_and_counts_old_rows_as_seen(tmp_path: Any) -> None:
    path = tmp_path / "events.sqlite"
    with Collector(db_path=path) as first:
        post(f"{first.url}/v1/batch", json=batch(message("persist")), headers=basic())
    with Collector(db_path=path) as second:
        assert second.message_ids() == ["persist"]
        post(f"{second.url}/v1/batch", json=batch(message("persist")), headers=basic())
        assert [m.duplicate for m in second.messages()] == [False, True]
        assert second.db_path == str(path)


def test_on_message_is_called_after_commit_and_its_errors_are_contained() -> None:
    seen: list[str] = []

    def on_message(stored: Any) -> None:
        seen.append(stored.message_id)
        raise RuntimeError("a broken callback")

    with Collector(on_message=on_message) as collector:
        for mid in ("cb-1", "cb-2"):
            response = post(f"{collector.url}/v1/batch", json=batch(message(mid)), headers=basic())
            assert response.status_code == 200
        assert seen == ["cb-1", "cb-2"]


def test_public_names_are_exported() -> None:
    for name in collector_module.__all__:
        assert hasattr(collector_module, name), name
    assert {"Collector", "Faults", "StoredMessage", "OAuthServerSettings"} <= set(collector_module.__all__)


# --- OAuth -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_pems() -> tuple[str, str]:
    return keys.rsa_pems()


@pytest.fixture
def oauth_collector(rsa_pems: tuple[str, str]) -> Iterator[Collector]:
    settings = OAuthServerSettings(rsa_pems[1], KID, CLIENT_ID, token_lifetime=600)
    with Collector(oauth=settings, faults=Faults(rate=1.0, kinds=["500"])) as running:
        running.set_faults(None)
        yield running


def assertion(private_pem: str, audience: str, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": audience,
        "iat": now - 5,
        "exp": now + 55,
        "jti": str(uuid.uuid4()),
    }
    headers = {"kid": overrides.pop("kid", KID)}
    key = overrides.pop("key", private_pem)
    algorithm = overrides.pop("algorithm", "RS256")
    for name, value in overrides.items():
        if value is None:
            claims.pop(name)
        else:
            claims[name] = value
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def token_form(signed: str, **overrides: str) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": signed,
        "scope": "tracking_api:write",
    }
    form.update(overrides)
    return form


def test_oauth_token_then_bearer(oauth_collector: Collector, rsa_pems: tuple[str, str]) -> None:
    url = oauth_collector.url
    oauth_collector.set_faults(Faults(rate=1.0, kinds=["500"]))  # faults never touch /token
    response = post(f"{url}/token", data=token_form(assertion(rsa_pems[0], url)))
    assert response.status_code == 200
    assert "date" in response.headers
    token = response.json()
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 600
    assert token["scope"] == "tracking_api:write"
    assert oauth_collector.tokens_issued == 1
    oauth_collector.set_faults(None)
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert post(f"{url}/v1/batch", json=batch(message("oauth-1")), headers=bearer).status_code == 200
    for headers in (basic(), {"Authorization": "Bearer not-a-token"}, {}):
        rejected = post(f"{url}/v1/batch", json={**batch(message()), "writeKey": WRITE_KEY}, headers=headers)
        assert rejected.status_code == 401
    assert oauth_collector.message_ids() == ["oauth-1"]
    assert oauth_collector.stats.tokens_issued == 1


BAD_ASSERTIONS: dict[str, tuple[dict[str, Any], str, str]] = {
    "wrong kid": ({"kid": "other"}, "invalid_grant", "key id"),
    "wrong iss": ({"iss": "someone"}, "invalid_grant", "iss"),
    "wrong sub": ({"sub": "someone"}, "invalid_grant", "sub"),
    "wrong aud": ({"aud": "https://oauth2.segment.io"}, "invalid_grant", "aud"),
    "missing jti": ({"jti": None}, "invalid_grant", "jti"),
    "missing exp": ({"exp": None}, "invalid_grant", "exp"),
    "expired": ({"exp": int(time.time()) - 120, "iat": int(time.time()) - 180}, "invalid_request", "Token is expired"),
    "from the future": ({"iat": int(time.time()) + 120}, "invalid_request", "Token used before issued"),
    "HS256": ({"algorithm": "HS256", "key": "a-shared-secret-of-32-bytes-at-least"}, "invalid_grant", "RS256"),
}


@pytest.mark.parametrize("case", BAD_ASSERTIONS.values(), ids=BAD_ASSERTIONS.keys())
def test_bad_assertions_are_refused(
    oauth_collector: Collector, rsa_pems: tuple[str, str], case: tuple[dict[str, Any], str, str]
) -> None:
    overrides, error, description = case
    signed = assertion(rsa_pems[0], oauth_collector.url, **overrides)
    response = post(f"{oauth_collector.url}/token", data=token_form(signed))
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == error
    assert description in body["error_description"]
    assert signed not in response.text
    assert oauth_collector.tokens_issued == 0


def test_assertion_from_another_key_is_refused(oauth_collector: Collector) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signed = assertion("", oauth_collector.url, key=stranger)
    response = post(f"{oauth_collector.url}/token", data=token_form(signed))
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant", "error_description": "signature does not verify"}


def test_token_request_shape_is_checked(oauth_collector: Collector, rsa_pems: tuple[str, str]) -> None:
    url = f"{oauth_collector.url}/token"
    signed = assertion(rsa_pems[0], oauth_collector.url)
    cases = [
        (token_form(signed, grant_type="password"), "unsupported_grant_type"),
        (token_form(signed, client_assertion_type="basic"), "invalid_request"),
        (token_form("not.a.jwt"), "invalid_grant"),
        ({"grant_type": "client_credentials"}, "invalid_request"),
    ]
    for form, error in cases:
        response = post(url, data=form)
        assert response.status_code == 400
        assert response.json()["error"] == error
    assert get(url).status_code == 405
    assert post(url, data=token_form(signed)).status_code == 200
    replay = post(url, data=token_form(signed))  # the same jti again
    assert replay.status_code == 400
    assert "already used" in replay.json()["error_description"]
    assert oauth_collector.tokens_issued == 1


def test_fail_status_forces_token_errors(oauth_collector: Collector, rsa_pems: tuple[str, str]) -> None:
    url = oauth_collector.url
    oauth_collector.set_oauth_fail_status(503)
    assert post(f"{url}/token", data=token_form(assertion(rsa_pems[0], url))).status_code == 503
    oauth_collector.set_oauth_fail_status(429)
    limited = post(f"{url}/token", data=token_form(assertion(rsa_pems[0], url)))
    assert limited.status_code == 429
    assert limited.headers["x-ratelimit-reset"] == "1"
    oauth_collector.set_oauth_fail_status(None)
    assert post(f"{url}/token", data=token_form(assertion(rsa_pems[0], url))).status_code == 200
    assert oauth_collector.tokens_issued == 1


def test_oauth_settings_are_validated(rsa_pems: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        OAuthServerSettings(rsa_pems[1], "", CLIENT_ID)
    with pytest.raises(ValueError):
        OAuthServerSettings(rsa_pems[1], KID, CLIENT_ID, token_lifetime=0)
    with pytest.raises(ValueError):
        Collector(oauth=OAuthServerSettings("not a pem", KID, CLIENT_ID))
    with pytest.raises(RuntimeError):
        Collector().set_oauth_fail_status(500)


def test_tokens_expire(rsa_pems: tuple[str, str]) -> None:
    """Expiry on a virtual clock: the authority is values in, values out."""
    now = [1000.0]
    authority = TokenAuthority(
        OAuthServerSettings(rsa_pems[1], KID, CLIENT_ID, token_lifetime=60),
        "http://127.0.0.1:1",
        monotonic=lambda: now[0],
    )
    form = token_form(assertion(rsa_pems[0], "http://127.0.0.1:1"))
    body = "&".join(f"{key}={value}" for key, value in form.items()).encode()
    reply = authority.token_endpoint(HttpRequest("POST", "/token", (), body))
    assert reply.status == 200
    token = json.loads(reply.body)["access_token"]
    assert authority.is_valid(token)
    now[0] += 59.9
    assert authority.is_valid(token)
    now[0] += 0.2
    assert not authority.is_valid(token)
    assert not authority.is_valid("never-issued")


def test_gzip_bomb_guard_is_streaming() -> None:
    """The inflater stops at the limit instead of building the whole bomb in memory."""
    gz = gzip.compress(b"\0" * 50_000_000)
    assert len(gz) < MAX_BATCH_BYTES
    with Collector() as collector:
        started = time.monotonic()
        response = post(
            f"{collector.url}/v1/batch", content=gz, headers={**basic(), "Content-Encoding": "gzip"}, timeout=10.0
        )
        assert response.status_code == 413
        assert time.monotonic() - started < 2.0
