"""router.schema_example: a valid example for every schema the agents send, and prompts that ask for JSON in words."""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import uuid
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.schema_example import PLACEHOLDER, example_from_schema, prompt_asks_for_json

FORMAT_CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER
# on a failure, hypothesis's pytest plugin imports libcst, which warns about mypy_extensions: under the project's
# filterwarnings = error that ends the whole run with an INTERNALERROR instead of reporting the falsifying example
HYPOTHESIS_REPORT_WARNING = "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"


def as_draft_2020(schema: Any) -> Any:
    """A Gemini (OpenAPI-style) schema in draft 2020-12 words, for the validator: lower-case types, nullable."""
    if isinstance(schema, list):
        return [as_draft_2020(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: as_draft_2020(v) if k not in ("enum", "const", "required") else v for k, v in schema.items()}
    if isinstance(out.get("type"), str):
        out["type"] = [out["type"].lower(), "null"] if out.pop("nullable", False) else out["type"].lower()
    return out


def assert_valid(schema: Any, value: Any, validator: type = jsonschema.Draft202012Validator) -> None:
    """VALUE is valid against SCHEMA, formats included; the message names the first error."""
    errors = list(validator(schema, format_checker=FORMAT_CHECKER).iter_errors(value))
    assert not errors, f"{value!r} against {schema!r}: {errors[0].message}"


# Schemas found in /work/shared/captures (other/ and claude-code/), copied by hand.
CLAUDE_CODE_TITLE = {
    "type": "object",
    "properties": {"title": {"type": "string"}},
    "required": ["title"],
    "additionalProperties": False,
}
CODEX_TITLE = {
    "type": "object",
    "properties": {"title": {"type": "string", "minLength": 1, "maxLength": 36}},
    "required": ["title"],
    "additionalProperties": False,
}
GEMINI_CLASSIFIER = {  # Gemini CLI's model router, responseJsonSchema (as captured)
    "type": "OBJECT",
    "properties": {
        "complexity_reasoning": {"type": "STRING", "description": "Brief explanation for the score."},
        "complexity_score": {"type": "INTEGER", "description": "Complexity score from 1-100."},
    },
    "required": ["complexity_reasoning", "complexity_score"],
}
GEMINI_CLASSIFIER_OTHER_VERSION = {  # the same classifier as described in the brief: `reasoning`
    "type": "OBJECT",
    "properties": {"reasoning": {"type": "STRING"}, "complexity_score": {"type": "INTEGER"}},
    "required": ["reasoning", "complexity_score"],
}


@pytest.mark.parametrize("schema", [CLAUDE_CODE_TITLE, CODEX_TITLE, GEMINI_CLASSIFIER, GEMINI_CLASSIFIER_OTHER_VERSION])
def test_captured_schemas_get_a_valid_example(schema: dict) -> None:
    assert_valid(as_draft_2020(schema), example_from_schema(schema))


def test_title_schemas() -> None:
    assert example_from_schema(CLAUDE_CODE_TITLE) == {"title": PLACEHOLDER}
    title = example_from_schema(CODEX_TITLE)["title"]
    assert 1 <= len(title) <= 36 and title == PLACEHOLDER[:36]


@pytest.mark.parametrize("schema", [GEMINI_CLASSIFIER, GEMINI_CLASSIFIER_OTHER_VERSION])
def test_gemini_classifier_score_is_within_1_to_100(schema: dict) -> None:
    value = example_from_schema(schema)
    assert set(value) == set(schema["required"])
    assert isinstance(value["complexity_score"], int) and not isinstance(value["complexity_score"], bool)
    assert 1 <= value["complexity_score"] <= 100
    assert all(isinstance(v, str) and v for k, v in value.items() if k != "complexity_score")


# Numbers


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "integer"}, 1),
        ({"type": "number"}, 1),
        ({"type": "INTEGER"}, 1),
        ({"type": "integer", "minimum": 0}, 1),
        ({"type": "integer", "minimum": -5, "maximum": 100}, 1),
        ({"type": "integer", "minimum": 5}, 5),
        ({"type": "integer", "minimum": 1, "maximum": 1}, 1),
        ({"type": "integer", "minimum": -10, "maximum": 0}, -10),  # 1 is out of range: the smallest in range
        ({"type": "integer", "maximum": -3}, -3),
        ({"type": "integer", "exclusiveMinimum": 1}, 2),
        ({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 2}, 1),
        ({"type": "integer", "minimum": -3, "exclusiveMaximum": 1}, -3),
        ({"type": "integer", "minimum": 1.5}, 2),
        ({"type": "integer", "multipleOf": 5}, 5),
        ({"type": "integer", "minimum": 5, "maximum": 10, "multipleOf": 3}, 6),
        ({"type": "integer", "minimum": -20, "maximum": -7, "multipleOf": 4}, -20),
        ({"type": "integer", "multipleOf": 2.5}, 5),  # an integer multiple of 5/2 is a multiple of 5
        ({"type": "number", "multipleOf": 0.25, "exclusiveMinimum": 0, "maximum": 0.5}, 0.25),
        ({"type": "number", "minimum": 2.5}, 2.5),
        ({"type": "number", "exclusiveMinimum": 2.5}, 3),
        ({"type": "number", "minimum": 0.1, "maximum": 0.9}, 0.1),
    ],
)
def test_numbers(schema: dict, expected: float) -> None:
    value = example_from_schema(schema)
    assert value == expected and not isinstance(value, bool)
    assert_valid(as_draft_2020(schema), value)


