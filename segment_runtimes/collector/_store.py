"""The collector's SQLite store: every accepted message, duplicates flagged, committed per request.

One connection, used by the event-loop thread to write and by any thread to read, always under
one lock (``check_same_thread=False``). Each request's messages go in one transaction that is
committed before the reply is sent, so an acknowledged message survives Ctrl-C or SIGTERM. The
database runs in WAL mode with ``synchronous=NORMAL``: a commit reaches the operating system at
once (safe against the process dying) without an fsync per request.

Counters (messages, duplicates) are kept in memory next to a set of seen messageIds, so that
``wait_for`` is a condition wait, not a polling query. Reading after :meth:`Store.close` opens a
short-lived connection, so a stopped collector can still be inspected.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

import msgspec

from ._protocol import AcceptedMessage

__all__ = ["Row", "Store", "StoredMessage", "now_iso", "row_to_message"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    type TEXT NOT NULL,
    user_id TEXT,
    anonymous_id TEXT,
    event_or_name TEXT,
    timestamp TEXT,
    sent_at TEXT,
    received_at TEXT NOT NULL,
    raw_json TEXT NOT NULL,
    duplicate INTEGER NOT NULL DEFAULT 0
);
"""
# No index on message_id: duplicates are found in the in-memory set of ids, and every query reads
# in seq order. An index would cost each insert about a third of its time (a random-key B-tree
# write per row) and bound every events/s figure measured against the collector.
_COLUMNS: Final = (
    "message_id, type, user_id, anonymous_id, event_or_name, timestamp, sent_at, received_at, raw_json, duplicate"
)
#: One stored row as inserted, in the order of ``_COLUMNS``: cheaper than a StoredMessage when
#: only the viewer's feed looks at it.
Row = tuple[str, str, str | None, str | None, str | None, str | None, str | None, str, str, bool]


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One stored row. ``duplicate`` is True for every copy of a messageId after the first."""

    message_id: str
    type: str
    user_id: str | None
    anonymous_id: str | None
    event_or_name: str | None
    timestamp: str | None
    sent_at: str | None
    received_at: str
    raw_json: str
    duplicate: bool

    @property
    def json(self) -> dict[str, Any]:
        """The message as received (minus any ``writeKey``), decoded."""
        value = msgspec.json.decode(self.raw_json)
        assert isinstance(value, dict)
        return value


def row_to_message(row: Sequence[Any]) -> StoredMessage:
    """The :class:`StoredMessage` for a row (a :data:`Row` or a row read back from SQLite)."""
    message_id, kind, user_id, anonymous_id, name, timestamp, sent_at, received_at, raw_json, duplicate = row
    return StoredMessage(
        message_id, kind, user_id, anonymous_id, name, timestamp, sent_at, received_at, raw_json, bool(duplicate)
    )


class Store:
    """SQLite-backed message store; thread-safe.

    Args:
        db_path: the SQLite file to use (created if missing; existing rows are kept and count
            towards duplicates), or None for a private file in a temporary directory that is
            removed when the store is garbage-collected.

    Raises:
        sqlite3.Error: the file cannot be opened or is not a SQLite database.
    """

    def __init__(self, db_path: str | os.PathLike[str] | None) -> None:
        if db_path is None:
            directory = tempfile.mkdtemp(prefix="segment-collector-")
            weakref.finalize(self, shutil.rmtree, directory, ignore_errors=True)
            self.path = os.path.join(directory, "events.sqlite")
        else:
            self.path = os.fspath(db_path)
        self.condition = threading.Condition()
        self._ids: set[str] = set()
        self._total = 0
        self._duplicates = 0
        db = self._connect()
        try:
            # Rows are about 1 KB of JSON each: 16 KB pages take a batch in fewer page writes than
            # the default 4 KB (inserts ~15% faster). It only applies to a new file.
            db.execute("PRAGMA page_size=16384")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            for message_id, duplicate in db.execute("SELECT message_id, duplicate FROM messages"):
                self._ids.add(message_id)
                self._total += 1
                self._duplicates += bool(duplicate)
        except BaseException:
            db.close()
            raise
        self._db: sqlite3.Connection | None = db

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, check_same_thread=False, timeout=5.0)

    def insert(self, messages: Sequence[AcceptedMessage]) -> list[Row]:
        """Store ``messages`` in one committed transaction and wake ``wait_for`` callers.

        Args:
            messages: validated messages, in arrival order.

        Returns:
            The stored rows, with their duplicate flags and received time (see :func:`row_to_message`).

        Raises:
            sqlite3.Error: nothing was stored (the caller replies 500).
        """
        received_at = now_iso()
        with self.condition:
            if self._db is None:
                raise sqlite3.ProgrammingError("the store is closed")
            seen: set[str] = set()
            values: list[Row] = []
            for message in messages:
                message_id = message.message_id
                duplicate = message_id in self._ids or message_id in seen
                seen.add(message_id)
                values.append(
                    (
                        message_id,
                        message.type,
                        message.user_id,
                        message.anonymous_id,
                        message.event_or_name,
                        message.timestamp,
                        message.sent_at,
                        received_at,
                        message.raw_json,
                        duplicate,
                    )
                )
            try:
                self._db.executemany(
                    f"INSERT INTO messages ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                    values,
                )
                self._db.commit()
            except sqlite3.Error:
                self._db.rollback()
                raise
            self._ids |= seen
            self._total += len(values)
            self._duplicates += sum(row[-1] for row in values)
            self.condition.notify_all()
        return values

    def _query(self, sql: str) -> list[Any]:
        with self.condition:
            if self._db is not None:
                return self._db.execute(sql).fetchall()
        reader = self._connect()
        try:
            return reader.execute(sql).fetchall()
        finally:
            reader.close()

    def messages(self) -> list[StoredMessage]:
        """Every stored row in arrival order."""
        rows = self._query(f"SELECT {_COLUMNS} FROM messages ORDER BY seq")  # noqa: S608
        return [row_to_message(row) for row in rows]

    def message_ids(self) -> list[str]:
        """Every stored messageId (duplicates repeated) in arrival order."""
        return [row[0] for row in self._query("SELECT message_id FROM messages ORDER BY seq")]

    def count(self, *, unique: bool = False) -> int:
        """Rows stored, or distinct messageIds with ``unique``."""
        with self.condition:
            return len(self._ids) if unique else self._total

    def duplicate_count(self) -> int:
        """Rows flagged duplicate."""
        with self.condition:
            return self._duplicates

    def counts(self) -> tuple[int, int, int]:
        """Rows, distinct messageIds and duplicates, read together."""
        with self.condition:
            return self._total, len(self._ids), self._duplicates

    def wait_for(self, count: int, timeout: float, *, unique: bool = False) -> bool:
        """Block until ``count`` rows (or distinct ids) are stored, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self.condition:
            while (len(self._ids) if unique else self._total) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.condition.wait(remaining)
            return True

    def close(self) -> None:
        """Close the writer connection (checkpointing the WAL into the file). Idempotent."""
        with self.condition:
            if self._db is not None:
                self._db.close()
                self._db = None


def now_iso() -> str:
    """The time now as Segment writes ``receivedAt``: UTC, millisecond precision, ``Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
