"""A child process for tests/test_spool_processes.py: appends, adopts or forks on a spool, and says so.

Run as ``python -m tests.spool_child MODE DIRECTORY [ARGS]``. It reports on
stdout, one line per fact, flushed at once (each line is one write, so a line
is whole or absent when the process is killed), and waits for the test's word
on stdin where the test needs the processes in step:

- ``append-loop DIR FSYNC SEED``: append numbered records without end, and
  acknowledge some earlier ones; ``A n file offset`` after each append returned,
  ``k file offset`` before an acknowledgement and ``K file offset`` after it
  returned. The test kills it.
- ``append DIR COUNT``: wait for ``go``, append COUNT records (``A n file
  offset``), say ``appended``, wait for ``close``, close.
- ``recover DIR``: say ``ready``, wait for ``go``, adopt and report each
  record (``R file offset data``), say ``done``, wait for ``exit``, exit
  without acknowledging (closing leaves the records on disk).
- ``fork DIR``: append, fork, append in the child, and report as JSON what
  each process wrote and whether the parent still holds its lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import sys
import time
from collections.abc import Callable

from segment_runtimes._spool import Spool, SpoolRef

# Far more than any test lets it write before killing it; keeps the loop bounded.
APPEND_LOOP_LIMIT = 1_000_000


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def wait_for(word: str) -> None:
    line = sys.stdin.readline().strip()
    if line != word:
        raise SystemExit(f"expected {word!r} on stdin, got {line!r}")


def record(number: int) -> bytes:
    return json.dumps({"messageId": f"{os.getpid()}-{number}", "n": number, "pad": "x" * 500}).encode()


def append(spool: Spool, number: int) -> SpoolRef:
    ref = spool.append(record(number))
    if not isinstance(ref, SpoolRef):
        raise SystemExit(f"append refused: {ref}")
    return ref


def append_loop(directory: str, fsync: str, seed: str) -> None:
    rng = random.Random(seed)
    spool = Spool(directory, max_bytes=1 << 30, fsync=fsync, segment_bytes=64 << 10)
    unacknowledged: list[SpoolRef] = []
    for number in range(APPEND_LOOP_LIMIT):
        ref = append(spool, number)
        say(f"A {number} {ref.file} {ref.offset}")
        unacknowledged.append(ref)
        if rng.random() < 0.3:
            settled = unacknowledged.pop(rng.randrange(len(unacknowledged)))
            say(f"k {settled.file} {settled.offset}")
            spool.acknowledge([settled])
            say(f"K {settled.file} {settled.offset}")
        spool.maybe_sync(time.monotonic())


def append_some(directory: str, count: str) -> None:
    spool = Spool(directory, max_bytes=1 << 30, segment_bytes=16 << 10)
    say("ready")
    wait_for("go")
    for number in range(int(count)):
        ref = append(spool, number)
        say(f"A {number} {ref.file} {ref.offset}")
    say("appended")
    wait_for("close")
    spool.close()


def recover(directory: str) -> None:
    spool = Spool(directory, max_bytes=1 << 30)
    say("ready")
    wait_for("go")
    for ref, data in spool.recover():
        say(f"R {ref.file} {ref.offset} {data.decode()}")
    say("done")
    wait_for("exit")


def fork(directory: str) -> None:
    spool = Spool(directory, max_bytes=1 << 30)
    before = append(spool, 0)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        try:
            ref = append(spool, 1)
            report = {"file": ref.file, "offset": ref.offset, "pid": os.getpid(), "left": spool.close()}
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        child_report = json.loads(reader.read())
    os.waitpid(child, 0)
    after = append(spool, 2)
    # The child closed its copies of the parent's descriptors: the parent's lock must stand.
    probe = os.open(os.path.join(directory, before.file), os.O_RDONLY)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        still_locked = False
    except BlockingIOError:
        still_locked = True
    finally:
        os.close(probe)
    parent = {"before": [before.file, before.offset], "after": [after.file, after.offset], "pid": os.getpid()}
    say(json.dumps({"parent": parent, "child": child_report, "parent_still_locked": still_locked}))
    spool.close()


MODES: dict[str, Callable[..., None]] = {
    "append-loop": append_loop,
    "append": append_some,
    "recover": recover,
    "fork": fork,
}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
