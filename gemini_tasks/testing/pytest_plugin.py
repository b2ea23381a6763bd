"""The test stack's pytest fixtures (as ``celery.contrib.pytest`` is Celery's), loaded by ``tests/conftest.py``
through ``pytest_plugins``.

* ``emulator`` -- one in-process Gemini emulator (:class:`~gemini_tasks.emulator.runner.EmulatorThread`) for the
  session, shared by the test folders that run their stack in this process;
* ``emu`` -- its control client, the emulator reset to its start-up state before each test and its faults
  cleared after.

A folder's ``conftest.py`` that needs a stack of its own defines fixtures of the same names; pytest uses the
nearest.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gemini_tasks.emulator.control_client import EmulatorControl
from gemini_tasks.emulator.runner import EmulatorThread


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorThread]:
    with EmulatorThread() as thread:
        yield thread


@pytest.fixture
def emu(emulator: EmulatorThread) -> Iterator[EmulatorControl]:
    control = emulator.control
    control.reset()
    yield control
    control.clear_faults()
