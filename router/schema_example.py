"""Values that follow a JSON Schema, and prompts that ask for JSON in words (for fakes). (interim)"""

from __future__ import annotations

import re
from typing import Any

_ASKS_JSON = re.compile(r"\b(?:return|respond|reply|answer|output)\b[^.\n]{0,40}\bjson\b(?![-.])", re.I)


def prompt_asks_for_json(text: str) -> bool:
    """Whether TEXT asks for a JSON answer in words."""
    return bool(text) and _ASKS_JSON.search(text) is not None


PLACEHOLDER = "answered by ghost-router"


def example_from_schema(schema: Any) -> Any:
    """The smallest value that follows SCHEMA: first enum values, minimums, required fields only."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return example_from_schema(schema[key][0])
    kind = schema.get("type", "object")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    kind = str(kind).lower()  # Gemini writes OBJECT, STRING, ...
    if kind == "object":
        properties = schema.get("properties") or {}
        wanted = schema.get("required", list(properties))
        return {name: example_from_schema(properties.get(name, {})) for name in wanted}
    if kind == "array":
        return [example_from_schema(schema.get("items"))] * int(schema.get("minItems", 0))
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return PLACEHOLDER[: schema["maxLength"]] if isinstance(schema.get("maxLength"), int) else PLACEHOLDER
