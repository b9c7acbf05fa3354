"""A LazyBody (router/lazybody.py) must be indistinguishable from the fully parsed body: the same
matcher view or the same error, the same edited document, and untouched fields forwarded byte
for byte."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from router.edits import BodyEdits
from router.errors import BadRequest
from router.exchange import Exchange
from router.jsonutil import loads
from router.lazybody import LazyBody
from router.protocols.anthropic import AnthropicMessages
from tests.test_fuzz_input import FIELDS, ONE_FIELD_WRONG
from tests.test_rewrite import CLAUDE_CODE_BODY, REWRITE

PROTOCOL = AnthropicMessages()
BLOCK = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "tool_result", "image", 3]), "text": st.one_of(st.text(max_size=20), st.integers())}),
    st.fixed_dictionaries({"type": st.just("tool_result"), "tool_use_id": st.text(max_size=5), "content": st.text(max_size=30)}),
    st.integers(),
    st.none(),
)
GOOD_MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]), "content": st.one_of(st.text(max_size=30), st.lists(BLOCK, max_size=4))})
BAD_MESSAGE = st.one_of(st.fixed_dictionaries({"role": st.one_of(st.integers(), st.none())}, optional={"content": st.text(max_size=5)}), st.integers())
MESSAGE = st.one_of(GOOD_MESSAGE, GOOD_MESSAGE, GOOD_MESSAGE, BAD_MESSAGE)
TOOL = st.one_of(
    st.fixed_dictionaries({"name": st.one_of(st.text(max_size=10), st.integers()), "input_schema": st.just({"type": "object"})}),
    st.fixed_dictionaries({}, optional={"description": st.text(max_size=5)}),
    st.text(max_size=5),
)
# well-formed at the top (ONE_FIELD_WRONG and FIELDS mistype those), anything inside
CLAUDE_LIKE = st.fixed_dictionaries(
    {"model": st.sampled_from(["claude-opus-4-7", "claude-haiku-4-5"]), "messages": st.lists(MESSAGE, max_size=5), "max_tokens": st.integers(1, 64000)},
    optional={
        "stream": st.booleans(),
        "system": st.one_of(st.text(max_size=30), st.lists(BLOCK, max_size=3)),
        "tools": st.one_of(st.lists(TOOL, max_size=3), st.none(), st.just(False)),
        "metadata": st.fixed_dictionaries({"user_id": st.text(max_size=10)}),
    },
)
BODIES = CLAUDE_LIKE.map(lambda d: json.dumps(d).encode()) | FIELDS.map(lambda d: json.dumps(d).encode()) | ONE_FIELD_WRONG


def parsed_both_ways(raw: bytes, kind: str = "messages"):
    """(view, client) or the BadRequest text, from the parsed dict and from the LazyBody."""
    results = []
    lazy = LazyBody.split(raw)
    assume(lazy is not None)  # Infinity, NaN: the router parses those whole, as before
    for body in (loads(raw), lazy):
        try:
            results.append(PROTOCOL.parse(kind, body, CIMultiDict({"User-Agent": "claude-cli/2.1.331"})))
        except BadRequest as error:
            results.append(f"400 {error.message}")
    return results


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BODIES, st.sampled_from(["messages", "count_tokens"]))
def test_the_view_and_errors_are_those_of_the_parsed_body(raw, kind):
    if not raw.lstrip().startswith(b"{"):
        return
    from_dict, from_lazy = parsed_both_ways(raw, kind)
    assert from_lazy == from_dict


EDITS = BodyEdits(
    model="local-model",
    drop_prefixes=("x-anthropic-billing-header",),
    drop_fields=("thinking", "output_config.effort", "tools.*.defer_loading", "metadata.user_id"),
    max_tokens=256,
)


def exchange(raw: bytes) -> Exchange:
    ex = Exchange("POST", "/v1/messages", CIMultiDict(), PROTOCOL, "messages")
    ex.raw = raw
    ex.parse()
    return ex


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CLAUDE_LIKE.map(lambda d: {**d, "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}}), st.booleans())
def test_edits_write_the_same_document_as_editing_the_parsed_body(document, fold):
    raw = json.dumps(document).encode()
    try:
        lazy = exchange(raw)
    except BadRequest:
        return
    eager = exchange(raw)
    eager.body = loads(raw)  # assigning drops the LazyBody: this one edits a plain dict
    edits = BodyEdits(**{**EDITS.__dict__, "fold_system_messages": fold})
    edits.apply(lazy)
    edits.apply(eager)
    assert lazy.body_changed == eager.body_changed
    # an integer beyond 64 bits stays as sent in an untouched field; re-serialized, it becomes the
    # double a JavaScript client meant (docs/rules.md): the same number either way
    assert json.loads(lazy.body_bytes(), parse_int=_as_javascript_reads_it) == json.loads(eager.body_bytes())


def _as_javascript_reads_it(digits: str) -> int | float:
    number = int(digits)
    return number if -(2**63) <= number < 2**64 else float(number)


def test_untouched_fields_keep_their_bytes_and_edited_ones_are_rewritten():
    raw = (
        b'{ "model" : "claude-opus-4-7", "max_tokens": 9, "temperature": 1.0e0, "big": 123456789012345678901234567890,\n'
        b' "messages": [ {"role": "user",   "content": "caf\\u00e9 \\ud83d\\ude00"} ], "system": "s" }'
    )
    ex = exchange(raw)
    assert ex.view.user == "café 😀"
    BodyEdits(model="local-model").apply(ex)
    out = ex.body_bytes()
    assert out == (
        b'{"model":"local-model","max_tokens":9,"temperature":1.0e0,"big":123456789012345678901234567890,'
        b'"messages":[ {"role": "user",   "content": "caf\\u00e9 \\ud83d\\ude00"} ],"system":"s"}'
    )


def test_a_field_read_but_not_assigned_is_copied_not_re_encoded():
    lazy = LazyBody.split(b'{"a": [1.50, "\\u00e9"], "b": 1}')
    assert lazy is not None
    assert lazy["a"] == [1.5, "é"] and lazy.decoded("a")
    lazy["b"] = 2
    assert lazy.encode() == b'{"a":[1.50, "\\u00e9"],"b":2}'
    lazy["a"].append(3)  # changed in place and not assigned back: not written (the documented contract)
    assert lazy.encode() == b'{"a":[1.50, "\\u00e9"],"b":2}'
    lazy["a"] = lazy["a"]
    assert lazy.encode() == b'{"a":[1.5,"\xc3\xa9",3],"b":2}'


def test_mapping_behaviour_follows_a_dict():
    lazy = LazyBody.split(b'{"a": 1, "b": {"c": 2}, "d": null}')
    assert lazy is not None
    assert list(lazy) == ["a", "b", "d"] and len(lazy) == 3 and "b" in lazy and "z" not in lazy
    assert lazy.get("z", 5) == 5 and lazy["d"] is None
    with pytest.raises(KeyError):
        lazy["z"]
    del lazy["a"]
    lazy["e"] = [1]
    lazy["b"] = 0
    assert lazy.to_dict() == {"b": 0, "d": None, "e": [1]}
    assert json.loads(lazy.encode()) == {"b": 0, "d": None, "e": [1]}
    assert lazy.pop("e") == [1] and "e" not in lazy


@pytest.mark.parametrize(
    "raw",
    [b"[1, 2]", b'{"a": 1,}', b'{"a": "\\ud83d"}', b'{"a": NaN}', b'{"a": 1}{"b": 2}', b'"text"'],
)
def test_what_msgspec_does_not_accept_as_is_is_parsed_whole(raw):
    assert LazyBody.split(raw) is None


def test_the_whole_body_is_decoded_once_something_asks_for_it_with_the_edits_made_so_far():
    ex = exchange(json.dumps(CLAUDE_CODE_BODY).encode())
    assert isinstance(ex.fields, LazyBody)
    BodyEdits(model="local-model", drop_prefixes=("x-anthropic-billing-header",)).apply(ex)
    body = ex.body
    assert type(body) is dict and ex.fields is body, "from now on edits go to the plain dict"
    assert body["model"] == "local-model" and body["system"] == [{"type": "text", "text": "You are Claude Code."}]
    assert list(body) == list(CLAUDE_CODE_BODY)
    body["messages"].pop()
    assert json.loads(ex.body_bytes())["messages"] == CLAUDE_CODE_BODY["messages"][:-1]


async def test_a_rewritten_turn_forwards_its_messages_as_they_came(make_router, upstream, http):
    """Through the router: the rule rewrites model, system and max_tokens; the conversation
    (whitespace, escapes, number spelling and all) reaches the upstream byte for byte."""
    client = await http(await make_router(REWRITE.replace("fold_system_messages: true", "fold_system_messages: false")))
    messages = b'[ {"role": "user", "content": [ {"type": "text", "text": "na\\u00efve 1e2"} ], "n": 1.50} ]'
    raw = (
        b'{"model": "claude-opus-4-7", "max_tokens": 32000, "messages": ' + messages + b', '
        b'"system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1"}, {"type": "text", "text": "You are Claude Code."}]}'
    )
    response = await client.post("/v1/messages", data=raw, headers={"Content-Type": "application/json"})
    assert response.status == 200, await response.text()
    forwarded = upstream.seen[0].raw
    assert b'"messages":' + messages in forwarded
    body = json.loads(forwarded)
    assert body["model"] == "local-model" and body["max_tokens"] == 256
    assert body["system"] == [{"type": "text", "text": "You are Claude Code."}]


def test_the_default_rules_and_bundled_plugins_forward_a_claude_code_turn_without_decoding_it_whole():
    """Every matcher runs on every request: one that reads `exchange.body` (the codex plugin's did)
    decodes every Claude Code turn whole, ~0.15 ms per 50 KB on an idle router."""
    from router.config import load_config
    from router.plugins import load_plugins
    from tests.claude_code_shapes import main_turn

    registry, plugin_rules = load_plugins().registry()
    config = load_config(None, registry, plugin_rules=plugin_rules)
    assert {"codex-title", "gemini-background", "opencode-title"} <= {rule.name for rule in config.table.rules}
    protocol, kind = registry.protocol_for("POST", "/v1/messages")
    ex = Exchange("POST", "/v1/messages", CIMultiDict({"User-Agent": "claude-cli/2.1.331 (external, cli)"}), protocol, kind)
    ex.raw = json.dumps(main_turn("list the files")).encode()
    ex.parse()
    rule = config.table.match(ex)
    assert rule is not None and rule.name == "main"
    for _, action in rule.actions[:-1]:  # the rewrite; the forward's own edits come from the upstream
        getattr(action, "edits", BodyEdits()).apply(ex)
    config.upstreams[config.default_upstream].edits.apply(ex)
    assert isinstance(ex.fields, LazyBody), "something decoded the whole body"
    assert not ex.fields.decoded("messages") and not ex.fields.decoded("tools")
    sent = json.loads(ex.body_bytes())
    assert sent["model"] == "local-model" and not any("billing" in b.get("text", "") for b in sent["system"])


@pytest.mark.parametrize("field", [b'"model": "claude-\xff"', b'"system": "\xfe"'])
def test_invalid_utf8_in_a_field_the_rules_read_is_a_400(field):
    raw = b'{"max_tokens": 5, "messages": [], "model": "m", ' + field + b"}"
    assert LazyBody.split(raw) is not None, "the split skims strings without checking their UTF-8"
    with pytest.raises(BadRequest, match="not valid JSON"):
        exchange(raw)


def test_tools_sent_again_are_not_skimmed_again_and_bad_ones_never_remembered(monkeypatch):
    from router.protocols import anthropic

    decoded = []
    real = anthropic._TOOL_OUTLINES
    monkeypatch.setattr(anthropic, "_RECENT_TOOL_NAMES", anthropic._RecentToolNames())

    class Counting:
        def decode(self, raw):
            decoded.append(len(raw))
            return real.decode(raw)

    monkeypatch.setattr(anthropic, "_TOOL_OUTLINES", Counting())
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "tools": [{"name": "Bash"}, {"name": "Read"}]}
    for _ in range(3):
        assert exchange(json.dumps(body).encode()).view.tool_names == ("Bash", "Read")
    assert len(decoded) == 1
    renamed = {**body, "tools": [{"name": "Bash"}, {"name": "Write"}]}
    assert exchange(json.dumps(renamed).encode()).view.tool_names == ("Bash", "Write")
    assert len(decoded) == 2
    for _ in range(2):  # a bad list is found by the full check each time, never taken from memory
        with pytest.raises(BadRequest, match="tools.1"):
            exchange(json.dumps({**body, "tools": [{"name": "Bash"}, 7]}).encode())
    assert len(decoded) == 4
