"""`api:` on an upstream: the router translates a forwarded request to the upstream's API and the
answer back, streaming and not, errors included. Real sockets: the anthropic SDK (the strict
client) -> the router -> the fake upstream speaking OpenAI chat in llama-server's chunk shapes;
and the openai SDK -> the router -> the fake speaking Anthropic."""

from __future__ import annotations

import json
import re
import textwrap
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web

from router.app import STATE, build_app
from router.config import Overrides, embedded_rules_text, parse_config
from router.errors import RulesError
from router.offline import describe_table
from router.plugins import builtin_registry, load_plugins
from tests import claude_code_shapes as cc
from tests.conftest import finished_line, post_and_leave_after, user_message
from tests.translate_cases import check_anthropic_stream, sse_bytes

RULES = """
version: 1
upstreams:
  local:
    url: {upstream}
    api: {api}
rules:
  - name: count-tokens
    match: {{path: /v1/messages/count_tokens, header: {{x-count: local}}}}
    action: {{estimate: {{}}}}
  - name: title
    match: {{system: "You are naming a coding session"}}
    action: {{fake: {{title_from_prompt: true}}}}
  - name: main
    match: {{}}
    action: {{forward: {{upstream: local}}}}
"""
TOOLS = [
    {"name": "Bash", "description": "Run a command", "input_schema": {"type": "object", "properties": {}}},
    {"name": "Read", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}},
]


def directives(value: str) -> dict[str, Any]:
    """Extra headers that tell the fake upstream how to answer."""
    return {"extra_headers": {"x-test-upstream": value}}


@pytest.fixture
async def router(make_router):
    return await make_router(RULES, api="openai-chat")


async def test_a_whole_answer_crosses_both_ways(router, upstream, sdk):
    client = sdk(router)
    message = await client.messages.create(
        model="local-model",
        max_tokens=300,
        system=[{"type": "text", "text": "You are terse."}],
        messages=[{"role": "user", "content": "hello"}],
        stop_sequences=["END"],
        output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}},
        extra_body={"temperature": 0.2},
        extra_headers={"x-test-upstream": "say=Hello there,reasoning=They greet me"},
    )
    seen = upstream.seen[0]
    assert seen.path == "/v1/chat/completions"
    assert seen.body == {
        "model": "local-model",
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hello"}],
        "max_tokens": 300,
        "temperature": 0.2,
        "stop": ["END"],
        "response_format": {"type": "json_schema", "json_schema": {"name": "response", "schema": {"type": "object"}}},
    }
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "They greet me"
    assert message.content[1].text == "Hello there"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (5, 3)


async def test_ghosts_never_reach_the_upstream_and_stay_in_the_clients_api(router, upstream, sdk):
    message = await sdk(router).messages.create(
        model="m",
        max_tokens=10,
        system="You are naming a coding session. Answer with a title.",
        messages=[{"role": "user", "content": "fix the parser"}],
    )
    assert message.content[0].type == "text" and message.stop_reason == "end_turn"
    assert upstream.seen == []


