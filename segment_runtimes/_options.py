"""Every client setting, once: its name, type, default, meaning and check.

:class:`Settings` is the one place the keywords live. The runtimes' constructors
take them (``threaded.Client`` with segment-analytics-python 2.4's positional
order; ``AsyncClient``, ``TrioClient`` and ``open_client`` as
``**options: Unpack[ClientOptions]``), the module API of ``threaded`` reads its
settings by the same names, the command line makes its flags from
:func:`settings_fields`, and each constructor's docstring gets its ``Args``
section from :func:`args_doc`. tests/test_options.py checks that every one of
them agrees with :class:`Settings`.

Values are checked when a client is built: what segment-analytics-python 2.4
rejects there raises here too (``ValidationError`` for a missing write key,
an AssertionError as before); other bad values raise ``ConfigurationError``
naming the field. What 2.4 accepts is accepted (a falsy ``on_error``, a
``max_queue_size`` of 0 for no count limit, ``timeout=None`` for no timeout);
what 2.4 only finds out at delivery (an unusable OAuth key) is reported at
delivery.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal, TypedDict

from segment_core import ConfigurationError, EngineConfig, OAuthConfig, ValidationError
from segment_core.limits import (
    DEFAULT_HOST,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_MAX_RATE_LIMIT_DURATION,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_SPOOL_BYTES,
    DEFAULT_MAX_TOTAL_BACKOFF_DURATION,
    DEFAULT_OAUTH_AUTH_SERVER,
    DEFAULT_OAUTH_SCOPE,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_TIMEOUT,
    DEFAULT_UPLOAD_INTERVAL,
    DEFAULT_UPLOAD_SIZE,
)

__all__ = [
    "ClientOptions",
    "ErrorCallback",
    "FsyncPolicy",
    "Proxies",
    "Settings",
    "SuccessCallback",
    "add_settings_flags",
    "args_doc",
    "settings_fields",
    "settings_from_flags",
]

ErrorCallback = Callable[[Exception, list[dict[str, Any]]], object]
SuccessCallback = Callable[[list[dict[str, Any]]], object]
Proxies = str | Mapping[str, str] | None
FsyncPolicy = Literal["never", "interval", "always"]

# timeout=None waits as long as the server takes (as in 2.4); a day stands for "no limit".
NO_TIMEOUT: Final = 24 * 3600.0
FSYNC_POLICIES: Final = ("never", "interval", "always")


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """A client's settings, checked. Build one with the keywords; see each field for its meaning.

    Raises:
        ValidationError: ``write_key`` is not a str (an AssertionError too, as in 2.4).
        ConfigurationError: another value is invalid; the message names the field.
    """

    write_key: str | None = dataclasses.field(
        default=None, metadata=_doc("The source's write key (required). Never logged or shown in a repr.")
    )
    host: str | None = dataclasses.field(
        default=None,
        metadata=_doc(
            f"The API's base URL; None means {DEFAULT_HOST} (EU: https://events.eu1.segmentapis.com). "
            "A trailing slash is dropped."
        ),
    )
    debug: bool = dataclasses.field(
        default=False, metadata=_doc("Log at DEBUG level on the `segment` logger (adds a handler if it has none).")
    )
    max_queue_size: int = dataclasses.field(
        default=DEFAULT_MAX_QUEUE_SIZE,
        metadata=_doc(
            "Messages queued in memory, at most; 0 or less means no count limit (max_queue_bytes still holds). "
            "A full queue never blocks: the call returns (False, msg)."
        ),
    )
    send: bool = dataclasses.field(
        default=True, metadata=_doc("False: build and validate messages but send nothing (calls return True).")
    )
    on_error: ErrorCallback | Literal[False, 0, ""] | None = dataclasses.field(
        default=None,
        metadata=_doc(
            "Called as on_error(error, batch) once per batch that failed for good, from the worker; "
            "error is a DeliveryError naming its cause. A falsy value means none."
        ),
    )
    gzip: bool = dataclasses.field(default=False, metadata=_doc("Gzip request bodies."))
    max_retries: int = dataclasses.field(
        default=DEFAULT_MAX_RETRIES,
        metadata=_doc("Counted retries of a batch (and of a token request) before it fails."),
    )
    timeout: float | None = dataclasses.field(
        default=DEFAULT_TIMEOUT,
        metadata=_doc("Seconds for each of connecting, writing and reading a request; None: no limit."),
    )
    proxies: Proxies = dataclasses.field(
        default=None,
        metadata=_doc(
            'A proxy URL for every request, or a requests-style mapping ({"https": "http://proxy:3128"}); '
            "None: HTTP(S)_PROXY/NO_PROXY from the environment."
        ),
    )
    max_in_flight: int = dataclasses.field(
        default=DEFAULT_MAX_IN_FLIGHT,
        metadata=_doc(
            "Batch requests at once (thread in the threaded client, as in 2.4); "
            "more than 1 gives up strict message order across retries."
        ),
    )
    upload_size: int = dataclasses.field(default=DEFAULT_UPLOAD_SIZE, metadata=_doc("Messages per batch, at most."))
    upload_interval: float = dataclasses.field(
        default=DEFAULT_UPLOAD_INTERVAL, metadata=_doc("Seconds a message may wait for its batch to fill.")
    )
    log_handler: logging.Handler | None = dataclasses.field(
        default=None, metadata=_doc("A handler added to the `segment` logger.")
    )
    oauth_client_id: str | None = dataclasses.field(
        default=None, metadata=_doc("OAuth: the client id. OAuth is on when it, the key and the key id are all set.")
    )
    oauth_client_key: str | None = dataclasses.field(
        default=None,
        metadata=_doc("OAuth: the PEM RSA private key. One that cannot be used is reported at delivery."),
    )
    oauth_key_id: str | None = dataclasses.field(default=None, metadata=_doc("OAuth: the key id (the JWT's kid)."))
    oauth_auth_server: str = dataclasses.field(
        default=DEFAULT_OAUTH_AUTH_SERVER, metadata=_doc("OAuth: the authorization server's URL.")
    )
    oauth_scope: str = dataclasses.field(default=DEFAULT_OAUTH_SCOPE, metadata=_doc("OAuth: the scope requested."))
    max_total_backoff_duration: float = dataclasses.field(
        default=DEFAULT_MAX_TOTAL_BACKOFF_DURATION,
        metadata=_doc("Seconds after a batch first fails past which it is not retried."),
    )
    max_rate_limit_duration: float = dataclasses.field(
        default=DEFAULT_MAX_RATE_LIMIT_DURATION,
        metadata=_doc("Seconds one episode of Retry-After pauses may last before the batch fails."),
    )
    shutdown_timeout: float = dataclasses.field(
        default=DEFAULT_SHUTDOWN_TIMEOUT,
        metadata=_doc(
            "Seconds shutdown (and exit) may take; what is not delivered by then is reported through on_error "
            "(or, with a spool, kept on disk for the next start)."
        ),
    )
    max_queue_bytes: int = dataclasses.field(
        default=DEFAULT_MAX_QUEUE_BYTES, metadata=_doc("Bytes of encoded messages queued in memory, at most.")
    )
    on_success: SuccessCallback | None = dataclasses.field(
        default=None,
        metadata=_doc("Called as on_success(batch) once per delivered batch, from the worker, never the caller."),
    )
    queue_full_timeout: float = dataclasses.field(
        default=0.0,
        metadata=_doc(
            "Seconds a call may wait for room when the queue is full, then drops its message with a warning; "
            "0 never waits (threaded client only: an async client never blocks, it offers "
            "`await client.wait_for_room()`)."
        ),
    )
    spool_dir: str | os.PathLike[str] | None = dataclasses.field(
        default=None,
        metadata=_doc(
            "A directory for the disk spool: a call returns True only once its message is in a spool file, "
            "and a client starting on the directory delivers what a dead process left. None: memory only."
        ),
    )
    max_spool_bytes: int = dataclasses.field(
        default=DEFAULT_MAX_SPOOL_BYTES,
        metadata=_doc("Bytes the spool's files may take, at most; past it a call returns (False, msg)."),
    )
    spool_fsync: FsyncPolicy = dataclasses.field(
        default="interval",
        metadata=_doc(
            'When the spool is forced to disk: "interval" (by the worker, at most every second: a power cut '
            'loses at most about a second), "never" (the OS decides: safe from a crash, not a power cut), '
            '"always" (before each call returns; threaded client only).'
        ),
    )

    def __post_init__(self) -> None:
        if not isinstance(self.write_key, str):
            raise ValidationError("write_key", "a str", self.write_key)
        if self.host is not None and not isinstance(self.host, str):
            raise ConfigurationError("host must be an http:// or https:// URL, or None")
        if self.on_error and not callable(self.on_error):
            raise ConfigurationError("on_error must be callable as on_error(error, batch), or falsy for none")
        if self.on_success is not None and not callable(self.on_success):
            raise ConfigurationError("on_success must be callable as on_success(batch), or None")
        for name in ("timeout", "shutdown_timeout", "queue_full_timeout"):
            value = getattr(self, name)
            if value is None and name == "timeout":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ConfigurationError(f"{name} must be a non-negative number of seconds")
        if isinstance(self.max_queue_size, bool) or not isinstance(self.max_queue_size, int):
            raise ConfigurationError("max_queue_size must be an int (0 or less: no count limit)")
        if self.spool_dir is not None and not isinstance(self.spool_dir, str | os.PathLike):
            raise ConfigurationError("spool_dir must be a path (str or os.PathLike), or None")
        if self.spool_fsync not in FSYNC_POLICIES:
            raise ConfigurationError(f"spool_fsync must be one of {', '.join(FSYNC_POLICIES)}")
        spool_bytes = self.max_spool_bytes
        if isinstance(spool_bytes, bool) or not isinstance(spool_bytes, int) or spool_bytes < 1:
            raise ConfigurationError("max_spool_bytes must be an int of at least 1")
        # The engine checks the delivery settings (ConfigurationError naming the field).
        self.engine_config()

    def __repr__(self) -> str:
        return f"Settings(host={self.api_host!r}, send={self.send}, oauth={self.oauth_enabled})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        # rich would otherwise list the dataclass's fields, the write key and private key among them.
        return [("host", self.api_host), ("send", self.send), ("oauth", self.oauth_enabled)]

    @property
    def api_host(self) -> str:
        """The base URL requests go to."""
        return self.host or DEFAULT_HOST

    @property
    def oauth_enabled(self) -> bool:
        """Whether requests carry OAuth tokens (all three of client id, key and key id set)."""
        return bool(self.oauth_client_id and self.oauth_client_key and self.oauth_key_id)

    @property
    def error_callback(self) -> ErrorCallback | None:
        """``on_error`` as a callable, or None (2.4 reads any falsy value as none)."""
        return self.on_error or None

    @property
    def request_timeout(self) -> float:
        """``timeout`` in seconds, with None read as no limit."""
        return NO_TIMEOUT if self.timeout is None else float(self.timeout)

    def engine_config(self, *, durable: bool = False) -> EngineConfig:
        """The engine's part of these settings."""
        oauth = None
        client_id, private_key, key_id = self.oauth_client_id, self.oauth_client_key, self.oauth_key_id
        if client_id and private_key and key_id:
            oauth = OAuthConfig(
                client_id=client_id,
                private_key=private_key,
                key_id=key_id,
                auth_server=self.oauth_auth_server,
                scope=self.oauth_scope,
                max_retries=self.max_retries,
            )
        max_queue_size = self.max_queue_size if self.max_queue_size > 0 else _UNLIMITED
        return EngineConfig(
            write_key=self.write_key or "",
            host=self.api_host,
            upload_size=self.upload_size,
            upload_interval=self.upload_interval,
            max_queue_size=max_queue_size,
            max_queue_bytes=self.max_queue_bytes,
            max_retries=self.max_retries,
            max_total_backoff_duration=self.max_total_backoff_duration,
            max_rate_limit_duration=self.max_rate_limit_duration,
            max_in_flight=self.max_in_flight,
            gzip=bool(self.gzip),
            oauth=oauth,
            durable=durable,
        )


