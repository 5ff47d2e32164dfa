"""What the loopback collector says to one complete HTTP request: no sockets here.

The event loop (``_server``) reads a whole request and hands it over as an
:class:`HttpRequest`; the functions here decode the body (gzip with a bomb guard, strict
JSON), find the write key, validate messages the way Segment's HTTP Tracking API does, and
build Segment-like replies. :class:`TokenAuthority` is the OAuth side: it verifies the
client's JWT assertion on ``POST /token`` and issues opaque Bearer tokens.

Wire facts: https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/
(limits, fields); OAuth: https://segment.com/docs/connections/oauth/ and RFC 7523 (JWT client
assertions).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import parse_qs

import msgspec

from segment_core.limits import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES

__all__ = [
    "BATCH_PATH",
    "MESSAGE_TYPES",
    "SINGLE_PATHS",
    "TOKEN_PATH",
    "AcceptedMessage",
    "Action",
    "Delay",
    "Drop",
    "HttpRequest",
    "OAuthServerSettings",
    "RequestRejected",
    "Reply",
    "Stream",
    "StreamSource",
    "TokenAuthority",
    "bearer_token",
    "DecodedBody",
    "decode_body",
    "error_reply",
    "json_reply",
    "parse_basic_write_key",
    "validate_payload",
]

BATCH_PATH: Final = "/v1/batch"
TOKEN_PATH: Final = "/token"  # noqa: S105 (a path, not a password)
MESSAGE_TYPES: Final = frozenset({"track", "identify", "group", "alias", "page", "screen"})
# The single-call endpoints: the body is one message, its type taken from the path if missing.
SINGLE_PATHS: Final = {f"/v1/{kind}": kind for kind in sorted(MESSAGE_TYPES)}

# A gzip body may not inflate past the same 500,000 bytes an uncompressed body may have:
# the limit is on the batch, not on its encoding. This bounds a gzip bomb's memory cost.
MAX_DECOMPRESSED_BYTES: Final = MAX_BATCH_BYTES
# Accepted clock difference on assertion iat/exp, in seconds. The reference client
# backdates iat by 5 s, so 10 s absorbs that plus ordinary drift.
JWT_LEEWAY: Final = 10.0
# The only assertion type RFC 7523 section 2.2 defines, and the one Segment requires.
JWT_BEARER_ASSERTION: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEFAULT_SCOPE: Final = "tracking_api:write"
_JSON_HEADERS: Final = (("content-type", "application/json"),)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One complete request: header names lower-case, the target without its query."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Reply:
    """Send this response; ``close`` adds ``Connection: close`` and closes after it."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the connection without replying."""


@dataclass(frozen=True, slots=True)
class Delay:
    """Hold the request for ``seconds``, then handle it again without injecting a fault."""

    seconds: float


class StreamSource(Protocol):
    """The body of a response that stays open: the loop pulls from it as its reader keeps up."""

    def read(self, max_bytes: int) -> bytes | None:
        """Body bytes ready now (about ``max_bytes`` at most; b"" when there are none yet).

        Returns None when the reader has fallen so far behind that the connection must be closed.
        """

    def close(self) -> None:
        """The connection is gone; release what the source holds for it."""


@dataclass(frozen=True, slots=True)
class Stream:
    """Reply 200 with ``headers`` and a body that never ends, pulled from ``source``.

    ``keepalive`` is written after ``keepalive_interval`` seconds without data, so that a reader
    that went away is noticed (the write fails) and one that stayed does not time out.
    """

    source: StreamSource
    headers: tuple[tuple[str, str], ...] = ()
    keepalive: bytes = b""
    keepalive_interval: float = 15.0


Action = Reply | Drop | Delay | Stream


class RequestRejected(Exception):
    """A request Segment would refuse; carries the reply's status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def json_reply(status: int, payload: Mapping[str, Any], *, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """A JSON response with ``payload`` as its body."""
    return Reply(status, msgspec.json.encode(payload), _JSON_HEADERS + headers)


def error_reply(
    status: int, code: str, message: str, *, headers: tuple[tuple[str, str], ...] = (), close: bool = False
) -> Reply:
    """Segment's error shape: ``{"success": false, "code": ..., "message": ...}``."""
    body = msgspec.json.encode({"success": False, "code": code, "message": message})
    return Reply(status, body, _JSON_HEADERS + headers, close)


