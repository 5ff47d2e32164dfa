"""Compare segment-sansio with segment-analytics-python 2.4 in one run, on loopback.

Usage, from the repository root (after ``pip install -e '.[bench]'``)::

    python -m benchmarks.run [--quick] [--json PATH] [--no-spool] [--spool-root DIR]

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
   are compared with the ids the calls returned; a difference fails the run loudly;
7. figures 1, 2 and 6 again with the disk spool (``spool_dir=``), per fsync
   policy: "interval" (the default) and "never" in each runtime, "always" in
   the threaded one (the async clients refuse it); each such run has a
   reference run of its own too. The spool's directory is a fresh one under
   ``--spool-root`` (default: the temporary directory, on a real disk here;
   the run says which filesystem ``df`` reports), and after shutdown it must
   hold nothing: every record settled and every file deleted.

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
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from .report import Row, build_rows, format_table
from .results import OURS, PAIRED, DeliveryRun, MemoryRun, Settings, ShutdownRun, parse_label

__all__ = ["OURS", "PAIRED", "Settings", "main", "round_schedule"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = Path(__file__).resolve().parent / "results.json"

# Seven rounds: the median of seven paired ratios holds still on a machine whose speed swings 2x
# within seconds, where five did not always (about 2.5 minutes for the memory-only runs, 7 with
# the spool's).
FULL = Settings(
    n=8000, rounds=7, memory_n=5000, memory_rounds=3, shutdown_n=1000, shutdown_timeout=None, shutdown_cap=20.0
)
QUICK = Settings(
    n=2500, rounds=2, memory_n=2000, memory_rounds=1, shutdown_n=500, shutdown_timeout=2.0, shutdown_cap=5.0
)


class BenchmarkError(RuntimeError):
    """A measurement could not be made (a child crashed, the collector did not start)."""


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


# --- figures 1, 2, 5, 6, 7: delivery runs ----------------------------------------------------


def round_schedule(round_: int, labels: Sequence[str] = PAIRED) -> list[tuple[str, str | None]]:
    """The delivery runs of one round, in order: ``(label, pair)``.

    Each of our kinds of run (``labels``: a runtime, memory only or with the spool under an fsync
    policy) runs right next to a reference run of its own, ``("reference", label)``, so each ratio
    compares two runs a few seconds apart rather than a whole round apart: this machine's speed
    swings within seconds. Ours take turns going first, each pair swaps its order from round to round,
    and the replay (the collector's ceiling, no client) runs once per round, at its end or its start.
    """
    shift = round_ % len(labels)
    schedule: list[tuple[str, str | None]] = []
    for label in [*labels[shift:], *labels[:shift]]:
        pair: list[tuple[str, str | None]] = [("reference", label), (label, label)]
        schedule += pair if (round_ + labels.index(label)) % 2 == 0 else pair[::-1]
    replay: tuple[str, str | None] = ("replay", None)
    return [*schedule, replay] if round_ % 2 == 0 else [replay, *schedule]


def delivery_run(
    label: str, round_: int, n: int, directory: Path, pair: str | None = None, spool_root: Path | None = None
) -> DeliveryRun:
    """One delivery run against a fresh collector; checks that every event arrived.

    ``label`` is ``"reference"``, ``"replay"`` or one of ours (see ``benchmarks.results``); a spool
    run gets a fresh directory under ``spool_root``, removed afterwards.
    """
    impl, fsync = parse_label(label)
    name = f"deliver-{label}-{round_}-{pair}".replace("+", "-").replace(":", "-")
    ids_path = directory / f"{name}.ids"
    args = ["deliver", impl, "--n", str(n), "--ids", str(ids_path)]
    # A reference run paired with an async runtime is called from that runtime's event loop, as
    # async services call it today: the two runs of a pair differ only in the client.
    partner = None if pair is None else parse_label(pair)[0]
    if impl == "reference" and partner in ("asyncio", "trio"):
        args += ["--loop", partner]
    with contextlib.ExitStack() as stack:
        if fsync is not None:
            spool_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"{name}-", dir=spool_root))
            args += ["--spool-dir", spool_dir, "--fsync", fsync]
        server = stack.enter_context(collector(directory, name))
        result = run_child([*args, "--url", server.url], timeout=300.0)
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
        spool=fsync,
        spool_pending=result.get("spool_pending", 0),
        spool_files=result.get("spool_files", 0),
    )
    if len(expected) != run.sent:
        run.missing += run.sent - len(expected)  # repeated messageIds from the client: not n distinct events
    if run.lost:
        log(
            f"!!! EVENT LOSS in {label} run {round_}: sent {run.sent}, collector holds {run.stored_unique} distinct "
            f"messageIds ({run.missing} missing, {run.unexpected} unexpected), {run.failed_calls} calls refused, "
            f"{run.on_error_messages} reported to on_error"
        )
    if run.spool_pending or run.spool_files:
        left = f"{run.spool_pending} pending records in {run.spool_files} files"
        log(f"!!! {label} run {round_}: after shutdown the spool still holds {left}")
    return run


# --- figure 3: memory ------------------------------------------------------------------------


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


def filesystem_of(path: Path) -> dict[str, str]:
    """What ``df -PT`` says holds ``path``: its device, filesystem type and mount point."""
    try:
        done = subprocess.run(["df", "-PT", str(path)], capture_output=True, text=True, timeout=10.0, check=True)
        device, fstype, *_, mount = done.stdout.splitlines()[-1].split()
    except (OSError, subprocess.SubprocessError, ValueError):
        return {"path": str(path), "device": "?", "type": "?", "mounted_on": "?"}
    return {"path": str(path), "device": device, "type": fstype, "mounted_on": mount}


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


def measure(settings: Settings, directory: Path, spool_root: Path) -> dict[str, Any]:
    started = time.monotonic()
    load_at_start = os.getloadavg()
    load_by_round: list[tuple[float, float, float]] = []
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
        load_by_round.append(os.getloadavg())
        log(f"round {round_}: load average {load_by_round[-1][0]:.2f}")
        for label, pair in round_schedule(round_, settings.labels):
            run = delivery_run(label, round_, settings.n, directory, pair, spool_root)
            runs.append(run)
            shown = f"{label} ({pair})" if label == "reference" else label
            log(
                f"delivery round {round_} {shown:35}: {run.caller_us:7.1f} µs/call "
                f"({run.caller_cpu_us:.1f} µs CPU, {run.calls_only_us:.1f} µs calls only), "
                f"{run.events_per_second:8.0f} events/s, "
                f"{run.stored_unique}/{run.sent} stored{'  LOST EVENTS' if run.lost else ''}"
            )
    rows = build_rows(runs, memory, shutdowns, settings)
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            **_machine(),
            "load_average_at_start": load_at_start,
            "load_average_by_round": load_by_round,
            "load_average_at_end": os.getloadavg(),
        },
        "versions": _versions(),
        "settings": asdict(settings),
        "collector": "python -m segment_runtimes collector in a separate process, a fresh SQLite file per run "
        f"(in {_scratch_root() or tempfile.gettempdir()}); loss check: the distinct messageIds stored "
        "vs the ids the calls returned",
        "spool": {**filesystem_of(spool_root), "note": "a fresh directory per spool run, removed after it"},
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
    parser.add_argument("--quick", action="store_true", help="fewer, smaller runs: about 45 s")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write the figures ({DEFAULT_JSON})")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of delivery runs (overrides the preset)")
    parser.add_argument("--n", type=int, default=None, help="track calls per delivery run (overrides the preset)")
    parser.add_argument("--no-spool", action="store_true", help="memory-only runs: none of the spool's rows")
    parser.add_argument(
        "--spool-root",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where the spool runs' directories go: a real disk, as in production (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    overrides = {key: value for key, value in (("rounds", args.rounds), ("n", args.n)) if value is not None}
    if args.no_spool:
        overrides["labels"] = OURS
    if overrides:
        settings = replace(settings, **overrides)
    log(f"segment-sansio vs segment-analytics-python, {'quick' if args.quick else 'full'} run: {settings}")
    spool_fs = filesystem_of(args.spool_root)
    log(f"spool runs in {args.spool_root}: {spool_fs['type']} on {spool_fs['device']} (df -PT)")
    with tempfile.TemporaryDirectory(prefix="segment-bench-", dir=_scratch_root()) as directory:
        report = measure(settings, Path(directory), args.spool_root)
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
    spool = report["spool"]
    print(
        f"spool runs: a fresh directory under {spool['path']} ({spool['type']} on {spool['device']}, "
        f"mounted on {spool['mounted_on']})"
    )
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
