"""Performing the core's requests over HTTP: our own HTTP/1.1 connections, and httpx's transports for proxies.

The worker sends one kind of request, again and again: a POST of bytes it has
already built, with a handful of headers, to one or two URLs, never following a
redirect, never sending a cookie. A general client spends about a millisecond
of Python per batch on what this never needs (URL, header and cookie models,
auth and redirect machinery, an event-based protocol state machine, trace
hooks). That was most of the worker's time per event, and the worker shares
the caller's thread (asyncio, trio) or its GIL (threads).

So :class:`SyncHTTP` and :class:`AsyncHTTP` send a request to an origin reached
without a proxy on our own keep-alive connections (``_connections.py``): the
head written as :func:`._wire.request_head` does (each header set checked once per
destination), the reply read by
:class:`._wire.ResponseParser`, about 0.1-0.2 ms of CPU per batch. What httpx
gave is kept:

- TLS verification, on, with httpx's default CA bundle (``SSL_CERT_FILE`` and
  ``SSL_CERT_DIR`` honoured, as ``httpx.Client`` does), SNI and host name checks;
- keep-alive, an idle connection dropped after 5 s (httpx's default) or as soon
  as the server has closed it;
- timeouts for connecting, each write and each read;
- httpx's exception classes, so :func:`transport_failure` maps every failure;
- under asyncio and trio, no thread for an IP address host.

Requests through a proxy (``proxy=``, http, https and socks5 with
``httpx[socks]``) go to ``httpx.HTTPTransport`` / ``httpx.AsyncHTTPTransport``.

Each URL is parsed once and remembered with the way it is sent: the engine only
ever asks for its batch URL and, with OAuth, its token URL. Requests carry
exactly the engine's headers plus ``Host`` and ``Content-Length``; no
``Accept-Encoding`` is sent, and a response that is encoded anyway (gzip,
deflate) is decoded. Redirects are never followed, so a 3xx comes back as a
Response.

Proxies: ``proxies`` is a URL for every request, or a requests-style mapping
(``{"https": "http://proxy:3128"}``; keys ``scheme://host``, ``scheme``,
``all://host``, ``all``, tried in that order, as requests does). Otherwise, as
``httpx.Client`` and requests do, ``HTTP_PROXY``, ``HTTPS_PROXY``,
``ALL_PROXY`` and ``NO_PROXY`` from the environment apply.

:func:`transport_failure` is the one place an exception from a request becomes
the core's :class:`TransportFailure`; the Authorization value never reaches its
text.
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import httpx

from segment_core import Request, Response, TransportFailure, TransportFailureKind
from segment_runtimes._common import log

from .connections import AsyncConnections, Destination, SyncConnections
from .wire import HeaderValueError

__all__ = ["AsyncHTTP", "Proxies", "SyncHTTP", "select_proxy", "transport_failure"]

Proxies = str | Mapping[str, str] | None

_T = TypeVar("_T", httpx.HTTPTransport, httpx.AsyncHTTPTransport)

# Exceptions whose text says what went wrong on the network (an errno, a TLS
# alert, what the server or proxy sent) and never echoes the request's headers.
# Any other exception (h11's LocalProtocolError quotes an illegal header value,
# for one) is reported by its type name only.
_TEXT_IS_SAFE = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)
_DETAIL_LENGTH = 200
_CAUSES_SEARCHED = 4
_REDACTED = "[redacted]"


def transport_failure(exc: Exception, secrets: Iterable[str] = ()) -> TransportFailure:
    """Translate an exception raised by a request into the core's TransportFailure (the one place this happens).

    ``secrets`` are values that must not appear in the detail text (the
    Authorization header value); they are replaced wherever they occur.
    """
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.ProxyError):
        kind = TransportFailureKind.CONNECT  # the request never reached the server
    elif isinstance(exc, httpx.TimeoutException):
        kind = TransportFailureKind.TIMEOUT
    elif isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError | httpx.CloseError):
        kind = TransportFailureKind.RESET
    else:
        kind = TransportFailureKind.OTHER
    text = _network_text(exc) if isinstance(exc, _TEXT_IS_SAFE) else ""
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    for secret in secrets:
        if secret:
            detail = detail.replace(secret, _REDACTED)
    return TransportFailure(kind=kind, detail=detail[:_DETAIL_LENGTH])


def _network_text(exc: BaseException) -> str:
    """The exception's text, or its cause's when it has none (under trio, a TLS failure is an empty
    ConnectError caused by an empty BrokenResourceError caused by the SSLError that says what happened)."""
    cause: BaseException | None = exc
    for _ in range(_CAUSES_SEARCHED):
        if cause is None:
            break
        text = str(cause)
        if text:
            return text
        cause = cause.__cause__ or cause.__context__
    return ""


def _secrets(request: Request) -> list[str]:
    """The Authorization value and its credentials alone (text may quote either)."""
    values = []
    for name, value in request.headers:
        if name.lower() == "authorization":
            values.append(value)
            values.extend(part for part in value.split(" ", 1)[1:] if len(part) >= 4)
    return values


# Proxies ------------------------------------------------------------------------------------


def select_proxy(url: httpx.URL, proxies: Proxies) -> str | None:
    """The proxy URL that requests to ``url`` go through, or None to connect directly."""
    if isinstance(proxies, str):
        return proxies
    scheme, host = url.scheme, url.host.lower()
    if proxies:
        by_key = {key.lower().removesuffix("://"): value for key, value in proxies.items()}
        for key in (f"{scheme}://{host}", scheme, f"all://{host}", "all"):
            if by_key.get(key):
                return by_key[key]
    environment = urllib.request.getproxies()
    proxy = environment.get(scheme) or environment.get("all")
    if not proxy or _no_proxy(host, url.port or _DEFAULT_PORTS.get(scheme), environment.get("no", "")):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _no_proxy(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether NO_PROXY exempts ``host``: ``*``, a domain and its subdomains, an address or a network, each
    optionally with ``:port``."""
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower().split("://", 1)[-1].rstrip("/")
        if entry == "*":
            return True
        if entry.startswith("["):  # [v6] or [v6]:port
            name, _, rest = entry[1:].partition("]")
            entry_port = rest.removeprefix(":")
        elif entry.count(":") == 1:  # name:port or v4:port
            name, _, entry_port = entry.partition(":")
        else:  # name, v4, or a bare v6 address
            name, entry_port = entry, ""
        if not name or (entry_port and entry_port != str(port)):
            continue
        try:
            network = ipaddress.ip_network(name, strict=False)
        except ValueError:
            name = name.lstrip(".")
            if host == name or host.endswith("." + name):
                return True
        else:
            if address is not None and address in network:
                return True
    return False


