"""The delivery engine: a pure state machine that decides what to send, when, and
what every outcome means.

The runtime feeds it inputs (``enqueue``, ``flush``, ``close``, ``poll``,
``receive_response``, ``receive_failure``, ``cancel_wait``,
``reset_after_fork``), always with the current time, and drains outputs with
``next_outputs()``: requests to send, messages delivered, failed or kept, batches
being retried, and waits settled. ``next_deadline()`` says when to poll again if
nothing else happens. The engine owns no threads, locks or clocks; a runtime
calling it from several threads serialises access itself.

Every accepted message ends in exactly one ``MessagesDelivered`` or
``MessagesFailed`` (or ``MessagesKept``, with a spool). Messages wait in a FIFO
queue of their encoded bytes (the cheapest form to hold, and exactly what goes
on the wire) until a batch is due; a batch keeps its messages across retries.
Batches are sent in order, and a batch waiting for its retry holds back the
ones behind it, so message order is kept. All state transitions are the two
tables below.

Total over what servers send: a reply is judged once (``_judge``), and any
status, header or body becomes a verdict; nothing a server sends raises.

Waits (a flush, a shutdown, a sync-mode call) are inputs too: ``flush`` and
``close`` take a ``waiter`` token, and the engine emits ``WaitSettled`` for it
once every message accepted before the call is settled, saying whether all
were delivered. A runtime keeps no bookkeeping of its own for them.
"""

from __future__ import annotations

import enum
import sys
from collections import deque
from collections.abc import Callable
from typing import Final

import msgspec

from ._authorization import Authorizer, authorizer_for
from ._batch_requests import BatchRequestBuilder
from ._config import EngineConfig
from ._errors import (
    APIError,
    ClientClosed,
    DeliveryError,
    MessageTooLarge,
    QueueFull,
    RateLimitExceeded,
    RetriesExhausted,
    ShutdownDeadline,
    TransportError,
)
from ._events import (
    MessagesDelivered,
    MessagesFailed,
    MessagesKept,
    Output,
    RandomSource,
    Request,
    RequestPurpose,
    Response,
    Retrying,
    TransportFailure,
    WaitSettled,
)
from ._message_builder import BuiltMessage, build_from_struct, format_timestamp, message_id_from_bits
from ._message_queue import Intake, PyIntake
from ._messages import Message
from ._redaction import Redactor
from ._retry_policy import Verdict, api_error_from_response, backoff_delay, classify_status, parse_retry_after
from .limits import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES

__all__ = ["BatchState", "Engine", "EngineState", "Enqueued", "Stats"]


class Enqueued(enum.Enum):
    """A message was accepted; what the runtime should do about its worker."""

    QUIET = "quiet"
    """The deadline the worker sleeps on still holds."""
    WAKE = "wake"
    """Poll soon: the queue was empty, or a batch is now full."""


class EngineState(enum.Enum):
    """Where the engine's life is."""

    OPEN = "open"
    """Accepting messages and delivering them."""
    CLOSING = "closing"
    """Accepting nothing, delivering what is queued until the deadline."""
    CLOSED = "closed"
    """Done: everything accepted was settled."""


_WAKE = Enqueued.WAKE
_QUIET = Enqueued.QUIET


class _EngineEvent(enum.Enum):
    CLOSE = "close"
    DRAINED = "drained"
    DEADLINE = "deadline"


_ENGINE_TRANSITIONS: Final[dict[tuple[EngineState, _EngineEvent], EngineState]] = {
    (EngineState.OPEN, _EngineEvent.CLOSE): EngineState.CLOSING,
    (EngineState.OPEN, _EngineEvent.DRAINED): EngineState.OPEN,
    (EngineState.CLOSING, _EngineEvent.CLOSE): EngineState.CLOSING,
    (EngineState.CLOSING, _EngineEvent.DRAINED): EngineState.CLOSED,
    (EngineState.CLOSING, _EngineEvent.DEADLINE): EngineState.CLOSED,
    (EngineState.CLOSED, _EngineEvent.CLOSE): EngineState.CLOSED,
    (EngineState.CLOSED, _EngineEvent.DRAINED): EngineState.CLOSED,
}


