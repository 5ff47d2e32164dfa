"""``python -m segment_runtimes spool {inspect,drain} DIR``: look into a spool directory, or deliver it.

- ``inspect DIR``: what is waiting (messages, bytes, the oldest), which files are
  live (a running process writes them) or orphaned (their process is gone), and
  damaged records. Reads only: safe while clients run.
- ``drain DIR --writeKey KEY [--host URL]``: deliver what a dead host or container
  left, then exit 0 if everything got through, 1 if not (what is left stays on
  disk, and a line says how much and why).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from typing import Any

from segment_core import DeliveryError

from ._spool_inspect import inspect_spool
from .threaded import Client

__all__ = ["add_arguments", "run"]

# While draining, how long to wait between looks at what is left (recovery runs in the worker).
_LOOK_AGAIN = 0.05


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    inspect = actions.add_parser("inspect", help="show what is waiting in a spool directory")
    inspect.add_argument("directory")
    drain = actions.add_parser("drain", help="deliver a spool directory, then exit (0: all delivered)")
    drain.add_argument("directory")
    drain.add_argument("--writeKey", required=True, help="the source's write key")
    drain.add_argument("--host", default=None, help="API host (default https://api.segment.io)")
    drain.add_argument("--gzip", action="store_true", help="gzip the request bodies")
    drain.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds (default 300)")


def run(args: argparse.Namespace) -> int:
    if args.action == "inspect":
        return _inspect(args.directory)
    return _drain(args)


def _inspect(directory: str) -> int:
    try:
        report = inspect_spool(directory)
    except OSError as exc:
        print(f"error: cannot read {directory}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"spool {report.directory}")
    print(f"  pending messages: {report.pending}")
    print(f"  bytes:            {report.bytes}")
    print(f"  oldest:           {report.oldest_timestamp or '-'}")
    print(f"  damaged records:  {report.damaged}")
    live, orphaned = len(report.live_files), len(report.orphaned_files)
    print(f"  files:            {len(report.files)} ({live} live, {orphaned} orphaned)")
    for file in report.files:
        state = {True: "live", False: "orphaned", None: "unknown"}[file.live]
        print(f"    {file.path}: {file.pending} pending, {file.bytes} bytes, {len(file.damaged)} damaged, {state}")
    return 0


def _drain(args: argparse.Namespace) -> int:
    if not args.writeKey:
        print("error: the write key is empty (--writeKey): the API would refuse every message", file=sys.stderr)
        return 2
    logging.getLogger("segment").addHandler(logging.NullHandler())  # the outcome is said once, below
    failures: list[tuple[DeliveryError, int]] = []

    def on_error(error: Exception, batch: list[dict[str, Any]]) -> None:
        if isinstance(error, DeliveryError):
            failures.append((error, len(batch)))

    client = Client(
        args.writeKey,
        host=args.host,
        gzip=args.gzip,
        on_error=on_error,
        spool_dir=args.directory,
        shutdown_timeout=min(args.timeout, 10.0),
    )
    link = client._spool
    assert link is not None  # spool_dir was given
    deadline = time.monotonic() + args.timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        client.flush(max(min(deadline - time.monotonic(), 5.0), 0.0))
        if link.idle and link.spool.pending == 0:
            break
        pause.wait(_LOOK_AGAIN)
    delivered = client.stats().delivered
    last_error = client._engine.last_error
    client.shutdown()
    left = inspect_spool(args.directory).pending
    failed = sum(count for _, count in failures)
    if not failed and not left:
        print(f"delivered {delivered} message(s); {args.directory} is empty")
        return 0
    if failures:
        reason = f"; last error: {failures[-1][0]}"
    else:
        reason = f"; last attempt: {last_error}" if last_error is not None else ""
    print(
        f"error: delivered {delivered}, failed {failed}, {left} left in {args.directory}{reason}",
        file=sys.stderr,
    )
    return 1
