"""A small valid example of a JSON schema (draft 2020-12, or Gemini's OpenAPI subset); whether a prompt asks for JSON.

Numbers start at 1, not 0: Gemini CLI's classifier leaves `complexity_score` unbounded in its schema but rejects
anything outside 1..100. jsonschema is asked only where there is a choice: enum members, anyOf/oneOf branches, types.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

import jsonschema

try:  # the standard library's own regex parser (private): patterns are read into the tree _build walks
    import re._parser as _regex_parser  # type: ignore[import-not-found]
except ImportError:  # a Python that moved it: patterns fall back to the fixed candidates
    _regex_parser = None

PLACEHOLDER = "answered by ghost-router"
FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "email": "ghost@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "hostname": "example.com",
}
TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
LIMIT = 1000  # lengths and counts beyond this are cut: an odd schema must not make a huge value
_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_SUBSCHEMA = ("items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else")
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_HINTS = {
    "object": ("properties", "required", "additionalProperties", "minProperties"),
    "number": _BOUNDS,
    "string": ("pattern", "format", "minLength", "maxLength"),
    "array": ("items", "prefixItems", "minItems"),
}
_CLASSES = {
    "CATEGORY_DIGIT": "0123456789",
    "CATEGORY_WORD": "abc",
    "CATEGORY_SPACE": " ",
    "CATEGORY_NOT_DIGIT": "abc",
    "CATEGORY_NOT_WORD": "-",
    "CATEGORY_NOT_SPACE": "abc",
}
_S, _JSON = r"[\s*_`]+", r"(?<![\w.$/-])json(?![\w-]|\.\w|\s+(?:parser|parsing|files?|path|schema|lines|library)\b)"
_ASKS_FOR_JSON = re.compile(
    rf"\b(?:return|respond|reply|answer|output|produce|emit|format|provide)(?:{_S}(?:with|in|as|only|just|strictly|a|an"
    rf"|one|single|valid|raw|pure|your|answer|response|result|back))*{_S}{_JSON}"
    rf"|\b(?:response|answer|output|reply|result)s?{_S}(?:must|should|will|has{_S}to|needs{_S}to){_S}be"
    rf"(?:{_S}(?:in|a|an|only|valid|strictly|pure))*{_S}{_JSON}"
    rf"|\b(?:in|using)(?:{_S}(?:the|this|following|valid|strict))*{_S}{_JSON}{_S}(?:format|structure)\b"
    rf"|\bas{_S}(?:valid{_S}|an?{_S})?{_JSON}(?:{_S}object)?\s*(?::|$)",
    re.IGNORECASE | re.MULTILINE,
)


def prompt_asks_for_json(text: str) -> bool:
    """True when TEXT asks in words for a JSON answer: a verb of answering (return, respond, reply, output, ...) then
    JSON after only filler words ("Respond with a JSON object"), "the response must be (valid) JSON", "in (the
    following) JSON format", or "as JSON:" ending a line. JSON inside a name (package.json, JSON-RPC, JSONL) or
    followed by parser/file/schema/path does not count. Only the words around each "json" are read (a 200 KB prompt
    costs ~0.3 ms)."""
    lowered = text.lower()
    at = lowered.find("json")
    while at >= 0:
        if _ASKS_FOR_JSON.search(lowered, max(at - 80, 0), at + 40):
            return True
        at = lowered.find("json", at + 4)
    return False


def example_from_schema(schema: Any) -> Any:
    """A small, deterministic value valid against the whole SCHEMA; never raises (an empty object when lost)."""
    try:
        root = _normalize(schema)
        return _Maker(root).make(root, fallback="object")
    except Exception:  # noqa: BLE001 (_Loop: a schema that only recurses; RecursionError; any odder input)
        return {}


class _Loop(Exception):
    """A $ref that leads back to itself before a value is complete."""


def _as_number(value: Any) -> float | None:
    """VALUE as a finite number (Gemini's int64 fields arrive as strings), else None."""
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.\d*)?([eE][-+]?\d+)?\s*", value):
        value = float(value)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _kinds(value: Any) -> list[str]:
    """The type names of a `type` keyword, lower case (Gemini writes OBJECT, STRING, ...), known ones only."""
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return [n.lower() for n in names if isinstance(n, str) and n.lower() in TYPES]


