"""The built-in matchers. Each compiles its option from the rules file into a test of an exchange."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from router.protocols.base import Request
from router.rules.globs import compile_glob, compile_globs, compile_regex
from router.specs import MatcherSpec, Test

STRING_OR_LIST = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
    "description": "a string or a list of strings",
}
RANGE = {
    "anyOf": [
        {"type": "integer", "minimum": 0},
        {
            "type": "object",
            "properties": {"min": {"type": "integer", "minimum": 0}, "max": {"type": "integer", "minimum": 0}},
            "additionalProperties": False,
            "minProperties": 1,
        },
    ],
    "description": "a number, or {min: N, max: M} (either bound may be left out)",
}


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _globs(value: str | list[str], ignore_case: bool = False) -> Any:
    """One compiled pattern for a glob or a list of them."""
    return compile_globs(_as_list(value), ignore_case)


def _in_range(value: Any) -> Any:
    """A predicate on integers from a number or {min, max}."""
    if isinstance(value, int):
        return lambda n: n == value
    low, high = value.get("min", 0), value.get("max")
    if high is not None and high < low:
        raise ValueError(f"range min {low} is above max {high}")
    return lambda n: n >= low and (high is None or n <= high)


def match_path(value: str | list[str]) -> Test:
    """Request path (query string excluded) against one or more globs."""
    globs = _globs(value)
    return lambda request: globs.match(request.path) is not None


def match_method(value: str | list[str]) -> Test:
    """HTTP method, one or a list."""
    methods = {m.upper() for m in _as_list(value)}
    return lambda request: request.method in methods


def match_model(value: str | list[str]) -> Test:
    """Model name against globs, ignoring case. Requests without a model never match."""
    globs = _globs(value, ignore_case=True)
    return lambda request: request.view.model is not None and globs.match(request.view.model) is not None


def _contains(text_of: Callable[[Request], str], value: str | list[str]) -> Test:
    needles = _as_list(value)
    return lambda request: any(needle in text_of(request) for needle in needles)


def _searches(text_of: Callable[[Request], str], value: str) -> Test:
    regex = compile_regex(value)
    return lambda request: regex.search(text_of(request)) is not None


def match_system(value: str | list[str]) -> Test:
    """Any of the substrings occurs in the system text (system field and role:"system" messages)."""
    return _contains(lambda request: request.view.system, value)


def match_system_regex(value: str) -> Test:
    """A regular expression found in the system text."""
    return _searches(lambda request: request.view.system, value)


def match_user(value: str | list[str]) -> Test:
    """Any of the substrings occurs in the text of the last user message."""
    return _contains(lambda request: request.view.user, value)


def match_user_regex(value: str) -> Test:
    """A regular expression found in the text of the last user message."""
    return _searches(lambda request: request.view.user, value)


def match_header(value: dict[str, str | None]) -> Test:
    """Each named header matches its glob (ignoring case); null means the header must be absent."""
    checks = [(name, None if pattern is None else compile_glob(pattern, True)) for name, pattern in value.items()]

    def test(request: Request) -> bool:
        for name, glob in checks:
            present = request.headers.get(name)
            if glob is None:
                if present is not None:
                    return False
            elif present is None or not glob.match(present):
                return False
        return True

    return test


def match_tools(value: int | dict[str, int] | str) -> Test:
    """Tool count (number or range), or a tool name glob that must be declared."""
    if isinstance(value, str):
        glob = compile_glob(value)
        return lambda request: any(glob.match(name) for name in request.view.tool_names)
    in_range = _in_range(value)
    return lambda request: in_range(request.view.tools)


def match_stream(value: bool) -> Test:
    """Whether the request asks for a streamed answer."""
    return lambda request: request.view.stream is value


def match_max_tokens(value: int | dict[str, int]) -> Test:
    """Requested max_tokens, number or range; requests without one never match."""
    in_range = _in_range(value)
    return lambda request: request.view.max_tokens is not None and in_range(request.view.max_tokens)


def match_json_output(value: bool) -> Test:
    """Whether the request asks for a structured (JSON) answer, in its protocol's own way."""
    return lambda request: request.view.json_requested is value


def match_client(value: str | list[str]) -> Test:
    """Client (e.g. claude-code) or protocol (e.g. anthropic) name against globs."""
    globs = _globs(value, ignore_case=True)
    return lambda request: globs.match(request.client) is not None or globs.match(request.protocol.name) is not None


BUILTIN_MATCHERS = [
    MatcherSpec("path", STRING_OR_LIST, match_path, "glob on the request path, e.g. /v1/messages*"),
    MatcherSpec("method", STRING_OR_LIST, match_method, "HTTP method, e.g. HEAD"),
    MatcherSpec("model", STRING_OR_LIST, match_model, "glob on the model name, case-insensitive"),
    MatcherSpec("system", STRING_OR_LIST, match_system, "substring of the system text"),
    MatcherSpec("system_regex", {"type": "string"}, match_system_regex, "regex searched in the system text"),
    MatcherSpec("user", STRING_OR_LIST, match_user, "substring of the last user message"),
    MatcherSpec("user_regex", {"type": "string"}, match_user_regex, "regex searched in the last user message"),
    MatcherSpec(
        "header",
        {"type": "object", "additionalProperties": {"type": ["string", "null"]}, "minProperties": 1},
        match_header,
        "{header-name: glob}; null means absent",
    ),
    MatcherSpec(
        "tools",
        {"anyOf": [*RANGE["anyOf"], {"type": "string"}], "description": "a number, {min, max}, or a tool name"},
        match_tools,
        "tool count, range, or a declared tool name",
    ),
    MatcherSpec("stream", {"type": "boolean"}, match_stream, "true for streaming requests"),
    MatcherSpec("max_tokens", RANGE, match_max_tokens, "requested max_tokens, number or range"),
    MatcherSpec("json_output", {"type": "boolean"}, match_json_output, "true when the request asks for a JSON answer"),
    MatcherSpec("client", STRING_OR_LIST, match_client, "client or protocol name, e.g. claude-code, anthropic"),
]
