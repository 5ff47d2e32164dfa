"""The benchmark's schedule pairs each of our runs with a reference run right next to it.

The caller-cost and events/s ratios are only as good as that pairing: a ratio of
two runs a whole round apart carries the machine's drift in between. These
check the schedule and the ratios it feeds, without running a benchmark.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.report import paired_ratios
from benchmarks.results import OURS, PAIRED, SPOOLED, DeliveryRun, parse_label, spool_label
from benchmarks.run import round_schedule

ROUNDS = range(12)


@pytest.mark.parametrize("labels", [OURS, PAIRED])
@pytest.mark.parametrize("round_", ROUNDS)
def test_each_of_ours_sits_next_to_a_reference_run_of_its_own(round_: int, labels: tuple[str, ...]) -> None:
    schedule = round_schedule(round_, labels)
    assert sorted(label for label, _ in schedule) == sorted([*labels, *["reference"] * len(labels), "replay"])
    for label in labels:
        ours = schedule.index((label, label))
        beside = {schedule[i] for i in (ours - 1, ours + 1) if 0 <= i < len(schedule)}
        assert ("reference", label) in beside
    assert ("replay", None) in (schedule[0], schedule[-1])


@pytest.mark.parametrize("labels", [OURS, PAIRED])
def test_pairs_swap_their_order_and_ours_take_turns_going_first(labels: tuple[str, ...]) -> None:
    rounds = range(2 * len(labels))
    for label in labels:
        reference_first = [
            round_schedule(r, labels).index(("reference", label)) < round_schedule(r, labels).index((label, label))
            for r in rounds
        ]
        assert reference_first.count(True) == reference_first.count(False)
    first_of_ours = {next(label for label, _ in round_schedule(r, labels) if label in labels) for r in rounds}
    assert first_of_ours == set(labels)


def test_spool_labels_name_a_runtime_and_a_policy_and_always_is_threaded_only() -> None:
    assert [parse_label(label) for label in OURS] == [(impl, None) for impl in OURS]
    assert all(spool_label(*parse_label(label)) == label for label in SPOOLED)  # type: ignore[arg-type]
    policies = {
        fsync: sorted(parse_label(label)[0] for label in SPOOLED if parse_label(label)[1] == fsync)
        for fsync in ("never", "interval", "always")
    }
    assert policies == {"never": sorted(OURS), "interval": sorted(OURS), "always": ["threaded"]}


def _run(impl: str, round_: int, pair: str | None, caller_us: float, spool: str | None = None) -> DeliveryRun:
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
        spool=spool,
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


def test_a_spool_run_pairs_with_its_own_reference_run_not_its_runtimes() -> None:
    spooled = spool_label("threaded", "interval")
    runs = [
        _run("reference", 0, "threaded", 100.0),
        _run("threaded", 0, "threaded", 10.0),
        _run("threaded", 0, spooled, 30.0, spool="interval"),
        _run("reference", 0, spooled, 150.0),
    ]
    assert paired_ratios(runs, spooled, "reference", "caller_us") == [0.2]
    assert paired_ratios(runs, "threaded", "reference", "caller_us") == [0.1]
