"""HTTP/1.1 on one connection, sans-IO, with h11: each request's head out, its response in, within bounds.

A :class:`Wire` is one connection's h11 state. It writes the head of a request
(the body goes to the socket as it is, never copied into the head) and is fed
the bytes received until it returns the :class:`ParsedResponse`: h11 frames the
response (interim 1xx skipped; no body for 204, 304 and replies to HEAD;
chunked, Content-Length or until the close) and says whether the connection
may carry the next request. Nothing here touches a socket (``streams.py``
does); ``connections.py`` runs the exchange.

What this adds to h11:

- Header sets are checked once per destination (:class:`CheckedHeaders`), and
  refused with an error that names the header, never its value (h11's own
  error quotes the value, and the Authorization value is a secret).
- Bounds: a head of at most :data:`MAX_HEAD_BYTES` (h11's incomplete-event
  limit), a body of at most :data:`MAX_BODY_BYTES`, refused as soon as its
  Content-Length or its bytes so far say so; gzip and deflate decoded (as
  httpx would) within the same bound.
- A connection is reused only if h11 says so, nothing followed the response,
  and its framing did not disagree with itself (Transfer-Encoding and
  Content-Length both).
- Every complaint is a :class:`ProtocolError` in plain words.

h11 replaced a hand-written writer and parser: it adds 0.6-1.1 µs of worker
CPU per event at 100 events per batch (about 440k instructions per exchange),
at or under the 1 µs the project set as the price of not keeping its own
HTTP/1.1 code (benchmarks/README.md, benchmarks/wire_vs_h11.py).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from typing import Final

import h11

from segment_core import Request

__all__ = [
    "BODY_TOO_LARGE",
    "CLOSED_BEFORE_RESPONSE",
    "CLOSED_MID_RESPONSE",
    "HEAD_TOO_LONG",
    "MAX_BODY_BYTES",
    "MAX_HEAD_BYTES",
    "CheckedHeaders",
    "HeaderValueError",
    "ParsedResponse",
    "ProtocolError",
    "Wire",
    "checked_fields",
    "decoded_body",
    "head_size",
]

# h11's default limit for an incomplete head is 16 KiB; a reply head is a few hundred bytes.
MAX_HEAD_BYTES: Final = 64 * 1024
# A reply body is a short JSON document (an error, a token); this bounds a broken server's.
MAX_BODY_BYTES: Final = 4 * 1024 * 1024
HEAD_TOO_LONG: Final = f"response head too long (over {MAX_HEAD_BYTES // 1024} KiB)"
BODY_TOO_LARGE: Final = f"response body too large (over {MAX_BODY_BYTES // 1024 // 1024} MiB)"
CLOSED_BEFORE_RESPONSE: Final = "server closed the connection without sending a response"
CLOSED_MID_RESPONSE: Final = "server closed the connection mid-response"

_FORBIDDEN_IN_VALUE: Final = re.compile(rb"[\x00\r\n]")
_TOKEN: Final = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")

Headers = tuple[tuple[str, str], ...]
Fields = list[tuple[bytes, bytes]]


class HeaderValueError(ValueError):
    """A header name or value that cannot be sent (it would split the head). Never quotes the value."""


class ProtocolError(Exception):
    """The server sent something that is not a valid HTTP/1.1 response, or one over a bound."""


def checked_fields(headers: Iterable[tuple[str, str]]) -> Fields:
    """``headers`` encoded for h11, each checked first.

    Raises:
        HeaderValueError: a name is not a token, or a value is not ASCII or holds CR, LF or NUL.
    """
    fields = []
    for name, value in headers:
        try:
            raw_name, raw_value = name.encode("ascii"), value.encode("ascii")
        except UnicodeEncodeError:
            raise HeaderValueError(f"request header {name!r} is not ASCII") from None
        if _TOKEN.fullmatch(raw_name) is None or _FORBIDDEN_IN_VALUE.search(raw_value) is not None:
            raise HeaderValueError(f"illegal value in request header {name!r}")  # the name only: values are secret
        fields.append((raw_name, raw_value))
    return fields


class CheckedHeaders:
    """The header sets of one destination's requests, each checked once and kept encoded."""

    # A client sends a handful of header sets (Basic auth, or an OAuth token now and then; with
    # and without X-Retry-Count): past this many, the cache starts again.
    MAX_HEADER_SETS: Final = 16

    def __init__(self) -> None:
        self.cached: dict[Headers, Fields] = {}

    def fields(self, headers: Headers) -> Fields:
        """``headers`` as :func:`checked_fields` encodes them, cached.

        Raises:
            HeaderValueError: a name is not a token, or a value is not ASCII or holds CR, LF or NUL.
        """
        fields = self.cached.get(headers)
        if fields is None:
            fields = checked_fields(headers)
            if len(self.cached) >= self.MAX_HEADER_SETS:
                self.cached.clear()
            self.cached[headers] = fields
        return fields


class ParsedResponse:
    """One complete response. Header names are lower case; repeated headers are joined with ``", "``."""

    __slots__ = ("body", "headers", "keep_alive", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes, keep_alive: bool) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        # Whether the connection may carry the next request.
        self.keep_alive = keep_alive