def test_number_with_no_integer_in_an_open_range() -> None:
    schema = {"type": "number", "exclusiveMinimum": 0.1, "exclusiveMaximum": 0.2}
    value = example_from_schema(schema)
    assert 0.1 < value < 0.2
    assert_valid(schema, value)


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "integer", "minimum": 1, "exclusiveMinimum": True}, 2),
        ({"type": "integer", "minimum": 1, "exclusiveMinimum": False}, 1),
        ({"type": "integer", "maximum": 1, "exclusiveMaximum": True}, 0),
        ({"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 10, "exclusiveMaximum": True}, 1),
    ],
)
def test_draft_4_exclusive_flags(schema: dict, expected: int) -> None:
    value = example_from_schema(schema)
    assert value == expected
    assert_valid(schema, value, jsonschema.Draft4Validator)


def test_gemini_numbers_as_strings() -> None:
    schema = {"type": "ARRAY", "items": {"type": "INTEGER", "minimum": "3"}, "minItems": "2", "maxItems": "2"}
    assert example_from_schema(schema) == [3, 3]


# Strings


def test_string_lengths() -> None:
    assert example_from_schema({"type": "string"}) == PLACEHOLDER
    assert example_from_schema({"type": "string", "maxLength": 5}) == PLACEHOLDER[:5]
    assert example_from_schema({"type": "string", "maxLength": 0}) == ""
    padded = example_from_schema({"type": "string", "minLength": 30})
    assert len(padded) == 30 and padded.startswith(PLACEHOLDER)
    exact = example_from_schema({"type": "string", "minLength": 40, "maxLength": 40})
    assert len(exact) == 40