# --- body and credentials ---------------------------------------------------------------


def _gunzip(body: bytes) -> bytes:
    """Inflate a gzip body (several members allowed), refusing more than the size limit."""
    out = bytearray()
    data = body
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(data, MAX_DECOMPRESSED_BYTES + 1 - len(out))
        except zlib.error:
            raise RequestRejected(400, "invalid_gzip", "request body is not valid gzip") from None
        if len(out) > MAX_DECOMPRESSED_BYTES:
            raise RequestRejected(413, "request_too_large", f"decompressed body exceeds {MAX_DECOMPRESSED_BYTES} bytes")
        if not inflater.eof:
            raise RequestRejected(400, "invalid_gzip", "gzip body is truncated")
        data = inflater.unused_data
    return bytes(out)


class _MessageFields(msgspec.Struct):
    """The fields the collector checks and indexes. The rest of a message is never decoded:
    it is stored as the raw JSON it arrived as, so nothing is parsed or encoded twice."""

    type: Any = None
    userId: Any = None
    anonymousId: Any = None
    messageId: Any = None
    event: Any = None
    name: Any = None
    groupId: Any = None
    previousId: Any = None
    timestamp: Any = None
    sentAt: Any = None
    writeKey: Any = None


class _BatchBody(msgspec.Struct):
    batch: list[msgspec.Raw]
    sentAt: Any = None
    writeKey: Any = None


_batch_decoder = msgspec.json.Decoder(_BatchBody)
_fields_decoder = msgspec.json.Decoder(_MessageFields)
_top_level_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])


@dataclass(frozen=True, slots=True)
class DecodedBody:
    """A request body, parsed only as far as routing and auth need.

    ``messages`` holds each message's raw JSON and, for a single-call body, its fields
    (already decoded to find ``writeKey``); batch messages are decoded when validated.
    """

    write_key: str | None
    sent_at: str | None
    messages: list[tuple[bytes | msgspec.Raw, _MessageFields | None]]


def _inflate(body: bytes, content_encoding: str | None) -> bytes:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return _gunzip(body)
    if encoding != "identity":
        raise RequestRejected(415, "unsupported_encoding", "Content-Encoding must be gzip or identity")
    return body


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# Any of these from msgspec means the bytes are not JSON we can read: malformed, not UTF-8, or
# nested deeper than the interpreter's recursion limit allows (msgspec counts its depth there, so
# the exact depth that fails depends on the stack of the thread decoding).
_UNREADABLE: Final = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)


def _invalid_json(exc: BaseException) -> RequestRejected:
    if isinstance(exc, RecursionError):
        return RequestRejected(400, "invalid_json", "request body nests too deeply")
    return RequestRejected(400, "invalid_json", "request body is not valid JSON")


def _require_json(body: bytes) -> None:
    try:
        msgspec.json.decode(body)
    except _UNREADABLE as exc:
        raise _invalid_json(exc) from None


def decode_body(path: str, body: bytes, content_encoding: str | None) -> DecodedBody:
    """Decode a request body: optional gzip, then strict JSON (NaN and Infinity refused).

    Args:
        path: ``/v1/batch`` or a single-call path (``/v1/track``, ...).
        body: the bytes received.
        content_encoding: the Content-Encoding header, if any (``gzip`` or ``identity``).

    Raises:
        RequestRejected: 400 for bad gzip, bad JSON or a body of the wrong shape, 413 for a body
            that inflates too far, 415 for an encoding other than gzip.
    """
    body = _inflate(body, content_encoding)
    try:
        # Raw values are skipped without a look inside their strings: check UTF-8 once, in C.
        body.decode("utf-8")
        if path == BATCH_PATH:
            envelope = _batch_decoder.decode(body)
            messages: list[tuple[bytes | msgspec.Raw, _MessageFields | None]] = [(raw, None) for raw in envelope.batch]
            return DecodedBody(_text(envelope.writeKey), _text(envelope.sentAt), messages)
        fields = _fields_decoder.decode(body)
        return DecodedBody(_text(fields.writeKey), None, [(body, fields)])
    except msgspec.ValidationError as exc:
        _require_json(body)  # not JSON at all is a different error from JSON of the wrong shape
        if "`$.batch`" in str(exc) or "field `batch`" in str(exc):
            raise RequestRejected(400, "invalid_request", "batch must be a list of messages") from None
        raise RequestRejected(400, "invalid_request", "request body must be a JSON object") from None
    except _UNREADABLE as exc:
        raise _invalid_json(exc) from None


