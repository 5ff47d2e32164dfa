"""HTTP/1.1 on one connection, sans-IO: each request's head out, its response in, within bounds.

A :class:`Wire` writes the head of a request (the body goes to the socket as it
is, never copied into the head) and is fed the bytes received until it returns
the :class:`ParsedResponse`. Nothing here touches a socket (``streams.py``
does); ``connections.py`` runs the exchange.

The parser follows RFC 9112 for what a client must handle: interim 1xx
responses are skipped; 204, 304 and replies to HEAD have no body;
``Transfer-Encoding: chunked`` (trailers read and dropped) wins over
``Content-Length``; otherwise the body runs to the close of the connection.
It is strict where leniency would hide a broken server (obsolete line
folding, conflicting lengths, a non-chunked transfer coding), bounds
everything it buffers (a head of at most :data:`MAX_HEAD_BYTES`, a body of at
most :data:`MAX_BODY_BYTES`, gzip and deflate decoded within the same bound),
and is linear in the bytes it is fed however they are split (each search
resumes where the last one stopped). A connection is reused only if the
response says so, nothing followed it, and its framing did not disagree with
itself. Header sets are checked once per destination (:class:`CheckedHeaders`)
and refused with an error that names the header, never its value (an
Authorization value is a secret). tests/test_wire.py checks it against h11 on
generated responses.

Why not h11: benchmarks/wire_vs_h11.py measured h11 in its place at 0.6-1.1 µs
of worker CPU per event at 100 events a batch, and 440k instructions per
exchange against 135k here. That sits at the 1 µs the project set as the price
of keeping its own HTTP/1.1 code; under asyncio and trio the exchange runs on
the caller's thread, and with h11 the caller-cost target (1/8 of
segment-analytics-python's) was missed (benchmarks/README.md). So this stays.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from typing import Final

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

# h11's default limit for an incomplete head; a reply head is a few hundred bytes.
MAX_HEAD_BYTES: Final = 64 * 1024
# A reply body is a short JSON document (an error, a token); this bounds a broken server's.
MAX_BODY_BYTES: Final = 4 * 1024 * 1024
HEAD_TOO_LONG: Final = f"response head too long (over {MAX_HEAD_BYTES // 1024} KiB)"
BODY_TOO_LARGE: Final = f"response body too large (over {MAX_BODY_BYTES // 1024 // 1024} MiB)"
CLOSED_BEFORE_RESPONSE: Final = "server closed the connection without sending a response"
CLOSED_MID_RESPONSE: Final = "server closed the connection mid-response"

_FORBIDDEN_IN_VALUE: Final = re.compile(rb"[\x00\r\n]")
_TOKEN: Final = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_STATUS_LINE: Final = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?")
# Lines end in CRLF or a bare LF. Patterns start at the LF, a literal, so a search skips ahead to it.
_HEAD_END: Final = re.compile(rb"\n\r?\n")
_CHUNK_SIZE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")

Headers = tuple[tuple[str, str], ...]
Fields = list[tuple[bytes, bytes]]


class HeaderValueError(ValueError):
    """A header name or value that cannot be sent (it would split the head). Never quotes the value."""


class ProtocolError(Exception):
    """The server sent something that is not a valid HTTP/1.1 response, or one over a bound."""


def checked_fields(headers: Iterable[tuple[str, str]]) -> Fields:
    """``headers`` encoded, each checked first.

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

    __slots__ = ("_parser",)

    def __init__(self) -> None:
        self._parser = _ResponseParser(head_request=False)

    def request_head(self, request: Request, target: bytes, host: bytes, fields: Fields) -> bytes:
        """The head to send before ``request.body``: request line, ``Host``, ``Content-Length``, ``fields``.

        Args:
            request: the request (its method and body).
            target: its request target (path and query).
            host: the Host header's value.
            fields: its headers, from :meth:`CheckedHeaders.fields`.
        """
        method = request.method
        self._parser = _ResponseParser(head_request=method == "HEAD")
        body_length = len(request.body)
        length = b"Content-Length: %d\r\n" % body_length if body_length or method in ("POST", "PUT", "PATCH") else b""
        lines = b"".join([b"%s: %s\r\n" % field for field in fields])
        return b"%s %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n" % (method.encode("ascii"), target, host, length, lines)

    def feed(self, data: bytes) -> ParsedResponse | None:
        """Take received bytes (``b""``: the connection ended); the response once it is complete.

        Raises:
            ProtocolError: the response is malformed, over a bound, or cut short.
        """
        return self._parser.feed(data) if data else self._parser.feed_eof()


