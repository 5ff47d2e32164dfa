"""Command line: ``python -m segment_runtimes {demo,collector,send,spool}``.

Each subcommand lives in its own module, which provides
``add_arguments(parser)`` and ``run(args) -> int``; they are imported only when
chosen so that ``send`` does not pay for the collector and the other way round.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

# name -> (module, one-line help)
SUBCOMMANDS = {
    "demo": ("segment_runtimes._demo", "run a workload through every runtime against an embedded collector"),
    "collector": ("segment_runtimes.collector._cli", "run a loopback Segment-compatible collector"),
    "send": ("segment_runtimes._cli_send", "send one message, like segment-analytics-python's simulator"),
    "spool": ("segment_runtimes._cli_spool", "inspect a spool directory, or deliver what it holds"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segment_runtimes")
    subparsers = parser.add_subparsers(dest="command", required=True)
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    modules = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text)
        if name == chosen:
            modules[name] = importlib.import_module(module_name)
            modules[name].add_arguments(sub)
    args = parser.parse_args(argv)
    return int(modules[args.command].run(args))


if __name__ == "__main__":
    sys.exit(main())
