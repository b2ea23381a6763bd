"""Structured output and thoughts: JSON answers that follow the request's schema, thought parts on request.

``response_schema`` (the API's OpenAPI subset: ``type`` OBJECT/ARRAY/STRING/..., ``properties``, ``items``,
``enum``, ``any_of``) and ``response_json_schema`` (JSON Schema: lowercase types, ``$ref``/``$defs``,
``anyOf``) both produce the smallest deterministic instance that validates, with strings echoing the prompt, so
``response.parsed`` works on the client side. ``thinking_config.include_thoughts`` adds a thought part before the
answer, as Gemini 2.5/3 models return it, and ``thoughtsTokenCount`` in the usage.
"""

from __future__ import annotations

import json
from typing import Any

#: how deep a schema is followed (recursive models would otherwise never end)
MAX_DEPTH = 8


def _get(schema: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in schema:
            return schema[name]
    return None


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for piece in ref[2:].split("/"):
            node = node.get(piece, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, dict) else {}
    return schema


def instance(schema: Any, echo: str, root: Any = None, depth: int = 0) -> Any:
    """The smallest value that satisfies ``schema`` (either dialect)."""
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return None
    root = root if isinstance(root, dict) else schema
    schema = _resolve(schema, root)
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "const" in schema:
        return schema["const"]
    options = _get(schema, "any_of", "anyOf", "oneOf", "one_of")
    if isinstance(options, list) and options:
        non_null = [o for o in options if not (isinstance(o, dict) and str(o.get("type", "")).lower() == "null")]
        return instance((non_null or options)[0], echo, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    kind = str(kind or ("object" if "properties" in schema else "string")).lower()
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: instance(sub, echo, root, depth + 1) for name, sub in props.items()}
    if kind == "array":
        low = _get(schema, "min_items", "minItems")
        count = max(1, int(low or 0))
        return [instance(schema.get("items") or {}, echo, root, depth + 1) for _ in range(count)]
    if kind == "integer":
        return int(_get(schema, "minimum") or 0)
    if kind == "number":
        return float(_get(schema, "minimum") or 0)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return echo


def json_answer(gen: dict[str, Any], fallback: dict[str, Any], echo: str) -> str:
    """The JSON text of a structured answer: the schema's instance, else the emulator's own object."""
    schema = gen.get("response_json_schema")
    if schema is None:
        schema = gen.get("response_schema")
    if isinstance(schema, dict) and schema:
        return json.dumps(instance(schema, echo))
    return json.dumps(fallback)


def thought_parts(gen: dict[str, Any], summary_fingerprint: str) -> list[dict[str, Any]]:
    """A thought part when ``thinking_config.include_thoughts`` is set (the thinking level/budget is echoed)."""
    thinking = gen.get("thinking_config") or {}
    if not isinstance(thinking, dict) or not thinking.get("include_thoughts"):
        return []
    how = ", ".join(f"{k}={thinking[k]}" for k in ("thinking_level", "thinking_budget") if k in thinking)
    return [{"text": f"[emulator thought] {summary_fingerprint} ({how or 'default'})", "thought": True}]