# max_queue_size <= 0: the count is not a limit (queue.Queue(0) in 2.4); the byte bound still is.
_UNLIMITED: Final = 2**62


class ClientOptions(TypedDict, total=False):
    """The keywords of every client but the write key: :class:`Settings`' fields, for ``**options``."""

    host: str | None
    debug: bool
    max_queue_size: int
    send: bool
    on_error: ErrorCallback | Literal[False, 0, ""] | None
    gzip: bool
    max_retries: int
    timeout: float | None
    proxies: Proxies
    max_in_flight: int
    upload_size: int
    upload_interval: float
    log_handler: logging.Handler | None
    oauth_client_id: str | None
    oauth_client_key: str | None
    oauth_key_id: str | None
    oauth_auth_server: str
    oauth_scope: str
    max_total_backoff_duration: float
    max_rate_limit_duration: float
    shutdown_timeout: float
    max_queue_bytes: int
    on_success: SuccessCallback | None
    queue_full_timeout: float
    spool_dir: str | os.PathLike[str] | None
    max_spool_bytes: int
    spool_fsync: FsyncPolicy


def settings_fields() -> tuple[dataclasses.Field[Any], ...]:
    """The settings, in order: name, type (as text), default and ``metadata["doc"]``."""
    return dataclasses.fields(Settings)


