"""The benchmark's table: medians of each figure, and the median (and range) of the paired ratios.

Each time figure compares one of our runs with the reference run made right
next to it (:func:`paired_ratios`): on a machine whose speed swings 2x within
seconds, only ratios of runs made seconds apart hold still. A target is judged
on the median of those ratios, never on a ratio of medians.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .results import OURS, DeliveryRun, MemoryRun, Settings, ShutdownRun, parse_label

__all__ = [
    "CALLER_COST_MAX_RATIO",
    "EVENTS_PER_SECOND_MIN_RATIO",
    "MEMORY_MAX_JSON_RATIO",
    "SPOOL_CALLER_COST_MAX_RATIO",
    "SPOOL_EVENTS_PER_SECOND_MIN_RATIO",
    "Row",
    "build_rows",
    "format_table",
    "paired_ratios",
]

# Targets, as ratios to the reference measured in the same run.
CALLER_COST_MAX_RATIO = 1 / 8
EVENTS_PER_SECOND_MIN_RATIO = 6.0
MEMORY_MAX_JSON_RATIO = 1.3
# With the disk spool and its default fsync policy ("interval"), issue 18.
SPOOL_CALLER_COST_MAX_RATIO = 1 / 5
SPOOL_EVENTS_PER_SECOND_MIN_RATIO = 4.0
# Ours must stop within its shutdown timeout; this is the allowance for process noise.
SHUTDOWN_SLACK = 1.0
# A client delivering at this fraction of the collector's replay ceiling is limited by the collector.
COLLECTOR_BOUND = 0.8


@dataclass
class Row:
    """One line of the table."""

    figure: str
    ours: str
    reference: str
    ratio: str
    target: str
    result: str  # PASS, FAIL or "" (information only)
    values: dict[str, Any] = field(default_factory=dict)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def paired_ratios(runs: Sequence[DeliveryRun], label: str, versus: str, attribute: str) -> list[float]:
    """``label / versus`` for ``attribute``, one per pair of runs that ran back to back.

    Against the reference, each of our runs pairs with the reference run scheduled next to it (see
    ``round_schedule``), whose ``pair`` is its label; against the replay, every run of ``label`` pairs
    with its round's replay.
    """
    ratios = []
    for run in runs:
        if run.label != label:
            continue
        for other in runs:
            if other.label == versus and other.round == run.round and (versus != "reference" or other.pair == run.pair):
                ratios.append(getattr(run, attribute) / getattr(other, attribute))
    return ratios


def _ratio_text(ratios: Sequence[float], inverse: bool = False) -> str:
    median = _median(ratios)
    spread = f" [{min(ratios):.2f}-{max(ratios):.2f}]" if len(ratios) > 1 else ""
    return f"{median:.2f}x{spread}" + (f" = 1/{1 / median:.1f}" if inverse else "")


class _Table:
    """Rows of paired figures over one benchmark's delivery runs."""

    def __init__(self, runs: Sequence[DeliveryRun]) -> None:
        self.runs = runs
        self.rows: list[Row] = []

    def median_of(self, label: str, attribute: str, pair: str | None = None) -> float:
        """The median over ``label``'s runs (for the reference: those paired with ``pair``, if given)."""
        return _median([getattr(r, attribute) for r in self.runs if r.label == label and pair in (None, r.pair)])

    def paired(
        self,
        figure: str,
        label: str,
        attribute: str,
        *,
        max_ratio: float | None = None,
        min_ratio: float | None = None,
        cost: bool = False,
    ) -> Row:
        """A row of ``label``'s median against its reference partners', and the median of their ratios."""
        ours = self.median_of(label, attribute)
        reference = self.median_of("reference", attribute, label)
        ratios = paired_ratios(self.runs, label, "reference", attribute)
        ratio = _median(ratios)
        target, result = "", ""
        if max_ratio is not None:
            target, result = f"≤ 1/{1 / max_ratio:.0f}", _verdict(ratio <= max_ratio)
        elif min_ratio is not None:
            target, result = f"≥ {min_ratio:g}x", _verdict(ratio >= min_ratio)
        values: dict[str, Any] = {"ours": ours, "reference": reference, "ratio": ratio, "ratios": ratios}
        if attribute == "events_per_second":
            of_ceiling = _median(paired_ratios(self.runs, label, "replay", "events_per_second"))
            values["fraction_of_collector_ceiling"] = of_ceiling
            if result == "FAIL" and of_ceiling >= COLLECTOR_BOUND:
                result = "FAIL (collector-bound)"
        row = Row(figure, _fmt(ours), _fmt(reference), _ratio_text(ratios, inverse=cost), target, result, values)
        self.rows.append(row)
        return row

    def memory_only(self) -> None:
        """Figures 1, 2 and 5: each runtime, memory only."""
        for impl in OURS:
            self.paired(f"1/5 caller cost per track, {impl} (µs)", impl, "caller_us", max_ratio=CALLER_COST_MAX_RATIO)
        self.paired("   caller thread CPU per track, threaded (µs)", "threaded", "caller_cpu_us", cost=True)
        for impl in ("asyncio", "trio"):
            self.paired(f"   {impl}: the calls alone, no delivery (µs)", impl, "calls_only_us", cost=True)
        for impl in OURS:
            self.paired(
                f"2/5 delivered events/s, {impl}", impl, "events_per_second", min_ratio=EVENTS_PER_SECOND_MIN_RATIO
            )
        ceiling = self.median_of("replay", "events_per_second")
        of_ceiling = _median(paired_ratios(self.runs, "threaded", "replay", "events_per_second"))
        ref_of_ceiling = _median(paired_ratios(self.runs, "reference", "replay", "events_per_second"))
        self.rows.append(
            Row(
                "   collector ceiling: raw replay, no client",
                _fmt(ceiling),
                _fmt(ceiling),
                f"threaded at {of_ceiling:.2f}",
                "",
                "",
                {"ceiling": ceiling, "threaded_over_ceiling": of_ceiling, "reference_over_ceiling": ref_of_ceiling},
            )
        )
        self.paired("   events/s until flush() returned, threaded", "threaded", "events_per_second_to_flush")

    def spooled(self, labels: Sequence[str]) -> None:
        """Figure 7: with the disk spool, per fsync policy (the default's rows carry issue 18's targets)."""
        policies = ("interval", "never", "always")
        by_policy = [label for fsync in policies for label in labels if parse_label(label)[1] == fsync]
        for label in by_policy:
            impl, fsync = parse_label(label)
            row = self.paired(
                f"7   caller cost per track, spool fsync={fsync}, {impl} (µs)",
                label,
                "caller_us",
                max_ratio=SPOOL_CALLER_COST_MAX_RATIO if fsync == "interval" else None,
                cost=True,
            )
            # What the spool adds to the memory-only call: medians of runs in the same rounds (not paired).
            row.values["over_memory_only_us"] = row.values["ours"] - self.median_of(impl, "caller_us")
        for label in by_policy:
            impl, fsync = parse_label(label)
            self.paired(
                f"7   delivered events/s, spool fsync={fsync}, {impl}",
                label,
                "events_per_second",
                min_ratio=SPOOL_EVENTS_PER_SECOND_MIN_RATIO if fsync == "interval" else None,
            )

    def losses(self, labels: Sequence[str]) -> None:
        """Figure 6: no event lost (and, with the spool, nothing left pending after shutdown)."""
        spooled = [label for label in labels if parse_label(label)[1] is not None]
        groups = [("6   delivery runs that lost an event", [label for label in labels if label in OURS])]
        if spooled:
            groups.append(("6/7 spool delivery runs that lost an event", spooled))
        for figure, group in groups:
            ours = [run for run in self.runs if run.label in group]
            reference = [run for run in self.runs if run.impl == "reference" and run.pair in group]
            ours_lost = sum(run.lost for run in ours)
            ref_lost = sum(run.lost for run in reference)
            self.rows.append(
                Row(
                    figure,
                    f"{ours_lost} of {len(ours)}",
                    f"{ref_lost} of {len(reference)}",
                    "",
                    "0",
                    _verdict(not ours_lost and not ref_lost),
                    {
                        "ours": ours_lost,
                        "reference": ref_lost,
                        "by_label": {label: sum(r.lost for r in ours if r.label == label) for label in group},
                    },
                )
            )
        if spooled:
            runs = [run for run in self.runs if run.label in spooled]
            left = [run for run in runs if run.spool_pending or run.spool_files]
            self.rows.append(
                Row(
                    "7   spool runs that left records or files after shutdown",
                    f"{len(left)} of {len(runs)}",
                    "",
                    "",
                    "0",
                    _verdict(not left),
                    {"runs": [{"label": r.label, "round": r.round, "pending": r.spool_pending} for r in left]},
                )
            )


