"""What a spool directory holds, read without disturbing the clients that use it.

``inspect_spool`` reads every spool file once and scans it (``segment_core.spool``):
pending and settled records, bytes, damaged stretches, and the oldest pending
message's ``timestamp``. It takes no lock and writes nothing, so it is safe
while clients run; it sees each file as of its read (a record being appended
at that moment may be missing, and a live file's torn tail is that write in
progress, not damage).

Whether a file is *live* (a process holds its lock: it writes it or adopted
it) or *orphaned* (its process is gone; the next client to start or rescan
adopts it) is read from ``/proc/locks`` (Linux), matching the lock's device
and inode; where that file cannot be read, liveness is unknown (None).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import msgspec

from segment_core.spool import RecordDamage, pending_records, record_in_progress, records_end

from ._spool import SPOOL_SUFFIX

__all__ = ["SpoolFileReport", "SpoolReport", "inspect_spool"]

_PROC_LOCKS = Path("/proc/locks")


class SpoolFileReport(msgspec.Struct, frozen=True, kw_only=True):
    """One spool file: its records, its damage, and whether a live process holds it."""

    path: str
    # Up to the end of its last record: not the space its writer reserved ahead (zeros).
    bytes: int
    pending: int
    settled: int
    damaged: tuple[RecordDamage, ...]
    # True: a process holds its lock; False: orphaned; None: unknown (no /proc/locks).
    live: bool | None
    # The earliest ``timestamp`` of its pending messages (as written), if any has one.
    oldest_timestamp: str | None


class SpoolReport(msgspec.Struct, frozen=True, kw_only=True):
    """A spool directory: its files, and the totals over them."""

    directory: str
    files: tuple[SpoolFileReport, ...]

    @property
    def pending(self) -> int:
        """Pending (unsettled) messages in all files."""
        return sum(report.pending for report in self.files)

    @property
    def bytes(self) -> int:
        """Bytes of all spool files, up to their last records (what ``max_spool_bytes`` counts)."""
        return sum(report.bytes for report in self.files)

    @property
    def damaged(self) -> int:
        """Damaged stretches in all files (each skipped, or for a flag, read as unsettled)."""
        return sum(len(report.damaged) for report in self.files)

    @property
    def oldest_timestamp(self) -> str | None:
        """The earliest ``timestamp`` of all pending messages, as written."""
        stamps = [report.oldest_timestamp for report in self.files if report.oldest_timestamp is not None]
        return min(stamps, key=_parse_timestamp, default=None)

    @property
    def live_files(self) -> tuple[str, ...]:
        """Files a running process holds."""
        return tuple(report.path for report in self.files if report.live is True)

    @property
    def orphaned_files(self) -> tuple[str, ...]:
        """Files whose process is gone, waiting to be adopted."""
        return tuple(report.path for report in self.files if report.live is False)


def inspect_spool(directory: str | os.PathLike[str]) -> SpoolReport:
    """Read a spool directory without locking or writing anything.

    Args:
        directory: the spool directory.

    Returns:
        A report of every spool file in it, by name.

    Raises:
        OSError: the directory cannot be listed (a file that vanishes or cannot
            be read meanwhile is left out).
    """
    root = Path(directory)
    names = sorted(entry.name for entry in os.scandir(root) if entry.name.endswith(SPOOL_SUFFIX) and entry.is_file())
    locked = _locked_files()
    reports = []
    for name in names:
        path = root / name
        try:
            with open(path, "rb") as reader:
                status = os.fstat(reader.fileno())
                content = reader.read()
        except OSError:
            continue
        live = None if locked is None else (os.major(status.st_dev), os.minor(status.st_dev), status.st_ino) in locked
        reports.append(_report_file(str(path), content, live))
    return SpoolReport(directory=str(root), files=tuple(reports))


def _report_file(path: str, content: bytes, live: bool | None) -> SpoolFileReport:
    records, damaged, settled = pending_records(content)
    pending = len(records)
    oldest: str | None = None
    for record in records:
        stamp = _timestamp_of(record.data)
        if stamp is not None and (oldest is None or _parse_timestamp(stamp) < _parse_timestamp(oldest)):
            oldest = stamp
    if live and damaged and record_in_progress(content, damaged[-1].offset):
        damaged.pop()  # the record its owner is writing right now
    return SpoolFileReport(
        path=path,
        bytes=records_end(content),
        pending=pending,
        settled=settled,
        damaged=tuple(damaged),
        live=live,
        oldest_timestamp=oldest,
    )


class _Stamped(msgspec.Struct):
    timestamp: str | None = None


def _timestamp_of(data: bytes) -> str | None:
    """The message's ``timestamp``, if its data is a JSON object that has a parseable one."""
    try:
        stamp = msgspec.json.decode(data, type=_Stamped).timestamp
    except msgspec.DecodeError:
        return None
    if stamp is None:
        return None
    try:
        _parse_timestamp(stamp)
    except ValueError:
        return None
    return stamp


def _parse_timestamp(stamp: str) -> datetime:
    """An ISO-8601 timestamp; a naive one (no offset) is taken as UTC so that all compare."""
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _locked_files() -> set[tuple[int, int, int]] | None:
    """(device major, minor, inode) of every file with a flock lock, or None if unknown."""
    try:
        lines = _PROC_LOCKS.read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return None
    locked = set()
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5310808 0 EOF"; waiters have "->" after the id.
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        try:
            major, minor, inode = fields[5].split(":")
            locked.add((int(major, 16), int(minor, 16), int(inode)))
        except ValueError:
            continue
    return locked
