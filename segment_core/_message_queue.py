"""The engine's queue of encoded messages, and where its batches will close.

``Engine.enqueue`` runs on the caller's thread for every call, so its work is
one ``Intake.add``: a C method where the extension is built (``_speedups.Intake``),
this class where it is not. Both keep the same state by the same rules, and
tests/test_intake.py drives them side by side with hypothesis.

Batches close as messages arrive, not when they are sent: a batch is full at
``batch_size`` messages, or when the next message would take its messages and
commas past ``batch_budget`` bytes. ``take_batch`` then hands over the first
batch as it was recorded, without measuring message by message again.
"""

from __future__ import annotations

from collections import deque
from itertools import repeat
from typing import Any, Generic, TypeVar, cast

from ._native import speedups

__all__ = ["Intake", "PyIntake"]

Signal = TypeVar("Signal")


class PyIntake(Generic[Signal]):
    """A FIFO of encoded messages with batch boundaries and limits; the reference for the C twin.

    Args:
        max_messages: queue depth past which ``add`` refuses.
        max_bytes: total message bytes past which ``add`` refuses.
        batch_size: messages that fill a batch.
        batch_budget: bytes a batch's messages and the commas between them may take.
        max_message_bytes: ``add`` refuses a larger message (no batch could carry it).
        wake: what ``add`` returns when the caller should wake the worker: the queue was
            empty (a new upload_interval starts), or a batch just filled.
        quiet: what ``add`` returns otherwise.
    """

    __slots__ = (
        "_full",
        "_messages",
        "_tail_bytes",
        "_tail_count",
        "_tail_since",
        "accepting",
        "batch_budget",
        "batch_size",
        "max_bytes",
        "max_message_bytes",
        "max_messages",
        "next_seq",
        "queued_bytes",
        "quiet",
        "wake",
    )

    def __init__(
        self,
        max_messages: int,
        max_bytes: int,
        batch_size: int,
        batch_budget: int,
        max_message_bytes: int,
        wake: Signal,
        quiet: Signal,
    ) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.batch_size = batch_size
        self.batch_budget = batch_budget
        self.max_message_bytes = max_message_bytes
        self.wake = wake
        self.quiet = quiet
        self.accepting = True  # the engine turns this off when it closes
        self.next_seq = 0  # every accepted message takes the next; never reset
        self.queued_bytes = 0  # the messages' own bytes, no commas
        self._messages: deque[bytes] = deque()
        # The full batches ahead of the last one: (messages, bytes with commas, first queued at).
        self._full: deque[tuple[int, int, float]] = deque()
        self._tail_count = 0  # the last, open batch
        self._tail_bytes = 0
        self._tail_since = 0.0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} depth={self.depth} bytes={self.queued_bytes}>"

    @property
    def depth(self) -> int:
        """Messages queued."""
        return len(self._messages)

    @property
    def head_full(self) -> bool:
        """Whether the first batch is full (else it is the open one, the whole queue)."""
        return bool(self._full)

    @property
    def head_since(self) -> float:
        """When the first batch's first message was queued (meaningless if the queue is empty)."""
        return self._full[0][2] if self._full else self._tail_since

    def add(self, data: bytes, now: float) -> Signal | None:
        """Queue one encoded message at time ``now``: ``wake``, ``quiet``, or None if refused.

        Refused (and nothing changes) when not accepting, when the message is over
        ``max_message_bytes``, or when it would pass ``max_messages`` or ``max_bytes``.
        """
        if type(data) is not bytes:
            raise TypeError("data must be bytes")
        size = len(data)
        messages = self._messages
        if (
            size > self.max_message_bytes
            or not self.accepting
            or len(messages) >= self.max_messages
            or self.queued_bytes + size > self.max_bytes
        ):
            return None
        was_empty = not messages
        messages.append(data)
        self.queued_bytes += size
        self.next_seq += 1
        tail_count = self._tail_count
        if tail_count and self._tail_bytes + 1 + size > self.batch_budget:
            # The open batch cannot take this message: it is full, this one opens the next.
            self._full.append((tail_count, self._tail_bytes, self._tail_since))
            self._tail_count, self._tail_bytes, self._tail_since = 1, size, now
            return self.wake
        if not tail_count:
            self._tail_since = now
        tail_bytes = self._tail_bytes + size + 1 if tail_count else size
        if tail_count + 1 == self.batch_size:
            self._full.append((tail_count + 1, tail_bytes, self._tail_since))
            self._tail_count = self._tail_bytes = 0
            return self.wake
        self._tail_count, self._tail_bytes = tail_count + 1, tail_bytes
        return self.wake if was_empty else self.quiet

    def take_batch(self) -> tuple[bytes, ...]:
        """Remove and return the first batch: the first full one, else the whole queue."""
        if self._full:
            count, used, _ = self._full.popleft()
        else:
            count, used = len(self._messages), self._tail_bytes
            self._tail_count = self._tail_bytes = 0
        popleft = self._messages.popleft
        taken = tuple([popleft() for _ in repeat(None, count)])
        self.queued_bytes -= used + 1 - count if count else 0
        return taken

    def take_all(self) -> tuple[bytes, ...]:
        """Remove and return every queued message."""
        taken = tuple(self._messages)
        self._messages.clear()
        self._full.clear()
        self.queued_bytes = self._tail_count = self._tail_bytes = 0
        return taken


# The C twin where the extension is active (see _native.py): the same interface (see _speedups.pyi).
Intake: type[PyIntake[Any]] = PyIntake if speedups is None else cast("type[PyIntake[Any]]", speedups.Intake)
