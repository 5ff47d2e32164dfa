"""Ready plugins: sampling, and OpenTelemetry trace ids in each message's context.

Add them to any client (the simulator's included) with ``client.add_plugin``::

    from segment_runtimes.plugins import OpenTelemetryIds, Sampling

    client.add_plugin(Sampling(0.1))                            # keep a tenth of the users
    client.add_plugin(OpenTelemetryIds(), kind="enrichment")    # context.opentelemetry = {traceId, spanId}

``OpenTelemetryIds`` needs ``opentelemetry-api`` (the ``[opentelemetry]`` extra);
nothing imports it unless the plugin is made.
"""

from __future__ import annotations

from typing import Any

from segment_core.plugins import Sampling

from ._extras import missing_extra

__all__ = ["OpenTelemetryIds", "Sampling"]


class OpenTelemetryIds:
    """An enrichment plugin: the current OpenTelemetry trace and span ids go into ``context.opentelemetry``.

    ``{"traceId": "<32 hex digits>", "spanId": "<16 hex digits>"}``, as W3C Trace
    Context writes them, when a valid span is current; nothing otherwise.

    Raises:
        ImportError: opentelemetry-api is not installed (the message names the extra).
    """

    def __init__(self) -> None:
        try:
            from opentelemetry import trace  # noqa: PLC0415 - only for users of this plugin
        except ImportError as exc:
            raise ImportError(missing_extra("opentelemetry", "OpenTelemetryIds")) from exc
        self._current_span = trace.get_current_span

    def __repr__(self) -> str:
        return "OpenTelemetryIds()"

    def __call__(self, message: dict[str, Any], /) -> dict[str, Any] | None:
        """``{"context": {"opentelemetry": {...}}}`` for the current span, or None."""
        span_context = self._current_span().get_span_context()
        if not span_context.is_valid:
            return None
        ids = {"traceId": f"{span_context.trace_id:032x}", "spanId": f"{span_context.span_id:016x}"}
        return {"context": {"opentelemetry": ids}}
