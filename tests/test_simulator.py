"""The deterministic simulator: replay, long outages, lost replies, and its own docstring."""

from __future__ import annotations

import itertools
import textwrap
from collections import Counter
from email.utils import formatdate

import msgspec
import pytest

from segment_core import EngineConfig, Request, RetriesExhausted, ShutdownDeadline, TransportFailureKind
from segment_core import testing as simulation
from segment_core.testing import Drop, Reply, ScriptedServer, Simulator, Step, Trace, VirtualClock, rate_limited

_encode = msgspec.json.Encoder().encode


def message(index: int) -> bytes:
    return _encode({"messageId": f"m{index}", "type": "track", "event": "Simulated", "userId": "u"})


def enqueue(sim: Simulator, count: int, start: int = 0) -> None:
    for index in range(start, start + count):
        assert sim.enqueue(message(index)) == index


def flaky_run(seed: int) -> tuple[Simulator, Trace]:
    """Batches that each fail a few times (status or dropped reply) before getting through."""
    steps: list[Step] = [
        Reply(status=503),
        Drop(kind=TransportFailureKind.TIMEOUT, delay=1.0),
        Reply(status=500),
        Reply(delay=0.05),
    ]

    def fail_three_times(request: Request, index: int) -> Step:
        return steps[index % 4]

    server = ScriptedServer(fail_three_times)
    sim = Simulator(EngineConfig(write_key="k", upload_size=10, max_retries=10), server, seed=seed)
    enqueue(sim, 45)
    sim.run()
    enqueue(sim, 5, start=45)
    return sim, sim.close(timeout=60.0)


def test_same_seed_same_trace() -> None:
    _, first = flaky_run(seed=42)
    _, second = flaky_run(seed=42)
    assert first.events == second.events
    assert first.requests == second.requests
    assert first.delivered == second.delivered
    assert first.delivery_order == second.delivery_order
    assert first.delivered_count == 50
    assert first.settled_twice == []


def test_different_seed_different_jitter() -> None:
    _, first = flaky_run(seed=1)
    _, second = flaky_run(seed=2)
    # Same script, same order of events: only the jittered retry times differ.
    assert [(e.kind, e.request_id) for e in first.events] == [(e.kind, e.request_id) for e in second.events]
    assert [r.time for r in first.requests] != [r.time for r in second.requests]
    assert first.delivered_count == second.delivered_count == 50


def test_retries_are_spaced_by_the_backoff() -> None:
    sim = Simulator(EngineConfig(write_key="k", max_retries=5), ScriptedServer([Reply(status=503)] * 5), seed=3)
    enqueue(sim, 1)
    trace = sim.run()
    times = [r.time for r in trace.requests]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps[0] == 0.0
    for k, gap in enumerate(gaps[1:], start=2):
        base = 0.5 * 2 ** (k - 2)
        assert base <= gap <= base * 1.1
    assert [r.retry_count for r in trace.requests] == [0, 1, 2, 3, 4, 5]
    assert trace.delivered_count == 1


def outage(seed: int) -> tuple[Simulator, Trace]:
    config = EngineConfig(write_key="k", max_queue_size=100_000, max_queue_bytes=1_000_000_000)
    sim = Simulator(config, ScriptedServer(then=Reply(status=503)), seed=seed)
    enqueue(sim, 100_000)
    sim.run(until=12 * 3600.0)
    return sim, sim.close(timeout=10.0)


def test_twelve_hour_outage_reports_every_message_once() -> None:
    sim, trace = outage(seed=5)
    assert sim.clock.now >= 12 * 3600.0
    assert sim.engine.pending == 0
    assert trace.settled_twice == []
    assert trace.delivered_count == 0
    assert sorted(trace.failed) == list(range(100_000))
    reasons = Counter(type(error).__name__ for error in trace.failed.values())
    assert set(reasons) == {"RetriesExhausted", "ShutdownDeadline"}
    exhausted = {seq: e for seq, e in trace.failed.items() if isinstance(e, RetriesExhausted)}
    # Whole batches gave up, in order, each after 1 + max_retries attempts.
    assert sorted(exhausted) == list(range(len(exhausted)))
    assert len(exhausted) % 100 == 0
    assert all(error.attempts == 11 and error.status == 503 for error in exhausted.values())
    assert all(isinstance(trace.failed[seq], ShutdownDeadline) for seq in range(len(exhausted), 100_000))
    # Nothing was sent after the deadline.
    assert max(r.time for r in trace.requests) < 12 * 3600.0 + 10.0
    stats = sim.engine.stats()
    assert stats.failed == dict(reasons)
    assert stats.requests == len(trace.requests)


