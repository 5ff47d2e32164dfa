"""A hypothesis state machine driving an Engine directly: we are the clock and the server.

Arbitrary interleavings of enqueue (sizes up to 32 KB), flush, time passing,
poll, answers of every kind to any in-flight request (2xx, retryable with and
without Retry-After in both forms, fatal 4xx/5xx, 3xx, transport failures),
late answers to abandoned requests, and close(deadline). Configs are small so
that full queues, byte-closed batches, exhausted retries and rate-limit budgets
actually happen.

A model kept beside the engine states what the rules say must happen; after
EVERY step the engine's outputs, ``pending``, ``stats()`` and
``next_deadline()`` are checked against it:

- every accepted message is settled at most once, and after close(deadline)
  plus a poll at the deadline, exactly once;
- no batch over upload_size messages or MAX_BATCH_BYTES bytes, none closed
  before a message that would have fit, none formed before it was due;
- no batch request while a Retry-After pause runs;
- every counted backoff delay within 0.5 s x 2^(k-2) (+10%), capped at 60 s, and a batch
  fails with RetriesExhausted exactly when DESIGN.md's schedule says (``spec_retry``: at most
  max_retries retries, none once max_total_backoff_duration has passed since its first failure);
- batches go out in order (max_in_flight=1: delivered in enqueue order);
- every counted retry and every pause is announced once (``Retrying``), with its delay;
- every wait (``flush(waiter=...)``) settles exactly once, right after the
  last message it covers is settled, saying whether all of them were delivered;
- ``next_deadline()`` is never None while messages wait and nothing is in
  flight, and is never later than the moment something becomes due.
"""

from __future__ import annotations

import gzip
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import formatdate
from typing import Any

import msgspec
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from segment_core import (
    APIError,
    Engine,
    EngineConfig,
    EngineState,
    Enqueued,
    MessagesDelivered,
    MessagesFailed,
    QueueFull,
    RateLimitExceeded,
    Request,
    Response,
    RetriesExhausted,
    Retrying,
    ShutdownDeadline,
    TransportError,
    TransportFailure,
    TransportFailureKind,
    WaitSettled,
)
from segment_core._errors import ClientClosed
from segment_core.limits import MAX_BATCH_BYTES, MAX_RETRY_AFTER

from .test_engine_support import WALL0, WRITE_KEY, envelope_bytes, message

BUDGET = MAX_BATCH_BYTES - envelope_bytes()
EPS = 1e-6
BASIC = "Basic d2tfdGVzdDo="  # base64("wk_test:")


class _Id(msgspec.Struct):
    messageId: str


class _Body(msgspec.Struct):
    batch: list[_Id]
    sentAt: str
    writeKey: str


_body_decoder = msgspec.json.Decoder(_Body)


def backoff_bounds(retry: int) -> tuple[float, float]:
    """The documented window for counted retry ``retry`` (1-based)."""
    if retry == 1:
        return 0.0, 0.0
    base = 0.5 * 2.0 ** (retry - 2)
    return min(base, 60.0), min(base * 1.1, 60.0)


def spec_retry(config: EngineConfig, failed_at: list[float]) -> tuple[float, float] | None:
    """What DESIGN.md says follows a batch's counted failures, at the times ``failed_at`` (the last is now).

    "Backoff (counted retries, default max_retries=10): first retry immediate, then
    0.5 s x 2^(k-2) plus up to 10% jitter, capped at 60 s; the episode also ends after
    max_total_backoff_duration". So the k-th counted failure asks for retry k, unless k
    retries would be more than max_retries, or max_total_backoff_duration has run out
    since the first of them (0 allows no retry at all).

    Returns:
        The window (earliest, latest delay) of the retry, or None: the batch fails.
    """
    retry = len(failed_at)
    if retry > config.max_retries or failed_at[-1] - failed_at[0] >= config.max_total_backoff_duration:
        return None
    return backoff_bounds(retry)