class _ResponseParser:
    """Parses the response to one request from the bytes fed to it.

    Feed every chunk received with :meth:`feed` until it returns a
    :class:`ParsedResponse`; if the connection ends first, call
    :meth:`feed_eof`, which returns the response when its body runs to the
    close, and raises otherwise. Bytes after the response cost the connection
    its reuse: the worker never pipelines.

    Args:
        head_request: the request was a HEAD (its response has no body).

    Raises:
        ProtocolError: from either method, for a response that is malformed, too large or cut short.
    """

    __slots__ = (
        "_body",
        "_buffer",
        "_chunk_state",
        "_framing",
        "_head_request",
        "_headers",
        "_keep_alive",
        "_remaining",
        "_searched",
        "_status",
    )

    def __init__(self, *, head_request: bool) -> None:
        self._head_request = head_request
        self._buffer = bytearray()
        # Where the next search for a line end starts: bytes before it were searched already, so
        # bytes trickled in one at a time are each searched once (linear however they are split).
        self._searched = 0
        self._status = 0
        self._headers: dict[str, str] = {}
        self._keep_alive = False
        # Body framing once the head is parsed: "length", "chunked" or "close"; "" while reading the head.
        self._framing = ""
        self._remaining = 0  # length: body bytes still due
        self._body = bytearray()
        self._chunk_state = "size"  # chunked: "size", "data", "data-end" or "trailers"

    def feed(self, data: bytes) -> ParsedResponse | None:
        """Take received bytes; the response once it is complete, else None."""
        self._buffer += data
        if not self._framing:
            while not self._framing:  # interim (1xx) responses come before the final one
                if not self._parse_head():
                    return None
        if self._framing == "length":
            return self._take_length()
        if self._framing == "chunked":
            return self._take_chunks()
        self._take_until_close()
        return None

    def feed_eof(self) -> ParsedResponse:
        """The connection ended: the response, if its body runs to the close."""
        if self._framing == "close":
            return self._finish(keep_alive=False)
        if not self._framing and not self._buffer:
            raise ProtocolError(CLOSED_BEFORE_RESPONSE)
        raise ProtocolError(CLOSED_MID_RESPONSE)

    # --- head ----------------------------------------------------------------------------------

    def _parse_head(self) -> bool:
        end = _HEAD_END.search(self._buffer, self._searched)
        if end is None:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise ProtocolError(HEAD_TOO_LONG)
            # The end is up to 3 bytes long ("\n\r\n"): it may start in the last 2 bytes searched.
            self._searched = max(len(self._buffer) - 2, 0)
            return False
        if end.start() > MAX_HEAD_BYTES:
            raise ProtocolError(HEAD_TOO_LONG)
        head = bytes(self._buffer[: end.start()])
        del self._buffer[: end.end()]
        self._searched = 0
        status_line, *lines = [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]
        match = _STATUS_LINE.fullmatch(status_line)
        if match is None:
            raise ProtocolError("malformed status line")
        http_11, status = match.group(1) == b"1", int(match.group(2))
        headers: dict[str, str] = {}
        for line in lines:
            name, colon, value = line.partition(b":")
            if not colon or _TOKEN.fullmatch(name) is None:  # also refuses obsolete folding (a leading space)
                raise ProtocolError("malformed header line")
            key = name.decode("ascii").lower()
            text = value.strip(b" \t").decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        if status < 200:
            if status == 101:
                raise ProtocolError("unexpected protocol switch")
            return True  # an interim response: the final one follows; _framing stays ""
        self._status, self._headers = status, headers
        self._keep_alive = http_11 and "close" not in _tokens(headers.get("connection", ""))
        self._framing = self._body_framing(status, headers)
        return True

    def _body_framing(self, status: int, headers: dict[str, str]) -> str:
        if self._head_request or status in (204, 304):
            self._remaining = 0
            return "length"
        if "transfer-encoding" in headers:
            if _tokens(headers["transfer-encoding"])[-1:] != ["chunked"]:
                raise ProtocolError("unsupported Transfer-Encoding")
            # With a Content-Length too, the message was framed by someone who disagrees with
            # itself: read it as chunked (RFC 9112 6.3), then do not trust the connection again.
            self._keep_alive = self._keep_alive and "content-length" not in headers
            return "chunked"
        if "content-length" in headers:
            lengths = {value.strip() for value in headers["content-length"].split(",")}
            if len(lengths) != 1 or not (length := lengths.pop()).isdigit() or not length.isascii():
                raise ProtocolError("invalid Content-Length")
            self._remaining = int(length)
            if self._remaining > MAX_BODY_BYTES:
                raise ProtocolError(BODY_TOO_LARGE)
            return "length"
        self._keep_alive = False
        return "close"

    # --- body ----------------------------------------------------------------------------------

    def _take_length(self) -> ParsedResponse | None:
        if len(self._buffer) < self._remaining:
            return None
        # Bytes after the response (the worker never pipelines): the response stands, the connection goes.
        keep_alive = self._keep_alive and len(self._buffer) == self._remaining
        self._body, self._buffer = self._buffer[: self._remaining], bytearray()
        return self._finish(keep_alive=keep_alive)

    def _take_until_close(self) -> None:
        self._body += self._buffer
        self._buffer.clear()
        if len(self._body) > MAX_BODY_BYTES:
            raise ProtocolError(BODY_TOO_LARGE)

    def _take_chunks(self) -> ParsedResponse | None:
        buffer = self._buffer
        while True:
            if self._chunk_state == "data":
                taken = min(self._remaining, len(buffer))
                self._body += buffer[:taken]
                del buffer[:taken]
                self._remaining -= taken
                if self._remaining:
                    return None
                self._chunk_state = "data-end"
                continue
            line_end = buffer.find(b"\n", self._searched)
            if line_end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise ProtocolError("chunk header too long")
                self._searched = len(buffer)
                return None
            line = bytes(buffer[: line_end - 1 if buffer[line_end - 1 : line_end] == b"\r" else line_end])
            del buffer[: line_end + 1]
            self._searched = 0
            if self._chunk_state == "data-end":
                if line:
                    raise ProtocolError("chunk data longer than its size")
                self._chunk_state = "size"
            elif self._chunk_state == "size":
                match = _CHUNK_SIZE.fullmatch(line)
                if match is None:
                    raise ProtocolError("malformed chunk size")
                self._remaining = int(match.group(1), 16)
                if len(self._body) + self._remaining > MAX_BODY_BYTES:
                    raise ProtocolError(BODY_TOO_LARGE)
                self._chunk_state = "data" if self._remaining else "trailers"
            elif line:  # a trailer field: read past, as nothing here uses one
                if b":" not in line:
                    raise ProtocolError("malformed trailer line")
            else:
                return self._finish(keep_alive=self._keep_alive and not buffer)

    def _finish(self, *, keep_alive: bool) -> ParsedResponse:
        body = decoded_body(bytes(self._body), self._headers.get("content-encoding", ""))
        return ParsedResponse(self._status, self._headers, body, keep_alive)


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
