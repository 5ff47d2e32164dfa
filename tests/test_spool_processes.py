"""The spool across real processes: SIGKILL mid-stream, two writers, fork, and racing adopters.

Child processes run tests/spool_child.py and report each fact on a pipe the
moment it is true (an append returned, an acknowledgement returned, a record
adopted). The test reads those reports with timeouts and never sleeps to
synchronise; processes are put in step with words on their stdin.
"""

from __future__ import annotations

import json
import queue
import random
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from segment_core.spool import record_in_progress
from segment_runtimes._spool import SPOOL_SUFFIX, Spool
from segment_runtimes._spool_inspect import inspect_spool

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60.0


class Child:
    """A tests.spool_child process whose stdout lines arrive on a queue, read by a thread."""

    def __init__(self, *arguments: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.spool_child", *arguments],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self) -> str:
        line = self.lines.get(timeout=TIMEOUT)
        assert line is not None, f"the child exited with {self.process.wait(timeout=TIMEOUT)}"
        return line

    def expect(self, word: str) -> list[str]:
        """The lines before ``word``, once it arrives."""
        before = []
        while (line := self.next_line()) != word:
            before.append(line)
        return before

    def send(self, word: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(word + "\n")
        self.process.stdin.flush()

    def rest(self) -> list[str]:
        """Every line still to come, until the process closes its stdout."""
        lines = []
        while (line := self.lines.get(timeout=TIMEOUT)) is not None:
            lines.append(line)
        return lines

    def finish(self) -> int:
        self.reader.join(timeout=TIMEOUT)
        return self.process.wait(timeout=TIMEOUT)

    def kill(self) -> None:
        self.process.kill()  # SIGKILL


def recover_all(directory: Path) -> dict[tuple[str, int], bytes]:
    """What a fresh process would deliver: every record adopted, by (file, offset); then settled."""
    with Spool(directory, max_bytes=1 << 30) as spool:
        recovered = list(spool.recover())
        spool.acknowledge(ref for ref, _ in recovered)
        return {(ref.file, ref.offset): data for ref, data in recovered}


@pytest.mark.parametrize("fsync", ["never", "interval", "always"])
@pytest.mark.parametrize("round_", range(2))
def test_every_record_whose_append_returned_survives_sigkill(tmp_path: Path, fsync: str, round_: int) -> None:
    rng = random.Random(f"{fsync}-{round_}")
    child = Child("append-loop", str(tmp_path), fsync, str(round_))
    appended: dict[tuple[str, int], int] = {}
    acknowledging: set[tuple[str, int]] = set()  # the child was about to acknowledge them
    acknowledged: set[tuple[str, int]] = set()  # and it had

    def take(line: str) -> None:
        fields = line.split()
        if fields[0] == "A":
            appended[(fields[2], int(fields[3]))] = int(fields[1])
        else:
            (acknowledging if fields[0] == "k" else acknowledged).add((fields[1], int(fields[2])))

    kill_after = rng.randrange(1, 3000)
    while len(appended) < kill_after:
        take(child.next_line())
    child.kill()
    for line in child.rest():  # what it reported between our last read and its death
        take(line)
    assert child.finish() == -9

    # At most the record being written at the kill is torn, and only at the end of a file's records:
    # cut short (pwrite), or followed by the zeros its writer had reserved (a copy into the map).
    report = inspect_spool(tmp_path)
    assert report.damaged <= 1
    for file in report.files:
        for damage in file.damaged:
            assert damage.offset + damage.length == file.bytes
            assert record_in_progress(Path(file.path).read_bytes(), damage.offset)

    recovered = recover_all(tmp_path)
    expected = {ref for ref in appended if ref not in acknowledging}
    missing = expected - set(recovered)
    assert not missing, f"{len(missing)} of {len(expected)} records whose append returned were lost"
    assert not (set(recovered) & acknowledged), "an acknowledged record came back"
    # May come back: the record whose report the kill cut off, and one being acknowledged.
    assert len(set(recovered) - expected) <= 2
    assert len(set(recovered) - expected - (acknowledging - acknowledged)) <= 1
    for ref in expected:
        assert json.loads(recovered[ref])["n"] == appended[ref]
    assert [path for path in tmp_path.iterdir() if path.name.endswith(SPOOL_SUFFIX)] == []


def test_two_processes_on_one_directory_write_their_own_files(tmp_path: Path) -> None:
    children = [Child("append", str(tmp_path), "300") for _ in range(2)]
    for child in children:
        child.expect("ready")
    for child in children:
        child.send("go")
    files = []
    for child in children:
        lines = child.expect("appended")
        assert len(lines) == 300
        files.append({line.split()[2] for line in lines})
    pids = [child.process.pid for child in children]
    assert not files[0] & files[1]
    for pid, own in zip(pids, files, strict=True):
        assert all(f"-{pid}-" in name for name in own)
    # Both write at once and their files are live: neither can be adopted by a third process.
    report = inspect_spool(tmp_path)
    assert set(report.live_files) == {str(tmp_path / name) for name in files[0] | files[1]}
    assert recover_all(tmp_path) == {}
    for child in children:
        child.send("close")
        assert child.finish() == 0
    recovered = recover_all(tmp_path)
    assert len(recovered) == 600
    assert Counter(json.loads(data)["messageId"].split("-")[0] for data in recovered.values()) == Counter(
        {str(pid): 300 for pid in pids}
    )


def test_a_child_after_fork_writes_its_own_file_and_leaves_the_parent_locked(tmp_path: Path) -> None:
    child = Child("fork", str(tmp_path))
    result = json.loads(child.next_line())
    assert child.finish() == 0
    parent, forked = result["parent"], result["child"]
    assert forked["file"] != parent["before"][0]
    assert f"-{forked['pid']}-" in forked["file"]
    assert forked["left"] == 1
    assert parent["after"][0] == parent["before"][0]  # the parent goes on in its own file
    assert result["parent_still_locked"]
    recovered = recover_all(tmp_path)
    assert sorted(json.loads(data)["n"] for data in recovered.values()) == [0, 1, 2]
    # Nothing was torn by two processes writing one file.
    assert inspect_spool(tmp_path).damaged == 0


def test_racing_processes_adopt_each_dead_record_exactly_once(tmp_path: Path) -> None:
    dead = Child("append", str(tmp_path), "400")
    dead.expect("ready")
    dead.send("go")
    written = {(line.split()[2], int(line.split()[3])) for line in dead.expect("appended")}
    dead.kill()
    dead.finish()
    assert len({file for file, _ in written}) > 5  # many files to fight over

    racers = [Child("recover", str(tmp_path)) for _ in range(4)]
    for racer in racers:
        racer.expect("ready")
    for racer in racers:
        racer.send("go")
    adopted: list[tuple[str, int]] = []
    for racer in racers:
        adopted += [(line.split()[1], int(line.split()[2])) for line in racer.expect("done")]
    duplicates = [ref for ref, count in Counter(adopted).items() if count > 1]
    assert not duplicates, f"adopted more than once: {duplicates[:5]}"
    assert set(adopted) == written
    for racer in racers:
        racer.send("exit")
        assert racer.finish() == 0