@dataclass
class BatchModel:
    seqs: list[int]
    attempts: int = 0
    # When each of its counted failures happened: transport failures, retryable statuses without a
    # usable Retry-After. Pauses are not counted (DESIGN.md: "not counted as a retry").
    counted_failures: list[float] = field(default_factory=list)
    earliest: float = 0.0  # not to be sent before
    latest: float = 0.0  # due by then, if nothing else holds it
    request_id: int | None = None  # in flight as this request


@dataclass
class Expect:
    """What answering one request must produce."""

    seqs: list[int]
    outcome: str  # "none", "delivered", or an error class name
    status: int | None = None
    attempts: int = 0


@dataclass
class Model:
    config: EngineConfig
    now: float = 0.0
    data: dict[int, bytes] = field(default_factory=dict)
    seq_of: dict[str, int] = field(default_factory=dict)  # messageId -> sequence number
    enqueued_at: dict[int, float] = field(default_factory=dict)
    queue: list[int] = field(default_factory=list)  # accepted, not yet in a batch, not settled
    batches: dict[int, BatchModel] = field(default_factory=dict)  # by first seq, in formation order
    settled: dict[int, str] = field(default_factory=dict)
    delivery_order: list[int] = field(default_factory=list)
    failed_by_reason: Counter[str] = field(default_factory=Counter)
    flush_through: int = 0
    closed: bool = False
    deadline: float | None = None
    pause_end: float = -math.inf
    rate_limit_started: float | None = None
    rejected: int = 0
    requests: int = 0
    retries: int = 0
    rate_limit_waits: int = 0
    abandoned: set[int] = field(default_factory=set)
    waits: dict[int, list[int]] = field(default_factory=dict)  # waiter -> the seqs it covers

    @property
    def wall(self) -> float:
        return WALL0 + self.now

    @property
    def queue_bytes(self) -> int:
        return sum(len(self.data[seq]) for seq in self.queue)

    def full_batches(self, seqs: list[int]) -> int:
        """How many full batches these queued messages make, taking batches greedily from the head."""
        sizes = [len(self.data[seq]) for seq in seqs]
        limit = self.config.upload_size
        full = start = 0
        while start < len(sizes):
            end, used = start, -1
            while end < len(sizes) and end - start < limit and used + 1 + sizes[end] <= BUDGET:
                used += 1 + sizes[end]
                end += 1
            if end - start == limit or end < len(sizes):
                full += 1
            start = end
        return full

    def head_due_at(self) -> float:
        head = self.queue[0]
        at = self.enqueued_at[head]
        if self.closed or head < self.flush_through or self.full_batches(self.queue) >= 1:
            return at
        return at + self.config.upload_interval

    def in_flight(self) -> list[BatchModel]:
        return [b for b in self.batches.values() if b.request_id is not None]

    def first_waiting(self) -> BatchModel | None:
        return next((b for b in self.batches.values() if b.request_id is None), None)


# The first value of each is what hypothesis tries most: make it the middle of the road.
_timing = {
    "upload_interval": st.sampled_from([0.5, 0.0, 5.0]),
    "max_in_flight": st.sampled_from([2, 1, 3]),
    "max_retries": st.sampled_from([2, 3, 1, 0]),
    "max_total_backoff_duration": st.sampled_from([1e9, 30.0, 2.0, 0.0]),
    "max_rate_limit_duration": st.sampled_from([1800.0, 60.0, 1800.0, 15.0, 0.0]),
    "gzip": st.booleans(),
}
configs = st.one_of(
    st.fixed_dictionaries(
        {
            "upload_size": st.integers(1, 5),
            "max_queue_size": st.sampled_from([6, 1, 2, 3, 4, 8]),
            "max_queue_bytes": st.sampled_from([10_000_000, 100_000, 32_768]),
            **_timing,
        }
    ),
    # Room for more than one request's worth of 32 KB messages: batches close on bytes.
    st.fixed_dictionaries(
        {"upload_size": st.just(20), "max_queue_size": st.just(40), "max_queue_bytes": st.just(2_000_000), **_timing}
    ),
)

