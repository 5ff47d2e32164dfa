"""A deterministic simulator for the engine: test delivery without sockets or sleeps.

Three pieces:

- :class:`VirtualClock`: monotonic and wall-clock time that only moves when told.
- :class:`ScriptedServer`: answers each request with the next step of a script:
  a :class:`Reply` (status, headers such as Retry-After, body, delay) or a
  :class:`Drop` (no reply: connect error, timeout or reset, optionally after the
  server processed the batch, which is how duplicates happen).
- :class:`Simulator`: runs an engine against the server on the clock until
  nothing is left to do, and returns a :class:`Trace` of what happened and when.

Everything random comes from one seeded ``random.Random``, so the same seed
gives the same trace. Example::

    sim = Simulator(EngineConfig(write_key="k"), ScriptedServer([Reply(status=503), Reply()]), seed=1)
    sim.call("track", user_id="u1", event="Signed Up")
    trace = sim.run()
    assert trace.delivered_count == 1 and trace.requests[1].retry_count == 1
"""

from __future__ import annotations

import gzip
import heapq
import itertools
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec

from ._call_api import CallMethods
from ._config import EngineConfig
from ._engine import Engine, Enqueued
from ._errors import DeliveryError
from ._events import (
    MessagesDelivered,
    MessagesFailed,
    MessagesKept,
    Request,
    RequestPurpose,
    Response,
    TransportFailure,
    TransportFailureKind,
    WaitSettled,
)
from ._message_builder import BuiltMessage, build_message, message_id_from_bits
from ._plugins import PluginFailure

__all__ = [
    "DEFAULT_WALL_START",
    "Drop",
    "SimulatedClient",
    "ReceivedBatch",
    "Reply",
    "RequestRecord",
    "ScriptedServer",
    "Simulator",
    "Step",
    "Trace",
    "TraceEvent",
    "VirtualClock",
    "rate_limited",
]

# 2023-11-14T22:13:20Z: a fixed, unremarkable wall-clock start so traces replay exactly.
DEFAULT_WALL_START = 1_700_000_000.0


class VirtualClock:
    """Monotonic and wall-clock time that move together, only when advanced, in a fixed time zone.

    Args:
        monotonic: the monotonic time to start at.
        wall: the wall-clock time to start at, seconds since the epoch.
        utc_offset: the simulated host's UTC offset, seconds east (UTC by default), fixed: it
            says how naive ``timestamp`` arguments are read, whatever the real host's zone is.
    """

    def __init__(self, *, monotonic: float = 0.0, wall: float = DEFAULT_WALL_START, utc_offset: float = 0.0) -> None:
        self._start_monotonic = monotonic
        self._start_wall = wall
        self.utc_offset = utc_offset
        self.now = monotonic

    def local_utc_offset(self, wall: float) -> float:
        """The simulated host's UTC offset at ``wall``: always ``utc_offset``."""
        return self.utc_offset

    @property
    def wall(self) -> float:
        """Seconds since the epoch, advancing with ``now``."""
        return self._start_wall + (self.now - self._start_monotonic)

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``.

        Raises:
            ValueError: ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.now += seconds

    def advance_to(self, when: float) -> None:
        """Move the monotonic clock to ``when`` (and the wall clock with it), if that is later."""
        self.now = max(self.now, when)


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """Answer with this HTTP response after ``delay`` seconds."""

    status: int = 200
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: bytes = b'{"success":true}'
    delay: float = 0.0


class Drop(msgspec.Struct, frozen=True, kw_only=True):
    """Answer with no response: the request fails with ``kind`` after ``delay`` seconds.

    ``processed=True`` means the server stored the batch before the reply was
    lost, so the client's retry will deliver duplicates.
    """

    kind: TransportFailureKind = TransportFailureKind.RESET
    delay: float = 0.0
    processed: bool = False


Step = Reply | Drop


def rate_limited(retry_after: float | str, *, status: int = 429) -> Reply:
    """A Reply that asks the client to wait: ``Retry-After`` as seconds or an HTTP-date."""
    value = retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
    return Reply(status=status, headers={"retry-after": value}, body=b'{"code":"rate_limited","message":"slow down"}')


