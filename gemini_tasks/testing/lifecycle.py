"""What every part of the test stack shares: ``with part:`` starts it and always stops it, even when starting
failed half-way (a part's ``stop`` must cope with a partial start)."""

from __future__ import annotations

from typing import Any


class StartStop:
    """A context manager over ``start()`` (returning the started part) and ``stop()``."""

    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
