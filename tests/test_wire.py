"""segment_runtimes._transport.wire: request heads and responses on one connection, values in and out (no sockets).

Generated responses, split at arbitrary points, read as what was generated;
a table of the cases a client must handle or refuse; and the work of reading
bounded by the bytes, however they are split.
"""

from __future__ import annotations

import gzip
import time
import zlib

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from segment_core import Request, RequestPurpose
from segment_runtimes._transport.wire import (
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    CheckedHeaders,
    HeaderValueError,
    ParsedResponse,
    ProtocolError,
    Wire,
    checked_fields,
)


def request(method: str = "POST", headers: tuple[tuple[str, str], ...] = (), body: bytes = b"") -> Request:
    return Request(id=1, purpose=RequestPurpose.BATCH, method=method, url="", headers=headers, body=body)


def ready_wire(method: str = "POST") -> Wire:
    """A wire that has written a request and waits for its response."""
    wire = Wire()
    wire.request_head(request(method), b"/", b"h", [])
    return wire


def parse(data: bytes, *, chunk: int = 0, eof: bool = False, method: str = "POST") -> ParsedResponse:
    """Feed ``data`` whole (or in pieces of ``chunk`` bytes); then the end of the connection if ``eof``."""
    wire = ready_wire(method)
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] if chunk else [data]
    response = None
    for piece in pieces:
        assert response is None, "complete before its last byte"
        response = wire.feed(piece)
    if eof:
        assert response is None
        response = wire.feed(b"")
    assert response is not None
    return response


def refused(data: bytes, *, eof: bool = False) -> str:
    """The ProtocolError's text for ``data`` (then the end of the connection if ``eof``)."""
    wire = ready_wire()
    with pytest.raises(ProtocolError) as caught:  # noqa: PT012 - either call may be the one that refuses
        wire.feed(data)
        if eof:
            wire.feed(b"")
    return str(caught.value)


# --- request head ------------------------------------------------------------------------------------


def test_request_head_has_host_length_and_the_headers_in_order() -> None:
    fields = checked_fields([("Content-Type", "application/json")])
    head = Wire().request_head(request(body=b"x" * 12), b"/v1/batch?x=1", b"api.example:8443", fields)
    assert head == (
        b"POST /v1/batch?x=1 HTTP/1.1\r\nHost: api.example:8443\r\nContent-Length: 12\r\n"
        b"Content-Type: application/json\r\n\r\n"
    )


def test_a_bodyless_get_has_no_content_length_and_an_empty_post_has_zero() -> None:
    assert b"Content-Length" not in Wire().request_head(request("GET"), b"/", b"h", [])
    assert b"Content-Length: 0\r\n" in Wire().request_head(request("POST"), b"/", b"h", [])


def test_a_server_reads_the_head_and_body_as_sent() -> None:
    headers = (("Authorization", "Basic a2V5Og=="), ("User-Agent", "segment-sansio/1"), ("X-Retry-Count", "2"))
    sent = request(headers=headers, body=b"12345")
    head = Wire().request_head(sent, b"/v1/batch", b"127.0.0.1:9", checked_fields(headers))
    server = h11.Connection(h11.SERVER)
    server.receive_data(head + sent.body)
    received = server.next_event()
    assert isinstance(received, h11.Request)
    assert (received.method, received.target) == (b"POST", b"/v1/batch")
    assert (b"authorization", b"Basic a2V5Og==") in received.headers
    data = server.next_event()
    assert isinstance(data, h11.Data)
    assert data.data == b"12345"


def test_one_wire_writes_the_next_request_once_a_response_is_read() -> None:
    wire = Wire()
    for target in (b"/token", b"/v1/batch"):
        head = wire.request_head(request(), target, b"h", [])
        assert head.startswith(b"POST %s HTTP/1.1\r\n" % target)
        response = wire.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        assert response is not None
        assert response.keep_alive


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Authorization", "Bearer secret\r\nX-Evil: 1"),
        ("Authorization", "Bearer secret\n"),
        ("Authorization", "Bearer sécret"),
        ("X", "a\x00b secret"),
        ("Bad Name", "secret"),
    ],
)
def test_a_header_that_cannot_be_sent_is_refused_without_quoting_the_value(name: str, value: str) -> None:
    with pytest.raises(HeaderValueError) as caught:
        checked_fields([(name, value)])
    assert repr(name) in str(caught.value)
    assert "secret" not in str(caught.value)
    assert "sécret" not in str(caught.value)


