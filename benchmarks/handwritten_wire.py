"""The hand-written HTTP/1.1 request writer and response parser the client used before h11, for the benchmark.

Kept only as the baseline of ``benchmarks/wire_vs_h11.py``: ``CheckedHeaders``
and ``Wire`` have the interface of ``segment_runtimes._transport.wire``'s, so
the same exchange runs with each. The parser follows RFC 9112 for what a client
must handle (interim 1xx skipped; no body for 204, 304 and HEAD; chunked wins
over Content-Length; otherwise the body runs to the close), holds the same
bounds, and resumes each search where the last one stopped, so its work is
linear in the bytes however they are split.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from segment_core import Request
from segment_runtimes._transport.wire import (
    BODY_TOO_LARGE,
    CLOSED_BEFORE_RESPONSE,
    CLOSED_MID_RESPONSE,
    HEAD_TOO_LONG,
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    HeaderValueError,
    ParsedResponse,
    ProtocolError,
    decoded_body,
)

__all__ = ["CheckedHeaders", "ResponseParser", "Wire", "header_lines", "request_head"]

_FORBIDDEN_IN_VALUE: Final = re.compile(rb"[\x00\r\n]")
_TOKEN: Final = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_STATUS_LINE: Final = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?")
# Lines end in CRLF or a bare LF (as h11 reads them). Patterns start at the LF, a literal, so a
# search skips ahead to it instead of trying the pattern at every byte.
_HEAD_END: Final = re.compile(rb"\n\r?\n")
_CHUNK_SIZE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")


def header_lines(headers: Iterable[tuple[str, str]]) -> bytes:
    """``name: value`` CRLF for each header, checked: the part of a head a runtime can reuse.

    Raises:
        HeaderValueError: a name is not a token, or a value is not ASCII or holds CR, LF or NUL.
    """
    lines = []
    for name, value in headers:
        try:
            raw_name, raw_value = name.encode("ascii"), value.encode("ascii")
        except UnicodeEncodeError:
            raise HeaderValueError(f"request header {name!r} is not ASCII") from None
        if _TOKEN.fullmatch(raw_name) is None or _FORBIDDEN_IN_VALUE.search(raw_value) is not None:
            raise HeaderValueError(f"illegal value in request header {name!r}")  # the name only: values are secret
        lines.append(b"%s: %s\r\n" % (raw_name, raw_value))
    return b"".join(lines)


def request_head_with_lines(method: str, target: bytes, host: bytes, lines: bytes, body_length: int) -> bytes:
    """The request line, ``Host``, ``Content-Length``, then ``lines`` from :func:`header_lines`, and the blank line."""
    length = b"Content-Length: %d\r\n" % body_length if body_length or method in ("POST", "PUT", "PATCH") else b""
    return b"%s %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n" % (method.encode("ascii"), target, host, length, lines)


def request_head(
    method: str, target: bytes, host: bytes, headers: Iterable[tuple[str, str]], body_length: int
) -> bytes:
    """The request line and headers, ending with the blank line: ``Host``, ``Content-Length``, then ``headers``.

    Raises:
        HeaderValueError: a name is not a token, or a value is not ASCII or holds CR, LF or NUL.
    """
    return request_head_with_lines(method, target, host, header_lines(headers), body_length)


Headers = tuple[tuple[str, str], ...]


class CheckedHeaders:
    """The header sets of one destination's requests, each checked once and kept as its encoded lines."""

    # A client sends a handful of header sets (Basic auth, or an OAuth token now and then; with
    # and without X-Retry-Count): past this many, the cache starts again.
    MAX_HEADER_SETS: Final = 16

    def __init__(self) -> None:
        # Checking and encoding the same few headers for every batch was a fifth of an exchange's Python.
        self.cached: dict[Headers, bytes] = {}

    def lines(self, headers: Headers) -> bytes:
        """``headers`` as :func:`header_lines` encodes them.

        Raises:
            HeaderValueError: a name is not a token, or a value is not ASCII or holds CR, LF or NUL.
        """
        lines = self.cached.get(headers)
        if lines is None:
            lines = header_lines(headers)
            if len(self.cached) >= self.MAX_HEADER_SETS:
                self.cached.clear()
            self.cached[headers] = lines
        return lines


class Wire:
    """One connection's HTTP/1.1: the head of each request out, then its response in (one at a time)."""

    __slots__ = ("_parser",)

    def __init__(self) -> None:
        self._parser = ResponseParser()

    def request_head(self, request: Request, target: bytes, host: bytes, lines: bytes) -> bytes:
        """The head to send before ``request.body``; the next :meth:`feed` reads its response.

        Args:
            request: the request.
            target: its request target (path and query).
            host: the Host header's value.
            lines: its headers, from :meth:`CheckedHeaders.lines`.
        """
        self._parser = ResponseParser(head_request=request.method == "HEAD")
        return request_head_with_lines(request.method, target, host, lines, len(request.body))

    def feed(self, data: bytes) -> ParsedResponse | None:
        """Take received bytes (``b""``: the connection ended); the response once it is complete.

        Raises:
            ProtocolError: the response is malformed, too large or cut short.
        """
        return self._parser.feed(data) if data else self._parser.feed_eof()


class ResponseParser:
    """Parses the response to one request from the bytes fed to it.

    Feed every chunk received with :meth:`feed` until it returns a
    :class:`ParsedResponse`; if the connection ends first, call
    :meth:`feed_eof`, which returns the response when its body runs to the
    close, and raises otherwise. Bytes after the response are an error: the
    worker never pipelines.

    Args:
        head_request: the request was a HEAD (its response has no body).

    Raises:
        ProtocolError: from either method, for a response that is malformed, too large or cut short.
    """

    def __init__(self, *, head_request: bool = False) -> None:
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
        if len(self._buffer) > self._remaining:
            raise ProtocolError("data after the end of the response")
        self._body, self._buffer = self._buffer, bytearray()
        return self._finish(keep_alive=self._keep_alive)

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
                if buffer:
                    raise ProtocolError("data after the end of the response")
                return self._finish(keep_alive=self._keep_alive)

    def _finish(self, *, keep_alive: bool) -> ParsedResponse:
        body = decoded_body(bytes(self._body), self._headers.get("content-encoding", ""))
        return ParsedResponse(self._status, self._headers, body, keep_alive)


def _tokens(value: str) -> list[str]:
    return [token.strip().lower() for token in value.split(",") if token.strip()]
