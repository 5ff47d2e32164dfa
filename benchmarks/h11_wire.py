"""HTTP/1.1 for one connection with h11: the candidate to replace the hand-written writer and parser.

Same interface and the same bounds as ``segment_runtimes._transport.wire``'s
``CheckedHeaders`` and ``Wire``, so that ``benchmarks/wire_vs_h11.py`` can run
the same exchange with each.
"""

from __future__ import annotations

from typing import Final

import h11

from segment_core import Request
from segment_runtimes._transport.wire import (
    BODY_TOO_LARGE,
    CLOSED_BEFORE_RESPONSE,
    CLOSED_MID_RESPONSE,
    HEAD_TOO_LONG,
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    ParsedResponse,
    ProtocolError,
    decoded_body,
    header_lines,
)

__all__ = ["H11CheckedHeaders", "H11Wire"]

Headers = tuple[tuple[str, str], ...]
Fields = list[tuple[bytes, bytes]]


class H11CheckedHeaders:
    """Header sets checked once (h11 would quote a bad value in its error) and kept as h11's fields."""

    MAX_HEADER_SETS: Final = 16

    def __init__(self) -> None:
        self.cached: dict[Headers, Fields] = {}

    def fields(self, headers: Headers) -> Fields:
        """``headers`` checked and encoded, cached; HeaderValueError for one that cannot be sent."""
        fields = self.cached.get(headers)
        if fields is None:
            header_lines(headers)  # the check
            fields = [(name.encode("ascii"), value.encode("ascii")) for name, value in headers]
            if len(self.cached) >= self.MAX_HEADER_SETS:
                self.cached.clear()
            self.cached[headers] = fields
        return fields


class H11Wire:
    """One connection's HTTP/1.1 state in h11."""

    __slots__ = ("_body", "_connection", "_headers", "_received", "_status")

    def __init__(self) -> None:
        self._connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._received = False

    def request_head(self, request: Request, target: bytes, host: bytes, fields: Fields) -> bytes:
        """The head to send before ``request.body``; the next :meth:`feed` reads its response."""
        connection = self._connection
        body = request.body
        method = request.method.encode("ascii")
        framing = [(b"Host", host)]
        if body or method in (b"POST", b"PUT", b"PATCH"):
            framing.append((b"Content-Length", b"%d" % len(body)))
        head = connection.send(h11.Request(method=method, target=target, headers=framing + fields))
        if body:
            connection.send_with_data_passthrough(h11.Data(data=body))  # the body is sent as it is
        connection.send(h11.EndOfMessage())
        self._status, self._headers, self._body, self._received = 0, {}, bytearray(), False
        return head or b""

    def feed(self, data: bytes) -> ParsedResponse | None:
        """Take received bytes (``b""``: the connection ended); the response once it is complete."""
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
            raise ProtocolError(self._words(exc)) from None

    def _take_head(self, event: h11.Response) -> None:
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key, text = name.decode("ascii"), value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise ProtocolError(BODY_TOO_LARGE)
        self._status, self._headers = event.status_code, headers

    def _finish(self) -> ParsedResponse:
        connection, headers = self._connection, self._headers
        # Reusable when h11 says so, nothing came after the response, and its framing agreed with itself.
        keep_alive = (
            connection.our_state is h11.DONE
            and connection.their_state is h11.DONE
            and not connection.trailing_data[0]
            and not ("transfer-encoding" in headers and "content-length" in headers)
        )
        if keep_alive:
            connection.start_next_cycle()
        body = decoded_body(bytes(self._body), headers.get("content-encoding", ""))
        return ParsedResponse(self._status, headers, body, keep_alive)

    def _words(self, exc: h11.RemoteProtocolError) -> str:
        text = str(exc)
        if text.startswith("Receive buffer too long"):
            return HEAD_TOO_LONG
        if "peer closed connection" in text or "peer unexpectedly closed" in text:
            return CLOSED_MID_RESPONSE if self._received else CLOSED_BEFORE_RESPONSE
        return f"invalid response: {text}"
