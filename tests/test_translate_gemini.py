"""`api:` with the Gemini API (issue 17), through real sockets: Google's google-genai SDK (the
strict client) -> the router -> the fake upstream speaking OpenAI chat in llama-server's chunk
shapes, or Anthropic; the anthropic and openai SDKs -> the router -> the fake speaking Gemini;
and hostile Gemini bodies, refused in Google's error shape."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors, types

from router.app import build_app
from router.config import parse_config
from router.plugins import load_plugins
from tests.test_translate_forward import RULES
from tests.test_translate_real_clients import with_api

# the SDK's aiohttp session subclasses aiohttp.ClientSession, which aiohttp warns about
pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")
GEMINI_CLI = {"User-Agent": "GeminiCLI/0.61.0/local-model (linux; x64)", "x-goog-api-key": "none"}
TOOLS = [
    types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="read_file",
                description="Read a file",
                parameters_json_schema={"type": "object", "properties": {"path": {"type": "string"}}},
            ),
            types.FunctionDeclaration(
                name="run_shell_command",
                parameters=types.Schema(
                    type=types.Type.OBJECT, properties={"command": types.Schema(type=types.Type.STRING)}
                ),
            ),
        ]
    )
]


@pytest.fixture
async def gemini_sdk():
    """Make google-genai clients pointed at a router (no retries); closed after the test."""
    clients: list[Any] = []

    def make(router: Any, directives: str = "") -> Any:
        options = types.HttpOptions(
            base_url=str(router.make_url("")),
            api_version="v1beta",
            headers={"x-test-upstream": directives} if directives else None,
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        client = genai.Client(api_key="none", http_options=options).aio
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def make_router(aiohttp_server, upstream):
    """Start a router with the bundled plugins (the Gemini API adapter among them) from rules text."""

    async def make(rules: str = RULES, upstream_url: str | None = None, **values: Any) -> Any:
        plugins = load_plugins()
        registry, _ = plugins.registry()
        text = textwrap.dedent(rules).format(upstream=upstream_url or upstream.url, **values)
        config = parse_config(text, "test-rules.yaml", registry)
        return await aiohttp_server(build_app(config, registry, plugins=plugins, plugin_rules=[]))

    return make


@pytest.fixture
async def router(make_router):
    return await make_router(RULES, api="openai-chat")


async def test_a_whole_answer_crosses_to_openai_chat_and_back(router, upstream, gemini_sdk):
    client = gemini_sdk(router, "say=Hello there,reasoning=They greet me,cached=2")
    response = await client.models.generate_content(
        model="gemini-2.5-flash",
        contents="hello",
        config=types.GenerateContentConfig(
            system_instruction="You are terse.",
            max_output_tokens=300,
            temperature=0.2,
            top_p=0.9,
            top_k=40,
            stop_sequences=["END"],
            response_mime_type="application/json",
            response_schema={"type": "OBJECT", "properties": {"a": {"type": "STRING"}}},
            thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=1024),
        ),
    )
    seen = upstream.seen[0]
    assert seen.path == "/v1/chat/completions" and seen.raw_query == ""
    assert seen.body == {
        "model": "gemini-2.5-flash",
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hello"}],
        "max_tokens": 300,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "stop": ["END"],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
        },
    }
    parts = response.candidates[0].content.parts
    assert [(p.thought, p.text) for p in parts] == [(True, "They greet me"), (None, "Hello there")]
    assert response.text == "Hello there", "thoughts never mix into the answer text"
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert (usage.prompt_token_count, usage.cached_content_token_count, usage.candidates_token_count) == (5, 2, 3)
    assert usage.total_token_count == 8


async def test_a_stream_with_thoughts_and_several_calls_in_one_chunk(router, upstream, gemini_sdk):
    client = gemini_sdk(router, "reasoning=Two files to read,calls=2,calls_per_chunk=3,piece=3")
    chunks = [
        chunk
        async for chunk in await client.models.generate_content_stream(
            model="local-model", contents="look", config=types.GenerateContentConfig(tools=TOOLS)
        )
    ]
    seen = upstream.seen[0]
    assert seen.body["stream"] is True and seen.body["stream_options"] == {"include_usage": True}
    assert seen.body["tools"][1] == {
        "type": "function",
        "function": {
            "name": "run_shell_command",
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
        },
    }
    parts = [part for chunk in chunks for part in chunk.candidates[0].content.parts or []]
    assert "".join(p.text for p in parts if p.thought) == "Two files to read"
    calls = [p.function_call for p in parts if p.function_call]
    assert [(c.id, c.name, c.args) for c in calls] == [
        ("call_0", "tool0", {"n": 0, "path": "f0.txt"}),
        ("call_1", "tool1", {"n": 1, "path": "f1.txt"}),
    ]
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.prompt_token_count == 5


async def test_a_streamed_text_arrives_in_pieces(router, upstream, gemini_sdk):
    client = gemini_sdk(router, "say=one two three four,piece=4")
    chunks = [c async for c in await client.models.generate_content_stream(model="m", contents="hi")]
    assert len(chunks) > 2 and "".join(c.text or "" for c in chunks) == "one two three four"
    assert upstream.seen[0].body["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_function_call_loop_keeps_the_ids(router, upstream, gemini_sdk, stream):
    """The SDK sends the calls back as they came (ids included) with the function's responses:
    the upstream gets OpenAI tool messages answering the calls it made."""
    client = gemini_sdk(router, "calls=2")
    first = await client.models.generate_content(
        model="m", contents="look", config=types.GenerateContentConfig(tools=TOOLS)
    )
    calls = first.function_calls
    assert [c.name for c in calls] == ["tool0", "tool1"]
    history = [
        types.Content(role="user", parts=[types.Part.from_text(text="look")]),
        first.candidates[0].content,
        types.Content(
            role="user",
            parts=[
                types.Part(function_response=types.FunctionResponse(id=c.id, name=c.name, response={"output": f"r{i}"}))
                for i, c in enumerate(calls)
            ],
        ),
    ]
    follow = gemini_sdk(router)
    if stream:
        text = "".join(
            [c.text or "" async for c in await follow.models.generate_content_stream(model="m", contents=history)]
        )
    else:
        text = (await follow.models.generate_content(model="m", contents=history)).text
    sent = upstream.seen[1].body["messages"]
    assert [c["id"] for c in sent[1]["tool_calls"]] == ["call_0", "call_1"]
    assert sent[2:] == [
        {"role": "tool", "tool_call_id": "call_0", "content": "r0"},
        {"role": "tool", "tool_call_id": "call_1", "content": "r1"},
    ]
    assert text == "The command printed: r1"


async def test_calls_without_ids_get_stable_ones_that_their_results_match(router, upstream, http):
    """Gemini CLI keeps a call without an id as it came and answers it with an id of its own: the
    upstream sees the same made-up id on the call and on its result, turn after turn."""
    turn = {
        "contents": [
            {"role": "user", "parts": [{"text": "go"}]},
            {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "run_shell_command", "args": {"command": "ls"}}},
                    {"functionCall": {"name": "run_shell_command", "args": {"command": "pwd"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"id": "cli-1", "name": "run_shell_command", "response": {"output": "a"}}},
                    {"functionResponse": {"id": "cli-2", "name": "run_shell_command", "response": {"error": "no"}}},
                ],
            },
        ]
    }
    raw = await http(router)
    for _ in range(2):
        response = await raw.post("/v1beta/models/local-model:generateContent", json=turn, headers=GEMINI_CLI)
        assert response.status == 200
    first, second = (seen.body["messages"] for seen in upstream.seen)
    assert first == second
    assert [c["id"] for c in first[1]["tool_calls"]] == ["gemini_call_0", "gemini_call_1"]
    assert [(m["tool_call_id"], m["content"]) for m in first[2:]] == [("gemini_call_0", "a"), ("gemini_call_1", "no")]


@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_error_is_a_google_error(router, upstream, gemini_sdk, stream):
    client = gemini_sdk(router, "status=500")
    with pytest.raises(errors.ServerError) as caught:
        if stream:
            async for _ in await client.models.generate_content_stream(model="m", contents="hi"):
                pass
        else:
            await client.models.generate_content(model="m", contents="hi")
    assert caught.value.code == 500 and caught.value.status == "INTERNAL"
    assert caught.value.message == "upstream error 500"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_context_overflow_is_googles_own_error(router, upstream, gemini_sdk, stream):
    """Google's words for a prompt too long for the model, 400 INVALID_ARGUMENT."""
    client = gemini_sdk(router, "overflow")
    with pytest.raises(errors.ClientError) as caught:
        if stream:
            async for _ in await client.models.generate_content_stream(model="m", contents="hi"):
                pass
        else:
            await client.models.generate_content(model="m", contents="hi")
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.message == "The input token count (40021) exceeds the maximum number of tokens allowed (32768)."


