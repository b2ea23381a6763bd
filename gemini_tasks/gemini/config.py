"""One way in for ``generation_config``, whatever shape the user wrote it in.

Users of the original library pass plain dicts in snake_case (the README) or camelCase (copied from REST
docs), nested (``thinkingConfig.thinkingBudget``), or a ``GenerateContentConfig``; after a trip through
the broker it is a JSON dict (:func:`gemini_tasks.gemini.validation.to_wire`). The SDK's pydantic models
already accept both spellings at every level (``alias_generator=to_camel, populate_by_name=True``) and
forbid unknown fields, so validation is delegated to them; this module only turns their errors into a
message that names the offending field, and refuses ``http_options``, which would let a request redirect
the leased API key to another host or change the worker's timeouts.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

import pydantic
from google.genai import types

__all__ = ["FORBIDDEN_FIELDS", "GenerationConfigError", "build_generate_config"]

#: Fields a request may not set: they control the HTTP client (endpoint, headers, timeout), not generation.
FORBIDDEN_FIELDS = frozenset({"http_options", "httpOptions"})


class GenerationConfigError(ValueError):
    """``generation_config`` is not a valid ``GenerateContentConfig``; the message names the fields."""


def _field_names(model: type[pydantic.BaseModel]) -> list[str]:
    names: list[str] = []
    for name, info in model.model_fields.items():
        names.append(name)
        if info.alias and info.alias != name:
            names.append(info.alias)
    return names


def _model_at(loc: tuple[Any, ...]) -> type[pydantic.BaseModel] | None:
    """The pydantic model that owns the field at ``loc[:-1]``, to suggest close field names."""
    model: Any = types.GenerateContentConfig
    for part in loc[:-1]:
        if not isinstance(part, str) or not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
            continue
        info = model.model_fields.get(part)
        if info is None:
            info = next((f for f in model.model_fields.values() if f.alias == part), None)
        if info is None:
            return None
        model = _unwrap_model(info.annotation)
        if model is None:
            return None
    return model if isinstance(model, type) and issubclass(model, pydantic.BaseModel) else None


def _unwrap_model(annotation: Any) -> type[pydantic.BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def _describe(exc: pydantic.ValidationError) -> str:
    problems: list[str] = []
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        path = ".".join(str(p) for p in loc) or "(root)"
        if error.get("type") == "extra_forbidden":
            hint = ""
            model = _model_at(loc)
            if model is not None and loc and isinstance(loc[-1], str):
                close = difflib.get_close_matches(loc[-1], _field_names(model), n=1)
                if close:
                    hint = f" (did you mean {close[0]!r}?)"
            problems.append(f"unknown field {path!r}{hint}")
        else:
            problems.append(f"invalid value for {path!r}: {error.get('msg')}")
    return "; ".join(problems)


def build_generate_config(
    generation_config: Mapping[str, Any] | types.GenerateContentConfig | None,
) -> types.GenerateContentConfig | None:
    """A validated ``GenerateContentConfig`` (None for None or an empty dict).

    Raises :class:`GenerationConfigError` (a ``ValueError``) naming unknown or invalid fields.
    """
    if generation_config is None:
        return None
    if isinstance(generation_config, types.GenerateContentConfig):
        data: Any = generation_config.model_dump(exclude_none=True)
    elif isinstance(generation_config, Mapping):
        data = dict(generation_config)
    else:
        raise GenerationConfigError(
            "generation_config must be a dict or a google.genai.types.GenerateContentConfig, "
            f"got {type(generation_config).__name__}"
        )
    if not data:
        return None
    forbidden = sorted(k for k in data if k in FORBIDDEN_FIELDS and data[k] is not None)
    if forbidden:
        raise GenerationConfigError(
            f"generation_config may not set {', '.join(forbidden)}: the worker owns the HTTP client "
            "(endpoint, key, timeout)"
        )
    try:
        try:
            encoded = json.dumps(data)
        except (TypeError, ValueError):
            # SDK objects or bytes inside: validate the Python values as they are.
            return types.GenerateContentConfig.model_validate(data)
        # JSON mode decodes base64 bytes fields the way to_wire() encoded them.
        return types.GenerateContentConfig.model_validate_json(encoded)
    except pydantic.ValidationError as exc:
        raise GenerationConfigError(f"generation_config: {_describe(exc)}") from None
