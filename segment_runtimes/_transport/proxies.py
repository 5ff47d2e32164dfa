"""Requests through a proxy: which proxy, and the reply read through httpx within our bounds.

A request whose URL has a proxy goes to ``httpx.HTTPTransport`` /
``httpx.AsyncHTTPTransport`` (http, https and socks5 proxies with
``httpx[socks]``). Its reply is read from the transport's stream chunk by chunk
and held to the same bounds as a direct one (:data:`.wire.MAX_HEAD_BYTES`,
:data:`.wire.MAX_BODY_BYTES`, and the same bounded decoding of gzip and
deflate): reading stops at the first byte over, and the request fails naming
the cause. httpx's exceptions are described by the one map in ``failures.py``
(their cause is the OS or TLS error), the operation told by their class.

Which proxy: ``proxies`` is a URL for every request, or a requests-style mapping
(``{"https": "http://proxy:3128"}``; keys ``scheme://host``, ``scheme``,
``all://host``, ``all``, tried in that order, as requests does). Otherwise, as
``httpx.Client`` and requests do, ``HTTP_PROXY``, ``HTTPS_PROXY``,
``ALL_PROXY`` and ``NO_PROXY`` from the environment apply.
"""

from __future__ import annotations

import ipaddress
import urllib.request
from collections.abc import Mapping
from typing import Final

import httpx

from segment_core import TransportFailure, TransportFailureKind

from .failures import Operation, describe
from .wire import BODY_TOO_LARGE, HEAD_TOO_LONG, MAX_BODY_BYTES, MAX_HEAD_BYTES, ProtocolError, decoded_body, head_size

__all__ = ["PROXY_SCHEMES", "BoundedBody", "Proxies", "proxy_failure", "select_proxy"]

Proxies = str | Mapping[str, str] | None
# What httpx's transports accept (socks5 needs httpx[socks]).
PROXY_SCHEMES: Final = ("http", "https", "socks5", "socks5h")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


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


class BoundedBody:
    """A proxied reply's head checked and its body gathered chunk by chunk, within the direct bounds.

    Args:
        response: the reply as httpx's transport returned it, its body not yet read.

    Raises:
        ProtocolError: from the constructor or :meth:`add`, at the first byte over a bound.
    """

    __slots__ = ("_body", "_response")

    def __init__(self, response: httpx.Response) -> None:
        # httpcore's h11 held the head to 100 KiB; ours is smaller.
        if head_size(response.reason_phrase.encode("latin-1"), response.headers.raw) > MAX_HEAD_BYTES:
            raise ProtocolError(HEAD_TOO_LONG)
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise ProtocolError(BODY_TOO_LARGE)
        self._response = response
        self._body = bytearray()

    def add(self, chunk: bytes) -> None:
        """Take the next chunk of the body as it came (before any content decoding)."""
        self._body += chunk
        if len(self._body) > MAX_BODY_BYTES:
            raise ProtocolError(BODY_TOO_LARGE)

    def result(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lower-case names, repeats joined with ", ") and the decoded body."""
        headers = dict(self._response.headers.items())
        return self._response.status_code, headers, decoded_body(bytes(self._body), headers.get("content-encoding", ""))


# httpx's exception classes say which operation failed; the map in failures.py says why.
_OPERATIONS: Final = (
    ((httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout), Operation.CONNECT),
    ((httpx.WriteError, httpx.WriteTimeout), Operation.WRITE),
)


def proxy_failure(exc: Exception, proxy: httpx.URL, timeout: float) -> TransportFailure:
    """The TransportFailure for an exception raised performing a request through ``proxy``."""
    where = f"proxy {proxy.host}:{proxy.port or _DEFAULT_PORTS.get(proxy.scheme, 1080)}"
    if isinstance(exc, httpx.ProxyError):  # the proxy answered, and refused (a 407, a 502 to CONNECT)
        return TransportFailure(kind=TransportFailureKind.CONNECT, detail=f"proxy refused: {exc} ({where})")
    if isinstance(exc, httpx.RemoteProtocolError):
        return TransportFailure(kind=TransportFailureKind.RESET, detail=f"{exc} ({where})")
    if isinstance(exc, httpx.LocalProtocolError):  # its text can quote a header value: the type only
        return TransportFailure(kind=TransportFailureKind.OTHER, detail=f"request refused by httpx ({where})")
    operation = next((op for classes, op in _OPERATIONS if isinstance(exc, classes)), Operation.READ)
    return describe(exc, operation, where, timeout)