@pytest.mark.parametrize(
    ("fmt", "check"),
    [
        ("date-time", datetime.datetime.fromisoformat),
        ("date", datetime.date.fromisoformat),
        ("time", datetime.time.fromisoformat),
        ("email", lambda v: re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", v).group()),
        ("uri", lambda v: re.match(r"https?://\w", v).group()),
        ("url", lambda v: re.match(r"https?://\w", v).group()),
        ("uuid", uuid.UUID),
        ("ipv4", ipaddress.IPv4Address),
    ],
)
def test_string_formats(fmt: str, check: Any) -> None:
    value = example_from_schema({"type": "string", "format": fmt})
    check(value)  # raises when the sample is not of its format
    assert_valid({"type": "string", "format": fmt}, value)


@pytest.mark.parametrize(
    "schema",
    [
        {"pattern": r"^[a-z]+$"},
        {"pattern": r"^\d{3}-\d{4}$"},
        {"pattern": r"^(foo|bar)$"},
        {"pattern": r"^(?:foo|bar)-[0-9]{2,3}$"},
        {"pattern": r"^[A-Z][a-z]{2,}$"},
        {"pattern": r"^[A-Z]{2}\d?\w*$", "minLength": 12, "maxLength": 12},
        {"pattern": r"^[^\s]+$"},
        {"pattern": r"^\w+@\w+\.com$"},
        {"pattern": r"^v\d+\.\d+\.\d+$"},
        {"pattern": r"^[a-f0-9]{8}$"},
        {"pattern": r"^#[0-9A-Fa-f]{6}$"},
        {"pattern": r"ghost"},
        {"pattern": r"^.{3,5}$"},
        {"pattern": r"^[a-z]+$", "minLength": 25, "maxLength": 25},
        {"pattern": r"^x?y*z+$"},
    ],
)
def test_string_patterns(schema: dict) -> None:
    schema = {"type": "string", **schema}
    value = example_from_schema(schema)
    assert re.search(schema["pattern"], value), value
    assert_valid(schema, value)


def test_pattern_tries_the_placeholder_first() -> None:
    assert example_from_schema({"type": "string", "pattern": "^answered"}) == PLACEHOLDER
    assert example_from_schema({"type": "string", "pattern": "^[a-z]+$"}) == "a"


def test_pattern_beyond_the_generator_falls_back_to_the_placeholder() -> None:
    assert example_from_schema({"type": "string", "pattern": r"^(\d)\1$"}) == PLACEHOLDER  # a backreference
    assert example_from_schema({"type": "string", "pattern": "(unclosed"}) == PLACEHOLDER  # not a regex


# Other types, enum, const, type lists, nullable


def test_scalars_enum_const_and_type_lists() -> None:
    assert example_from_schema({"type": "boolean"}) is False
    assert example_from_schema({"type": "BOOLEAN"}) is False
    assert example_from_schema({"type": "null"}) is None
    assert example_from_schema({"enum": ["low", "high"]}) == "low"
    assert example_from_schema({"type": "string", "enum": [1, "b"]}) == "b"  # the first member the schema accepts
    assert example_from_schema({"type": "STRING", "format": "enum", "enum": ["A", "B"]}) == "A"
    assert example_from_schema({"const": {"k": [1]}}) == {"k": [1]}
    assert example_from_schema({"type": ["null", "integer"]}) == 1
    assert example_from_schema({"type": ["string", "null"], "maxLength": 3}) == PLACEHOLDER[:3]
    assert example_from_schema({"type": "STRING", "nullable": True}) == PLACEHOLDER
    assert example_from_schema({"type": "INTEGER", "nullable": True, "minimum": 4}) == 4


# Combinations and references


def test_any_of_and_one_of() -> None:
    assert example_from_schema({"anyOf": [{"type": "null"}, {"type": "integer"}]}) is None
    assert example_from_schema({"anyOf": [{"type": "integer", "minimum": 5}], "maximum": 7}) == 5
    # the first branch's value would match both branches, so the second one is taken
    one_of = {"oneOf": [{"type": "string", "maxLength": 3}, {"type": "string"}]}
    assert example_from_schema(one_of) == PLACEHOLDER
    assert_valid(one_of, example_from_schema(one_of))
    # a branch that cannot be satisfied beside its sibling keywords is skipped
    siblings = {"type": "integer", "oneOf": [{"maximum": -1, "minimum": 0}, {"minimum": 3}]}
    assert example_from_schema(siblings) == 3
    assert_valid(siblings, example_from_schema(siblings))


def test_all_of_is_merged() -> None:
    schema = {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "integer", "minimum": 2}}, "required": ["a"]},
            {"properties": {"a": {"maximum": 9, "multipleOf": 4}, "b": {"type": "string", "maxLength": 4}}},
            {"required": ["b"]},
        ]
    }
    value = example_from_schema(schema)
    assert value == {"a": 4, "b": PLACEHOLDER[:4]}
    assert_valid(schema, value)
    numbers = {"allOf": [{"type": ["number", "string"]}, {"type": "integer"}, {"multipleOf": 2}, {"multipleOf": 3}]}
    assert example_from_schema(numbers) == 6
    bounds = {"allOf": [{"minimum": 5, "maximum": 9}, {"type": "integer", "minimum": 2, "exclusiveMaximum": 20}]}
    assert example_from_schema(bounds) == 5
    lengths = {"allOf": [{"type": "string", "maxLength": 3}, {"maxLength": 10, "minLength": 2}]}
    assert example_from_schema(lengths) == PLACEHOLDER[:3]
    assert example_from_schema({"allOf": [{"type": "integer"}, {"type": "string"}]}) is not None  # nothing fits


