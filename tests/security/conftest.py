"""Security fixtures. Every stack here is private (own redis-server, emulator, worker and Flower processes)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ["no_proxy"] = os.environ["NO_PROXY"]


@pytest.fixture(autouse=True)
def _collect_results_while_stack_lives():
    """Drop a test's AsyncResults while its Redis still runs: their finalizers talk to the result backend."""
    yield
    import gc

    gc.collect()
