"""The distributed key manager: Redis state, atomic Lua admission and reporting, the original's API."""

from gemini_tasks.keys.manager import AdvancedApiKeyManager, summarize
from gemini_tasks.keys.pool import (
    AdmitPolicy,
    Cancelled,
    FingerprintConflict,
    KeyManagerError,
    KeyPool,
    Lease,
    NoUsableKeys,
    PoolStatus,
    Wait,
    fingerprint,
)
from gemini_tasks.keys.states import (
    AVAILABLE,
    COOLDOWN,
    FAILED_INIT,
    FULLY_EXHAUSTED,
    TEMPORARILY_EXHAUSTED,
)

__all__ = [
    "AdvancedApiKeyManager", "AdmitPolicy", "Cancelled", "FingerprintConflict", "KeyManagerError", "KeyPool",
    "Lease", "NoUsableKeys", "PoolStatus", "Wait", "fingerprint", "summarize",
    "AVAILABLE", "COOLDOWN", "FAILED_INIT", "FULLY_EXHAUSTED", "TEMPORARILY_EXHAUSTED",
]