async def test_an_upstream_that_dies_mid_stream_ends_the_stream_with_a_google_error(router, upstream, http):
    raw = await http(router)
    response = await raw.post(
        "/v1beta/models/m:streamGenerateContent?alt=sse",
        json={"contents": [{"parts": [{"text": "hi"}]}]},
        headers={**GEMINI_CLI, "x-test-upstream": "say=abcdefgh,piece=2,die_after=2,die_when=sent"},
    )
    first = [await response.content.readuntil(b"\r\n\r\n") for _ in range(2)]
    upstream.release("sent")  # the upstream dies once the client has what came before
    events = [json.loads(e.removeprefix(b"data: ")) for e in [*first, await response.read()]]
    assert [e["candidates"][0]["content"]["parts"] for e in events[:2]] == [[{"text": "ab"}], [{"text": "cd"}]]
    assert events[-1]["error"]["code"] == 502 and "in the middle of the response" in events[-1]["error"]["message"]


@pytest.mark.parametrize("wait", ["hold_before", "hold"], ids=["before-headers", "after-headers"])
async def test_a_waiting_stream_gets_blank_line_keepalives_then_the_translation(make_router, upstream, http, wait):
    """Gemini's keep-alive is a blank line (its SDK's reader stalls on a comment): it goes out
    while the upstream has not answered, and while it has answered with nothing to translate yet
    (llama-server's role chunk and comments during a long prefill), then the translated chunks."""
    router = await make_router(RULES.replace("api: {api}", "api: {api}\n    keepalive: 0.01"), api="openai-chat")
    raw = await http(router)
    response = await raw.post(
        "/v1beta/models/m:streamGenerateContent?alt=sse",
        json={"contents": [{"parts": [{"text": "hi"}]}]},
        headers={**GEMINI_CLI, "x-test-upstream": f"{wait}=first"},
    )
    assert response.status == 200
    assert await response.content.readexactly(2) == b"\r\n"
    upstream.release("first")
    body = await response.read()
    events = [json.loads(e.strip().removeprefix(b"data: ")) for e in body.split(b"\r\n\r\n") if e.strip()]
    assert "".join(p.get("text", "") for e in events for p in e["candidates"][0]["content"]["parts"]) == (
        "tok0 tok1 tok2 "
    )
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"


