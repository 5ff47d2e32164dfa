"""The spool's file format, its recovery scan and its acknowledgement bookkeeping, sans-IO.

A spool file is a short header followed by records, appended one at a time::

    file header  8 bytes   FILE_MAGIC (6) | format version (1) | the version's complement (1)
    record       17 bytes  RECORD_MAGIC (4) | settled flag (1) | length (4) | length check (4)
                           | checksum (4), integers unsigned little-endian
                 + data    ``length`` bytes (a message's JSON)

The length check is ``zlib.crc32`` of the length field; the checksum is
``zlib.crc32`` of the data, seeded with the length check, so it covers both.
The settled flag is outside them, so that a record can be settled in place by
a one-byte write at ``offset + SETTLED_FLAG_OFFSET``: ``UNSETTLED`` (0x00)
becomes ``SETTLED`` (0xFF). The two values differ in all eight bits, so a
flipped bit never turns one into the other; any other value is reported as
damage and read as unsettled (a message delivered twice is deduplicated by its
messageId, one never delivered is lost). Records are usually settled in
batches instead, by appending a *settlement record* (``encode_settlement``):
one write per batch, not one per record.

A writer may reserve space ahead of its records (the runtime maps its file and
grows it in steps); the reserved bytes are zeros. So zeros from the end of the
last record to the end of the file are unused space, not damage: no record
starts with a zero byte.

What the scan guarantees (``scan_records``). A record is *well-formed* at
offset ``p`` when the bytes at ``p`` are ``RECORD_MAGIC``, its length passes
its check, is at most ``MAX_RECORD_DATA`` and fits in the file, and its
checksum matches. The scan walks from the header: at a well-formed record it
yields the record and continues at its end; anywhere else it looks for the
next ``RECORD_MAGIC`` one byte further on, verifies it, and reports the bytes
it skipped as one ``RecordDamage``. Hence:

- Every byte after the header belongs to exactly one yielded record or one
  reported damage, in file order, except an all-zero tail after the last one
  (a damaged stretch with no record after it ends where that tail begins).
- A record whose bytes are unchanged (its flag aside) is yielded at its
  offset, whatever damage precedes or follows it: a resync never jumps past
  the next magic, so damage cannot swallow it (unless a forged well-formed
  record overlaps it, which needs the collision below).
- A damaged record is never yielded unless the damage leaves it well-formed,
  and this is certain for small damage: any change of at most two bits
  anywhere in a record is detected (a changed magic is not a record; the
  length and its check form a CRC-32 codeword of Hamming distance 6, tested
  exhaustively up to 3 bits; CRC-32 over the data detects every 1- and 2-bit
  change and every burst of up to 32 bits for any length this format allows).
  Larger damage (bytes inserted or deleted inside a record, garbage) passes
  only if it starts with the 4-byte ``RECORD_MAGIC`` and matches two 32-bit
  CRCs by chance. ``RECORD_MAGIC`` holds 0xFF, a byte UTF-8 never uses, so
  damage made of text (JSON, logs) or of zeros holds no candidate at all,
  and neither does a message's own JSON.
- What no checksum can tell: bytes that are an exact copy of a well-formed
  record (a duplicated block, or data that itself holds an encoded record)
  are a well-formed record and are yielded.
- A file cut at a record boundary is a shorter valid file: the records past
  the cut are absent and there is no damage to report. So is a file whose
  tail, from a record boundary on, is all zeros (unused space).
- The header's version is stored with its complement, so a damaged header
  reads as ``BAD_HEADER`` (its records are still scanned), never as another
  version; a consistent unknown version is ``UNSUPPORTED_VERSION`` and the
  file is not scanned (it belongs to a newer client).

The bookkeeping (``SpoolLedger``) records which records of which files are
still unsettled, and says when a file can be deleted: it holds no unsettled
record and nothing more will be appended to it. Nothing here touches a file,
a clock or the OS; the runtime (``segment_runtimes._spool``) does the I/O.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final, Protocol

import msgspec

from ._native import speedups

__all__ = [
    "FILE_HEADER",
    "FILE_HEADER_SIZE",
    "FORMAT_VERSION",
    "MAX_RECORD_DATA",
    "RECORD_HEADER_SIZE",
    "SETTLED",
    "SETTLED_FLAG_OFFSET",
    "SETTLEMENT_MARK",
    "UNSETTLED",
    "DamageKind",
    "RecordDamage",
    "ScannedRecord",
    "SpoolLedger",
    "SpoolRef",
    "WritableBuffer",
    "encode_record",
    "encode_settlement",
    "pending_records",
    "record_in_progress",
    "records_end",
    "scan_records",
    "write_record",
]

# The first byte is not ASCII (a text tool or a text-mode copy shows it), as in PNG's signature.
FILE_MAGIC: Final = b"\x89SGSPL"
FORMAT_VERSION: Final = 1
# The version is stored with its complement: a flipped bit reads as a damaged header (whose
# records are still read), never as another version (whose file would be left alone).
FILE_HEADER: Final = FILE_MAGIC + bytes([FORMAT_VERSION, FORMAT_VERSION ^ 0xFF])
FILE_HEADER_SIZE: Final = len(FILE_HEADER)

# 0xFF never occurs in UTF-8, so a message's JSON can never contain a record's start.
RECORD_MAGIC: Final = b"\xffSR1"
_RECORD_HEADER: Final = struct.Struct("<4sBIII")  # magic, settled flag, length, length check, checksum
RECORD_HEADER_SIZE: Final = _RECORD_HEADER.size
SETTLED_FLAG_OFFSET: Final = len(RECORD_MAGIC)
UNSETTLED: Final = 0x00
SETTLED: Final = 0xFF
# Far above the 32 KB message limit, and low enough that a damaged length is seen as one.
MAX_RECORD_DATA: Final = 1 << 20

_LENGTH: Final = struct.Struct("<I")


class SpoolRef(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Where one record lives: its file's name (in the spool directory) and its offset in that file."""

    file: str
    offset: int


