"""Benchmarks (not part of the test suite). Run them all with ``python bench/run_all.py``; see RESULTS.md."""
