"""The spool's record format: what a scan yields from intact, torn and damaged files.

The properties build a file from any records, damage it with any edits
(flipped bits, inserted and deleted bytes, a truncation, garbage appended)
while tracking where every original byte went, and check that the scan yields
exactly the records whose bytes survived unchanged: none damaged, none
invented, none missed, and every byte accounted for by a record or a damage.
The ledger's bookkeeping is checked against a plain model.
"""

from __future__ import annotations

import itertools
import json
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from segment_core._spool_records import _write_record
from segment_core.spool import (
    FILE_HEADER,
    FILE_HEADER_SIZE,
    MAX_RECORD_DATA,
    RECORD_HEADER_SIZE,
    SETTLED,
    SETTLED_FLAG_OFFSET,
    SETTLEMENT_MARK,
    UNSETTLED,
    DamageKind,
    RecordDamage,
    ScannedRecord,
    SpoolLedger,
    SpoolRef,
    encode_record,
    encode_settlement,
    pending_records,
    record_in_progress,
    records_end,
    scan_records,
    write_record,
)

RECORD_MAGIC = encode_record(b"")[:SETTLED_FLAG_OFFSET]


@dataclass(frozen=True)
class Original:
    """One record as written: where its bytes are in the undamaged file."""

    start: int
    end: int
    data: bytes
    settled: bool


def build_file(records: list[tuple[bytes, bool]]) -> tuple[bytes, list[Original]]:
    """A spool file holding these (data, settled) records, and where each one lies."""
    content = bytearray(FILE_HEADER)
    originals = []
    for data, settled in records:
        start = len(content)
        content += encode_record(data)
        if settled:
            content[start + SETTLED_FLAG_OFFSET] = SETTLED
        originals.append(Original(start, len(content), data, settled))
    return bytes(content), originals


def scan(content: bytes) -> tuple[list[ScannedRecord], list[RecordDamage]]:
    items = list(scan_records(content))
    records = [item for item in items if isinstance(item, ScannedRecord)]
    damages = [item for item in items if isinstance(item, RecordDamage)]
    return records, damages


def check_every_byte_accounted_for(content: bytes) -> None:
    """Yielded records and damages tile the file, in order, with nothing left over or counted twice."""
    items = [
        item
        for item in scan_records(content)
        if not (isinstance(item, RecordDamage) and item.kind is DamageKind.BAD_FLAG)
    ]
    position = 0 if not content or content[:FILE_HEADER_SIZE] != FILE_HEADER else FILE_HEADER_SIZE
    for item in items:
        assert item.offset == position, (item, position)
        if isinstance(item, ScannedRecord):
            position += RECORD_HEADER_SIZE + len(item.data)
        else:
            assert item.length > 0 or item.kind is DamageKind.BAD_HEADER
            position += item.length
    # What is left is unused space a writer reserved: zeros, from a record boundary on.
    assert not content[position:].strip(b"\x00"), position


# Record data: mostly JSON-like text (what the spool holds), sometimes any bytes.
record_data = st.one_of(
    st.text(max_size=60).map(lambda text: json.dumps({"event": text}).encode()),
    st.binary(max_size=80),
)
record_lists = st.lists(st.tuples(record_data, st.booleans()), max_size=8)


@given(record_lists)
def test_an_intact_file_yields_every_record_and_no_damage(records: list[tuple[bytes, bool]]) -> None:
    content, originals = build_file(records)
    found, damages = scan(content)
    assert damages == []
    assert [(record.offset, record.data, record.settled) for record in found] == [
        (original.start, original.data, original.settled) for original in originals
    ]


# An edit is applied to a list of "origins": the index of each byte in the undamaged
# file, or None for a byte that was not there. Flipped bytes are remembered apart.
@dataclass
class Damaged:
    content: bytearray
    origins: list[int | None]
    flips: dict[int, int]  # original index -> XOR of the bits flipped there

    @property
    def flipped(self) -> set[int]:
        """Original bytes that differ now (a bit flipped twice is back as it was)."""
        return {index for index, mask in self.flips.items() if mask}


