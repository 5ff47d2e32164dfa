"""The spool's file I/O: append, acknowledge, rotate, adopt and delete spool files.

Strategy. Each process writes its own segment files in the spool directory,
named ``<UTC creation time>-<pid>-<random>-<n>.spool``, and holds an advisory lock on each
(``flock(LOCK_EX | LOCK_NB)``) for as long as it writes it or it holds
unsettled records. A file is created under a temporary name, locked, given
its header and only then renamed into place, so no other process ever sees an
unlocked live file. The file being written is mapped (``mmap``, shared) over
space reserved ahead of its records with ``posix_fallocate``, ``RESERVE_STEP``
at a time: appending a record is a copy into the page cache, with no system
call and without releasing the GIL, and it survives the death of the process
(SIGKILL included) as a ``write`` would. Reserving first means a full disk is
a refusal (ENOSPC) when the reserve grows, never a SIGBUS when a page is
touched; that needs a file system whose write faults allocate nothing over
reserved space (``MAPPED_FILE_SYSTEMS``: ext4, xfs, tmpfs, on Linux).
Elsewhere, or where space cannot be reserved or files mapped, records are
appended with ``os.pwrite``. A reserve's pages are faulted in together as it
is made (``MADV_POPULATE_WRITE``), not one at a time by the appends; the
copy keeps the GIL when it still faults a page in (its first write after an
fsync wrote it back): rare and short, but every thread of the process waits
for it. A file that stops being written (rotated at
``segment_bytes``, or the spool closed) is unmapped and cut to its records; a
process killed first leaves zeros after them, which the scan reads as unused
space (an adopter appends its settlements over them). Acknowledging a batch
of records appends one settlement record. A fully settled file that is no
longer written is deleted, which is how space is freed: by ``tidy``, outside
the lock, in the acknowledging thread, or, for a client on an event loop, in
a worker thread (an unlink of a full file takes about a millisecond).

Recovery. A file whose lock can be taken has no living owner (the kernel
drops a dead process's locks): ``recover`` takes it, keeps the lock, and
yields its unsettled records, so exactly one live process adopts it however
many race for it. Damage found by the scan (``segment_core.spool``) is logged
once per damaged stretch, naming the file and offset; it never stops
recovery. ``recover`` may be called again at any time to adopt the files of
processes that died since.

Durability. ``fsync="never"``: records survive the death of the process, not
a power loss. ``"interval"`` (the default): the worker calls ``maybe_sync``,
which fsyncs written files at most every ``SYNC_INTERVAL`` seconds, so a power
loss costs at most about that much. ``"always"``: every append is fsynced
before it returns (blocking: threaded runtime only). An fsync of the file
writes back what was copied into its map too (on Linux a shared map's pages
are the file's page cache).

Thread-safety: one lock guards the files and the ledger; ``append`` holds it
for its write (and its fsync with ``"always"``), never for a scan, a sync or
a deletion.
Record formats and bookkeeping are the core's (``segment_core.spool``).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import logging
import mmap
import os
import secrets
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

import msgspec

from segment_core import ConfigurationError
from segment_core.spool import (
    FILE_HEADER,
    MAX_RECORD_DATA,
    RECORD_HEADER_SIZE,
    SETTLED,
    SETTLED_FLAG_OFFSET,
    DamageKind,
    RecordDamage,
    SpoolLedger,
    SpoolRef,
    encode_record,
    encode_settlement,
    pending_records,
    records_end,
    write_record,
)

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "FSYNC_POLICIES",
    "MAPPED_FILE_SYSTEMS",
    "RESERVE_STEP",
    "SPOOL_SUFFIX",
    "SYNC_INTERVAL",
    "RefusalReason",
    "Spool",
    "SpoolRef",
    "SpoolRefusal",
]

log = logging.getLogger("segment")

# Small enough that a settled file is freed soon, large enough that rotation is rare
# (about 7,000 records of 600 bytes).
DEFAULT_SEGMENT_BYTES: Final = 4 << 20
# Space reserved (and mapped) ahead of the records of the file being written: one
# system call per ~400 records of 600 bytes, and at most this much left as zeros by a killed process.
RESERVE_STEP: Final = 256 << 10
# How stale written data may be at a power loss with fsync="interval", in seconds.
SYNC_INTERVAL: Final = 1.0
FSYNC_POLICIES: Final = ("never", "interval", "always")
SPOOL_SUFFIX: Final = ".spool"
_TEMPORARY_SUFFIX: Final = ".tmp"
_SETTLED_BYTE: Final = bytes([SETTLED])
_MAX_RECORD_SIZE: Final = RECORD_HEADER_SIZE + MAX_RECORD_DATA
_MADV_POPULATE_WRITE: Final = 23  # Linux 5.14+; Python 3.11's mmap module does not name it
_DISK_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
# posix_fallocate's answers from a file system that cannot reserve space: such files are pwritten.
_CANNOT_RESERVE_ERRNOS: Final = frozenset({errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV, errno.ENOSYS})
# Where a write through a map over space posix_fallocate reserved allocates nothing, so cannot
# fail (a failing write fault is a SIGBUS, which would take the host process down). Not btrfs
# (copy-on-write: a fault reserves space again), NFS or FUSE (glibc emulates the reservation).
MAPPED_FILE_SYSTEMS: Final = frozenset({"ext4", "xfs", "tmpfs"})
# A temporary file this old (seconds) whose lock is free was left by a process that died creating it.
_ABANDONED_AFTER: Final = 60.0


class RefusalReason(enum.Enum):
    """Why ``Spool.append`` did not write a record."""

    FULL = "the spool holds max_bytes"
    DISK_FULL = "the disk is full"
    IO_ERROR = "the spool file could not be written"
    TOO_LARGE = "the record is larger than a spool record may be"
    CLOSED = "the spool is closed"


class SpoolRefusal(msgspec.Struct, frozen=True, kw_only=True):
    """``Spool.append`` wrote nothing: why, and the details (a path, an OS error)."""

    reason: RefusalReason
    detail: str

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"


class _SpoolFile:
    """An open spool file this process holds the lock of.

    ``size`` is where its next record goes. ``capacity`` is the file's length
    once space was reserved ahead (mapped by ``mapped`` while it is the file
    being written); a file written with pwrite only is as long as ``size``.
    """

    __slots__ = ("capacity", "dirty", "fd", "mappable", "mapped", "name", "size")

    def __init__(self, name: str, fd: int, size: int, *, mappable: bool = False) -> None:
        self.name = name
        self.fd = fd
        self.size = size
        self.capacity = size
        self.mapped: mmap.mmap | None = None
        self.mappable = mappable  # False once written with pwrite only (sealed, or mapping failed)
        self.dirty = False


class Spool:
    """A directory of spool files this process appends to, acknowledges and adopts.

    Args:
        directory: the spool directory; created (with its parents) if missing.
        max_bytes: ``append`` refuses a record that would take the files this
            spool holds (its own and those it adopted) past this many bytes.
        fsync: ``"never"``, ``"interval"`` (default) or ``"always"``; see the module docstring.
        segment_bytes: the size at which a file rotates.

    Raises:
        ConfigurationError: a bad option, or a directory that cannot be used
            (a file, not a directory, not writable), naming the path and why.

    ``maps_files`` says whether records are copied into mapped files (Linux,
    on one of ``MAPPED_FILE_SYSTEMS``) or pwritten.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int,
        fsync: str = "interval",
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ConfigurationError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, got {fsync!r}")
        for name, value in (("max_bytes", max_bytes), ("segment_bytes", segment_bytes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"{name} must be a positive int, got {value!r}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        _prepare_directory(self.directory)
        # Linux only: elsewhere mmap.resize may be missing (no mremap) and file systems differ.
        self.maps_files = (
            sys.platform == "linux"
            and hasattr(os, "posix_fallocate")
            and file_system_type(self.directory) in MAPPED_FILE_SYSTEMS
        )
        self._lock = threading.Lock()
        self._ledger = SpoolLedger()
        self._files: dict[str, _SpoolFile] = {}
        self._current: _SpoolFile | None = None
        self._closed = False
        self._directory_dirty = False
        self._last_sync = float("-inf")
        self._left_alone: set[str] = set()
        self._doomed: list[_SpoolFile] = []  # settled files for tidy() to delete
        self._start_process()
        # A child of fork() must not write its parent's files; it gets its own.
        reference = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(reference))

    def _start_process(self) -> None:
        self._pid = os.getpid()
        self._token = secrets.token_hex(4)
        self._file_count = 0

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r}, pending={self.pending}, bytes_used={self.bytes_used})"

    @property
    def bytes_used(self) -> int:
        """Bytes of the files this spool holds: its own and those it adopted."""
        return self._ledger.bytes

    @property
    def pending(self) -> int:
        """Unsettled records in the files this spool holds."""
        return self._ledger.pending

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    def append(self, data: bytes) -> SpoolRef | SpoolRefusal:
        """Write one record; never raises.

        Usually a copy into the current file's map, under the spool's lock; a
        system call only when the reserve grows (every ``RESERVE_STEP`` bytes),
        a file rotates, files cannot be mapped (pwrite), or ``fsync="always"``.

        Args:
            data: the record's data (a message's JSON).

        Returns:
            Where the record is, once the kernel has it; or why nothing was
            written (the spool is full or closed, the disk is full, an OS error).
        """
        size = RECORD_HEADER_SIZE + len(data)
        with self._lock:
            current = self._current
            if (
                current is not None
                and (mapped := current.mapped) is not None
                and self._ledger.bytes + size <= self.max_bytes
                and size <= _MAX_RECORD_SIZE
                and (end := write_record(mapped, current.size, data)) >= 0
            ):
                # The common case, taken as the general path below would take it: a record written
                # straight into the map (-1 above: no room left in it).
                ref = SpoolRef(file=current.name, offset=current.size)
                current.size = end
                current.dirty = True
                self._ledger.add_record(ref, size)
                return ref
            if size > _MAX_RECORD_SIZE:
                detail = f"a spool record holds at most {MAX_RECORD_DATA} bytes, got {len(data)}"
                return SpoolRefusal(reason=RefusalReason.TOO_LARGE, detail=detail)
            record = encode_record(data)
            if self._closed:
                return SpoolRefusal(reason=RefusalReason.CLOSED, detail=str(self.directory))
            if current is not None and (
                # Full (but a record larger than a segment still gets a file of its own) ...
                (current.size + size > self.segment_bytes and current.size > len(FILE_HEADER))
                # ... or all settled, and its space is wanted: retiring it deletes it.
                or (self._ledger.bytes + size > self.max_bytes and not self._ledger.pending_in(current.name))
            ):
                self._retire(current)
                current = None
            needed = size if current is not None else len(FILE_HEADER) + size
            if self._ledger.bytes + needed > self.max_bytes and self._doomed:
                self._delete_now()
            if self._ledger.bytes + needed > self.max_bytes:
                detail = f"{self._ledger.bytes} of {self.max_bytes} bytes used in {self.directory}"
                return SpoolRefusal(reason=RefusalReason.FULL, detail=detail)
            try:
                if current is None:
                    current = self._current = self._new_file()
                offset = current.size
                written = self._write(current, record)
            except OSError as error:
                return self._refuse(error, current)
            if written != size:
                return self._torn(current, offset, written)
            current.size += size
            ref = SpoolRef(file=current.name, offset=offset)
            self._ledger.add_record(ref, size)
            if self.fsync == "always":
                try:
                    self._sync_now(current)
                except OSError as error:
                    # Not durable as promised: settle it so that it is never delivered, and refuse.
                    self._ledger.settle(ref)
                    self._write_flag(current, offset)
                    return self._refuse(error, current)
            else:
                current.dirty = True
            return ref

    def acknowledge(self, refs: Iterable[SpoolRef], *, tidy: bool = True) -> None:
        """Mark records settled (delivered or failed for good); delete files left with nothing.

        Unknown or already settled refs are ignored. One settlement record
        naming the settled records is appended to each file they are in: one
        copy or system call for the batch, not one flag write per record. A
        file is deleted once it is fully settled and no longer written
        (rotated, adopted or closed).

        Args:
            refs: the records.
            tidy: delete such files now (outside the lock). False leaves it to
                ``tidy``, for a caller on an event loop's thread: an unlink of
                a full file takes about a millisecond.
        """
        with self._lock:
            for name, offsets in self._ledger.settle_all(refs).items():
                spool_file = self._files[name]
                # Settled on disk even in a file about to go: a death before tidy() resends nothing.
                self._append_settlement(spool_file, offsets)
                if self._ledger.deletable(name):
                    self._delete(spool_file)
        if tidy:
            self.tidy()

    @property
    def untidy(self) -> bool:
        """Whether files left with nothing wait for ``tidy`` to delete them."""
        return bool(self._doomed)

    def tidy(self) -> None:
        """Delete the files left with nothing since the last call: unlink, unmap, close.

        File-system work, done outside the lock, so appends go on meanwhile.
        ``bytes_used`` counts such a file until it is gone from the disk.
        """
        with self._lock:
            doomed, self._doomed = self._doomed, []
        for spool_file in doomed:
            self._remove(spool_file)
        if doomed:
            with self._lock:
                for spool_file in doomed:
                    self._ledger.forget(spool_file.name)

    def recover(self) -> Iterator[tuple[SpoolRef, bytes]]:
        """Adopt the files of processes that are gone and yield their unsettled records.

        A file is adopted when this process can take its lock; the lock is then
        held until the file is deleted or the spool closed, so each file is
        adopted by exactly one live process. Files are taken oldest first, one
        at a time as the iterator advances. Damage is logged (one WARNING per
        damaged stretch, with the file and offset) and skipped; a file written
        by a newer format version is left alone with a warning. Call again
        later to adopt the files of processes that died since.

        Yields:
            (ref, data) of each unsettled record; acknowledge the refs when settled.
        """
        for path in self._candidates():
            if path.name.endswith(_TEMPORARY_SUFFIX):
                self._remove_abandoned(path)
                continue
            adopted = self._adopt(path)
            self.tidy()  # a file with nothing unsettled goes at once
            yield from adopted

    def maybe_sync(self, now: float) -> bool:
        """With ``fsync="interval"``, fsync what was written since the last sync, at most every SYNC_INTERVAL.

        Call it from a worker thread, never from an event loop's thread (fsync blocks).

        Args:
            now: a monotonic time in seconds.

        Returns:
            Whether a sync ran.
        """
        if self.fsync != "interval" or now - self._last_sync < SYNC_INTERVAL:
            return False
        self._last_sync = now
        self.sync()
        return True

    def sync(self) -> None:
        """Fsync every file written since the last sync, and the directory if files were created.

        The files are duplicated under the lock and synced outside it, so
        appends go on meanwhile. OS errors are logged, not raised.
        """
        with self._lock:
            duplicates = []
            for spool_file in self._files.values():
                if spool_file.dirty:
                    try:
                        duplicates.append((spool_file.name, os.dup(spool_file.fd)))
                    except OSError as error:  # out of descriptors: sync it next time
                        log.warning("spool: cannot sync %s now: %s", self.directory / spool_file.name, error)
                        continue
                    spool_file.dirty = False
            directory_dirty, self._directory_dirty = self._directory_dirty, False
        for name, fd in duplicates:
            try:
                os.fsync(fd)
            except OSError as error:
                log.warning("spool: fsync of %s failed: %s", self.directory / name, error)
            finally:
                os.close(fd)
        if directory_dirty:
            self._sync_directory()

    def after_fork_in_child(self) -> None:
        """In a child of fork(): forget the parent's files, and write new files of its own.

        The inherited descriptors are closed without unlocking: a flock lock
        belongs to the open file description, which the parent still holds.
        Runs by itself after ``os.fork()`` (``os.register_at_fork``); calling it
        again in the same process does nothing.
        """
        if self._pid == os.getpid():
            return
        self._lock = threading.Lock()  # another thread may have held it at the fork
        for spool_file in [*self._files.values(), *self._doomed]:
            _unmap(spool_file)  # the child's view only: the parent's map stays
            _close_quietly(spool_file.fd)
        self._files = {}
        self._doomed = []  # the parent's to delete
        self._ledger = SpoolLedger()
        self._current = None
        self._directory_dirty = False
        self._start_process()

    def close(self) -> int:
        """Stop writing, sync, delete settled files, and release the others' locks.

        Unsettled records stay on disk for the next process that uses the directory.

        Returns:
            The number of unsettled records left in the directory by this spool.
        """
        with self._lock:
            if self._closed:
                return 0
            self._closed = True
            self._current = None
        if self.fsync != "never":
            self.sync()
        with self._lock:
            left = self._ledger.pending
            for spool_file in list(self._files.values()):
                self._retire(spool_file)
                if spool_file.name in self._files:
                    self._files.pop(spool_file.name)
                    self._ledger.forget(spool_file.name)
                    _close_quietly(spool_file.fd)  # releases the lock
        self.tidy()
        return left

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Everything below runs with self._lock held, except where said.

    def _new_file(self) -> _SpoolFile:
        """Create, lock and name a new file of this process; raises OSError."""
        # Named by creation time first, so that recovery takes files oldest first by name.
        created = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(created // 1_000_000_000))
        self._file_count += 1
        name = f"{stamp}.{created % 1_000_000_000:09d}-{self._pid}-{self._token}-{self._file_count}{SPOOL_SUFFIX}"
        final = self.directory / name
        temporary = self.directory / f"{name}{_TEMPORARY_SUFFIX}"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.pwrite(fd, FILE_HEADER, 0) != len(FILE_HEADER):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(temporary))
            os.rename(temporary, final)
        except BaseException:
            _unlink_quietly(temporary)
            _close_quietly(fd)
            raise
        # With "always" every record is fsynced anyway: a map saves nothing, and the fast path needs no check.
        mappable = self.maps_files and self.fsync != "always"
        spool_file = _SpoolFile(name, fd, len(FILE_HEADER), mappable=mappable)
        self._files[name] = spool_file
        self._ledger.add_file(name, size=spool_file.size)
        self._directory_dirty = True
        return spool_file

    def _retire(self, spool_file: _SpoolFile) -> None:
        """Nothing more goes into this file; delete it if nothing in it is unsettled."""
        if self._current is spool_file:
            self._current = None
        self._ledger.seal(spool_file.name)
        if self._ledger.deletable(spool_file.name):
            self._delete(spool_file)
            return
        _unmap(spool_file)
        if spool_file.capacity > spool_file.size:
            try:
                os.ftruncate(spool_file.fd, spool_file.size)  # give the unused reserve back
                spool_file.capacity = spool_file.size
            except OSError as error:  # the zeros stay; a scan reads them as unused space
                log.warning("spool: cannot cut %s to its records: %s", self.directory / spool_file.name, error)

    def _delete(self, spool_file: _SpoolFile) -> None:
        """Written no more; deleted at the next ``tidy`` (outside the lock)."""
        self._doomed.append(spool_file)
        self._files.pop(spool_file.name, None)
        if self._current is spool_file:
            self._current = None

    def _delete_now(self) -> None:
        """Delete what waits for ``tidy`` here, under the lock: an append near the bound wants the space."""
        for spool_file in self._doomed:
            self._remove(spool_file)
            self._ledger.forget(spool_file.name)
        self._doomed = []

    def _remove(self, spool_file: _SpoolFile) -> None:
        """Unlink, unmap and close a deleted file (with or without the lock: no one else has it)."""
        # Unlink before closing: a process that opened the file meanwhile gets the
        # lock only after the close, then sees the name gone and leaves it.
        _unlink_quietly(self.directory / spool_file.name)
        _unmap(spool_file)  # the map holds a duplicate of the descriptor, hence the lock
        _close_quietly(spool_file.fd)

    def _write(self, spool_file: _SpoolFile, data: bytes) -> int:
        """Append ``data`` at the file's end: a copy into its map, or a pwrite. Raises OSError.

        Returns:
            The bytes written (fewer than asked only with pwrite, on a full disk).
        """
        offset = spool_file.size
        end = offset + len(data)
        if spool_file.mappable and end > spool_file.capacity:
            self._reserve(spool_file, end)
        mapped = spool_file.mapped
        if mapped is not None and end <= spool_file.capacity:
            mapped[offset:end] = data
            return len(data)
        return os.pwrite(spool_file.fd, data, offset)

    def _reserve(self, spool_file: _SpoolFile, end: int) -> None:
        """Reserve and map the file up to at least ``end``: ``RESERVE_STEP`` more, within the bounds.

        Raises:
            OSError: the disk is full (ENOSPC, EDQUOT) or failed. Where the
                file system cannot reserve space or map the file, the file is
                written with pwrite from then on instead.
        """
        # The reserve counts against max_bytes as records do, so the disk never holds more.
        room = spool_file.size + self.max_bytes - self._ledger.bytes
        capacity = max(end, min(spool_file.capacity + RESERVE_STEP, self.segment_bytes, room))
        try:
            os.posix_fallocate(spool_file.fd, spool_file.capacity, capacity - spool_file.capacity)
        except OSError as error:
            if error.errno not in _CANNOT_RESERVE_ERRNOS:
                raise
            _unmap(spool_file)
            spool_file.mappable = False
            return
        reserved_from, spool_file.capacity = spool_file.capacity, capacity
        try:
            if spool_file.mapped is None:
                spool_file.mapped = mmap.mmap(spool_file.fd, capacity)
            else:
                spool_file.mapped.resize(capacity)
        except (OSError, ValueError, SystemError) as error:  # SystemError: a platform without mremap
            log.debug("spool: cannot map %s (%s); writing it with pwrite", self.directory / spool_file.name, error)
            _unmap(spool_file)
            spool_file.mappable = False
            return
        # The new pages faulted in at once, not one by one as records reach them (Linux 5.14+).
        start = reserved_from - reserved_from % mmap.PAGESIZE
        with contextlib.suppress(OSError):
            spool_file.mapped.madvise(_MADV_POPULATE_WRITE, start, capacity - start)

    def _append_settlement(self, spool_file: _SpoolFile, offsets: list[int]) -> None:
        record = encode_settlement(offsets)
        if self._bytes_on_disk() + len(record) > self.max_bytes:
            # At the bound: settled in place, a flag byte each, so acknowledging never takes the spool past it.
            for offset in offsets:
                self._write_flag(spool_file, offset)
            return
        try:
            written = self._write(spool_file, record)
        except OSError as error:
            # The records stay unsettled on disk: after a crash they are delivered again (deduplicated).
            log.warning("spool: cannot mark %d records of %s settled: %s", len(offsets), spool_file.name, error)
            return
        spool_file.size += written
        self._ledger.grow(spool_file.name, written)
        spool_file.dirty = True
        if written != len(record) and self._current is spool_file:
            self._retire(spool_file)  # a torn tail: a scan skips it; the next append starts a new file

    def _bytes_on_disk(self) -> int:
        """What the files take: their records (the books), and the current file's reserve ahead of them."""
        current = self._current
        reserve = 0 if current is None else max(current.capacity - current.size, 0)
        return self._ledger.bytes + reserve

    def _write_flag(self, spool_file: _SpoolFile, offset: int) -> None:
        try:
            os.pwrite(spool_file.fd, _SETTLED_BYTE, offset + SETTLED_FLAG_OFFSET)
            spool_file.dirty = True
        except OSError as error:
            # The record stays unsettled on disk: after a crash it is delivered again (deduplicated).
            log.warning("spool: cannot mark %s offset %d settled: %s", self.directory / spool_file.name, offset, error)

    def _refuse(self, error: OSError, spool_file: _SpoolFile | None) -> SpoolRefusal:
        where = self.directory if spool_file is None else self.directory / spool_file.name
        if error.errno in _DISK_FULL_ERRNOS:
            return SpoolRefusal(reason=RefusalReason.DISK_FULL, detail=f"{where}: {error.strerror}")
        if spool_file is not None:
            self._retire(spool_file)  # an unknown fault: the next append starts a new file
        return SpoolRefusal(reason=RefusalReason.IO_ERROR, detail=f"{where}: {error}")

    def _torn(self, spool_file: _SpoolFile, offset: int, written: int) -> SpoolRefusal:
        """A short write (the disk filled up mid-record): cut the torn part off, or give up the file."""
        try:
            os.ftruncate(spool_file.fd, offset)
        except OSError:
            self._retire(spool_file)  # the torn tail stays; a scan will report it and skip it
        detail = f"{self.directory / spool_file.name}: only {written} bytes of a record were written"
        return SpoolRefusal(reason=RefusalReason.DISK_FULL, detail=detail)

    def _sync_now(self, spool_file: _SpoolFile) -> None:
        os.fsync(spool_file.fd)
        spool_file.dirty = False
        if self._directory_dirty:
            self._directory_dirty = False
            self._sync_directory()

    def _sync_directory(self) -> None:
        """Fsync the directory, so that new and renamed files survive a power loss (any thread)."""
        try:
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as error:
            log.warning("spool: cannot open %s to sync it: %s", self.directory, error)
            return
        try:
            os.fsync(fd)
        except OSError as error:
            log.warning("spool: fsync of %s failed: %s", self.directory, error)
        finally:
            os.close(fd)

    # Recovery runs without self._lock, except to register what it adopted.

    def _candidates(self) -> list[Path]:
        """Spool files (and abandoned temporary ones) not held by this spool, oldest first."""
        try:
            entries = list(os.scandir(self.directory))
        except OSError as error:
            log.warning("spool: cannot list %s: %s", self.directory, error)
            return []
        names = [
            entry.name
            for entry in entries
            if entry.name.endswith((SPOOL_SUFFIX, SPOOL_SUFFIX + _TEMPORARY_SUFFIX))
            and entry.name not in self._files
            and entry.name not in self._left_alone
            and entry.is_file(follow_symlinks=False)
        ]
        return [self.directory / name for name in sorted(names)]

    def _lock_orphan(self, path: Path) -> int | None:
        """Open and lock a file whose owner is gone; None if it is live, gone or unreadable."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as error:
            log.warning("spool: cannot open %s to recover it: %s", path, error)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Locked, but the owner may have deleted it just before letting go.
            if not os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False)):
                _close_quietly(fd)
                return None
        except OSError:  # BlockingIOError: a live process holds it; FileNotFoundError: deleted
            _close_quietly(fd)
            return None
        return fd

    def _remove_abandoned(self, path: Path) -> None:
        """A temporary file whose creator died before naming it holds no record: remove it.

        Only an old one: a creator holds its new file's lock a moment after creating it.
        """
        try:
            if time.time() - path.stat().st_mtime < _ABANDONED_AFTER:
                return
        except OSError:
            return
        fd = self._lock_orphan(path)
        if fd is not None:
            _unlink_quietly(path)
            _close_quietly(fd)

    def _adopt(self, path: Path) -> list[tuple[SpoolRef, bytes]]:
        fd = self._lock_orphan(path)
        if fd is None:
            return []
        try:
            with open(fd, "rb", closefd=False) as reader:
                content = reader.read()
        except OSError as error:
            log.warning("spool: cannot read %s to recover it: %s", path, error)
            _close_quietly(fd)
            return []
        unsettled, damage, _ = pending_records(content)
        for item in damage:
            if item.kind is DamageKind.UNSUPPORTED_VERSION:
                log.warning("spool: %s was written by a newer spool format; left alone", path)
                self._left_alone.add(path.name)  # and not read again by this spool
                _close_quietly(fd)
                return []
        for item in damage:
            _log_damage(path, item)
        name = path.name
        with self._lock:
            if self._closed or self._pid != os.getpid() or name in self._files:
                _close_quietly(fd)
                return []
            # Settlements go after its records, over the zeros a killed writer may have left reserved.
            end = records_end(content)
            spool_file = _SpoolFile(name, fd, end)
            spool_file.capacity = len(content)
            self._files[name] = spool_file
            self._ledger.add_file(name, size=end, sealed=True)
            refs = [SpoolRef(file=name, offset=record.offset) for record in unsettled]
            for ref in refs:
                self._ledger.add_record(ref)
            if self._ledger.deletable(name):
                self._delete(spool_file)
        if unsettled:
            log.info("spool: adopted %d unsettled records from %s", len(unsettled), path)
        return [(ref, record.data) for ref, record in zip(refs, unsettled, strict=True)]


def _log_damage(path: Path, damage: RecordDamage) -> None:
    what = "its record is kept" if damage.kind is DamageKind.BAD_FLAG else "skipped"
    log.warning(
        "spool: %s is damaged at offset %d (%d bytes): %s; %s", path, damage.offset, damage.length, damage.reason, what
    )


def _prepare_directory(directory: Path) -> None:
    """Create the directory if missing and prove it usable by creating a file in it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigurationError(f"spool directory {directory} is not a directory") from None
    except OSError as error:
        raise ConfigurationError(f"spool directory {directory} cannot be created: {error.strerror}") from error
    if not directory.is_dir():
        raise ConfigurationError(f"spool directory {directory} is not a directory")
    probe = directory / f".probe-{os.getpid()}-{secrets.token_hex(4)}{_TEMPORARY_SUFFIX}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise ConfigurationError(f"spool directory {directory} is not writable: {error.strerror}") from error
    os.close(fd)
    _unlink_quietly(probe)


def _after_fork(reference: weakref.ref[Spool]) -> None:
    spool = reference()
    if spool is not None:
        spool.after_fork_in_child()


def file_system_type(directory: str | os.PathLike[str]) -> str | None:
    """The type of the file system that holds ``directory`` ("ext4", "tmpfs", ...), or None if unknown.

    Read from Linux's /proc/self/mountinfo, by the directory's device number.
    """
    try:
        device = os.stat(directory).st_dev
        wanted = f"{os.major(device)}:{os.minor(device)}"
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mounts:
            for line in mounts:
                # "id parent major:minor root mount-point options [tags] - type source options"
                head, separator, tail = line.partition(" - ")
                fields, kind = head.split(), tail.split()
                if separator and len(fields) > 2 and fields[2] == wanted and kind:
                    return kind[0]
    except OSError:
        pass
    return None


def _unmap(spool_file: _SpoolFile) -> None:
    """Close the file's map, if it has one; nothing more goes through it."""
    if spool_file.mapped is not None:
        with contextlib.suppress(OSError, BufferError):
            spool_file.mapped.close()
        spool_file.mapped = None
    spool_file.mappable = False


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
