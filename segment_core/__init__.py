"""segment_core: the sans-IO heart of the client.

Pure: no sockets, threads, tasks, sleeps, clock reads or entropy reads. Time
and randomness are arguments; I/O is the runtime's job (see segment_runtimes).
"""

from ._constants import (
    DEFAULT_HOST as DEFAULT_HOST,
    DEFAULT_MAX_QUEUE_BYTES as DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_SIZE as DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_MAX_RATE_LIMIT_DURATION as DEFAULT_MAX_RATE_LIMIT_DURATION,
    DEFAULT_MAX_RETRIES as DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_TOTAL_BACKOFF_DURATION as DEFAULT_MAX_TOTAL_BACKOFF_DURATION,
    DEFAULT_OAUTH_AUTH_SERVER as DEFAULT_OAUTH_AUTH_SERVER,
    DEFAULT_OAUTH_SCOPE as DEFAULT_OAUTH_SCOPE,
    DEFAULT_SHUTDOWN_TIMEOUT as DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_TIMEOUT as DEFAULT_TIMEOUT,
    DEFAULT_UPLOAD_INTERVAL as DEFAULT_UPLOAD_INTERVAL,
    DEFAULT_UPLOAD_SIZE as DEFAULT_UPLOAD_SIZE,
    EU_HOST as EU_HOST,
    LIBRARY_NAME as LIBRARY_NAME,
    LIBRARY_VERSION as LIBRARY_VERSION,
    MAX_BATCH_BYTES as MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES,
    MAX_RETRY_AFTER as MAX_RETRY_AFTER,
    USER_AGENT as USER_AGENT,
)
from ._errors import (
    APIError as APIError,
    ConfigurationError as ConfigurationError,
    DeliveryError as DeliveryError,
    MessageTooLarge as MessageTooLarge,
    OAuthError as OAuthError,
    QueueFull as QueueFull,
    RateLimitExceeded as RateLimitExceeded,
    RetriesExhausted as RetriesExhausted,
    SegmentError as SegmentError,
    ShutdownDeadline as ShutdownDeadline,
    TransportError as TransportError,
    ValidationError as ValidationError,
)
from ._events import (
    MessagesDelivered as MessagesDelivered,
    MessagesFailed as MessagesFailed,
    Output as Output,
    RandomSource as RandomSource,
    Request as Request,
    RequestPurpose as RequestPurpose,
    Response as Response,
    TransportFailure as TransportFailure,
    TransportFailureKind as TransportFailureKind,
)
from ._version import __version__ as __version__