class Wire:
    """One connection's HTTP/1.1: the head of each request out, then its response in (one at a time).

    Call :meth:`request_head` for each request, send the head and the body, then
    :meth:`feed` every chunk received until it returns the response; ``b""`` says
    the connection ended (a body that runs to the close is then complete).
    """

    __slots__ = ("_body", "_connection", "_headers", "_received", "_status")

    def __init__(self) -> None:
        self._connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._received = False  # any byte of this response yet

    def request_head(self, request: Request, target: bytes, host: bytes, fields: Fields) -> bytes:
        """The head to send before ``request.body``: request line, ``Host``, ``Content-Length``, ``fields``.

        Args:
            request: the request (its method and body).
            target: its request target (path and query).
            host: the Host header's value.
            fields: its headers, from :meth:`CheckedHeaders.fields`.
        """
        connection = self._connection
        body = request.body
        method = request.method.encode("ascii")
        framing = [(b"Host", host)]
        if body or method in (b"POST", b"PUT", b"PATCH"):
            framing.append((b"Content-Length", b"%d" % len(body)))
        head = connection.send(h11.Request(method=method, target=target, headers=framing + fields))
        if body:
            connection.send_with_data_passthrough(h11.Data(data=body))  # moves h11's state; the bytes go as they are
        connection.send(h11.EndOfMessage())
        self._status, self._headers, self._body, self._received = 0, {}, bytearray(), False
        return head or b""

    def feed(self, data: bytes) -> ParsedResponse | None:
        """Take received bytes (``b""``: the connection ended); the response once it is complete.

        Raises:
            ProtocolError: the response is malformed, over a bound, or cut short.
        """
        connection = self._connection
        self._received = self._received or bool(data)
        try:
            connection.receive_data(data)
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    return None
                if type(event) is h11.Data:
                    self._body += event.data
                    if len(self._body) > MAX_BODY_BYTES:
                        raise ProtocolError(BODY_TOO_LARGE)
                elif type(event) is h11.Response:
                    self._take_head(event)
                elif type(event) is h11.EndOfMessage:
                    return self._finish()
                elif type(event) is not h11.InformationalResponse:  # ConnectionClosed
                    raise ProtocolError(CLOSED_MID_RESPONSE if self._received else CLOSED_BEFORE_RESPONSE)
        except h11.RemoteProtocolError as exc:
            raise ProtocolError(self._words(exc, ended=not data)) from None

    def _take_head(self, event: h11.Response) -> None:
        items = event.headers.raw_items()  # a list: iterating h11's Headers goes item by item through __getitem__
        # h11 bounds only a head still incomplete: one that arrived whole in a single read is measured here.
        if head_size(event.reason, items) > MAX_HEAD_BYTES:
            raise ProtocolError(HEAD_TOO_LONG)
        headers: dict[str, str] = {}
        for name, value in items:
            key, text = name.decode("ascii").lower(), value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:  # h11 has checked it is one number
            raise ProtocolError(BODY_TOO_LARGE)
        self._status, self._headers = event.status_code, headers

    def _finish(self) -> ParsedResponse:
        connection, headers = self._connection, self._headers
        keep_alive = (
            connection.our_state is h11.DONE
            and connection.their_state is h11.DONE
            # Not closed by the server, and nothing after the response (the worker never pipelines).
            and connection.trailing_data == (b"", False)
            # With both, the message was framed by someone who disagrees with itself (RFC 9112 6.3).
            and not ("transfer-encoding" in headers and "content-length" in headers)
        )
        if keep_alive:
            connection.start_next_cycle()
        body = decoded_body(bytes(self._body), headers.get("content-encoding", ""))
        return ParsedResponse(self._status, headers, body, keep_alive)

    def _words(self, exc: h11.RemoteProtocolError, *, ended: bool) -> str:
        if ended:  # whatever h11 says of it, the connection ended before the response did
            return CLOSED_MID_RESPONSE if self._received else CLOSED_BEFORE_RESPONSE
        text = str(exc)
        if text.startswith("Receive buffer too long"):
            return HEAD_TOO_LONG
        return f"invalid response: {text}"


def head_size(reason: bytes, headers: Iterable[tuple[bytes, bytes]]) -> int:
    """The bytes of a response head as sent: ``HTTP/1.1 200 reason`` CRLF, and each ``name: value`` CRLF."""
    return 15 + len(reason) + sum(len(name) + len(value) + 4 for name, value in headers)


def _tokens(value: str) -> list[str]:
    return [token.strip().lower() for token in value.split(",") if token.strip()]


def decoded_body(body: bytes, content_encoding: str) -> bytes:
    """``body`` decoded as httpx would (gzip, deflate); an unknown coding is left as sent.

    Requests send no Accept-Encoding, so a coded reply is a server's own choice; it is bounded
    like a plain one.

    Raises:
        ProtocolError: the body does not decode, or decodes to more than MAX_BODY_BYTES.
    """
    codings = _tokens(content_encoding)
    for coding in reversed(codings):
        if coding in ("gzip", "x-gzip"):
            wbits = zlib.MAX_WBITS | 16
        elif coding == "deflate":
            wbits = zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS  # zlib-wrapped or raw
        elif coding == "identity":
            continue
        else:
            return body
        inflater = zlib.decompressobj(wbits)
        try:
            body = inflater.decompress(body, MAX_BODY_BYTES)
        except zlib.error:
            raise ProtocolError(f"invalid {coding} response body") from None
        if inflater.unconsumed_tail:
            raise ProtocolError(BODY_TOO_LARGE)
    return body