async def test_the_model_a_rule_or_the_upstream_chooses_is_the_one_sent(router_factory, upstream, http):
    """The default rules name the upstream's model: a Gemini turn names a Gemini model in its path,
    the upstream is asked for local-model."""
    router = await router_factory(upstream.url, with_api("openai-chat"))
    raw = await http(router)
    turn = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "tools": [{"functionDeclarations": [{"name": "read_file"}]}, {"googleSearch": {}}],
    }
    response = await raw.post("/v1beta/models/gemini-3.8-flash:generateContent", json=turn, headers=GEMINI_CLI)
    assert response.status == 200
    assert upstream.seen[0].body["model"] == "local-model"
    assert [t["function"]["name"] for t in upstream.seen[0].body["tools"]] == ["read_file"]
    count = await raw.post(
        "/v1beta/models/gemini-3.8-flash:countTokens", json={"contents": turn["contents"]}, headers=GEMINI_CLI
    )
    assert count.status == 200 and (await count.json())["totalTokens"] > 0
    assert len(upstream.seen) == 1, "token counts are estimated here, never forwarded"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"contents": [{"role": "bot", "parts": [{"text": "hi"}]}]}, "contents[0].role"),
        ({"contents": [{"parts": "hi"}]}, "contents[0].parts"),
        ({"contents": [{"parts": ["hi"]}]}, "contents[0].parts[0]"),
        ({"contents": [{"parts": [{"text": 5}]}]}, "contents[0].parts[0].text"),
        ({"contents": [{"parts": [{"functionCall": "ls"}]}]}, "contents[0].parts[0].functionCall"),
        ({"contents": [{"parts": [{"inlineData": {"data": 1}}]}]}, "contents[0].parts[0].data"),
        ({"contents": [], "generationConfig": {"temperature": "hot"}}, "generationConfig.temperature"),
        ({"contents": [], "generationConfig": {"maxOutputTokens": 1.5}}, "generationConfig.maxOutputTokens"),
        ({"contents": [], "generationConfig": {"stopSequences": [1]}}, "generationConfig.stopSequences"),
        ({"contents": [], "generationConfig": []}, "generationConfig"),
        ({"contents": [], "systemInstruction": {"parts": 3}}, "systemInstruction.parts"),
        ({"contents": [], "tools": [{"functionDeclarations": {"name": "f"}}]}, "tools[0].functionDeclarations"),
        ({"contents": [], "toolConfig": {"functionCallingConfig": 1}}, "toolConfig.functionCallingConfig"),
    ],
)
async def test_a_malformed_gemini_body_is_a_400_in_googles_shape(router, upstream, http, body, field):
    raw = await http(router)
    response = await raw.post(
        "/v1beta/models/m:streamGenerateContent?alt=sse",
        json={**body, "tools": body.get("tools", [{"functionDeclarations": [{"name": "f"}]}])},
        headers=GEMINI_CLI,
    )
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT" and error["message"].startswith(field)
    assert upstream.seen == []


