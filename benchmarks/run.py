"""Compare segment-sansio with segment-analytics-python 2.4 in one run, on loopback.

Usage, from the repository root (after ``pip install -e '.[bench]'``)::

    python -m benchmarks.run [--quick] [--json PATH]

Every figure comes from the same workload (:mod:`benchmarks.workload`: a
``track`` call with ten properties and a context), from several runs that
alternate between this project and the reference, each in a fresh process
(:mod:`benchmarks.child`); each of our runs has a reference run of its own
right before or after it. The table shows MEDIANS and RATIOS (ours /
reference, pair by pair): on a shared, noisy machine, ratios of runs made
seconds apart are what mean something, not absolute times.

Figures:

1. caller cost per ``track`` call (µs): wall time of the caller's loop of N
   calls, divided by N, while the client delivers to the collector (the
   caller's thread CPU time is shown too: with the GIL, the wall time also
   holds the time the worker thread took from the caller). The async loops
   yield to the event loop every 10 calls, as a server awaits between
   requests; delivery then runs on the caller's thread, so it is part of the
   cost, and "the calls alone" (the loop minus those yields) is shown too.
   The reference run paired with an async runtime is called from the same
   kind of loop, yielding as often, as async services call it today;
2. delivered events per second: N calls, then flush and shutdown, all N
   stored by the collector;
3. Python memory per queued event (tracemalloc) with sending stalled, and its
   ratio to the mean ``len(json.dumps(msg))`` of the messages the calls returned;
4. shutdown time with the server down (ours: ``shutdown()``; the reference's
   ``flush()`` + ``join()``, bounded by a cap since it retries with backoff);
5. caller cost and delivered events/s of each of our runtimes (threaded,
   asyncio, trio);
6. no event lost: after every delivery run the collector's stored messageIds
   are compared with the ids the calls returned; a difference fails the run loudly.

The collector is ``python -m segment_runtimes collector`` in its own process
(so its CPU time is not the caller's), with a fresh SQLite file per run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import selectors
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["Settings", "main"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = Path(__file__).resolve().parent / "results.json"
OURS = ("threaded", "asyncio", "trio")

# Targets, as ratios to the reference measured in the same run.
CALLER_COST_MAX_RATIO = 1 / 8
EVENTS_PER_SECOND_MIN_RATIO = 6.0
MEMORY_MAX_JSON_RATIO = 1.3
# Ours must stop within its shutdown timeout; this is the allowance for process noise.
SHUTDOWN_SLACK = 1.0
# A client delivering at this fraction of the collector's replay ceiling is limited by the collector.
COLLECTOR_BOUND = 0.8


@dataclass(frozen=True)
class Settings:
    """How much to measure."""

    n: int  # track calls per delivery run
    rounds: int  # delivery runs of each of ours, each paired with a reference run
    memory_n: int  # events queued per memory run
    memory_rounds: int
    shutdown_n: int  # events queued before shutting down with the server down
    shutdown_timeout: float | None  # ours; None: its default shutdown_timeout
    shutdown_cap: float  # seconds the reference may take before it counts as hung


# Seven rounds: the median of seven paired ratios holds still on a machine whose speed swings 2x
# within seconds, where five did not always (about 2.5 minutes in all).
FULL = Settings(
    n=8000, rounds=7, memory_n=5000, memory_rounds=3, shutdown_n=1000, shutdown_timeout=None, shutdown_cap=20.0
)
QUICK = Settings(
    n=2500, rounds=2, memory_n=2000, memory_rounds=1, shutdown_n=500, shutdown_timeout=2.0, shutdown_cap=5.0
)


class BenchmarkError(RuntimeError):
    """A measurement could not be made (a child crashed, the collector did not start)."""


class EventLoss(AssertionError):
    """The collector did not receive exactly the events the client accepted."""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- processes -------------------------------------------------------------------------------


def _child_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.child", *args]


def _last_json(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    raise BenchmarkError(f"no result from the child; its output ended with: {stdout[-500:]!r}")


def run_child(args: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run one measurement; its result is the last JSON line it prints."""
    try:
        done = subprocess.run(
            _child_command(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(f"child {' '.join(args)} took more than {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise BenchmarkError(f"child {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return _last_json(done.stdout)


class CollectorProcess:
    """``python -m segment_runtimes collector --port 0 --db DB --quiet`` in its own process."""

    _LISTENING = re.compile(r"^listening on (http://\S+)\s*$")

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._stderr = open(db_path.with_suffix(".stderr"), "w+b")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "segment_runtimes", "collector", "--port", "0", "--db", str(db_path), "--quiet"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        try:
            self.url = self._read_url(timeout=30.0)
        except BaseException:
            self.stop()
            raise

    def _read_url(self, timeout: float) -> str:
        stdout = self._process.stdout
        assert stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                raise BenchmarkError(f"the collector printed nothing within {timeout:.0f} s")
        line = stdout.readline()
        match = self._LISTENING.match(line)
        if match is None:
            self._stderr.seek(0)
            raise BenchmarkError(f"unexpected collector output {line!r}: {self._stderr.read()[-1000:]!r}")
        return match.group(1)

    def stored_ids(self) -> list[str]:
        """Every stored messageId (duplicates repeated), read from the SQLite file."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10.0)) as db:
            return [row[0] for row in db.execute("SELECT message_id FROM messages")]

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10.0)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.close()


@contextlib.contextmanager
def collector(directory: Path, name: str) -> Iterator[CollectorProcess]:
    process = CollectorProcess(directory / f"{name}.sqlite")
    try:
        yield process
    finally:
        process.stop()


# --- figures 1, 2, 5, 6: delivery runs --------------------------------------------------------


@dataclass
class DeliveryRun:
    impl: str
    round: int
    pair: str | None  # which of our runtimes a reference run is paired with (ours: itself; the replay: None)
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

    @property
    def lost(self) -> bool:
        return bool(
            self.missing
            or self.unexpected
            or self.failed_calls
            or self.on_error_messages
            or self.stored_unique != self.sent
        )


def round_schedule(round_: int) -> list[tuple[str, str | None]]:
    """The delivery runs of one round, in order: ``(impl, pair)``.

    Each of our runtimes runs right next to a reference run of its own, so each ratio compares two
    runs a few seconds apart rather than a whole round apart: this machine's speed swings within
    seconds. Ours take turns going first, each pair swaps its order from round to round, and the replay
    (the collector's ceiling, no client) runs once per round, at its end or its start.
    """
    shift = round_ % len(OURS)
    schedule: list[tuple[str, str | None]] = []
    for impl in OURS[shift:] + OURS[:shift]:
        pair: list[tuple[str, str | None]] = [("reference", impl), (impl, impl)]
        schedule += pair if (round_ + OURS.index(impl)) % 2 == 0 else pair[::-1]
    replay: tuple[str, str | None] = ("replay", None)
    return [*schedule, replay] if round_ % 2 == 0 else [replay, *schedule]


def delivery_run(impl: str, round_: int, n: int, directory: Path, pair: str | None = None) -> DeliveryRun:
    """One delivery run against a fresh collector; checks that every event arrived."""
    name = f"deliver-{impl}-{round_}-{pair}"
    ids_path = directory / f"{name}.ids"
    # A reference run paired with an async runtime is called from that runtime's event loop, as
    # async services call it today: the two runs of a pair differ only in the client.
    loop = ["--loop", pair] if impl == "reference" and pair in ("asyncio", "trio") else []
    with collector(directory, name) as server:
        result = run_child(
            ["deliver", impl, "--n", str(n), "--url", server.url, "--ids", str(ids_path), *loop], timeout=300.0
        )
        stored = server.stored_ids()
    expected = set(ids_path.read_text(encoding="ascii").split())
    unique = set(stored)
    run = DeliveryRun(
        impl=impl,
        round=round_,
        pair=pair,
        n=n,
        caller_us=result["loop_ns"] / n / 1000,
        caller_cpu_us=result["loop_thread_cpu_ns"] / n / 1000,
        calls_only_us=result["loop_calls_only_ns"] / n / 1000,
        events_per_second=n / (result["end_ns"] / 1e9),
        events_per_second_to_flush=n / (result["flushed_ns"] / 1e9),
        sent=result["sent"],
        stored=len(stored),
        stored_unique=len(unique),
        missing=len(expected - unique),
        unexpected=len(unique - expected),
        failed_calls=result["failed_calls"],
        on_error_messages=result["on_error_messages"],
    )
    if len(expected) != run.sent:
        run.missing += run.sent - len(expected)  # repeated messageIds from the client: not n distinct events
    if run.lost:
        log(
            f"!!! EVENT LOSS in {impl} run {round_}: sent {run.sent}, collector holds {run.stored_unique} distinct "
            f"messageIds ({run.missing} missing, {run.unexpected} unexpected), {run.failed_calls} calls refused, "
            f"{run.on_error_messages} reported to on_error"
        )
    return run


# --- figure 3: memory ------------------------------------------------------------------------


@dataclass
class MemoryRun:
    impl: str
    round: int
    n: int
    accepted: int
    bytes_per_event: float
    mean_json_bytes: float
    top: list[dict[str, Any]]

    @property
    def json_ratio(self) -> float:
        return self.bytes_per_event / self.mean_json_bytes


def memory_run(impl: str, round_: int, n: int) -> MemoryRun:
    result = run_child(["memory", impl, "--n", str(n)], timeout=300.0)
    if result["accepted"] != n:
        raise BenchmarkError(f"{impl} accepted {result['accepted']} of {n} events in the memory run")
    return MemoryRun(
        impl=impl,
        round=round_,
        n=n,
        accepted=result["accepted"],
        bytes_per_event=result["bytes_per_event"],
        mean_json_bytes=result["mean_json_bytes"],
        top=result["top"],
    )


# --- figure 4: shutdown with the server down --------------------------------------------------


@dataclass
class ShutdownRun:
    impl: str
    n: int
    timeout: float | None
    cap: float
    seconds: float | None  # None: still running at the cap (killed)
    reported_failed: int | None  # messages reported through on_error (ours: all n, once)


def shutdown_run(impl: str, n: int, timeout: float | None, cap: float) -> ShutdownRun:
    """Queue n events with the server down and time shutting down; kill the child at ``cap``."""
    args = ["shutdown", impl, "--n", str(n)]
    if timeout is not None and impl != "reference":
        args += ["--timeout", str(timeout)]
    process = subprocess.Popen(
        _child_command(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert process.stdout is not None
    try:
        first = process.stdout.readline()
        if "shutting-down" not in first:
            process.kill()
            raise BenchmarkError(f"shutdown child {impl}: unexpected output {first!r}")
        try:
            process.wait(timeout=cap)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return ShutdownRun(impl, n, timeout, cap, seconds=None, reported_failed=None)
        result = _last_json(process.stdout.read())
    finally:
        process.stdout.close()
    return ShutdownRun(impl, n, timeout, cap, seconds=result["seconds"], reported_failed=result["on_error_messages"])


# --- the report --------------------------------------------------------------------------------


@dataclass
class Row:
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


def paired_ratios(runs: Sequence[DeliveryRun], impl: str, versus: str, attribute: str) -> list[float]:
    """``impl / versus`` for ``attribute``, one per pair of runs that ran back to back.

    Against the reference, each of our runs pairs with the reference run scheduled next to it (see
    ``round_schedule``); against the replay, every run of ``impl`` pairs with its round's replay.
    """
    ratios = []
    for run in runs:
        if run.impl != impl:
            continue
        for other in runs:
            if other.impl == versus and other.round == run.round and (versus != "reference" or other.pair == run.pair):
                ratios.append(getattr(run, attribute) / getattr(other, attribute))
    return ratios


def _ratio_text(ratios: Sequence[float], inverse: bool = False) -> str:
    median = _median(ratios)
    spread = f" [{min(ratios):.2f}-{max(ratios):.2f}]" if len(ratios) > 1 else ""
    return f"{median:.2f}x{spread}" + (f" = 1/{1 / median:.1f}" if inverse else "")


def build_rows(
    runs: list[DeliveryRun], memory: list[MemoryRun], shutdowns: dict[str, ShutdownRun], settings: Settings
) -> list[Row]:
    """The table: medians of each figure, and the median of the paired ratios (ours / reference)."""

    def median_of(impl: str, attribute: str, pair: str | None = None) -> float:
        """The median over ``impl``'s runs (for the reference: those paired with ``pair``, if given)."""
        return _median([getattr(run, attribute) for run in runs if run.impl == impl and pair in (None, run.pair)])

    rows: list[Row] = []
    for impl in OURS:
        ref_cost = median_of("reference", "caller_us", impl)
        cost = median_of(impl, "caller_us")
        ratios = paired_ratios(runs, impl, "reference", "caller_us")
        rows.append(
            Row(
                f"1/5 caller cost per track, {impl} (µs)",
                _fmt(cost),
                _fmt(ref_cost),
                _ratio_text(ratios, inverse=True),
                f"≤ 1/{1 / CALLER_COST_MAX_RATIO:.0f}",
                _verdict(_median(ratios) <= CALLER_COST_MAX_RATIO),
                {"ours": cost, "reference": ref_cost, "ratio": _median(ratios), "ratios": ratios},
            )
        )
    ref_cpu = median_of("reference", "caller_cpu_us", "threaded")
    cpu = median_of("threaded", "caller_cpu_us")
    ratios = paired_ratios(runs, "threaded", "reference", "caller_cpu_us")
    rows.append(
        Row(
            "   caller thread CPU per track, threaded (µs)",
            _fmt(cpu),
            _fmt(ref_cpu),
            _ratio_text(ratios, inverse=True),
            "",
            "",
            {"ours": cpu, "reference": ref_cpu, "ratio": _median(ratios), "ratios": ratios},
        )
    )
    for impl in ("asyncio", "trio"):
        calls_only = median_of(impl, "calls_only_us")
        ref_calls_only = median_of("reference", "calls_only_us", impl)
        ratios = paired_ratios(runs, impl, "reference", "calls_only_us")
        rows.append(
            Row(
                f"   {impl}: the calls alone, no delivery (µs)",
                _fmt(calls_only),
                _fmt(ref_calls_only),
                _ratio_text(ratios, inverse=True),
                "",
                "",
                {"ours": calls_only, "reference": ref_calls_only, "ratio": _median(ratios), "ratios": ratios},
            )
        )
    for impl in OURS:
        ref_eps = median_of("reference", "events_per_second", impl)
        eps = median_of(impl, "events_per_second")
        ratios = paired_ratios(runs, impl, "reference", "events_per_second")
        of_ceiling = _median(paired_ratios(runs, impl, "replay", "events_per_second"))
        verdict = _verdict(_median(ratios) >= EVENTS_PER_SECOND_MIN_RATIO)
        if verdict == "FAIL" and of_ceiling >= COLLECTOR_BOUND:
            verdict = "FAIL (collector-bound)"
        rows.append(
            Row(
                f"2/5 delivered events/s, {impl}",
                _fmt(eps),
                _fmt(ref_eps),
                _ratio_text(ratios),
                f"≥ {EVENTS_PER_SECOND_MIN_RATIO:g}x",
                verdict,
                {
                    "ours": eps,
                    "reference": ref_eps,
                    "ratio": _median(ratios),
                    "ratios": ratios,
                    "fraction_of_collector_ceiling": of_ceiling,
                },
            )
        )
    ceiling = median_of("replay", "events_per_second")
    of_ceiling = _median(paired_ratios(runs, "threaded", "replay", "events_per_second"))
    ref_of_ceiling = _median(paired_ratios(runs, "reference", "replay", "events_per_second"))
    rows.append(
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
    ref_flush = median_of("reference", "events_per_second_to_flush", "threaded")
    flush = median_of("threaded", "events_per_second_to_flush")
    ratios = paired_ratios(runs, "threaded", "reference", "events_per_second_to_flush")
    rows.append(
        Row(
            "   events/s until flush() returned, threaded",
            _fmt(flush),
            _fmt(ref_flush),
            _ratio_text(ratios),
            "",
            "",
            {"ours": flush, "reference": ref_flush, "ratio": _median(ratios), "ratios": ratios},
        )
    )

    def mem(impl: str, attribute: str) -> float:
        return _median([getattr(run, attribute) for run in memory if run.impl == impl])

    ours_bytes, ref_bytes = mem("threaded", "bytes_per_event"), mem("reference", "bytes_per_event")
    ours_json, ref_json = mem("threaded", "json_ratio"), mem("reference", "json_ratio")
    rows.append(
        Row(
            "3   memory per queued event (bytes)",
            _fmt(ours_bytes),
            _fmt(ref_bytes),
            f"{ours_bytes / ref_bytes:.2f}x",
            "",
            "",
            {"ours": ours_bytes, "reference": ref_bytes, "ratio": ours_bytes / ref_bytes},
        )
    )
    rows.append(
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
        )
    )
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
    rows.append(
        Row(
            f"4   shutdown, server down, {ours_stop.n} queued (s)",
            ours_text,
            ref_text,
            ratio_text,
            f"ours ≤ timeout {timeout:g}+{SHUTDOWN_SLACK:g} s, all reported",
            _verdict(ours_passed),
            {"ours": asdict(ours_stop), "reference": asdict(ref_stop)},
        )
    )
    lost: dict[str, int] = {}
    for run in runs:
        lost[run.impl] = lost.get(run.impl, 0) + (run.lost and 1)
    ours_lost = sum(lost.get(impl, 0) for impl in OURS)
    ours_runs = sum(1 for run in runs if run.impl in OURS)
    ref_runs = sum(1 for run in runs if run.impl == "reference")
    rows.append(
        Row(
            "6   delivery runs that lost an event",
            f"{ours_lost} of {ours_runs}",
            f"{lost.get('reference', 0)} of {ref_runs}",
            "",
            "0",
            _verdict(not any(lost.values())),
            {"ours": ours_lost, "reference": lost.get("reference", 0), "by_impl": lost},
        )
    )
    return rows


def format_table(rows: Sequence[Row]) -> str:
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


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("segment-sansio", "segment-analytics-python", "msgspec", "httpx", "h11", "trio", "requests"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu_count": os.cpu_count(),
    }


def _scratch_root() -> str | None:
    """A RAM-backed directory for the collector's SQLite files if there is one (Linux: /dev/shm).

    On a disk the collector's commits can cap delivery well below what a client can send;
    in RAM its ceiling (see the replay row) is several times higher.
    """
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


# --- main ----------------------------------------------------------------------------------------


def _in_background(function: Callable[[], ShutdownRun]) -> Callable[[], ShutdownRun]:
    """Start ``function`` in a thread; the returned callable waits for its result."""
    box: list[ShutdownRun | BaseException] = []

    def target() -> None:
        try:
            box.append(function())
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    def result() -> ShutdownRun:
        thread.join()
        value = box[0]
        if isinstance(value, BaseException):
            raise value
        return value

    return result


def measure(settings: Settings, directory: Path) -> dict[str, Any]:
    started = time.monotonic()
    load_at_start = os.getloadavg()
    # Figure 4 waits on backoff timers, not the CPU: it runs in the background during figure 3,
    # whose figures are bytes, not times.
    log(f"figure 4: shutdown with the server down ({settings.shutdown_n} events queued), in the background")
    pending = {
        impl: _in_background(
            lambda impl=impl: shutdown_run(  # type: ignore[misc]
                impl, settings.shutdown_n, settings.shutdown_timeout, settings.shutdown_cap
            )
        )
        for impl in ("threaded", "reference")
    }
    memory: list[MemoryRun] = []
    for round_ in range(settings.memory_rounds):
        for impl in ("threaded", "reference") if round_ % 2 == 0 else ("reference", "threaded"):
            held = memory_run(impl, round_, settings.memory_n)
            memory.append(held)
            log(
                f"figure 3 round {round_} {impl:9}: {held.bytes_per_event:7.0f} bytes/event, "
                f"{held.json_ratio:.2f}x its JSON ({held.mean_json_bytes:.0f} bytes)"
            )
    shutdowns = {impl: wait() for impl, wait in pending.items()}
    for impl, stop in shutdowns.items():
        shown = f"> {stop.cap:g} s (killed)" if stop.seconds is None else f"{stop.seconds:.2f} s"
        log(f"figure 4 {impl:9}: {shown}, {stop.reported_failed} reported through on_error")

    runs: list[DeliveryRun] = []
    for round_ in range(settings.rounds):
        for impl, pair in round_schedule(round_):
            run = delivery_run(impl, round_, settings.n, directory, pair)
            runs.append(run)
            beside = f" ({pair})" if impl == "reference" else ""
            log(
                f"figures 1/2 round {round_} {impl:9}{beside:10}: {run.caller_us:7.1f} µs/call "
                f"({run.caller_cpu_us:.1f} µs CPU, {run.calls_only_us:.1f} µs calls only), "
                f"{run.events_per_second:8.0f} events/s, "
                f"{run.stored_unique}/{run.sent} stored{'  LOST EVENTS' if run.lost else ''}"
            )
    rows = build_rows(runs, memory, shutdowns, settings)
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**_machine(), "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg()},
        "versions": _versions(),
        "settings": asdict(settings),
        "collector": "python -m segment_runtimes collector in a separate process, a fresh SQLite file per run "
        f"(in {_scratch_root() or tempfile.gettempdir()}); loss check: the distinct messageIds stored "
        "vs the ids the calls returned",
        "workload": "benchmarks.workload.make_call: track, 10 properties, context",
        "duration_seconds": round(time.monotonic() - started, 1),
        "figures": [asdict(row) for row in rows],
        "delivery_runs": [{**asdict(run), "lost": run.lost} for run in runs],
        "memory_runs": [{**asdict(held), "json_ratio": held.json_ratio} for held in memory],
        "shutdown_runs": {impl: asdict(run) for impl, run in shutdowns.items()},
        "_rows": rows,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller runs: about 30 s")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write the figures ({DEFAULT_JSON})")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of delivery runs (overrides the preset)")
    parser.add_argument("--n", type=int, default=None, help="track calls per delivery run (overrides the preset)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    overrides = {key: value for key, value in (("rounds", args.rounds), ("n", args.n)) if value is not None}
    if overrides:
        settings = Settings(**{**asdict(settings), **overrides})
    log(f"segment-sansio vs segment-analytics-python, {'quick' if args.quick else 'full'} run: {settings}")
    with tempfile.TemporaryDirectory(prefix="segment-bench-", dir=_scratch_root()) as directory:
        report = measure(settings, Path(directory))
    rows: list[Row] = report.pop("_rows")
    print()
    print(
        f"segment-sansio {report['versions']['segment-sansio']} vs segment-analytics-python "
        f"{report['versions']['segment-analytics-python']}: medians of {settings.rounds} rounds of paired runs "
        f"of {settings.n} track calls ({settings.memory_rounds} for memory); ratio = ours / reference, the median "
        "[and range] of the ratios of runs paired back to back"
    )
    print(
        f"machine: {report['machine']['platform']}, {report['machine']['cpu_count']} CPUs, "
        f"Python {report['versions']['python']}, load average {report['machine']['load_average_at_start'][0]:.1f} "
        f"at start, {report['machine']['load_average_at_end'][0]:.1f} at end"
    )
    print(f"collector: {report['collector']}")
    print()
    print(format_table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nfigures written to {args.json} ({report['duration_seconds']} s)")
    failed = [row.figure.strip() for row in rows if row.result.startswith("FAIL")]
    if any("lost an event" in name for name in failed):
        print("\n!!! EVENTS WERE LOST: see the log above", file=sys.stderr)
        return 1
    if failed:
        print(f"\ntargets missed: {len(failed)}", file=sys.stderr)
    if args.quick:
        # Two rounds of short runs: a pair's ratio swings 2x on a shared machine, and two of them
        # make no median. The quick run checks that everything works and nothing is lost.
        print("(quick run: too few rounds for the time targets' verdicts to hold; the full run decides them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