# Routes: each URL parsed once, with the way it is sent ---------------------------------------


class _Route(Generic[_T]):
    """A parsed URL and how it is sent: through an httpx transport (a proxy), or directly on our own connections."""

    __slots__ = ("direct", "host", "transport", "url")

    def __init__(self, url: httpx.URL, transport: _T | None) -> None:
        self.url = url
        self.host = url.netloc  # the Host header
        self.transport: _T | None = transport
        self.direct = Destination(url) if transport is None else None


class _Routes(Generic[_T]):
    """URL -> route, decided on first use; one transport (and pool) per proxy, sharing one TLS context.

    A URL reached without a proxy gets no transport: it goes on our own connections.
    """

    def __init__(self, make_transport: Callable[[ssl.SSLContext, str | None], _T], proxies: Proxies) -> None:
        self._make_transport: Callable[[ssl.SSLContext, str | None], _T] = make_transport
        self._proxies = proxies
        self._routes: dict[str, _Route[_T]] = {}
        self._transports: dict[str | None, _T] = {}
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
        parsed = httpx.URL(url)
        proxy = select_proxy(parsed, self._proxies)
        if proxy is None:
            if parsed.scheme not in ("http", "https"):
                raise httpx.UnsupportedProtocol(f"unsupported URL scheme {parsed.scheme!r}")
            return _Route(parsed, None)
        transport = self._transports.get(proxy)
        if transport is None:  # called with the lock held
            transport = self._transports[proxy] = self._make_transport(self._shared_ssl_context(), proxy)
        return _Route(parsed, transport)

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


def _failed(request: Request, exc: Exception) -> TransportFailure:
    if isinstance(exc, HeaderValueError):  # refused before anything was sent
        exc = httpx.LocalProtocolError(str(exc))
    failure = transport_failure(exc, _secrets(request))
    log.debug("%s %s failed: %s", request.purpose.value, request.url, failure.kind.value)
    return failure


# The two clients --------------------------------------------------------------------------------


def _sync_transport(ssl_context: ssl.SSLContext, proxy: str | None) -> httpx.HTTPTransport:
    return httpx.HTTPTransport(verify=ssl_context, proxy=proxy)


def _async_transport(ssl_context: ssl.SSLContext, proxy: str | None) -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(verify=ssl_context, proxy=proxy)


class SyncHTTP:
    """Performs core Requests in the calling thread; safe to share between threads.

    Args:
        timeout: seconds for each of connecting, writing, reading and waiting for a pooled connection.
        proxies: a proxy URL, a requests-style mapping, or None (the environment's).
    """

    def __init__(self, *, timeout: float, proxies: Proxies = None) -> None:
        self._routes: _Routes[httpx.HTTPTransport] = _Routes(_sync_transport, proxies)
        self._connections = SyncConnections(timeout, self._routes.ssl_context)
        self._extensions = _timeout_extensions(timeout)

    def perform(self, request: Request) -> Response | TransportFailure:
        """Send ``request`` and read the whole response; never raises an Exception."""
        try:
            route = self._routes.get(request.url)
            if route.transport is None:
                assert route.direct is not None  # a route has one or the other
                parsed = self._connections.exchange(route.direct, request)
                return _answered(request, parsed.status, parsed.headers, parsed.body)
            response = route.transport.handle_request(_httpx_request(request, route, self._extensions))
            try:
                body = response.read()
            finally:
                response.close()
        except Exception as exc:  # the engine must hear of every request, whatever went wrong
            return _failed(request, exc)
        # Headers.items() gives lower-case names, repeated headers joined with ", ".
        return _answered(request, response.status_code, dict(response.headers.items()), body)

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
        self._routes: _Routes[httpx.AsyncHTTPTransport] = _Routes(_async_transport, proxies)
        self._connections = AsyncConnections(timeout, self._routes.ssl_context)
        self._extensions = _timeout_extensions(timeout)

    async def perform(self, request: Request) -> Response | TransportFailure:
        """Send ``request`` and read the whole response; never raises an Exception (cancellation passes)."""
        try:
            route = self._routes.get(request.url)
            if route.transport is None:
                assert route.direct is not None  # a route has one or the other
                parsed = await self._connections.exchange(route.direct, request)
                return _answered(request, parsed.status, parsed.headers, parsed.body)
            response = await route.transport.handle_async_request(_httpx_request(request, route, self._extensions))
            try:
                body = await response.aread()
            finally:
                await response.aclose()
        except Exception as exc:  # anything but cancellation: the engine must hear of every request
            return _failed(request, exc)
        return _answered(request, response.status_code, dict(response.headers.items()), body)

    async def aclose(self) -> None:
        """Close every idle connection (one in use closes when its request ends)."""
        await self._connections.aclose()
        for transport in self._routes.take_transports():
            await transport.aclose()
