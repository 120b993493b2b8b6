"""Benchmark scripts: each runs on its own (``python benchmarks/NAME.py --help``) and in a small mode that
the test suite runs (``tests/test_benchmarks.py``)."""