def apply_edit(state: Damaged, edit: tuple[str, float, int, bytes]) -> None:
    kind, where, amount, garbage = edit
    size = len(state.content)
    position = min(int(where * (size + 1)), size)
    if kind == "flip" and size:
        position = min(position, size - 1)
        state.content[position] ^= 1 << (amount % 8)
        origin = state.origins[position]
        if origin is not None:
            state.flips[origin] = state.flips.get(origin, 0) ^ (1 << (amount % 8))
    elif kind == "insert":
        state.content[position:position] = garbage
        state.origins[position:position] = [None] * len(garbage)
    elif kind == "delete":
        del state.content[position : position + amount]
        del state.origins[position : position + amount]
    elif kind == "truncate":
        del state.content[position:]
        del state.origins[position:]
    elif kind == "append":
        state.content += garbage
        state.origins += [None] * len(garbage)


edits = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "truncate", "append"]),
        st.floats(min_value=0, max_value=1),
        st.integers(min_value=1, max_value=40),
        st.binary(min_size=1, max_size=40),
    ),
    min_size=1,
    max_size=4,
)


def expected_survivors(state: Damaged, originals: list[Original]) -> list[tuple[int, bytes]]:
    """(offset, data) of every original record whose bytes are all still there, unchanged and together."""
    where = {origin: position for position, origin in enumerate(state.origins) if origin is not None}
    survivors = []
    flipped = state.flipped
    for original in originals:
        position = where.get(original.start)
        span = list(range(original.start, original.end))
        if position is None or state.origins[position : position + len(span)] != span:
            continue
        if any(index in flipped for index in span if index != original.start + SETTLED_FLAG_OFFSET):
            continue
        survivors.append((position, original.data))
    return survivors


@given(record_lists, edits)
def test_damage_yields_exactly_the_intact_records(
    records: list[tuple[bytes, bool]], damage: list[tuple[str, float, int, bytes]]
) -> None:
    content, originals = build_file(records)
    state = Damaged(bytearray(content), list(range(len(content))), {})
    for edit in damage:
        apply_edit(state, edit)
    damaged = bytes(state.content)
    header = damaged[:FILE_HEADER_SIZE]
    # A header edited into another consistent version is a newer client's file: not read (tested below).
    assume(
        not (
            header[:6] == FILE_HEADER[:6]
            and len(header) == 8
            and header[6] ^ header[7] == 0xFF
            and header != FILE_HEADER
        )
    )

    found, _ = scan(damaged)

    assert [(record.offset, record.data) for record in found] == expected_survivors(state, originals)
    by_start = {original.start: original for original in originals}
    for record in found:
        start = state.origins[record.offset]
        assert start is not None
        if start + SETTLED_FLAG_OFFSET not in state.flipped:
            assert record.settled == by_start[start].settled
    # With the records exact, this also says every other byte is reported as damage.
    check_every_byte_accounted_for(damaged)


@given(record_lists.filter(lambda records: len(records) > 0), st.data())
def test_every_single_bit_flip_is_detected(records: list[tuple[bytes, bool]], data: st.DataObject) -> None:
    content, originals = build_file(records)
    position = data.draw(st.integers(min_value=FILE_HEADER_SIZE, max_value=len(content) - 1))
    bit = data.draw(st.integers(min_value=0, max_value=7))
    damaged = bytearray(content)
    damaged[position] ^= 1 << bit

    found, damages = scan(bytes(damaged))

    hit = next(original for original in originals if original.start <= position < original.end)
    assert len(damages) == 1
    if position == hit.start + SETTLED_FLAG_OFFSET:
        assert damages[0] == RecordDamage(offset=position, length=1, kind=DamageKind.BAD_FLAG)
        assert [record.data for record in found] == [original.data for original in originals]
        assert not found[originals.index(hit)].settled
    else:
        field = position - hit.start
        expected_kind = (
            DamageKind.GARBAGE
            if field < SETTLED_FLAG_OFFSET
            else DamageKind.BAD_LENGTH
            if field < RECORD_HEADER_SIZE - 4
            else DamageKind.BAD_CHECKSUM
        )
        # Damage with no record after it stops at its last non-zero byte (zeros after it are unused space).
        end = hit.end if hit is not originals[-1] else len(bytes(damaged).rstrip(b"\x00"))
        assert damages[0] == RecordDamage(offset=hit.start, length=end - hit.start, kind=expected_kind)
        assert [record.data for record in found] == [original.data for original in originals if original is not hit]


