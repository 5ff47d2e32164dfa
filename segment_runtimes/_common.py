"""What the three runtimes share: options, the six calls, and the edges of the core.

- :class:`Options` turns the constructor keywords of ``segment.analytics.Client``
  (plus ours) into an ``EngineConfig`` and the runtime's own settings, and
  rejects bad values at construction.
- :class:`RealTimeCalls` gives the six calls the real clock and cheap random ids.
- :func:`report_outcomes` hands failures to ``on_error`` and logs, never raising.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import msgspec

from segment_core import (
    BuiltMessage,
    CallMethods,
    ConfigurationError,
    DeliveryError,
    EngineConfig,
    Enqueued,
    MessagesDelivered,
    MessagesFailed,
    Output,
    ValidationError,
    message_ids,
)
from segment_core.limits import DEFAULT_HOST

__all__ = [
    "QUIET",
    "WAKE",
    "ErrorCallback",
    "RealTimeCalls",
    "log_dropped",
    "Options",
    "log",
    "report_outcomes",
]

# The reference client logs to "segment"; keeping the name keeps users' logging config working.
log = logging.getLogger("segment")

# What enqueue said, for the calls' hot path: on Python 3.11 every ``Enqueued.QUIET`` goes through
# EnumType.__getattr__ (~0.1 us), a module constant does not.
QUIET: Final = Enqueued.QUIET
WAKE: Final = Enqueued.WAKE

ErrorCallback = Callable[[Exception, list[dict[str, Any]]], object]


class Options:
    """Validated client settings: the engine's config plus what only a runtime needs."""

    def __init__(
        self,
        *,
        write_key: object,
        host: str | None,
        debug: bool,
        max_queue_size: int,
        send: bool,
        on_error: ErrorCallback | None,
        gzip: bool,
        max_retries: int,
        timeout: float,
        proxies: str | Mapping[str, str] | None,
        thread: int,
        upload_size: int,
        upload_interval: float,
        log_handler: logging.Handler | None,
        oauth_client_id: str | None,
        oauth_client_key: str | None,
        oauth_key_id: str | None,
        oauth_auth_server: str,
        oauth_scope: str,
        max_total_backoff_duration: float,
        max_rate_limit_duration: float,
        shutdown_timeout: float,
        max_queue_bytes: int,
    ) -> None:
        if not isinstance(write_key, str) or not write_key:
            raise ValidationError("write_key", "a non-empty str", write_key)
        if on_error is not None and not callable(on_error):
            raise ConfigurationError("on_error must be callable: on_error(exception, batch)")
        for name, value in (("timeout", timeout), ("shutdown_timeout", shutdown_timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ConfigurationError(f"{name} must be a non-negative number of seconds")
        if isinstance(thread, bool) or not isinstance(thread, int) or thread < 1:
            raise ConfigurationError("thread must be an int of at least 1")
        oauth = None
        if oauth_client_id and oauth_client_key and oauth_key_id:
            from segment_core import OAuthConfig  # noqa: PLC0415 - PyJWT only when OAuth is on

            oauth = OAuthConfig(
                client_id=oauth_client_id,
                private_key=oauth_client_key,
                key_id=oauth_key_id,
                auth_server=oauth_auth_server,
                scope=oauth_scope,
                max_retries=max_retries,
            )
        # EngineConfig validates the delivery settings and raises ConfigurationError.
        self.engine = EngineConfig(
            write_key=write_key,
            host=host or DEFAULT_HOST,
            upload_size=upload_size,
            upload_interval=upload_interval,
            max_queue_size=max_queue_size,
            max_queue_bytes=max_queue_bytes,
            max_retries=max_retries,
            max_total_backoff_duration=max_total_backoff_duration,
            max_rate_limit_duration=max_rate_limit_duration,
            max_in_flight=thread,
            gzip=bool(gzip),
            oauth=oauth,
        )
        self.send = bool(send)
        self.debug = bool(debug)
        self.on_error = on_error
        self.timeout = float(timeout)
        self.proxies = proxies
        self.thread = thread
        self.shutdown_timeout = float(shutdown_timeout)
        self.log_handler = log_handler

    def __repr__(self) -> str:
        return f"Options(host={self.engine.host!r}, send={self.send}, oauth={self.engine.oauth is not None})"

    def configure_logging(self) -> None:
        """As segment-analytics-python does: add the handler; debug turns on DEBUG with a default handler."""
        if self.log_handler is not None and self.log_handler not in log.handlers:
            log.addHandler(self.log_handler)
        if self.debug:
            log.setLevel(logging.DEBUG)
            if self.log_handler is None and not log.handlers:
                log.addHandler(logging.StreamHandler())


class RealTimeCalls(CallMethods):
    """The six calls stamped with the real wall clock and fast, non-repeating ids.

    Ids are UUID4s from os.urandom, as uuid4() makes them, drawn 4 KB at a time
    (see ``message_ids``), so an id costs a fraction of uuid4(). A runtime makes a
    new source after fork, so parent and child never hand out the same bytes.
    """

    _wall = staticmethod(time.time)

    def _seed_ids(self) -> None:
        # A C callable where the extension is built: no Python frame per call for the id.
        self._new_message_id = message_ids(os.urandom)


def log_dropped(built: BuiltMessage) -> None:
    """Warn about values cleaning dropped: paths and types only, since values may be secrets."""
    log.warning("dropped values that cannot be sent as JSON: %s", ", ".join(built.dropped))


_batch_decoder = msgspec.json.Decoder(dict[str, Any])


def report_outcomes(outputs: Iterable[Output], on_error: ErrorCallback | None) -> None:
    """Log delivered/failed outputs and call ``on_error(exception, batch)`` for each failure.

    An exception raised by the callback is logged and swallowed: it must never stop delivery.
    """
    for output in outputs:
        if isinstance(output, MessagesFailed):
            error: DeliveryError = output.error
            log.error("%d message(s) not delivered: %s", len(output.messages), error)
            if on_error is None:
                continue
            batch = [_batch_decoder.decode(data) for data in output.messages]
            try:
                on_error(error, batch)
            except Exception:
                log.exception("on_error callback raised; delivery continues")
        elif isinstance(output, MessagesDelivered) and log.isEnabledFor(logging.DEBUG):
            log.debug("%d message(s) delivered", len(output.messages))