def test_refs_to_defs_and_definitions() -> None:
    schema = {
        "$defs": {"score": {"type": "integer", "minimum": 3}},
        "definitions": {"name": {"type": "string", "maxLength": 2}},
        "type": "object",
        "properties": {"s": {"$ref": "#/$defs/score", "maximum": 5}, "n": {"$ref": "#/definitions/name"}},
        "required": ["s", "n"],
    }
    value = example_from_schema(schema)
    assert value == {"s": 3, "n": PLACEHOLDER[:2]}
    assert_valid(schema, value)
    with_all_of = {"$defs": {"a": {"minimum": 8}}, "allOf": [{"$ref": "#/$defs/a"}, {"type": "integer"}]}
    assert example_from_schema(with_all_of) == 8


def test_recursive_refs_end() -> None:
    node = {"type": "object", "properties": {"v": {"type": "integer"}, "next": {"$ref": "#/$defs/node"}}}
    tree = {"$defs": {"node": node}, "$ref": "#/$defs/node"}
    value = example_from_schema(tree)
    assert value == {"v": 1}
    assert_valid(tree, value)
    listed = {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}, "required": ["kids"]}
    assert example_from_schema(listed) == {"kids": []}
    nullable = {"$defs": {"n": {"anyOf": [{"$ref": "#/$defs/n"}, {"type": "null"}]}}, "$ref": "#/$defs/n"}
    assert example_from_schema(nullable) is None
    assert example_from_schema({"$ref": "#"}) == {}  # only recursion: nothing to make
    required_loop = {"type": "object", "properties": {"me": {"$ref": "#"}}, "required": ["me"]}
    assert example_from_schema(required_loop) == {}


# Objects and arrays


def test_objects() -> None:
    props = {"a": {"type": "integer"}, "b": {"type": "boolean"}, "c": {}}
    assert example_from_schema({"type": "object", "properties": props}) == {"a": 1, "b": False, "c": PLACEHOLDER}
    assert example_from_schema({"type": "object", "properties": props, "required": ["b"]}) == {"b": False}
    # minProperties: required first, then the listed ones, then extra keys
    at_least_two = {"properties": props, "required": ["c"], "minProperties": 2}
    assert example_from_schema(at_least_two) == {"c": PLACEHOLDER, "a": 1}
    many = {"type": "object", "properties": {"a": {}}, "minProperties": 3, "additionalProperties": {"type": "integer"}}
    value = example_from_schema(many)
    assert len(value) == 3 and value["a"] == PLACEHOLDER
    assert_valid(many, value)
    closed = {"type": "object", "required": ["x"], "additionalProperties": False, "properties": {"x": {"type": "null"}}}
    assert example_from_schema(closed) == {"x": None}
    assert example_from_schema({"type": "object", "required": ["z"], "additionalProperties": {"type": "integer"}}) == {
        "z": 1
    }


