"""Structured output: ``response.parsed`` on the caller's side, as the SDK computes it.

The worker's response travels as JSON, so a ``response_schema`` given as a pydantic class (or an enum, a
``list[Model]``) arrives on the worker only as its JSON schema: the SDK there can only parse into dicts. The
caller still holds the class it passed in ``generation_config``; this re-applies the SDK's own parsing
(``GenerateContentResponse._from_response``) with it, so ``return_response=True`` gives ``response.parsed``
as a model instance exactly as a direct SDK call would.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from google.genai import types

log = logging.getLogger("gemini_tasks.gemini.structured")


def _schema_of(generation_config: Any) -> Any:
    if generation_config is None:
        return None
    if isinstance(generation_config, types.GenerateContentConfig):
        return generation_config.response_schema or generation_config.response_json_schema
    if isinstance(generation_config, Mapping):
        for name in ("response_schema", "responseSchema", "response_json_schema", "responseJsonSchema"):
            if generation_config.get(name) is not None:
                return generation_config[name]
    return None


def schema_to_wire(generation_config: Any) -> Any:
    """``generation_config`` with a ``response_schema`` given as a class (pydantic model, enum, ``list[Model]``)
    replaced by the ``Schema`` the SDK would send for it, so the config can travel as JSON. The caller keeps
    the class: :func:`attach_parsed` uses it for ``response.parsed``."""
    from google.genai import _transformers

    def convert(schema: Any) -> Any:
        if schema is None or isinstance(schema, (dict, types.Schema)):
            return schema
        return _transformers.t_schema(None, schema)

    if isinstance(generation_config, types.GenerateContentConfig):
        if generation_config.response_schema is None or isinstance(generation_config.response_schema,
                                                                   (dict, types.Schema)):
            return generation_config
        return generation_config.model_copy(update={"response_schema": convert(generation_config.response_schema)})
    if isinstance(generation_config, Mapping):
        out = dict(generation_config)
        for name in ("response_schema", "responseSchema"):
            if name in out:
                out[name] = convert(out[name])
        return out
    return generation_config


def attach_parsed(response: Any, generation_config: Any) -> Any:
    """``response`` with ``parsed`` set from the caller's schema (unchanged when there is none)."""
    schema = _schema_of(generation_config)
    if schema is None or not isinstance(response, types.GenerateContentResponse):
        return response
    try:
        rebuilt = types.GenerateContentResponse._from_response(
            response=response.model_dump(mode="json", exclude_none=True, exclude={"parsed"}),
            kwargs={"config": {"response_schema": schema}},
        )
    except Exception:  # noqa: BLE001 - parsing is a convenience; the text is still there
        log.warning("could not parse the structured response with the given schema", exc_info=True)
        return response
    return rebuilt
