"""segment_runtimes: drive the sans-IO core with real clocks, sockets and files.

- :mod:`segment_runtimes.threaded`: ``Client``, a drop-in for ``segment.analytics.Client``,
  and the module-level API.
- :mod:`segment_runtimes.asyncio`: ``AsyncClient``.
- :mod:`segment_runtimes.trio`: ``open_client()`` / ``TrioClient`` (the ``[trio]`` extra).
- :mod:`segment_runtimes.collector`: a loopback Segment-compatible collector with a live
  event viewer (the ``[collector]`` extra).
- :mod:`segment_runtimes.plugins`: ready plugins (sampling, OpenTelemetry ids).
- ``call_context``: ids, traits and context fields for every call made inside a block
  (``segment_core.call_context``, here for convenience).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from segment_core import call_context

__all__ = ["call_context"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: importing a submodule (the pytest plugin, say) stays cheap.
    if name == "call_context":
        from segment_core import call_context  # noqa: PLC0415

        return call_context
    raise AttributeError(f"module 'segment_runtimes' has no attribute {name!r}")
