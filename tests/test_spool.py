"""The spool's file I/O in one process: append, acknowledge, rotate, delete, recover, bound, damage.

Real files in pytest's tmp_path. Faults the disk cannot be made to produce on
demand (ENOSPC, EIO, a short write) are injected at the system call that meets
them: ``posix_fallocate`` when the spool reserves space for its map, ``pwrite``
where it cannot map (the ``pwrite_only`` fixture: a file system that refuses
to reserve space); the rest is the real thing. Processes (fork, SIGKILL, racing adopters) are in
tests/test_spool_processes.py.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import mmap
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segment_core import ConfigurationError
from segment_core.spool import (
    FILE_HEADER,
    RECORD_HEADER_SIZE,
    SETTLED,
    SETTLED_FLAG_OFFSET,
    SETTLEMENT_MARK,
    DamageKind,
    RecordDamage,
    ScannedRecord,
    encode_record,
    encode_settlement,
    pending_records,
    records_end,
    scan_records,
)
from segment_runtimes import _spool as spool_module
from segment_runtimes._spool import SPOOL_SUFFIX, RefusalReason, Spool, SpoolRef, SpoolRefusal
from segment_runtimes._spool_inspect import inspect_spool


def message(number: int, stamp: str = "2024-05-01T12:00:00.000Z") -> bytes:
    return b'{"messageId":"m-%d","timestamp":"%s","event":"e"}' % (number, stamp.encode())


def spool_files(directory: Path) -> list[Path]:
    return sorted(path for path in directory.iterdir() if path.name.endswith(SPOOL_SUFFIX))


def written_bytes(directory: Path) -> int:
    """Bytes of the spool files up to their last record: what ``bytes_used`` counts (not the reserve)."""
    return sum(records_end(path.read_bytes()) for path in spool_files(directory))


def append_ok(spool: Spool, data: bytes) -> SpoolRef:
    ref = spool.append(data)
    assert isinstance(ref, SpoolRef), ref
    return ref


@pytest.fixture
def pwrite_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system that cannot reserve space: the spool appends with pwrite, and maps nothing."""

    monkeypatch.setattr(os, "posix_fallocate", cannot_reserve)


def cannot_reserve(fd: int, offset: int, length: int) -> None:
    raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(tmp_path / "spool", max_bytes=1 << 20) as opened:
        yield opened


def recover_all(directory: Path) -> list[bytes]:
    """What a fresh spool on the directory delivers, acknowledging it all, then closing."""
    with Spool(directory, max_bytes=1 << 24) as fresh:
        recovered = list(fresh.recover())
        fresh.acknowledge(ref for ref, _ in recovered)
        return [data for _, data in recovered]


