"""Malformed JSON, wrong types, oversized bodies and unknown paths get Anthropic-shaped errors."""

from __future__ import annotations

import io
import json

import pytest

from tests.conftest import RULES, user_message

GOOD = {"model": "m", "max_tokens": 5, "messages": user_message("still serving")}


async def expect_error(response, status: int, error_type: str, *words: str) -> None:
    assert response.status == status
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert body["request_id"].startswith("req_")
    for word in words:
        assert word in body["error"]["message"]


@pytest.mark.parametrize(
    "raw, words",
    [
        (b'{"model": "m",', ["not valid JSON", "line 1"]),
        (b"", ["empty"]),
        (b"\xff\xfe{}", ["not valid JSON"]),
        (b"[1, 2]", ["body: expected a JSON object, got array"]),
        (b'"just a string"', ["expected a JSON object"]),
    ],
)
async def test_malformed_bodies_are_400(make_router, upstream, http, raw, words):
    client = await http(await make_router())
    response = await client.post("/v1/messages", data=raw, headers={"Content-Type": "application/json"})
    await expect_error(response, 400, "invalid_request_error", *words)
    ok = await client.post("/v1/messages", json=GOOD)
    assert ok.status == 200
    assert [s.user_text for s in upstream.seen] == ["still serving"]


@pytest.mark.parametrize(
    "change, words",
    [
        ({"model": 5}, ["model: expected a string, got number"]),
        ({"model": None}, ["model: expected a string, got null"]),
        ({"messages": "hi"}, ["messages: expected an array"]),
        ({"messages": [1]}, ["messages.0: expected an object"]),
        ({"messages": [{"role": "user", "content": 7}]}, ["messages.0.content"]),
        ({"max_tokens": "10"}, ["max_tokens: expected an integer, got string"]),
        ({"max_tokens": True}, ["max_tokens: expected an integer, got boolean"]),
        ({"stream": "yes"}, ["stream: expected a boolean"]),
        ({"system": 3}, ["system: expected a string or an array"]),
        ({"tools": {"name": "x"}}, ["tools: expected an array"]),
        ({"tools": ["Bash"]}, ["tools.0: expected an object"]),
    ],
)
async def test_wrong_field_types_are_400_naming_the_field(make_router, upstream, http, change, words):
    client = await http(await make_router())
    response = await client.post("/v1/messages", json={**GOOD, **change})
    await expect_error(response, 400, "invalid_request_error", *words)
    assert upstream.seen == []


@pytest.mark.parametrize("missing", ["model", "messages", "max_tokens"])
async def test_missing_required_fields_are_400(make_router, http, missing):
    client = await http(await make_router())
    body = {k: v for k, v in GOOD.items() if k != missing}
    await expect_error(
        await client.post("/v1/messages", json=body), 400, "invalid_request_error", f"{missing}: field required"
    )


async def test_count_tokens_does_not_need_max_tokens(make_router, http):
    client = await http(await make_router())
    response = await client.post("/v1/messages/count_tokens", json={"model": "m", "messages": user_message("hi")})
    assert response.status == 200 and (await response.json())["input_tokens"] >= 1


async def test_oversized_body_is_413_and_the_limit_is_configurable(make_router, upstream, http):
    rules = "limits: {{max_body: 1KiB}}\n" + RULES
    client = await http(await make_router(rules))
    big = {**GOOD, "messages": user_message("x" * 2000)}
    await expect_error(
        await client.post("/v1/messages", json=big), 413, "request_too_large", "1024 byte limit", "max_body"
    )
    assert (await client.post("/v1/messages", json=GOOD)).status == 200


async def test_default_limit_accepts_bodies_over_aiohttps_one_mib(make_router, upstream, http):
    client = await http(await make_router())
    image_sized = json.dumps({**GOOD, "messages": user_message("x" * (3 * 1024 * 1024))}).encode()
    response = await client.post(
        "/v1/messages", data=io.BytesIO(image_sized), headers={"Content-Type": "application/json"}
    )
    assert response.status == 200
    assert len(upstream.seen[0].body["messages"][0]["content"]) == 3 * 1024 * 1024


NO_CATCH_ALL = """
upstreams:
  local: {{url: "{upstream}"}}
rules:
  - name: only-messages
    match: {{path: /v1/messages}}
    action: {{fake: {{text: hi}}}}
"""


async def test_unknown_path_without_a_rule_is_404_saying_what_to_do(make_router, http):
    client = await http(await make_router(NO_CATCH_ALL))
    response = await client.get("/v1/models")
    await expect_error(response, 404, "not_found_error", "no rule", "GET /v1/models", "catch-all")
    assert (await client.post("/v1/messages", json=GOOD)).status == 200


async def test_unknown_path_with_catch_all_is_forwarded(make_router, upstream, http):
    client = await http(await make_router())
    response = await client.get("/v1/models?limit=2")
    assert response.status == 200
    assert upstream.seen[0].path == "/v1/models"


async def test_estimate_on_a_message_request_explains_the_rule_problem(make_router, http):
    rules = NO_CATCH_ALL.replace("{{fake: {{text: hi}}}}", "{{estimate: {{}}}}")
    client = await http(await make_router(rules))
    await expect_error(
        await client.post("/v1/messages", json=GOOD), 400, "invalid_request_error", "only-messages", "estimate"
    )


@pytest.mark.parametrize("depth", [300, 1000, 1020])
async def test_a_body_as_deep_as_the_parser_reads_is_rewritten_and_forwarded(make_router, upstream, http, depth):
    """JSON nested deeper than orjson writes (254 levels) and than Python's default recursion limit
    lets the standard library write (about 990), but within what the parser reads (1,024 levels):
    the rule's rewrite writes it back whole, as it does any body."""
    client = await http(await make_router())
    content = "[" * depth + "]" * depth
    raw = f'{{"model":"m","max_tokens":5,"messages":[{{"role":"user","content":{content}}}]}}'.encode()
    response = await client.post("/v1/messages", data=raw, headers={"Content-Type": "application/json"})
    assert response.status == 200, await response.text()
    forwarded = upstream.seen[-1].raw
    assert b'"model":"local-model"' in forwarded and b'"content":' + content.encode() + b"}" in forwarded
    count = await client.post(
        "/v1/messages/count_tokens",
        data=f'{{"model":"m","messages":[],"tools":[{{"name":"t","input_schema":{{"a":{content}}}}}]}}',
        headers={"Content-Type": "application/json"},
    )
    assert count.status == 200 and (await count.json())["input_tokens"] > 0
