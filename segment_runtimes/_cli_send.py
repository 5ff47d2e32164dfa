"""``python -m segment_runtimes send``: send one message, with segment-analytics-python's simulator flags.

Exits 0 once the message is delivered; 1 if it could not be delivered (the
reason is printed); 2 for bad arguments (argparse's convention).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from segment_core import DeliveryError, ValidationError

from ._options import add_settings_flags, settings_from_flags
from .threaded import Client

__all__ = ["add_arguments", "run"]

_TYPES = ("track", "identify", "group", "alias", "page", "screen")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--writeKey", required=True, help="the source's write key")
    parser.add_argument("--host", default=None, help="API host (default https://api.segment.io)")
    parser.add_argument("--type", required=True, choices=_TYPES, help="the call to make")
    parser.add_argument("--userId")
    parser.add_argument("--anonymousId")
    parser.add_argument("--event", help="track: the event name")
    parser.add_argument("--properties", type=_json_object, help="track/page/screen: JSON object")
    parser.add_argument("--traits", type=_json_object, help="identify/group: JSON object")
    parser.add_argument("--context", type=_json_object, help="JSON object")
    parser.add_argument("--name", help="page/screen: the name")
    parser.add_argument("--category", help="page/screen: the category")
    parser.add_argument("--groupId", help="group: the group id")
    parser.add_argument("--previousId", help="alias: the previous id")
    parser.add_argument("--gzip", action="store_true", help="gzip the request body")
    parser.add_argument("--timeout", type=float, default=10.0, help="give up after this many seconds (default 10)")
    settings = parser.add_argument_group("client settings (as the Client keywords of the same names)")
    parser.set_defaults(setting_names=add_settings_flags(settings, exclude=_NAMED_ABOVE))


# Settings with flags of their own above (2.4's simulator's); --timeout here is how long to try.
_NAMED_ABOVE = frozenset({"host", "gzip", "timeout", "shutdown_timeout", "send", "sync_mode"})


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    common = {"context": args.context}
    if args.type == "alias":
        return {"previous_id": args.previousId, "user_id": args.userId, **common}
    common.update(user_id=args.userId, anonymous_id=args.anonymousId)
    if args.type == "track":
        return {"event": args.event, "properties": args.properties, **common}
    if args.type == "identify":
        return {"traits": args.traits, **common}
    if args.type == "group":
        return {"group_id": args.groupId, "traits": args.traits, **common}
    return {"name": args.name, "category": args.category, "properties": args.properties, **common}


def run(args: argparse.Namespace) -> int:
    if not args.writeKey:
        print("error: the write key is empty (--writeKey): the API would refuse the message", file=sys.stderr)
        return 2
    # The outcome is said once, below; the client's own log lines would say it again.
    logging.getLogger("segment").addHandler(logging.NullHandler())
    errors: list[DeliveryError] = []

    def on_error(error: Exception, batch: list[dict[str, Any]]) -> None:
        if isinstance(error, DeliveryError):
            errors.append(error)

    client = Client(
        args.writeKey,
        host=args.host,
        gzip=args.gzip,
        on_error=on_error,
        shutdown_timeout=args.timeout,
        **settings_from_flags(args, args.setting_names, renamed={"max_in_flight": "thread"}),
    )
    try:
        _, message = getattr(client, args.type)(**_fields(args))
    except ValidationError as exc:
        client.shutdown(0)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    delivered = client.shutdown(args.timeout)
    if delivered:
        print(f"delivered {args.type} {message['messageId']}")
        return 0
    last_error = client._engine.last_error
    if errors:
        reason = str(errors[0])
    elif args.spool_dir is not None:
        cause = f": {last_error}" if last_error is not None else ""
        reason = f"it stays in the spool at {args.spool_dir} for the next client (or `spool drain`){cause}"
    else:
        reason = f"the timeout passed{': ' + str(last_error) if last_error is not None else ''}"
    print(f"error: {args.type} {message['messageId']} not delivered: {reason}", file=sys.stderr)
    return 1
