from collections.abc import Callable
from typing import Any, Generic, TypeVar

_Signal = TypeVar("_Signal")

NOT_PLAIN: object

# (wire form, returned form, budget left), or NOT_PLAIN.
def clean_plain(value: object, budget: int, /) -> Any: ...
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
    track_wire_type: type,
    library_name: str,
    library_version: str,
    max_message_bytes: int,
    python_timestamp: Any,
    /,
) -> None: ...
def message_ids(random_bytes: Callable[[int], bytes], /) -> Callable[[], str]: ...
def timestamp_text(wall: float, /) -> str: ...
def uuid4_text(bits: int, /) -> str: ...
def write_record(buffer: Any, offset: int, data: bytes, /) -> int: ...

class Intake(Generic[_Signal]):
    """_message_queue.PyIntake in C."""

    accepting: bool
    @property
    def batch_budget(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def depth(self) -> int: ...
    @property
    def head_full(self) -> bool: ...
    @property
    def head_since(self) -> float: ...
    @property
    def max_bytes(self) -> int: ...
    @property
    def max_message_bytes(self) -> int: ...
    @property
    def max_messages(self) -> int: ...
    @property
    def next_seq(self) -> int: ...
    @property
    def queued_bytes(self) -> int: ...
    @property
    def quiet(self) -> _Signal: ...
    @property
    def wake(self) -> _Signal: ...
    def __init__(
        self,
        max_messages: int,
        max_bytes: int,
        batch_size: int,
        batch_budget: int,
        max_message_bytes: int,
        wake: _Signal,
        quiet: _Signal,
    ) -> None: ...
    def add(self, data: bytes, now: float, /) -> _Signal | None: ...
    def take_batch(self) -> tuple[bytes, ...]: ...
    def take_all(self) -> tuple[bytes, ...]: ...
