"""What each of issue 20's features adds to a ``track`` call when it is used, in µs and in instructions.

Usage, from the repository root::

    python -m benchmarks.features [--blocks 31] [--calls 2000] [--instructions]

A client with no plugin and no call context takes the C fast path; each
feature below makes its calls take the general path, and adds its own work:

- ``before``: one trivial before plugin (returns the message as it is);
- ``enrichment``: one enrichment plugin returning ``{"context": {"app": ...}}``;
- ``sampling``: ``Sampling(1.0)`` (hashes the user id, keeps every message);
- ``general_path``: the plain call inside an empty ``with call_context():``,
  which does nothing to the message but turns the C fast path off: what
  every feature below pays for that, before its own work;
- ``call_context``: the call inside ``with call_context(user_id=..., context=...)``,
  passing only ``event`` and ``properties``; the plain call it is compared with
  passes the same ``user_id`` and ``context`` itself, so both send the same
  message. Entering and leaving a block, once per block (say, once per web
  request), is timed on its own.

Method: one process, two clients made with ``send=False`` (so the call stops
once its message is built and encoded: no queue, no worker thread, nothing
else to share the CPU with), one plain and one with the feature. In each of
``--blocks`` blocks, the same ``--calls`` workload calls are made through
each, the order alternating from block to block; each block gives one
difference (feature - plain) per call, and the table shows the median and
range of those differences. Two blocks seconds apart see the same machine;
the median over many of them holds still on a shared one.

``--instructions`` also counts each variant under cachegrind (valgrind): one
child runs the set-up and K calls, another the set-up alone, and the
difference over K is the instructions per call; their difference from the
plain call's is the feature's.
"""

from __future__ import annotations

import argparse
import gc
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from .workload import WRITE_KEY, make_calls

__all__ = ["FEATURES", "main"]

FEATURES = ("general_path", "before", "enrichment", "sampling", "call_context")
_APP = {"app": {"name": "shop", "version": "1.4.2", "build": "1402"}}


def _before(message: dict[str, Any]) -> dict[str, Any]:
    return message


def _enrichment(message: dict[str, Any]) -> Mapping[str, Any]:
    return {"context": _APP}


@dataclass
class Variant:
    """How one side of a comparison makes its calls: a client, the calls' arguments, and a scope around them."""

    client: Any
    calls: list[dict[str, Any]]
    scope: Callable[[], AbstractContextManager[Any]]

    def run(self) -> int:
        """Make every call (inside the scope, entered once); the nanoseconds it took."""
        track = self.client.track
        calls = self.calls
        with self.scope():
            t0 = time.perf_counter_ns()
            for kwargs in calls:
                track(**kwargs)
            return time.perf_counter_ns() - t0


def _client() -> Any:
    from segment_runtimes.threaded import Client

    return Client(WRITE_KEY, send=False)


def variants(feature: str, calls: list[dict[str, Any]]) -> tuple[Variant, Variant]:
    """``(plain, with the feature)`` over the same workload calls."""
    from segment_core import call_context
    from segment_core.plugins import Sampling

    plain = Variant(_client(), calls, nullcontext)
    featured = _client()
    if feature == "before":
        featured.add_plugin(_before)
    elif feature == "enrichment":
        featured.add_plugin(_enrichment, kind="enrichment")
    elif feature == "sampling":
        featured.add_plugin(Sampling(1.0))
    elif feature == "general_path":
        return plain, Variant(featured, calls, call_context)
    elif feature == "call_context":
        # One request's calls: the same user and context, given by the scope instead of each call.
        user_id, context = calls[0]["user_id"], calls[0]["context"]
        plain.calls = [{**kwargs, "user_id": user_id, "context": context} for kwargs in calls]
        scoped = [{"event": kwargs["event"], "properties": kwargs["properties"]} for kwargs in calls]
        return plain, Variant(featured, scoped, lambda: call_context(user_id=user_id, context=context))
    else:
        raise ValueError(f"unknown feature {feature!r}; one of {', '.join(FEATURES)}")
    return plain, Variant(featured, calls, nullcontext)


def _blocks(plain: Variant, featured: Variant, blocks: int) -> Iterator[tuple[float, float]]:
    """Per block, ``(plain, featured)`` ns per call, the order alternating."""
    count = len(plain.calls)
    for block in range(blocks):
        gc.collect()
        if block % 2 == 0:
            first, second = plain.run(), featured.run()
            yield first / count, second / count
        else:
            second, first = featured.run(), plain.run()
            yield first / count, second / count