class BatchState(enum.Enum):
    """Where one batch is."""

    WAITING = "waiting"
    """Formed, to be sent at ``ready_at`` (its first attempt, or a retry)."""
    IN_FLIGHT = "in_flight"
    """Sent; its reply is awaited."""
    DELIVERED = "delivered"
    """Settled: the API accepted it."""
    FAILED = "failed"
    """Settled: it will never be delivered (or, with a spool, it is kept for the next process)."""


class _BatchEvent(enum.Enum):
    SEND = "send"
    SUCCEED = "succeed"
    RETRY = "retry"  # counted retry after a backoff
    PAUSE = "pause"  # Retry-After: wait with the whole pipeline, uncounted
    FAIL = "fail"
    ABANDON = "abandon"  # shutdown deadline, fork, or OAuth failure


_BATCH_TRANSITIONS: Final[dict[tuple[BatchState, _BatchEvent], BatchState]] = {
    (BatchState.WAITING, _BatchEvent.SEND): BatchState.IN_FLIGHT,
    (BatchState.WAITING, _BatchEvent.ABANDON): BatchState.FAILED,
    (BatchState.IN_FLIGHT, _BatchEvent.SUCCEED): BatchState.DELIVERED,
    (BatchState.IN_FLIGHT, _BatchEvent.RETRY): BatchState.WAITING,
    (BatchState.IN_FLIGHT, _BatchEvent.PAUSE): BatchState.WAITING,
    (BatchState.IN_FLIGHT, _BatchEvent.FAIL): BatchState.FAILED,
    (BatchState.IN_FLIGHT, _BatchEvent.ABANDON): BatchState.FAILED,
}


class _InternalError(AssertionError):
    """A transition the tables do not allow: a bug in the engine."""


class _Batch:
    __slots__ = (
        "attempts",
        "first_failure_at",
        "first_seq",
        "last_error",
        "messages",
        "ready_at",
        "retries",
        "state",
    )

    def __init__(self, first_seq: int, messages: tuple[bytes, ...], ready_at: float) -> None:
        self.first_seq = first_seq
        self.messages = messages
        self.state = BatchState.WAITING
        self.ready_at = ready_at
        self.attempts = 0  # requests sent, rate-limited ones included (X-Retry-Count)
        self.retries = 0  # counted retries
        self.first_failure_at: float | None = None
        self.last_error: DeliveryError | None = None  # what its last attempt met

    def move(self, event: _BatchEvent) -> None:
        try:
            self.state = _BATCH_TRANSITIONS[self.state, event]
        except KeyError:
            raise _InternalError(f"batch cannot {event.value} while {self.state.value}") from None


class _InFlight:
    """A request awaiting its outcome: a batch's (with the Authorization it carried), or a token request's."""

    __slots__ = ("authorization", "batch")

    def __init__(self, batch: _Batch | None, authorization: str | None) -> None:
        self.batch = batch
        self.authorization = authorization


class _Wait:
    """A waiter's range of sequence numbers, and whether any of them failed or was kept."""

    __slots__ = ("first", "last", "undelivered")

    def __init__(self, first: int, last: int) -> None:
        self.first = first
        self.last = last
        self.undelivered = False


class _Judgement:
    """What a batch reply means, decided once: a verdict, the error to report, and any Retry-After."""

    __slots__ = ("error", "retry_after", "verdict")

    def __init__(self, verdict: Verdict, error: APIError | None, retry_after: float | None) -> None:
        self.verdict = verdict
        self.error = error
        self.retry_after = retry_after


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    """The engine's counters, a snapshot.

    Attributes:
        enqueued: messages accepted.
        rejected: messages refused (queue full, or the client closed).
        dropped: messages a plugin dropped before they reached the engine (``record_dropped``).
        delivered: messages the API accepted.
        failed: messages that will never be delivered, by the error's class name.
        kept: messages left in the spool at the close deadline, for the next process.
        retries: counted retries of batches.
        rate_limit_waits: pauses the server asked for (Retry-After).
        requests: batch requests sent.
        queue_depth: messages queued and not yet in a batch.
        queue_bytes: their encoded bytes.
        in_flight_messages: messages in batches awaiting a reply.
        pending: messages accepted and not yet settled (queued, waiting for a retry, or in flight).
    """

    enqueued: int
    rejected: int
    dropped: int
    delivered: int
    failed: dict[str, int]
    kept: int
    retries: int
    rate_limit_waits: int
    requests: int
    queue_depth: int
    queue_bytes: int
    in_flight_messages: int
    pending: int


