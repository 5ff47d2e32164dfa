"""Cutting secrets out of text a server sent, before it reaches a log line, an error or ``on_error``.

A server that echoes the request (a proxy's error page, a debugging endpoint, a
misconfigured gateway) can hand back the write key, its Basic form, a bearer
token or a proxy's credentials. Text from a server is therefore redacted twice
over: the secrets the client knows are replaced wherever they appear, and
anything shaped like a credential is cut whether or not it is known (an
``Authorization``/``Proxy-Authorization`` value, ``Basic``/``Bearer``
credentials, a JWT, a PEM block). Then the text is folded to one line and
truncated, since it is shown to people.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Final

__all__ = ["REDACTED", "Redactor", "basic_credentials"]

REDACTED: Final = "[redacted]"
# Server text shown to people: long enough to explain, short enough for a log line.
DEFAULT_MAX_LENGTH: Final = 300
# Shorter strings are not treated as secrets to replace: replacing "a" everywhere helps nobody.
_MIN_SECRET_LENGTH: Final = 4
# Only the start of a long reply can be shown; this much is searched (linear in it, whatever was sent).
_MAX_SCANNED: Final = 64 * 1024

_SHAPES: Final = re.compile(
    "|".join(
        (
            # A header echoed as text, JSON or a form: the name, a separator, then its value.
            r"""(?i:(?<![\w-])(?:proxy-)?authorization["']?\s*[:=]\s*["']?)[^"'\r\n,;}&]*""",
            r"(?i:\b(?:basic|bearer)\s+)[A-Za-z0-9._~+/=-]{6,}",
            r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*",
            r"-----BEGIN[^-]*-----.*?(?:-----END[^-]*-----|$)",
        )
    ),
    re.DOTALL,
)


def basic_credentials(write_key: str) -> str:
    """The credentials part of the Basic header a write key makes: ``base64("<key>:")``."""
    return base64.b64encode(f"{write_key}:".encode()).decode("ascii")


class Redactor:
    """Redacts the secrets it was given, and every credential-shaped string, from text.

    Args:
        secrets: values never to show (a write key, a token); each is also cut in its
            Basic-header form.
    """

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known: list[str] = []
        for secret in secrets:
            if len(secret) >= _MIN_SECRET_LENGTH:
                known += (secret, basic_credentials(secret))
        # Longest first: a secret that contains another is cut whole.
        self._secrets = tuple(sorted(set(known), key=len, reverse=True))

    def __repr__(self) -> str:
        return f"Redactor(secrets={len(self._secrets)})"

    def redact(self, text: str, *, also: Iterable[str | None] = (), max_length: int = DEFAULT_MAX_LENGTH) -> str:
        """``text`` without secrets, on one line, at most ``max_length`` characters.

        Args:
            text: what the server sent (decoded).
            also: further secrets known only now (the token a request carried).
            max_length: longer text is cut and ends with "...".
        """
        text = text[:_MAX_SCANNED]
        for secret in (*self._secrets, *also):
            if secret and len(secret) >= _MIN_SECRET_LENGTH and secret in text:
                text = text.replace(secret, REDACTED)
        text = " ".join(_SHAPES.sub(_redact_shape, text).split())
        if len(text) > max_length:
            text = text[: max_length - 3] + "..."
        return text


def _redact_shape(match: re.Match[str]) -> str:
    found = match.group(0)
    # Keep a header's name and separator, or the auth scheme, so the text still reads.
    head = re.match(r"""(?i)(?:(?:proxy-)?authorization["']?\s*[:=]\s*["']?|(?:basic|bearer)\s+)""", found)
    return (head.group(0) if head else "") + REDACTED
