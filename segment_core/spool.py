"""The spool's record format and bookkeeping, for the runtimes (public module).

Re-exports ``segment_core._spool_records``: see its docstring for the file
layout and exactly what a scan of a damaged file yields. The runtime
(``segment_runtimes._spool``) does the file I/O around these pure pieces.
"""

from ._spool_records import (
    FILE_HEADER,
    FILE_HEADER_SIZE,
    FORMAT_VERSION,
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
    WritableBuffer,
    encode_record,
    encode_settlement,
    pending_records,
    record_in_progress,
    records_end,
    scan_records,
    write_record,
)

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
