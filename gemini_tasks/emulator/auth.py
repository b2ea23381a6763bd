"""API keys -> (label, project).  Gemini quotas are per Google Cloud project, not per key.

The secret itself is never stored outside the lookup table and never logged or returned: every
other part of the emulator only ever sees the label.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from . import wire


@dataclass(frozen=True, slots=True)
class Identity:
    label: str
    project: str
    blocked: bool = False


def hashed_label(secret: str) -> str:
    """Stable, non-reversible label for a key nobody configured: "key-" + 6 hex of sha256."""
    return "key-" + hashlib.sha256(secret.encode("utf-8")).hexdigest()[:6]


def identity_for(secret: str, spec: dict[str, Any] | None) -> Identity:
    spec = spec or {}
    label = spec.get("label") or hashed_label(secret)
    project = spec.get("project") or label
    return Identity(label=str(label), project=str(project), blocked=bool(spec.get("blocked", False)))


class KeyBook:
    """Resolves the x-goog-api-key header to an Identity, or to the real API's error."""

    def __init__(self, keys: dict[str, dict[str, Any]]) -> None:
        self._configured = bool(keys)
        self._table = {secret: identity_for(secret, spec) for secret, spec in keys.items()}

    def resolve(self, secret: str | None) -> tuple[Identity | None, wire.ApiError | None]:
        """(identity, error) for a header value.

        Errors are the real API's: no key -> 403, unknown key (when keys are configured) -> 400
        API_KEY_INVALID, blocked key -> 403 API_KEY_SERVICE_BLOCKED (identity still returned so
        the request log can name the key by its label).
        """
        if secret is None or not secret.strip():
            return None, wire.no_key()
        secret = secret.strip()
        ident = self._table.get(secret)
        if ident is None:
            if self._configured:
                return None, wire.api_key_invalid()
            # Open mode: every key is accepted, each its own project.  Memoise (bounded).
            label = hashed_label(secret)
            ident = Identity(label=label, project=label)
            if len(self._table) < 10000:
                self._table[secret] = ident
        if ident.blocked:
            return ident, wire.api_key_blocked(ident.project)
        return ident, None

    @property
    def labels(self) -> list[str]:
        return sorted({i.label for i in self._table.values()}) if self._configured else []
