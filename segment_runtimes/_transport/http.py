"""Performing the core's requests over HTTP: our own connections, or httpx's transports for proxies.

The worker sends one kind of request, again and again: a POST of bytes it has
already built, with a handful of headers, to one or two URLs, never following a
redirect, never sending a cookie. A general client spends about a millisecond
of Python per batch on what this never needs (URL, header and cookie models,
auth and redirect machinery, trace hooks), and the worker shares the caller's
thread (asyncio, trio) or its GIL (threads).

So :class:`SyncHTTP` and :class:`AsyncHTTP` send a request to an origin reached
without a proxy on our own keep-alive connections (``connections.py``, over the
streams of ``streams.py``), and one through a proxy with httpx's transports
(``proxies.py``). Either way:

- TLS is verified, with httpx's CA bundle (``SSL_CERT_FILE`` and
  ``SSL_CERT_DIR`` honoured, as ``httpx.Client`` does), SNI and host name checks;
- a reply is held to the same bounds (``wire.MAX_HEAD_BYTES``,
  ``wire.MAX_BODY_BYTES``), and one encoded anyway (gzip, deflate) is decoded
  within them;
- every failure is a :class:`TransportFailure` whose detail names its cause
  (``failures.py``), with the Authorization value and the proxy's password
  removed; :meth:`SyncHTTP.perform` and :meth:`AsyncHTTP.perform` never raise
  an Exception.

Each URL is parsed once and remembered with the way it is sent: the engine only
ever asks for its batch URL and, with OAuth, its token URL. Requests carry
exactly the engine's headers plus ``Host`` and ``Content-Length``. Redirects are
never followed, so a 3xx comes back as a Response.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import httpx

from segment_core import Request, Response, TransportFailure, TransportFailureKind
from segment_runtimes._common import log

from .connections import AsyncConnections, Destination, SyncConnections
from .failures import StreamFailure, failure_of, redacted, request_secrets
from .proxies import PROXY_SCHEMES, BoundedBody, Proxies, proxy_failure, select_proxy

__all__ = ["AsyncHTTP", "Proxies", "SyncHTTP"]

_T = TypeVar("_T", httpx.HTTPTransport, httpx.AsyncHTTPTransport)


class _Unsendable(Exception):
    """A URL that cannot be sent (scheme, proxy); its text names the URL's scheme only."""


class _Route(Generic[_T]):
    """A parsed URL and how it is sent: directly on our own connections, or through a proxy's transport."""

    __slots__ = ("direct", "host", "proxy", "proxy_secrets", "transport", "url")

    def __init__(self, url: httpx.URL, direct: Destination | None, transport: _T | None, proxy: httpx.URL | None):
        self.url = url
        self.host = url.netloc  # the Host header
        self.direct = direct
        self.transport: _T | None = transport
        self.proxy = proxy
        self.proxy_secrets = [proxy.password] if proxy is not None and proxy.password else []


class _Routes(Generic[_T]):
    """URL -> route, decided on first use; one transport (and pool) per proxy, sharing one TLS context."""

    def __init__(self, make_transport: Callable[[ssl.SSLContext, str], _T], proxies: Proxies) -> None:
        self._make_transport: Callable[[ssl.SSLContext, str], _T] = make_transport
        self._proxies = proxies
        self._routes: dict[str, _Route[_T]] = {}
        self._transports: dict[str, _T] = {}
        self._ssl_context: ssl.SSLContext | None = None
        # Threaded workers share one client; nothing under this lock awaits or does I/O.
        self._lock = threading.Lock()

    def get(self, url: str) -> _Route[_T]:
        route = self._routes.get(url)
        if route is None:
            with self._lock:
                route = self._routes.get(url)
                if route is None:
                    route = self._routes[url] = self._new_route(url)
        return route

    def ssl_context(self) -> ssl.SSLContext:
        """Verification on, with the CA bundle httpx.Client would use; made once (loading it takes ms)."""
        with self._lock:
            return self._shared_ssl_context()

    def _shared_ssl_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            context = httpx.create_ssl_context(verify=True, trust_env=True)
            context.set_alpn_protocols(["http/1.1"])  # our connections speak HTTP/1.1 only
            self._ssl_context = context
        return self._ssl_context

    def _new_route(self, url: str) -> _Route[_T]:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise _Unsendable("invalid URL") from None
        if parsed.scheme not in ("http", "https"):
            raise _Unsendable(f"unsupported URL scheme {parsed.scheme!r}")
        proxy = select_proxy(parsed, self._proxies)
        if proxy is None:
            return _Route(parsed, Destination(parsed), None, None)
        try:
            proxy_url = httpx.URL(proxy)
        except httpx.InvalidURL:
            raise _Unsendable("invalid proxy URL") from None
        if proxy_url.scheme not in PROXY_SCHEMES:
            raise _Unsendable(f"unsupported proxy URL scheme {proxy_url.scheme!r}")
        transport = self._transports.get(proxy)
        if transport is None:  # called with the lock held
            transport = self._transports[proxy] = self._make_transport(self._shared_ssl_context(), proxy)
        return _Route(parsed, None, transport, proxy_url)

    def take_transports(self) -> list[_T]:
        """Forget every route; the transports, for the caller to close."""
        with self._lock:
            transports = list(self._transports.values())
            self._transports.clear()
            self._routes.clear()
        return transports


def _timeout_extensions(timeout: float) -> dict[str, Any]:
    return {"timeout": httpx.Timeout(timeout).as_dict()}


