"""Reading a client's fields for translation: the wrong type is a BadRequest naming the field."""

from __future__ import annotations

import math
from typing import Any

from router.errors import BadRequest

UNREADABLE = (BadRequest, TypeError, ValueError, AttributeError, KeyError)
"""What reading a value of the wrong shape raises: these readers' BadRequest naming the field, or
Python's own error where a reader takes a field as it comes. An upstream's answer or stream that
raises one of them is unreadable (502), not the client's fault."""


def array(value: Any, where: str) -> list[Any]:
    """VALUE when it is a JSON array."""
    if not isinstance(value, list):
        raise BadRequest(f"{where}: expected an array")
    return value


def strings(value: Any, where: str) -> tuple[str, ...]:
    """A string or an array of strings as a tuple (None: empty)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise BadRequest(f"{where}: expected a string or an array of strings")


def text(value: Any, where: str) -> str:
    """VALUE when it is a string (None: empty)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{where}: expected a string")
    return value


def mapping(value: Any, where: str) -> dict[str, Any]:
    """VALUE when it is a JSON object (None: empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{where}: expected an object")
    return value


def number(value: Any, where: str, whole: bool = False) -> Any:
    """VALUE when it is a finite number (an integer when WHOLE; None when absent)."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise BadRequest(f"{where}: expected a number")
    if whole and isinstance(value, float):
        if not value.is_integer():
            raise BadRequest(f"{where}: expected an integer")
        return int(value)
    return value
