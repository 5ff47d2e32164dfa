"""What every runtime's client shares: settings, engine, reporter, and what 2.4's Client shows.

A client keeps its :class:`Settings`, one :class:`Engine` and one
:class:`Reporter`; the runtimes differ only in how they wait and who runs the
worker. Code written for segment-analytics-python 2.4 reads settings off the
instance (``client.debug``, ``client.gzip``, ``client.timeout``, ...) and
watches ``client.queue``: both are here, read-only, with 2.4's names and
values.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from typing import Any

from segment_core import (
    ConfigurationError,
    Engine,
    EngineState,
    OAuthConfig,
    Request,
    Response,
    Stats,
    TransportFailure,
    TransportFailureKind,
)
from segment_core.plugins import PluginFailure

from ._common import RealTimeCalls, log
from ._durability import SpoolLink
from ._options import ErrorCallback, Proxies, Settings
from ._reporting import Reporter
from ._spool import Spool

__all__ = ["ClientBase", "QueueView"]


class QueueView:
    """``client.queue``: the reading half of 2.4's ``queue.Queue``, over the engine's queue.

    ``qsize()`` counts messages waiting to be put in a batch (2.4's consumer takes
    a batch off its queue in the same way). There is no ``put`` or ``get``: the
    engine owns the queue.
    """

    __slots__ = ("_client",)

    def __init__(self, client: ClientBase) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<QueueView qsize={self.qsize()} maxsize={self.maxsize}>"

    @property
    def maxsize(self) -> int:
        """The ``max_queue_size`` setting (0 or less: no count limit)."""
        return self._client._settings.max_queue_size

    def qsize(self) -> int:
        """Messages queued, not yet in a batch."""
        return self._client.stats().queue_depth

    def empty(self) -> bool:
        """Whether no message is queued."""
        return self.qsize() == 0

    def full(self) -> bool:
        """Whether the queue is at ``maxsize`` messages (never, with no count limit)."""
        return 0 < self.maxsize <= self.qsize()


class ClientBase(RealTimeCalls):
    """Settings, engine and reporter; 2.4's instance settings; stats. Runtimes subclass it.

    ``_guard`` serialises access to the engine: the threaded client's lock, or
    nothing for the event-loop clients (one thread).
    """

    _guard: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()

    def _setup(self, settings: Settings) -> None:
        self._settings = settings
        self._configure_logging()
        self._reporter = Reporter(settings.error_callback, settings.on_success)
        self._seed_ids()
        self._spool: SpoolLink | None = None
        if settings.spool_dir is not None:
            if settings.spool_fsync == "always" and not self._may_block:
                raise ConfigurationError(
                    'spool_fsync="always" would fsync on the event loop\'s thread; use "interval" (the default)'
                )
            spool = Spool(settings.spool_dir, max_bytes=settings.max_spool_bytes, fsync=settings.spool_fsync)
            self._spool = SpoolLink(spool, tidy_inline=self._may_block)
        # A call with nothing but the engine to see to: send on, no spool (the calls' fast path).
        self._plain = settings.send and self._spool is None
        config = settings.engine_config(durable=self._spool is not None)
        self._engine = Engine(config, random=random.Random(os.urandom(16)))
        if not settings.write_key:
            log.warning("write_key is empty: the API will refuse every batch sent with it")

    # Whether a call may block its thread (for an fsync): the threaded client's calls may.
    _may_block = False

    def _configure_logging(self) -> None:
        """As segment-analytics-python does: add the handler; debug turns on DEBUG with a default handler."""
        settings = self._settings
        if settings.log_handler is not None and settings.log_handler not in log.handlers:
            log.addHandler(settings.log_handler)
        if settings.debug:
            log.setLevel(logging.DEBUG)
            if settings.log_handler is None and not log.handlers:
                log.addHandler(logging.StreamHandler())

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__qualname__} host={self.api_host!r} state={self.state}>"

    # 2.4's instance settings -------------------------------------------------

    @property
    def write_key(self) -> str:
        """The write key, as given."""
        return self._settings.write_key or ""

    @property
    def host(self) -> str | None:
        """The host as given (None: the default, ``api_host``), as 2.4 keeps it."""
        return self._settings.host

    @property
    def api_host(self) -> str:
        """The base URL requests go to."""
        return self._settings.api_host

    @property
    def on_error(self) -> ErrorCallback | Any:
        """The ``on_error`` setting, as given (a falsy value means none)."""
        return self._settings.on_error

    @property
    def debug(self) -> bool:
        """The ``debug`` setting."""
        return self._settings.debug

    @property
    def send(self) -> bool:
        """The ``send`` setting."""
        return self._settings.send

    @property
    def gzip(self) -> bool:
        """The ``gzip`` setting."""
        return self._settings.gzip

    @property
    def timeout(self) -> float | None:
        """The ``timeout`` setting, as given."""
        return self._settings.timeout

    @property
    def proxies(self) -> Proxies:
        """The ``proxies`` setting."""
        return self._settings.proxies

    @property
    def max_total_backoff_duration(self) -> float:
        """The ``max_total_backoff_duration`` setting."""
        return self._settings.max_total_backoff_duration

    @property
    def max_rate_limit_duration(self) -> float:
        """The ``max_rate_limit_duration`` setting."""
        return self._settings.max_rate_limit_duration

    @property
    def oauth_manager(self) -> OAuthConfig | None:
        """The OAuth settings when OAuth is on, else None (where 2.4 keeps its OauthManager)."""
        config = self._engine.config.oauth
        return config if isinstance(config, OAuthConfig) else None

    @property
    def queue(self) -> QueueView:
        """A read-only view of the queue: ``qsize()``, ``empty()``, ``full()``, ``maxsize``."""
        return QueueView(self)

    @property
    def state(self) -> str:
        """The engine's state: ``"open"``, ``"closing"`` or ``"closed"``."""
        return self._engine.state.value

    def stats(self) -> Stats:
        """The engine's counters: accepted, delivered, failed by cause, retries, queue depth, in flight, ..."""
        with self._guard:
            return self._engine.stats()

    # Calls -------------------------------------------------------------------

    def _dropped(self, message: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        with self._guard:
            self._engine.record_dropped()
        return False, message

    def _plugins_failed(self, failures: tuple[PluginFailure, ...]) -> None:
        self._reporter.plugins_failed(failures)

    # The worker's side -------------------------------------------------------

    def _internal_failure(self, where: str, exc: BaseException) -> TransportFailure:
        """A bug of ours in ``where``, logged with its traceback, as the failure its request settles with."""
        self._reporter.bug(where, exc)
        return TransportFailure(kind=TransportFailureKind.OTHER, detail=f"internal error: {type(exc).__name__}")

    def _feed_outcome(self, request: Request, outcome: Response | TransportFailure) -> None:
        """Give the engine a request's outcome (the caller holds ``_guard``); its batch settles even if that fails."""
        now, wall = time.monotonic(), time.time()
        engine = self._engine
        try:
            if isinstance(outcome, Response):
                engine.receive_response(request.id, outcome, now=now, wall=wall)
            else:
                engine.receive_failure(request.id, outcome, now=now, wall=wall)
        except Exception as exc:  # the engine is total; should it fail, the batch still settles
            engine.receive_failure(request.id, self._internal_failure("the engine", exc), now=now, wall=wall)

    @property
    def _closed(self) -> bool:
        return self._engine.state is not EngineState.OPEN