@given(record_lists.filter(lambda records: len(records) > 0), st.data())
def test_a_torn_last_record_is_one_truncated_damage(records: list[tuple[bytes, bool]], data: st.DataObject) -> None:
    content, originals = build_file(records)
    last = originals[-1]
    cut = data.draw(st.integers(min_value=last.start + 1, max_value=last.end - 1))

    found, damages = scan(content[:cut])

    assert [record.data for record in found] == [original.data for original in originals[:-1]]
    assert len(damages) == 1
    assert damages[0].offset == last.start
    # Up to the torn record's last non-zero byte: zeros after it read as unused space.
    assert damages[0].length == len(content[:cut].rstrip(b"\x00")) - last.start
    assert damages[0].kind in (DamageKind.TRUNCATED, DamageKind.GARBAGE)  # GARBAGE: the magic itself was cut


@given(record_lists, st.binary(min_size=1, max_size=200))
def test_garbage_appended_is_one_damage_after_the_last_record(
    records: list[tuple[bytes, bool]], garbage: bytes
) -> None:
    assume(RECORD_MAGIC not in garbage)
    assume(garbage.strip(b"\x00"))  # zeros alone are unused space (tested below)
    content, originals = build_file(records)

    found, damages = scan(content + garbage)

    assert [record.data for record in found] == [original.data for original in originals]
    length = len(garbage.rstrip(b"\x00"))  # zeros after the garbage read as unused space
    assert damages == [RecordDamage(offset=len(content), length=length, kind=DamageKind.GARBAGE)]


@given(record_lists, st.integers(min_value=0, max_value=5000), edits)
def test_zeros_after_the_last_record_are_unused_space(
    records: list[tuple[bytes, bool]], reserved: int, damage: list[tuple[str, float, int, bytes]]
) -> None:
    # The runtime reserves space ahead of its records; a process killed then leaves zeros there.
    content, originals = build_file(records)
    found, damages = scan(content + bytes(reserved))
    assert damages == []
    assert [(record.offset, record.data) for record in found] == [
        (original.start, original.data) for original in originals
    ]
    # And damage before the reserved space is reported as it would be without it.
    state = Damaged(bytearray(content), list(range(len(content))), {})
    for edit in damage:
        apply_edit(state, edit)
    damaged = bytes(state.content)
    with_reserve, _ = scan(damaged + bytes(reserved))
    without, _ = scan(damaged)
    # Zeros can complete a torn last record whose own data ended in zeros: then it is found too.
    assert with_reserve[: len(without)] == without
    assert len(with_reserve) <= len(without) + 1
    check_every_byte_accounted_for(damaged + bytes(reserved))


def test_two_bit_flips_in_the_length_and_its_check_are_always_detected() -> None:
    # The length and its CRC-32 form a 64-bit codeword; the format's promise is that
    # no change of up to three bits in it passes (exhaustive: 41,728 patterns).
    record = bytearray(encode_record(b'{"event":"x"}'))
    field = SETTLED_FLAG_OFFSET + 1
    codeword = int.from_bytes(record[field : field + 8], "little")
    for count in (1, 2, 3):
        for bits in itertools.combinations(range(64), count):
            changed = codeword
            for bit in bits:
                changed ^= 1 << bit
            damaged = bytes(record[:field]) + changed.to_bytes(8, "little") + bytes(record[field + 8 :])
            found, damages = scan(FILE_HEADER + damaged)
            assert found == [], bits
            assert [damage.kind for damage in damages] == [DamageKind.BAD_LENGTH], bits