def _memory_rows(memory: Sequence[MemoryRun]) -> list[Row]:
    def mem(impl: str, attribute: str) -> float:
        return _median([getattr(run, attribute) for run in memory if run.impl == impl])

    ours_bytes, ref_bytes = mem("threaded", "bytes_per_event"), mem("reference", "bytes_per_event")
    ours_json, ref_json = mem("threaded", "json_ratio"), mem("reference", "json_ratio")
    return [
        Row(
            "3   memory per queued event (bytes)",
            _fmt(ours_bytes),
            _fmt(ref_bytes),
            f"{ours_bytes / ref_bytes:.2f}x",
            "",
            "",
            {"ours": ours_bytes, "reference": ref_bytes, "ratio": ours_bytes / ref_bytes},
        ),
        Row(
            "3   ... as a multiple of its JSON",
            f"{ours_json:.2f}x",
            f"{ref_json:.2f}x",
            f"{ours_json / ref_json:.2f}x",
            f"ours ≤ {MEMORY_MAX_JSON_RATIO:g}x",
            _verdict(ours_json <= MEMORY_MAX_JSON_RATIO),
            {
                "ours": ours_json,
                "reference": ref_json,
                "ratio": ours_json / ref_json,
                "mean_json_bytes": {
                    "ours": mem("threaded", "mean_json_bytes"),
                    "reference": mem("reference", "mean_json_bytes"),
                },
            },
        ),
    ]


