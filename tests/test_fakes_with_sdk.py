"""The anthropic SDK, streaming and not, accepts every fake the router makes."""

from __future__ import annotations

import json

import anthropic
import pytest

from tests.conftest import user_message

FAKES = """
version: 1
upstreams:
  local: {{url: "{upstream}"}}
rules:
  - name: count
    match: {{path: /v1/messages/count_tokens}}
    action: {{estimate: {{}}}}
  - name: title
    match: {{system: "You are naming a coding session"}}
    action: {{fake: {{title_from_prompt: true}}}}
  - name: text
    match: {{user: "say ok"}}
    action: {{fake: {{text: "OK"}}}}
  - name: json
    match: {{user: "give json"}}
    action: {{fake: {{json: {{isNewTopic: false, title: null}}}}}}
  - name: truncated
    match: {{user: "stop short"}}
    action: {{fake: {{text: "cut", stop_reason: max_tokens}}}}
  - name: refused
    match: {{model: "claude-sonnet-5"}}
    action: {{reject: {{status: 403, message: "blocked by ghost-router rule"}}}}
  - name: rest
    match: {{}}
    action: {{forward: {{}}}}
"""

TITLE_SYSTEM = [
    {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.331.db2; cc_entrypoint=cli;"},
    {"type": "text", "text": "You are naming a coding session so the user can pick it out of a long list of sessions."},
]
TITLE_PROMPT = "<session>\nwrite a python function that adds two numbers\n</session>\n\nWrite the title in the predominant language."
JSON_FORMAT = {
    "format": {"type": "json_schema", "schema": {"type": "object", "properties": {"title": {"type": "string"}}}}
}


@pytest.mark.parametrize("stream", [False, True])
async def test_text_fake_is_a_valid_message(sdk, make_router, upstream, stream):
    client = sdk(await make_router(FAKES))
    if stream:
        async with client.messages.stream(
            model="claude-haiku-4-5", max_tokens=10, messages=user_message("say ok")
        ) as s:
            events = [event.type async for event in s]
            message = await s.get_final_message()
        assert events[:2] == ["message_start", "content_block_start"]
        assert events[-1] == "message_stop"
    else:
        message = await client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=user_message("say ok"))
    assert message.content[0].text == "OK"
    assert message.stop_reason == "end_turn"
    assert message.role == "assistant" and message.model == "claude-haiku-4-5"
    assert message.usage.output_tokens >= 1
    assert upstream.seen == []


@pytest.mark.parametrize("stream", [False, True])
async def test_title_fake_answers_json_when_the_request_asks_for_json(sdk, make_router, stream):
    client = sdk(await make_router(FAKES))
    kwargs = dict(model="local-model", max_tokens=4000, system=TITLE_SYSTEM, messages=user_message(TITLE_PROMPT))
    if stream:
        async with client.messages.stream(**kwargs, extra_body={"output_config": JSON_FORMAT}) as s:
            text = await s.get_final_text()
    else:
        message = await client.messages.create(**kwargs, extra_body={"output_config": JSON_FORMAT})
        text = message.content[0].text
    assert json.loads(text) == {"title": "Write a python function that adds"}


async def test_title_fake_answers_plain_text_without_a_format(sdk, make_router):
    client = sdk(await make_router(FAKES))
    message = await client.messages.create(
        model="m",
        max_tokens=50,
        system=TITLE_SYSTEM,
        messages=user_message("fix the flaky login test in auth.py please"),
    )
    assert message.content[0].text == "Fix the flaky login test in"


@pytest.mark.parametrize("stream", [False, True])
async def test_json_fake_and_stop_reason(sdk, make_router, stream):
    client = sdk(await make_router(FAKES))
    if stream:
        async with client.messages.stream(model="m", max_tokens=5, messages=user_message("give json")) as s:
            message = await s.get_final_message()
        async with client.messages.stream(model="m", max_tokens=5, messages=user_message("stop short")) as s:
            short = await s.get_final_message()
    else:
        message = await client.messages.create(model="m", max_tokens=5, messages=user_message("give json"))
        short = await client.messages.create(model="m", max_tokens=5, messages=user_message("stop short"))
    assert json.loads(message.content[0].text) == {"isNewTopic": False, "title": None}
    assert short.stop_reason == "max_tokens" and short.content[0].text == "cut"


async def test_count_tokens_works_against_estimate(sdk, make_router, upstream):
    client = sdk(await make_router(FAKES))
    small = await client.messages.count_tokens(model="local-model", messages=user_message("hello"))
    tools = [
        {
            "name": "Bash",
            "description": "Run a shell command " * 20,
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
        }
    ]
    large = await client.messages.count_tokens(model="local-model", messages=user_message("hello " * 200), tools=tools)
    assert 1 <= small.input_tokens < 10
    assert large.input_tokens > small.input_tokens + 200
    assert upstream.seen == []


@pytest.mark.parametrize("stream", [False, True])
async def test_reject_is_an_sdk_error_with_the_message(sdk, make_router, stream):
    client = sdk(await make_router(FAKES))
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        if stream:
            async with client.messages.stream(model="claude-sonnet-5", max_tokens=64, messages=user_message("x")) as s:
                await s.get_final_message()
        else:
            await client.messages.create(model="claude-sonnet-5", max_tokens=64, messages=user_message("x"))
    assert info.value.status_code == 403
    assert info.value.body["error"]["message"] == "blocked by ghost-router rule"
    assert info.value.body["error"]["type"] == "permission_error"


async def test_probe_fake_status(make_router, http, upstream):
    client = await http(await make_router())
    response = await client.head("/api/hello")
    assert response.status == 200
    assert upstream.seen == []
