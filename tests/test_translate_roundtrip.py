"""Property tests of the translation hub: what each API can say survives the trip through the hub
and back, requests and answers, and a stream adds up to the same answer as the whole one."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from router.errors import BadRequest
from router.translate import anthropic as A
from router.translate import anthropic_stream as AS
from router.translate import gemini as G
from router.translate import gemini_stream as GS
from router.translate import hub
from router.translate import openai_chat as O
from router.translate import openai_chat_stream as OS
from router.translate import openai_responses as R
from router.translate import openai_responses_stream as RS
from router.translate.apis import translate_request
from tests.translate_cases import (
    answers,
    anthropic_loosened,
    anthropic_requests,
    check_anthropic_stream,
    check_responses_stream,
    gemini_requests,
    openai_requests,
    responses_events,
    responses_requests,
)

KEYS = [
    "model", "messages", "role", "content", "type", "text", "system", "tools", "tool_choice", "name", "input",
    "id", "tool_use_id", "tool_call_id", "tool_calls", "function", "arguments", "source", "image_url", "url",
    "data", "media_type", "thinking", "signature", "reasoning_content", "stop", "stop_sequences", "max_tokens",
    "output_config", "format", "schema", "response_format", "json_schema", "stream", "input_schema", "parameters",
    "is_error", "index", "budget_tokens", "disable_parallel_tool_use", "user", "assistant", "tool", "image",
    "tool_use", "tool_result", "base64", "redacted_thinking", "json_object", "enabled", "developer", "auto", "any",
]  # fmt: skip
settings.register_profile("translate", max_examples=60, deadline=None)
settings.load_profile("translate")


@given(anthropic_requests())
def test_anthropic_request_survives_the_hub(body: dict[str, Any]) -> None:
    assert A.request_from_hub(A.request_to_hub(body)) == body


@given(anthropic_requests())
def test_anthropic_strings_are_read_as_their_blocks(body: dict[str, Any]) -> None:
    assert A.request_to_hub(anthropic_loosened(body)) == A.request_to_hub(body)


@given(openai_requests())
def test_openai_request_survives_the_hub(body: dict[str, Any]) -> None:
    assert O.request_from_hub(O.request_to_hub(body)) == body


@given(anthropic_requests())
def test_anthropic_request_through_openai_keeps_what_openai_can_carry(body: dict[str, Any]) -> None:
    """Anthropic -> hub -> OpenAI -> hub: the conversation is the same, minus what OpenAI has no
    field for (signatures, redacted reasoning, error flags; images of tool results move to a
    user turn after them; the system blocks become one system message)."""
    request = A.request_to_hub(body)
    back = O.request_to_hub(O.request_from_hub(request))
    assert back.system == ((hub.Text("\n\n".join(t.text for t in request.system)),) if request.system else ())
    assert back.tools == request.tools
    assert (back.max_tokens, back.temperature, back.top_p, back.top_k, back.stop) == (
        request.max_tokens,
        request.temperature,
        request.top_p,
        request.top_k,
        request.stop,
    )
    assert _calls(back) == _calls(request)
    assert _results(back) == _results(request)
    assert _flow(back) == _flow(request)


def _calls(request: hub.Request) -> list[tuple[str, str, Any]]:
    return [
        (p.id, p.name, json.loads(p.arguments))
        for m in request.messages
        for p in m.parts
        if isinstance(p, hub.ToolCall)
    ]


def _results(request: hub.Request) -> list[tuple[str, tuple[str, ...]]]:
    return [
        (p.call_id, tuple(c.text for c in p.content if isinstance(c, hub.Text)))
        for m in request.messages
        for p in m.parts
        if isinstance(p, hub.ToolResult)
    ]


def _flow(request: hub.Request) -> list[tuple[str, str]]:
    """Who says what, in order: texts, tool calls and results (reasoning and images left out)."""
    flow = []
    for message in request.messages:
        for part in message.parts:
            if isinstance(part, hub.Text):
                flow.append((message.role, part.text))
            elif isinstance(part, hub.ToolCall | hub.ToolResult):
                flow.append((message.role, part.id if isinstance(part, hub.ToolCall) else part.call_id))
    return flow


@given(answers())
def test_anthropic_answer_survives_the_hub(answer: hub.Answer) -> None:
    message = A.answer_from_hub(answer)
    assert A.answer_from_hub(A.answer_to_hub(message)) == message
    assert A.answer_to_hub(message) == replace(answer, id=message["id"])


@given(answers(signatures=False))
def test_openai_answer_survives_the_hub(answer: hub.Answer) -> None:
    completion = O.answer_from_hub(answer)
    assert O.answer_from_hub(O.answer_to_hub(completion)) == completion
    assert O.answer_to_hub(completion) == replace(answer, id=completion["id"])


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def _decode(decoder: Any, pieces: list[bytes]) -> list[hub.Event]:
    events = [event for piece in pieces for event in decoder.feed(piece)]
    return events + decoder.close()


def _anthropic_events(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    blocks = [block for block in data.decode().split("\n\n") if block]
    parsed = []
    for block in blocks:
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        parsed.append((lines["event"], json.loads(lines["data"])))
    return parsed


@given(answers(), st.lists(st.integers(0, 10_000), max_size=12))
def test_anthropic_stream_adds_up_to_the_answer(answer: hub.Answer, cuts: list[int]) -> None:
    data = AS.StreamEncoder().encode(hub.events_of(answer))
    check_anthropic_stream(_anthropic_events(data))
    assembled = hub.assemble(_decode(AS.StreamDecoder(), _split(data, cuts)))
    assert A.answer_from_hub(assembled) == {**A.answer_from_hub(answer), "id": A.answer_from_hub(assembled)["id"]}


@given(answers(signatures=False), st.lists(st.integers(0, 10_000), max_size=12))
def test_openai_stream_becomes_an_anthropic_stream_of_the_same_answer(answer: hub.Answer, cuts: list[int]) -> None:
    """An OpenAI stream cut anywhere, translated to Anthropic's, adds up to the non-streamed translation."""
    upstream = OS.StreamEncoder(answer.model).encode(hub.events_of(answer))
    client = AS.StreamEncoder().encode(_decode(OS.StreamDecoder(), _split(upstream, cuts)))
    check_anthropic_stream(_anthropic_events(client))
    streamed = A.answer_from_hub(hub.assemble(_decode(AS.StreamDecoder(), [client])))
    whole = A.answer_from_hub(O.answer_to_hub(O.answer_from_hub(answer)))
    assert streamed == {**whole, "id": streamed["id"]}


anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.sampled_from(KEYS),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=500)
@given(
    st.sampled_from(["anthropic", "openai-chat"]),
    st.fixed_dictionaries({"messages": st.lists(st.dictionaries(st.sampled_from(KEYS), anything, max_size=5))}),
    st.dictionaries(st.sampled_from(KEYS), anything, max_size=6),
)
def test_any_body_is_translated_or_refused_as_a_bad_request(
    api: str, messages: dict[str, Any], rest: dict[str, Any]
) -> None:
    """Whatever a client sends, translating it gives a request or a BadRequest, never a crash."""
    body = {**rest, **messages} if "messages" not in rest or rest["messages"] is None else rest
    for target in ("anthropic", "openai-chat", "openai-responses"):
        try:
            translate_request(api, target, body)
        except BadRequest:
            pass


@given(openai_requests())
def test_openai_request_through_anthropic_keeps_the_conversation(body: dict[str, Any]) -> None:
    """OpenAI chat -> hub -> Anthropic -> hub: the conversation is the same (a system message in
    the middle joins the user turn beside it, as Anthropic has no such message)."""
    request = O.request_to_hub(body)
    back = A.request_to_hub(A.request_from_hub(request))
    assert back.system[: len(request.system)] == request.system
    assert back.tools == request.tools
    assert (back.max_tokens, back.temperature, back.top_p, back.top_k, back.stop) == (
        request.max_tokens or A.DEFAULT_MAX_TOKENS,
        request.temperature,
        request.top_p,
        request.top_k,
        request.stop,
    )
    assert [(c.id, c.name) for c in _all(back, hub.ToolCall)] == [(c.id, c.name) for c in _all(request, hub.ToolCall)]
    assert _results(back) == _results(request)
    expected = [f for f in _flow(request) if f[0] != "system"]
    moved = [text for role, text in _flow(request) if role == "system"]  # now in a user turn...
    for part in back.system[len(request.system) :]:  # ...or, with no user turn after it, in the system prompt
        moved.remove(part.text)
    actual = []
    for role, text in _flow(back):
        if role == "user" and text in moved:
            moved.remove(text)
        else:
            actual.append((role, text))
    assert actual == expected


