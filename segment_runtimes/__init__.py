"""segment_runtimes: drive the sans-IO core with real clocks and sockets.

- :mod:`segment_runtimes.threaded`: ``Client``, a drop-in for ``segment.analytics.Client``.
- :mod:`segment_runtimes.asyncio`: ``AsyncClient``.
- :mod:`segment_runtimes.trio`: ``open_client()`` / ``TrioClient``.
- :mod:`segment_runtimes.collector`: a loopback Segment-compatible collector.
"""