def _shutdown_row(shutdowns: dict[str, ShutdownRun], settings: Settings) -> Row:
    ours_stop, ref_stop = shutdowns["threaded"], shutdowns["reference"]
    timeout = 10.0 if settings.shutdown_timeout is None else settings.shutdown_timeout
    if ours_stop.seconds is None:
        ours_text, ours_passed = f"> {ours_stop.cap:g} (cap)", False
    else:
        ours_text, ours_passed = f"{ours_stop.seconds:.2f}", ours_stop.seconds <= timeout + SHUTDOWN_SLACK
        ours_passed = ours_passed and ours_stop.reported_failed == ours_stop.n
    ref_text = f"> {ref_stop.cap:g} (cap)" if ref_stop.seconds is None else f"{ref_stop.seconds:.2f}"
    if ours_stop.seconds is not None and ref_stop.seconds is None:
        ratio_text = f"< {ours_stop.seconds / ref_stop.cap:.2f}x"
    elif ours_stop.seconds is not None and ref_stop.seconds is not None:
        ratio_text = f"{ours_stop.seconds / ref_stop.seconds:.2f}x"
    else:
        ratio_text = "?"
    return Row(
        f"4   shutdown, server down, {ours_stop.n} queued (s)",
        ours_text,
        ref_text,
        ratio_text,
        f"ours ≤ timeout {timeout:g}+{SHUTDOWN_SLACK:g} s, all reported",
        _verdict(ours_passed),
        {"ours": asdict(ours_stop), "reference": asdict(ref_stop)},
    )


def build_rows(
    runs: list[DeliveryRun], memory: list[MemoryRun], shutdowns: dict[str, ShutdownRun], settings: Settings
) -> list[Row]:
    """The table: medians of each figure, and the median of the paired ratios (ours / reference)."""
    table = _Table(runs)
    table.memory_only()
    rows = [*table.rows, *_memory_rows(memory), _shutdown_row(shutdowns, settings)]
    table.rows = []
    spooled = [label for label in settings.labels if parse_label(label)[1] is not None]
    if spooled:
        table.spooled(spooled)
    table.losses(settings.labels)
    return [*rows, *table.rows]


def format_table(rows: Sequence[Row]) -> str:
    """The rows as aligned text columns."""
    header = ("figure", "ours", "reference", "ratio", "target", "result")
    cells = [header, *((r.figure, r.ours, r.reference, r.ratio, r.target, r.result) for r in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = []
    for index, line in enumerate(cells):
        text = "  ".join(
            cell.ljust(width) if column == 0 or column >= 4 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        lines.append(text.rstrip())
        if index == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)