def test_checked_headers_are_reused_per_header_set_and_bounded_in_number() -> None:
    checked = CheckedHeaders()
    basic = (("Content-Type", "application/json"), ("Authorization", "Basic a2V5Og=="))
    assert checked.fields(basic) is checked.fields(basic)
    assert checked.cached == {basic: checked_fields(basic)}
    for retry in range(40):  # a new header set per attempt: the cache starts again, it does not grow
        retried = (*basic, ("X-Retry-Count", str(retry)))
        assert checked.fields(retried)[-1] == (b"X-Retry-Count", b"%d" % retry)
        assert len(checked.cached) <= CheckedHeaders.MAX_HEADER_SETS
    bad = (("Authorization", "Bearer secret\r\nX-Evil: 1"),)
    for _ in range(2):  # refused every time, never cached
        with pytest.raises(HeaderValueError):
            checked.fields(bad)
    assert bad not in checked.cached


# --- response: table -----------------------------------------------------------------------------


def test_a_content_length_response() -> None:
    response = parse(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"success":true}')
    assert (response.status, response.body, response.keep_alive) == (200, b'{"success":true}', True)
    assert response.headers == {"content-type": "application/json", "content-length": "16"}


def test_names_are_lower_case_values_trimmed_and_repeats_joined() -> None:
    response = parse(b"HTTP/1.1 429 Too Many\r\nRetry-After:  7 \r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0\r\n\r\n")
    assert response.headers["retry-after"] == "7"
    assert response.headers["x-a"] == "1, 2"


def test_bare_line_feeds_are_accepted() -> None:
    assert parse(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok").body == b"ok"


def test_a_chunked_response_with_extensions_and_trailers() -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nX-T: 1\r\n\r\n"
    for chunk in (0, 1, 3):
        response = parse(data, chunk=chunk)
        assert (response.body, response.keep_alive) == (b"hello!", True)


def test_a_body_without_length_runs_to_the_close() -> None:
    response = parse(b"HTTP/1.1 500 Oops\r\n\r\nall of it", eof=True)
    assert (response.status, response.body, response.keep_alive) == (500, b"all of it", False)


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status: int) -> None:
    assert parse(f"HTTP/1.1 {status} X\r\n\r\n".encode()).body == b""


def test_the_reply_to_head_has_no_body_whatever_its_length_says() -> None:
    assert parse(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", method="HEAD").body == b""


def test_interim_responses_are_skipped() -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
    )
    for chunk in (0, 7):
        response = parse(data, chunk=chunk)
        assert (response.status, response.body, "link" in response.headers) == (200, b"x", False)


@pytest.mark.parametrize(
    ("data", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy", False),  # bytes after it: never pipelined
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
    ],
)
def test_when_the_connection_may_be_reused(data: bytes, keep_alive: bool) -> None:
    assert parse(data).keep_alive is keep_alive


def test_gzip_and_deflate_bodies_are_decoded() -> None:
    for coding, encoded in (
        ("gzip", gzip.compress(b"zipped", mtime=0)),
        ("deflate", zlib.compress(b"zipped")),
        ("deflate", zlib.compress(b"zipped")[2:-4]),  # raw deflate, as some servers send
        ("br", b"left as sent"),
    ):
        head = f"HTTP/1.1 200 OK\r\nContent-Encoding: {coding}\r\nContent-Length: {len(encoded)}\r\n\r\n".encode()
        assert parse(head + encoded).body == (b"left as sent" if coding == "br" else b"zipped")


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: 1\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc",
    ],
)
def test_malformed_responses_are_protocol_errors(data: bytes) -> None:
    assert refused(data)


def test_a_response_cut_short_is_an_error_and_says_how() -> None:
    assert refused(b"", eof=True) == "server closed the connection without sending a response"
    assert refused(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", eof=True) == (
        "server closed the connection mid-response"
    )
    assert refused(b"HTTP/1.1 200 OK\r\nContent-", eof=True) == "server closed the connection mid-response"