def test_arrays() -> None:
    assert example_from_schema({"type": "array"}) == []
    assert example_from_schema({"type": "array", "items": {"type": "integer"}, "minItems": 2}) == [1, 1]
    assert example_from_schema({"type": "array", "minItems": 5, "maxItems": 2}) == [PLACEHOLDER] * 2  # unsatisfiable
    tuple_schema = {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}], "items": False}
    assert example_from_schema(tuple_schema) == [1, False]
    draft4_tuple = {"type": "array", "items": [{"type": "null"}, {"type": "string", "maxLength": 1}]}
    assert example_from_schema(draft4_tuple) == [None, "a"]


@pytest.mark.parametrize(
    "items",
    [
        {"type": "integer"},
        {"type": "integer", "minimum": 3, "maximum": 5},
        {"type": "string"},
        {"type": "string", "minLength": 1, "maxLength": 1},
        {"type": "string", "format": "uuid"},
        {"type": "string", "pattern": "^(red|green|blue)$"},
        {"enum": ["x", "y", "z"]},
        {"type": "number", "multipleOf": 0.5, "maximum": 1},
        {"type": "object", "properties": {"id": {"type": "integer"}, "on": {"type": "boolean"}}, "required": ["id"]},
        {"type": "array", "items": {"type": "integer"}, "minItems": 1},
    ],
)
def test_unique_items_are_distinct(items: dict) -> None:
    schema = {"type": "array", "items": items, "minItems": 3, "uniqueItems": True}
    value = example_from_schema(schema)
    assert len(value) == 3
    assert_valid(schema, value)


# Odd input never raises


@pytest.mark.parametrize(
    "schema",
    [
        None,
        True,
        False,
        "string",
        5,
        [],
        {},
        {"type": "weird"},
        {"type": 5},
        {"type": []},
        {"anyOf": "x"},
        {"oneOf": []},
        {"allOf": [None, 3]},
        {"minLength": "abc", "maxLength": -4},
        {"minimum": "x", "type": "integer"},
        {"multipleOf": 0, "type": "number"},
        {"$ref": "#/nope/nothing"},
        {"$ref": "https://example.com/schema.json"},
        {"$ref": 7},
        {"properties": [], "required": "a"},
        {"type": "array", "items": "x", "minItems": 10**12},
        {"type": "string", "minLength": 10**12},
        {"enum": []},
        {"format": ["date"]},
        {"type": "integer", "minimum": 1e308, "maximum": 1e308},
        {"type": "number", "minimum": float("inf")},
    ],
)
def test_odd_schemas_do_not_raise(schema: Any) -> None:
    example_from_schema(schema)


def test_defaults_for_empty_schemas() -> None:
    assert example_from_schema({}) == {}
    assert example_from_schema(True) == {}
    assert example_from_schema(None) == {}
    assert example_from_schema({"properties": {"x": {}, "y": True}}) == {"x": PLACEHOLDER, "y": PLACEHOLDER}
    assert example_from_schema({"type": "array", "items": {}, "minItems": 1}) == [PLACEHOLDER]


def test_deep_nesting_does_not_raise() -> None:
    schema: dict = {"type": "string"}
    for _ in range(5000):
        schema = {"type": "array", "items": schema, "minItems": 1}
    example_from_schema(schema)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)
KEYWORDS = st.sampled_from(
    [
        "type",
        "properties",
        "required",
        "items",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "minimum",
        "maxLength",
        "pattern",
        "nullable",
        "additionalProperties",
        "prefixItems",
        "multipleOf",
        "exclusiveMinimum",
    ]
)
ODD_SCHEMAS = st.recursive(
    JSON_VALUES,
    lambda inner: st.dictionaries(KEYWORDS, inner, max_size=4) | st.lists(inner, max_size=3),
    max_leaves=12,
)


@pytest.mark.filterwarnings(HYPOTHESIS_REPORT_WARNING)
@given(ODD_SCHEMAS)
@settings(max_examples=300, deadline=None)
def test_any_json_as_schema_does_not_raise(schema: Any) -> None:
    json.dumps(example_from_schema(schema))  # and the value is JSON


