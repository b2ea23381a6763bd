"""Turning the original library's ``keylist_names`` / ``paid_keys`` / ``key_settings`` forms into key ids.

A key is known by its id: the name of the environment variable that holds it (``GEMINI_API_KEY_3``). The
application that builds the manager may not hold the secrets (they can live only on worker hosts), so a
name counts as known when it is set locally *or* a worker has announced that it holds it.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from gemini_tasks.keys.states import DEFAULT_KEY_SETTINGS, FREE, PAID, SETTING_NAMES
from gemini_tasks.settings import KEY_ENV_PREFIX, key_env_names, key_name_order

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
LIMIT_ALIASES = {"rpm": "rpm", "requests_per_minute": "rpm", "rpd": "rpd", "requests_per_day": "rpd",
                 "tpm": "tpm", "input_tokens_per_minute": "tpm"}


def resolve_key_names(
    keylist_names: str | int | Iterable[str],
    local_env: Mapping[str, str],
    remote_held: Iterable[str] = (),
) -> list[str]:
    """The key ids a ``keylist_names`` value selects, in order. Raises ValueError naming what is wrong."""
    local = set(key_env_names(dict(local_env)))
    remote = set(remote_held)
    known = local | remote

    def numbered(lo: int, hi: int) -> list[str]:
        if lo < 1 or hi < lo:
            raise ValueError(f"keylist_names range must be 1 <= first <= last, got {lo}-{hi}")
        names = [f"{KEY_ENV_PREFIX}_{i}" for i in range(lo, hi + 1)]
        return [n for n in names if n in known]  # the original skips missing numbers silently

    if isinstance(keylist_names, bool):
        raise ValueError("keylist_names must be 'all', a count, a range like '1-15', or a list of names")
    if isinstance(keylist_names, int):
        names = numbered(1, keylist_names)
    elif isinstance(keylist_names, str):
        text = keylist_names.strip()
        if text.lower() == "all":
            names = sorted(known, key=key_name_order)
        elif text.isdigit():
            names = numbered(1, int(text))
        elif match := _RANGE.match(text):
            lo, hi = (int(x) for x in match.groups())
            names = numbered(lo, hi)
        else:
            names = _explicit([text], known)
    else:
        try:
            listed = list(keylist_names)
        except TypeError:
            raise ValueError(
                f"keylist_names must be 'all', a count, a range like '1-15', or a list of names, "
                f"got {type(keylist_names).__name__}"
            ) from None
        names = _explicit(listed, known)
    if not names:
        raise ValueError(
            "No valid API keys found from provided environment variables "
            f"(keylist_names={keylist_names!r}): set GEMINI_API_KEY_1..N in the environment or .env "
            "(values longer than 10 characters), or start a worker that holds them."
        )
    return names


def _explicit(listed: list[Any], known: set[str]) -> list[str]:
    bad = [n for n in listed if not isinstance(n, str) or not _ENV_NAME.match(n)]
    if bad:
        raise ValueError(f"key names must be environment variable names, got {bad!r}")
    missing = [n for n in listed if n not in known]
    if missing:
        raise ValueError(
            f"Unknown API key name(s): {', '.join(missing)}: not set (with a value longer than 10 characters) "
            "in this environment or .env, and no worker has announced holding them"
        )
    seen: dict[str, None] = {}
    for n in listed:
        seen.setdefault(n, None)
    return list(seen)


def resolve_paid(paid_keys: str | Iterable[str] | None, key_ids: list[str]) -> set[str]:
    """Which of ``key_ids`` are paid. Unknown names are an error (the original only warned)."""
    if paid_keys is None:
        return set()
    if isinstance(paid_keys, str):
        if paid_keys.strip().lower() == "all":
            return set(key_ids)
        paid_keys = [paid_keys]
    listed = list(paid_keys)
    unknown = [n for n in listed if n not in key_ids]
    if unknown:
        raise ValueError(f"paid_keys names keys that are not in the pool: {', '.join(map(str, unknown))}")
    return set(listed)


def merge_settings(key_settings: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Per-category settings: the defaults, shallow-merged with the user's, validated."""
    merged = {cat: dict(vals) for cat, vals in DEFAULT_KEY_SETTINGS.items()}
    if key_settings is None:
        return merged
    if not isinstance(key_settings, Mapping):
        raise ValueError(f"key_settings must be a dict like {{'free': {{...}}, 'paid': {{...}}}}, got {key_settings!r}")
    for cat, values in key_settings.items():
        if cat not in (FREE, PAID):
            raise ValueError(f"key_settings has unknown category {cat!r}; expected 'free' and/or 'paid'")
        if not isinstance(values, Mapping):
            raise ValueError(f"key_settings[{cat!r}] must be a dict, got {values!r}")
        for name, value in values.items():
            if name in LIMIT_ALIASES:
                name = LIMIT_ALIASES[name]
                merged[cat][name] = _positive_int(f"key_settings[{cat!r}][{name!r}]", value)
                continue
            if name not in SETTING_NAMES:
                raise ValueError(
                    f"key_settings[{cat!r}] has unknown setting {name!r}; known: "
                    f"{', '.join(sorted(SETTING_NAMES | {'rpm', 'rpd', 'tpm'}))}"
                )
            merged[cat][name] = _setting(cat, name, value)
    return merged


def _setting(cat: str, name: str, value: Any) -> float | int:
    where = f"key_settings[{cat!r}][{name!r}]"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, got {value!r}")
    if value < 0 or value != value:
        raise ValueError(f"{where} must be >= 0, got {value!r}")
    if name in ("max_exhausted_retries", "max_concurrent_leases"):
        if int(value) != value or value < 1:
            raise ValueError(f"{where} must be a whole number >= 1, got {value!r}")
        return int(value)
    return float(value)


def _positive_int(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where} must be a whole number >= 1, got {value!r}")
    return value


def normalise_limits(project: str, limits: Mapping[str, Any]) -> dict[str, Any]:
    """``{"rpm"|"requests_per_minute": n, "rpd"|...: n, "models": {model: {...}}}``, validated."""
    if not isinstance(limits, Mapping):
        raise ValueError(f"project_limits[{project!r}] must be a dict, got {limits!r}")
    out: dict[str, Any] = {}
    for name, value in limits.items():
        if name == "models":
            if not isinstance(value, Mapping):
                raise ValueError(f"project_limits[{project!r}]['models'] must be a dict of model -> limits")
            out["models"] = {m: normalise_limits(f"{project}/{m}", v) for m, v in value.items()}
        elif name in LIMIT_ALIASES:
            out[LIMIT_ALIASES[name]] = _positive_int(f"project_limits[{project!r}][{name!r}]", value)
        else:
            raise ValueError(
                f"project_limits[{project!r}] has unknown limit {name!r}; known: rpm, rpd, tpm "
                "(requests_per_minute, requests_per_day, input_tokens_per_minute), models"
            )
    return out