def _normalize(s: Any) -> Any:
    """SCHEMA in draft 2020-12 words: lower-case types, nullable as a null type, numbers for numeric keywords."""
    if not isinstance(s, dict):
        return s
    out = dict(s)
    for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(flag), bool) and out.pop(flag) and bound in out:  # draft 4: a flag on minimum/maximum
            out[flag] = out.pop(bound)
    for key in (*_LOWER, *_UPPER, "multipleOf"):
        if key in out and ((value := _as_number(out.pop(key))) is not None and (key != "multipleOf" or value > 0)):
            out[key] = value
    if "type" in out:
        kinds = _kinds(out.pop("type")) + (["null"] if out.get("nullable") is True else [])
        out.update({"type": kinds[0] if len(kinds) == 1 else kinds} if kinds else {})
    if isinstance(out.get("items"), list):  # draft 4 tuples
        out["prefixItems"], out["items"] = out.pop("items"), out.pop("additionalItems", True)
    for key, value in out.items():
        if key in _SUBSCHEMA:
            out[key] = _normalize(value)
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems") and isinstance(value, list):
            out[key] = [_normalize(v) for v in value]
        elif key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(value, dict):
            out[key] = {name: _normalize(v) for name, v in value.items()}
    return out


def _merge(a: Any, b: Any) -> Any:
    """Both schemas as one: bounds tighten, required and allOf add up, a second $ref/anyOf/oneOf moves into allOf."""
    if a is False or b is False:
        return False
    if not isinstance(a, dict) or not isinstance(b, dict):
        return b if isinstance(b, dict) else a
    out = dict(a)
    for key, new in b.items():
        old: Any = out.get(key)
        if key not in out:
            out[key] = new
        elif key in ("properties", "patternProperties") and isinstance(old, dict) and isinstance(new, dict):
            out[key] = {**old, **{name: _merge(old[name], v) if name in old else v for name, v in new.items()}}
        elif key in _SUBSCHEMA:
            out[key] = _merge(old, new)
        elif key in ("required", "allOf"):
            out[key] = [*old, *(v for v in new if v not in old)]
        elif key in _LOWER or key in _UPPER:
            out[key] = (max if key in _LOWER else min)(old, new)
        elif key == "type":
            kinds, other = _kinds(old), _kinds(new)
            numeric = {"integer", "number"} & set(kinds) and {"integer", "number"} & set(other)
            both = [k for k in kinds if k in other] + ["integer"] * bool(numeric and "integer" in kinds + other)
            out[key] = list(dict.fromkeys(both))
        elif key == "enum":
            out[key] = [v for v in old if v in new]
        elif key == "multipleOf":
            x, y = Fraction(str(old)), Fraction(str(new))
            step = Fraction(math.lcm(x.numerator, y.numerator), math.gcd(x.denominator, y.denominator))
            out[key] = int(step) if step.denominator == 1 else float(step)
        elif key in ("$ref", "anyOf", "oneOf"):
            out["allOf"] = [*out.get("allOf", []), {key: new}]
        else:
            out[key] = new
    return out