def _httpx_request(request: Request, route: _Route[Any], extensions: dict[str, Any]) -> httpx.Request:
    body = request.body
    headers = [(b"Host", route.host)]
    if body or request.method in ("POST", "PUT", "PATCH"):
        headers.append((b"Content-Length", b"%d" % len(body)))
    headers += [(name.encode("ascii"), value.encode("ascii")) for name, value in request.headers]
    # stream= rather than content=: nothing to encode, no headers to infer; this sets them all.
    return httpx.Request(
        request.method, route.url, headers=headers, stream=httpx.ByteStream(body), extensions=extensions
    )


def _answered(request: Request, status: int, headers: dict[str, str], body: bytes) -> Response:
    log.debug(
        "%s %s: %d message(s), retry %d -> %d",
        request.purpose.value,
        request.url,
        request.message_count,
        request.retry_count,
        status,
    )
    return Response(status=status, headers=headers, body=body)


def _failed(request: Request, failure: TransportFailure, route: _Route[Any] | None) -> TransportFailure:
    secrets = request_secrets(request) + (route.proxy_secrets if route is not None else [])
    failure = redacted(failure, secrets)
    log.debug("%s %s failed: %s: %s", request.purpose.value, request.url, failure.kind.value, failure.detail)
    return failure


def _unexpected(request: Request, exc: Exception) -> TransportFailure:
    if isinstance(exc, _Unsendable):
        return TransportFailure(kind=TransportFailureKind.OTHER, detail=str(exc))
    return failure_of(exc, request)


# The two clients --------------------------------------------------------------------------------


def _sync_transport(ssl_context: ssl.SSLContext, proxy: str) -> httpx.HTTPTransport:
    return httpx.HTTPTransport(verify=ssl_context, proxy=proxy)


def _async_transport(ssl_context: ssl.SSLContext, proxy: str) -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(verify=ssl_context, proxy=proxy)


class SyncHTTP:
    """Performs core Requests in the calling thread; safe to share between threads.

    Args:
        timeout: seconds for each of connecting, writing, reading and waiting for a pooled connection.
        proxies: a proxy URL, a requests-style mapping, or None (the environment's).
    """

    def __init__(self, *, timeout: float, proxies: Proxies = None) -> None:
        self._timeout = timeout
        self._routes: _Routes[httpx.HTTPTransport] = _Routes(_sync_transport, proxies)
        self._connections = SyncConnections(timeout, self._routes.ssl_context)
        self._extensions = _timeout_extensions(timeout)

    def perform(self, request: Request) -> Response | TransportFailure:
        """Send ``request`` and read the whole response; never raises an Exception."""
        route = None
        try:
            route = self._routes.get(request.url)
            if route.direct is not None:
                parsed = self._connections.exchange(route.direct, request)
                return _answered(request, parsed.status, parsed.headers, parsed.body)
            assert route.transport is not None  # a route has one or the other
            return _answered(request, *self._proxied(route.transport, route, request))
        except Exception as exc:  # the engine must hear of every request, whatever went wrong
            return _failed(request, _unexpected(request, exc), route)

    def _proxied(
        self, transport: httpx.HTTPTransport, route: _Route[httpx.HTTPTransport], request: Request
    ) -> tuple[int, dict[str, str], bytes]:
        assert route.proxy is not None
        try:
            response = transport.handle_request(_httpx_request(request, route, self._extensions))
            try:
                body = BoundedBody(response)
                assert isinstance(response.stream, httpx.SyncByteStream)
                for chunk in response.stream:
                    body.add(chunk)
            finally:
                response.close()
            return body.result()
        except Exception as exc:
            raise StreamFailure(proxy_failure(exc, route.proxy, self._timeout)) from exc

    def close(self) -> None:
        """Close every idle connection (one in use closes when its request ends)."""
        self._connections.close()
        for transport in self._routes.take_transports():
            transport.close()


class AsyncHTTP:
    """Performs core Requests on the running event loop (asyncio or trio); starts no thread.

    Args:
        timeout: seconds for each of connecting, writing, reading and waiting for a pooled connection.
        proxies: a proxy URL, a requests-style mapping, or None (the environment's).
    """

    def __init__(self, *, timeout: float, proxies: Proxies = None) -> None:
        self._timeout = timeout
        self._routes: _Routes[httpx.AsyncHTTPTransport] = _Routes(_async_transport, proxies)
        self._connections = AsyncConnections(timeout, self._routes.ssl_context)
        self._extensions = _timeout_extensions(timeout)

    async def perform(self, request: Request) -> Response | TransportFailure:
        """Send ``request`` and read the whole response; never raises an Exception (cancellation passes)."""
        route = None
        try:
            route = self._routes.get(request.url)
            if route.direct is not None:
                parsed = await self._connections.exchange(route.direct, request)
                return _answered(request, parsed.status, parsed.headers, parsed.body)
            assert route.transport is not None  # a route has one or the other
            return _answered(request, *await self._proxied(route.transport, route, request))
        except Exception as exc:  # anything but cancellation: the engine must hear of every request
            return _failed(request, _unexpected(request, exc), route)

    async def _proxied(
        self, transport: httpx.AsyncHTTPTransport, route: _Route[httpx.AsyncHTTPTransport], request: Request
    ) -> tuple[int, dict[str, str], bytes]:
        assert route.proxy is not None
        try:
            response = await transport.handle_async_request(_httpx_request(request, route, self._extensions))
            try:
                body = BoundedBody(response)
                assert isinstance(response.stream, httpx.AsyncByteStream)
                async for chunk in response.stream:
                    body.add(chunk)
            finally:
                await response.aclose()
            return body.result()
        except Exception as exc:
            raise StreamFailure(proxy_failure(exc, route.proxy, self._timeout)) from exc

    async def aclose(self) -> None:
        """Close every idle connection (one in use closes when its request ends)."""
        await self._connections.aclose()
        for transport in self._routes.take_transports():
            await transport.aclose()