class ReceivedBatch(msgspec.Struct, frozen=True, kw_only=True):
    """A batch the scripted server processed (stored)."""

    time: float
    request_id: int
    retry_count: int
    messages: list[dict[str, Any]]


Responder = Callable[[Request, int], Step]

_OK = Reply()
_TOKEN_OK = Reply(body=b'{"access_token":"simulated-token","token_type":"Bearer","expires_in":3600}')


class ScriptedServer:
    """Answers requests from scripts: one for batches, one for OAuth token requests.

    A script is an iterable of steps, used in order, then ``then`` forever; or a
    function ``(request, index) -> Step`` for anything more dynamic.
    """

    def __init__(
        self,
        script: Iterable[Step] | Responder = (),
        *,
        then: Step = _OK,
        token_script: Iterable[Step] | Responder = (),
        token_then: Step = _TOKEN_OK,
    ) -> None:
        self._batch = _Script(script, then)
        self._token = _Script(token_script, token_then)
        self.received: list[ReceivedBatch] = []

    def answer(self, request: Request, *, now: float) -> Step:
        """The step for this request; records the batch if the step processes it."""
        script = self._token if request.purpose is RequestPurpose.TOKEN else self._batch
        step = script.next(request)
        processed = (isinstance(step, Reply) and 200 <= step.status < 300) or (
            isinstance(step, Drop) and step.processed
        )
        if request.purpose is RequestPurpose.BATCH and processed:
            self.received.append(
                ReceivedBatch(
                    time=now + step.delay,
                    request_id=request.id,
                    retry_count=request.retry_count,
                    messages=_decode_batch(request),
                )
            )
        return step

    def received_message_ids(self) -> list[str]:
        """Every messageId the server stored, duplicates included, in arrival order."""
        return [str(message["messageId"]) for batch in self.received for message in batch.messages]


class _Script:
    def __init__(self, script: Iterable[Step] | Responder, then: Step) -> None:
        self._responder = script if callable(script) else None
        self._steps: Iterator[Step] = iter(()) if callable(script) else iter(script)
        self._then = then
        self._index = 0

    def next(self, request: Request) -> Step:
        index = self._index
        self._index += 1
        if self._responder is not None:
            return self._responder(request, index)
        return next(self._steps, self._then)


class _Envelope(msgspec.Struct):
    batch: list[dict[str, Any]]


_envelope_decoder = msgspec.json.Decoder(_Envelope)


def _decode_batch(request: Request) -> list[dict[str, Any]]:
    body = request.body
    if any(name.lower() == "content-encoding" and value == "gzip" for name, value in request.headers):
        body = gzip.decompress(body)
    return _envelope_decoder.decode(body).batch


class RequestRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What was sent (bodies are not kept, so long simulations stay small)."""

    time: float
    id: int
    purpose: RequestPurpose
    message_count: int
    retry_count: int
    body_bytes: int
    headers: tuple[str, ...]  # names only: values may be secrets


class TraceEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One thing that happened: kind is request, response, failure, delivered, failed, kept, retrying or settled."""

    time: float
    kind: str
    request_id: int | None = None
    detail: str = ""


class Trace(msgspec.Struct, kw_only=True):
    """What a simulation did. Equal traces for equal seeds."""

    events: list[TraceEvent] = msgspec.field(default_factory=list)
    requests: list[RequestRecord] = msgspec.field(default_factory=list)
    # sequence number -> time delivered
    delivered: dict[int, float] = msgspec.field(default_factory=dict)
    # sequence number -> the error it failed with
    failed: dict[int, DeliveryError] = msgspec.field(default_factory=dict)
    # sequence numbers, in the order their delivery was reported
    delivery_order: list[int] = msgspec.field(default_factory=list)
    # sequence numbers left to a spool at the close deadline (durable engines only)
    kept: list[int] = msgspec.field(default_factory=list)
    # sequence numbers reported settled more than once (the engine's invariant says: never)
    settled_twice: list[int] = msgspec.field(default_factory=list)
    # waiter token -> whether everything it covered was delivered
    waits: dict[int, bool] = msgspec.field(default_factory=dict)
    # plugins that raised (or returned what is not a message) and were skipped, in order
    plugin_failures: list[PluginFailure] = msgspec.field(default_factory=list)

    @property
    def delivered_count(self) -> int:
        """How many messages were delivered."""
        return len(self.delivered)

    @property
    def failed_count(self) -> int:
        """How many messages failed."""
        return len(self.failed)