@pytest.mark.parametrize(
    ("name", "edit", "kind"),
    [
        (
            "length too large",
            lambda record: record[:5] + struct.pack("<I", MAX_RECORD_DATA + 1) + record[9:],
            DamageKind.BAD_LENGTH,
        ),
        ("checksum", lambda record: record[:13] + b"\0\0\0\0" + record[17:], DamageKind.BAD_CHECKSUM),
        ("header only", lambda record: record[: RECORD_HEADER_SIZE - 1], DamageKind.TRUNCATED),
        ("magic", lambda record: b"x" + record[1:], DamageKind.GARBAGE),
    ],
)
def test_each_kind_of_damage_is_named(name: str, edit: Callable[[bytes], bytes], kind: DamageKind) -> None:
    record = encode_record(b'{"event":"signed up"}')
    found, damages = scan(FILE_HEADER + edit(record) + encode_record(b"next"))
    assert [record.data for record in found] == [b"next"]
    assert [damage.kind for damage in damages] == [kind], name
    assert damages[0].offset == FILE_HEADER_SIZE


def test_a_wrong_length_that_passes_its_check_fails_the_checksum() -> None:
    # A forged header: a shorter length with its matching check, over the original data.
    record = encode_record(b'{"event":"signed up"}')
    length = struct.pack("<I", 5)
    forged = record[:5] + length + struct.pack("<I", zlib.crc32(length)) + record[13:]
    found, damages = scan(FILE_HEADER + forged)
    assert found == []
    assert damages[0].kind is DamageKind.BAD_CHECKSUM


def test_a_copied_record_is_indistinguishable_and_is_yielded() -> None:
    # What no checksum can tell: a faithful copy of a record's bytes is a record.
    record = encode_record(b'{"event":"a"}')
    found, damages = scan(FILE_HEADER + record + record)
    assert [item.data for item in found] == [b'{"event":"a"}'] * 2
    assert damages == []


def test_a_damaged_file_header_still_yields_its_records() -> None:
    content, _ = build_file([(b"one", False), (b"two", True)])
    for position in range(FILE_HEADER_SIZE):
        for bit in range(8):
            damaged = bytearray(content)
            damaged[position] ^= 1 << bit
            found, damages = scan(bytes(damaged))
            assert [(record.data, record.settled) for record in found] == [(b"one", False), (b"two", True)]
            assert damages == [RecordDamage(offset=0, length=FILE_HEADER_SIZE, kind=DamageKind.BAD_HEADER)]


def test_a_foreign_file_is_one_bad_header_damage() -> None:
    text = b'{"not": "a spool file"}\n' * 10
    assert scan(text) == ([], [RecordDamage(offset=0, length=len(text), kind=DamageKind.BAD_HEADER)])


def test_a_newer_version_is_not_read() -> None:
    content, _ = build_file([(b"one", False)])
    newer = content[:6] + bytes([2, 2 ^ 0xFF]) + content[8:]
    assert scan(newer) == ([], [RecordDamage(offset=0, length=len(newer), kind=DamageKind.UNSUPPORTED_VERSION)])


def test_an_empty_file_and_a_torn_header() -> None:
    assert scan(b"") == ([], [])
    assert scan(FILE_HEADER) == ([], [])
    assert scan(FILE_HEADER[:5]) == ([], [RecordDamage(offset=0, length=5, kind=DamageKind.TRUNCATED)])


def test_records_are_bounded() -> None:
    assert len(encode_record(b"x" * MAX_RECORD_DATA)) == RECORD_HEADER_SIZE + MAX_RECORD_DATA
    with pytest.raises(ValueError, match="at most"):
        encode_record(b"x" * (MAX_RECORD_DATA + 1))


def test_a_settled_record_differs_only_in_its_flag() -> None:
    record = bytearray(encode_record(b"data"))
    assert record[SETTLED_FLAG_OFFSET] == UNSETTLED
    record[SETTLED_FLAG_OFFSET] = SETTLED
    found, damages = scan(FILE_HEADER + bytes(record))
    assert found == [ScannedRecord(offset=FILE_HEADER_SIZE, data=b"data", settled=True)]
    assert damages == []


