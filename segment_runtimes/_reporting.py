"""What users hear from a client: log lines and callbacks, never an exception in their way.

- :class:`LogThrottle`: at most one line per kind of event every few seconds
  (queue full, retrying, a failed batch, a callback that raised, ...). The
  lines held back are counted, and the next line of the kind says how many
  lines and messages it stands for, so no message goes uncounted and no outage
  turns into megabytes of logs.
- :class:`Reporter`: turns the engine's outputs into callbacks
  (``on_error(error, batch)``, ``on_success(batch)``) and log lines. A callback
  that raises, whatever it raises (``SystemExit`` included), is logged with its
  traceback and delivery goes on; only cancellation of an async task passes.

Texts from servers reach here already redacted by the engine; nothing here adds
a secret: messages are logged by count, never by content.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import msgspec

from segment_core import (
    BuiltMessage,
    DeliveryError,
    MessagesDelivered,
    MessagesFailed,
    MessagesKept,
    Output,
    Retrying,
)
from segment_core.plugins import PluginFailure

from ._common import log
from ._options import ErrorCallback, SuccessCallback

__all__ = ["LOG_INTERVAL", "LogThrottle", "Reporter", "is_cancellation", "log"]

# One line per kind per this many seconds at most: an outage is a few lines a minute, not a flood.
LOG_INTERVAL: Final = 5.0

_batch_decoder = msgspec.json.Decoder(dict[str, Any])


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` cancels the task it runs in (asyncio or trio): it must propagate."""
    kind = type(exc)
    return any(
        (cls.__name__ == "CancelledError" and cls.__module__.startswith(("asyncio", "concurrent.futures")))
        or (cls.__name__ == "Cancelled" and cls.__module__.startswith("trio"))
        for cls in kind.__mro__
    )


class _Held:
    __slots__ = ("last", "lines", "messages")

    def __init__(self, last: float) -> None:
        self.last = last
        self.lines = 0
        self.messages = 0