class Engine:
    """The delivery state machine. See the module docstring for the protocol.

    Args:
        config: the delivery settings.
        random: the source of backoff jitter and generated ids; seed it to replay a run exactly.
        authorizer: overrides how requests are authorised; by default Basic with
            the write key, or OAuth when ``config.oauth`` is set.
    """

    # Slots: more than 30 instance attributes would leave 3.11 a plain dict per instance, and
    # every attribute access a dict lookup.
    __slots__ = (
        "_auth",
        "_authorized",
        "_batches",
        "_batches_in_flight",
        "_builder",
        "_close_reason",
        "_deadline",
        "_delivered",
        "_dropped",
        "_failed_counts",
        "_flush_through",
        "_head_seq",
        "_in_flight",
        "_intake",
        "_kept",
        "_last_error",
        "_next_request_id",
        "_oauth",
        "_outputs",
        "_paused_until",
        "_rate_limit_started",
        "_rate_limit_waits",
        "_redactor",
        "_rejected",
        "_requests",
        "_retries",
        "_rng",
        "_waits",
        "config",
        "state",
    )

    def __init__(self, config: EngineConfig, *, random: RandomSource, authorizer: Authorizer | None = None) -> None:
        self.config = config
        self._rng = random
        self._oauth = config.oauth is not None
        self._auth: Authorizer = authorizer or authorizer_for(config.write_key, config.oauth, random)
        self._redactor = Redactor((config.write_key,))
        self._builder = BatchRequestBuilder(host=config.host, write_key=config.write_key, gzip_body=config.gzip)
        # The queue, and where its batches close: a batch's messages and commas fit in what the
        # envelope leaves of the request limit. It outlives a fork reset: sequence numbers go on.
        self._intake: PyIntake[Enqueued] = Intake(
            # Past sys.maxsize a limit cannot be reached anyway; the C intake counts in ssize_t.
            max_messages=min(config.max_queue_size, sys.maxsize),
            max_bytes=min(config.max_queue_bytes, sys.maxsize),
            batch_size=min(config.upload_size, sys.maxsize),
            batch_budget=MAX_BATCH_BYTES - self._builder.envelope_bytes,
            max_message_bytes=MAX_MESSAGE_BYTES,
            wake=_WAKE,
            quiet=_QUIET,
        )
        self.state = EngineState.OPEN
        self._deadline: float | None = None
        self._close_reason: str | None = None
        self._next_request_id = 1
        self._outputs: list[Output] = []
        self._failed_counts: dict[str, int] = {}
        self._rejected = self._delivered = self._kept = self._dropped = 0
        self._retries = self._rate_limit_waits = self._requests = 0
        self._reset_pipeline()

    def _reset_pipeline(self) -> None:
        self._intake.take_all()
        self._head_seq = self._intake.next_seq  # the seq of the queue's first message
        self._flush_through = self._head_seq  # messages with seq below this are due now
        self._batches: deque[_Batch] = deque()  # formed and not yet settled, in order
        self._in_flight: dict[int, _InFlight] = {}  # request id -> what it carries
        self._batches_in_flight = 0
        self._paused_until: float | None = None
        self._rate_limit_started: float | None = None
        self._authorized = True  # as of the last poll: could a batch be sent?
        self._waits: dict[int, _Wait] = {}
        self._last_error: DeliveryError | None = None  # the pipeline's last failed attempt, until a success

    def __repr__(self) -> str:
        return (
            f"Engine(state={self.state.value}, queued={self._intake.depth}, batches={len(self._batches)}, "
            f"in_flight={len(self._in_flight)})"
        )

    # Inputs ---------------------------------------------------------------

    def enqueue(self, data: bytes, *, now: float) -> Enqueued | DeliveryError:
        """Accept one encoded message (see ``build_message``), or say why not.

        Never blocks and never evicts: a full queue rejects the new message.

        Args:
            data: the message's JSON, as ``BuiltMessage.data``.
            now: monotonic seconds.

        Returns:
            ``Enqueued`` (its sequence number is ``last_seq``), or the
            ``QueueFull``/``ClientClosed`` error that rejected it.

        Raises:
            MessageTooLarge: ``data`` is over MAX_MESSAGE_BYTES (no batch may carry it).
        """
        # Every call goes through here on the caller's thread: the whole of it is one C call where
        # the extension is built (see _message_queue.py), and the refusals are kept off the common path.
        result = self._intake.add(data, now)
        if result is None:
            return self._refuse(len(data))
        return result

    def _refuse(self, size: int) -> DeliveryError:
        if size > MAX_MESSAGE_BYTES:
            raise MessageTooLarge(size, MAX_MESSAGE_BYTES)
        self._rejected += 1
        if self.state is not EngineState.OPEN:
            return ClientClosed()
        if self._intake.depth >= self.config.max_queue_size:
            return QueueFull(f"max_queue_size of {self.config.max_queue_size} messages reached")
        return QueueFull(f"max_queue_bytes of {self.config.max_queue_bytes} bytes reached")

    def enqueue_message(
        self, message: Message, *, now: float, wall: float, new_message_id: Callable[[], str] | None = None
    ) -> tuple[BuiltMessage, Enqueued | DeliveryError]:
        """Build a typed message (``Track(...)``, ...) and enqueue it: the struct form of a call.

        Validates, cleans, stamps (messageId from ``new_message_id``, else from the
        engine's random source; timestamp from ``wall``) and encodes, like ``build_message``.

        Returns:
            The built message and what ``enqueue`` said.

        Raises:
            ValidationError: the message is invalid; MessageTooLarge: its JSON is over 32 KB.
        """
        if new_message_id is None:
            new_message_id = self._random_message_id
        built = build_from_struct(message, wall=wall, new_message_id=new_message_id)
        return built, self.enqueue(built.data, now=now)

    def _random_message_id(self) -> str:
        return message_id_from_bits(self._rng.getrandbits(128))

    @property
    def last_seq(self) -> int:
        """Sequence number of the last accepted message (-1 if none yet)."""
        return self._intake.next_seq - 1

    @property
    def oldest_unsettled_seq(self) -> int:
        """The lowest sequence number not yet delivered or failed (``last_seq + 1`` if none)."""
        if self._batches:
            return self._batches[0].first_seq
        return self._head_seq

    def flush(self, *, now: float, waiter: int | None = None) -> None:
        """Make everything queued so far due now.

        Args:
            now: monotonic seconds.
            waiter: a token of the runtime's; the engine emits ``WaitSettled(waiter=...)``
                once every message accepted so far is settled (at once if none is pending).
        """
        self._flush_through = self._intake.next_seq
        if waiter is not None:
            self._add_wait(waiter)

    def close(self, *, now: float, deadline: float, waiter: int | None = None, reason: str | None = None) -> None:
        """Accept nothing more; deliver what is queued until ``deadline``, then report the rest failed.

        Closing again keeps the earlier deadline. With ``EngineConfig(durable=True)``
        the rest is reported kept (``MessagesKept``) instead: a spool holds it.

        Args:
            now: monotonic seconds.
            deadline: monotonic seconds.
            waiter: as for ``flush``: settled once everything accepted is settled.
            reason: why the client closes, when it is not a plain shutdown ("the event
                loop stopped before shutdown()"): the ShutdownDeadline errors say it.
        """
        self._flush_through = self._intake.next_seq
        if reason is not None and self._close_reason is None:
            self._close_reason = reason
        self._deadline = deadline if self._deadline is None else min(self._deadline, deadline)
        self._transition(_EngineEvent.CLOSE)
        if waiter is not None:
            self._add_wait(waiter)
        self._settle_if_drained()

    def has_room(self, size: int = 0) -> bool:
        """Whether the queue would take one more message of ``size`` bytes (for a caller willing to wait)."""
        intake = self._intake
        return (
            self.state is EngineState.OPEN
            and intake.depth < self.config.max_queue_size
            and intake.queued_bytes + size <= self.config.max_queue_bytes
        )

    def record_refused(self, count: int = 1) -> None:
        """The runtime refused ``count`` messages before the engine saw them (a full spool): ``Stats.rejected``."""
        self._rejected += count

    def record_dropped(self, count: int = 1) -> None:
        """A plugin dropped ``count`` messages before they reached the engine: counted in ``Stats.dropped``."""
        self._dropped += count

    def cancel_wait(self, waiter: int) -> None:
        """Forget a wait the runtime stopped waiting for (its timeout passed); no output follows."""
        self._waits.pop(waiter, None)

    def poll(self, *, now: float, wall: float) -> None:
        """Act on the time: expire the close deadline, start due requests.

        Args:
            now: monotonic seconds.
            wall: seconds since the epoch, for ``sentAt`` and token assertions.
        """
        if self.state is EngineState.CLOSED:
            return
        if self._deadline is not None and now >= self._deadline:
            self._abandon_at_deadline()
            self._transition(_EngineEvent.DEADLINE)
            self._resolve_waits()
            return
        auth = self._auth
        if (failure := auth.failure) is not None:
            self._abandon_waiting(failure)
        elif (token_request := auth.poll(now=now, wall=wall)) is not None:
            request_id = self._new_request_id()
            self._in_flight[request_id] = _InFlight(None, None)
            self._outputs.append(
                Request(
                    id=request_id,
                    purpose=RequestPurpose.TOKEN,
                    method=token_request.method,
                    url=token_request.url,
                    headers=token_request.headers,
                    body=token_request.body,
                )
            )
        elif auth.failure is not None:  # polling found the credentials unusable (a bad key)
            self._abandon_waiting(auth.failure)
        if self._paused_until is not None:
            if now < self._paused_until:
                return
            self._paused_until = None
        authorization = auth.authorization(now=now)
        # Without a token nothing can be sent: the authorizer's deadline, not the queue's, says when to look again.
        self._authorized = authorization is not None
        if authorization is None:
            return
        while self._batches_in_flight < self.config.max_in_flight:
            batch = self._next_sendable_batch(now)
            if batch is None:
                break
            self._send(batch, authorization, now=now, wall=wall)

    def receive_response(self, request_id: int, response: Response, *, now: float, wall: float) -> None:
        """The HTTP response to request ``request_id``. Unknown ids (abandoned requests) are ignored.

        Total: whatever status, headers and body the server sent, this does not raise.
        """
        entry = self._in_flight.pop(request_id, None)
        if entry is None:
            return
        batch = entry.batch
        if batch is None:
            self._auth.receive_response(response, now=now, wall=wall)
            return
        self._batches_in_flight -= 1
        judgement = self._judge(response, entry.authorization, wall)
        verdict, error = judgement.verdict, judgement.error
        if verdict is Verdict.DELIVERED:
            self._rate_limit_started = None
            self._last_error = None
            batch.move(_BatchEvent.SUCCEED)
            self._settle(batch, None)
        elif error is None:  # pragma: no cover - _judge gives every other verdict an error
            raise _InternalError(f"verdict {verdict.value} without an error")
        elif verdict is Verdict.FAIL:
            self._rate_limit_started = None
            batch.move(_BatchEvent.FAIL)
            self._settle(batch, error)
        elif verdict is Verdict.REAUTHORIZE:
            self._auth.invalidate(now=now)
            self._retry(batch, error, now)
        elif judgement.retry_after is None:
            self._retry(batch, error, now)
        else:
            self._pause(batch, error, judgement.retry_after, now)
        self._settle_if_drained()
        self._resolve_waits()

    def receive_failure(self, request_id: int, failure: TransportFailure, *, now: float, wall: float) -> None:
        """Request ``request_id`` got no response. Unknown ids are ignored."""
        entry = self._in_flight.pop(request_id, None)
        if entry is None:
            return
        batch = entry.batch
        if batch is None:
            self._auth.receive_failure(failure, now=now)
            return
        self._batches_in_flight -= 1
        detail = self._redactor.redact(failure.detail, also=(entry.authorization,))
        self._retry(batch, TransportError(failure.kind.value, detail), now)
        self._settle_if_drained()
        self._resolve_waits()

    def reset_after_fork(self) -> None:
        """In a forked child: start with an empty queue and nothing in flight.

        The parent still owns (and will deliver) what it had queued, so the
        child reports none of it, and no wait of the parent's carries over.
        """
        self._reset_pipeline()
        self._outputs.clear()
        self._auth.reset()

    # Outputs --------------------------------------------------------------

    def next_outputs(self) -> list[Output]:
        """Drain what the runtime must do (requests) and report (settled, retrying, waits), in order."""
        outputs, self._outputs = self._outputs, []
        return outputs

    def next_deadline(self) -> float | None:
        """When ``poll`` must be called even if nothing else happens (monotonic), or None.

        A time in the past means "poll now".
        """
        if self.state is EngineState.CLOSED:
            return None
        candidates: list[float] = []
        if self._deadline is not None:
            candidates.append(self._deadline)
        if (token_deadline := self._auth.next_deadline()) is not None:
            candidates.append(token_deadline)
        if self._paused_until is not None:
            candidates.append(self._paused_until)
        elif self._authorized and self._batches_in_flight < self.config.max_in_flight:
            waiting = self._first_waiting()
            if waiting is not None:
                candidates.append(waiting.ready_at)
            elif self._intake.depth:
                candidates.append(self._queue_due_at())
        return min(candidates) if candidates else None

    @property
    def pending(self) -> int:
        """Messages accepted and not yet settled: queued, waiting for a retry, or in flight."""
        return self._intake.depth + sum(len(batch.messages) for batch in self._batches)

    @property
    def last_error(self) -> DeliveryError | None:
        """What the last failed attempt met, until an attempt succeeds (None then)."""
        return self._last_error

    def stats(self) -> Stats:
        """A snapshot of the counters."""
        in_flight = sum(len(batch.messages) for batch in self._batches if batch.state is BatchState.IN_FLIGHT)
        return Stats(
            enqueued=self._intake.next_seq,  # every accepted message takes the next sequence number
            rejected=self._rejected,
            dropped=self._dropped,
            delivered=self._delivered,
            failed=dict(self._failed_counts),
            kept=self._kept,
            retries=self._retries,
            rate_limit_waits=self._rate_limit_waits,
            requests=self._requests,
            queue_depth=self._intake.depth,
            queue_bytes=self._intake.queued_bytes,
            in_flight_messages=in_flight,
            pending=self.pending,
        )

    # Internals: judging a reply ---------------------------------------------

    def _judge(self, response: Response, authorization: str | None, wall: float) -> _Judgement:
        """Decide what a batch reply means. Never raises: an unreadable reply is judged by its status."""
        status = response.status
        verdict = classify_status(status, oauth=self._oauth)
        if verdict is Verdict.DELIVERED:
            return _Judgement(verdict, None, None)
        error = api_error_from_response(status, response.body, self._redactor, also=(authorization,))
        retry_after = None
        if verdict is Verdict.RETRY:
            retry_after = parse_retry_after(response.headers.get("retry-after"), wall=wall)
        return _Judgement(verdict, error, retry_after)

    # Internals: state -------------------------------------------------------

    def _transition(self, event: _EngineEvent) -> None:
        try:
            self.state = _ENGINE_TRANSITIONS[self.state, event]
        except KeyError:
            raise _InternalError(f"engine cannot take {event.value} while {self.state.value}") from None
        self._intake.accepting = self.state is EngineState.OPEN

    def _new_request_id(self) -> int:
        request_id = self._next_request_id
        self._next_request_id += 1
        return request_id

    def _first_waiting(self) -> _Batch | None:
        for batch in self._batches:
            if batch.state is BatchState.WAITING:
                return batch
        return None

    def _queue_due_at(self) -> float:
        """When the queue's head batch is due: now-ish if full, flushed or closing, else at upload_interval."""
        intake = self._intake
        oldest = intake.head_since
        if self.state is not EngineState.OPEN or self._head_seq < self._flush_through or intake.head_full:
            return oldest
        return oldest + self.config.upload_interval

    def _next_sendable_batch(self, now: float) -> _Batch | None:
        """The oldest waiting batch if its time has come; else a new one if one is due.

        A waiting batch that is not ready holds back everything behind it: order is kept.
        """
        waiting = self._first_waiting()
        if waiting is not None:
            return waiting if waiting.ready_at <= now else None
        if self._intake.depth and self._queue_due_at() <= now:
            return self._form_batch(now)
        return None

    def _form_batch(self, now: float) -> _Batch:
        """Take the queue's head batch: the first full one enqueue recorded, else all of the queue."""
        taken = self._intake.take_batch()
        batch = _Batch(self._head_seq, taken, now)
        self._head_seq += len(taken)
        self._batches.append(batch)
        return batch

    def _send(self, batch: _Batch, authorization: str, *, now: float, wall: float) -> None:
        batch.move(_BatchEvent.SEND)
        request_id = self._new_request_id()
        self._in_flight[request_id] = _InFlight(batch, authorization)
        self._batches_in_flight += 1
        self._requests += 1
        builder = self._builder
        self._outputs.append(
            Request(
                id=request_id,
                purpose=RequestPurpose.BATCH,
                method="POST",
                url=builder.url,
                headers=builder.headers(authorization, batch.attempts),
                body=builder.body(batch.messages, format_timestamp(wall)),
                message_count=len(batch.messages),
                retry_count=batch.attempts,
            )
        )
        batch.attempts += 1

    def _failed_attempt(self, batch: _Batch, error: DeliveryError) -> None:
        batch.last_error = error
        self._last_error = error

    def _retry(self, batch: _Batch, error: DeliveryError, now: float) -> None:
        """A counted retry after backoff, or give up if the budget is spent."""
        self._failed_attempt(batch, error)
        self._rate_limit_started = None
        if batch.first_failure_at is None:
            batch.first_failure_at = now
        config = self.config
        if batch.retries >= config.max_retries or now - batch.first_failure_at >= config.max_total_backoff_duration:
            batch.move(_BatchEvent.FAIL)
            self._settle(batch, RetriesExhausted(batch.attempts, error))
            return
        batch.retries += 1
        self._retries += 1
        delay = backoff_delay(batch.retries, self._rng.random())
        batch.ready_at = now + delay
        batch.move(_BatchEvent.RETRY)
        self._outputs.append(
            Retrying(
                first_seq=batch.first_seq, count=len(batch.messages), error=error, delay=delay, attempt=batch.attempts
            )
        )

    def _pause(self, batch: _Batch, error: APIError, delay: float, now: float) -> None:
        """Retry-After: hold the whole pipeline, uncounted, within max_rate_limit_duration."""
        self._failed_attempt(batch, error)
        if self._rate_limit_started is None:
            self._rate_limit_started = now
        waited = now + delay - self._rate_limit_started
        if waited > self.config.max_rate_limit_duration:
            # Sending sooner than asked would only meet another refusal.
            self._rate_limit_started = None
            batch.move(_BatchEvent.FAIL)
            self._settle(batch, RateLimitExceeded(waited, self.config.max_rate_limit_duration, error))
            return
        self._rate_limit_waits += 1
        # Another batch's Retry-After may already hold the pipeline longer: keep the later end.
        until = now + delay
        self._paused_until = until if self._paused_until is None else max(self._paused_until, until)
        batch.ready_at = now
        batch.move(_BatchEvent.PAUSE)
        self._outputs.append(
            Retrying(
                first_seq=batch.first_seq,
                count=len(batch.messages),
                error=error,
                delay=self._paused_until - now,
                attempt=batch.attempts,
                paused=True,
            )
        )

    def _settle(self, batch: _Batch, error: DeliveryError | None) -> None:
        """Report a finished batch once and forget it."""
        self._batches.remove(batch)
        if error is None:
            self._delivered += len(batch.messages)
            self._outputs.append(MessagesDelivered(first_seq=batch.first_seq, messages=batch.messages))
        else:
            self._report_failed(batch.first_seq, batch.messages, error)

    def _report_failed(self, first_seq: int, messages: tuple[bytes, ...], error: DeliveryError) -> None:
        name = type(error).__name__
        self._failed_counts[name] = self._failed_counts.get(name, 0) + len(messages)
        self._mark_undelivered(first_seq, len(messages))
        self._outputs.append(MessagesFailed(first_seq=first_seq, messages=messages, error=error))

    def _report_kept(self, first_seq: int, messages: tuple[bytes, ...], last_error: DeliveryError | None) -> None:
        self._kept += len(messages)
        self._mark_undelivered(first_seq, len(messages))
        self._outputs.append(MessagesKept(first_seq=first_seq, messages=messages, last_error=last_error))

    def _abandon_waiting(self, error: DeliveryError) -> None:
        """Fail everything not in flight (OAuth cannot authorise it, ever)."""
        for batch in [b for b in self._batches if b.state is BatchState.WAITING]:
            batch.move(_BatchEvent.ABANDON)
            self._settle(batch, error)
        self._fail_queue(error)
        self._settle_if_drained()
        self._resolve_waits()

    def _abandon_at_deadline(self) -> None:
        """The close deadline passed: fail (or, durable, keep) everything, each with its last cause."""
        for batch in list(self._batches):
            in_flight = batch.state is BatchState.IN_FLIGHT
            batch.move(_BatchEvent.ABANDON)
            self._batches.remove(batch)
            last_error = batch.last_error or self._last_error
            if self.config.durable:
                self._report_kept(batch.first_seq, batch.messages, last_error)
            else:
                self._report_failed(
                    batch.first_seq,
                    batch.messages,
                    ShutdownDeadline(last_error, in_flight=in_flight and not last_error, reason=self._close_reason),
                )
        if self._intake.depth:
            first_seq, messages = self._head_seq, self._intake.take_all()
            self._head_seq += len(messages)
            if self.config.durable:
                self._report_kept(first_seq, messages, self._last_error)
            else:
                self._report_failed(first_seq, messages, ShutdownDeadline(self._last_error, reason=self._close_reason))
        # Late answers to abandoned requests are ignored.
        self._in_flight.clear()
        self._batches_in_flight = 0

    def _fail_queue(self, error: DeliveryError) -> None:
        if not self._intake.depth:
            return
        messages = self._intake.take_all()
        first_seq = self._head_seq
        self._head_seq += len(messages)
        self._report_failed(first_seq, messages, error)

    def _settle_if_drained(self) -> None:
        if self.state is EngineState.CLOSING and not self._intake.depth and not self._batches:
            self._transition(_EngineEvent.DRAINED)

    # Internals: waits -------------------------------------------------------

    def _add_wait(self, waiter: int) -> None:
        self._waits[waiter] = _Wait(self.oldest_unsettled_seq, self.last_seq)
        self._resolve_waits()

    def _mark_undelivered(self, first_seq: int, count: int) -> None:
        last = first_seq + count - 1
        for wait in self._waits.values():
            if first_seq <= wait.last and last >= wait.first:
                wait.undelivered = True

    def _resolve_waits(self) -> None:
        """Emit WaitSettled for every wait whose messages are all settled (after the outputs that settled them)."""
        if not self._waits:
            return
        oldest = self.oldest_unsettled_seq
        for waiter, wait in list(self._waits.items()):
            if wait.last < oldest:
                del self._waits[waiter]
                self._outputs.append(WaitSettled(waiter=waiter, delivered=not wait.undelivered))