# The ledger, against a model: a dict of file -> (set of pending offsets, sealed).
ledger_steps = st.lists(
    st.tuples(
        st.sampled_from(["add_file", "add_record", "settle", "seal", "forget"]),
        st.sampled_from(["a", "b", "c"]),
        st.integers(min_value=0, max_value=5),
    ),
    max_size=60,
)


@given(ledger_steps)
def test_the_ledger_tracks_pending_records_and_deletable_files(steps: list[tuple[str, str, int]]) -> None:
    ledger = SpoolLedger()
    model: dict[str, tuple[set[int], bool]] = {}
    sizes: dict[str, int] = {}
    for action, name, offset in steps:
        ref = SpoolRef(file=name, offset=offset)
        if action == "add_file":
            if name in model:
                with pytest.raises(ValueError, match="already tracked"):
                    ledger.add_file(name, size=8)
                continue
            sealed = offset % 2 == 1
            ledger.add_file(name, size=8, sealed=sealed)
            model[name] = (set(), sealed)
            sizes[name] = 8
        elif action == "add_record":
            if name not in model:
                with pytest.raises(KeyError):
                    ledger.add_record(ref, 10)
                continue
            ledger.add_record(ref, 10)
            model[name][0].add(offset)
            sizes[name] += 10
        elif action == "settle":
            was_pending = name in model and offset in model[name][0]
            assert ledger.settle(ref) is was_pending
            if was_pending:
                model[name][0].discard(offset)
        elif action == "seal":
            ledger.seal(name)
            if name in model:
                model[name] = (model[name][0], True)
        else:
            held = len(model[name][0]) if name in model else 0
            assert ledger.forget(name) == held
            model.pop(name, None)
            sizes.pop(name, None)
        assert ledger.pending == sum(len(pending) for pending, _ in model.values())
        assert ledger.bytes == sum(sizes.values())
        assert set(ledger.files) == set(model)
        for file in "abc":
            pending, sealed = model.get(file, (set(), False))
            assert ledger.deletable(file) is (file in model and sealed and not pending)
            assert ledger.pending_in(file) == len(pending)
            assert ledger.size_of(file) == sizes.get(file, 0)


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(min_value=0, max_value=5)),
        max_size=12,
    ),
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "gone"]), st.integers(min_value=0, max_value=5)),
        max_size=12,
    ),
)
def test_settling_a_batch_is_settling_each_record_in_turn(
    records: list[tuple[str, int]], batch: list[tuple[str, int]]
) -> None:
    def ledger_holding(records: list[tuple[str, int]]) -> SpoolLedger:
        ledger = SpoolLedger()
        for name in "abc":
            ledger.add_file(name, size=8)
        for name, offset in records:
            ledger.add_record(SpoolRef(file=name, offset=offset), 10)
        return ledger

    refs = [SpoolRef(file=name, offset=offset) for name, offset in batch]
    in_turn = ledger_holding(records)
    expected: dict[str, list[int]] = {}
    for ref in refs:
        if in_turn.settle(ref):
            expected.setdefault(ref.file, []).append(ref.offset)
    at_once = ledger_holding(records)
    settled = at_once.settle_all(iter(refs))  # any iterable
    assert settled == expected
    assert at_once.pending == in_turn.pending
    assert all(at_once.pending_in(name) == in_turn.pending_in(name) for name in "abc")


@pytest.mark.parametrize("write", [write_record, _write_record], ids=["active", "python"])
@given(
    data=st.binary(max_size=200),
    size=st.integers(min_value=0, max_value=300),
    offset=st.integers(min_value=-5, max_value=300),
)
def test_write_record_writes_what_encode_record_makes_or_nothing(
    write: Callable[[bytearray, int, bytes], int], data: bytes, size: int, offset: int
) -> None:
    buffer = bytearray(b"\x5a" * size)
    record = encode_record(data)
    end = write(buffer, offset, data)
    if offset >= 0 and offset + len(record) <= size:
        assert end == offset + len(record)
        assert bytes(buffer) == b"\x5a" * offset + record + b"\x5a" * (size - end)
    else:
        assert end == -1
        assert bytes(buffer) == b"\x5a" * size


