"""The pytest plugin, run as a user runs it: generated test files under pytester.

Each case writes a test module that uses a fixture as the docs show, runs pytest
on it, and checks which tests passed and failed: a right assertion passes, a
wrong one fails (so the fixtures deliver what they say, not just anything).
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap

import pytest

from tests.test_extras import BLOCK_OPTIONAL

pytest_plugins = ["pytester"]


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    entry_points = importlib.metadata.entry_points(group="pytest11")
    assert [ep.value for ep in entry_points if ep.dist and ep.dist.name == "segment-sansio"] == [
        "segment_runtimes.pytest_plugin"
    ]


def test_the_simulator_fixture_delivers_what_the_code_under_test_sends(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def checkout(analytics, user_id, total):
            analytics.identify(user_id, {"plan": "pro"})
            analytics.track(user_id, "Order Completed", {"revenue": total})

        def test_right(segment_simulator):
            checkout(segment_simulator.client, "user-9", 12.5)
            assert segment_simulator.client.flush()
            messages = segment_simulator.delivered_messages()
            assert [m["type"] for m in messages] == ["identify", "track"]
            assert messages[1]["properties"] == {"revenue": 12.5}

        def test_wrong(segment_simulator):
            checkout(segment_simulator.client, "user-9", 12.5)
            segment_simulator.client.flush()
            assert [m["type"] for m in segment_simulator.delivered_messages()] == ["track"]

        def test_each_test_gets_a_fresh_simulator(segment_simulator):
            assert segment_simulator.delivered_messages() == []
            assert segment_simulator.engine.config.write_key == "test"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*FAILED*test_wrong*"])


def test_the_simulator_marker_scripts_the_server_and_sets_the_config(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from segment_core import APIError, RetriesExhausted
        from segment_core.testing import Reply

        @pytest.mark.segment_simulator(script=[Reply(status=503), Reply(status=503)], seed=3)
        def test_retries_through_two_503s(segment_simulator):
            segment_simulator.client.track("user-1", "Signed Up")
            assert segment_simulator.client.flush()
            assert [r.retry_count for r in segment_simulator.trace.requests] == [0, 1, 2]

        @pytest.mark.segment_simulator(then=Reply(status=500), max_retries=1)
        def test_a_failure_is_reported(segment_simulator):
            segment_simulator.client.track("user-1", "Signed Up")
            assert not segment_simulator.client.flush()
            (error,) = segment_simulator.trace.failed.values()
            assert isinstance(error, RetriesExhausted) and isinstance(error.last_error, APIError)

        @pytest.mark.segment_simulator(upload_size=2)
        def test_upload_size_reaches_the_engine(segment_simulator):
            for index in range(5):
                segment_simulator.client.track("user-1", f"Event {index}")
            segment_simulator.client.flush()
            assert [r.message_count for r in segment_simulator.trace.requests] == [2, 2, 1]

        @pytest.mark.segment_simulator(upload_size=2)
        def test_wrong_batch_sizes(segment_simulator):
            for index in range(5):
                segment_simulator.client.track("user-1", f"Event {index}")
            segment_simulator.client.flush()
            assert [r.message_count for r in segment_simulator.trace.requests] == [5]
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*FAILED*test_wrong_batch_sizes*"])


def test_a_bad_simulator_marker_errors_in_setup(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.segment_simulator(upload_size=0)
        def test_invalid_setting(segment_simulator):
            pass

        @pytest.mark.segment_simulator([])
        def test_positional(segment_simulator):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        ["*ConfigurationError: upload_size must be an int of at least 1*", "*keyword arguments only*"]
    )


def test_the_collector_fixture_stores_what_a_real_client_sends(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from segment_runtimes.threaded import Client

        def send_one(url):
            client = Client("any-key", host=url)
            client.track("user-1", "Signed Up", {"plan": "pro"})
            assert client.flush(timeout=10)
            client.shutdown(timeout=5)

        def test_right(segment_collector):
            send_one(segment_collector.url)
            (message,) = segment_collector.messages()
            assert (message.type, message.user_id, message.event_or_name) == ("track", "user-1", "Signed Up")
            assert message.json["properties"] == {"plan": "pro"}

        def test_wrong(segment_collector):
            send_one(segment_collector.url)
            assert [m.event_or_name for m in segment_collector.messages()] == ["Logged In"]

        def test_each_test_gets_a_fresh_collector(segment_collector):
            assert segment_collector.running and segment_collector.messages() == []
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*FAILED*test_wrong*"])


def test_the_collector_marker_configures_the_collector_and_it_stops_after_the_test(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from segment_runtimes.threaded import Client

        seen = []

        @pytest.mark.segment_collector(write_keys=["right-key"])
        def test_a_wrong_key_is_refused(segment_collector):
            seen.append(segment_collector)
            errors = []
            client = Client("wrong-key", host=segment_collector.url, on_error=lambda e, batch: errors.append(e))
            client.track("user-1", "Signed Up")
            assert not client.flush(timeout=10)
            client.shutdown(timeout=5)
            assert [e.status for e in errors] == [401]
            assert segment_collector.messages() == []

        def test_the_previous_collector_was_stopped():
            assert len(seen) == 1 and not seen[0].running
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=2)


def test_the_plugin_imports_no_core_and_no_extra() -> None:
    code = BLOCK_OPTIONAL + textwrap.dedent(
        """
        import segment_runtimes.pytest_plugin
        loaded = sorted(m for m in ("segment_core", "msgspec", "h11", "trio") if sys.modules.get(m) is not None)
        assert not loaded, loaded
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_without_the_collector_extra_only_the_collector_fixture_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_extra_missing="""
        def test_simulator(segment_simulator):
            segment_simulator.client.track("user-1", "Signed Up")
            assert segment_simulator.client.flush()

        def test_collector(segment_collector):
            pass
        """
    )
    # pytest starts after h11 is made unimportable, as on an install without the extra. (Not trio
    # too: installed, it registers a hypothesis hook that would then fail to import.)
    code = "import sys\nsys.modules['h11'] = None\nimport pytest\n"
    code += "sys.exit(pytest.main(['-p', 'no:cacheprovider', 'test_extra_missing.py']))\n"
    result = pytester.run(sys.executable, "-c", code, timeout=120)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ImportError*needs the [[]collector[]] extra*"])