# -- a Gemini client to an Anthropic upstream ---------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_a_gemini_client_gets_an_anthropic_upstreams_answer(make_router, upstream, gemini_sdk, stream):
    router = await make_router(RULES, api="anthropic")
    client = gemini_sdk(router, "tool=run_shell_command")
    config = types.GenerateContentConfig(system_instruction="Be brief.", tools=TOOLS)
    if stream:
        chunks = [
            c async for c in await client.models.generate_content_stream(model="m", contents="run", config=config)
        ]
        calls = [call for c in chunks for call in c.function_calls or []]
        usage = chunks[-1].usage_metadata
    else:
        response = await client.models.generate_content(model="m", contents="run", config=config)
        calls, usage = response.function_calls, response.usage_metadata
    seen = upstream.seen[0]
    assert seen.path == "/v1/messages" and seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.body["system"] == [{"type": "text", "text": "Be brief."}] and seen.body["max_tokens"] == 4096
    assert [(c.id, c.name, c.args) for c in calls] == [
        (
            "toolu_test1",
            "run_shell_command",
            {"command": "echo hi", "description": "Run the command the test asked for"},
        )
    ]
    assert usage.prompt_token_count == 10 and usage.candidates_token_count in (3, 0)


# -- the Anthropic and OpenAI SDKs to a Gemini upstream -----------------------------------------


@pytest.fixture
async def gemini_upstream_router(make_router):
    return await make_router(RULES, api="gemini")


@pytest.mark.parametrize("stream", [False, True])
async def test_an_anthropic_client_gets_a_gemini_upstreams_answer(gemini_upstream_router, upstream, sdk, stream):
    client = sdk(gemini_upstream_router)
    kwargs: dict[str, Any] = {
        "model": "gemini-2.5-flash",
        "max_tokens": 100,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "hi"}],
    }
    if stream:
        async with client.messages.stream(**kwargs) as events:
            message = await events.get_final_message()
    else:
        message = await client.messages.create(**kwargs)
    seen = upstream.seen[0]
    verb = "streamGenerateContent" if stream else "generateContent"
    assert seen.path == f"/v1beta/models/gemini-2.5-flash:{verb}"
    assert seen.raw_query == ("alt=sse" if stream else "")
    assert seen.body == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"maxOutputTokens": 100},
    }
    assert [block.type for block in message.content] == ["text"] and message.content[0].text == "tok0 tok1 tok2 "
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (5, 3)


async def test_an_anthropic_tool_loop_through_a_gemini_upstream(make_router, agent_upstream, sdk):
    """The fake Gemini server calls a function without an id; the client gets an id, and its
    result goes back to Gemini named after the function, without the made-up id."""
    router = await make_router(RULES, agent_upstream.url, api="gemini")
    client = sdk(router)
    tools = [{"name": "run_shell_command", "input_schema": {"type": "object", "properties": {}}}]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "run it"}]
    first = await client.messages.create(model="g", max_tokens=100, tools=tools, messages=messages)
    call = first.content[0]
    assert call.type == "tool_use" and call.name == "run_shell_command" and first.stop_reason == "tool_use"
    messages += [
        {"role": "assistant", "content": [call.model_dump(exclude_none=True)]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "GHOST"}]},
    ]
    async with client.messages.stream(model="g", max_tokens=100, tools=tools, messages=messages) as events:
        second = await events.get_final_message()
    sent = agent_upstream.seen[1].body["contents"]
    assert sent[1]["parts"] == [{"functionCall": {"name": "run_shell_command", "args": call.input}}]
    assert sent[2]["parts"] == [{"functionResponse": {"name": "run_shell_command", "response": {"output": "GHOST"}}}]
    assert second.content[0].text == 'The command printed: {"output": "GHOST"}'


async def test_an_openai_client_gets_a_gemini_upstreams_stream(gemini_upstream_router, upstream):
    async with openai.AsyncOpenAI(
        base_url=str(gemini_upstream_router.make_url("/v1")), api_key="none", max_retries=0
    ) as client:
        async with client.chat.completions.stream(
            model="gemini-2.5-flash",
            messages=[{"role": "user", "content": "hi"}],
            stream_options={"include_usage": True},
        ) as stream:
            completion = await stream.get_final_completion()
    assert upstream.seen[0].path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert completion.choices[0].message.content == "tok0 tok1 tok2 "
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 3)


async def test_a_gemini_upstreams_error_reaches_an_anthropic_client_in_its_shape(gemini_upstream_router, sdk):
    with pytest.raises(anthropic.InternalServerError) as caught:
        await sdk(gemini_upstream_router).messages.create(
            model="g",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-test-upstream": "status=500"},
        )
    assert caught.value.body["error"] == {"type": "api_error", "message": "upstream error 500"}