def sse_events(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of an Anthropic stream."""
    return [
        (block.split("\n")[0][len("event: ") :], json.loads(block.split("\n")[1][len("data: ") :]))
        for block in body.decode().split("\n\n")
        if block.startswith("event:")
    ]


async def test_a_stream_that_waited_for_its_first_byte_is_still_translated(make_router, upstream, http):
    """Keep-alive pings go out before the upstream answers (in the client's API), then the
    translated events; the whole stream keeps Anthropic's contract."""
    router = await make_router(RULES.replace("api: {api}", "api: {api}\n    keepalive: 0.01"), api="openai-chat")
    raw = await http(router)
    response = await raw.post(
        "/v1/messages",
        json={"model": "m", "max_tokens": 10, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-test-upstream": "hold_before=first"},
    )
    assert response.status == 200
    first = await response.content.readuntil(b"\n\n")
    assert first == b'event: ping\ndata: {"type": "ping"}\n\n'
    upstream.release("first")
    events = sse_events(first + await response.read())
    check_anthropic_stream(events)
    assert (
        "".join(e["delta"].get("text", "") for name, e in events if name == "content_block_delta") == "tok0 tok1 tok2 "
    )


async def test_a_server_that_answers_whole_when_asked_to_stream_still_gives_a_valid_stream(router, upstream, sdk):
    """The streaming fallback: a whole answer becomes the events that carry it, each block started."""
    async with sdk(router).messages.stream(
        model="m",
        max_tokens=100,
        tools=TOOLS,
        messages=[{"role": "user", "content": "look"}],
        **directives("whole,reasoning=Hmm,calls=2"),
    ) as stream:
        message = await stream.get_final_message()
    assert [block.type for block in message.content] == ["thinking", "tool_use", "tool_use"]
    assert message.content[2].input == {"n": 1, "path": "f1.txt"}


async def test_a_server_that_streams_when_asked_for_one_piece_still_gives_a_whole_answer(router, upstream, sdk):
    message = await sdk(router).messages.create(
        model="m", max_tokens=100, messages=[{"role": "user", "content": "hi"}], **directives("always_stream,piece=2")
    )
    assert message.content[0].text == "tok0 tok1 tok2 "
    assert message.usage.output_tokens == 0  # not asked for usage in a stream: the server sent none


async def test_a_translated_stream_reaches_the_client_before_the_upstream_has_finished(router, upstream, http):
    raw = await http(router)
    response = await raw.post(
        "/v1/messages",
        json={"model": "m", "max_tokens": 10, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-test-upstream": "hold=rest"},
    )
    first = await response.content.readuntil(b"\n\n")
    assert first.startswith(b"event: message_start\n")
    assert upstream.seen[0].outcome == "running"
    upstream.release("rest")
    check_anthropic_stream(sse_events(first + await response.read()))


async def test_a_stream_with_reasoning_and_several_tool_calls_in_one_chunk(router, upstream, http):
    raw = await http(router)
    response = await raw.post(
        "/v1/messages",
        json={
            "model": "m",
            "max_tokens": 100,
            "stream": True,
            "tools": TOOLS,
            "messages": [{"role": "user", "content": "look"}],
        },
        headers={"x-test-upstream": "reasoning=I should look,calls=3,calls_per_chunk=4,piece=3,cached=2"},
    )
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(await response.read())
    check_anthropic_stream(events)
    assert upstream.seen[0].body["stream_options"] == {"include_usage": True}
    assert upstream.seen[0].body["tools"][0] == {
        "type": "function",
        "function": {
            "name": "Bash",
            "description": "Run a command",
            "parameters": {"type": "object", "properties": {}},
        },
    }
    starts = [e["content_block"] for name, e in events if name == "content_block_start"]
    assert [(s["type"], s.get("id")) for s in starts] == [
        ("thinking", None),
        ("tool_use", "call_0"),
        ("tool_use", "call_1"),
        ("tool_use", "call_2"),
    ]
    delta = next(e for name, e in events if name == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["input_tokens"] == 3 and delta["usage"]["cache_read_input_tokens"] == 2


async def test_the_sdk_accumulates_the_translated_stream(router, upstream, sdk):
    client = sdk(router)
    async with client.messages.stream(
        model="m",
        max_tokens=100,
        tools=TOOLS,
        messages=[{"role": "user", "content": "look"}],
        **directives("think,reasoning=Two files,calls=2,calls_per_chunk=3,snapshots,piece=5"),
    ) as stream:
        message = await stream.get_final_message()
    assert [block.type for block in message.content] == ["thinking", "tool_use", "tool_use"]
    assert message.content[0].thinking == "Two files"
    assert [(b.id, b.name, b.input) for b in message.content[1:]] == [
        ("call_0", "tool0", {"n": 0, "path": "f0.txt"}),
        ("call_1", "tool1", {"n": 1, "path": "f1.txt"}),
    ]
    assert message.stop_reason == "tool_use"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_loop_keeps_the_call_ids(router, upstream, sdk, stream):
    """The tool result goes back as an OpenAI tool message with the id of the call it answers."""
    client = sdk(router)
    first = await client.messages.create(
        model="m",
        max_tokens=100,
        tools=TOOLS,
        messages=[{"role": "user", "content": "look"}],
        stream=False,
        **directives("calls=1"),
    )
    call = first.content[0]
    assert call.type == "tool_use"
    messages = [
        {"role": "user", "content": "look"},
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "f0.txt: 3 lines"},
                {"type": "text", "text": "go on"},
            ],
        },
    ]
    if stream:
        async with client.messages.stream(model="m", max_tokens=100, tools=TOOLS, messages=messages) as events:
            second = await events.get_final_message()
    else:
        second = await client.messages.create(model="m", max_tokens=100, tools=TOOLS, messages=messages)
    sent = upstream.seen[1].body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id
    assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": "f0.txt: 3 lines"}
    assert sent[3] == {"role": "user", "content": "go on"}
    assert second.content[0].text == "tok0 tok1 tok2 "  # the fake answers the last user text


@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_error_is_an_anthropic_error(router, upstream, sdk, stream):
    client = sdk(router)
    with pytest.raises(anthropic.InternalServerError) as caught:
        await client.messages.create(
            model="m",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            stream=stream,
            **directives("status=500"),
        )
    assert caught.value.status_code == 500
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"] == {"type": "api_error", "message": "upstream error 500"}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_context_overflow_becomes_the_error_that_makes_claude_code_compact(router, upstream, sdk, stream):
    client = sdk(router)
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(
            model="m",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            stream=stream,
            **directives("overflow"),
        )
    assert caught.value.body["error"]["message"] == "prompt is too long: 40021 tokens > 32768 maximum"


async def test_an_upstream_that_dies_mid_stream_ends_the_stream_with_an_error_event(router, upstream, sdk):
    client = sdk(router)
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with client.messages.stream(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}], **directives("die_after=1")
        ) as stream:
            async for _ in stream:
                pass
    assert "in the middle of the response" in str(caught.value)