def measure_feature(feature: str, calls: int, blocks: int) -> dict[str, Any]:
    """The plain call's and the feature's µs per call, and the per-block differences."""
    plain, featured = variants(feature, make_calls(calls, seed=1))
    for variant in (plain, featured):  # warm up: caches, lazy imports, the id source
        variant.run()
    pairs = list(_blocks(plain, featured, blocks))
    extra = [(with_it - without) / 1000 for without, with_it in pairs]
    return {
        "feature": feature,
        "plain_us": statistics.median(without / 1000 for without, _ in pairs),
        "featured_us": statistics.median(with_it / 1000 for _, with_it in pairs),
        "extra_us": statistics.median(extra),
        "extra_us_range": (min(extra), max(extra)),
        "extra_us_by_block": extra,
    }


def scope_entry_us(repeat: int = 20_000, rounds: int = 15) -> float:
    """µs to enter and leave one ``call_context(user_id=..., context=...)`` block (median of rounds)."""
    from segment_core import call_context

    context = make_calls(1)[0]["context"]
    results = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        for _ in range(repeat):
            with call_context(user_id="user-000001", context=context):
                pass
        results.append((time.perf_counter_ns() - t0) / repeat / 1000)
    return statistics.median(results)


# --- instructions (cachegrind) ---------------------------------------------------------------

_I_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def _count_child(variant: str, calls: int, made: int) -> None:
    """The child counted under valgrind: set up ``variant`` over ``made`` calls' arguments, make ``calls``."""
    feature, _, side = variant.partition(":")
    plain, featured = variants(feature, make_calls(made, seed=1))
    chosen = featured if side == "featured" else plain
    warm = Variant(chosen.client, chosen.calls[:200], chosen.scope)
    warm.run()
    Variant(chosen.client, chosen.calls[200 : 200 + calls], chosen.scope).run()


def instructions(variant: str, calls: int) -> int:
    """Instructions of one child for ``variant`` making ``calls`` calls, set-up included."""
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.features",
        "--count-child",
        variant,
        "--calls",
        str(calls),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=True)
    match = _I_REFS.search(done.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from valgrind: {done.stderr[-500:]!r}")
    return int(match.group(1).replace(",", ""))


def per_call_instructions(variant: str, calls: int) -> float:
    """Instructions per call of ``variant``: (K calls - no calls) / K, the same set-up in both."""
    return (instructions(variant, calls) - instructions(variant, 0)) / calls


# --- entry point -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.features", description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=31, help="blocks of calls per feature, alternating")
    parser.add_argument("--calls", type=int, default=2000, help="calls per block and side")
    parser.add_argument("--instructions", action="store_true", help="also count instructions under cachegrind")
    parser.add_argument("--count-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.count_child:
        _count_child(args.count_child, args.calls, made=200 + max(args.calls, 2000))
        return 0

    from segment_core import c_speedups_active

    print(f"C fast path active for plain calls: {c_speedups_active()}; clients with send=False")
    print(f"{args.blocks} alternating blocks of {args.calls} track calls per side; µs per call")
    print()
    header = f"{'feature':14} {'plain':>7} {'with it':>8} {'extra, median [range]':>26}"
    print(header)
    print("-" * len(header))
    results = []
    for feature in FEATURES:
        result = measure_feature(feature, args.calls, args.blocks)
        results.append(result)
        low, high = result["extra_us_range"]
        spread = f"{result['extra_us']:.2f} [{low:.2f}-{high:.2f}]"
        print(f"{feature:14} {result['plain_us']:7.2f} {result['featured_us']:8.2f} {spread:>26}")
    print(f"\nentering and leaving a call_context block: {scope_entry_us():.2f} µs per block")
    if args.instructions:
        calls = 2000
        print(f"\ninstructions per call (cachegrind; {calls} calls minus the same set-up without them):")
        plains: dict[str, float] = {}
        for feature in FEATURES:
            # The plugins' plain side is the same plain call: count it once.
            plain_side = "call_context:plain" if feature == "call_context" else "general_path:plain"
            if plain_side not in plains:
                plains[plain_side] = per_call_instructions(plain_side, calls)
            plain = plains[plain_side]
            featured = per_call_instructions(f"{feature}:featured", calls)
            print(f"{feature:14} plain {plain:8,.0f}   with it {featured:8,.0f}   extra {featured - plain:8,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
