"""``python -m segment_runtimes demo``: the whole pipeline on loopback, faults included.

Starts the embedded collector on 127.0.0.1 with injected faults (server
errors, rate limits with Retry-After, dropped connections, lost replies,
latency), sends a realistic mixed workload through each runtime, shuts down,
and prints what the collector received, a few of the events, and what each
column means. Then a crash: a process tracking into a disk spool is killed
with SIGKILL mid-stream, and a fresh client on its spool delivers every event
it had accepted. Works offline; exits 0 when nothing was lost, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import time
from collections.abc import Callable
from typing import Any

from segment_core import DeliveryError, Stats

from .collector import Collector, Faults
from .collector._cli import stop_signals, wait_for_stop

__all__ = ["add_arguments", "run", "workload"]

_PLANS = ("free", "pro", "team", "enterprise")
_PAGES = ("Home", "Pricing", "Docs", "Blog", "Signup")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=3000, help="events per runtime (default 3000)")
    parser.add_argument("--faults", type=float, default=0.1, help="share of requests that fail (default 0.1)")
    parser.add_argument("--seed", type=int, default=1, help="fault seed (default 1)")
    parser.add_argument(
        "--runtimes",
        default="threaded,asyncio,trio",
        help="comma-separated runtimes to run (default threaded,asyncio,trio)",
    )
    parser.add_argument(
        "--crash-after",
        type=int,
        default=500,
        help="accepted events before the crash scenario's SIGKILL (default 500; 0 skips it)",
    )
    parser.add_argument(
        "--keep-open",
        action="store_true",
        help="leave the collector and its live event viewer running after the run, until Ctrl-C",
    )


def workload(count: int) -> list[tuple[str, dict[str, Any]]]:
    """A realistic mix of calls: mostly track, some page, identify, group, screen and alias."""
    calls: list[tuple[str, dict[str, Any]]] = []
    base = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    for index in range(count):
        user = f"user-{index % 500}"
        context = {"ip": f"10.0.{index % 256}.{index % 200}", "locale": "en-US", "app": {"version": "4.2.0"}}
        kind = index % 20
        if kind < 13:
            calls.append(
                (
                    "track",
                    {
                        "user_id": user,
                        "event": ("Order Completed", "Product Viewed", "Cart Updated")[index % 3],
                        "properties": {
                            "order_id": f"order-{index}",
                            "revenue": round(10 + index * 0.37, 2),
                            "currency": "USD",
                            "items": [{"sku": f"sku-{index % 40}", "quantity": 1 + index % 3}],
                            "coupon": None,
                            "first_purchase": index % 7 == 0,
                            "placed_at": base + datetime.timedelta(seconds=index),
                        },
                        "context": context,
                    },
                )
            )
        elif kind < 16:
            calls.append(("page", {"user_id": user, "name": _PAGES[index % 5], "category": "Marketing"}))
        elif kind < 18:
            calls.append(("identify", {"user_id": user, "traits": {"plan": _PLANS[index % 4], "seats": index % 50}}))
        elif kind == 18:
            calls.append(("group", {"user_id": user, "group_id": f"org-{index % 30}", "traits": {"name": "Acme"}}))
        else:
            calls.append(("screen", {"anonymous_id": f"anon-{index}", "name": "Settings"}))
    calls.append(("alias", {"previous_id": "anon-0", "user_id": "user-0"}))
    return calls


class _Result:
    def __init__(self, name: str) -> None:
        self.name = name
        self.sent = 0
        self.failed = 0
        self.retried = 0
        self.seconds = 0.0
        self.message_ids: list[str] = []


def _run_threaded(url: str, calls: list[tuple[str, dict[str, Any]]], result: _Result) -> None:
    from .threaded import Client  # noqa: PLC0415

    client = Client("demo-write-key", host=url, gzip=True, on_error=_counting(result), max_retries=20)
    for method, fields in calls:
        ok, message = getattr(client, method)(**fields)
        result.sent += ok
        result.message_ids.append(message["messageId"])
    client.shutdown(60)
    result.retried = _resent(client.stats())


async def _run_asyncio(url: str, calls: list[tuple[str, dict[str, Any]]], result: _Result) -> None:
    from .asyncio import AsyncClient  # noqa: PLC0415

    async with AsyncClient("demo-write-key", host=url, gzip=True, on_error=_counting(result), max_retries=20) as client:
        for method, fields in calls:
            ok, message = getattr(client, method)(**fields)
            result.sent += ok
            result.message_ids.append(message["messageId"])
            if result.sent % 500 == 0:
                await asyncio.sleep(0)  # a real service yields between requests
        await client.flush(60)
    result.retried = _resent(client.stats())


async def _run_trio(url: str, calls: list[tuple[str, dict[str, Any]]], result: _Result) -> None:
    import trio  # noqa: PLC0415

    from .trio import open_client  # noqa: PLC0415

    async with open_client(
        "demo-write-key", host=url, gzip=True, on_error=_counting(result), max_retries=20, shutdown_timeout=60
    ) as client:
        for method, fields in calls:
            ok, message = getattr(client, method)(**fields)
            result.sent += ok
            result.message_ids.append(message["messageId"])
            if result.sent % 500 == 0:
                await trio.sleep(0)
    result.retried = _resent(client.stats())


def _resent(stats: Stats) -> int:
    """Requests sent again: counted retries plus waits the server asked for (Retry-After)."""
    return stats.retries + stats.rate_limit_waits


def _counting(result: _Result) -> Callable[[Exception, list[dict[str, Any]]], None]:
    def on_error(error: Exception, batch: list[dict[str, Any]]) -> None:
        if isinstance(error, DeliveryError):
            result.failed += len(batch)

    return on_error


def run(args: argparse.Namespace) -> int:
    calls = workload(args.events)
    names = [name.strip() for name in args.runtimes.split(",") if name.strip()]
    rows: list[tuple[_Result, int, int]] = []
    with Collector(faults=Faults(rate=args.faults, seed=args.seed, retry_after=0.2, latency=0.02)) as collector:
        print(f"collector on {collector.url}, faults on {args.faults:.0%} of requests (seed {args.seed})")
        if args.keep_open:
            print(f"live event viewer: {collector.viewer_url}", flush=True)
        for name in names:
            result = _Result(name)
            started = time.perf_counter()
            if name == "threaded":
                _run_threaded(collector.url, calls, result)
            elif name == "asyncio":
                asyncio.run(_run_asyncio(collector.url, calls, result))
            elif name == "trio":
                import trio  # noqa: PLC0415

                trio.run(_run_trio, collector.url, calls, result)
            else:
                print(f"unknown runtime {name!r}; choose from threaded, asyncio, trio")
                return 2
            result.seconds = time.perf_counter() - started
            stored = collector.message_ids()
            wanted = set(result.message_ids)
            received = [message_id for message_id in stored if message_id in wanted]
            rows.append((result, len(set(received)), len(received) - len(set(received))))
        lost = _print_table(rows)
        _print_some_events(collector)
        if args.crash_after > 0:
            lost += _crash(collector, args.crash_after)
        print("nothing lost" if lost == 0 else f"{lost} event(s) lost", flush=True)
        if args.keep_open:
            with stop_signals() as stopping:
                where = collector.viewer_url
                print(f"the collector stays up: live event viewer at {where} (Ctrl-C to stop)", flush=True)
                wait_for_stop(stopping)
    return 0 if lost == 0 else 1


def _print_table(rows: list[tuple[_Result, int, int]]) -> int:
    """Print one line per runtime and the verdict; returns how many sent events the collector lacks."""
    header = f"{'runtime':<10}{'sent':>8}{'delivered':>11}{'retried':>9}{'duplicates':>12}{'failed':>8}"
    print(header + f"{'seconds':>9}{'events/s':>10}")
    lost = 0
    for result, delivered, duplicates in rows:
        rate = delivered / result.seconds if result.seconds else 0.0
        print(
            f"{result.name:<10}{result.sent:>8}{delivered:>11}{result.retried:>9}{duplicates:>12}"
            f"{result.failed:>8}{result.seconds:>9.2f}{rate:>10.0f}"
        )
        lost += result.sent - delivered
    print(_LEGEND)
    return lost


_LEGEND = """\
  sent: calls that returned True (the client promised to deliver or report them)
  delivered: distinct messageIds the collector stored; equal to sent when nothing was lost
  retried: requests sent again (counted retries after errors, and waits the server asked for)
  duplicates: messages stored twice: the server stored a batch but its reply was lost, so the
    client sent it again; the server dedups by messageId, so nothing is counted twice
  failed: messages reported through on_error (a fault retried through is not a failure)"""


def _print_some_events(collector: Collector) -> None:
    """A few of the events the collector stored, newest last."""
    print("a few of the events that arrived:")
    for message in collector.messages()[-3:]:
        event = message.json
        what = event.get("event") or event.get("name") or ""
        who = event.get("userId") or event.get("anonymousId")
        print(f"  {event['type']:<9} {what!s:<16} {who!s:<10} messageId {event['messageId']}")


def _crash(collector: Collector, kill_after: int) -> int:
    """Run the crash scenario and print it; returns how many accepted events never arrived."""
    from ._demo_crash import crash_and_restart  # noqa: PLC0415

    print(f"crash: a process with a disk spool tracks events, and is killed with SIGKILL after {kill_after} ...")
    result = crash_and_restart(collector, kill_after)
    print(
        f"crash: {len(result.accepted)} accepted before the kill, {result.delivered} delivered by a fresh client "
        f"on the same spool ({result.duplicates} sent twice), {result.missing} missing, in {result.seconds:.1f} s"
    )
    return result.missing