def _all(request: hub.Request, kind: type) -> list[Any]:
    return [p for m in request.messages for p in m.parts if isinstance(p, kind)]


# -- Gemini ------------------------------------------------------------------------------------


@given(gemini_requests())
def test_gemini_request_survives_the_hub(body: dict[str, Any]) -> None:
    assert G.request_from_hub(G.request_to_hub(body)) == body


@given(gemini_requests())
def test_gemini_calls_and_results_still_match_after_openai_chat(body: dict[str, Any]) -> None:
    """Calls without ids get ids from their place, results find their call (by id, else by the
    function's name), and through OpenAI chat and back the Gemini request is the same."""
    openai_body = O.request_from_hub(G.request_to_hub(body))
    calls = [c["id"] for m in openai_body["messages"] if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    results = [m["tool_call_id"] for m in openai_body["messages"] if m["role"] == "tool"]
    assert results == calls
    back = O.request_to_hub(openai_body)
    assert _calls(back) == _calls(G.request_to_hub(body))
    assert _results(back) == _results(G.request_to_hub(body))


@given(gemini_requests())
def test_gemini_request_through_anthropic_keeps_the_conversation(body: dict[str, Any]) -> None:
    request = G.request_to_hub(body)
    back = A.request_to_hub(A.request_from_hub(request))
    assert back.system == request.system and back.tools == request.tools
    assert _calls(back) == _calls(request) and _results(back) == _results(request)
    assert _flow(back) == _flow(request)


@given(anthropic_requests())
def test_anthropic_request_through_gemini_keeps_the_conversation(body: dict[str, Any]) -> None:
    """Anthropic -> hub -> Gemini -> hub: the same texts, calls and results (ids kept, each
    result named after its call's function), tools and settings."""
    request = A.request_to_hub(body)
    gemini_body = G.request_from_hub(request)
    back = G.request_to_hub(gemini_body)
    assert back.system == request.system and back.tools == request.tools
    assert (back.max_tokens, back.temperature, back.top_p, back.top_k, back.stop, back.response_format) == (
        request.max_tokens,
        request.temperature,
        request.top_p,
        request.top_k,
        request.stop,
        request.response_format,
    )
    assert _calls(back) == _calls(request)
    joined = [(call_id, ("\n\n".join(texts),) if texts else ()) for call_id, texts in _results(request)]
    assert _results(back) == joined, "a functionResponse holds one text"
    assert _flow(back) == _flow(request)
    names = {p.id: p.name for m in request.messages for p in m.parts if isinstance(p, hub.ToolCall)}
    for content in gemini_body["contents"]:
        for part in content["parts"]:
            if "functionResponse" in part and part["functionResponse"]["id"] in names:
                assert part["functionResponse"]["name"] == names[part["functionResponse"]["id"]]


def test_gemini_schemas_in_its_own_dialect_become_json_schema():
    """`parameters` and `responseSchema` (upper-case types, as the Gemini CLI's classifier sends
    even in responseJsonSchema) read as the JSON Schema a local server's grammar takes."""
    schema = {
        "type": "OBJECT",
        "properties": {"n": {"type": "INTEGER"}, "tags": {"type": "ARRAY", "items": {"type": "STRING"}}},
    }
    lower = {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}},
    }
    request = G.request_to_hub(
        {
            "contents": [{"parts": [{"text": "hi"}]}],
            "tools": [{"functionDeclarations": [{"name": "f", "parameters": schema}]}, {"googleSearch": {}}],
            "generationConfig": {"responseMimeType": "application/json", "responseSchema": schema},
        }
    )
    assert request.tools == (hub.Tool("f", None, lower),)
    assert request.response_format == hub.ResponseFormat(lower)
    assert request.messages == (hub.Message("user", (hub.Text("hi"),)),)


