"""JSON encoding in one place, compact and UTF-8, the way API servers write it."""

from __future__ import annotations

import json
from typing import Any


def dumps(value: Any) -> str:
    """Compact JSON text, non-ASCII kept as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def dumps_bytes(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes."""
    return dumps(value).encode("utf-8")
