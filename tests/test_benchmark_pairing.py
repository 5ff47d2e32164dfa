"""The benchmark's schedule pairs each of our runs with a reference run right next to it.

The caller-cost and events/s ratios are only as good as that pairing: a ratio of
two runs a whole round apart carries the machine's drift in between. These
check the schedule and the ratios it feeds, without running a benchmark.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.run import OURS, DeliveryRun, paired_ratios, round_schedule

ROUNDS = range(12)


@pytest.mark.parametrize("round_", ROUNDS)
def test_each_of_ours_sits_next_to_a_reference_run_of_its_own(round_: int) -> None:
    schedule = round_schedule(round_)
    assert sorted(impl for impl, _ in schedule) == sorted([*OURS, *["reference"] * len(OURS), "replay"])
    for impl in OURS:
        ours = schedule.index((impl, impl))
        beside = {schedule[i] for i in (ours - 1, ours + 1) if 0 <= i < len(schedule)}
        assert ("reference", impl) in beside
    assert ("replay", None) in (schedule[0], schedule[-1])


def test_pairs_swap_their_order_and_ours_take_turns_going_first() -> None:
    for impl in OURS:
        reference_first = [
            round_schedule(r).index(("reference", impl)) < round_schedule(r).index((impl, impl)) for r in ROUNDS
        ]
        assert reference_first.count(True) == reference_first.count(False)
    first_of_ours = {next(impl for impl, _ in round_schedule(r) if impl in OURS) for r in ROUNDS}
    assert first_of_ours == set(OURS)


def _run(impl: str, round_: int, pair: str | None, caller_us: float) -> DeliveryRun:
    fields: dict[str, Any] = dict.fromkeys(
        ("sent", "stored", "stored_unique", "missing", "unexpected", "failed_calls", "on_error_messages"), 0
    )
    return DeliveryRun(
        impl=impl,
        round=round_,
        pair=pair,
        n=1,
        caller_us=caller_us,
        caller_cpu_us=caller_us,
        calls_only_us=caller_us,
        events_per_second=1000 / caller_us,
        events_per_second_to_flush=1000 / caller_us,
        **fields,
    )


def test_ratios_compare_runs_within_a_pair_not_across_the_round() -> None:
    runs = [
        _run("reference", 0, "threaded", 100.0),
        _run("threaded", 0, "threaded", 10.0),
        _run("reference", 0, "asyncio", 200.0),  # the machine slowed: asyncio's partner saw it too
        _run("asyncio", 0, "asyncio", 20.0),
        _run("replay", 0, None, 40.0),
        _run("reference", 1, "asyncio", 50.0),
        _run("asyncio", 1, "asyncio", 5.0),
    ]
    assert paired_ratios(runs, "threaded", "reference", "caller_us") == [0.1]
    assert paired_ratios(runs, "asyncio", "reference", "caller_us") == [0.1, 0.1]
    assert paired_ratios(runs, "asyncio", "replay", "caller_us") == [0.5]
    assert paired_ratios(runs, "reference", "replay", "caller_us") == [2.5, 5.0]
    assert paired_ratios(runs, "trio", "reference", "caller_us") == []