def parse_basic_write_key(authorization: str) -> str | None:
    """The write key in ``Basic base64("<writeKey>:")``, or None if it is not Basic auth.

    Raises:
        RequestRejected: 401 when the credentials cannot be decoded.
    """
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise RequestRejected(401, "unauthorized", "malformed Basic credentials") from None
    return decoded.partition(":")[0]


def bearer_token(authorization: str) -> str | None:
    """The token in ``Bearer <token>``, or None for another scheme."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


# --- messages ---------------------------------------------------------------------------


class AcceptedMessage(msgspec.Struct, frozen=True):
    """A message that passed validation, ready to store (``raw_json`` as it arrived, minus any writeKey).

    A Struct, not a frozen dataclass: one is made per message received, and a Struct is made
    several times faster, which the collector's events/s ceiling (and every figure measured
    against it) feels.
    """

    message_id: str
    type: str
    user_id: str | None
    anonymous_id: str | None
    event_or_name: str | None
    timestamp: str | None
    sent_at: str | None
    raw_json: str


def _optional_str(value: Any, key: str, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestRejected(400, "invalid_message", f"{where}: {key} must be a string")
    return value


def _validate_message(
    raw: bytes | msgspec.Raw, fields: _MessageFields | None, where: str, default_type: str | None, sent_at: str | None
) -> AcceptedMessage:
    if fields is None:
        try:
            fields = _fields_decoder.decode(raw)
        except msgspec.ValidationError:
            raise RequestRejected(400, "invalid_message", f"{where}: a message must be a JSON object") from None
        except _UNREADABLE as exc:
            raise _invalid_json(exc) from None
    kind = default_type if fields.type is None else fields.type
    if default_type is not None and kind != default_type:
        raise RequestRejected(400, "invalid_message", f"{where}: type does not match the endpoint")
    if kind not in MESSAGE_TYPES:
        raise RequestRejected(400, "invalid_message", f"{where}: type must be one of {sorted(MESSAGE_TYPES)}")
    user_id = _optional_str(fields.userId, "userId", where)
    anonymous_id = _optional_str(fields.anonymousId, "anonymousId", where)
    if not user_id and not anonymous_id:
        raise RequestRejected(400, "invalid_message", f"{where}: userId or anonymousId is required")
    if kind == "track" and not (isinstance(fields.event, str) and fields.event):
        raise RequestRejected(400, "invalid_message", f"{where}: track requires an event name")
    if kind == "group" and fields.groupId in (None, ""):
        raise RequestRejected(400, "invalid_message", f"{where}: group requires groupId")
    if kind == "alias" and fields.previousId in (None, ""):
        raise RequestRejected(400, "invalid_message", f"{where}: alias requires previousId")
    message_id = _optional_str(fields.messageId, "messageId", where)
    if not message_id:
        # Segment adds a messageId when the sender gave none; so do we, marked as ours.
        message_id = f"collector-{uuid.uuid4()}"
    if fields.writeKey is not None or fields.type is None:
        # Rare: a credential to strip (never stored) or a type to add from the endpoint. Only the
        # top level is rebuilt; nested values stay raw JSON, so their depth costs no recursion.
        try:
            message = _top_level_decoder.decode(raw)
        except _UNREADABLE as exc:
            raise _invalid_json(exc) from None
        message.pop("writeKey", None)
        message["type"] = msgspec.Raw(msgspec.json.encode(kind))
        raw = msgspec.json.encode(message)
    data = bytes(raw)
    if len(data) > MAX_MESSAGE_BYTES:
        raise RequestRejected(
            400, "message_too_large", f"{where}: message is {len(data)} bytes, the limit is {MAX_MESSAGE_BYTES}"
        )
    name = fields.event if kind == "track" else fields.name
    return AcceptedMessage(
        message_id=message_id,
        type=kind,
        user_id=user_id,
        anonymous_id=anonymous_id,
        event_or_name=name if isinstance(name, str) else None,
        timestamp=_optional_str(fields.timestamp, "timestamp", where),
        sent_at=_optional_str(fields.sentAt, "sentAt", where) or sent_at,
        raw_json=data.decode("utf-8"),
    )


def validate_payload(path: str, payload: DecodedBody) -> list[AcceptedMessage]:
    """Validate a decoded body for ``path`` (``/v1/batch`` or a single-call endpoint).

    One invalid message rejects the whole request, so a batch is stored entirely or not at
    all and the client's report (delivered or failed) matches what the store holds.

    Args:
        path: the request path, ``/v1/batch`` or ``/v1/<type>``.
        payload: the body, from :func:`decode_body`.

    Returns:
        The messages to store, in order.

    Raises:
        RequestRejected: 400 with a message naming the first problem.
    """
    if path == BATCH_PATH:
        return [
            _validate_message(raw, fields, f"batch[{index}]", None, payload.sent_at)
            for index, (raw, fields) in enumerate(payload.messages)
        ]
    ((raw, fields),) = payload.messages
    return [_validate_message(raw, fields, "message", SINGLE_PATHS[path], None)]


# --- OAuth ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OAuthServerSettings:
    """Turn on OAuth: ``POST /token`` issues Bearer tokens, and /v1/* requires one.

    Args:
        public_key_pem: the RSA public key (PEM) that verifies client assertions.
        key_id: the ``kid`` the assertion header must carry.
        client_id: the OAuth client id; the assertion's ``iss`` and ``sub``.
        token_lifetime: seconds an issued token stays valid (``expires_in``).
        fail_status: if set, every ``/token`` request gets this status (for tests).
    """

    public_key_pem: str
    key_id: str
    client_id: str
    token_lifetime: float = 3600.0
    fail_status: int | None = None

    def __post_init__(self) -> None:
        if not self.key_id or not self.client_id:
            raise ValueError("key_id and client_id must be non-empty")
        if not self.token_lifetime > 0:
            raise ValueError("token_lifetime must be positive")
        if self.fail_status is not None and not 100 <= self.fail_status <= 599:
            raise ValueError("fail_status must be an HTTP status")


def _oauth_error(status: int, error: str, description: str, **headers: str) -> Reply:
    extra = (("cache-control", "no-store"), *((k.replace("_", "-"), v) for k, v in headers.items()))
    return json_reply(status, {"error": error, "error_description": description}, headers=extra)


class TokenAuthority:
    """Verifies client assertions, issues opaque tokens and checks them on /v1/*.

    Expired or not-yet-valid assertions get ``400 invalid_request`` with Segment's
    descriptions "Token is expired" / "Token used before issued" (the reference client
    retries those at once with a corrected clock skew); every other bad assertion gets
    ``400 invalid_grant``. The assertion itself is never echoed.
    """

    def __init__(
        self,
        settings: OAuthServerSettings,
        audience: str,
        *,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        # The OAuth server's crypto loads only when the collector plays one (the [oauth] extra).
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey  # noqa: PLC0415
        from cryptography.hazmat.primitives.serialization import load_pem_public_key  # noqa: PLC0415

        key = load_pem_public_key(settings.public_key_pem.encode("ascii"))
        if not isinstance(key, RSAPublicKey):
            raise ValueError("public_key_pem must be an RSA public key")
        self._key = key
        self._settings = settings
        self.audience = audience.rstrip("/")  # the collector's URL, set once it is bound
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._seen_jti: dict[str, float] = {}  # jti -> wall-clock exp, against replays
        self.fail_status = settings.fail_status
        self.tokens_issued = 0

    def is_valid(self, token: str) -> bool:
        """True if ``token`` was issued here and has not expired."""
        expiry = self._tokens.get(token)
        return expiry is not None and self._monotonic() < expiry

    def token_endpoint(self, request: HttpRequest) -> Reply:
        """Answer ``POST /token`` (RFC 6749 client credentials with an RFC 7523 assertion)."""
        if request.method != "POST":
            return _oauth_error(405, "invalid_request", "use POST", allow="POST")
        if self.fail_status is not None:
            status = self.fail_status
            if status == 429:
                return _oauth_error(status, "rate_limited", "forced failure", retry_after="1", x_ratelimit_reset="1")
            return _oauth_error(status, "server_error" if status >= 500 else "invalid_request", "forced failure")
        try:
            form = parse_qs(request.body.decode("ascii"), keep_blank_values=True, max_num_fields=16)
        except (UnicodeDecodeError, ValueError):
            return _oauth_error(400, "invalid_request", "body must be application/x-www-form-urlencoded")
        if any(len(values) > 1 for values in form.values()):
            return _oauth_error(400, "invalid_request", "a parameter is repeated")
        fields = {key: values[0] for key, values in form.items()}
        if fields.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
        if fields.get("client_assertion_type") != JWT_BEARER_ASSERTION:
            return _oauth_error(400, "invalid_request", f"client_assertion_type must be {JWT_BEARER_ASSERTION}")
        assertion = fields.get("client_assertion")
        if not assertion:
            return _oauth_error(400, "invalid_request", "client_assertion is required")
        problem = self._verify(assertion)
        if problem is not None:
            return problem
        now = self._monotonic()
        self._tokens = {token: expiry for token, expiry in self._tokens.items() if expiry > now}
        token = secrets.token_urlsafe(32)
        self._tokens[token] = now + self._settings.token_lifetime
        self.tokens_issued += 1
        lifetime = self._settings.token_lifetime
        payload = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(lifetime) if lifetime == int(lifetime) else lifetime,
            "scope": fields.get("scope") or DEFAULT_SCOPE,
        }
        return json_reply(200, payload, headers=(("cache-control", "no-store"),))

    def _verify(self, assertion: str) -> Reply | None:
        """None if the assertion is good, else the 400 reply saying why."""
        import jwt  # noqa: PLC0415 - see __init__

        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.InvalidTokenError:
            return _oauth_error(400, "invalid_grant", "client_assertion is not a JWT")
        if header.get("alg") != "RS256":
            return _oauth_error(400, "invalid_grant", "client_assertion must be signed with RS256")
        if header.get("kid") != self._settings.key_id:
            return _oauth_error(400, "invalid_grant", "unknown key id")
        try:
            claims = jwt.decode(
                assertion,
                self._key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self._settings.client_id,
                leeway=JWT_LEEWAY,
                options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            return _oauth_error(400, "invalid_request", "Token is expired")
        except jwt.ImmatureSignatureError:
            return _oauth_error(400, "invalid_request", "Token used before issued")
        except jwt.MissingRequiredClaimError as exc:
            return _oauth_error(400, "invalid_grant", f"client_assertion lacks the {exc.claim} claim")
        except jwt.InvalidAudienceError:
            return _oauth_error(400, "invalid_grant", "aud must be this server's URL")
        except jwt.InvalidIssuerError:
            return _oauth_error(400, "invalid_grant", "iss must be the client id")
        except jwt.InvalidSignatureError:
            return _oauth_error(400, "invalid_grant", "signature does not verify")
        except jwt.InvalidTokenError:
            return _oauth_error(400, "invalid_grant", "client_assertion is invalid")
        if claims.get("sub") != self._settings.client_id:
            return _oauth_error(400, "invalid_grant", "sub must be the client id")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            return _oauth_error(400, "invalid_grant", "jti must be a non-empty string")
        now = self._wall_clock()
        self._seen_jti = {key: exp for key, exp in self._seen_jti.items() if exp + JWT_LEEWAY > now}
        if jti in self._seen_jti:
            return _oauth_error(400, "invalid_grant", "client_assertion was already used")
        self._seen_jti[jti] = float(claims["exp"])
        return None