class Simulator:
    """Drive an engine against a scripted server on a virtual clock.

    Args:
        config: the engine's settings.
        server: the scripted server (default: always 200).
        seed: seeds the one random source for jitter and message ids.
        clock: the virtual clock (default: a new one at t=0).
    """

    def __init__(
        self,
        config: EngineConfig,
        server: ScriptedServer | None = None,
        *,
        seed: int = 0,
        clock: VirtualClock | None = None,
    ) -> None:
        self.clock = clock or VirtualClock()
        self.random = random.Random(seed)
        self.engine = Engine(config, random=self.random)
        self.server = server or ScriptedServer()
        self.trace = Trace()
        # (time, tiebreak, request id, outcome)
        self._pending: list[tuple[float, int, int, Response | TransportFailure]] = []
        self._tiebreak = itertools.count()
        self._waiters = itertools.count(1)
        self._client: SimulatedClient | None = None
        self.rejected: list[DeliveryError] = []

    # Feeding messages -------------------------------------------------------

    def enqueue(self, data: bytes) -> int | DeliveryError:
        """Enqueue encoded message bytes now; returns the sequence number or the rejection."""
        result = self.engine.enqueue(data, now=self.clock.now)
        if isinstance(result, Enqueued):
            return self.engine.last_seq
        self.rejected.append(result)
        return result

    def call(self, type: str, **fields: Any) -> dict[str, Any]:
        """Build a message as a client call would (``call("track", user_id=..., event=...)``) and enqueue it.

        Returns:
            The message as the call returns it, with the messageId and timestamp the simulation gave it.
        """
        built = build_message(
            type,
            wall=self.clock.wall,
            new_message_id=self.client._new_message_id,
            local_utc_offset=self.clock.local_utc_offset,
            **fields,
        )
        self.enqueue(built.data)
        message: dict[str, Any] = built.message
        return message

    @property
    def client(self) -> SimulatedClient:
        """A client whose calls (track, identify, ...) enqueue into this simulation.

        Same signatures and ``(success, msg)`` returns as the real clients, so
        code under test can be handed this instead of one. It is one client per
        simulation: plugins added to it stay.
        """
        if self._client is None:
            self._client = SimulatedClient(self)
        return self._client

    def delivered_messages(self) -> list[dict[str, Any]]:
        """The messages the scripted server stored, decoded, duplicates included."""
        return [message for batch in self.server.received for message in batch.messages]

    def flush(self) -> None:
        """Make everything queued due now (``run`` then sends it)."""
        self.engine.flush(now=self.clock.now)

    def close(self, timeout: float) -> Trace:
        """Close with a deadline ``timeout`` seconds from now, and run until everything is settled."""
        self.engine.close(now=self.clock.now, deadline=self.clock.now + timeout)
        return self.run()

    # Running ----------------------------------------------------------------

    def run(
        self, *, until: float | None = None, stop: Callable[[], bool] | None = None, max_steps: int = 10_000_000
    ) -> Trace:
        """Advance time and exchange requests until nothing is left to do, ``until``, or ``stop()`` is true.

        With OAuth there is always something left to do (the token is refreshed at
        half its lifetime, forever): give ``until`` or ``stop``.

        Returns:
            The trace so far (the same object across calls).
        """
        engine, clock = self.engine, self.clock
        for _ in range(max_steps):
            engine.poll(now=clock.now, wall=clock.wall)
            self._drain()
            if stop is not None and stop():
                return self.trace
            wake = engine.next_deadline()
            if self._pending and (wake is None or self._pending[0][0] < wake):
                wake = self._pending[0][0]
            if wake is None or (until is not None and wake > until):
                if until is not None:
                    clock.advance_to(until)
                    engine.poll(now=clock.now, wall=clock.wall)
                    self._drain()
                return self.trace
            clock.advance_to(wake)
            while self._pending and self._pending[0][0] <= clock.now:
                _, _, request_id, outcome = heapq.heappop(self._pending)
                if isinstance(outcome, Response):
                    self._event("response", request_id, str(outcome.status))
                    engine.receive_response(request_id, outcome, now=clock.now, wall=clock.wall)
                else:
                    self._event("failure", request_id, outcome.kind.value)
                    engine.receive_failure(request_id, outcome, now=clock.now, wall=clock.wall)
                self._drain()
        raise RuntimeError(f"simulation did not settle within {max_steps} steps")

    def _drain(self) -> None:
        now = self.clock.now
        trace = self.trace
        for output in self.engine.next_outputs():
            if isinstance(output, Request):
                trace.requests.append(
                    RequestRecord(
                        time=now,
                        id=output.id,
                        purpose=output.purpose,
                        message_count=output.message_count,
                        retry_count=output.retry_count,
                        body_bytes=len(output.body),
                        headers=tuple(name for name, _ in output.headers),
                    )
                )
                self._event("request", output.id, f"{output.purpose.value} x{output.message_count}")
                step = self.server.answer(output, now=now)
                outcome: Response | TransportFailure
                if isinstance(step, Reply):
                    outcome = Response(status=step.status, headers=step.headers, body=step.body)
                else:
                    outcome = TransportFailure(kind=step.kind)
                heapq.heappush(self._pending, (now + step.delay, next(self._tiebreak), output.id, outcome))
            elif isinstance(output, MessagesDelivered):
                self._event("delivered", None, f"{output.first_seq}+{len(output.messages)}")
                for seq in range(output.first_seq, output.first_seq + len(output.messages)):
                    if seq in trace.delivered or seq in trace.failed:
                        trace.settled_twice.append(seq)
                    trace.delivered[seq] = now
                    trace.delivery_order.append(seq)
            elif isinstance(output, MessagesFailed):
                self._event("failed", None, f"{output.first_seq}+{len(output.messages)} {type(output.error).__name__}")
                for seq in range(output.first_seq, output.first_seq + len(output.messages)):
                    if seq in trace.delivered or seq in trace.failed:
                        trace.settled_twice.append(seq)
                    trace.failed[seq] = output.error
            elif isinstance(output, MessagesKept):
                self._event("kept", None, f"{output.first_seq}+{len(output.messages)}")
                for seq in range(output.first_seq, output.first_seq + len(output.messages)):
                    if seq in trace.delivered or seq in trace.failed or seq in trace.kept:
                        trace.settled_twice.append(seq)
                    trace.kept.append(seq)
            elif isinstance(output, WaitSettled):
                self._event("settled", None, f"waiter {output.waiter} delivered={output.delivered}")
                trace.waits[output.waiter] = output.delivered
            else:
                self._event("retrying", None, f"{output.first_seq}+{output.count} in {output.delay:.3f}s")

    def _event(self, kind: str, request_id: int | None, detail: str) -> None:
        self.trace.events.append(TraceEvent(time=self.clock.now, kind=kind, request_id=request_id, detail=detail))


