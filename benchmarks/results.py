"""What the benchmark measures, run by run: its settings, one record per run, and the labels that pair them.

A *label* names one kind of our delivery run: a runtime alone (``threaded``,
``asyncio``, ``trio``: memory only), or a runtime with the disk spool under one
fsync policy (``threaded+spool:interval``). Every one of our runs has a
reference run of its own right next to it, whose ``pair`` is that label; the
reference run is the same whatever the label, but for the event loop it is
called from (that of the label's runtime). :mod:`benchmarks.run` makes the
runs, :mod:`benchmarks.report` turns them into the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "FSYNC_POLICIES",
    "OURS",
    "PAIRED",
    "SPOOLED",
    "DeliveryRun",
    "MemoryRun",
    "Settings",
    "ShutdownRun",
    "parse_label",
    "spool_label",
]

OURS = ("threaded", "asyncio", "trio")
# The spool's fsync policies; "interval" is the default. "always" fsyncs in the caller's thread,
# which the async clients refuse (it would block the event loop).
FSYNC_POLICIES = ("never", "interval", "always")
DEFAULT_FSYNC = "interval"


def spool_label(impl: str, fsync: str) -> str:
    """The label of ``impl``'s runs with the disk spool under ``fsync``."""
    return f"{impl}+spool:{fsync}"


def parse_label(label: str) -> tuple[str, str | None]:
    """``(runtime or "reference" or "replay", fsync policy or None)`` of a label."""
    impl, _, fsync = label.partition("+spool:")
    return impl, fsync or None


SPOOLED = tuple(
    spool_label(impl, fsync)
    for fsync, impls in (("interval", OURS), ("never", OURS), ("always", ("threaded",)))
    for impl in impls
)
PAIRED = OURS + SPOOLED


@dataclass(frozen=True)
class Settings:
    """How much to measure."""

    n: int  # track calls per delivery run
    rounds: int  # delivery runs of each label, each paired with a reference run
    memory_n: int  # events queued per memory run
    memory_rounds: int
    shutdown_n: int  # events queued before shutting down with the server down
    shutdown_timeout: float | None  # ours; None: its default shutdown_timeout
    shutdown_cap: float  # seconds the reference may take before it counts as hung
    labels: tuple[str, ...] = PAIRED  # our kinds of delivery run (OURS alone: no spool rows)


@dataclass
class DeliveryRun:
    """One delivery run: the caller's loop, then flush and shutdown, checked against the collector."""

    impl: str
    round: int
    pair: str | None  # the label a reference run is paired with (ours: its own label; the replay: None)
    n: int
    caller_us: float  # wall time of the caller's loop / n
    caller_cpu_us: float  # the caller thread's CPU time in the loop / n
    calls_only_us: float  # async runtimes: the loop minus its yields to the event loop (delivery) / n
    events_per_second: float  # n / (first call ... shutdown returned)
    events_per_second_to_flush: float  # n / (first call ... flush returned)
    sent: int  # warm-up included
    stored: int
    stored_unique: int
    missing: int
    unexpected: int
    failed_calls: int
    on_error_messages: int
    spool: str | None = None  # ours with the disk spool: its fsync policy
    spool_pending: int = 0  # records the spool still held as pending after shutdown
    spool_files: int = 0  # spool files left after shutdown

    @property
    def label(self) -> str:
        """Which kind of run this is (see the module docstring)."""
        return self.impl if self.spool is None else spool_label(self.impl, self.spool)

    @property
    def lost(self) -> bool:
        """Whether any accepted event did not arrive exactly once in the collector (or a call was refused)."""
        return bool(
            self.missing
            or self.unexpected
            or self.failed_calls
            or self.on_error_messages
            or self.stored_unique != self.sent
        )


@dataclass
class MemoryRun:
    """Python memory held per queued event with sending stalled."""

    impl: str
    round: int
    n: int
    accepted: int
    bytes_per_event: float
    mean_json_bytes: float
    top: list[dict[str, Any]]

    @property
    def json_ratio(self) -> float:
        """Memory per queued event as a multiple of the event's JSON."""
        return self.bytes_per_event / self.mean_json_bytes


@dataclass
class ShutdownRun:
    """Shutting down with the server down."""

    impl: str
    n: int
    timeout: float | None
    cap: float
    seconds: float | None  # None: still running at the cap (killed)
    reported_failed: int | None  # messages reported through on_error (ours: all n, once)
