"""h11 behind the client's wire interface, for the benchmark only.

The client writes requests and parses responses with its own code
(``segment_runtimes._transport.wire``); this is the h11 version it used for a
while, kept as the other side of ``benchmarks/wire_vs_h11.py``. Only the
connection's ``Wire`` differs: header checking, bounds, errors, the parsed
response and body decoding are the client's.
"""

from __future__ import annotations

from collections.abc import Iterable

import h11

from segment_core import Request
from segment_runtimes._transport.wire import (
    BODY_TOO_LARGE,
    CLOSED_BEFORE_RESPONSE,
    CLOSED_MID_RESPONSE,
    HEAD_TOO_LONG,
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    Fields,
    ParsedResponse,
    ProtocolError,
    decoded_body,
)

__all__ = ["Wire", "head_size"]


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
