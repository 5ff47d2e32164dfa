"""The collector against segment-analytics-python 2.4, in-process and from the CLI.

The CLI test is the end-to-end check: a collector started as ``python -m segment_runtimes
collector`` in a subprocess receives 300 gzip'd events from the reference client, is stopped with
SIGTERM, and the SQLite file it leaves holds every messageId.
"""

from __future__ import annotations

import selectors
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from segment.analytics import Client as ReferenceClient

from segment_runtimes.__main__ import main
from segment_runtimes.collector import Collector, Faults, OAuthServerSettings

from .keys import rsa_pems

REPO = Path(__file__).resolve().parent.parent
WRITE_KEY = "reference-write-key"


def send_events(client: Any, count: int, prefix: str = "event") -> list[str]:
    """Track ``count`` events through the reference client; returns their messageIds."""
    ids = []
    for index in range(count):
        ok, sent = client.track(user_id=f"user-{index % 7}", event=f"{prefix} {index}", properties={"i": index})
        assert ok
        ids.append(sent["messageId"])
    return ids


@pytest.fixture
def reference_client(collector: Collector) -> Iterator[Any]:
    client = ReferenceClient(WRITE_KEY, host=collector.url, gzip=True, upload_interval=0.05, max_retries=3)
    yield client
    client.shutdown()


def test_reference_client_delivers_everything(collector: Collector, reference_client: Any) -> None:
    ids = send_events(reference_client, 250)
    reference_client.flush()
    assert collector.wait_for(250, timeout=10.0)
    assert collector.message_ids() == ids  # one consumer thread: order is kept
    assert collector.duplicate_count() == 0
    first = collector.messages()[0]
    assert first.type == "track"
    assert first.event_or_name == "event 0"
    assert first.json["context"]["library"]["name"] == "analytics-python"
    assert first.sent_at is not None


def test_reference_client_survives_injected_faults() -> None:
    faults = Faults(rate=0.3, seed=3, kinds=["500", "503", "429", "drop", "lose_reply", "latency"], retry_after=0)
    with Collector(faults=faults) as collector:
        client = ReferenceClient(
            WRITE_KEY, host=collector.url, gzip=True, upload_size=20, upload_interval=0.05, max_retries=10
        )
        try:
            ids = send_events(client, 100, prefix="faulty")
            client.flush()
        finally:
            client.shutdown()
        assert collector.wait_for(100, timeout=10.0, unique=True)
        assert set(collector.message_ids()) == set(ids)
        assert sum(collector.stats.faults.values()) > 0


def test_reference_client_with_oauth() -> None:
    private, public = rsa_pems()
    with Collector(oauth=OAuthServerSettings(public, "kid-ref", "client-ref")) as collector:
        client = ReferenceClient(
            WRITE_KEY,
            host=collector.url,
            upload_interval=0.05,
            oauth_client_id="client-ref",
            oauth_client_key=private,
            oauth_key_id="kid-ref",
            oauth_auth_server=collector.url,
        )
        try:
            ids = send_events(client, 30, prefix="oauth")
            client.flush()
        finally:
            client.shutdown()
        assert collector.wait_for(30, timeout=10.0)
        assert collector.message_ids() == ids
        assert collector.tokens_issued == 1
        assert 401 not in collector.stats.rejected


# --- the CLI ---------------------------------------------------------------------------------


class CliCollector:
    """``python -m segment_runtimes collector`` in a subprocess, its stdout collected."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "segment_runtimes", "collector", "--port", "0", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.first_line = self._readline(timeout=30.0)
        assert self.first_line.startswith("listening on http://127.0.0.1:"), self.first_line
        self.url = self.first_line.split()[-1]
        # Printed right after the first line, maybe in the same read: no select for it.
        self.viewer_line = self.process.stdout.readline().strip()
        assert self.viewer_line == f"live event viewer: {self.url}/", self.viewer_line
        self.lines: list[str] = []
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _readline(self, timeout: float) -> str:
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                self.process.kill()
                pytest.fail(f"the collector printed nothing within {timeout} s")
        return self.process.stdout.readline().strip()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        self.lines.extend(line.strip() for line in self.process.stdout)

    def stop(self, signum: int) -> int:
        """Send ``signum``; return the exit status once stdout is fully read."""
        self.process.send_signal(signum)
        try:
            status = self.process.wait(timeout=15.0)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        self._drainer.join(timeout=5.0)
        return status


def test_cli_collector_keeps_everything_across_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite"
    cli = CliCollector("--db", str(db))
    try:
        page = urllib.request.urlopen(f"{cli.url}/", timeout=10.0)  # the viewer it printed is there
        assert page.status == 200
        assert b"/static/viewer.js" in page.read()
        client = ReferenceClient(WRITE_KEY, host=cli.url, gzip=True, upload_interval=0.05)
        try:
            ids = send_events(client, 300, prefix="cli")
            client.flush()
        finally:
            client.shutdown()
        assert cli.stop(signal.SIGTERM) == 0
    finally:
        if cli.process.poll() is None:
            cli.process.kill()
    with sqlite3.connect(db) as connection:
        stored = [row[0] for row in connection.execute("SELECT message_id FROM messages ORDER BY seq")]
    assert len(stored) == 300
    assert set(stored) == set(ids)
    printed = [line for line in cli.lines if line.startswith("track ")]
    assert len(printed) == 300
    assert printed[0].split()[1] == ids[0]
    assert "userId=user-0" in printed[0]
    assert printed[0].endswith("cli 0")


def test_cli_collector_stops_on_ctrl_c(tmp_path: Path) -> None:
    cli = CliCollector("--db", str(tmp_path / "events.sqlite"), "--write-key", "k1", "--write-key", "k2")
    try:
        client = ReferenceClient("k2", host=cli.url, upload_interval=0.05)
        try:
            send_events(client, 3)
            client.flush()
        finally:
            client.shutdown()
        started = time.monotonic()
        assert cli.stop(signal.SIGINT) == 0
        assert time.monotonic() - started < 10.0
    finally:
        if cli.process.poll() is None:
            cli.process.kill()
    assert len([line for line in cli.lines if line.startswith("track ")]) == 3


@pytest.mark.parametrize("args", [["--fault-kinds", "500,teapot"], ["--faults", "1.5"], ["--port", "x"]])
def test_cli_rejects_bad_flags(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["collector", *args])
    assert exited.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_cli_oauth_needs_its_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pem = tmp_path / "public.pem"
    pem.write_text("unused")
    assert main(["collector", "--port", "0", "--oauth-public-key", str(pem)]) == 2
    assert "--oauth-key-id" in capsys.readouterr().err


def test_cli_reports_a_busy_port(collector: Collector, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collector", "--port", str(collector.port)]) == 1
    assert "cannot listen" in capsys.readouterr().err


def test_cli_reports_a_bad_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("this is not SQLite " * 100)
    assert main(["collector", "--port", "0", "--db", str(not_a_db)]) == 1
    assert "cannot open" in capsys.readouterr().err
