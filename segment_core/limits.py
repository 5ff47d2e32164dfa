"""Limits and defaults, each with where its number comes from.

Wire limits are Segment's HTTP Tracking API limits
(https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/#max-request-size);
defaults match segment-analytics-python 2.4 so that switching clients changes no behaviour.
"""

from __future__ import annotations

from typing import Final

from ._version import __version__

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_QUEUE_BYTES",
    "DEFAULT_MAX_QUEUE_SIZE",
    "DEFAULT_MAX_RATE_LIMIT_DURATION",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MAX_SPOOL_BYTES",
    "DEFAULT_MAX_TOTAL_BACKOFF_DURATION",
    "DEFAULT_OAUTH_AUTH_SERVER",
    "DEFAULT_OAUTH_SCOPE",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "DEFAULT_UPLOAD_INTERVAL",
    "DEFAULT_UPLOAD_SIZE",
    "EU_HOST",
    "LIBRARY_NAME",
    "LIBRARY_VERSION",
    "MAX_BATCH_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_RETRY_AFTER",
    "USER_AGENT",
]

# The distribution name; also the User-Agent product and context.library.name.
LIBRARY_NAME: Final = "segment-sansio"
LIBRARY_VERSION: Final = __version__
USER_AGENT: Final = f"{LIBRARY_NAME}/{LIBRARY_VERSION}"

DEFAULT_HOST: Final = "https://api.segment.io"
EU_HOST: Final = "https://events.eu1.segmentapis.com"

# "Each call has a limit of 32KB": one message's JSON, in bytes.
MAX_MESSAGE_BYTES: Final = 32 * 1024
# "The batch request is limited to 500KB": the whole request body, envelope
# included. Read as 500,000 bytes, the stricter of the two meanings of "KB".
MAX_BATCH_BYTES: Final = 500_000

# segment-analytics-python 2.4 Client.DefaultConfig, but for the queue's count.
# 2.4 caps its queue at 10,000 messages. A call here costs a tenth of 2.4's, so a burst
# (8 threads x 2,000 tracks) fills 10,000 before delivery drains it and would be dropped;
# 100,000 lets max_queue_bytes (32 MiB) be the memory guard, as it is meant to be.
DEFAULT_MAX_QUEUE_SIZE: Final = 100_000
DEFAULT_UPLOAD_SIZE: Final = 100
DEFAULT_UPLOAD_INTERVAL: Final = 0.5
DEFAULT_MAX_RETRIES: Final = 10
DEFAULT_TIMEOUT: Final = 15.0
DEFAULT_MAX_TOTAL_BACKOFF_DURATION: Final = 12 * 60 * 60.0
DEFAULT_MAX_RATE_LIMIT_DURATION: Final = 30 * 60.0
# A guard against an absurd Retry-After, as in segment-analytics-python 2.4.
MAX_RETRY_AFTER: Final = 300.0
DEFAULT_OAUTH_AUTH_SERVER: Final = "https://oauth2.segment.io"
DEFAULT_OAUTH_SCOPE: Final = "tracking_api:write"

# New in this project.
# 32 MiB bounds the memory a stalled pipeline can hold, whatever the message size.
DEFAULT_MAX_QUEUE_BYTES: Final = 32 * 1024 * 1024
# One request at a time keeps message order across retries, like the reference.
DEFAULT_MAX_IN_FLIGHT: Final = 1
# How long shutdown (and exit) may take before undelivered messages are reported failed.
DEFAULT_SHUTDOWN_TIMEOUT: Final = 10.0
# The disk spool's bound: about two million typical events, a long outage's worth for most services.
DEFAULT_MAX_SPOOL_BYTES: Final = 1024 * 1024 * 1024
