"""segment_core: the sans-IO heart of the client.

Pure: no sockets, threads, tasks, sleeps, clock reads or entropy reads. Time
and randomness are arguments; I/O is the runtime's job (see segment_runtimes).
"""

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
from ._errors import (
    APIError as APIError,
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
from ._version import __version__ as __version__
