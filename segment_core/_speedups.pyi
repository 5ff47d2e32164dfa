from collections.abc import Callable
from typing import Any

NOT_PLAIN: object

def clean_plain(value: object, /) -> Any: ...
def build_track(
    user_id: object,
    event: object,
    properties: object,
    context: object,
    anonymous_id: object,
    integrations: object,
    message_id: object,
    wall: float,
    new_message_id: Any,
    /,
) -> Any: ...
def configure(
    encoder: Any,
    built_type: type,
    library_name: str,
    library_version: str,
    max_message_bytes: int,
    python_timestamp: Any,
    /,
) -> None: ...
def message_ids(random_bytes: Callable[[int], bytes], /) -> Callable[[], str]: ...
def timestamp_text(wall: float, /) -> str: ...
def uuid4_text(bits: int, /) -> str: ...
