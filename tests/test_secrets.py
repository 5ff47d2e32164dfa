"""No secret (write key, Authorization header) in any repr, str or rich repr of the core's values,
and none in the text a server sent back: the redactor.

The redactor's tests are table-driven, values in and out: each row is a text a
server might send back and what may be shown of it.
"""

from __future__ import annotations

import base64
import random

import pytest

from segment_core import Engine, EngineConfig, Request, RequestPurpose, build_message
from segment_core._batch_requests import BatchRequestBuilder, basic_authorization
from segment_core._redaction import REDACTED, Redactor, basic_credentials
from segment_runtimes.threaded import Client

WRITE_KEY = "sekrit-write-key-4242"
KEY_BASIC = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()


def renderings(value: object) -> list[str]:
    texts = [repr(value), str(value)]
    rich = getattr(value, "__rich_repr__", None)
    if rich is not None:
        texts.append(repr(list(rich())))
    return texts


def test_core_values_hide_the_write_key_and_authorization() -> None:
    config = EngineConfig(write_key=WRITE_KEY, host="http://127.0.0.1:9")
    engine = Engine(config, random=random.Random(1))
    built = build_message("track", wall=1e9, new_message_id=lambda: "id", user_id="u", event="E")
    engine.enqueue(built.data, now=0.0)
    engine.flush(now=0.0)
    engine.poll(now=0.0, wall=1e9)
    (request,) = engine.next_outputs()
    assert isinstance(request, Request)
    authorization = dict(request.headers)["Authorization"]
    assert authorization == basic_authorization(WRITE_KEY)
    builder = BatchRequestBuilder(host="http://127.0.0.1:9", write_key=WRITE_KEY, gzip_body=False)
    client = Client(WRITE_KEY, send=False)
    for value in (config, engine, request, builder, client, client._settings):
        for text in renderings(value):
            assert WRITE_KEY not in text, text
            assert authorization not in text, text
            assert authorization.split()[1] not in text, text


def test_request_repr_still_says_what_it_is() -> None:
    request = Request(
        id=7, purpose=RequestPurpose.BATCH, method="POST", url="https://api.segment.io/v1/batch", headers=(), body=b"{}"
    )
    assert "id=7" in repr(request)
    assert "https://api.segment.io/v1/batch" in repr(request)


# The redactor: secrets it knows, credential shapes it does not need to know, one short line --------


def test_basic_credentials_are_the_key_and_a_colon_in_base64() -> None:
    assert basic_credentials(WRITE_KEY) == KEY_BASIC
    assert basic_credentials("k") == "azo="


KNOWN_SECRETS = [
    # (id, text, shown)
    ("the-key", f"key {WRITE_KEY} echoed", f"key {REDACTED} echoed"),
    ("its-basic-form-alone", f"creds {KEY_BASIC} here", f"creds {REDACTED} here"),
    ("twice", f"{WRITE_KEY}/{WRITE_KEY}", f"{REDACTED}/{REDACTED}"),
    ("inside-a-word", f"x{WRITE_KEY}y", f"x{REDACTED}y"),
    ("not-there", "nothing to hide", "nothing to hide"),
]


@pytest.mark.parametrize(("text", "shown"), [row[1:] for row in KNOWN_SECRETS], ids=[row[0] for row in KNOWN_SECRETS])
def test_known_secrets_are_cut_wherever_they_appear(text: str, shown: str) -> None:
    assert Redactor((WRITE_KEY,)).redact(text) == shown


def test_secrets_shorter_than_four_characters_are_not_treated_as_secrets() -> None:
    assert Redactor(("abc",)).redact("abcabc") == "abcabc"
    assert Redactor(("abcd",)).redact("xabcdx") == f"x{REDACTED}x"
    assert Redactor().redact("abc and abcd", also=("abc", None, "")) == "abc and abcd"
    assert Redactor().redact("abc and abcd", also=("abcd",)) == f"abc and {REDACTED}"


def test_a_secret_that_contains_another_is_cut_whole() -> None:
    assert Redactor(("abcd", "abcdefgh")).redact("[abcdefgh]") == f"[{REDACTED}]"
    assert Redactor(("abcdefgh", "abcd")).redact("[abcdefgh]") == f"[{REDACTED}]"
    # Longest first, not last in alphabetical order ("zzzz" sorts after "azzzzb").
    assert Redactor(("zzzz", "azzzzb")).redact("[azzzzb]") == f"[{REDACTED}]"


def test_secrets_known_only_for_one_call() -> None:
    redactor = Redactor((WRITE_KEY,))
    assert redactor.redact("token ab!cd$ef here", also=("ab!cd$ef",)) == f"token {REDACTED} here"
    assert redactor.redact("token ab!cd$ef here") == "token ab!cd$ef here"


def test_repr_counts_the_secrets_and_shows_none() -> None:
    redactor = Redactor((WRITE_KEY, "abc"))
    assert repr(redactor) == "Redactor(secrets=2)"  # the key and its Basic form; "abc" is too short
    assert WRITE_KEY not in repr(redactor)
    assert repr(Redactor()) == "Redactor(secrets=0)"


SHAPES = [
    # (id, text, shown): cut whether or not the secret is known
    ("header", "sent Authorization: Basic dXNlcjpwYXNz, ok", f"sent Authorization: {REDACTED}, ok"),
    ("header-lower", "authorization:Bearer abc.def", f"authorization:{REDACTED}"),
    ("proxy-header", "Proxy-Authorization: Basic Zm9vOmJhcg==", f"Proxy-Authorization: {REDACTED}"),
    ("json", '{"authorization":"Bearer abc","x":1}', f'{{"authorization":"{REDACTED}","x":1}}'),
    ("form", "proxy-authorization=secret&x=1", f"proxy-authorization={REDACTED}&x=1"),
    ("bearer", "got Bearer abcdef123 back", f"got Bearer {REDACTED} back"),
    ("basic", "got basic QWxhZGRpbjpvcGVu back", f"got basic {REDACTED} back"),
    ("bearer-short", "a bearer abc is no credential", "a bearer abc is no credential"),
    ("jwt", "jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln end", f"jwt {REDACTED} end"),
    ("pem", "key -----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY----- end", f"key {REDACTED} end"),
    ("pem-cut-short", "key -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA", f"key {REDACTED}"),
    ("other-header", "x-authorization: visible", "x-authorization: visible"),
    ("authorization-word", "authorization failed", "authorization failed"),
]


@pytest.mark.parametrize(("text", "shown"), [row[1:] for row in SHAPES], ids=[row[0] for row in SHAPES])
def test_credential_shapes_are_cut_even_when_unknown(text: str, shown: str) -> None:
    assert Redactor().redact(text) == shown


def test_text_is_folded_to_one_line_and_cut_to_length() -> None:
    redactor = Redactor()
    assert redactor.redact("a\r\n\tb   c\n") == "a b c"
    assert redactor.redact("x" * 20, max_length=10) == "xxxxxxx..."
    assert redactor.redact("x" * 10, max_length=10) == "x" * 10
    assert len(redactor.redact("y" * 1000)) == 300


def test_only_the_start_of_a_huge_reply_is_read() -> None:
    assert len(Redactor().redact("z" * 100_000, max_length=10**6)) == 64 * 1024