def test_appended_records_come_back_in_order_until_acknowledged(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    first = Spool(directory, max_bytes=1 << 20)
    refs = [append_ok(first, message(n)) for n in range(10)]
    assert len(set(refs)) == 10
    assert first.pending == 10
    first.acknowledge(refs[:4])
    first.acknowledge(refs[:4])  # idempotent
    first.acknowledge([SpoolRef(file="unknown.spool", offset=8)])
    assert first.pending == 6
    assert first.close() == 6
    assert first.pending == 0

    second = Spool(directory, max_bytes=1 << 20)
    recovered = list(second.recover())
    assert [data for _, data in recovered] == [message(n) for n in range(4, 10)]
    assert second.pending == 6
    second.acknowledge(ref for ref, _ in recovered)
    assert second.pending == 0
    assert spool_files(directory) == []  # adopted, settled: deleted
    assert second.close() == 0


def rotated_and_settled(spool: Spool, directory: Path) -> Path:
    """Fill the first file of a spool with 3-record segments, rotate it away, settle it without tidying."""
    refs = [append_ok(spool, message(n)) for n in range(4)]
    first = directory / refs[0].file
    spool.acknowledge(refs[:3], tidy=False)
    return first


def test_a_settled_file_left_for_tidy_stays_counted_until_it_is_gone(tmp_path: Path) -> None:
    record_size = RECORD_HEADER_SIZE + len(message(0))
    with Spool(tmp_path, max_bytes=1 << 20, segment_bytes=len(FILE_HEADER) + 3 * record_size) as spool:
        first = rotated_and_settled(spool, tmp_path)
        assert (first.exists(), spool.untidy) == (True, True)
        assert spool.bytes_used == written_bytes(tmp_path)  # the disk and the books agree meanwhile
        spool.tidy()
        assert (first.exists(), spool.untidy) == (False, False)
        assert spool.bytes_used == written_bytes(tmp_path)
        assert spool.pending == 1


def test_acknowledging_at_the_bound_settles_in_place_and_never_grows_the_spool(tmp_path: Path) -> None:
    max_bytes = len(FILE_HEADER) + 3 * (RECORD_HEADER_SIZE + len(message(0)))  # no room for a settlement
    with Spool(tmp_path, max_bytes=max_bytes) as spool:
        refs = [append_ok(spool, message(n)) for n in range(3)]
        spool.acknowledge(refs[:1])
        assert spool.bytes_used == written_bytes(tmp_path) == max_bytes
        assert spool.pending == 2
    assert recover_all(tmp_path) == [message(1), message(2)]


def test_an_append_that_needs_the_space_of_a_file_left_for_tidy_deletes_it(tmp_path: Path) -> None:
    record_size = RECORD_HEADER_SIZE + len(message(0))
    one_file = len(FILE_HEADER) + 3 * record_size
    max_bytes = 2 * one_file + len(encode_settlement([0, 0, 0]))  # two full files, the first one settled
    with Spool(tmp_path, max_bytes=max_bytes, segment_bytes=one_file) as spool:
        first = rotated_and_settled(spool, tmp_path)
        append_ok(spool, message(4))
        append_ok(spool, message(5))
        assert first.exists()
        assert spool.bytes_used == max_bytes
        append_ok(spool, message(6))  # a third file: only with the first one's space
        assert not first.exists()
        assert not spool.untidy
        assert spool.bytes_used == written_bytes(tmp_path) <= max_bytes


def test_a_forked_child_leaves_its_parents_settled_files_alone(tmp_path: Path) -> None:
    record_size = RECORD_HEADER_SIZE + len(message(0))
    with Spool(tmp_path, max_bytes=1 << 20, segment_bytes=len(FILE_HEADER) + 3 * record_size) as spool:
        first = rotated_and_settled(spool, tmp_path)
        pid = os.fork()
        if pid == 0:  # the child: its spool forgot the parent's files, and tidies nothing of them
            spool.tidy()
            os._exit(0 if first.exists() and not spool.untidy else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert first.exists()
        assert spool.untidy
        spool.tidy()
        assert not first.exists()


def test_a_missing_directory_is_created(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b" / "spool"
    with Spool(directory, max_bytes=1 << 20) as spool:
        append_ok(spool, message(1))
    assert directory.is_dir()


def test_files_rotate_and_are_deleted_once_settled(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    record_size = RECORD_HEADER_SIZE + len(message(0))
    with Spool(directory, max_bytes=1 << 20, segment_bytes=len(FILE_HEADER) + 3 * record_size) as spool:
        refs = [append_ok(spool, message(n)) for n in range(7)]
        files = sorted({ref.file for ref in refs})
        assert len(files) == 3  # 3 + 3 + 1
        assert [path.name for path in spool_files(directory)] == files
        assert all(path.stat().st_size <= len(FILE_HEADER) + 3 * record_size for path in spool_files(directory))

        spool.acknowledge(refs[:3])  # the first file: rotated and settled
        assert [path.name for path in spool_files(directory)] == files[1:]
        spool.acknowledge(refs[6:])  # the current file: settled, but still written
        assert [path.name for path in spool_files(directory)] == files[1:]
        assert spool.bytes_used == written_bytes(directory)
        spool.acknowledge(refs[3:6])
        assert [path.name for path in spool_files(directory)] == [files[2]]
    assert spool_files(directory) == []  # closed with nothing unsettled


def test_a_record_larger_than_a_segment_gets_a_file(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1 << 20, segment_bytes=64) as spool:
        big = b"x" * 1000
        ref = append_ok(spool, big)
        assert ref.offset == len(FILE_HEADER)
        assert append_ok(spool, b"small").file != ref.file
    assert recover_all(tmp_path) == [big, b"small"]


def test_an_acknowledgement_is_one_settlement_record_appended(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1 << 20) as spool:
        refs = [append_ok(spool, message(n)) for n in range(4)]
        spool.acknowledge([refs[1], refs[3]])
        (path,) = spool_files(tmp_path)
        content = path.read_bytes()
        scanned = [item for item in scan_records(content) if isinstance(item, ScannedRecord)]
        # The four records untouched, then one settled record naming two of them.
        assert [(item.offset, item.settled) for item in scanned[:4]] == [(ref.offset, False) for ref in refs]
        (settlement,) = scanned[4:]
        assert settlement.settled
        assert settlement.data.startswith(SETTLEMENT_MARK)
        pending, damage, settled = pending_records(content)
        assert [record.offset for record in pending] == [refs[0].offset, refs[2].offset]
        assert (damage, settled) == ([], 2)
        assert spool.pending == 2


def test_a_torn_settlement_settles_nothing_and_loses_nothing(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1 << 20) as spool:
        refs = [append_ok(spool, message(n)) for n in range(3)]
        spool.acknowledge([refs[0], refs[1]])
        (path,) = spool_files(tmp_path)
        content = path.read_bytes()
    torn = content[: records_end(content) - 3]  # the process died in the middle of writing the settlement
    pending, damage, settled = pending_records(torn)
    assert [record.offset for record in pending] == [ref.offset for ref in refs]
    assert settled == 0
    assert len(damage) == 1


def test_the_bound_refuses_without_raising_and_frees_up_when_settled(tmp_path: Path) -> None:
    record_size = RECORD_HEADER_SIZE + len(message(0))
    limit = len(FILE_HEADER) + 5 * record_size
    with Spool(tmp_path, max_bytes=limit) as spool:
        refs = [append_ok(spool, message(n)) for n in range(5)]
        refusal = spool.append(message(5))
        assert isinstance(refusal, SpoolRefusal)
        assert refusal.reason is RefusalReason.FULL
        assert str(tmp_path) in str(refusal)
        assert spool.bytes_used <= limit
        spool.acknowledge(refs)
        # The settled file is still the one being written; the bound retires it to make room.
        ref = append_ok(spool, message(5))
        assert ref.file != refs[0].file
        assert spool.bytes_used == len(FILE_HEADER) + record_size


def test_a_closed_spool_refuses(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.close()
    refusal = spool.append(b"x")
    assert isinstance(refusal, SpoolRefusal)
    assert refusal.reason is RefusalReason.CLOSED
    assert spool.close() == 0


def test_a_record_too_large_for_the_format_is_refused(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1 << 30) as spool:
        refusal = spool.append(b"x" * ((1 << 20) + 1))
        assert isinstance(refusal, SpoolRefusal)
        assert refusal.reason is RefusalReason.TOO_LARGE


def a_file(root: Path) -> Path:
    (root / "file").write_bytes(b"")
    return root / "file"


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (a_file, "is not a directory"),
        (lambda root: a_file(root) / "below", "cannot be created"),
        (lambda root: Path("/proc/self"), "is not writable"),  # even for root
    ],
    ids=["a-file", "below-a-file", "not-writable"],
)
def test_an_unusable_directory_is_a_configuration_error(tmp_path: Path, make: Callable[[Path], Path], why: str) -> None:
    directory = make(tmp_path)
    with pytest.raises(ConfigurationError, match=why) as raised:
        Spool(directory, max_bytes=1 << 20)
    assert str(directory) in str(raised.value)


@pytest.mark.parametrize(
    "options",
    [{"fsync": "sometimes"}, {"max_bytes": 0}, {"max_bytes": True}, {"segment_bytes": -1}],
)
def test_bad_options_are_configuration_errors(tmp_path: Path, options: dict[str, object]) -> None:
    arguments: dict[str, object] = {"max_bytes": 1 << 20, **options}
    with pytest.raises(ConfigurationError):
        Spool(tmp_path, **arguments)  # type: ignore[arg-type]


@pytest.fixture(params=["mapped", "pwrite"])
def writer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How records are appended: copied into a map over reserved space, or pwritten."""
    if request.param == "mapped":
        monkeypatch.setattr(spool_module, "RESERVE_STEP", 1)  # every append reserves: a fault meets it
    else:
        monkeypatch.setattr(os, "posix_fallocate", cannot_reserve)
    return str(request.param)


def inject_write_fault(monkeypatch: pytest.MonkeyPatch, writer: str, error: OSError) -> list[int]:
    """Make the call that appends records fail: posix_fallocate (mapped) or pwrite; count the faults."""
    faults: list[int] = []
    if writer == "mapped":

        def reserve(fd: int, offset: int, length: int) -> None:
            faults.append(offset)
            raise error

        monkeypatch.setattr(os, "posix_fallocate", reserve)
        return faults
    real = os.pwrite

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        if len(data) > RECORD_HEADER_SIZE:  # not a file header or a flag
            faults.append(offset)
            raise error
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    return faults


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_is_a_refusal_and_the_file_stays_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str, code: int
) -> None:
    with Spool(tmp_path, max_bytes=1 << 20) as spool:
        before = append_ok(spool, message(0))
        with monkeypatch.context() as patch:
            faults = inject_write_fault(patch, writer, OSError(code, os.strerror(code)))
            refusal = spool.append(message(1))
        assert faults
        assert isinstance(refusal, SpoolRefusal)
        assert refusal.reason is RefusalReason.DISK_FULL
        after = append_ok(spool, message(2))
        assert after.file == before.file  # the disk filling up is no reason to leave the file
        assert spool.pending == 2
        (path,) = spool_files(tmp_path)
        assert not [item for item in scan_records(path.read_bytes()) if isinstance(item, RecordDamage)]
    assert recover_all(tmp_path) == [message(0), message(2)]


def test_a_short_write_is_cut_off_so_no_damage_remains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pwrite_only: None
) -> None:
    real = os.pwrite

    def half(fd: int, data: bytes, offset: int) -> int:
        if len(data) > RECORD_HEADER_SIZE:
            return real(fd, data[: len(data) // 2], offset)
        return real(fd, data, offset)

    with Spool(tmp_path, max_bytes=1 << 20) as spool:
        append_ok(spool, message(0))
        with monkeypatch.context() as patch:
            patch.setattr(os, "pwrite", half)
            refusal = spool.append(message(1))
        assert isinstance(refusal, SpoolRefusal)
        assert refusal.reason is RefusalReason.DISK_FULL
        (path,) = spool_files(tmp_path)
        assert path.stat().st_size == len(FILE_HEADER) + RECORD_HEADER_SIZE + len(message(0))
        append_ok(spool, message(2))
        assert not [item for item in scan_records(path.read_bytes()) if isinstance(item, RecordDamage)]
    assert recover_all(tmp_path) == [message(0), message(2)]


def test_another_write_error_is_a_refusal_and_the_next_record_goes_to_a_new_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    with Spool(tmp_path, max_bytes=1 << 20) as spool:
        before = append_ok(spool, message(0))
        with monkeypatch.context() as patch:
            inject_write_fault(patch, writer, OSError(errno.EIO, "Input/output error"))
            refusal = spool.append(message(1))
        assert isinstance(refusal, SpoolRefusal)
        assert refusal.reason is RefusalReason.IO_ERROR
        assert "Input/output error" in refusal.detail
        assert append_ok(spool, message(2)).file != before.file
    assert recover_all(tmp_path) == [message(0), message(2)]


def test_a_file_system_that_cannot_map_gets_pwritten_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def cannot_map(*args: object, **kwargs: object) -> mmap.mmap:
        raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))

    monkeypatch.setattr(mmap, "mmap", cannot_map)
    with Spool(tmp_path, max_bytes=1 << 20) as spool:
        refs = [append_ok(spool, message(n)) for n in range(3)]
        spool.acknowledge(refs[1:2])
        assert spool.pending == 2
    assert recover_all(tmp_path) == [message(0), message(2)]


def test_space_is_reserved_ahead_in_steps_and_cut_off_at_close(tmp_path: Path) -> None:
    step = spool_module.RESERVE_STEP
    records = [b'{"n":%d,"pad":"%s"}' % (number, b"x" * 1000) for number in range(step // 1000 + 10)]
    with Spool(tmp_path, max_bytes=1 << 24) as spool:
        first = append_ok(spool, records[0])
        (path,) = spool_files(tmp_path)
        assert path.stat().st_size == len(FILE_HEADER) + step
        refs = [append_ok(spool, data) for data in records[1:]]  # past the first step, not the second
        assert {ref.file for ref in refs} == {first.file}
        assert path.stat().st_size == len(FILE_HEADER) + 2 * step
        written = len(FILE_HEADER) + sum(RECORD_HEADER_SIZE + len(data) for data in records)
        assert spool.bytes_used == records_end(path.read_bytes()) == written
        spool.acknowledge(refs)
        settled_written = records_end(path.read_bytes())
    # Closed with a record unsettled: the file keeps its records and settlement, not the reserve.
    assert path.stat().st_size == settled_written > written
    assert recover_all(tmp_path) == [records[0]]


def test_zeros_a_killed_writer_reserved_are_no_damage_and_settlements_go_before_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_dead_process_file(tmp_path, 3)
    records = path.read_bytes()
    with open(path, "ab") as appender:
        appender.write(bytes(5000))  # the unused reserve of a writer killed with SIGKILL
    caplog.set_level(logging.WARNING, logger="segment")
    with Spool(tmp_path, max_bytes=1 << 20) as adopter:
        recovered = list(adopter.recover())
        assert [data for _, data in recovered] == [message(n) for n in range(3)]
        assert adopter.bytes_used == len(records)
        adopter.acknowledge([recovered[0][0]])
        content = path.read_bytes()
        # The settlement follows the last record, over the zeros: a later scan finds no damage.
        assert content.startswith(records)
        assert not [item for item in scan_records(content) if isinstance(item, RecordDamage)]
        assert [record.data for record in pending_records(content)[0]] == [message(1), message(2)]
    assert damage_warnings(caplog) == []
    assert records_end(path.read_bytes()) == path.stat().st_size  # closed: the zeros are cut off
    assert recover_all(tmp_path) == [message(1), message(2)]


def test_a_file_that_cannot_be_created_is_a_refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def no_space(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        if flags & os.O_CREAT:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, flags, mode)

    with Spool(tmp_path, max_bytes=1 << 20) as spool:
        monkeypatch.setattr(os, "open", no_space)
        refusal = spool.append(message(0))
        assert isinstance(refusal, SpoolRefusal)
        assert refusal.reason is RefusalReason.DISK_FULL
        monkeypatch.undo()
        append_ok(spool, message(1))
    assert recover_all(tmp_path) == [message(1)]


def write_dead_process_file(directory: Path, count: int) -> Path:
    """A spool file as a process that died leaves it: records on disk, and no lock held."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"20240501T120000.000000000-99999-deadbeef-1{SPOOL_SUFFIX}"
    path.write_bytes(FILE_HEADER + b"".join(encode_record(message(number)) for number in range(count)))
    return path


def damage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


def record_offsets(path: Path) -> list[int]:
    return [item.offset for item in scan_records(path.read_bytes()) if isinstance(item, ScannedRecord)]


def test_damage_is_survived_with_one_warning_per_damage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_dead_process_file(tmp_path, 6)
    offsets = record_offsets(path)
    content = bytearray(path.read_bytes())
    content[offsets[2] + RECORD_HEADER_SIZE + 3] ^= 0x10  # a flipped bit in the third record
    content = content[: len(content) - 5]  # a torn last record
    path.write_bytes(bytes(content) + b"\x00" * 40)  # zeros after it, as a power loss leaves them

    caplog.set_level(logging.WARNING, logger="segment")
    recovered = recover_all(tmp_path)

    assert recovered == [message(n) for n in (0, 1, 3, 4)]
    warnings = damage_warnings(caplog)
    assert len(warnings) == 2
    assert str(path) in warnings[0]
    assert f"offset {offsets[2]}" in warnings[0]
    assert "checksum" in warnings[0]
    assert f"offset {offsets[5]}" in warnings[1]


def test_garbage_appended_is_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_dead_process_file(tmp_path, 3)
    size = path.stat().st_size
    with open(path, "ab") as appender:
        appender.write(b"some log line\n" * 20)
    caplog.set_level(logging.WARNING, logger="segment")
    assert recover_all(tmp_path) == [message(n) for n in range(3)]
    (warning,) = damage_warnings(caplog)
    assert str(path) in warning
    assert f"offset {size}" in warning


def test_foreign_damaged_and_newer_files_never_stop_start_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_dead_process_file(tmp_path, 2)
    (tmp_path / "notes.spool").write_bytes(b"not a spool file at all")
    (tmp_path / "empty.spool").write_bytes(b"")
    (tmp_path / "newer.spool").write_bytes(FILE_HEADER[:6] + bytes([9, 9 ^ 0xFF]) + b"future records")
    (tmp_path / "directory.spool").mkdir()
    (tmp_path / "unrelated.txt").write_bytes(b"left alone")

    caplog.set_level(logging.WARNING, logger="segment")
    assert recover_all(tmp_path) == [message(0), message(1)]

    warnings = damage_warnings(caplog)
    assert any("notes.spool" in warning and "offset 0" in warning for warning in warnings)
    assert any("newer.spool" in warning and "newer" in warning for warning in warnings)
    # A newer client's file is left for it; empty and foreign files held no record and are gone.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["directory.spool", "newer.spool", "unrelated.txt"]


def test_a_live_process_files_are_not_adopted(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1 << 20) as writer, Spool(tmp_path, max_bytes=1 << 20) as other:
        append_ok(writer, message(0))
        assert list(other.recover()) == []
        assert list(writer.recover()) == []  # nor its own
    assert recover_all(tmp_path) == [message(0)]


def test_recover_again_adopts_what_died_since(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool", max_bytes=1 << 20) as survivor:
        assert list(survivor.recover()) == []
        write_dead_process_file(tmp_path / "spool", 2)
        rescued = list(survivor.recover())
        assert [data for _, data in rescued] == [message(0), message(1)]
        assert list(survivor.recover()) == []  # held now: not adopted twice
        assert survivor.pending == 2
    # Closed unsettled: the adopted records stay for the next start.
    assert recover_all(tmp_path / "spool") == [message(0), message(1)]


def test_an_abandoned_temporary_file_is_removed_once_old(tmp_path: Path) -> None:
    fresh = tmp_path / f"x{SPOOL_SUFFIX}.tmp"
    old = tmp_path / f"y{SPOOL_SUFFIX}.tmp"
    for path in (fresh, old):
        path.write_bytes(FILE_HEADER)
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert recover_all(tmp_path) == []
    assert fresh.exists()
    assert not old.exists()


def test_concurrent_appends_from_threads_are_all_kept(tmp_path: Path) -> None:
    threads_count, per_thread = 4, 200
    refs: list[list[SpoolRef]] = [[] for _ in range(threads_count)]
    with Spool(tmp_path, max_bytes=1 << 24, segment_bytes=16 << 10) as spool:
        start = threading.Barrier(threads_count)

        def append_many(index: int) -> None:
            start.wait(timeout=10)
            for number in range(per_thread):
                refs[index].append(append_ok(spool, message(index * per_thread + number)))

        threads = [threading.Thread(target=append_many, args=(index,)) for index in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
            assert not thread.is_alive()
        all_refs = [ref for chunk in refs for ref in chunk]
        assert len(set(all_refs)) == threads_count * per_thread
        assert spool.pending == threads_count * per_thread
    recovered = recover_all(tmp_path)
    assert sorted(recovered) == sorted(message(n) for n in range(threads_count * per_thread))


def count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_fsync_always_syncs_inside_append(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_fsyncs(monkeypatch)
    with Spool(tmp_path, max_bytes=1 << 20, fsync="always") as spool:
        append_ok(spool, message(0))
        assert len(calls) == 2  # the file, and the directory that got a new name
        append_ok(spool, message(1))
        assert len(calls) == 3


def test_fsync_interval_syncs_written_files_at_most_every_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_fsyncs(monkeypatch)
    with Spool(tmp_path, max_bytes=1 << 20, fsync="interval") as spool:
        append_ok(spool, message(0))
        assert calls == []  # never inside append
        assert spool.maybe_sync(100.0)
        assert len(calls) == 2  # the file and the directory
        append_ok(spool, message(1))
        assert not spool.maybe_sync(100.5)
        assert len(calls) == 2
        assert spool.maybe_sync(101.0)
        assert len(calls) == 3  # the file; the directory is unchanged
        assert spool.maybe_sync(102.0)
        assert len(calls) == 3  # nothing written since


def test_fsync_never_does_not_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_fsyncs(monkeypatch)
    with Spool(tmp_path, max_bytes=1 << 20, fsync="never") as spool:
        append_ok(spool, message(0))
        assert not spool.maybe_sync(100.0)
    assert calls == []


def test_inspect_reports_pending_bytes_oldest_damage_and_liveness(tmp_path: Path) -> None:
    dead = write_dead_process_file(tmp_path, 2)
    with open(dead, "ab") as appender:
        appender.write(b"garbage")
    with Spool(tmp_path, max_bytes=1 << 20) as live:
        refs = [
            append_ok(live, message(10, "2024-05-01T12:00:00.000+02:00")),  # the oldest: 10:00 UTC
            append_ok(live, message(11, "2024-05-01T11:00:00.000Z")),
            append_ok(live, b"not json"),
        ]
        live.acknowledge(refs[:1])
        (live_path,) = (path for path in spool_files(tmp_path) if path != dead)

        report = inspect_spool(tmp_path)

        assert report.pending == 4  # 2 dead + 2 live
        assert report.bytes == dead.stat().st_size + records_end(live_path.read_bytes())
        assert live_path.stat().st_size > records_end(live_path.read_bytes())  # what it reserved is not counted
        assert report.damaged == 1
        assert report.oldest_timestamp == "2024-05-01T11:00:00.000Z"
        assert report.live_files == (str(live_path),)
        assert report.orphaned_files == (str(dead),)
        by_path = {file.path: file for file in report.files}
        assert by_path[str(live_path)].settled == 1
        assert by_path[str(dead)].damaged[0].kind is DamageKind.GARBAGE
        # A pure read: the dead file is still there to adopt, untouched.
        assert [data for _, data in live.recover()] == [message(0), message(1)]


@pytest.mark.parametrize("writer", ["mapped", "pwrite"])
def test_inspect_of_a_live_file_reports_a_damaged_last_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    if writer == "pwrite":
        monkeypatch.setattr(os, "posix_fallocate", cannot_reserve)
    with Spool(tmp_path, max_bytes=1 << 20) as live:
        refs = [append_ok(live, message(n)) for n in range(3)]
        (path,) = spool_files(tmp_path)
        fd = os.open(path, os.O_RDWR)
        try:  # a bit flipped in the last record's data: it is whole, so this is damage
            position = refs[-1].offset + RECORD_HEADER_SIZE + 3
            os.pwrite(fd, bytes([os.pread(fd, 1, position)[0] ^ 0x04]), position)
        finally:
            os.close(fd)
        report = inspect_spool(tmp_path)
        assert report.damaged == 1
        assert report.files[0].damaged[0].offset == refs[-1].offset
        assert report.pending == 2


def test_files_are_mapped_only_on_file_systems_whose_write_faults_cannot_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind = spool_module.file_system_type(tmp_path)
    assert kind  # the test machine's /tmp: ext4, as `df -T` says
    with Spool(tmp_path / "mapped", max_bytes=1 << 20) as spool:
        assert spool.maps_files is (kind in spool_module.MAPPED_FILE_SYSTEMS)
    monkeypatch.setattr(spool_module, "MAPPED_FILE_SYSTEMS", frozenset({"btrfs"}))
    with Spool(tmp_path / "other", max_bytes=1 << 20) as spool:
        assert not spool.maps_files
        append_ok(spool, message(0))
        (path,) = spool_files(tmp_path / "other")
        assert path.stat().st_size == len(FILE_HEADER) + RECORD_HEADER_SIZE + len(message(0))  # no reserve
    assert recover_all(tmp_path / "other") == [message(0)]


def test_the_file_system_type_comes_from_the_mount_table() -> None:
    assert spool_module.file_system_type("/proc") == "proc"
    assert spool_module.file_system_type("/no/such/directory") is None
    if os.path.isdir("/dev/shm"):
        assert spool_module.file_system_type("/dev/shm") == "tmpfs"


def test_the_reserve_counts_against_the_bound(tmp_path: Path) -> None:
    limit = 20_000
    with Spool(tmp_path, max_bytes=limit) as spool:
        append_ok(spool, message(0))
        (path,) = spool_files(tmp_path)
        assert path.stat().st_size <= limit


@pytest.mark.parametrize("torn_at", [2, 12, 30])  # in the magic, the length, the data
@pytest.mark.parametrize("writer", ["mapped", "pwrite"])
def test_inspect_of_a_live_file_ignores_a_record_being_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str, torn_at: int
) -> None:
    if writer == "pwrite":
        monkeypatch.setattr(os, "posix_fallocate", cannot_reserve)
    with Spool(tmp_path, max_bytes=1 << 20) as live:
        append_ok(live, message(0))
        (path,) = spool_files(tmp_path)
        end = records_end(path.read_bytes())
        fd = os.open(path, os.O_WRONLY)
        try:  # what a read in the middle of an append sees
            os.pwrite(fd, encode_record(message(1))[:torn_at], end)
        finally:
            os.close(fd)
        report = inspect_spool(tmp_path)
        assert report.damaged == 0
        assert report.pending == 1


def test_a_dead_file_with_nothing_unsettled_is_deleted_at_once(tmp_path: Path) -> None:
    path = write_dead_process_file(tmp_path, 2)
    content = bytearray(path.read_bytes())
    for offset in record_offsets(path):
        content[offset + SETTLED_FLAG_OFFSET] = SETTLED
    path.write_bytes(bytes(content))
    with Spool(tmp_path, max_bytes=1 << 20) as spool:
        assert list(spool.recover()) == []
        assert not path.exists()
        assert spool.bytes_used == 0


def test_after_fork_in_child_does_nothing_in_the_same_process(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1 << 20) as spool:
        first = append_ok(spool, message(0))
        spool.after_fork_in_child()
        assert spool.pending == 1
        assert append_ok(spool, message(1)).file == first.file


def test_a_failed_fsync_with_always_refuses_and_the_record_never_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Spool(tmp_path, max_bytes=1 << 20, fsync="always") as spool:
        append_ok(spool, message(0))

        def failing(fd: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        with monkeypatch.context() as patch:
            patch.setattr(os, "fsync", failing)
            refusal = spool.append(message(1))
        assert isinstance(refusal, SpoolRefusal)
        assert refusal.reason is RefusalReason.IO_ERROR
        assert spool.pending == 1
    assert recover_all(tmp_path) == [message(0)]


def rotated_file_with_records(spool: Spool, count: int) -> list[SpoolRef]:
    """Records in a file the spool no longer writes (so that settling them all deletes it)."""
    refs = [append_ok(spool, message(number)) for number in range(count)]
    while (ref := append_ok(spool, message(count))).file == refs[0].file:
        spool.acknowledge([ref])
    spool.acknowledge([ref])
    return refs


def test_a_file_deleted_between_a_racers_open_and_lock_is_not_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The owner deletes a settled file without writing its flags; a racer that opened
    # it just before must notice the name is gone once it gets the lock.
    with Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1024) as owner, Spool(tmp_path, max_bytes=1 << 20) as racer:
        refs = rotated_file_with_records(owner, 3)
        real_flock = fcntl.flock

        def owner_settles_first(fd: int, operation: int) -> None:
            monkeypatch.setattr(fcntl, "flock", real_flock)
            owner.acknowledge(refs)  # unlinks the file, then closes it: the lock is free
            real_flock(fd, operation)

        monkeypatch.setattr(fcntl, "flock", owner_settles_first)
        assert list(racer.recover()) == []


def test_a_file_is_unlinked_before_its_lock_is_released(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # At the moment the owner unlinks a settled file, it must still hold the lock:
    # a racer adopting it then would deliver its records again.
    with Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1024) as owner, Spool(tmp_path, max_bytes=1 << 20) as racer:
        refs = rotated_file_with_records(owner, 3)
        real_unlink = os.unlink
        adopted: list[tuple[SpoolRef, bytes]] = []

        def racer_looks_first(path: str | os.PathLike[str]) -> None:
            if str(path).endswith(SPOOL_SUFFIX):
                adopted.extend(racer.recover())
            real_unlink(path)

        monkeypatch.setattr(os, "unlink", racer_looks_first)
        owner.acknowledge(refs)
        assert adopted == []


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.integers(min_value=0, max_value=300)),
            st.tuples(st.just("acknowledge"), st.integers(min_value=0, max_value=1000)),
        ),
        max_size=80,
    )
)
def test_the_files_on_disk_match_the_books_and_the_bound_holds(steps: list[tuple[str, int]]) -> None:
    max_bytes = 2000
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        unsettled: dict[SpoolRef, bytes] = {}
        with Spool(root, max_bytes=max_bytes, segment_bytes=600) as spool:
            for number, (action, amount) in enumerate(steps):
                if action == "append":
                    data = b"%d:" % number + b"x" * amount
                    ref = spool.append(data)
                    if isinstance(ref, SpoolRef):
                        unsettled[ref] = data
                    else:
                        assert ref.reason is RefusalReason.FULL
                        assert spool.bytes_used + RECORD_HEADER_SIZE + len(data) > max_bytes - len(FILE_HEADER)
                elif unsettled:
                    chosen = list(unsettled)[amount % len(unsettled)]
                    spool.acknowledge([chosen])
                    del unsettled[chosen]
                assert spool.bytes_used <= max_bytes
                assert spool.bytes_used == written_bytes(root)
                assert spool.pending == len(unsettled)
        assert sorted(recover_all(root)) == sorted(unsettled.values())
        assert spool_files(root) == []


def test_the_bound_counts_the_header_of_a_new_file(tmp_path: Path) -> None:
    one_file = len(FILE_HEADER) + RECORD_HEADER_SIZE + len(message(0))
    # segment_bytes=1: every record gets a file of its own.
    with Spool(tmp_path, max_bytes=2 * one_file - 1, segment_bytes=1) as spool:
        append_ok(spool, message(0))
        refusal = spool.append(message(1))
        assert isinstance(refusal, SpoolRefusal)
        assert refusal.reason is RefusalReason.FULL
        assert spool.bytes_used == one_file
