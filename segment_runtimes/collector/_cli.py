"""``python -m segment_runtimes collector``: the loopback collector as a command.

Strategy: parse flags into :class:`~segment_runtimes.collector.Faults`, OAuth settings and a
:class:`~segment_runtimes.collector.Collector`, start it, print where it listens and where its
live viewer is, then wait for Ctrl-C or SIGTERM with a signal handler setting an event (no
polling of the store). Everything acknowledged is committed before its reply, so stopping loses
nothing. Printed message lines are made terminal-safe: message content never writes escape
sequences to the user's terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sqlite3
import sys
import threading
from collections.abc import Iterator
from typing import Any

from . import DEFAULT_FAULT_KINDS, DEFAULT_READ_TIMEOUT, FAULT_KINDS, Collector, Faults, OAuthServerSettings
from ._store import StoredMessage

__all__ = ["add_arguments", "print_message", "printable", "run", "stop_signals", "wait_for_stop"]


def _fault_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(kind.strip() for kind in text.split(",") if kind.strip())
    unknown = [kind for kind in kinds if kind not in FAULT_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"choose from {','.join(FAULT_KINDS)}")
    return kinds


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be within [0, 1]")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``collector`` subcommand's flags to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port, 0 for any free one (default 8080)")
    parser.add_argument("--db", default=None, help="SQLite file to store messages in (default: a temporary file)")
    parser.add_argument("--faults", type=_rate, default=0.0, metavar="RATE", help="fault rate in [0, 1]")
    parser.add_argument("--seed", type=int, default=0, help="seed for fault injection")
    parser.add_argument(
        "--fault-kinds",
        type=_fault_kinds,
        default=DEFAULT_FAULT_KINDS,
        metavar="K1,K2",
        help=f"faults to inject, from {','.join(FAULT_KINDS)} (default: all but 400)",
    )
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds sent with 429")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the latency fault adds")
    parser.add_argument(
        "--write-key", action="append", default=None, help="accepted write key (repeatable; default: any)"
    )
    parser.add_argument("--read-timeout", type=float, default=DEFAULT_READ_TIMEOUT, help="seconds per request")
    parser.add_argument("--oauth-public-key", default=None, metavar="PEM_FILE", help="turn on OAuth with this key")
    parser.add_argument("--oauth-key-id", default=None, help="OAuth key id (kid)")
    parser.add_argument("--oauth-client-id", default=None, help="OAuth client id")
    parser.add_argument("--quiet", action="store_true", help="do not print each message")


def printable(text: str | None) -> str:
    """``text`` with every non-printable character replaced by ``?`` (no terminal escapes)."""
    return "" if text is None else "".join(ch if ch.isprintable() else "?" for ch in text)


def print_message(message: StoredMessage) -> None:
    """Print one stored message as a line: type, messageId, who, event or name, duplicate flag."""
    who = f"userId={message.user_id}" if message.user_id else f"anonymousId={message.anonymous_id}"
    line = f"{message.type} {message.message_id} {who} {message.event_or_name or ''}".rstrip()
    print(printable(line) + (" [duplicate]" if message.duplicate else ""), flush=True)


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """Within the block, Ctrl-C and SIGTERM set the event yielded (instead of raising).

    Handlers are installed on entry, before anything is announced, so that a signal sent by a
    script that has just read our first line is never lost; they are restored on exit. Outside
    the main thread no handler can be installed, and the event is only set by the caller.
    """
    stopping = threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stopping.set())
    try:
        yield stopping
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def wait_for_stop(stopping: threading.Event) -> None:
    """Block until ``stopping`` is set (see :func:`stop_signals`) or a KeyboardInterrupt arrives."""
    with contextlib.suppress(KeyboardInterrupt):
        # A timed wait, so that a KeyboardInterrupt from another handler is seen promptly.
        while not stopping.wait(0.5):
            pass


def run(args: argparse.Namespace) -> int:
    """Run the collector until Ctrl-C or SIGTERM; everything acknowledged is committed.

    The first line printed is ``listening on <url>`` (scripts read it), the second the viewer's.

    Returns:
        0 after a clean stop, 1 if the address cannot be bound or the database opened, 2 for
        bad OAuth settings.
    """
    oauth = None
    if args.oauth_public_key:
        if not (args.oauth_key_id and args.oauth_client_id):
            print("--oauth-public-key needs --oauth-key-id and --oauth-client-id", file=sys.stderr)
            return 2
        with open(args.oauth_public_key, encoding="ascii") as pem:
            oauth = OAuthServerSettings(pem.read(), args.oauth_key_id, args.oauth_client_id)
    faults = Faults(
        rate=args.faults, seed=args.seed, kinds=args.fault_kinds, retry_after=args.retry_after, latency=args.latency
    )
    collector = Collector(
        port=args.port,
        db_path=args.db,
        write_keys=args.write_key,
        faults=faults,
        oauth=oauth,
        host=args.host,
        read_timeout=args.read_timeout,
        on_message=None if args.quiet else print_message,
    )
    with stop_signals() as stopping:
        try:
            try:
                collector.start()
            except sqlite3.Error as exc:
                print(f"cannot open {args.db}: {exc}", file=sys.stderr)
                return 1
            except OSError as exc:
                print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
                return 1
            print(f"listening on {collector.url}", flush=True)
            print(f"live event viewer: {collector.viewer_url}", flush=True)
            wait_for_stop(stopping)
        finally:
            collector.stop()
    if args.db:
        print(f"stopped: {collector.count()} messages in {args.db}", file=sys.stderr)
    return 0
