"""Helpers shared by the engine's tests (no tests here).

``Driver`` holds one Engine and the time, drains its outputs after every input,
and keeps what it saw: every request, which are still unanswered, and which
messages were delivered or failed. It refuses (AssertionError) to see a message
settled twice, so every test checks that invariant for free.
"""

from __future__ import annotations

import gzip
import random
from typing import Any

import msgspec

from segment_core import (
    DeliveryError,
    Engine,
    EngineConfig,
    Enqueued,
    MessagesDelivered,
    MessagesFailed,
    MessagesKept,
    Request,
    Response,
    Retrying,
    TransportFailure,
    TransportFailureKind,
    WaitSettled,
)
from segment_core._authorization import Authorizer

__all__ = [
    "WALL0",
    "WRITE_KEY",
    "Driver",
    "FakeOAuth",
    "FixedRandom",
    "batch_of",
    "envelope_bytes",
    "header",
    "message",
]

WRITE_KEY = "wk_test"
# The wall clock at monotonic 0: 2023-11-14T22:13:20Z.
WALL0 = 1_700_000_000.0


def message(index: int, size: int | None = None) -> bytes:
    """An encoded message with a unique messageId, padded to exactly ``size`` bytes if given."""
    data: bytes = msgspec.json.encode({"messageId": f"m{index}", "pad": ""})
    if size is None:
        return data
    if size < len(data):
        raise ValueError(f"a message is at least {len(data)} bytes")
    padded: bytes = msgspec.json.encode({"messageId": f"m{index}", "pad": "x" * (size - len(data))})
    assert len(padded) == size
    return padded


def envelope_bytes(write_key: str = WRITE_KEY) -> int:
    """Bytes of a request body with an empty batch, computed from the documented shape."""
    sample = msgspec.json.encode({"batch": [], "sentAt": "2023-11-14T22:13:20.000+00:00", "writeKey": write_key})
    return len(sample)


def header(request: Request, name: str) -> str | None:
    values = [value for key, value in request.headers if key.lower() == name.lower()]
    assert len(values) <= 1, f"header {name} sent {len(values)} times"
    return values[0] if values else None


def raw_body(request: Request) -> bytes:
    return gzip.decompress(request.body) if header(request, "Content-Encoding") == "gzip" else request.body


def batch_of(request: Request) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.json.decode(raw_body(request))
    return decoded