@pytest.mark.parametrize("stream", [False, True])
async def test_an_answer_that_is_not_the_upstreams_api_is_a_502_naming_the_setting(router, upstream, sdk, stream):
    with pytest.raises(anthropic.APIStatusError) as caught:
        await sdk(router).messages.create(
            model="m",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            stream=stream,
            **directives("garbage"),
        )
    assert caught.value.status_code == 502
    assert "is not an answer in the openai-chat API" in caught.value.body["error"]["message"]
    assert "`api:` setting" in caught.value.body["error"]["message"]


async def test_count_tokens_cannot_cross_and_says_what_to_do(router, upstream, sdk):
    client = sdk(router)
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.count_tokens(model="m", messages=[{"role": "user", "content": "hi"}])
    assert "estimate" in caught.value.body["error"]["message"]
    assert upstream.seen == []

    assert upstream.seen == []


async def test_the_same_api_is_forwarded_as_it_is(make_router, upstream, sdk):
    client = sdk(await make_router(RULES, api="anthropic"))
    message = await client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert upstream.seen[0].path == "/v1/messages"
    assert message.content[0].text == "tok0 tok1 tok2 "


async def test_check_and_status_name_the_api(router, http):
    config = parse_config(
        textwrap.dedent(RULES).format(upstream="http://127.0.0.1:9", api="openai-chat"),
        "rules.yaml",
        builtin_registry(),
    )
    assert "upstream local (default): http://127.0.0.1:9 api=openai-chat max_concurrency=1" in describe_table(config)[1]
    status = await (await (await http(router)).get("/_router/status")).json()
    assert status["upstreams"]["local"]["api"] == "openai-chat"


def test_api_takes_only_the_four_apis():
    with pytest.raises(RulesError, match="anthropic"):
        parse_config(
            textwrap.dedent(RULES).format(upstream="http://127.0.0.1:9", api="openai"), "rules.yaml", builtin_registry()
        )


# -- an OpenAI chat client (OpenCode) to an Anthropic upstream ---------------------------------


async def router_with_plugins(aiohttp_server: Any, upstream_url: str, api: str = "anthropic") -> Any:
    """A router with every installed plugin (OpenAI's protocol among them) before an upstream of API."""
    plugins = load_plugins()
    registry, rules = plugins.registry()
    text = textwrap.dedent(RULES).format(upstream=upstream_url, api=api)
    config = parse_config(text, "test-rules.yaml", registry)
    return await aiohttp_server(build_app(config, registry, plugins=plugins, plugin_rules=[]))


@pytest.fixture
async def openai_router(aiohttp_server, upstream):
    return await router_with_plugins(aiohttp_server, upstream.url)


def openai_client(router: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(router.make_url("/v1")), api_key="none", max_retries=0)


