"""The transport: performs the core's Requests over HTTP/1.1, for threads (SyncHTTP) and event loops (AsyncHTTP).

Layers, bottom up, as httpcore's: ``streams.py`` (one small stream interface per
backend: blocking socket, asyncio, trio), ``failures.py`` (the one map from OS,
TLS and protocol errors to the core's TransportFailure, at the stream
boundary), ``wire.py`` (HTTP/1.1 bytes, sans-IO), ``connections.py`` (keep-alive
and the one exchange, sync and async), ``proxies.py`` (httpx's transports for
proxies, held to the same bounds) and ``http.py`` (the two clients).
"""

from .http import AsyncHTTP, SyncHTTP

__all__ = ["AsyncHTTP", "SyncHTTP"]