class FixedRandom:
    """A RandomSource that always answers ``value``: makes jitter exact."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.calls = 0

    def random(self) -> float:
        self.calls += 1
        return self.value

    def getrandbits(self, k: int, /) -> int:
        return 0


class FakeOAuth:
    """A minimal OAuth authorizer: a bearer token that changes each time it is invalidated."""

    def __init__(self) -> None:
        self.token = 1
        self.invalidations = 0

    def authorization(self, *, now: float) -> str | None:
        return f"Bearer token-{self.token}"

    def poll(self, *, now: float, wall: float) -> None:
        return None

    def receive_response(self, response: Response, *, now: float, wall: float) -> None:
        raise AssertionError("the fake authorizer sends no requests")

    def receive_failure(self, failure: TransportFailure, *, now: float) -> None:
        raise AssertionError("the fake authorizer sends no requests")

    def invalidate(self, *, now: float) -> None:
        self.invalidations += 1
        self.token += 1

    @property
    def failure(self) -> DeliveryError | None:
        return None

    def next_deadline(self) -> float | None:
        return None

    def reset(self) -> None:
        return None


# Marks a config as using OAuth; the engine only asks whether ``config.oauth`` is set.
OAUTH_ON = object()


class Driver:
    """One engine, its clock, and a record of everything it said."""

    def __init__(
        self,
        *,
        rng: Any = None,
        authorizer: Authorizer | None = None,
        oauth: bool = False,
        **options: Any,
    ) -> None:
        self.config = EngineConfig(write_key=WRITE_KEY, oauth=OAUTH_ON if oauth else None, **options)
        self.engine = Engine(self.config, random=rng if rng is not None else random.Random(0), authorizer=authorizer)
        self.now = 0.0
        self.sent: list[Request] = []
        self.unanswered: dict[int, Request] = {}
        self.data: dict[int, bytes] = {}  # seq -> the bytes enqueued
        self.delivered: dict[int, bytes] = {}
        self.failed: dict[int, DeliveryError] = {}
        self.delivery_order: list[int] = []
        self.kept: dict[int, DeliveryError | None] = {}
        self.retrying: list[Retrying] = []
        self.waits: dict[int, bool] = {}  # waiter -> delivered
        self._next_index = 0

    @property
    def wall(self) -> float:
        return WALL0 + self.now

    def at(self, when: float) -> Driver:
        assert when >= self.now, "time only moves forward"
        self.now = when
        return self

    def enqueue(self, data: bytes) -> Enqueued | DeliveryError:
        result = self.engine.enqueue(data, now=self.now)
        if isinstance(result, Enqueued):
            self.data[self.engine.last_seq] = data
        self.drain()
        return result

    def add(self, count: int = 1, size: int | None = None) -> list[int]:
        """Enqueue ``count`` fresh messages (all must be accepted); returns their sequence numbers."""
        seqs = []
        for _ in range(count):
            result = self.enqueue(message(self._next_index, size))
            self._next_index += 1
            assert isinstance(result, Enqueued), result
            seqs.append(self.engine.last_seq)
        return seqs

    def poll(self, at: float | None = None) -> list[Request]:
        """Poll (at ``at`` if given); returns the requests it started."""
        if at is not None:
            self.at(at)
        self.engine.poll(now=self.now, wall=self.wall)
        return self.drain()

    def flush(self) -> list[Request]:
        self.engine.flush(now=self.now)
        return self.poll()

    def close(self, timeout: float) -> list[Request]:
        self.engine.close(now=self.now, deadline=self.now + timeout)
        return self.poll()

    def respond(
        self,
        request: Request,
        status: int = 200,
        *,
        headers: dict[str, str] | None = None,
        body: bytes = b'{"success":true}',
    ) -> list[Request]:
        self.unanswered.pop(request.id, None)
        response = Response(status=status, headers=headers or {}, body=body)
        self.engine.receive_response(request.id, response, now=self.now, wall=self.wall)
        return self.drain()

    def fail(self, request: Request, kind: TransportFailureKind = TransportFailureKind.CONNECT) -> list[Request]:
        self.unanswered.pop(request.id, None)
        failure = TransportFailure(kind=kind, detail="simulated")
        self.engine.receive_failure(request.id, failure, now=self.now, wall=self.wall)
        return self.drain()

    def drain(self) -> list[Request]:
        requests = []
        for output in self.engine.next_outputs():
            if isinstance(output, Request):
                requests.append(output)
                self.sent.append(output)
                self.unanswered[output.id] = output
                continue
            if isinstance(output, Retrying):
                self.retrying.append(output)
                continue
            if isinstance(output, WaitSettled):
                assert output.waiter not in self.waits, f"wait {output.waiter} settled twice"
                self.waits[output.waiter] = output.delivered
                continue
            seqs = range(output.first_seq, output.first_seq + len(output.messages))
            for seq, data in zip(seqs, output.messages, strict=True):
                assert seq not in self.delivered, f"message {seq} settled twice"
                assert seq not in self.failed, f"message {seq} settled twice"
                assert seq not in self.kept, f"message {seq} settled twice"
                assert self.data[seq] == data, f"message {seq} reported with other bytes"
                if isinstance(output, MessagesDelivered):
                    self.delivered[seq] = data
                    self.delivery_order.append(seq)
                elif isinstance(output, MessagesKept):
                    self.kept[seq] = output.last_error
                else:
                    assert isinstance(output, MessagesFailed)
                    self.failed[seq] = output.error
        return requests

    def run_until_settled(self, status: int = 200) -> None:
        """Answer every request with ``status`` (polling at each deadline) until nothing is pending."""
        for _ in range(10_000):
            for request in list(self.unanswered.values()):
                self.respond(request, status)
            if not self.engine.pending:
                return
            deadline = self.engine.next_deadline()
            assert deadline is not None, "pending messages but no deadline"
            self.poll(max(self.now, deadline))
        raise AssertionError("did not settle")
