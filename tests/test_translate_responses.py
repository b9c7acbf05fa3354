"""`api:` with the OpenAI Responses API on either side, through real sockets: the strict `openai`
SDK's `client.responses` (create and stream; text, reasoning, tool calls, errors) -> the router ->
the fake upstream speaking OpenAI chat (llama-server's chunk shapes) or Anthropic; and the
anthropic and openai chat SDKs -> the router -> the fake speaking Responses. Malformed Responses
bodies get a 400 in the client's own error shape."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import openai
import pytest

from router.app import build_app
from router.config import parse_config
from router.plugins import load_plugins
from router.protocols.overflow import Overflow
from router.protocols.overflow import detect as detect_overflow
from tests.test_translate_forward import RULES
from tests.translate_cases import check_responses_stream


@pytest.fixture
def router_for(aiohttp_server, upstream):
    """A router (every plugin loaded: Codex's Responses adapter among them) whose upstream is the
    fake, speaking API."""

    async def make(api: str) -> Any:
        plugins = load_plugins()
        registry, _ = plugins.registry()
        config = parse_config(textwrap.dedent(RULES).format(upstream=upstream.url, api=api), "rules.yaml", registry)
        return await aiohttp_server(build_app(config, registry, plugins=plugins, plugin_rules=[]))

    return make


def responses_client(router: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(router.make_url("/v1")), api_key="none", max_retries=0)


def fake_says(value: str) -> dict[str, Any]:
    """Directives for the fake upstream."""
    return {"extra_headers": {"x-test-upstream": value}}


EXEC = {
    "type": "function",
    "name": "exec_command",
    "description": "Runs a command",
    "strict": False,
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
}
CODEX_EXTRAS = {  # what Codex sends beside its turn, none of which a chat server has a field for
    "store": False,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "thread-1",
    "reasoning": {"effort": "medium", "summary": "auto"},
}


# -- a Responses client to an OpenAI chat upstream ---------------------------------------------


async def test_a_whole_answer_crosses_to_openai_chat_and_back(router_for, upstream):
    async with responses_client(await router_for("openai-chat")) as client:
        response = await client.responses.create(
            model="local-model",
            instructions="Be brief.",
            input=[
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "No tools."}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            ],
            max_output_tokens=50,
            temperature=0.2,
            tools=[EXEC, {"type": "web_search", "external_web_access": False}],
            extra_body=CODEX_EXTRAS,
            **fake_says("cached=2"),
        )
    sent = upstream.seen[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be brief.\n\nNo tools."},
        {"role": "user", "content": "hi"},
    ]
    assert (sent.body["max_tokens"], sent.body["temperature"], sent.body["reasoning_effort"]) == (50, 0.2, "medium")
    assert [t["function"]["name"] for t in sent.body["tools"]] == ["exec_command"], "web_search cannot cross"
    assert response.status == "completed" and response.model == "local-model"
    assert response.output_text == "tok0 tok1 tok2 "
    assert [item.type for item in response.output] == ["message"]
    usage = response.usage
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens, usage.output_tokens) == (5, 2, 3)


async def test_the_sdk_accumulates_a_translated_stream_with_reasoning_apart_from_the_text(router_for, upstream):
    directives = fake_says("reasoning=Let me think.,say=Hello there")
    async with responses_client(await router_for("openai-chat")) as client:
        events = [e async for e in await client.responses.create(model="m", input="hi", stream=True, **directives)]
        async with client.responses.stream(model="m", input="hi", **directives) as stream:
            response = await stream.get_final_response()
    assert upstream.seen[0].body["stream"] is True
    check_responses_stream([event.model_dump() for event in events])
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello there"
    assert "".join(e.delta for e in events if e.type == "response.reasoning_text.delta") == "Let me think."
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output[0].content[0].text == "Let me think."
    assert response.output_text == "Hello there"
    assert response.usage.output_tokens == 3


@pytest.mark.parametrize("think", [False, True], ids=["reasoning_content", "think-tags"])
async def test_think_tags_become_a_reasoning_item_never_answer_text(router_for, upstream, think):
    directives = "reasoning=Plan first,say=Done" + (",think" if think else "")
    async with responses_client(await router_for("openai-chat")) as client:
        async with client.responses.stream(model="m", input="hi", **fake_says(directives)) as stream:
            response = await stream.get_final_response()
        whole = await client.responses.create(model="m", input="hi", **fake_says(directives))
    for answer in (response, whole):
        assert [item.type for item in answer.output] == ["reasoning", "message"]
        assert answer.output[0].content[0].text == "Plan first"
        assert answer.output_text == "Done"


@pytest.mark.parametrize("stream", [False, True])
async def test_several_tool_calls_in_one_turn_keep_their_call_ids(router_for, upstream, stream):
    async with responses_client(await router_for("openai-chat")) as client:
        kwargs: dict[str, Any] = dict(model="m", input="read both", tools=[EXEC], **fake_says("calls=2"))
        if stream:
            async with client.responses.stream(**kwargs) as events:
                response = await events.get_final_response()
        else:
            response = await client.responses.create(**kwargs)
    calls = [(item.type, item.call_id, item.name, json.loads(item.arguments)) for item in response.output]
    assert calls == [
        ("function_call", "call_0", "tool0", {"n": 0, "path": "f0.txt"}),
        ("function_call", "call_1", "tool1", {"n": 1, "path": "f1.txt"}),
    ]
    assert response.status == "completed"


async def test_a_tool_loop_sends_the_calls_and_their_outputs_back_by_call_id(router_for, upstream):
    async with responses_client(await router_for("openai-chat")) as client:
        await client.responses.create(
            model="m",
            tools=[EXEC],
            input=[
                {"role": "user", "content": "list and print"},
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Two commands."}]},
                {"type": "function_call", "call_id": "call_a", "name": "exec_command", "arguments": '{"cmd":"ls"}'},
                {"type": "function_call", "call_id": "call_b", "name": "exec_command", "arguments": '{"cmd":"pwd"}'},
                {"type": "function_call_output", "call_id": "call_a", "output": "a.txt"},
                {"type": "function_call_output", "call_id": "call_b", "output": "/work"},
            ],
        )
    messages = upstream.seen[0].body["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": None,
        "reasoning_content": "Two commands.",
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "exec_command", "arguments": '{"cmd":"pwd"}'}},
        ],
    }
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "call_a", "content": "a.txt"},
        {"role": "tool", "tool_call_id": "call_b", "content": "/work"},
    ]


async def test_structured_output_and_images_cross(router_for, upstream):
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    async with responses_client(await router_for("openai-chat")) as client:
        await client.responses.create(
            model="m",
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "name these"},
                        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
                        {"type": "input_image", "image_url": "https://example.test/a.png"},
                    ],
                }
            ],
            text={"format": {"type": "json_schema", "name": "title", "schema": schema, "strict": True}},
        )
    body = upstream.seen[0].body
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "title", "schema": schema, "strict": True},
    }
    assert [part.get("image_url", {}).get("url") for part in body["messages"][0]["content"]] == [
        None,
        "data:image/png;base64,iVBORw0KGgo=",
        "https://example.test/a.png",
    ]


async def test_a_length_stop_is_an_incomplete_response(router_for, upstream, sdk):
    """Anthropic's max_tokens stop is status incomplete, reason max_output_tokens; a stream ends
    with response.incomplete, as OpenAI's does."""
    async with responses_client(await router_for("anthropic")) as client:
        whole = await client.responses.create(
            model="m", input="hi", max_output_tokens=1, **fake_says("stop=max_tokens")
        )
        events = [
            e
            async for e in await client.responses.create(
                model="m", input="hi", stream=True, **fake_says("stop=max_tokens")
            )
        ]
    assert (whole.status, whole.incomplete_details.reason) == ("incomplete", "max_output_tokens")
    check_responses_stream([event.model_dump() for event in events])
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"


@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_error_is_a_responses_error(router_for, upstream, stream):
    async with responses_client(await router_for("openai-chat")) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.responses.create(model="m", input="hi", stream=stream, **fake_says("status=500"))
    assert caught.value.status_code == 500
    assert caught.value.body == {"message": "upstream error 500", "type": "server_error", "param": None, "code": None}


@pytest.mark.parametrize("api", ["openai-chat", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_context_overflow_is_the_error_code_codex_compacts_on(router_for, upstream, api, stream):
    async with responses_client(await router_for(api)) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.responses.create(model="m", input="hi", stream=stream, **fake_says("overflow"))
    assert caught.value.body["code"] == "context_length_exceeded"
    assert "40021 tokens > 32768 maximum" in caught.value.body["message"]


async def test_an_upstream_that_dies_mid_stream_ends_the_stream_with_response_failed(router_for, upstream):
    async with responses_client(await router_for("openai-chat")) as client:
        stream = await client.responses.create(model="m", input="hi", stream=True, **fake_says("die_after=1"))
        events = [event async for event in stream]
    assert events[-1].type == "response.failed"
    assert "in the middle of the response" in events[-1].response.error.message


# -- a Responses client to an Anthropic upstream -----------------------------------------------


async def test_a_responses_client_gets_an_anthropic_upstreams_answer_whole_and_streamed(router_for, upstream):
    async with responses_client(await router_for("anthropic")) as client:
        whole = await client.responses.create(model="m", instructions="Be brief.", input="hi")
        async with client.responses.stream(model="m", input="hi") as stream:
            streamed = await stream.get_final_response()
    assert upstream.seen[0].path == "/v1/messages"
    assert upstream.seen[0].body["system"] == [{"type": "text", "text": "Be brief."}]
    assert upstream.seen[0].body["max_tokens"] == 4096
    for response in (whole, streamed):
        assert response.output_text == "tok0 tok1 tok2 " and response.status == "completed"


async def test_a_responses_client_gets_an_anthropic_upstreams_tool_call_streamed(router_for, upstream):
    async with responses_client(await router_for("anthropic")) as client:
        async with client.responses.stream(model="m", input="run it", tools=[EXEC], **fake_says("tool=Bash")) as s:
            response = await s.get_final_response()
    [call] = response.output
    assert (call.type, call.call_id, call.name) == ("function_call", "toolu_test1", "Bash")
    assert json.loads(call.arguments)["command"] == "echo hi"
    assert upstream.seen[0].body["tools"][0]["name"] == "exec_command"


# -- Anthropic and OpenAI chat clients to a Responses upstream ---------------------------------


async def test_an_anthropic_client_gets_a_responses_upstreams_answer(router_for, upstream, sdk):
    client = sdk(await router_for("openai-responses"))
    message = await client.messages.create(
        model="m", max_tokens=20, system="Be brief.", messages=[{"role": "user", "content": "hi"}]
    )
    async with client.messages.stream(model="m", max_tokens=20, messages=[{"role": "user", "content": "hi"}]) as s:
        streamed = await s.get_final_message()
    sent = upstream.seen[0]
    assert sent.path == "/v1/responses"
    assert sent.body == {
        "model": "m",
        "instructions": "Be brief.",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "max_output_tokens": 20,
        "store": False,
    }
    for answer in (message, streamed):
        assert [block.text for block in answer.content] == ["tok0 tok1 tok2 "]
        assert answer.stop_reason == "end_turn" and answer.usage.input_tokens == 5


async def test_an_openai_chat_client_gets_a_responses_upstreams_tool_call(aiohttp_server, agent_upstream):
    plugins = load_plugins()
    registry, _ = plugins.registry()
    text = textwrap.dedent(RULES).format(upstream=agent_upstream.url, api="openai-responses")
    router = await aiohttp_server(
        build_app(parse_config(text, "rules.yaml", registry), registry, plugins=plugins, plugin_rules=[])
    )
    tools = [{"type": "function", "function": {"name": "exec_command", "parameters": {"type": "object"}}}]
    async with responses_client(router) as client:
        async with client.chat.completions.stream(
            model="m", messages=[{"role": "user", "content": "run"}], tools=tools
        ) as stream:
            completion = await stream.get_final_completion()
        [call] = completion.choices[0].message.tool_calls
        assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
            "call_test1",
            "exec_command",
            {"cmd": "echo GHOST_TOOL_RAN"},
        )
        assert completion.choices[0].finish_reason == "tool_calls"
        follow = await client.chat.completions.create(
            model="m",
            tools=tools,
            messages=[
                {"role": "user", "content": "run"},
                completion.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": "call_test1", "content": "GHOST_TOOL_RAN"},
            ],
        )
    assert follow.choices[0].message.content == "The command printed: GHOST_TOOL_RAN"
    assert agent_upstream.seen[1].body["input"][-1] == {
        "type": "function_call_output",
        "call_id": "call_test1",
        "output": "GHOST_TOOL_RAN",
    }


# -- malformed Responses bodies ----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "input": [{"type": "message", "role": "robot", "content": "hi"}]},
        {"model": "m", "input": [{"role": "user", "content": 7}]},
        {"model": "m", "input": [{"role": "user", "content": [{"text": "no type"}]}]},
        {"model": "m", "input": [{"type": "function_call", "call_id": 5, "name": "f"}]},
        {"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": {"x": 1}}]},
        {"model": "m", "input": [{"type": "reasoning", "summary": "not a list"}]},
        {"model": "m", "instructions": ["not", "a", "string"], "input": "hi"},
        {"model": "m", "input": "hi", "tools": {"type": "function"}},
    ],
)
@pytest.mark.parametrize("api", ["openai-chat", "anthropic"])
async def test_a_malformed_responses_body_is_a_400_in_the_responses_shape(router_for, upstream, http, api, body):
    answer = await (await http(await router_for(api))).post("/v1/responses", json=body)
    assert answer.status == 400, await answer.text()
    error = (await answer.json())["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert upstream.seen == []


def test_openais_context_overflow_is_recognised_as_one():
    """A Responses server's overflow (OpenAI's shape) becomes each client's own, as llama-server's does."""
    body = {
        "error": {
            "message": "Your input exceeds the context window of this model. Please adjust your input and try again.",
            "type": "invalid_request_error",
            "param": "input",
            "code": "context_length_exceeded",
        }
    }
    assert detect_overflow(json.dumps(body).encode()) == Overflow(None, None)