async def test_an_openai_client_gets_an_anthropic_upstreams_whole_answer(openai_router, upstream):
    async with openai_client(openai_router) as client:
        completion = await client.chat.completions.create(
            model="m",
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
            max_tokens=50,
        )
    assert upstream.seen[0].path == "/v1/messages"
    assert upstream.seen[0].body["system"] == [{"type": "text", "text": "Be brief."}]
    assert upstream.seen[0].headers["anthropic-version"] == "2023-06-01"
    assert completion.choices[0].message.content == "tok0 tok1 tok2 "
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 10


async def test_an_openai_client_gets_an_anthropic_upstreams_stream_with_tool_calls(openai_router, upstream):
    async with openai_client(openai_router) as client:
        async with client.chat.completions.stream(
            model="m",
            messages=[{"role": "user", "content": "run it"}],
            tools=[{"type": "function", "function": {"name": "Bash", "parameters": {"type": "object"}}}],
            stream_options={"include_usage": True},
            extra_headers={"x-test-upstream": "tool=Bash"},
        ) as stream:
            completion = await stream.get_final_completion()
    message = completion.choices[0].message
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls] == [
        ("toolu_test1", "Bash", {"command": "echo hi", "description": "Run the command the test asked for"})
    ]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert upstream.seen[0].body["stream"] is True


# -- Claude Code's own turns, through the default rules -----------------------------------------


@pytest.mark.parametrize("fold", [False, True])
async def test_claude_codes_turn_reaches_an_openai_chat_server_whole(aiohttp_server, upstream, sdk, fold):
    """The default rules with `api: openai-chat`: Claude Code's main turn (billing block dropped by
    the rules, its environment system message folded when asked) arrives as one OpenAI chat
    request; thinking settings, context management and metadata have no counterpart and stay behind."""

    def edit(text: str) -> str:
        text = re.sub(r"^    api: .*$", "    api: openai-chat", text, count=1, flags=re.M)
        return text.replace("fold_system_messages: false", f"fold_system_messages: {str(fold).lower()}")

    config = parse_config(
        edit(embedded_rules_text()), "default", builtin_registry(), Overrides(upstream_url=upstream.url)
    )
    router = await aiohttp_server(build_app(config))
    body = cc.main_turn("list the files here")
    core = {k: body[k] for k in ("model", "max_tokens", "messages")}
    extra = {k: v for k, v in body.items() if k not in core and k != "stream"}
    async with sdk(router).messages.stream(
        **core, extra_body=extra, extra_headers={**cc.headers(), "x-test-upstream": "reasoning=Plan,say=Here"}
    ) as stream:
        message = await stream.get_final_message()
    assert [(b.type, getattr(b, "thinking", None) or getattr(b, "text", None)) for b in message.content] == [
        ("thinking", "Plan"),
        ("text", "Here"),
    ]
    sent = upstream.seen[0].body
    assert upstream.seen[0].path == "/v1/chat/completions"
    assert sent["model"] == "local-model"
    assert set(sent) == {"model", "messages", "tools", "max_tokens", "reasoning_effort", "stream", "stream_options"}
    assert sent["messages"][0]["role"] == "system"
    assert sent["messages"][0]["content"].startswith("You are Claude Code")
    assert [m["role"] for m in sent["messages"]] == (["system", "user"] if fold else ["system", "user", "system"])
    assert "Primary working directory" in json.dumps(sent["messages"][1:])
    assert len(sent["tools"]) == 12 and all(set(t) == {"type", "function"} for t in sent["tools"])


@pytest.mark.parametrize("stream", [False, True])
async def test_an_openai_client_gets_a_context_overflow_it_compacts_on(openai_router, upstream, stream):
    """OpenCode compacts on the server's own words ("exceeds the available context size"): they
    reach it in the OpenAI error shape from an Anthropic upstream too."""
    async with openai_client(openai_router) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "hi"}],
                stream=stream,
                extra_headers={"x-test-upstream": "overflow"},
            )
    assert "exceeds the available context size" in caught.value.body["message"]
    assert caught.value.body["type"] == "invalid_request_error"


async def test_an_openai_client_gets_an_anthropic_upstreams_error_in_its_shape(openai_router, upstream):
    async with openai_client(openai_router) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-test-upstream": "status=500"}
            )
    assert caught.value.body == {"message": "upstream error 500", "type": "server_error", "param": None, "code": None}