sizes = st.integers(30, 2_000) | st.integers(31_000, 32_768)
large_sizes = st.integers(30_000, 32_768)

RETRYABLE = [408, 410, 429, 460, 500, 503, 599]
# Retry-After: mostly short waits that fit the rate-limit budget, sometimes the edges
# (zero, negative, in the past, at and over the 300 s cap).
retry_after_seconds = st.integers(1, 40) | st.sampled_from([-30, -5, 0, 299, 300, 301, 400])
answers = st.one_of(
    st.tuples(st.just("ok"), st.sampled_from([200, 204]), st.none()),
    st.tuples(st.just("retry-after-seconds"), st.sampled_from(RETRYABLE), retry_after_seconds),
    st.tuples(st.just("retry"), st.sampled_from(RETRYABLE), st.none()),
    st.tuples(st.just("retry-after-date"), st.sampled_from(RETRYABLE), retry_after_seconds),
    st.tuples(st.just("transport"), st.sampled_from(list(TransportFailureKind)), st.none()),
    st.tuples(st.just("fatal"), st.sampled_from([400, 401, 404, 413, 501, 505, 511]), st.none()),
    st.tuples(st.just("redirect"), st.sampled_from([301, 302, 307]), st.none()),
    st.tuples(st.just("retry-after-invalid"), st.sampled_from(RETRYABLE), st.none()),
)


