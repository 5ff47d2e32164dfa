"""The part of the asyncio and trio runtimes that does not depend on the event loop.

Both run one worker task that polls the engine and one task per request it
asks for; requests go through ``_http.AsyncHTTP``, which runs on asyncio and on
trio alike. What differs (events, waiting with a timeout, spawning tasks) is
left to the subclass: ``_wake_worker``, ``_ensure_worker`` and ``_resolve``.
Everything here runs on the event loop's thread, so no lock is needed.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Mapping
from typing import Any

from segment_core import BuiltMessage, Engine, MessagesFailed, Output, Request, Response, Stats
from segment_core.limits import (
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_MAX_RATE_LIMIT_DURATION,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_TOTAL_BACKOFF_DURATION,
    DEFAULT_OAUTH_AUTH_SERVER,
    DEFAULT_OAUTH_SCOPE,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_TIMEOUT,
    DEFAULT_UPLOAD_INTERVAL,
    DEFAULT_UPLOAD_SIZE,
)

from ._common import (
    QUIET,
    WAKE,
    ErrorCallback,
    Options,
    RealTimeCalls,
    log,
    log_dropped,
    report_outcomes,
)
from ._transport.http import AsyncHTTP

__all__ = ["AsyncClientBase", "Waiter"]


class Waiter:
    """A flush waiting for sequence numbers [first, last] to settle; ``token`` is the loop's event or future."""

    __slots__ = ("failed", "first", "last", "token")

    def __init__(self, first: int, last: int, token: Any) -> None:
        self.first = first
        self.last = last
        self.failed = False
        self.token = token


class AsyncClientBase(RealTimeCalls):
    """Engine, messages and outcome bookkeeping shared by AsyncClient and TrioClient."""

    def __init__(
        self,
        write_key: str | None,
        host: str | None = None,
        debug: bool = False,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        send: bool = True,
        on_error: ErrorCallback | None = None,
        gzip: bool = False,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float = DEFAULT_TIMEOUT,
        proxies: str | Mapping[str, str] | None = None,
        upload_size: int = DEFAULT_UPLOAD_SIZE,
        upload_interval: float = DEFAULT_UPLOAD_INTERVAL,
        log_handler: logging.Handler | None = None,
        oauth_client_id: str | None = None,
        oauth_client_key: str | None = None,
        oauth_key_id: str | None = None,
        oauth_auth_server: str = DEFAULT_OAUTH_AUTH_SERVER,
        oauth_scope: str = DEFAULT_OAUTH_SCOPE,
        max_total_backoff_duration: float = DEFAULT_MAX_TOTAL_BACKOFF_DURATION,
        max_rate_limit_duration: float = DEFAULT_MAX_RATE_LIMIT_DURATION,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        max_in_flight: int = 1,
    ) -> None:
        self._options = Options(
            write_key=write_key,
            host=host,
            debug=debug,
            max_queue_size=max_queue_size,
            send=send,
            on_error=on_error,
            gzip=gzip,
            max_retries=max_retries,
            timeout=timeout,
            proxies=proxies,
            thread=max_in_flight,
            upload_size=upload_size,
            upload_interval=upload_interval,
            log_handler=log_handler,
            oauth_client_id=oauth_client_id,
            oauth_client_key=oauth_client_key,
            oauth_key_id=oauth_key_id,
            oauth_auth_server=oauth_auth_server,
            oauth_scope=oauth_scope,
            max_total_backoff_duration=max_total_backoff_duration,
            max_rate_limit_duration=max_rate_limit_duration,
            shutdown_timeout=shutdown_timeout,
            max_queue_bytes=max_queue_bytes,
        )
        self._options.configure_logging()
        self._seed_ids()
        self._engine = Engine(self._options.engine, random=random.Random(os.urandom(16)))
        self._waiters: list[Waiter] = []
        self._http: AsyncHTTP | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} host={self._options.engine.host!r} state={self._engine.state.value}>"

    @property
    def send(self) -> bool:
        return self._options.send

    def stats(self) -> Stats:
        """Counters: enqueued, delivered, failed by reason, retries, queue depth, ..."""
        return self._engine.stats()

    # Loop-specific hooks ------------------------------------------------------

    def _wake_worker(self) -> None:
        raise NotImplementedError

    def _ensure_worker(self) -> None:
        raise NotImplementedError

    def _resolve(self, waiter: Waiter) -> None:
        raise NotImplementedError

    # Calls --------------------------------------------------------------------

    def _submit(self, built: BuiltMessage) -> tuple[bool, dict[str, Any]]:
        message = built.message
        if built.dropped:
            log_dropped(built)
        if not self._options.send:
            return True, message
        result = self._engine.enqueue(built.data, now=time.monotonic())
        if result is QUIET:
            return True, message
        if result is WAKE:
            self._ensure_worker()
            self._wake_worker()
            return True, message
        log.warning("message not queued: %s", result)
        return False, message

    # Worker bookkeeping ------------------------------------------------------

    def _step(self) -> list[Request]:
        """Poll the engine; report outcomes; return the requests to start."""
        self._engine.poll(now=time.monotonic(), wall=time.time())
        return self._settle(self._engine.next_outputs())

    def _settle(self, outputs: list[Output]) -> list[Request]:
        requests: list[Request] = []
        outcomes: list[Output] = []
        for output in outputs:
            if isinstance(output, Request):
                requests.append(output)
                continue
            outcomes.append(output)
            if isinstance(output, MessagesFailed):
                last = output.first_seq + len(output.messages) - 1
                for waiter in self._waiters:
                    if output.first_seq <= waiter.last and last >= waiter.first:
                        waiter.failed = True
        if outcomes:
            report_outcomes(outcomes, self._options.on_error)
            oldest = self._engine.oldest_unsettled_seq
            for waiter in [w for w in self._waiters if oldest > w.last]:
                self._waiters.remove(waiter)
                self._resolve(waiter)
        return requests

    def _flush_range(self) -> tuple[int, int] | None:
        """Make everything queued due now; the seq range to wait for, or None if nothing is pending."""
        engine = self._engine
        first, last = engine.oldest_unsettled_seq, engine.last_seq
        if first > last:
            return None
        engine.flush(now=time.monotonic())
        self._ensure_worker()
        self._wake_worker()
        return first, last

    def _close_engine(self, timeout: float | None) -> int:
        """Close the engine with its deadline; returns the failed count before, to tell if any failed after."""
        timeout = self._options.shutdown_timeout if timeout is None else timeout
        now = time.monotonic()
        failed_before = sum(self._engine.stats().failed.values())
        self._engine.close(now=now, deadline=now + timeout)
        return failed_before

    def _all_delivered_since(self, failed_before: int) -> bool:
        return sum(self._engine.stats().failed.values()) == failed_before

    def _abandon_now(self) -> None:
        """The loop is going away with messages pending: report them failed rather than lose them silently."""
        now = time.monotonic()
        self._engine.close(now=now, deadline=now)
        self._engine.poll(now=now, wall=time.time())
        self._settle(self._engine.next_outputs())

    async def _exchange(self, request: Request) -> None:
        """Perform one request and feed its outcome back to the engine."""
        http = self._http
        if http is None:
            http = self._http = AsyncHTTP(timeout=self._options.timeout, proxies=self._options.proxies)
        outcome = await http.perform(request)
        now, wall = time.monotonic(), time.time()
        if isinstance(outcome, Response):
            self._engine.receive_response(request.id, outcome, now=now, wall=wall)
        else:
            self._engine.receive_failure(request.id, outcome, now=now, wall=wall)
        self._wake_worker()

    async def _close_http(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()
