"""JSON in one place: compact UTF-8 the way API servers write it, parsed and written by orjson.

orjson reads a recorded 98 KB Claude Code request about 4x faster than the standard library
(0.11 ms against 0.42) and writes it back about 20x faster (0.03 ms against 0.58); every
forwarded turn that a rule rewrites (the default rules drop Claude Code's billing block) pays
both (bench/scale.py shows the cost per body size). Where orjson refuses something a
client may still send, the standard library takes over, so nothing a client could send before
is refused now:

- a lone UTF-16 surrogate escape (`"\\ud83d"`, an emoji cut in half by a client truncating a
  tool result), NaN, Infinity: parsed by `json`; a body holding a lone surrogate is written back
  by `json` with `\\u` escapes (orjson writes NaN and Infinity as null, JSON's only word for them);
- invalid JSON: `json`'s error message, which names line and column.

Whatever cannot be read (invalid JSON, nesting deeper than orjson's 1,024 levels, an integer of
more than 4,300 digits) is a ValueError, never another exception. Whatever was read can be written
back, however deep: past orjson's 254 levels the standard library writes it.

One difference is kept: an integer literal beyond 64 bits becomes a float, the same IEEE double a
JavaScript client (Claude Code, OpenCode, Gemini CLI) meant by it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import orjson

READ_DEPTH = 1024  # orjson reads arrays and objects nested this deep at most (since 3.9.15)


def loads(raw: bytes | str) -> Any:
    """Parse RAW; raises ValueError (json.JSONDecodeError) with line and column when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)  # JSON is UTF-8: no surrogates
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as exc:
        if "int_max_str_digits" in str(
            exc
        ):  # Python's guard against quadratic int parsing; its hint is not for clients
            raise ValueError(f"an integer has more than {sys.get_int_max_str_digits()} digits") from None
        raise


def dumps_bytes(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes, non-ASCII kept as is. Whatever `loads` returned can be written."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # a lone surrogate, an integer beyond 64 bits, nesting past orjson's 254 levels
        pass
    limit = sys.getrecursionlimit()
    # the standard library's writer counts each level against Python's recursion limit (1,000 by
    # default, part of it used by the caller): raised for this call, it writes all that orjson reads
    sys.setrecursionlimit(limit + READ_DEPTH + 100)
    try:
        return json.dumps(value, separators=(",", ":")).encode("ascii")
    except RecursionError:
        raise ValueError("nested too deeply") from None
    finally:
        sys.setrecursionlimit(limit)


def dumps(value: Any) -> str:
    """Compact JSON text, non-ASCII kept as is."""
    return dumps_bytes(value).decode("utf-8")
