"""The core reads no timezone: an HTTP-date without a zone means UTC, whatever the host's zone.

A date written without a zone (RFC 5322 "-0000", or asctime's form) comes out of
``email.utils`` as a naive datetime, and a naive datetime's ``timestamp()`` asks
the host for its zone. On a machine that runs in UTC that slip is invisible, so
each test here runs under several host zones (``TZ`` plus ``time.tzset`` for the
test's duration): the retry policy, a paused engine and the token manager's
clock skew and rate-limit wait must not move with the host. One more test runs
the existing date tests of those modules again under New York's zone, in a
subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import pytest

from segment_core import Response, Retrying
from segment_core._oauth_tokens import TokenManager, TokenState
from segment_core._retry_policy import http_date_seconds, parse_retry_after

from .test_engine_support import WALL0, Driver
from .test_oauth_core import make_manager, ok

if not hasattr(time, "tzset"):  # pragma: no cover - every POSIX system has it
    pytest.skip("changing the host's timezone needs time.tzset", allow_module_level=True)

# POSIX TZ strings, so no timezone database is needed: (TZ, the offset east of UTC at WALL0 in seconds).
HOST_ZONES = {
    "utc": ("UTC0", 0),
    "new-york": ("EST5EDT,M3.2.0,M11.1.0", -5 * 3600),  # WALL0 is in November: standard time
    "kolkata": ("IST-5:30", 5 * 3600 + 1800),
}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=list(HOST_ZONES), ids=list(HOST_ZONES))
def host_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test with the host in this zone, and check the host really is in it."""
    tz, offset = HOST_ZONES[request.param]
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        assert time.localtime(WALL0).tm_gmtoff == offset, "the host's zone did not change"
        yield request.param
    finally:
        monkeypatch.undo()
        time.tzset()


def zoneless(wall: float) -> str:
    """An HTTP-date for ``wall`` written without a zone: ``... -0000`` (RFC 5322 section 3.3)."""
    return formatdate(wall, usegmt=True).replace("GMT", "-0000")


@pytest.mark.parametrize(
    ("text", "seconds_after_wall0"),
    [
        (zoneless(WALL0), 0.0),
        ("Tue Nov 14 22:13:20 2023", 0.0),  # asctime: no zone either
        (formatdate(WALL0, usegmt=True), 0.0),
        ("Tue, 14 Nov 2023 23:13:20 +0100", 0.0),
        ("Tue, 14 Nov 2023 17:13:20 -0500", 0.0),
        (zoneless(WALL0 + 90), 90.0),
    ],
    ids=["minus-0000", "asctime", "gmt", "plus-0100", "minus-0500", "minus-0000-later"],
)
def test_an_http_date_means_the_same_instant_in_every_host_zone(
    host_zone: str, text: str, seconds_after_wall0: float
) -> None:
    assert http_date_seconds(text) == WALL0 + seconds_after_wall0


def test_a_zoneless_retry_after_is_read_as_utc(host_zone: str) -> None:
    assert parse_retry_after(zoneless(WALL0 + 120), wall=WALL0) == 120.0
    assert parse_retry_after(zoneless(WALL0 + 120), wall=WALL0 + 100) == 20.0
    # Read as local time, a date in the past (Kolkata) or five hours ahead (New York) would change this.
    assert parse_retry_after(zoneless(WALL0 - 60), wall=WALL0) is None


def test_a_zoneless_retry_after_pauses_the_engine_for_as_long_in_every_zone(host_zone: str) -> None:
    driver = Driver()
    driver.add(1)
    (request,) = driver.flush()
    driver.at(2.0)
    driver.respond(request, 503, headers={"retry-after": zoneless(driver.wall + 30)}, body=b"{}")
    (retrying,) = driver.retrying
    assert isinstance(retrying, Retrying)
    assert (retrying.paused, retrying.delay) == (True, 30.0)
    assert driver.engine.next_deadline() == 32.0
    assert driver.poll(31.999) == []
    assert len(driver.poll(32.0)) == 1


def test_a_zoneless_date_gives_the_token_manager_the_same_skew_in_every_zone(host_zone: str) -> None:
    manager: TokenManager = make_manager()
    assert manager.poll(now=0.0, wall=WALL0) is not None
    manager.receive_response(ok(date=zoneless(WALL0 + 100 - 40)), now=100.0, wall=WALL0 + 100)
    assert manager.clock_skew == 40


def test_a_zoneless_token_retry_after_waits_as_long_in_every_zone(host_zone: str) -> None:
    manager: TokenManager = make_manager()
    assert manager.poll(now=0.0, wall=WALL0) is not None
    # The Date is zoned: a zoneless one would shift the skew by as much as the wait, and hide it.
    headers = {"date": formatdate(WALL0 - 10, usegmt=True), "retry-after": zoneless(WALL0 - 10 + 25)}
    manager.receive_response(Response(status=429, headers=headers), now=10.0, wall=WALL0)
    assert manager.state is TokenState.BACKING_OFF
    assert manager.next_deadline() == 35.0


def test_the_date_tests_of_the_core_pass_under_new_york_time() -> None:
    """The retry policy's, the engine's and the token manager's own date tests, in a host that is not in UTC."""
    env = {**os.environ, "TZ": "EST5EDT,M3.2.0,M11.1.0", "HYPOTHESIS_PROFILE": "ci"}
    selection = "retry_after or date or skew or 429"
    files = ["tests/test_retry.py", "tests/test_engine.py", "tests/test_oauth_core.py"]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", selection, *files]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary
    assert "skipped" not in summary
    assert "deselected" in summary  # the selection is a part of those files, not none of them