def test_a_gemini_result_whose_id_names_no_call_answers_the_oldest_call_of_its_function():
    """Gemini CLI gives its own ids to results of calls that came without one."""
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "go"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "ls", "args": {}}}, {"functionCall": {"name": "ls", "args": {"a": 1}}}, {"functionCall": {"name": "cat", "args": {}}}]},
            {"role": "user", "parts": [
                {"functionResponse": {"id": "cat-17-x", "name": "cat", "response": {"output": "c"}}},
                {"functionResponse": {"id": "ls-1-y", "name": "ls", "response": {"output": "1"}}},
                {"functionResponse": {"id": "ls-2-z", "name": "ls", "response": {"error": "2"}}},
            ]},
        ]
    }  # fmt: skip
    messages = O.request_from_hub(G.request_to_hub(body))["messages"]
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["gemini_call_0", "gemini_call_1", "gemini_call_2"]
    assert [(m["tool_call_id"], m["content"]) for m in messages[2:]] == [
        ("gemini_call_2", "c"),
        ("gemini_call_0", "1"),
        ("gemini_call_1", "2"),
    ]


@given(answers())
def test_gemini_answer_survives_the_hub(answer: hub.Answer) -> None:
    response = G.answer_from_hub(answer)
    assert G.answer_from_hub(G.answer_to_hub(response)) == response
    assert G.answer_to_hub(response) == replace(answer, id=response["responseId"])


@given(answers(), st.lists(st.integers(0, 10_000), max_size=12))
def test_gemini_stream_adds_up_to_the_answer(answer: hub.Answer, cuts: list[int]) -> None:
    data = GS.StreamEncoder().encode(hub.events_of(answer))
    _check_gemini_stream(data)
    assembled = hub.assemble(_decode(GS.StreamDecoder(), _split(data, cuts)))
    assert G.answer_from_hub(assembled) == {**G.answer_from_hub(answer), "responseId": assembled.id}


@given(answers(signatures=False), st.lists(st.integers(0, 10_000), max_size=12))
def test_openai_stream_becomes_a_gemini_stream_of_the_same_answer(answer: hub.Answer, cuts: list[int]) -> None:
    """An OpenAI stream cut anywhere, translated to Gemini's, adds up to the non-streamed translation."""
    upstream = OS.StreamEncoder(answer.model).encode(hub.events_of(answer))
    client = GS.StreamEncoder().encode(_decode(OS.StreamDecoder(), _split(upstream, cuts)))
    _check_gemini_stream(client)
    streamed = G.answer_from_hub(hub.assemble(_decode(GS.StreamDecoder(), [client])))
    whole = G.answer_from_hub(O.answer_to_hub(O.answer_from_hub(answer)))
    assert streamed == {**whole, "responseId": streamed["responseId"]}


@given(answers(), st.lists(st.integers(0, 10_000), max_size=12))
def test_gemini_stream_becomes_an_anthropic_stream_of_the_same_answer(answer: hub.Answer, cuts: list[int]) -> None:
    upstream = GS.StreamEncoder(answer.model).encode(hub.events_of(answer))
    client = AS.StreamEncoder().encode(_decode(GS.StreamDecoder(), _split(upstream, cuts)))
    check_anthropic_stream(_anthropic_events(client))
    streamed = A.answer_from_hub(hub.assemble(_decode(AS.StreamDecoder(), [client])))
    whole = A.answer_from_hub(G.answer_to_hub(G.answer_from_hub(answer)))
    assert streamed == {**whole, "id": streamed["id"]}