MISSHAPEN_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "m",
    "content": [{"type": "thinking", "thinking": "hm", "signature": True}, {"type": "text", "text": "hi"}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 1, "output_tokens": 1},
}
MISSHAPEN_STREAM = sse_bytes(
    [
        {"type": "message_start", "message": {**MISSHAPEN_MESSAGE, "content": []}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": 1}},
    ],
    done=False,
)


@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_answer_with_a_field_of_the_wrong_type_is_the_upstreams_502(aiohttp_server, stream):
    """A misshapen answer from an Anthropic upstream (a signature that is no string, a text that is
    a number) reaches the OpenAI client as the upstream's 502 naming the field: not a 400 blaming the
    client's request and not a router exception."""

    async def answer(request: web.Request) -> web.StreamResponse:
        if not (await request.json()).get("stream"):
            return web.json_response(MISSHAPEN_MESSAGE)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(MISSHAPEN_STREAM)
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", answer)
    upstream = await aiohttp_server(app)
    router = await router_with_plugins(aiohttp_server, str(upstream.make_url("")).rstrip("/"))
    async with openai_client(router) as client:
        with pytest.raises(openai.APIError) as caught:
            if stream:
                async for _ in await client.chat.completions.create(
                    model="m", messages=user_message("hi"), stream=True
                ):
                    pass
            else:
                await client.chat.completions.create(model="m", messages=user_message("hi"))
    if stream:
        assert "cannot be read (content_block.text: expected a string)" in caught.value.message
    else:
        assert isinstance(caught.value, openai.APIStatusError) and caught.value.status_code == 502
        assert "content.0.signature: expected a string" in caught.value.message
        assert "not an answer in the anthropic API" in caught.value.message


HOLD_END = "x-test-upstream: hold_end=end\r\n"  # the upstream holds its body's end until release("end")


async def test_codex_hanging_up_after_response_completed_is_a_finished_turn_not_a_499(aiohttp_server, upstream, caplog):
    """Codex closes the connection once `response.completed` arrives, before the body's end; the
    turn was answered whole, so the log says 200, not 499."""
    router = await router_with_plugins(aiohttp_server, upstream.url, "openai-chat")
    body = {"model": "m", "stream": True, "input": "hi", "instructions": "Be brief."}
    received = await post_and_leave_after(router, "/v1/responses", body, b"event: response.completed", HOLD_END)
    assert b"response.output_text.delta" in received
    line = await finished_line(caplog, lambda: upstream.release("end"))
    assert "status=200" in line and "after the answer's last event" in line, line
    assert router.app[STATE].pool["local"].stats.cancelled == 0  # a finished turn, not a cancelled one


async def test_a_client_that_leaves_after_message_stop_got_the_whole_answer(make_router, upstream, caplog):
    router = await make_router(RULES, api="anthropic")
    body = {"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    await post_and_leave_after(router, "/v1/messages", body, b"event: message_stop", HOLD_END)
    line = await finished_line(caplog, lambda: upstream.release("end"))
    assert "status=200" in line and "after the answer's last event" in line, line


async def test_a_client_that_leaves_before_the_last_event_is_still_a_499(make_router, upstream, caplog):
    router = await make_router(RULES, api="anthropic")
    body = {"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    await post_and_leave_after(router, "/v1/messages", body, b"event: message_start", "x-test-upstream: hold=end\r\n")
    line = await finished_line(caplog, lambda: upstream.release("end"))
    assert "status=499" in line, line
    assert router.app[STATE].pool["local"].stats.cancelled == 1


@pytest.mark.parametrize("api", ["openai-chat", "openai-responses", "gemini"])
async def test_a_tool_schema_as_deep_as_the_parser_reads_crosses_to_each_api(make_router, upstream, http, api):
    """1,010 levels: deeper than orjson writes and than Python's default recursion limit lets the
    standard library write, within the 1,024 levels the router reads; the translation writes it whole."""
    client = await http(await make_router(RULES, api=api))
    schema = '{"a":' * 1010 + "1" + "}" * 1010
    body = (
        f'{{"model":"m","max_tokens":5,"tools":[{{"name":"t","input_schema":{schema}}}],'
        '"messages":[{"role":"user","content":"x"}]}'
    )
    response = await client.post("/v1/messages", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 200, await response.text()
    assert schema.encode() in upstream.seen[0].raw