def args_doc(*, renamed: Mapping[str, str] | None = None, extra: Sequence[tuple[str, str, str]] = ()) -> str:
    """An ``Args:`` section documenting every setting (type, default, meaning), for a constructor's docstring.

    Args:
        renamed: setting name -> the keyword a constructor calls it (``max_in_flight`` -> ``thread``).
        extra: more ``(name, type, doc)`` rows, for a runtime's own keywords.
    """
    renamed = renamed or {}
    lines = ["Args:"]
    for field in settings_fields():
        default = "required" if field.name == "write_key" else f"default {field.default!r}"
        name = renamed.get(field.name, field.name)
        lines.append(f"    {name} ({field.type}): {field.metadata['doc']} ({default}).")
    for name, type_text, doc in extra:
        lines.append(f"    {name} ({type_text}): {doc}")
    return "\n".join(lines)


# The command line's flags, from the same fields -----------------------------------------------

# Settings a flag can carry: plain values (callbacks and handlers are Python objects).
_FLAG_TYPES: Final[dict[str, Callable[[str], Any]]] = {
    "int": int,
    "float": float,
    "float | None": float,
    "str": str,
    "str | None": str,
    "Proxies": str,
    "str | os.PathLike[str] | None": str,
    "FsyncPolicy": str,
}


