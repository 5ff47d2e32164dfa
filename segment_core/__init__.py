"""segment_core: the sans-IO heart of the client.

Pure: no sockets, threads, tasks, sleeps, clock reads or entropy reads. Time
and randomness are arguments; I/O is the runtime's job (see segment_runtimes).
"""

from typing import TYPE_CHECKING

from ._build import (
    BuiltMessage as BuiltMessage,
)
from ._build import (
    build_from_struct as build_from_struct,
)
from ._build import (
    build_message as build_message,
)
from ._build import (
    format_timestamp as format_timestamp,
)
from ._build import (
    message_id_from_bits as message_id_from_bits,
)
from ._calls import CallMethods as CallMethods
from ._constants import (
    DEFAULT_HOST as DEFAULT_HOST,
)
from ._constants import (
    DEFAULT_MAX_QUEUE_BYTES as DEFAULT_MAX_QUEUE_BYTES,
)
from ._constants import (
    DEFAULT_MAX_QUEUE_SIZE as DEFAULT_MAX_QUEUE_SIZE,
)
from ._constants import (
    DEFAULT_MAX_RATE_LIMIT_DURATION as DEFAULT_MAX_RATE_LIMIT_DURATION,
)
from ._constants import (
    DEFAULT_MAX_RETRIES as DEFAULT_MAX_RETRIES,
)
from ._constants import (
    DEFAULT_MAX_TOTAL_BACKOFF_DURATION as DEFAULT_MAX_TOTAL_BACKOFF_DURATION,
)
from ._constants import (
    DEFAULT_OAUTH_AUTH_SERVER as DEFAULT_OAUTH_AUTH_SERVER,
)
from ._constants import (
    DEFAULT_OAUTH_SCOPE as DEFAULT_OAUTH_SCOPE,
)
from ._constants import (
    DEFAULT_SHUTDOWN_TIMEOUT as DEFAULT_SHUTDOWN_TIMEOUT,
)
from ._constants import (
    DEFAULT_TIMEOUT as DEFAULT_TIMEOUT,
)
from ._constants import (
    DEFAULT_UPLOAD_INTERVAL as DEFAULT_UPLOAD_INTERVAL,
)
from ._constants import (
    DEFAULT_UPLOAD_SIZE as DEFAULT_UPLOAD_SIZE,
)
from ._constants import (
    EU_HOST as EU_HOST,
)
from ._constants import (
    LIBRARY_NAME as LIBRARY_NAME,
)
from ._constants import (
    LIBRARY_VERSION as LIBRARY_VERSION,
)
from ._constants import (
    MAX_BATCH_BYTES as MAX_BATCH_BYTES,
)
from ._constants import (
    MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES,
)
from ._constants import (
    MAX_RETRY_AFTER as MAX_RETRY_AFTER,
)
from ._constants import (
    USER_AGENT as USER_AGENT,
)
from ._engine import (
    Authorizer as Authorizer,
)
from ._engine import (
    BatchState as BatchState,
)
from ._engine import (
    Engine as Engine,
)
from ._engine import (
    EngineConfig as EngineConfig,
)
from ._engine import (
    EngineState as EngineState,
)
from ._engine import (
    Enqueued as Enqueued,
)
from ._engine import (
    Stats as Stats,
)
from ._errors import (
    APIError as APIError,
)
from ._errors import (
    ClientClosed as ClientClosed,
)
from ._errors import (
    ConfigurationError as ConfigurationError,
)
from ._errors import (
    DeliveryError as DeliveryError,
)
from ._errors import (
    MessageTooLarge as MessageTooLarge,
)
from ._errors import (
    OAuthError as OAuthError,
)
from ._errors import (
    QueueFull as QueueFull,
)
from ._errors import (
    RateLimitExceeded as RateLimitExceeded,
)
from ._errors import (
    RetriesExhausted as RetriesExhausted,
)
from ._errors import (
    SegmentError as SegmentError,
)
from ._errors import (
    ShutdownDeadline as ShutdownDeadline,
)
from ._errors import (
    TransportError as TransportError,
)
from ._errors import (
    ValidationError as ValidationError,
)
from ._events import (
    MessagesDelivered as MessagesDelivered,
)
from ._events import (
    MessagesFailed as MessagesFailed,
)
from ._events import (
    Output as Output,
)
from ._events import (
    RandomSource as RandomSource,
)
from ._events import (
    Request as Request,
)
from ._events import (
    RequestPurpose as RequestPurpose,
)
from ._events import (
    Response as Response,
)
from ._events import (
    TransportFailure as TransportFailure,
)
from ._events import (
    TransportFailureKind as TransportFailureKind,
)
from ._messages import (
    Alias as Alias,
)
from ._messages import (
    Group as Group,
)
from ._messages import (
    Identify as Identify,
)
from ._messages import (
    Message as Message,
)
from ._messages import (
    MessageType as MessageType,
)
from ._messages import (
    Page as Page,
)
from ._messages import (
    Screen as Screen,
)
from ._messages import (
    Track as Track,
)
from ._version import __version__ as __version__

__all__ = [
    "APIError",
    "Alias",
    "Authorizer",
    "BatchState",
    "BuiltMessage",
    "CallMethods",
    "ClientClosed",
    "ConfigurationError",
    "DEFAULT_HOST",
    "DEFAULT_MAX_QUEUE_BYTES",
    "DEFAULT_MAX_QUEUE_SIZE",
    "DEFAULT_MAX_RATE_LIMIT_DURATION",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MAX_TOTAL_BACKOFF_DURATION",
    "DEFAULT_OAUTH_AUTH_SERVER",
    "DEFAULT_OAUTH_SCOPE",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "DEFAULT_UPLOAD_INTERVAL",
    "DEFAULT_UPLOAD_SIZE",
    "DeliveryError",
    "EU_HOST",
    "Engine",
    "EngineConfig",
    "EngineState",
    "Enqueued",
    "Group",
    "Identify",
    "LIBRARY_NAME",
    "LIBRARY_VERSION",
    "MAX_BATCH_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_RETRY_AFTER",
    "Message",
    "MessageTooLarge",
    "MessageType",
    "MessagesDelivered",
    "MessagesFailed",
    "OAuthConfig",
    "OAuthError",
    "Output",
    "Page",
    "QueueFull",
    "RandomSource",
    "RateLimitExceeded",
    "Request",
    "RequestPurpose",
    "Response",
    "RetriesExhausted",
    "Screen",
    "SegmentError",
    "ShutdownDeadline",
    "Stats",
    "TokenManager",
    "TokenRequest",
    "TokenState",
    "TokenStateError",
    "Track",
    "TransportError",
    "TransportFailure",
    "TransportFailureKind",
    "USER_AGENT",
    "ValidationError",
    "__version__",
    "build_from_struct",
    "build_message",
    "format_timestamp",
    "message_id_from_bits",
]

if TYPE_CHECKING:
    from ._oauth import (
        OAuthConfig as OAuthConfig,
    )
    from ._oauth import (
        TokenManager as TokenManager,
    )
    from ._oauth import (
        TokenRequest as TokenRequest,
    )
    from ._oauth import (
        TokenState as TokenState,
    )
    from ._oauth import (
        TokenStateError as TokenStateError,
    )

# OAuth (PyJWT, cryptography) loads on first use: most clients authenticate with the write key.
_LAZY = {"OAuthConfig", "TokenManager", "TokenRequest", "TokenState", "TokenStateError"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from . import _oauth  # noqa: PLC0415

        return getattr(_oauth, name)
    raise AttributeError(f"module 'segment_core' has no attribute {name!r}")
