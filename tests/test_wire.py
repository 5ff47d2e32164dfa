"""segment_runtimes._transport.wire: the request head and the response parser, values in and out (no sockets).

The parser is checked against h11 on generated responses split at arbitrary points,
and on the cases it must refuse.
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
    ResponseParser,
    Wire,
    header_lines,
    request_head,
)


def parse(data: bytes, *, chunk: int = 0, eof: bool = False, head_request: bool = False) -> ParsedResponse:
    """Feed ``data`` whole (or in pieces of ``chunk`` bytes); then the end of the connection if ``eof``."""
    parser = ResponseParser(head_request=head_request)
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] if chunk else [data]
    response = None
    for piece in pieces:
        assert response is None, "complete before its last byte"
        response = parser.feed(piece)
    if eof:
        assert response is None
        return parser.feed_eof()
    assert response is not None
    return response


# --- request head --------------------------------------------------------------------------------


def test_request_head_has_host_length_and_the_headers_in_order() -> None:
    head = request_head("POST", b"/v1/batch?x=1", b"api.example:8443", [("Content-Type", "application/json")], 12)
    assert head == (
        b"POST /v1/batch?x=1 HTTP/1.1\r\nHost: api.example:8443\r\nContent-Length: 12\r\n"
        b"Content-Type: application/json\r\n\r\n"
    )


def test_a_bodyless_get_has_no_content_length_and_an_empty_post_has_zero() -> None:
    assert b"Content-Length" not in request_head("GET", b"/", b"h", [], 0)
    assert b"Content-Length: 0\r\n" in request_head("POST", b"/", b"h", [], 0)


def test_request_head_is_what_h11_would_send() -> None:
    headers = [("Authorization", "Basic a2V5Og=="), ("User-Agent", "segment-sansio/1"), ("X-Retry-Count", "2")]
    ours = request_head("POST", b"/v1/batch", b"127.0.0.1:9", headers, 5)
    client = h11.Connection(h11.CLIENT)
    theirs = client.send(
        h11.Request(
            method="POST",
            target="/v1/batch",
            headers=[("Host", "127.0.0.1:9"), ("Content-Length", "5"), *headers],
        )
    )
    assert ours == theirs
    server = h11.Connection(h11.SERVER)
    server.receive_data(ours + b"12345")
    request = server.next_event()
    assert isinstance(request, h11.Request)
    assert (b"authorization", b"Basic a2V5Og==") in request.headers


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Authorization", "Bearer secret\r\nX-Evil: 1"),
        ("Authorization", "Bearer secret\n"),
        ("X", "a\x00b"),
        ("Bad Name", "v"),
    ],
)
def test_a_header_that_would_split_the_head_is_refused_without_quoting_the_value(name: str, value: str) -> None:
    with pytest.raises(HeaderValueError) as caught:
        request_head("POST", b"/", b"h", [(name, value)], 0)
    assert "secret" not in str(caught.value)


def test_checked_headers_are_reused_per_header_set_and_bounded_in_number() -> None:
    checked = CheckedHeaders()

    def request(headers: tuple[tuple[str, str], ...], body: bytes = b"[]") -> Request:
        return Request(id=1, purpose=RequestPurpose.BATCH, method="POST", url="", headers=headers, body=body)

    basic = (("Content-Type", "application/json"), ("Authorization", "Basic a2V5Og=="))
    wire = Wire()
    for body in (b"[]", b"[1,2]"):
        head = wire.request_head(request(basic, body), b"/v1/batch?x=1", b"api.example:8443", checked.lines(basic))
        assert head == request_head("POST", b"/v1/batch?x=1", b"api.example:8443", basic, len(body))
    assert checked.cached == {basic: header_lines(basic)}
    for retry in range(40):  # a new header set per attempt: the cache starts again, it does not grow
        retried = (*basic, ("X-Retry-Count", str(retry)))
        assert checked.lines(retried).endswith(b"X-Retry-Count: %d\r\n" % retry)
        assert len(checked.cached) <= CheckedHeaders.MAX_HEADER_SETS
    bad = (("Authorization", "Bearer secret\r\nX-Evil: 1"),)
    for _ in range(2):  # refused every time, never cached
        with pytest.raises(HeaderValueError) as caught:
            checked.lines(bad)
        assert "secret" not in str(caught.value)
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


def test_bare_line_feeds_are_accepted_as_h11_does() -> None:
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
    assert parse(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", head_request=True).body == b""


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
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: 1\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc",
    ],
)
def test_malformed_responses_are_protocol_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        ResponseParser().feed(data)


def test_a_response_cut_short_is_an_error_and_says_how() -> None:
    with pytest.raises(ProtocolError, match="without sending a response"):
        ResponseParser().feed_eof()
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc") is None
    with pytest.raises(ProtocolError, match="mid-response"):
        parser.feed_eof()


def test_sizes_are_bounded() -> None:
    with pytest.raises(ProtocolError, match="head too long"):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD_BYTES)
    with pytest.raises(ProtocolError, match="too large"):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1))
    with pytest.raises(ProtocolError, match="too large"):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % (MAX_BODY_BYTES + 1))
    bomb = gzip.compress(b"\0" * (MAX_BODY_BYTES + 1), mtime=0)
    with pytest.raises(ProtocolError, match="too large"):
        parse(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb) + bomb)


# --- response: cost bounded by input ----------------------------------------------------------------

# CPU seconds for the largest head, or a chunked body, fed one byte at a time. Linear parsing takes
# well under a tenth of this; re-searching the whole buffer on every feed took 2.3 s for the head.
WORK_BUDGET = 1.0


def _trickle_cpu_seconds(data: bytes) -> tuple[float, ParsedResponse | None]:
    parser = ResponseParser()
    response = None
    started = time.thread_time()
    for index in range(len(data)):
        response = parser.feed(data[index : index + 1])
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
    # A chunk-size line as long as allowed (an extension), then 16 KB in chunks of one byte.
    long_line = b"1;ext=" + b"e" * (MAX_HEAD_BYTES - 100) + b"\r\nx\r\n"
    chunks = b"1\r\ny\r\n" * (16 * 1024)
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + long_line + chunks + b"0\r\n\r\n"
    seconds, response = _trickle_cpu_seconds(data)
    assert response is not None
    assert response.body == b"x" + b"y" * (16 * 1024)
    assert seconds < WORK_BUDGET


# --- response: against h11 ------------------------------------------------------------------------

_names = st.sampled_from(["X-Request-Id", "Retry-After", "Date", "Server", "X-RateLimit-Reset", "Vary", "ETag"])
_values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A response h11 accepts, and whether its body runs to the close."""
    http_10 = draw(st.booleans())
    status = draw(st.integers(200, 599).filter(lambda code: code not in (204, 304)))
    headers = draw(st.lists(st.tuples(_names, _values), max_size=6))
    if draw(st.booleans()):
        headers.append(("Connection", draw(st.sampled_from(["close", "keep-alive"]))))
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
    # Head lines end in CRLF or a bare LF, each drawn on its own (chunk lines stay CRLF, as h11 wants).
    lines = [f"HTTP/{version} {status} Reason", *(f"{n}: {v}" for n, v in headers), ""]
    head = "".join(line + draw(st.sampled_from(["\r\n", "\n"])) for line in lines)
    return head.encode() + payload, framing == "close"


def _h11_reading(data: bytes, until_close: bool) -> tuple[int, dict[str, str], bytes, bool]:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="POST", target="/", headers=[("Host", "h"), ("Content-Length", "0")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    if until_close:
        client.receive_data(b"")
    status, body = 0, b""
    headers: dict[str, str] = {}
    while True:
        event = client.next_event()
        if isinstance(event, h11.Response):
            status = event.status_code
            for name, value in event.headers:
                key = name.decode()
                headers[key] = f"{headers[key]}, {value.decode()}" if key in headers else value.decode()
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
        else:
            raise AssertionError(event)
    try:
        client.start_next_cycle()  # h11's own answer to "may the next request use this connection"
    except h11.LocalProtocolError:
        reusable = False
    else:
        reusable = not until_close  # the server has closed it
    return status, headers, body, reusable


@given(responses(), st.integers(1, 64))
def test_responses_read_as_h11_reads_them(generated: tuple[bytes, bool], chunk: int) -> None:
    data, until_close = generated
    status, headers, body, reusable = _h11_reading(data, until_close)
    for pieces in (0, chunk):
        response = parse(data, chunk=pieces, eof=until_close)
        assert (response.status, response.headers, response.body) == (status, headers, body)
        assert response.keep_alive is reusable