class LogThrottle:
    """Logs at most one line per kind every ``interval`` seconds, counting the rest. Thread-safe.

    Args:
        logger: where lines go.
        interval: seconds between two lines of one kind.
        clock: monotonic seconds (a test may pass its own).
    """

    def __init__(
        self, logger: logging.Logger, *, interval: float = LOG_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._kinds: dict[str, _Held] = {}
        self._lock = threading.Lock()

    def emit(
        self, kind: str, level: int, text: str, *, messages: int = 1, exc_info: BaseException | None = None
    ) -> None:
        """Log ``text`` unless a line of ``kind`` went out less than ``interval`` ago; then count it.

        Args:
            kind: what the line is about; lines of one kind are throttled together.
            level: a logging level.
            text: the line.
            messages: how many messages this line is about (for the count said later).
            exc_info: an exception whose traceback goes with the line (only when it is logged).
        """
        if not self._logger.isEnabledFor(level):
            return
        now = self._clock()
        with self._lock:
            held = self._kinds.get(kind)
            if held is not None and now - held.last < self._interval:
                held.lines += 1
                held.messages += messages
                return
            self._kinds[kind] = _Held(now)
        if held is not None and held.lines:
            text += f" (and {held.lines} more like it since the last report, about {held.messages} message(s))"
        self._logger.log(level, text, exc_info=exc_info)

    def flush(self) -> None:
        """Say what is still held back (at shutdown): one line per kind."""
        with self._lock:
            held = [(kind, state) for kind, state in self._kinds.items() if state.lines]
            self._kinds.clear()
        for kind, state in held:
            self._logger.warning(
                "%s: %d more time(s) since the last report, about %d message(s)", kind, state.lines, state.messages
            )


class Reporter:
    """Hands the engine's settled outputs to the callbacks and the log; never raises (but for cancellation).

    Args:
        on_error: called as ``on_error(error, batch)`` per failed batch, or None.
        on_success: called as ``on_success(batch)`` per delivered batch, or None.
    """

    def __init__(self, on_error: ErrorCallback | None, on_success: SuccessCallback | None) -> None:
        self._on_error = on_error
        self._on_success = on_success
        self.throttle = LogThrottle(log)

    def report(self, output: Output) -> None:
        """Log and call back for one output (Request and WaitSettled are the runtime's own)."""
        if isinstance(output, MessagesDelivered):
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%d message(s) delivered", len(output.messages))
            if self._on_success is not None:
                self._call("on_success", self._on_success, _decode(output.messages))
        elif isinstance(output, MessagesFailed):
            self.failed(output.error, len(output.messages))
            if self._on_error is not None:
                self._call("on_error", self._on_error, output.error, _decode(output.messages))
        elif isinstance(output, Retrying):
            self.retrying(output)
        elif isinstance(output, MessagesKept):
            log.debug("%d message(s) kept in the spool", len(output.messages))

    def failed(self, error: DeliveryError, count: int) -> None:
        """One ERROR line for a failure (throttled per kind of error)."""
        self.throttle.emit(
            f"not delivered ({type(error).__name__})",
            logging.ERROR,
            f"{count} message(s) not delivered: {error}",
            messages=count,
        )

    def retrying(self, output: Retrying) -> None:
        """One WARNING line for a retry, saying why and when the next attempt is."""
        if output.paused:
            text = (
                f"the server asked to wait {output.delay:.1f} s before sending more; "
                f"{output.count} message(s) will be sent then: {output.error}"
            )
        else:
            text = (
                f"retrying {output.count} message(s) in {output.delay:.1f} s "
                f"(attempt {output.attempt + 1}): {output.error}"
            )
        self.throttle.emit("retrying", logging.WARNING, text, messages=output.count)

    def refused(self, error: DeliveryError) -> None:
        """A call's message was not accepted (queue full, client closed): one WARNING (throttled)."""
        self.throttle.emit(f"not queued ({type(error).__name__})", logging.WARNING, f"message not queued: {error}")

    def spool_refused(self, refusal: object) -> None:
        """A call's message could not be written to the spool (full, disk full): one WARNING (throttled)."""
        self.throttle.emit("not spooled", logging.WARNING, f"message not queued: {refusal}")

    def misuse(self, kind: str, text: str) -> None:
        """A call that cannot be served as made: one WARNING naming the fix (throttled)."""
        self.throttle.emit(kind, logging.WARNING, text)

    def dropped_values(self, built: BuiltMessage) -> None:
        """Values cleaning dropped: paths and types only, since values may be secrets."""
        self.throttle.emit(
            "dropped values", logging.WARNING, "dropped values that cannot be sent as JSON: " + ", ".join(built.dropped)
        )

    def plugins_failed(self, failures: tuple[PluginFailure, ...]) -> None:
        """Plugins skipped for a message (they raised, or returned what is not one): their tracebacks, throttled."""
        for failure in failures:
            self.throttle.emit(
                f"plugin {failure.plugin} failed",
                logging.ERROR,
                f"{failure.kind} plugin {failure.plugin} raised {type(failure.error).__name__} and was skipped "
                "for that message; the message goes on",
                exc_info=failure.error,
            )

    def bug(self, where: str, exc: BaseException) -> None:
        """An exception where none should be (a bug of ours): its traceback, once per few seconds."""
        self.throttle.emit(
            f"internal error in {where}",
            logging.ERROR,
            f"internal error in {where} ({type(exc).__name__}); delivery goes on",
            exc_info=exc,
        )

    def _call(self, name: str, callback: Callable[..., object], *args: Any) -> None:
        try:
            callback(*args)
        except BaseException as exc:  # SystemExit included: a callback must never stop delivery
            if is_cancellation(exc):
                raise
            self.throttle.emit(
                f"{name} raised",
                logging.ERROR,
                f"{name} callback raised {type(exc).__name__}; delivery goes on",
                exc_info=exc,
            )


def _decode(messages: tuple[bytes, ...]) -> list[dict[str, Any]]:
    return [_batch_decoder.decode(data) for data in messages]