def _check_gemini_stream(data: bytes) -> None:
    """Fail unless DATA is what Gemini CLI accepts: `data:` events of GenerateContentResponses
    with CRLF line ends, no empty answer text part, a finishReason last (and only last)."""
    events = data.split(b"\r\n\r\n")
    assert events[-1] == b""
    chunks = [json.loads(event.removeprefix(b"data: ")) for event in events[:-1]]
    for chunk in chunks:
        parts = chunk["candidates"][0]["content"]["parts"]
        assert chunk["candidates"][0]["content"]["role"] == "model"
        assert all(p.get("thought") or p.get("text") != "" for p in parts), parts
    assert [("finishReason" in c["candidates"][0]) for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert "usageMetadata" in chunks[-1]


GEMINI_KEYS = [
    "contents", "role", "parts", "text", "thought", "thoughtSignature", "inlineData", "fileData", "mimeType", "data",
    "fileUri", "functionCall", "functionResponse", "id", "name", "args", "response", "output", "error", "user", "model",
    "systemInstruction", "tools", "functionDeclarations", "parameters", "parametersJsonSchema", "description",
    "toolConfig", "functionCallingConfig", "mode", "allowedFunctionNames", "generationConfig", "maxOutputTokens",
    "temperature", "topP", "topK", "stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema",
    "thinkingConfig", "thinkingBudget", "thinkingLevel", "type", "properties", "googleSearch",
]  # fmt: skip
gemini_anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.sampled_from(GEMINI_KEYS),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(GEMINI_KEYS), inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=500)
@given(
    st.fixed_dictionaries(
        {"contents": st.lists(st.dictionaries(st.sampled_from(GEMINI_KEYS), gemini_anything, max_size=5))}
    ),
    st.dictionaries(st.sampled_from(GEMINI_KEYS), gemini_anything, max_size=6),
)
def test_any_gemini_body_is_translated_or_refused_as_a_bad_request(
    contents: dict[str, Any], rest: dict[str, Any]
) -> None:
    """Whatever a Gemini client sends, translating it gives a request or a BadRequest, never a crash."""
    body = {**rest, **contents} if rest.get("contents") is None else rest
    for target in ("anthropic", "openai-chat"):
        try:
            translate_request("gemini", target, body, "m", True)
        except BadRequest:
            pass


# -- OpenAI Responses --------------------------------------------------------------------------


@given(responses_requests())
def test_responses_request_survives_the_hub(body: dict[str, Any]) -> None:
    assert R.request_from_hub(R.request_to_hub(body)) == body


@given(responses_requests())
def test_responses_request_through_openai_chat_keeps_the_conversation(body: dict[str, Any]) -> None:
    """Responses -> hub -> OpenAI chat -> hub: the conversation is the same, minus what chat has
    no field for (encrypted reasoning; images of tool results move to a user turn after them;
    instructions and leading developer messages become one system message)."""
    request = R.request_to_hub(body)
    back = O.request_to_hub(O.request_from_hub(request))
    assert back.system == ((hub.Text("\n\n".join(t.text for t in request.system)),) if request.system else ())
    assert back.tools == request.tools
    assert (back.max_tokens, back.temperature, back.top_p, back.response_format, back.reasoning_effort) == (
        request.max_tokens,
        request.temperature,
        request.top_p,
        request.response_format,
        request.reasoning_effort,
    )
    assert _all(back, hub.ToolCall) == _all(request, hub.ToolCall)
    assert _results(back) == _results(request)
    assert _flow(back) == _flow(request)


