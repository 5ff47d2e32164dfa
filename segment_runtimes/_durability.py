"""A client's side of the disk spool: which engine message is which spool record.

With ``spool_dir`` set, a call writes its message to the spool (``Spool.append``,
a copy into a mapped file, or one pwrite: it survives the death of the process) before the engine takes
it, and returns True only then. The engine numbers what it accepts; this link
remembers each number's record, acknowledges it once the engine says the
message settled (delivered, or failed for good), and leaves it on disk when the
engine says it was kept (the close deadline passed: the next process on the
directory delivers it).

Recovery: the records a dead process left (``Spool.recover`` adopts its files)
are read in chunks by a worker, outside any lock, and fed to the engine as its
queue has room, each with its original messageId and timestamp (the bytes are
the message as it was first encoded). The directory is scanned again every
``RESCAN_INTERVAL`` seconds for processes that died since.

A call writes with ``spool.append`` and files the record with ``refs[seq] = ref``
itself (no method of this link on the caller's path: each frame counts there).

Thread-safety: ``refs`` is a dict (its single operations are atomic);
``feed`` runs with the client's lock held, ``pull``, ``tidy`` and ``sync`` without.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Iterator
from typing import Final

from segment_core import Engine, Enqueued, MessagesDelivered, MessagesFailed, MessagesKept, Output
from segment_core.spool import SpoolRef

from ._common import log
from ._spool import SYNC_INTERVAL, Spool

__all__ = ["RESCAN_INTERVAL", "SpoolLink"]

# How often a worker looks for the spool files of processes that died since the last look.
RESCAN_INTERVAL: Final = 30.0
# Records read from the spool per pull: enough to fill a few batches, little to hold.
_CHUNK: Final = 500


class SpoolLink:
    """Joins one client's engine to its spool. See the module docstring.

    Args:
        spool: the client's spool (open).
        tidy_inline: delete settled files as they are acknowledged (a thread
            that may block); False leaves it to ``tidy``, which a worker runs
            in a thread (an event loop's thread must not wait on an unlink).
    """

    def __init__(self, spool: Spool, *, tidy_inline: bool = True) -> None:
        self.spool = spool
        self._tidy_inline = tidy_inline
        self.refs: dict[int, SpoolRef] = {}  # engine seq -> record
        self._backlog: deque[tuple[SpoolRef, bytes]] = deque()  # recovered, not yet in the engine
        self._recovery: Iterator[tuple[SpoolRef, bytes]] | None = None
        self._next_scan = float("-inf")
        self._next_sync = float("-inf")
        self._pulling = threading.Lock()
        self.recovered = 0

    def __repr__(self) -> str:
        return f"<SpoolLink {self.spool!r} tracked={len(self.refs)} backlog={len(self._backlog)}>"

    @property
    def directory(self) -> str:
        """The spool directory."""
        return str(self.spool.directory)

    # Calls -------------------------------------------------------------------

    def refused(self, ref: SpoolRef) -> None:
        """The engine refused the record's message (queue full, closed): it is not to be delivered."""
        self.spool.acknowledge((ref,), tidy=self._tidy_inline)

    # Settlement ----------------------------------------------------------------

    def settled(self, output: Output) -> None:
        """Acknowledge what the engine settled; forget what it kept (it stays on disk)."""
        if isinstance(output, MessagesDelivered | MessagesFailed):
            refs = self._take(output.first_seq, len(output.messages))
            if refs:
                self.spool.acknowledge(refs, tidy=self._tidy_inline)
        elif isinstance(output, MessagesKept):
            self._take(output.first_seq, len(output.messages))

    def _take(self, first_seq: int, count: int) -> list[SpoolRef]:
        pop = self.refs.pop
        return [ref for seq in range(first_seq, first_seq + count) if (ref := pop(seq, None)) is not None]

    # Recovery --------------------------------------------------------------------

    def wants_pull(self, now: float) -> bool:
        """Whether ``pull`` has work: a backlog to refill, or a scan due."""
        return not self._backlog and (self._recovery is not None or now >= self._next_scan)

    def pull(self, now: float) -> None:
        """Without the client's lock: read the next chunk of recovered records into the backlog.

        One worker pulls at a time; another finding it busy goes on with its own work.
        """
        if not self._pulling.acquire(blocking=False):
            return
        try:
            if self._recovery is None:
                if now < self._next_scan:
                    return
                self._next_scan = now + RESCAN_INTERVAL
                self._recovery = self.spool.recover()
            chunk = list(itertools.islice(self._recovery, _CHUNK))
            if len(chunk) < _CHUNK:
                self._recovery = None
            self._backlog.extend(chunk)
        finally:
            self._pulling.release()

    def feed(self, engine: Engine, now: float) -> bool:
        """With the client's lock held: hand backlog records to the engine while it has room.

        Returns:
            Whether any was accepted (the worker should poll soon).
        """
        fed = False
        backlog = self._backlog
        while backlog:
            ref, data = backlog[0]
            try:
                result = engine.enqueue(data, now=now)
            except Exception as exc:  # a damaged record the scan let through (over the size limit, say)
                log.warning("a spool record cannot be sent (%s); it is dropped: %s", type(exc).__name__, ref)
                backlog.popleft()
                self.spool.acknowledge((ref,), tidy=self._tidy_inline)
                continue
            if not isinstance(result, Enqueued):
                break  # no room: the rest waits in the backlog
            backlog.popleft()
            self.refs[engine.last_seq] = ref
            self.recovered += 1
            fed = True
        return fed

    @property
    def idle(self) -> bool:
        """Whether nothing recovered is waiting to be read or fed (until the next scan)."""
        return not self._backlog and self._recovery is None and self._next_scan != float("-inf")

    @property
    def backlog(self) -> int:
        """Recovered records read but not yet handed to the engine."""
        return len(self._backlog)

    # Durability --------------------------------------------------------------------

    @property
    def untidy(self) -> bool:
        """Whether settled files wait for ``tidy`` to delete them."""
        return self.spool.untidy

    def tidy(self) -> None:
        """Without the client's lock, never on an event loop's thread: delete the settled files."""
        self.spool.tidy()

    def sync_due(self, now: float) -> bool:
        """Whether ``sync`` should run now (``spool_fsync="interval"``, at most every SYNC_INTERVAL)."""
        return self.spool.fsync == "interval" and now >= self._next_sync

    def sync(self, now: float) -> None:
        """Without the client's lock, never on an event loop's thread: fsync what was written."""
        self._next_sync = now + SYNC_INTERVAL
        self.spool.maybe_sync(now)

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's records are the parent's to settle (the spool gives us new files)."""
        self.refs.clear()
        self._backlog.clear()
        self._recovery = None

    # Closing ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop writing and release the files; what is unsettled stays, said in one log line."""
        self._backlog.clear()
        self._recovery = None
        left = self.spool.close()
        if left:
            log.log(
                logging.WARNING,
                "%d message(s) not delivered by shutdown stay in the spool at %s for the next start",
                left,
                self.directory,
            )
