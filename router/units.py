"""Parsing of human-friendly durations ("900s", "15m") and sizes ("64MiB")."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_FACTORS = {
    None: 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}

DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h)?\s*$"
SIZE_PATTERN = r"^\s*\d+(\.\d+)?\s*([bB]|[kKmMgG][iI]?[bB])?\s*$"


def parse_duration(value: float | int | str) -> float:
    """Seconds from a number of seconds or a string like '250ms', '30s', '15m', '1h'."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration (examples: 30, '250ms', '30s', '15m', '1h')")
    return float(match.group(1)) * _DURATION_FACTORS[match.group(2)]


def parse_size(value: int | str) -> int:
    """Bytes from a number or a string like '64MiB', '512KB'."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a size (examples: 1048576, '512KiB', '64MiB')")
    unit = match.group(2).lower() if match.group(2) else None
    return int(float(match.group(1)) * _SIZE_FACTORS[unit])


#: a header name and value as the rules file may set them: a CR, LF or NUL would inject a header
HEADERS_SCHEMA = {
    "type": "object",
    "propertyNames": {"pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"},
    "additionalProperties": {"type": ["string", "null"], "pattern": "^[^\\r\\n\\x00]*$"},
    "description": "{header-name: value}; names are HTTP tokens, values hold no CR, LF or NUL",
}