class _Maker:
    """Examples for one root schema; $ref is resolved against it, and candidates are checked against a part of it."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.validator: Any = None

    def ok(self, schema: Any, value: Any) -> bool:
        """Whether VALUE is valid against SCHEMA, a part of the root; True when the schema cannot be checked."""
        try:
            self.validator = self.validator or jsonschema.Draft202012Validator(self.root)
            return self.validator.evolve(schema=schema).is_valid(value)
        except Exception:  # noqa: BLE001 (an invalid schema, an unresolvable $ref: nothing to check against)
            return True

    def deref(self, s: Any, refs: tuple[str, ...]) -> tuple[Any, tuple[str, ...]]:
        """S with its local $ref replaced by the schema it points to; raises _Loop on a ref already being made."""
        while isinstance(s, dict) and isinstance(s.get("$ref"), str):
            ref, rest = s["$ref"], {k: v for k, v in s.items() if k != "$ref"}
            if ref in refs:
                raise _Loop(ref)
            target, parts = (self.root, ref[1:].split("/")[1:]) if ref.startswith("#") else ({}, [])
            for part in parts:
                part = part.replace("~1", "/").replace("~0", "~")
                target = target[int(part)] if isinstance(target, list) else target.get(part, {})
            s, refs = _merge(target, rest), (*refs, ref)
        return s, refs

    def make(self, s: Any, vary: int = 0, refs: tuple[str, ...] = (), fallback: str = "string") -> Any:
        """A value for S; VARY > 0 asks for another (distinct array items); FALLBACK: the type when none is said."""
        s, refs = self.deref(s, refs)
        if not isinstance(s, dict):
            return None if s is False else {} if fallback == "object" else PLACEHOLDER
        for key in ("oneOf", "anyOf"):  # the first branch whose value is valid against the whole schema
            if isinstance(s.get(key), list) and s[key]:
                rest, values = {k: v for k, v in s.items() if k != key}, []
                for branch in s[key]:
                    try:
                        values.append(self.make(_merge(rest, branch), vary, refs, fallback))
                    except _Loop:
                        continue
                    if self.ok(s, values[-1]):
                        return values[-1]
                if not values:
                    raise _Loop(key)
                return values[0]
        if isinstance(s.get("allOf"), list):
            merged = {k: v for k, v in s.items() if k != "allOf"}
            for part in s["allOf"]:
                part, refs = self.deref(part, refs)
                merged = _merge(merged, part)
            return self.make(merged, vary, refs, fallback)
        if "const" in s:
            return s["const"]
        if isinstance(s.get("enum"), list) and s["enum"]:
            members = [v for v in s["enum"] if self.ok(s, v)] or s["enum"]
            return members[vary % len(members)]
        hinted = next((kind for kind, keys in _HINTS.items() if any(key in s for key in keys)), fallback)
        kinds = sorted(_kinds(s.get("type")), key=lambda kind: kind == "null") or [hinted]
        values = [self.make_type(kind, s, vary, refs) for kind in kinds]
        return next((v for v in values if len(values) == 1 or self.ok(s, v)), values[0])

    def make_type(self, kind: str, s: dict, vary: int, refs: tuple[str, ...]) -> Any:
        """A value of type KIND for S."""
        if kind == "object":
            return self.make_object(s, vary, refs)
        if kind == "array":
            prefix = s["prefixItems"] if isinstance(s.get("prefixItems"), list) else []
            count = min(max(_count(s, "minItems", 0), len(prefix)), _count(s, "maxItems", LIMIT))
            step = 1 if s.get("uniqueItems") is True else 0
            return [
                self.make(prefix[i] if i < len(prefix) else s.get("items", {}), vary + i * step, refs)
                for i in range(count)
            ]
        if kind in ("integer", "number"):
            return _number(s, kind == "integer", vary)
        return bool(vary % 2) if kind == "boolean" else None if kind == "null" else _string(s, vary)

    def make_object(self, s: dict, vary: int, refs: tuple[str, ...]) -> dict:
        """Required properties first (every listed one when nothing is required), then more up to minProperties."""
        props = s["properties"] if isinstance(s.get("properties"), dict) else {}
        extra = s.get("additionalProperties", {})
        required = [n for n in s["required"] if isinstance(n, str)] if isinstance(s.get("required"), list) else None
        want = max(len(required or []), _count(s, "minProperties", 0))
        out: dict[str, Any] = {}
        for name in dict.fromkeys([*(required or []), *props]):
            if required is not None and name not in required and len(out) >= want:
                break
            try:
                out[name] = self.make(props.get(name, extra if isinstance(extra, dict) else {}), vary, refs)
            except _Loop:  # an optional property that would hold the schema again
                if required is not None and name in required:
                    raise
        for n in range(want - len(out) if extra is not False else 0):
            out.setdefault(f"key{n}", self.make(extra if isinstance(extra, dict) else {}, vary, refs))
        return out


def _count(s: dict, key: str, default: int) -> int:
    """A length or count keyword of S as an int within 0..LIMIT."""
    return max(0, min(int(s.get(key, default)), LIMIT))


def _number(s: dict, integer: bool, vary: int) -> int | float:
    """The smallest value >= max(lower bound, 1) within the upper bound, else the smallest in range; VARY steps on."""
    if not any(key in s for key in _BOUNDS):
        return 1 + vary
    step = Fraction(str(s.get("multipleOf", 1)))
    step = Fraction(step.numerator) if integer else step  # an integer multiple of p/q is a multiple of p
    exact = not integer and "multipleOf" not in s  # any number will do: a bound itself, or the next integer past it
    lo, lo_x = max((s.get("minimum", -math.inf), False), (s.get("exclusiveMinimum", -math.inf), True))
    hi, hi_x = min((s.get("exclusiveMaximum", math.inf), True), (s.get("maximum", math.inf), False), key=lambda b: b[0])

    def fits(v: Fraction) -> bool:
        return (v > lo or v == lo and not lo_x) and (v < hi or v == hi and not hi_x)

    def first_above(bound: float, strict: bool) -> Fraction:
        if exact and not strict:
            return Fraction(bound)
        return (math.floor(Fraction(bound) / step) + 1 if strict else math.ceil(Fraction(bound) / step)) * step

    value = first_above(max(lo, 1), lo_x and lo >= 1)
    if not fits(value):  # the range lies below 1
        value = first_above(lo, lo_x) if lo > -math.inf else -first_above(-hi, hi_x)
    moved = [v for v in (value + vary * step, value - vary * step) if fits(v)]
    if moved or not exact or lo == -math.inf or hi == math.inf:
        value = moved[0] if moved else value
    else:  # no integer strictly between the bounds
        value = Fraction(lo) + (Fraction(hi) - Fraction(lo)) / (vary + 2)
    return int(value) if value.denominator == 1 else float(value)


def _string(s: dict, vary: int) -> str:
    """The placeholder (or the format's sample) fitted to the lengths; with a pattern, the first candidate it takes."""
    lo, hi = _count(s, "minLength", 0), _count(s, "maxLength", LIMIT)
    base = FORMATS.get(str(s.get("format")), PLACEHOLDER)
    try:
        regex = re.compile(s["pattern"]) if isinstance(s.get("pattern"), str) else None
    except re.error:
        regex = None
    pool = [base] if regex is None else [base, PLACEHOLDER, "a", "0", "ghost", "A1", *_samples(regex.pattern, lo)]
    found = list(dict.fromkeys(t for t in (_fit(c, lo, hi) for c in pool) if regex is None or regex.search(t)))
    if vary < len(found):
        return found[vary]
    text = found[0] if found else base
    tagged = _fit(f"{vary}{text[len(str(vary)) :]}" if vary else text, lo, hi)  # the n-th value starts with n
    if regex is None or regex.search(tagged):
        return tagged
    return found[vary % len(found)] if found else _fit(PLACEHOLDER, lo, hi)


def _fit(text: str, lo: int, hi: int) -> str:
    """TEXT cut to HI characters and padded with "-" to LO."""
    return text[:hi] + "-" * (lo - len(text[:hi]))


def _samples(pattern: str, lo: int) -> list[str]:
    """Strings made for a simple regex (literals, classes, repeats, groups, alternation), none for other regexes."""
    try:
        tree = _regex_parser.parse(pattern)
        extras = dict.fromkeys((0, 1, 2, 3, *range(max(lo - 8, 0), lo + 1)))  # near lo: one may land on it
        return [_build(tree, extra) for extra in extras]
    except (ValueError, LookupError, TypeError, AttributeError):  # a lookaround, a backreference: not made here
        return []


def _build(tree: Any, extra: int) -> str:
    """One string for a parsed regex TREE: repeats used EXTRA more times, the EXTRA-th branch and class member."""
    out = []
    for op, arg in tree:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name in ("ANY", "NOT_LITERAL"):
            out.append("b" if arg == ord("a") else "a")
        elif name == "IN":
            out.append(_pick(arg, extra))
        elif name in ("BRANCH", "SUBPATTERN"):
            out.append(_build(arg[1][extra % len(arg[1])] if name == "BRANCH" else arg[-1], extra))
        elif name.endswith("_REPEAT"):
            piece = _build(arg[2], extra)
            out.append(piece * min(arg[0] + extra, arg[1], LIMIT // max(len(piece), 1) + 1))
        elif name != "AT":  # anchors are met by where the string starts and ends
            raise ValueError(name)
    return "".join(out)


def _pick(items: list, extra: int) -> str:
    """A character of a parsed class: the EXTRA-th choice of its first member, or one outside a negated class."""
    arg, name = items[0][1], str(items[0][0])
    if name == "NEGATE":
        taken = [(a, a) if str(o) == "LITERAL" else a for o, a in items[1:] if str(o) in ("LITERAL", "RANGE")]
        return next((c for c in "a0-_ ~Z" if not any(x <= ord(c) <= y for x, y in taken)), "a")
    if name == "RANGE":
        return chr(arg[0] + extra % (arg[1] - arg[0] + 1))
    choices = _CLASSES.get(str(arg), "a") if name == "CATEGORY" else chr(arg)
    return choices[extra % len(choices)]