def test_twelve_hour_outage_replays_exactly() -> None:
    _, first = outage(seed=9)
    _, second = outage(seed=9)
    assert first.events == second.events
    assert first.requests == second.requests
    assert {seq: type(e) for seq, e in first.failed.items()} == {seq: type(e) for seq, e in second.failed.items()}


def test_lost_replies_duplicate_at_the_server_but_report_once() -> None:
    # Every batch's first attempt is stored by the server, then the reply is lost.
    seen: set[int] = set()

    def lose_first_reply(request: Request, index: int) -> Step:
        if request.retry_count == 0:
            seen.add(request.id)
            return Drop(kind=TransportFailureKind.RESET, processed=True, delay=0.2)
        return Reply()

    server = ScriptedServer(lose_first_reply)
    sim = Simulator(EngineConfig(write_key="k", upload_size=7), server, seed=11)
    enqueue(sim, 30)
    trace = sim.close(timeout=30.0)
    received = Counter(server.received_message_ids())
    assert set(received) == {f"m{i}" for i in range(30)}
    assert set(received.values()) == {2}, "each message stored twice: the lost reply and the retry"
    assert trace.delivered_count == 30
    assert trace.delivery_order == list(range(30))
    assert trace.failed_count == 0
    assert trace.settled_twice == []
    assert len(seen) == 5


def test_unprocessed_drops_do_not_duplicate() -> None:
    server = ScriptedServer([Drop(kind=TransportFailureKind.CONNECT), Drop(kind=TransportFailureKind.TIMEOUT)])
    sim = Simulator(EngineConfig(write_key="k"), server, seed=0)
    enqueue(sim, 3)
    trace = sim.run()
    assert Counter(server.received_message_ids()) == {"m0": 1, "m1": 1, "m2": 1}
    assert trace.delivered_count == 3
    assert [r.retry_count for r in trace.requests] == [0, 1, 2]


@pytest.mark.parametrize(
    "retry_after",
    [30.0, formatdate(simulation.DEFAULT_WALL_START + 30.5, usegmt=True)],
    ids=["delta-seconds", "http-date"],
)
def test_rate_limited_reply_pauses_by_the_simulated_wall_clock(retry_after: float | str) -> None:
    sim = Simulator(EngineConfig(write_key="k", upload_interval=0.0), ScriptedServer([rate_limited(retry_after)]))
    enqueue(sim, 1)
    trace = sim.run()
    first, second = trace.requests
    assert second.time - first.time == pytest.approx(30.0)
    assert second.retry_count == 1
    assert sim.engine.stats().rate_limit_waits == 1
    assert trace.delivered_count == 1


def test_run_until_stops_the_clock_there() -> None:
    sim = Simulator(EngineConfig(write_key="k"), ScriptedServer(then=Reply(status=503)), seed=0)
    enqueue(sim, 1)
    sim.run(until=5.0)
    assert sim.clock.now == 5.0
    assert sim.engine.pending == 1
    trace = sim.close(timeout=1.0)
    assert isinstance(trace.failed[0], ShutdownDeadline)


def test_virtual_clock() -> None:
    clock = VirtualClock(monotonic=10.0, wall=1000.0)
    clock.advance(2.5)
    assert (clock.now, clock.wall) == (12.5, 1002.5)
    clock.advance_to(11.0)  # never backwards
    assert clock.now == 12.5
    with pytest.raises(ValueError):
        clock.advance(-1.0)


def test_module_docstring_example_runs() -> None:
    doc = simulation.__doc__
    assert doc is not None
    _, _, after = doc.partition("Example::")
    lines = after.strip("\n").splitlines()
    block = []
    for line in lines:
        if line and not line.startswith("    "):
            break
        block.append(line)
    code = textwrap.dedent("\n".join(block))
    assert "Simulator(" in code
    assert "assert" in code
    namespace = dict(vars(simulation))
    exec(compile(code, "segment_core.testing docstring", "exec"), namespace)  # our own docstring
    assert namespace["trace"].delivered_count == 1
