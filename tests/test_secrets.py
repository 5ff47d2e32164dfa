"""No secret (write key, Authorization header) in any repr, str or rich repr of the core's values."""

from __future__ import annotations

import random

from segment_core import Engine, EngineConfig, Request, RequestPurpose, build_message
from segment_core._batch_requests import BatchRequestBuilder, basic_authorization
from segment_runtimes.threaded import Client

WRITE_KEY = "sekrit-write-key-4242"


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
