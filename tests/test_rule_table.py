"""The rule table's first-match-wins against the plain definition: the first rule none of whose
conditions fails, for generated tables and requests."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from router.config import parse_config
from router.plugins import builtin_registry
from router.protocols.base import Request, new_request, parse_request

REGISTRY = builtin_registry()
CONDITIONS = {
    "method": st.sampled_from(["POST", "HEAD", "[GET, HEAD]"]),
    "path": st.sampled_from(['"/v1/messages"', '"/v1/*"', '["/a", "/v1/messages/count_tokens"]']),
    "client": st.sampled_from(["claude-code", "anthropic", "[opencode, claude-*]"]),
    "model": st.sampled_from(['"claude-*"', '"*haiku*"', '["x", "local-*"]']),
    "max_tokens": st.sampled_from(["1", "{min: 100}"]),
    "user": st.sampled_from(["quota", '["hi", "there"]']),
}
RULE = st.dictionaries(st.sampled_from(sorted(CONDITIONS)), st.none(), max_size=3).flatmap(
    lambda keys: st.fixed_dictionaries({key: CONDITIONS[key] for key in keys})
)
REQUEST = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["POST", "HEAD", "GET"]),
        "path": st.sampled_from(["/v1/messages", "/v1/messages/count_tokens", "/a", "/other"]),
        "agent": st.sampled_from(["claude-cli/2.1.0", "opencode/1.0", "curl/8"]),
        "model": st.sampled_from(["claude-haiku-4", "claude-sonnet-4", "local-model"]),
        "max_tokens": st.sampled_from([1, 512]),
        "user": st.sampled_from(["quota", "hi", "something else"]),
    }
)


def _table(rules: list[dict[str, str]]):
    lines = ["upstreams: {local: {url: 'http://127.0.0.1:9'}}", "rules:"]
    for index, conditions in enumerate(rules):
        match = ", ".join(f"{key}: {value}" for key, value in conditions.items())
        lines.append(f"  - {{name: r{index}, match: {{{match}}}, action: {{fake: {{text: r{index}}}}}}}")
    lines.append("  - {name: rest, match: {}, action: {fake: {text: rest}}}")
    return parse_config("\n".join(lines), "test", REGISTRY).table


def _exchange(request: dict) -> Request:
    headers = CIMultiDictProxy(CIMultiDict({"User-Agent": request["agent"]}))
    protocol, kind = REGISTRY.protocol_for(request["method"], request["path"])
    body = {
        "model": request["model"],
        "max_tokens": request["max_tokens"],
        "messages": [{"role": "user", "content": request["user"]}],
    }
    raw = json.dumps(body).encode()
    return parse_request(
        new_request(request["method"], request["path"], "", request["path"], headers, raw, protocol, kind)
    )


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(rules=st.lists(RULE, max_size=6), requests=st.lists(REQUEST, min_size=1, max_size=6))
def test_match_is_the_first_rule_whose_conditions_all_hold(rules, requests):
    table = _table(rules)
    for request in requests:
        ex = _exchange(request)
        expected = next(rule for rule in table.rules if all(condition.test(ex) for condition in rule.conditions))
        assert table.match(ex) is expected


def test_requests_on_one_path_from_different_clients_get_their_own_candidates():
    table = _table([{"client": "claude-code"}, {"method": "HEAD"}])
    line = {"method": "POST", "path": "/v1/messages", "model": "m", "max_tokens": 1, "user": "u"}
    assert table.match(_exchange({**line, "agent": "claude-cli/2.1.0"})).name == "r0"
    assert table.match(_exchange({**line, "agent": "curl/8"})).name == "rest"
    assert table.match(_exchange({**line, "agent": "claude-cli/2.1.0"})).name == "r0"