@pytest.mark.parametrize("write", [write_record, _write_record], ids=["active", "python"])
@pytest.mark.parametrize("offset", [0, 7])
def test_write_record_fills_the_buffer_to_its_last_byte(
    write: Callable[[bytearray, int, bytes], int], offset: int
) -> None:
    # A record that ends exactly at the end of the map fits; one byte less and nothing is written.
    record = encode_record(b'{"n":1}')
    exact = bytearray(offset + len(record))
    assert write(exact, offset, b'{"n":1}') == len(exact)
    assert bytes(exact[offset:]) == record
    short = bytearray(offset + len(record) - 1)
    assert write(short, offset, b'{"n":1}') == -1
    assert bytes(short) == bytes(len(short))


def test_write_record_checksums_every_length_as_zlib_does() -> None:
    # The C path folds 64 and 16 bytes at a time and finishes byte by byte: every length up to a few
    # folds, and some far past them, against encode_record (zlib.crc32).
    noise = random.Random(18)
    lengths = [*range(300), 1023, 1024, 1025, 4095, 4096, 65_551, MAX_RECORD_DATA]
    for length in lengths:
        data = noise.randbytes(length)
        buffer = bytearray(RECORD_HEADER_SIZE + length)
        assert write_record(buffer, 0, data) == len(buffer)
        assert bytes(buffer) == encode_record(data), length


@pytest.mark.parametrize("write", [write_record, _write_record], ids=["active", "python"])
def test_write_record_refuses_data_past_the_limit_and_reads_any_bytes_like(
    write: Callable[[bytearray, int, bytes], int],
) -> None:
    buffer = bytearray(MAX_RECORD_DATA + 2 * RECORD_HEADER_SIZE)
    with pytest.raises(ValueError, match="at most"):
        write(buffer, 0, b"x" * (MAX_RECORD_DATA + 1))
    assert write(buffer, 0, b"x" * MAX_RECORD_DATA) == RECORD_HEADER_SIZE + MAX_RECORD_DATA
    assert write(buffer, 0, memoryview(b"{}")) == RECORD_HEADER_SIZE + 2  # type: ignore[arg-type]
    assert bytes(buffer[: RECORD_HEADER_SIZE + 2]) == encode_record(b"{}")


@pytest.mark.parametrize("flag", [UNSETTLED, SETTLED])
def test_a_flipped_flag_bit_is_damage_and_reads_unsettled(flag: int) -> None:
    for bit in range(8):
        record = bytearray(encode_record(b"data"))
        record[SETTLED_FLAG_OFFSET] = flag ^ (1 << bit)
        found, damages = scan(FILE_HEADER + bytes(record))
        assert found == [ScannedRecord(offset=FILE_HEADER_SIZE, data=b"data", settled=False)]
        offset = FILE_HEADER_SIZE + SETTLED_FLAG_OFFSET
        assert damages == [RecordDamage(offset=offset, length=1, kind=DamageKind.BAD_FLAG)]


@given(
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=20),
    settled=st.data(),
    cut=st.integers(0, 40),
)
def test_settlement_records_settle_exactly_the_records_they_name(
    sizes: list[int], settled: st.DataObject, cut: int
) -> None:
    content = bytearray(FILE_HEADER)
    offsets = []
    for index, size in enumerate(sizes):
        offsets.append(len(content))
        content += encode_record(b"{" + bytes([0x61 + index % 26]) * size)
    chosen = settled.draw(st.lists(st.sampled_from(offsets), unique=True), label="settled offsets")
    settlement = encode_settlement(chosen)
    whole = bytes(content + settlement)
    pending, damage, count = pending_records(whole)
    assert [record.offset for record in pending] == [offset for offset in offsets if offset not in chosen]
    assert (damage, count) == ([], len(chosen))
    # A settlement cut short settles nothing: every record is still there to deliver, none lost.
    cut %= len(settlement)  # a cut into the settlement only; the records before it stay whole
    if chosen and cut:
        pending, damage, count = pending_records(whole[: len(whole) - cut])
        assert [record.offset for record in pending] == offsets
        assert count == 0
        assert damage