class DamageKind(enum.Enum):
    """Why a stretch of a spool file yielded no record."""

    GARBAGE = "bytes that do not start a record"
    TRUNCATED = "a record that runs past the end of the file (torn write)"
    BAD_LENGTH = "a record length that fails its check or is out of range"
    BAD_CHECKSUM = "a record whose checksum does not match its length and data"
    BAD_FLAG = "a settled flag that is neither settled nor unsettled (record read as unsettled)"
    BAD_HEADER = "not a spool file header"
    UNSUPPORTED_VERSION = "a spool format version this client does not read"


class ScannedRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An intact record found by ``scan_records``: its offset, its data and whether it is settled."""

    offset: int
    data: bytes
    settled: bool


class RecordDamage(msgspec.Struct, frozen=True, kw_only=True):
    """A damaged stretch of a spool file: where it starts, how many bytes, and why.

    ``BAD_FLAG`` is one byte of a record that is still yielded (as unsettled);
    ``UNSUPPORTED_VERSION`` covers the whole file, which was not read (leave it
    for a client that reads that version). Every other kind is bytes skipped.
    """

    offset: int
    length: int
    kind: DamageKind

    @property
    def reason(self) -> str:
        """The kind of damage, in words."""
        return self.kind.value


def encode_record(data: bytes, *, settled: bool = False) -> bytes:
    """One record holding ``data``, ready to append after a file's last record.

    Args:
        data: the record's payload (a message's JSON).
        settled: write it settled (a settlement record, see :func:`encode_settlement`).

    Returns:
        The record's bytes: header then data.

    Raises:
        ValueError: ``data`` is longer than ``MAX_RECORD_DATA``.
    """
    length = len(data)
    if length > MAX_RECORD_DATA:
        raise ValueError(f"a spool record holds at most {MAX_RECORD_DATA} bytes, got {length}")
    length_check = zlib.crc32(_LENGTH.pack(length))
    flag = SETTLED if settled else UNSETTLED
    return _RECORD_HEADER.pack(RECORD_MAGIC, flag, length, length_check, zlib.crc32(data, length_check)) + data


class WritableBuffer(Protocol):
    """What ``write_record`` writes into: a spool file's ``mmap``, or a ``bytearray`` in tests."""

    def __len__(self) -> int: ...

    def __setitem__(self, index: slice, value: bytes, /) -> None: ...


