"""Chaos fixtures: each module gets its own stack of real processes (see ``chaos_stack.Stack``)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ["no_proxy"] = os.environ["NO_PROXY"]


@pytest.fixture(scope="module")
def stack():
    """redis-server (no persistence) + emulator + the client app; modules add the workers they need."""
    from chaos_stack import Stack

    with Stack() as s:
        yield s


@pytest.fixture(autouse=True)
def _stop_the_workers_a_test_started(request):
    """A test's workers end with the test, passed or failed: a worker left running by a failed test would
    consume the next test's messages (the module's stack outlives its tests). Workers a module-scoped fixture
    started before the test (a module's fleet) are left to the stack."""
    stacks = [request.getfixturevalue(name) for name in ("stack", "rstack") if name in request.fixturenames]
    before = [len(s.workers) for s in stacks]
    yield
    for s, n in zip(stacks, before):
        s.stop_workers(since=n)  # gemini_tasks.testing.stack.Stack


@pytest.fixture(autouse=True)
def _collect_results_while_stack_lives():
    """Drop a test's AsyncResults while its Redis still runs: their finalizers talk to the result backend."""
    yield
    import gc

    gc.collect()