def add_settings_flags(parser: Any, *, exclude: frozenset[str] = frozenset()) -> list[str]:
    """Add a ``--kebab-case`` flag for every plain setting (help and default from its field); their names.

    Args:
        parser: an ``argparse.ArgumentParser`` (or a group of one).
        exclude: settings the command names otherwise (``host``, say).
    """
    names = []
    for field in settings_fields():
        if field.name in exclude or field.name == "write_key":
            continue
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{field.metadata['doc']} (default: {field.default!r})".replace("%", "%%")
        if field.type == "bool":
            parser.add_argument(flag, dest=field.name, action="store_true", default=field.default, help=help_text)
        elif field.type in _FLAG_TYPES:
            choices = FSYNC_POLICIES if field.type == "FsyncPolicy" else None
            parser.add_argument(
                flag,
                dest=field.name,
                type=_FLAG_TYPES[field.type],
                default=field.default,
                choices=choices,
                help=help_text,
            )
        else:
            continue
        names.append(field.name)
    return names


def settings_from_flags(
    namespace: Any, names: list[str], *, renamed: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The settings the flags gave, as keywords for a client (only those that differ from the defaults).

    Args:
        namespace: what ``argparse`` parsed.
        names: what ``add_settings_flags`` returned.
        renamed: setting name -> the keyword the client takes (``max_in_flight`` -> ``thread``).
    """
    renamed = renamed or {}
    defaults = {field.name: field.default for field in settings_fields()}
    return {
        renamed.get(name, name): getattr(namespace, name)
        for name in names
        if getattr(namespace, name) != defaults[name]
    }