def _write_record(buffer: WritableBuffer, offset: int, data: bytes) -> int:
    """Write the record ``encode_record(data)`` into ``buffer`` at ``offset`` (a spool file's map).

    Where the C extension is active, ``write_record`` is its version of this
    function (the same bytes, without making the record first).

    Args:
        buffer: where to write.
        offset: where the record starts.
        data: the record's data (a message's JSON).

    Returns:
        The offset just after the record; or -1 when the buffer cannot hold it
        there (nothing is written).

    Raises:
        ValueError: ``data`` is longer than ``MAX_RECORD_DATA``.
    """
    record = encode_record(data)
    end = offset + len(record)
    if offset < 0 or end > len(buffer):
        return -1
    buffer[offset:end] = record
    return end


# A record written where every append of a client with a spool writes it: in C when it can be.
write_record: Callable[[WritableBuffer, int, bytes], int] = _write_record if speedups is None else speedups.write_record


# A settlement record's data: this mark (no message's JSON starts with a NUL), then the offsets
# of the records it settles, in the same file, as little-endian unsigned 32-bit ints.
SETTLEMENT_MARK: Final = b"\x00spool settled\x00"
_OFFSET: Final = struct.Struct("<I")


def encode_settlement(offsets: Sequence[int]) -> bytes:
    """A settled record that settles the records at ``offsets`` of the file it is appended to.

    Acknowledging a batch is then one append (a copy into the file's map, or
    one system call) instead of one in-place flag write per record. It is checksummed like any record: a damaged
    one settles nothing, so its records are delivered again, never lost.
    """
    data = SETTLEMENT_MARK + struct.pack(f"<{len(offsets)}I", *offsets)
    return encode_record(data, settled=True)