# Property: every satisfiable schema gets a valid example

NAMES = st.sampled_from(["a", "b", "title", "score", "tags", "x-y"])
SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3)
# (pattern, shortest, longest): every length in between has a match the generator finds
PATTERNS = [
    (r"^[a-z]+$", 1, None),
    (r"^[A-Z]{2,4}\d*$", 2, None),
    (r"ab", 2, None),
    (r"^\w+@\w+\.com$", 7, 7),
    (r"^(foo|bar|bazz)$", 3, 3),
    (r"^\d{3}-\d{4}$", 8, 8),
    (r"^[^ ]+$", 1, None),
    (r"^(v\d+\.){2}\d+$", 7, 7),
    (r"^x?y*z$", 1, None),
]


@st.composite
def string_schemas(draw: Any, distinct: bool = False) -> dict:
    """A string schema, with lengths, a pattern or a format; DISTINCT: one that has at least 3 values."""
    schema: dict[str, Any] = {"type": "string"}
    kind = draw(st.sampled_from(["lengths", "lengths"] if distinct else ["lengths", "pattern", "format"]))
    shortest, longest = 0, None
    if kind == "pattern":
        schema["pattern"], shortest, longest = draw(st.sampled_from(PATTERNS))
    elif kind == "format":
        schema["format"] = draw(st.sampled_from(["date-time", "date", "email", "uri", "uuid", "ipv4"]))
        return schema
    lo = draw(st.none() | st.integers(0, min(longest or 40, 40)))
    hi = draw(st.none() | st.integers(max(lo or 0, shortest, int(distinct)), 60))
    schema.update({k: v for k, v in (("minLength", lo), ("maxLength", hi)) if v is not None})
    return schema


@st.composite
def number_schemas(draw: Any) -> dict:
    """An integer or number schema with bounds (inclusive or not) wide enough to hold a value, and multipleOf."""
    integer = draw(st.booleans())
    step = draw(st.none() | st.sampled_from([1, 2, 3, 7] if integer else [0.5, 0.25, 2, 1.5]))
    schema: dict[str, Any] = {"type": "integer" if integer else "number"}
    if step:
        schema["multipleOf"] = step
    lo = draw(st.integers(-400, 400)) / (1 if integer else 4)
    width = 2 * (step or 1) if integer or step else draw(st.sampled_from([0.01, 0.5, 3]))
    hi = lo + width + draw(st.integers(0, 50))
    for key, value in (("minimum", lo), ("maximum", hi)):
        bound = draw(st.sampled_from(["none", "inclusive", "exclusive"]))
        if bound != "none":
            schema[key if bound == "inclusive" else "exclusive" + key.capitalize()] = value
    return schema


