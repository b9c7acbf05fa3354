"""`rewrite` edits what the upstream receives; without a rewrite the body goes through byte for byte."""

from __future__ import annotations

import json

REWRITE = """
upstreams:
  local:
    url: "{upstream}"
    headers: {{x-upstream-key: configured}}
rules:
  - name: untouched
    match: {{user: "untouched"}}
    action: {{forward: {{}}}}
  - name: main
    match: {{}}
    action:
      rewrite:
        model: local-model
        drop_billing_header: true
        fold_system_messages: true
        drop_fields: [thinking, context_management, output_config.effort, tools.*.defer_loading]
        max_tokens: 256
        headers: {{x-added: "yes", x-removed: null}}
      forward: {{}}
"""

CLAUDE_CODE_BODY = {
    "model": "claude-opus-4-7",
    "max_tokens": 32000,
    "stream": False,
    "system": [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.331.b15; cc_entrypoint=cli;"},
        {"type": "text", "text": "You are Claude Code."},
    ],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "list the files here"}]},
        {"role": "system", "content": "# Environment\nPrimary working directory: /work"},
        {"role": "assistant", "content": "ok"},
        {"role": "system", "content": "late note"},
        {"role": "user", "content": "and now?"},
    ],
    "thinking": {"type": "adaptive"},
    "context_management": {"edits": []},
    "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": {}}},
    "tools": [
        {"name": "Bash", "input_schema": {"type": "object"}, "defer_loading": True},
        {"name": "Read", "input_schema": {"type": "object"}},
    ],
}


async def test_rewrite_edits_the_forwarded_request(make_router, upstream, http):
    client = await http(await make_router(REWRITE))
    response = await client.post(
        "/v1/messages",
        json=CLAUDE_CODE_BODY,
        headers={"x-removed": "1", "x-api-key": "sk-client-secret", "Authorization": "Bearer sk-x"},
    )
    assert response.status == 200
    seen = upstream.seen[0]
    body = seen.body
    assert body["model"] == "local-model"
    assert body["max_tokens"] == 256
    assert body["system"] == [{"type": "text", "text": "You are Claude Code."}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"][-1]["text"].startswith("# Environment")
    assert body["messages"][2]["content"][0] == {"type": "text", "text": "late note"}
    assert body["messages"][2]["content"][1] == {"type": "text", "text": "and now?"}
    assert "thinking" not in body and "context_management" not in body
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": {}}}
    assert [sorted(t) for t in body["tools"]] == [["input_schema", "name"], ["input_schema", "name"]]
    headers = {k.lower(): v for k, v in seen.headers.items()}
    assert headers["x-added"] == "yes" and "x-removed" not in headers
    assert headers["x-upstream-key"] == "configured"
    assert "x-api-key" not in headers and "authorization" not in headers, "client keys are not forwarded by default"
    assert int(headers["content-length"]) == len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())


async def test_without_rewrite_the_body_is_forwarded_byte_for_byte(make_router, upstream, http):
    client = await http(await make_router(REWRITE))
    raw = b'{ "model" : "m",  "max_tokens": 5,\n "messages": [{"role": "user", "content": "untouched \\u00e9"}] }'
    response = await client.post("/v1/messages", data=raw, headers={"Content-Type": "application/json"})
    assert response.status == 200
    assert upstream.seen[0].user_text == "untouched é"
    assert upstream.seen[0].raw == raw


async def test_fold_without_a_user_turn_moves_text_to_system(make_router, upstream, http):
    client = await http(await make_router(REWRITE))
    body = {
        "model": "m",
        "max_tokens": 5,
        "system": "base",
        "messages": [{"role": "system", "content": "env"}, {"role": "assistant", "content": "hi"}],
    }
    assert (await client.post("/v1/messages", json=body)).status == 200
    assert upstream.seen[0].body["system"] == "base\nenv"
    assert upstream.seen[0].body["messages"] == [{"role": "assistant", "content": "hi"}]


async def test_rewrite_keeps_what_orjson_refuses(make_router, upstream, http):
    """A lone surrogate escape (an emoji cut in half by a client truncating a tool result), NaN and
    an integer beyond 64 bits still parse; the rewritten body is valid JSON with the text intact."""
    client = await http(await make_router(REWRITE))
    raw = (
        b'{"model": "claude-opus-4-7", "max_tokens": 9, "temperature": NaN, "metadata": {"n": 123456789012345678901234567890},'
        b' "messages": [{"role": "user", "content": "cut emoji \\ud83d here"}]}'
    )
    response = await client.post("/v1/messages", data=raw, headers={"Content-Type": "application/json"})
    assert response.status == 200, await response.text()
    forwarded = upstream.seen[0].raw
    assert b"\\ud83d" in forwarded, "the lone surrogate goes out escaped, as it came"
    body = json.loads(forwarded)
    assert body["model"] == "local-model" and body["max_tokens"] == 9
    assert body["messages"][-1]["content"] == "cut emoji \ud83d here"
    assert body["metadata"]["n"] == 123456789012345678901234567890


async def test_invalid_json_is_a_400_naming_line_and_column(make_router, http):
    client = await http(await make_router(REWRITE))
    response = await client.post(
        "/v1/messages", data=b'{"model": "m",\n "messages": [}', headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    message = (await response.json())["error"]["message"]
    assert "not valid JSON" in message and "line 2 column" in message, message
