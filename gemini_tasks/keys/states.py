"""Key states and the original library's default settings per key category."""

from __future__ import annotations

from typing import Final

AVAILABLE: Final = "AVAILABLE"
COOLDOWN: Final = "COOLDOWN"
TEMPORARILY_EXHAUSTED: Final = "TEMPORARILY_EXHAUSTED"
FULLY_EXHAUSTED: Final = "FULLY_EXHAUSTED"
FAILED_INIT: Final = "FAILED_INIT"
ALL_STATES: Final = (AVAILABLE, COOLDOWN, TEMPORARILY_EXHAUSTED, FULLY_EXHAUSTED, FAILED_INIT)

FREE: Final = "free"
PAID: Final = "paid"

#: The original library's real defaults (not its docstring's): free keys rest 30 s after each use.
DEFAULT_KEY_SETTINGS: Final[dict[str, dict[str, float | int]]] = {
    FREE: {
        "key_cooldown_seconds": 30,
        "exhausted_wait_seconds": 120,
        "fully_exhausted_wait_seconds": 43200,
        "max_exhausted_retries": 3,
        "max_concurrent_leases": 1,
    },
    PAID: {
        "key_cooldown_seconds": 0,
        "exhausted_wait_seconds": 120,
        "fully_exhausted_wait_seconds": 43200,
        "max_exhausted_retries": 3,
        "max_concurrent_leases": 1,
    },
}
SETTING_NAMES: Final = frozenset(DEFAULT_KEY_SETTINGS[FREE])

#: Outcomes a worker reports after a call (see report.lua).
OUTCOMES: Final = frozenset({"success", "rate_limited", "invalid_key", "transient", "persistent"})
QUOTA_KINDS: Final = frozenset({"minute", "day", "tokens", "limit_zero", "unknown"})