def pending_records(content: bytes) -> tuple[list[ScannedRecord], list[RecordDamage], int]:
    """A file's records still to deliver: neither flagged settled nor named by a settlement record.

    Returns:
        ``(pending records, damage found, settled message records)``, in file order.
    """
    records: list[ScannedRecord] = []
    damage: list[RecordDamage] = []
    settled_by_record: set[int] = set()
    for item in scan_records(content):
        if isinstance(item, RecordDamage):
            damage.append(item)
        elif item.data.startswith(SETTLEMENT_MARK):
            body = memoryview(item.data)[len(SETTLEMENT_MARK) :]
            settled_by_record.update(offset for (offset,) in _OFFSET.iter_unpack(body[: len(body) // 4 * 4]))
        else:
            records.append(item)
    pending = [record for record in records if not record.settled and record.offset not in settled_by_record]
    return pending, damage, len(records) - len(pending)


def records_end(content: bytes) -> int:
    """Where a file's records (and damage) end: the start of its unused all-zero tail, if any.

    A writer that goes on with the file (adopting it to append settlements)
    appends here, so that what it writes follows the last record rather than
    zeros that a later scan would report as damage.
    """
    end = min(len(content), FILE_HEADER_SIZE)
    for item in scan_records(content):
        if isinstance(item, ScannedRecord):
            end = item.offset + RECORD_HEADER_SIZE + len(item.data)
        elif item.kind is not DamageKind.BAD_FLAG:
            end = item.offset + item.length
    return end


def record_in_progress(content: bytes, offset: int) -> bool:
    """Whether a damaged stretch at ``offset`` may be a record its live writer is copying in right now.

    A record being copied into reserved space is the last thing in the file,
    and its parts appear in whatever order the copy stores them: what is not
    written yet is still zero. So it is unfinished if its first bytes (the
    record marker, which comes with the length and its check) are not there,
    if it stops short of the data its intact length declares, or if that data
    holds a zero byte, which a message's JSON never does. What is left is a
    whole record, or one with a damaged length, that fails its checks: damage.
    (A damaged settlement record, whose data holds zeros, reads as unfinished.)

    Args:
        content: the file's bytes, as read while its writer is alive.
        offset: where the damaged stretch starts.
    """
    written = len(content.rstrip(b"\x00"))
    header_end = offset + RECORD_HEADER_SIZE
    if offset >= written:
        return False
    if written < header_end or content[offset : offset + len(RECORD_MAGIC)] != RECORD_MAGIC:
        return True
    _, _, length, length_check, _ = _RECORD_HEADER.unpack_from(content, offset)
    if zlib.crc32(_LENGTH.pack(length)) != length_check:
        return False
    declared_end: int = header_end + length
    return written < declared_end or content.find(b"\x00", header_end, declared_end) != -1


def _verify(content: bytes, offset: int) -> tuple[int, DamageKind | None]:
    """Check the record at ``offset``: (its end, None) when well-formed, else (0, why not)."""
    size = len(content)
    if content[offset : offset + len(RECORD_MAGIC)] != RECORD_MAGIC:
        return 0, DamageKind.GARBAGE
    if offset + RECORD_HEADER_SIZE > size:
        return 0, DamageKind.TRUNCATED
    _, _, length, length_check, checksum = _RECORD_HEADER.unpack_from(content, offset)
    if length > MAX_RECORD_DATA or zlib.crc32(_LENGTH.pack(length)) != length_check:
        return 0, DamageKind.BAD_LENGTH
    end = offset + RECORD_HEADER_SIZE + length
    if end > size:
        return 0, DamageKind.TRUNCATED
    with memoryview(content) as view:  # no copy of the data
        if zlib.crc32(view[offset + RECORD_HEADER_SIZE : end], length_check) != checksum:
            return 0, DamageKind.BAD_CHECKSUM
    return end, None


def _resync(content: bytes, start: int) -> int:
    """Where the next well-formed record at or after ``start`` begins (the file's size if none)."""
    found = content.find(RECORD_MAGIC, start)
    while found != -1 and _verify(content, found)[1] is not None:
        found = content.find(RECORD_MAGIC, found + 1)
    return len(content) if found == -1 else found


def scan_records(content: bytes) -> Iterator[ScannedRecord | RecordDamage]:
    """Every intact record of a spool file and every damaged stretch, in file order.

    See the module docstring for exactly what is yielded and why. Empty content
    (a file created but never written) yields nothing.

    Args:
        content: the whole file's bytes.

    Yields:
        ``ScannedRecord`` for each well-formed record and ``RecordDamage`` for
        each damaged stretch, by increasing offset.
    """
    size = len(content)
    if size == 0:
        return
    version, check = content[len(FILE_MAGIC) : FILE_HEADER_SIZE].ljust(2, b"\0")
    if content[: len(FILE_MAGIC)] == FILE_MAGIC and size >= FILE_HEADER_SIZE and version ^ check == 0xFF:
        if version != FORMAT_VERSION:
            yield RecordDamage(offset=0, length=size, kind=DamageKind.UNSUPPORTED_VERSION)
            return
        position = FILE_HEADER_SIZE
    elif FILE_HEADER.startswith(content[:FILE_HEADER_SIZE]):
        yield RecordDamage(offset=0, length=size, kind=DamageKind.TRUNCATED)  # a torn header
        return
    else:
        # A damaged or missing header: the records after it may still be intact.
        position = 0 if _verify(content, 0)[1] is None else _resync(content, 1)
        yield RecordDamage(offset=0, length=position, kind=DamageKind.BAD_HEADER)
    # Zeros after the last record are space a writer reserved and never used (see the module docstring).
    unused_from = len(content.rstrip(b"\x00"))
    while position < size:
        end, problem = _verify(content, position)
        if problem is not None and position >= unused_from:
            return
        if problem is None:
            flag = content[position + SETTLED_FLAG_OFFSET]
            if flag not in (UNSETTLED, SETTLED):
                yield RecordDamage(offset=position + SETTLED_FLAG_OFFSET, length=1, kind=DamageKind.BAD_FLAG)
            data = content[position + RECORD_HEADER_SIZE : end]
            yield ScannedRecord(offset=position, data=data, settled=flag == SETTLED)
            position = end
            continue
        resume = _resync(content, position + 1)
        # Damage with no record after it ends where the unused zeros begin.
        end = resume if resume < size else unused_from
        yield RecordDamage(offset=position, length=end - position, kind=problem)
        position = resume


class _FileEntry:
    """One file's bookkeeping: its unsettled record offsets, its size, whether it is sealed."""

    __slots__ = ("pending", "sealed", "size")

    def __init__(self, size: int, sealed: bool) -> None:
        self.pending: set[int] = set()
        self.size = size
        self.sealed = sealed


class SpoolLedger:
    """Which records of which spool files are unsettled, and when a file may be deleted.

    A file is *sealed* when nothing more will be appended to it (rotated away,
    adopted from a dead process, or the spool is closing). A sealed file with no
    unsettled record is *deletable*. The ledger owns no lock: the runtime
    serialises calls, as it does for the engine.
    """

    __slots__ = ("_bytes", "_files", "_pending")

    def __init__(self) -> None:
        self._files: dict[str, _FileEntry] = {}
        self._pending = 0
        self._bytes = 0

    @property
    def pending(self) -> int:
        """Unsettled records in all files."""
        return self._pending

    @property
    def bytes(self) -> int:
        """Bytes of all files tracked (records settled or not, headers, damage)."""
        return self._bytes

    @property
    def files(self) -> tuple[str, ...]:
        """The names of the files tracked."""
        return tuple(self._files)

    def add_file(self, name: str, *, size: int, sealed: bool = False) -> None:
        """Track a file: a new one (``sealed=False``) or an adopted one (``sealed=True``).

        Raises:
            ValueError: the file is already tracked.
        """
        if name in self._files:
            raise ValueError(f"spool file {name} is already tracked")
        self._files[name] = _FileEntry(size, sealed)
        self._bytes += size

    def add_record(self, ref: SpoolRef, size: int = 0) -> None:
        """An unsettled record at ``ref``; ``size`` bytes were appended to its file for it.

        Raises:
            KeyError: the file is not tracked.
        """
        entry = self._files[ref.file]
        if ref.offset not in entry.pending:
            entry.pending.add(ref.offset)
            self._pending += 1
        entry.size += size
        self._bytes += size

    def grow(self, name: str, size: int) -> None:
        """``size`` bytes were appended to file ``name`` that hold no record to deliver (a settlement).

        Raises:
            KeyError: the file is not tracked.
        """
        self._files[name].size += size
        self._bytes += size

    def settle(self, ref: SpoolRef) -> bool:
        """Mark a record settled.

        Returns:
            True if it was unsettled (the caller writes its flag); False if it was
            settled already or its file is not tracked (settling is idempotent).
        """
        entry = self._files.get(ref.file)
        if entry is None or ref.offset not in entry.pending:
            return False
        entry.pending.discard(ref.offset)
        self._pending -= 1
        return True

    def settle_all(self, refs: Iterable[SpoolRef]) -> dict[str, list[int]]:
        """Mark records settled, as :meth:`settle` does each; the offsets that were unsettled, by file."""
        settled: dict[str, list[int]] = {}
        files = self._files
        for ref in refs:
            entry = files.get(ref.file)
            if entry is not None and ref.offset in entry.pending:
                entry.pending.discard(ref.offset)
                self._pending -= 1
                settled.setdefault(ref.file, []).append(ref.offset)
        return settled

    def seal(self, name: str) -> None:
        """Nothing more will be appended to this file (no-op for a file not tracked)."""
        entry = self._files.get(name)
        if entry is not None:
            entry.sealed = True

    def deletable(self, name: str) -> bool:
        """Whether the file is tracked, sealed and holds no unsettled record."""
        entry = self._files.get(name)
        return entry is not None and entry.sealed and not entry.pending

    def pending_in(self, name: str) -> int:
        """Unsettled records in one file (0 for a file not tracked)."""
        entry = self._files.get(name)
        return 0 if entry is None else len(entry.pending)

    def size_of(self, name: str) -> int:
        """Bytes of one file (0 for a file not tracked)."""
        entry = self._files.get(name)
        return 0 if entry is None else entry.size

    def forget(self, name: str) -> int:
        """Stop tracking a file (deleted, or left behind); its unsettled records no longer count.

        Returns:
            The number of unsettled records it still held.
        """
        entry = self._files.pop(name, None)
        if entry is None:
            return 0
        self._pending -= len(entry.pending)
        self._bytes -= entry.size
        return len(entry.pending)