class SimulatedClient(CallMethods):
    """identify/track/alias/group/page/screen into a :class:`Simulator`, as a real client would.

    Messages are built with the simulation's clock and seeded ids; ``flush()``
    runs the simulation until everything queued is settled.
    """

    def __init__(self, simulator: Simulator) -> None:
        self._simulator = simulator

    def _wall(self) -> float:
        return self._simulator.clock.wall

    def _dropped(self, message: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        self._simulator.engine.record_dropped()
        return False, message

    def _plugins_failed(self, failures: tuple[PluginFailure, ...]) -> None:
        self._simulator.trace.plugin_failures.extend(failures)

    def _local_utc_offset(self, wall: float) -> float:
        return self._simulator.clock.local_utc_offset(wall)

    def _new_message_id(self) -> str:
        return message_id_from_bits(self._simulator.random.getrandbits(128))

    def _submit(self, built: BuiltMessage) -> tuple[bool, dict[str, Any]]:
        result = self._simulator.enqueue(built.data)
        return not isinstance(result, DeliveryError), built.message

    def flush(self) -> bool:
        """Run the simulation until everything queued so far is settled; True if all of it was delivered."""
        sim = self._simulator
        waiter = next(sim._waiters)
        sim.engine.flush(now=sim.clock.now, waiter=waiter)
        sim.run(stop=lambda: waiter in sim.trace.waits)
        return sim.trace.waits[waiter]