LEAVES = (
    string_schemas()
    | number_schemas()
    | st.sampled_from([{"type": "boolean"}, {"type": "null"}, {}])
    | st.lists(SCALARS, min_size=1, max_size=4).map(lambda values: {"enum": values})
    | SCALARS.map(lambda value: {"const": value})
)
DISTINCT_ITEMS = (  # item schemas that have at least 3 distinct values
    string_schemas(distinct=True)
    | st.integers(-5, 5).map(lambda n: {"type": "integer", "minimum": n})
    | st.just({"enum": ["x", "y", 3, None]})
    | st.just({"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]})
)


@st.composite
def object_schemas(draw: Any, children: Any) -> dict:
    """An object schema: some properties, maybe required ones, closed or open, maybe minProperties."""
    props = draw(st.dictionaries(NAMES, children, max_size=4))
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if draw(st.booleans()):
        schema["required"] = draw(st.lists(st.sampled_from(sorted(props)), unique=True)) if props else []
    extra = draw(st.sampled_from(["open", "closed", "schema"]))
    if extra == "closed":
        schema["additionalProperties"] = False
    elif extra == "schema":
        schema["additionalProperties"] = draw(children)
    if draw(st.booleans()):
        schema["minProperties"] = draw(st.integers(0, len(props) if extra == "closed" else 5))
    return schema


@st.composite
def array_schemas(draw: Any, children: Any) -> dict:
    """An array schema: items, minItems/maxItems, maybe uniqueItems over items that have enough distinct values."""
    unique = draw(st.booleans())
    schema: dict[str, Any] = {"type": "array", "items": draw(DISTINCT_ITEMS if unique else children)}
    lo = draw(st.integers(0, 3))
    schema.update(minItems=lo, **({"maxItems": draw(st.integers(lo, 6))} if draw(st.booleans()) else {}))
    if unique:
        schema["uniqueItems"] = True
    return schema


@st.composite
def one_of_schemas(draw: Any, children: Any) -> dict:
    """oneOf over branches of different types, so that a value of one branch never matches another."""
    families = {
        "string": string_schemas(),
        "number": number_schemas(),
        "boolean": st.just({"type": "boolean"}),
        "null": st.just({"type": "null"}),
        "object": object_schemas(children),
        "array": array_schemas(children),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(families)), min_size=1, max_size=3, unique=True))
    return {"oneOf": [draw(families[name]) for name in chosen]}


SATISFIABLE = st.recursive(
    LEAVES,
    lambda children: (
        object_schemas(children)
        | array_schemas(children)
        | st.lists(children, min_size=1, max_size=3).map(lambda branches: {"anyOf": branches})
        | one_of_schemas(children)
    ),
    max_leaves=12,
)


@pytest.mark.filterwarnings(HYPOTHESIS_REPORT_WARNING)
@given(SATISFIABLE)
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_satisfiable_schemas_get_a_valid_example(schema: dict) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    value = example_from_schema(schema)
    assert jsonschema.Draft202012Validator(schema).is_valid(value), (schema, value)
    assert_valid(schema, value)  # formats too
    assert example_from_schema(schema) == value  # deterministic


# prompt_asks_for_json


@pytest.mark.parametrize(
    "text",
    [
        'Return JSON with a single "title" field',
        'Return JSON with a single "title" field. Capitalize the first letter of the title.',
        "Respond with a JSON object",
        "Your response must be valid JSON",
        "Output only JSON",
        "Summarize the change in JSON format.",
        "List the files as JSON:",
        "reply in json",
        "Respond *only* in JSON format according to the following schema.",
        "Please return a valid JSON object and nothing else.",
        "Answer as JSON",
        "Format your response as JSON.",
        "Respond using the following JSON structure:",
        "Reply in the following JSON format:\n{...}",
    ],
)
def test_prompt_asks_for_json(text: str) -> None:
    assert prompt_asks_for_json(text)
    assert prompt_asks_for_json(f"You are a helpful assistant.\n\n{text}\n\nThanks.")


@pytest.mark.parametrize(
    "text",
    [
        "edit package.json",
        "add a path alias to tsconfig.json",
        "the JSON parser crashed",
        "the server speaks JSON-RPC",
        "Return the list of files that changed",
        "Respond briefly; the output JSON file is broken",
        "Write a JSON parser in Rust",
        "read the .json config and return the port",
        "Entries keyed `assistant` in JSONL format",
        "Generate a title for this conversation",
        "Convert the YAML in this file to JSON",
        "Return the port from the JSON config",
        "",
    ],
)
def test_prompt_does_not_ask_for_json(text: str) -> None:
    assert not prompt_asks_for_json(text)


def test_prompt_asks_for_json_deep_inside_a_long_prompt() -> None:
    filler = "Use the tools to read files; JSON-RPC is spoken by the language server, see package.json. " * 3000
    assert not prompt_asks_for_json(filler)
    assert prompt_asks_for_json(filler + 'Return JSON with a single "title" field.' + filler)
    assert not prompt_asks_for_json(filler + "Return" + " the list of files" * 10 + " as a JSON-RPC call")