def test_a_file_without_a_header_yields_the_records_it_starts_with() -> None:
    # A header lost whole (or never written): the records from byte 0 on are still read.
    first, second = encode_record(b"one"), encode_record(b"two")
    found, damages = scan(first + second)
    assert [(record.offset, record.data) for record in found] == [(0, b"one"), (len(first), b"two")]
    assert damages == [RecordDamage(offset=0, length=0, kind=DamageKind.BAD_HEADER)]


@pytest.mark.parametrize("stray", [b"x", b"\xff", b"\xffS"])
def test_a_record_right_after_a_stray_byte_is_found(stray: bytes) -> None:
    # The resync looks for the next record at the very next byte, with or without a header.
    record = encode_record(b"kept")
    found, damages = scan(stray + record)
    assert found == [ScannedRecord(offset=len(stray), data=b"kept", settled=False)]
    assert damages == [RecordDamage(offset=0, length=len(stray), kind=DamageKind.BAD_HEADER)]
    found, damages = scan(FILE_HEADER + stray + record)
    assert found == [ScannedRecord(offset=FILE_HEADER_SIZE + len(stray), data=b"kept", settled=False)]
    assert damages == [RecordDamage(offset=FILE_HEADER_SIZE, length=len(stray), kind=DamageKind.GARBAGE)]


def test_consecutive_damaged_records_are_skipped_up_to_the_first_intact_one() -> None:
    # The resync passes over every damaged candidate, and stops at the first intact record,
    # not a later one.
    def damaged(data: bytes) -> bytes:
        return encode_record(data)[:-1] + b"?"  # checksum mismatch

    bad = damaged(b"bad one") + damaged(b"bad two") + damaged(b"bad three")
    good = encode_record(b"good one") + encode_record(b"good two")
    found, damages = scan(FILE_HEADER + bad + good)
    assert [(record.offset, record.data) for record in found] == [
        (FILE_HEADER_SIZE + len(bad), b"good one"),
        (FILE_HEADER_SIZE + len(bad) + RECORD_HEADER_SIZE + len(b"good one"), b"good two"),
    ]
    assert damages == [RecordDamage(offset=FILE_HEADER_SIZE, length=len(bad), kind=DamageKind.BAD_CHECKSUM)]


def test_a_resync_never_reaches_back_into_the_record_before() -> None:
    # A record whose data ends in the magic's first byte, followed by the rest of a well-formed
    # record: those bytes, read from one byte back, are a record that overlaps the first one.
    # Every byte belongs to one item, so they are damage, not a record.
    first = encode_record(b"ends in \xff")
    overlapping = encode_record(b"forged")
    last = encode_record(b"last")
    content = FILE_HEADER + first + overlapping[1:] + last
    found, damages = scan(content)
    assert [record.data for record in found] == [b"ends in \xff", b"last"]
    assert damages == [
        RecordDamage(offset=FILE_HEADER_SIZE + len(first), length=len(overlapping) - 1, kind=DamageKind.GARBAGE)
    ]
    check_every_byte_accounted_for(content)