def test_sizes_are_bounded() -> None:
    too_long = "response head too long (over 64 KiB)"
    assert refused(b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD_BYTES) == too_long  # still incomplete
    assert refused(b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD_BYTES + b"\r\nContent-Length: 0\r\n\r\n") == too_long
    too_large = "response body too large (over 4 MiB)"
    assert refused(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1)) == too_large
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert refused(chunked + b"%x\r\n" % (MAX_BODY_BYTES + 1) + b"a" * (MAX_BODY_BYTES + 1)) == too_large
    assert refused(b"HTTP/1.1 200 OK\r\n\r\n" + b"a" * (MAX_BODY_BYTES + 1)) == too_large  # until the close
    bomb = gzip.compress(b"\0" * (MAX_BODY_BYTES + 1), mtime=0)
    assert refused(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb) + bomb) == (
        too_large
    )


# --- response: cost bounded by input ----------------------------------------------------------------

# CPU seconds for the largest head, or a chunked body, fed one byte at a time. Linear reading takes
# a fraction of this; re-searching the whole buffer on every feed took 2.3 s for the head.
WORK_BUDGET = 1.0


def _trickle_cpu_seconds(data: bytes) -> tuple[float, ParsedResponse | None]:
    wire = ready_wire()
    response = None
    started = time.thread_time()
    for index in range(len(data)):
        response = wire.feed(data[index : index + 1])
    return time.thread_time() - started, response


def test_a_maximal_head_fed_one_byte_at_a_time_costs_work_linear_in_its_bytes() -> None:
    # Short lines: every line end is a place where a search for the blank line has to look.
    lines = b"".join(b"X-%05d: v\r\n" % index for index in range((MAX_HEAD_BYTES - 100) // 12))
    data = b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: 2\r\n\r\nok"
    assert MAX_HEAD_BYTES - 100 < len(data) <= MAX_HEAD_BYTES
    seconds, response = _trickle_cpu_seconds(data)
    assert response is not None
    assert (response.status, response.body, len(response.headers)) == (200, b"ok", len(lines) // 12 + 1)
    assert seconds < WORK_BUDGET


def test_a_chunked_body_fed_one_byte_at_a_time_costs_work_linear_in_its_bytes() -> None:
    # A chunk-size line nearly as long as a head may be (an extension), then 4 KB in chunks of one byte.
    long_line = b"1;ext=" + b"e" * (MAX_HEAD_BYTES - 100) + b"\r\nx\r\n"
    chunks = b"1\r\ny\r\n" * 4096
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + long_line + chunks + b"0\r\n\r\n"
    seconds, response = _trickle_cpu_seconds(data)
    assert response is not None
    assert response.body == b"x" + b"y" * 4096
    assert seconds < WORK_BUDGET


# --- response: generated -----------------------------------------------------------------------------

_names = st.sampled_from(["X-Request-Id", "Retry-After", "Date", "Server", "X-RateLimit-Reset", "Vary", "ETag"])
_values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)
Expected = tuple[int, dict[str, str], bytes, bool]


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, bool, Expected]:
    """A response, whether its body runs to the close, and what reading it must give."""
    http_10 = draw(st.booleans())
    status = draw(st.integers(200, 599).filter(lambda code: code not in (204, 304)))
    headers = draw(st.lists(st.tuples(_names, _values), max_size=6))
    closing = draw(st.booleans())
    if closing or draw(st.booleans()):
        headers.append(("Connection", "close" if closing else "keep-alive"))
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["length", "close"] if http_10 else ["length", "chunked", "close"]))
    if framing == "length":
        headers.append(("Content-Length", str(len(body))))
        payload = body
    elif framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True) if b > a]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    else:
        payload = body
    version = "1.0" if http_10 else "1.1"
    # Head lines end in CRLF or a bare LF, each drawn on its own (chunk lines stay CRLF).
    lines = [f"HTTP/{version} {status} Reason", *(f"{n}: {v}" for n, v in headers), ""]
    head = "".join(line + draw(st.sampled_from(["\r\n", "\n"])) for line in lines)
    expected_headers: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        expected_headers[key] = f"{expected_headers[key]}, {value}" if key in expected_headers else value
    keep_alive = not http_10 and not closing and framing != "close"
    return head.encode() + payload, framing == "close", (status, expected_headers, body, keep_alive)


@given(responses(), st.integers(1, 64))
def test_generated_responses_read_as_generated_however_they_are_split(
    generated: tuple[bytes, bool, Expected], chunk: int
) -> None:
    data, until_close, expected = generated
    for pieces in (0, chunk):
        response = parse(data, chunk=pieces, eof=until_close)
        assert (response.status, response.headers, response.body, response.keep_alive) == expected
