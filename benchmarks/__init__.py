"""Side-by-side benchmarks of segment-sansio against segment-analytics-python 2.4.

Run from the repository root::

    .venv/bin/python -m benchmarks.run            # full run, about 2-3 minutes
    .venv/bin/python -m benchmarks.run --quick    # about 30 seconds
    .venv/bin/python -m benchmarks.profiling      # where the time goes (cProfile)

Not part of the test suite: nothing here is collected by pytest.
"""