@given(responses_requests())
def test_responses_request_through_anthropic_keeps_the_conversation(body: dict[str, Any]) -> None:
    """Responses -> hub -> Anthropic -> hub: the same calls, results and texts in the same order
    (a developer message in the middle joins the user turn beside it)."""
    request = R.request_to_hub(body)
    back = A.request_to_hub(A.request_from_hub(request))
    assert back.tools == request.tools
    assert [(c.id, c.name) for c in _all(back, hub.ToolCall)] == [
        (A.tool_id(c.id), c.name) for c in _all(request, hub.ToolCall)
    ]
    assert [r[1] for r in _results(back)] == [r[1] for r in _results(request)]
    assert [text for role, text in _flow(back) if role == "assistant"] == [
        A.tool_id(text) if (role, text) in _call_flow(request) else text
        for role, text in _flow(request)
        if role == "assistant"
    ]


def _call_flow(request: hub.Request) -> set[tuple[str, str]]:
    return {("assistant", c.id) for c in _all(request, hub.ToolCall)}


@given(answers(signatures=False))
def test_responses_answer_survives_the_hub(answer: hub.Answer) -> None:
    response = R.answer_from_hub(answer)
    assert R.answer_from_hub(R.answer_to_hub(response)) == response
    assert R.answer_to_hub(response) == replace(answer, id=response["id"])


@given(answers(signatures=False), st.lists(st.integers(0, 10_000), max_size=12))
def test_responses_stream_adds_up_to_the_answer(answer: hub.Answer, cuts: list[int]) -> None:
    data = RS.StreamEncoder().encode(hub.events_of(answer))
    check_responses_stream(responses_events(data))
    assembled = hub.assemble(_decode(RS.StreamDecoder(), _split(data, cuts)))
    assert assembled == replace(answer, id=assembled.id)


@given(answers(signatures=False), st.lists(st.integers(0, 10_000), max_size=12))
def test_openai_chat_stream_becomes_a_responses_stream_of_the_same_answer(answer: hub.Answer, cuts: list[int]) -> None:
    """An OpenAI chat stream cut anywhere, translated to a Responses stream, adds up to the
    non-streamed translation; the Responses stream translated on to Anthropic's keeps its contract."""
    upstream = OS.StreamEncoder(answer.model).encode(hub.events_of(answer))
    client = RS.StreamEncoder().encode(_decode(OS.StreamDecoder(), _split(upstream, cuts)))
    events = responses_events(client)
    check_responses_stream(events)
    whole = R.answer_from_hub(O.answer_to_hub(O.answer_from_hub(answer)))
    assert _without_ids(events[-1]["response"]) == _without_ids(whole)
    anthropic = AS.StreamEncoder().encode(_decode(RS.StreamDecoder(), _split(client, cuts)))
    check_anthropic_stream(_anthropic_events(anthropic))


def _without_ids(response: dict[str, Any]) -> dict[str, Any]:
    """RESPONSE minus its id and its items' ids (each translation makes its own)."""
    output = [{k: v for k, v in item.items() if k != "id"} for item in response["output"]]
    return {**response, "id": "", "output": output}


RESPONSES_KEYS = [
    "input", "instructions", "call_id", "output", "function_call", "function_call_output", "reasoning", "summary",
    "encrypted_content", "input_text", "output_text", "input_image", "summary_text", "reasoning_text", "developer",
    "max_output_tokens", "text", "effort", "json_schema", "strict",
]  # fmt: skip


@settings(max_examples=500)
@given(
    st.fixed_dictionaries(
        {
            "input": st.lists(
                st.dictionaries(st.sampled_from(KEYS + RESPONSES_KEYS), anything | st.sampled_from(RESPONSES_KEYS))
            )
            | anything
        }
    ),
    st.dictionaries(st.sampled_from(KEYS + RESPONSES_KEYS), anything, max_size=6),
)
def test_any_responses_body_is_translated_or_refused_as_a_bad_request(items: dict[str, Any], rest: dict[str, Any]):
    """Whatever a Responses client sends, translating it gives a request or a BadRequest, never a crash."""
    for target in ("anthropic", "openai-chat", "openai-responses"):
        try:
            translate_request("openai-responses", target, {**rest, **items})
        except BadRequest:
            pass
