"""The host's timezone reaches the core only as the offset a runtime passes in.

Each check runs in fresh interpreters under different ``TZ`` settings. With the
same offset passed in, building messages (naive, aware and absent timestamps,
dates and datetimes in properties) and a whole simulation give byte-identical
results under every zone: nothing in segment_core reads the zone itself. And a
real client, which passes the host's offset, reads naive timestamps exactly as
segment-analytics-python 2.4 does under a zone far from UTC.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import segment_core

ROOT = Path(segment_core.__file__).parent.parent
ZONES = ["UTC", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"]

if not hasattr(time, "tzset"):
    pytest.skip("TZ in the environment needs time.tzset (POSIX)", allow_module_level=True)

BUILD_EVERYTHING = """
import json
from datetime import date, datetime, timedelta, timezone
from segment_core import EngineConfig, build_message
from segment_core.testing import Simulator, VirtualClock

WALL = 1_790_000_000.123
OFFSET = -5 * 3600  # what the runtime would pass in: the same under every TZ
local_now = datetime(1970, 1, 1) + timedelta(seconds=WALL + OFFSET)
timestamps = [
    None,
    local_now,
    local_now - timedelta(seconds=4),
    local_now - timedelta(seconds=6),
    local_now + timedelta(hours=3),
    datetime(2001, 2, 3, 4, 5, 6),
    datetime(2001, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=9))),
    datetime(2001, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(seconds=561))),  # sent as UTC, never as local time
]
out = []
for timestamp in timestamps:
    built = build_message(
        "track", wall=WALL, new_message_id=lambda: "id", local_utc_offset=lambda t: OFFSET,
        user_id="u", event="E", timestamp=timestamp,
        properties={"day": date(2001, 2, 3), "naive": datetime(2001, 2, 3, 4, 5, 6), "at": local_now},
    )
    out.append(built.data.decode())
sim = Simulator(EngineConfig(write_key="k"), clock=VirtualClock(wall=WALL, utc_offset=OFFSET), seed=3)
client = sim.client
for timestamp in timestamps:
    client.identify("u", {"n": 1}, timestamp=timestamp)
client.flush()
out.append(json.dumps(sim.delivered_messages(), sort_keys=True))
print(json.dumps(out))
"""

AGAINST_THE_REFERENCE = """
import json
from datetime import datetime, timedelta
from segment.analytics.client import Client as Reference
from segment_runtimes.threaded import Client

ours, reference = Client("k", send=False), Reference("k", send=False)
pairs = []
for delta in (0.0, -2.0, 3600.0, 86400.0 * 200, -10.0, -86400.0, -86400.0 * 200):
    naive = datetime.now() + timedelta(seconds=delta)
    pairs.append(
        (ours.identify("u", timestamp=naive)[1]["timestamp"], reference.identify("u", timestamp=naive)[1]["timestamp"])
    )
print(json.dumps(pairs))
"""


def run_under(zone: str, code: str) -> str:
    env = {**os.environ, "TZ": zone}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_same_offset_gives_the_same_bytes_under_every_zone() -> None:
    outputs = {zone: run_under(zone, BUILD_EVERYTHING) for zone in ZONES}
    assert len(set(outputs.values())) == 1, outputs
    built = json.loads(outputs["UTC"])
    # The offset passed in was used: local now is read as -05:00, an old naive time as UTC.
    assert '"timestamp":"2026-09-21T09:13:20.123-05:00"' in built[1]
    assert '"timestamp":"2001-02-03T04:05:06.000+00:00"' in built[5]
    assert '"timestamp":"2001-02-03T03:55:45.000+00:00"' in built[7]


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata"])
def test_a_client_reads_naive_timestamps_as_the_reference_does(zone: str) -> None:
    pairs = json.loads(run_under(zone, AGAINST_THE_REFERENCE))
    for ours, reference in pairs:
        assert ours == reference
    assert {text[-6:] for text, _ in pairs} >= {"+00:00"}
    assert len({text[-6:] for text, _ in pairs}) >= 2, "some were read as local time, some as UTC"