class EngineMachine(RuleBasedStateMachine):
    engine: Engine
    model: Model

    @initialize(options=configs, seed=st.integers(0, 2**32))
    def setup(self, options: dict[str, Any], seed: int) -> None:
        config = EngineConfig(write_key=WRITE_KEY, **options)
        self.engine = Engine(config, random=random.Random(seed))
        self.model = Model(config=config)
        self.next_index = 0
        self.waiters = 0

    # Rules ---------------------------------------------------------------------------------

    @rule(burst=st.lists(sizes, min_size=1, max_size=8))
    def enqueue(self, burst: list[int]) -> None:
        for size in burst:
            self.enqueue_one(size)

    @rule(burst=st.lists(large_sizes, min_size=8, max_size=24))
    def enqueue_large(self, burst: list[int]) -> None:
        for size in burst:
            self.enqueue_one(size)

    def enqueue_one(self, size: int) -> None:
        model, engine = self.model, self.engine
        message_id = f"m{self.next_index}"
        data = message(self.next_index, size)
        self.next_index += 1
        before = engine.next_deadline()
        full_before = model.full_batches(model.queue)
        was_empty = not model.queue
        result = engine.enqueue(data, now=model.now)
        if model.closed:
            assert isinstance(result, ClientClosed)
        elif len(model.queue) >= model.config.max_queue_size or model.queue_bytes + size > model.config.max_queue_bytes:
            assert isinstance(result, QueueFull), result
        else:
            assert isinstance(result, Enqueued), result
            seq = len(model.data)
            assert engine.last_seq == seq
            model.data[seq] = data
            model.seq_of[message_id] = seq
            model.enqueued_at[seq] = model.now
            model.queue.append(seq)
            full_now = model.full_batches(model.queue) > full_before
            assert result is (Enqueued.WAKE if was_empty or full_now else Enqueued.QUIET)
            after = engine.next_deadline()
            if result is Enqueued.QUIET:
                # The deadline the runtime sleeps on still holds.
                assert after is None or (before is not None and after >= before)
            self.drain("enqueue")
            return
        model.rejected += 1
        self.drain("enqueue")

    @rule()
    def flush(self) -> None:
        self.engine.flush(now=self.model.now)
        self.model.flush_through = len(self.model.data)
        self.drain("flush")

    @rule()
    def flush_and_wait(self) -> None:
        model = self.model
        self.waiters += 1
        waiter = self.waiters
        # A wait covers what is not yet settled: an earlier failure was reported to an earlier wait.
        model.waits[waiter] = [seq for seq in model.data if seq not in model.settled]
        self.engine.flush(now=model.now, waiter=waiter)
        model.flush_through = len(model.data)
        self.drain("flush")

    @rule(seconds=st.floats(0.001, 2.0) | st.sampled_from([10.0, 60.0, 299.0, 301.0, 3600.0]))
    def time_passes(self, seconds: float) -> None:
        self.model.now += seconds

    @rule(seconds=st.floats(0.001, 2.0) | st.sampled_from([10.0, 60.0, 299.0, 301.0, 3600.0]))
    def time_passes_then_poll(self, seconds: float) -> None:
        self.model.now += seconds
        self.do_poll()

    @rule()
    def poll(self) -> None:
        self.do_poll()

    @rule()
    def poll_at_next_deadline(self) -> None:
        deadline = self.engine.next_deadline()
        if deadline is not None and deadline > self.model.now:
            self.model.now = deadline
        self.do_poll()

    @precondition(lambda self: any(b.request_id is not None for b in self.model.batches.values()))
    @rule(data=st.data(), answer=answers)
    def answer(self, data: st.DataObject, answer: tuple[str, Any, int | None]) -> None:
        request_ids = sorted(b.request_id for b in self.model.in_flight() if b.request_id is not None)
        self.answer_request(data.draw(st.sampled_from(request_ids), label="request"), answer)

    @rule(script=st.lists(st.tuples(answers, st.booleans()), min_size=1, max_size=12))
    def exchange(self, script: list[tuple[tuple[str, Any, int | None], bool]]) -> None:
        """Run the engine like a runtime would for a while: answer what is in flight (the
        oldest or the newest request), else sleep until the next deadline and poll."""
        for answer, newest in script:
            request_ids = sorted(b.request_id for b in self.model.in_flight() if b.request_id is not None)
            if request_ids:
                self.answer_request(request_ids[-1 if newest else 0], answer)
                continue
            deadline = self.engine.next_deadline()
            if deadline is None:
                return
            self.model.now = max(self.model.now, deadline)
            self.do_poll()

    def answer_request(self, request_id: int, answer: tuple[str, Any, int | None]) -> None:
        model = self.model
        batch = next(b for b in model.batches.values() if b.request_id == request_id)
        batch.request_id = None
        kind, code, seconds = answer
        expect = Expect(seqs=batch.seqs, outcome="none")
        if kind == "transport":
            assert isinstance(code, TransportFailureKind)
            failure = TransportFailure(kind=code, detail="simulated")
            self.counted_retry(batch, expect, now=model.now)
            self.engine.receive_failure(request_id, failure, now=model.now, wall=model.wall)
            self.drain("answer", expect)
            return
        status: int = code
        headers: dict[str, str] = {}
        delay: float | None = None
        if kind == "retry-after-seconds":
            assert seconds is not None
            headers["retry-after"] = str(seconds)
            delay = min(float(seconds), MAX_RETRY_AFTER) if seconds > 0 else None
        elif kind == "retry-after-date":
            assert seconds is not None
            headers["retry-after"] = formatdate(model.wall + seconds, usegmt=True)
            # HTTP-dates have whole seconds: the date names the second the wall clock + seconds falls in.
            until = float(math.floor(model.wall + seconds)) - model.wall
            delay = min(until, MAX_RETRY_AFTER) if until > 0 else None
        elif kind == "retry-after-invalid":
            headers["retry-after"] = "soon"
        body = b'{"code":"c","message":"m"}'
        if kind == "ok":
            expect.outcome = "delivered"
            model.rate_limit_started = None
        elif kind in ("fatal", "redirect"):
            expect.outcome, expect.status = "APIError", status
            model.rate_limit_started = None
        elif delay is None:
            self.counted_retry(batch, expect, now=model.now, status=status)
        else:
            started = model.now if model.rate_limit_started is None else model.rate_limit_started
            if model.now + delay - started > model.config.max_rate_limit_duration:
                expect.outcome = "RateLimitExceeded"
                model.rate_limit_started = None
            else:
                model.rate_limit_started = started
                model.rate_limit_waits += 1
                model.pause_end = max(model.pause_end, model.now + delay)
                batch.earliest = batch.latest = model.pause_end
        response = Response(status=status, headers=headers, body=body)
        self.engine.receive_response(request_id, response, now=model.now, wall=model.wall)
        self.drain("answer", expect)

    @precondition(lambda self: bool(self.model.abandoned))
    @rule(data=st.data(), status=st.sampled_from([200, 500, 400]))
    def late_answer(self, data: st.DataObject, status: int) -> None:
        request_id = data.draw(st.sampled_from(sorted(self.model.abandoned)), label="abandoned request")
        model = self.model
        self.engine.receive_response(request_id, Response(status=status), now=model.now, wall=model.wall)
        self.drain("late answer", Expect(seqs=[], outcome="none"))
        self.engine.receive_failure(
            request_id, TransportFailure(kind=TransportFailureKind.RESET), now=model.now, wall=model.wall
        )
        self.drain("late answer", Expect(seqs=[], outcome="none"))

    # Closing early makes the rest of a run dull (every enqueue refused); teardown closes anyway.
    @precondition(lambda self: self.model.requests > 0)
    @rule(timeout=st.sampled_from([0.0, 1.0, 10.0, 100.0]))
    def close(self, timeout: float) -> None:
        model = self.model
        self.engine.close(now=model.now, deadline=model.now + timeout)
        model.closed = True
        deadline = model.now + timeout
        model.deadline = deadline if model.deadline is None else min(model.deadline, deadline)
        self.drain("close")

    @precondition(lambda self: self.model.deadline is not None)
    @rule()
    def deadline_passes(self) -> None:
        model = self.model
        assert model.deadline is not None
        model.now = max(model.now, model.deadline)
        self.do_poll()

    def teardown(self) -> None:
        # Whatever happened, close and let the deadline pass: every message is then settled once.
        if not hasattr(self, "model"):
            return
        if not self.model.closed:
            self.close(10.0)
        self.deadline_passes()
        self.engine_agrees_with_model()
        assert set(self.model.settled) == set(self.model.data)
        assert not self.model.waits, f"waits never settled: {self.model.waits}"

    # Helpers ----------------------------------------------------------------------------

    def check_retrying(self, retried: list[Retrying], expect: Expect) -> None:
        """A batch answered and not settled is announced as retrying once, with the delay the model expects."""
        if expect.outcome != "none" or not expect.seqs:
            assert not retried, f"a settled batch announced a retry: {retried}"
            return
        (announced,) = retried
        batch = self.model.batches[expect.seqs[0]]
        assert (announced.first_seq, announced.count, announced.attempt) == (
            expect.seqs[0],
            len(expect.seqs),
            batch.attempts,
        )
        assert isinstance(announced.error, APIError | TransportError)
        now = self.model.now
        if announced.paused:
            assert now + announced.delay == self.model.pause_end
        else:
            assert batch.earliest - EPS <= now + announced.delay <= batch.latest + EPS

    def counted_retry(self, batch: BatchModel, expect: Expect, *, now: float, status: int | None = None) -> None:
        """A counted failure of ``batch`` now: DESIGN.md's schedule (``spec_retry``) says what follows."""
        model = self.model
        model.rate_limit_started = None  # a counted failure ends a rate-limit episode
        batch.counted_failures.append(now)
        window = spec_retry(model.config, batch.counted_failures)
        if window is None:
            expect.outcome, expect.status, expect.attempts = "RetriesExhausted", status, batch.attempts
            return
        model.retries += 1
        low, high = window
        batch.earliest, batch.latest = now + low, now + high

    def do_poll(self) -> None:
        model = self.model
        self.engine.poll(now=model.now, wall=model.wall)
        self.drain("poll")
        if model.deadline is not None and model.now >= model.deadline:
            assert set(model.settled) == set(model.data), "unsettled messages after the deadline"
            assert self.engine.state is EngineState.CLOSED

    def drain(self, context: str, expect: Expect | None = None) -> None:
        model = self.model
        settled_now: list[tuple[list[int], str, object]] = []
        deadline_passed = context == "poll" and model.deadline is not None and model.now >= model.deadline
        retried: list[Retrying] = []
        for output in self.engine.next_outputs():
            if isinstance(output, Request):
                assert context == "poll", f"a request from {context}"
                assert not deadline_passed
                self.check_request(output)
                continue
            if isinstance(output, Retrying):
                retried.append(output)
                continue
            if isinstance(output, WaitSettled):
                covered = model.waits.pop(output.waiter)
                assert all(seq in model.settled for seq in covered), "a wait settled before its messages"
                assert output.delivered == all(model.settled[seq] == "delivered" for seq in covered)
                continue
            seqs = list(range(output.first_seq, output.first_seq + len(output.messages)))
            for seq, data in zip(seqs, output.messages, strict=True):
                assert seq in model.data, f"unknown message {seq}"
                assert seq not in model.settled, f"message {seq} settled twice"
                assert data == model.data[seq]
            if isinstance(output, MessagesDelivered):
                reason = "delivered"
                model.delivery_order.extend(seqs)
            else:
                assert isinstance(output, MessagesFailed)
                reason = type(output.error).__name__
                model.failed_by_reason[reason] += len(seqs)
            for seq in seqs:
                model.settled[seq] = reason
            settled_now.append((seqs, reason, getattr(output, "error", None)))
            self.forget(seqs)
        for waiter, covered in model.waits.items():
            assert not all(seq in model.settled for seq in covered), f"wait {waiter} settled but not reported"
        if expect is not None:
            self.check_retrying(retried, expect)
            if expect.outcome == "none":
                assert settled_now == [], f"{context}: unexpected {settled_now}"
            else:
                ((seqs, reason, error),) = settled_now
                assert (seqs, reason) == (expect.seqs, expect.outcome)
                self.check_error(error, expect)
        elif deadline_passed:
            assert not retried
            assert all(reason == "ShutdownDeadline" for _, reason, _ in settled_now)
            assert all(isinstance(error, ShutdownDeadline) for _, _, error in settled_now)
            model.abandoned.update(b.request_id for b in model.batches.values() if b.request_id is not None)
            model.batches.clear()
            model.queue.clear()
        else:
            assert not retried, f"{context} announced a retry"
            assert settled_now == [], f"{context} settled {settled_now}"

    def check_error(self, error: object, expect: Expect) -> None:
        if expect.outcome == "APIError":
            assert isinstance(error, APIError)
            assert error.status == expect.status
        elif expect.outcome == "RetriesExhausted":
            assert isinstance(error, RetriesExhausted)
            assert error.attempts == expect.attempts
            if expect.status is None:
                assert isinstance(error.last_error, TransportError)
            else:
                assert error.status == expect.status
        elif expect.outcome == "RateLimitExceeded":
            assert isinstance(error, RateLimitExceeded)
            assert error.waited > error.limit == self.model.config.max_rate_limit_duration

    def forget(self, seqs: list[int]) -> None:
        model = self.model
        batch = model.batches.get(seqs[0])
        if batch is not None and batch.seqs == seqs:
            del model.batches[seqs[0]]
        gone = set(seqs)
        model.queue = [seq for seq in model.queue if seq not in gone]

    def check_request(self, request: Request) -> None:
        model, config = self.model, self.model.config
        assert model.now >= model.pause_end, "a batch request while a Retry-After pause runs"
        raw = gzip.decompress(request.body) if config.gzip else request.body
        assert len(raw) <= MAX_BATCH_BYTES
        body = _body_decoder.decode(raw)
        assert body.writeKey == WRITE_KEY
        # sentAt is the wall clock of this attempt, in milliseconds.
        sent_at = datetime.fromisoformat(body.sentAt).timestamp()
        assert model.wall - 0.001 < sent_at <= model.wall + 1e-6
        seqs = [model.seq_of[item.messageId] for item in body.batch]
        assert 1 <= len(seqs) <= config.upload_size
        assert request.message_count == len(seqs)
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a batch is a run of consecutive messages"
        batch = model.batches.get(seqs[0])
        if batch is None:
            # A new batch: the queue's head, due, and not closed before a message that fits.
            assert seqs == model.queue[: len(seqs)], "a batch not taken from the queue's head"
            assert model.now >= model.head_due_at() - EPS, "a batch sent before it was due"
            rest = model.queue[len(seqs) :]
            if rest and len(seqs) < config.upload_size:
                assert len(raw) + 1 + len(model.data[rest[0]]) > MAX_BATCH_BYTES, "a batch closed early"
            model.queue = rest
            batch = model.batches[seqs[0]] = BatchModel(seqs=seqs)
        else:
            assert batch.seqs == seqs
            assert batch.request_id is None, "a batch sent twice at once"
            assert model.now >= batch.earliest - EPS, "a retry sent before its backoff ended"
        for earlier in model.batches.values():
            if earlier is batch:
                break
            assert earlier.request_id is not None, "a batch overtook one waiting before it"
        headers = dict(request.headers)
        assert headers["Authorization"] == BASIC
        assert headers.get("Content-Encoding") == ("gzip" if config.gzip else None)
        assert headers.get("X-Retry-Count") == (str(batch.attempts) if batch.attempts else None)
        assert request.retry_count == batch.attempts
        batch.attempts += 1
        batch.request_id = request.id
        model.requests += 1
        assert len(model.in_flight()) <= config.max_in_flight

    # Invariants, after every step ------------------------------------------------------------

    @invariant()
    def engine_agrees_with_model(self) -> None:
        if not hasattr(self, "model"):
            return
        model, engine, config = self.model, self.engine, self.model.config
        pending = len(model.data) - len(model.settled)
        assert engine.pending == pending
        stats = engine.stats()
        assert stats.enqueued == len(model.data)
        assert stats.rejected == model.rejected
        assert stats.delivered == len(model.delivery_order)
        assert stats.failed == dict(model.failed_by_reason)
        assert stats.requests == model.requests
        assert stats.retries == model.retries
        assert stats.rate_limit_waits == model.rate_limit_waits
        assert stats.queue_depth == len(model.queue)
        assert stats.queue_bytes == model.queue_bytes
        assert stats.in_flight_messages == sum(len(b.seqs) for b in model.in_flight())
        if config.max_in_flight == 1:
            assert model.delivery_order == sorted(model.delivery_order)

        deadline = engine.next_deadline()
        if engine.state is EngineState.CLOSED:
            assert pending == 0
            assert deadline is None
            return
        if model.closed and pending == 0:
            raise AssertionError("closing with nothing pending, but not closed")
        in_flight = len(model.in_flight())
        if pending and not in_flight:
            assert deadline is not None, (
                "messages pending, nothing in flight, and no deadline: a runtime sleeps forever"
            )
        if model.deadline is not None:
            assert deadline is not None
            assert deadline <= model.deadline
        # Nothing becomes due later than next_deadline says (a deadline in the past means "poll now").
        if model.now < model.pause_end:
            assert deadline is not None
            assert deadline <= model.pause_end + EPS
        elif in_flight < config.max_in_flight:
            waiting = model.first_waiting()
            if waiting is not None:
                assert deadline is not None
                assert deadline <= max(waiting.latest, model.now) + EPS, "a retry is later than its backoff allows"
            elif model.queue:
                assert deadline is not None
                assert deadline <= max(model.head_due_at(), model.now) + EPS, "a due batch is not polled for"


TestEngineMachine = EngineMachine.TestCase