def test_a_record_of_the_largest_length_is_read() -> None:
    data = bytes(range(256)) * (MAX_RECORD_DATA // 256)
    found, damages = scan(FILE_HEADER + encode_record(data))
    assert [record.data for record in found] == [data]
    assert damages == []


def test_a_short_header_holding_the_magic_is_not_a_version() -> None:
    # Seven bytes: the magic and one more. Too short to hold a version and its complement,
    # even when that byte would pass for one against a padding byte.
    for last in (0x00, 0x20, 0xDF, 0xFF, FILE_HEADER[6]):
        content = FILE_HEADER[:6] + bytes([last])
        kind = DamageKind.TRUNCATED if content == FILE_HEADER[:7] else DamageKind.BAD_HEADER
        assert scan(content) == ([], [RecordDamage(offset=0, length=7, kind=kind)]), last


@pytest.mark.parametrize("tail", [1, 2, 3])
def test_a_settlement_with_a_partial_offset_ignores_the_partial_bytes(tail: int) -> None:
    # Only a forged or foreign settlement has a body that is not whole offsets: its whole
    # offsets settle their records; the rest is ignored, not an error.
    first = FILE_HEADER_SIZE
    second = first + RECORD_HEADER_SIZE + 3
    content = FILE_HEADER + encode_record(b"one") + encode_record(b"two")
    body = SETTLEMENT_MARK + struct.pack("<I", second) + bytes([first]) * tail
    pending, damage, count = pending_records(content + encode_record(body, settled=True))
    assert [record.offset for record in pending] == [first]
    assert (damage, count) == ([], 1)


def test_records_end_follows_the_last_record_or_damage() -> None:
    content, originals = build_file([(b"one", False), (b"two", True)])
    assert records_end(content) == len(content) == originals[-1].end
    assert records_end(content + bytes(100)) == len(content)  # reserved space is not counted
    garbage = b"not a record"
    assert records_end(content + garbage) == len(content) + len(garbage)
    torn = encode_record(b"three")[:-2]
    assert records_end(content + torn) == len(content) + len(torn)
    flagged = bytearray(content)
    flagged[originals[-1].start + SETTLED_FLAG_OFFSET] = 0x42  # BAD_FLAG: its record still ends the file
    assert records_end(bytes(flagged)) == len(content)
    assert records_end(b"") == 0
    assert records_end(FILE_HEADER) == FILE_HEADER_SIZE
    assert records_end(FILE_HEADER + bytes(20)) == FILE_HEADER_SIZE
    assert records_end(FILE_HEADER[:5]) == 5


json_records = st.text(max_size=60).map(lambda text: json.dumps({"event": text}).encode())


@given(st.lists(json_records, max_size=4), json_records, st.data(), st.integers(min_value=0, max_value=300))
def test_a_record_cut_short_is_in_progress_and_a_whole_damaged_one_is_not(
    before: list[bytes], last: bytes, data: st.DataObject, reserved: int
) -> None:
    content, originals = build_file([(record, False) for record in [*before, last]])
    start = originals[-1].start
    cut = data.draw(st.integers(min_value=start + 1, max_value=len(content) - 1))
    # A writer copying the record front to back: its first bytes, then zeros (reserved) or the end of the file.
    assert record_in_progress(content[:cut] + bytes(reserved), start)
    assert not record_in_progress(content + bytes(reserved), start)  # whole and intact
    assert not record_in_progress(content + bytes(reserved), len(content))  # nothing written there
    # Whole, with a bit flipped in its length, its checksum or its data: damage, not a record being written
    # (unless the flip made a zero byte, which is what a byte not yet written looks like).
    position = data.draw(st.integers(min_value=start + SETTLED_FLAG_OFFSET + 1, max_value=len(content) - 1))
    flipped = bytearray(content)
    flipped[position] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
    assume(flipped[position] != 0)
    assert not record_in_progress(bytes(flipped) + bytes(reserved), start)
    # A stretch with records after it is never the record being written.
    if len(originals) > 1:
        assert not record_in_progress(content, originals[0].start)


@given(json_records, st.data())
def test_a_record_copied_in_any_order_is_in_progress_until_whole(record: bytes, data: st.DataObject) -> None:
    # A copy (memcpy) may store the record's 16-byte blocks in any order; a kill leaves some of them zero.
    content, (original,) = build_file([(record, False)])
    blocks = range(original.start, original.end, 16)
    missing = data.draw(st.sets(st.sampled_from(list(blocks)), min_size=1, max_size=len(blocks) - 1))
    torn = bytearray(content + bytes(4096))
    for block in missing:
        torn[block : min(block + 16, original.end)] = bytes(min(16, original.end - block))
    assert record_in_progress(bytes(torn), original.start)


def test_a_whole_record_with_no_data_is_not_in_progress() -> None:
    content = FILE_HEADER + encode_record(b"")
    assert not record_in_progress(content + bytes(100), FILE_HEADER_SIZE)
    assert record_in_progress(content[:-1] + bytes(100), FILE_HEADER_SIZE)  # its header cut short
