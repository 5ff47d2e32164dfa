"""The one thing pyproject.toml cannot say: the optional C extension of the caller's hot path.

``optional=True``: where it cannot be compiled, the install still succeeds and
segment_core runs the Python code, which gives the same results.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("segment_core._speedups", ["segment_core/_speedups.c"], optional=True)])
