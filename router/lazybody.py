"""A request body whose top-level fields are decoded only when something reads them.

A Claude Code turn is 50 KB to several MB of JSON, almost all of it `messages` and `tools`, and
the router reads only a little of it: the model, the system prompt, the last user message, the
tool names, a few flags. Decoding the whole document costs every forwarded turn time in
proportion to the conversation's length (and writing it back after a rewrite as much again).

`LazyBody` splits the object once into its top-level fields as undecoded JSON slices (msgspec
skims them without building a Python object per value), decodes a field the first time it is
read, and writes the body back by copying the untouched slices as they came, re-encoding only
the fields that were assigned. A protocol adapter can take a cheap typed look at a big field
with `outline` (a msgspec decoder that builds only what its types declare) without decoding it.

Only what msgspec's scan accepts becomes a LazyBody; anything else (not an object, malformed, a
lone UTF-16 surrogate escape) is parsed whole by router.jsonutil, so errors and tolerance stay
those of the full parse. One thing the scan does not check is that skimmed strings are valid
UTF-8 (checking costs ~1 ns per byte once a body holds any non-ASCII text, as Claude Code's do):
bytes nobody reads go to the upstream as they came, and its parser judges them, as it would
without the router. Clients that encode JSON from JavaScript strings cannot send invalid UTF-8.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, MutableMapping, ValuesView
from typing import Any

import msgspec

from router.jsonutil import dumps_bytes, loads

_TOP_LEVEL = msgspec.json.Decoder(dict[str, msgspec.Raw])
_VALUE = msgspec.json.Decoder()


class LazyBody:
    """A JSON object body: mapping access decodes a field on first use; `encode` writes it back.

    A MutableMapping by registration, not inheritance: `isinstance(x, LazyBody)` runs on every
    request, and on an ABC subclass it goes through abc's subclass hooks."""

    __slots__ = ("_slices", "_values", "_assigned")

    def __init__(self, slices: dict[str, msgspec.Raw | None]) -> None:
        self._slices = slices  # every field in order; None for a field set that did not come in
        self._values: dict[str, Any] = {}  # the fields read or set, decoded
        self._assigned: set[str] = set()  # the fields `encode` writes from their values

    @classmethod
    def split(cls, raw: bytes) -> LazyBody | None:
        """RAW's top-level fields, or None when RAW is not a JSON object msgspec accepts as is."""
        try:
            return cls(_TOP_LEVEL.decode(raw))  # type: ignore[arg-type]
        except msgspec.DecodeError:  # also msgspec.ValidationError: not an object
            return None

    def __getitem__(self, key: str) -> Any:
        values = self._values
        if key in values:
            return values[key]
        piece = self._slices[key]  # KeyError for a field that is not there
        try:
            value = _VALUE.decode(piece)  # type: ignore[arg-type]
        except msgspec.DecodeError:  # a number beyond a double (the scan skims numbers)
            value = loads(bytes(piece))  # type: ignore[arg-type]
        values[key] = value
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """KEY's value, decoded, or DEFAULT when the body has no such field."""
        return self[key] if key in self._slices else default

    def pop(self, key: str, *default: Any) -> Any:
        if key not in self._slices:
            if default:
                return default[0]
            raise KeyError(key)
        value = self[key]
        del self[key]
        return value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self._slices:
            self[key] = default
        return self[key]

    def keys(self) -> KeysView[str]:
        return self._slices.keys()

    def values(self) -> ValuesView[Any]:
        return self.to_dict().values()

    def items(self) -> ItemsView[str, Any]:
        return self.to_dict().items()

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self._slices:
            self._slices[key] = None
        self._values[key] = value
        self._assigned.add(key)

    def __delitem__(self, key: str) -> None:
        del self._slices[key]
        self._values.pop(key, None)
        self._assigned.discard(key)

    def __contains__(self, key: object) -> bool:
        return key in self._slices

    def __iter__(self) -> Iterator[str]:
        return iter(self._slices)

    def __len__(self) -> int:
        return len(self._slices)

    def __repr__(self) -> str:
        return f"LazyBody({list(self._slices)}, decoded={list(self._values)})"

    def decoded(self, key: str) -> bool:
        """Whether KEY's field was read or set (its decoded value is the truth from now on)."""
        return key in self._values

    def outline(self, key: str, decoder: msgspec.json.Decoder[Any]) -> Any:
        """KEY's field (which must be present and not yet decoded) through DECODER, a typed msgspec
        decoder: it builds only what its types declare and skims the rest. Nothing is kept.
        Raises msgspec.ValidationError when the field does not have those types."""
        assert key not in self._values, f"{key} is already decoded; read it instead"
        return decoder.decode(self._slices[key])  # type: ignore[arg-type]

    def undecoded(self, key: str) -> bytes:
        """KEY's field (which must be present and not yet decoded) as the JSON bytes it came as."""
        assert key not in self._values, f"{key} is already decoded; read it instead"
        return bytes(self._slices[key])  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """The whole body as plain Python objects (decodes every field)."""
        return {key: self[key] for key in self._slices}

    def encode(self) -> bytes:
        """The body as JSON: assigned fields re-encoded, every other one copied byte for byte as it
        came, even when it was read. A field changed in place must be assigned back to be written."""
        values, assigned = self._values, self._assigned
        parts: list[Any] = [b"{"]
        for key, piece in self._slices.items():
            if len(parts) > 1:
                parts.append(b",")
            parts += (_KEYS.get(key) or _encoded_key(key), dumps_bytes(values[key]) if key in assigned else piece)
        parts.append(b"}")
        return b"".join(parts)


_KEYS: dict[str, bytes] = {}  # `"key":` as JSON, for the keys bodies keep using


def _encoded_key(key: str) -> bytes:
    encoded = dumps_bytes(key) + b":"
    if len(_KEYS) < 1024:  # bounded: keys come from clients
        _KEYS[key] = encoded
    return encoded


MutableMapping.register(LazyBody)
