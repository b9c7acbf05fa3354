"""Stream translation, OpenAI chat (llama-server's chunks) to Anthropic and back: the failures other
proxies shipped, each a named test, and the strict SDKs reading the translated bytes from a socket."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.translate import anthropic as A
from router.translate import anthropic_stream as AS
from router.translate import gemini as G
from router.translate import gemini_stream as GS
from router.translate import hub
from router.translate import openai_chat as O
from router.translate import openai_chat_stream as OS
from router.translate import openai_responses as R
from router.translate import openai_responses_stream as RS
from tests.translate_cases import (
    answers,
    check_anthropic_stream,
    check_responses_stream,
    llama_chunks,
    responses_events,
    sse_bytes,
)

STREAM_WORDS = [
    "id", "model", "choices", "index", "delta", "role", "content", "reasoning_content", "tool_calls", "function",
    "name", "arguments", "finish_reason", "usage", "prompt_tokens", "error", "message", "type", "message_start",
    "content_block_start", "content_block", "content_block_delta", "text_delta", "input_json_delta", "partial_json",
    "content_block_stop", "message_delta", "stop_reason", "message_stop", "text", "tool_use", "thinking", "input",
]  # fmt: skip
BASE = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "qwen"}


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """One llama-server chunk with DELTA."""
    return {**BASE, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def usage_chunk(prompt: int = 7, completion: int = 3, cached: int = 0) -> dict[str, Any]:
    """The chunk llama-server sends last when stream_options.include_usage is set."""
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return {**BASE, "choices": [], "usage": {**usage, "prompt_tokens_details": {"cached_tokens": cached}}}


def to_anthropic(data: bytes, piece: int = 0) -> bytes:
    """An OpenAI chat stream translated to Anthropic's, fed in pieces of PIECE bytes (0: whole)."""
    decoder, encoder = OS.StreamDecoder(), AS.StreamEncoder("qwen")
    size = piece or len(data) or 1
    out = b"".join(encoder.encode(decoder.feed(data[at : at + size])) for at in range(0, len(data), size))
    return out + encoder.encode(decoder.close())


def anthropic_events(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of an Anthropic stream."""
    events = []
    for block in data.decode().split("\n\n"):
        if block:
            lines = dict(line.split(": ", 1) for line in block.split("\n"))
            events.append((lines["event"], json.loads(lines["data"])))
    return events


def final_message(data: bytes) -> dict[str, Any]:
    """What an Anthropic stream adds up to, checked against the stream contract on the way."""
    check_anthropic_stream(anthropic_events(data))
    return A.answer_from_hub(hub.assemble(AS.StreamDecoder().feed(data)))


# -- the failures of other proxies -------------------------------------------------------------


def test_usage_in_message_start_and_in_message_delta():
    """Claude Code reads usage from message_start and from message_delta: both carry it, and the
    final counts (llama-server sends them last, after finish_reason) reach message_delta."""
    data = sse_bytes(
        [
            chunk({"role": "assistant", "content": None}),
            chunk({"content": "hi"}),
            chunk({}, "stop"),
            usage_chunk(9, 2, 4),
        ]
    )
    events = dict((name, body) for name, body in anthropic_events(to_anthropic(data)))
    assert events["message_start"]["message"]["usage"]["output_tokens"] == 0
    assert events["message_delta"]["usage"] == {
        "input_tokens": 5,
        "output_tokens": 2,
        "cache_read_input_tokens": 4,
        "cache_creation_input_tokens": 0,
    }
    assert list(events)[-1] == "message_stop"


def test_usage_arrives_even_when_the_server_sends_none():
    data = sse_bytes([chunk({"content": "hi"}), chunk({}, "stop")])
    assert final_message(to_anthropic(data))["usage"]["output_tokens"] == 0


def test_reasoning_deltas_go_into_a_thinking_block_not_the_text_block():
    """ "Content block is not a thinking block": reasoning after text opens a thinking block of its own."""
    data = sse_bytes(
        [
            chunk({"reasoning_content": "plan "}),
            chunk({"content": "answer"}),
            chunk({"reasoning_content": "more plan"}),
            chunk({"content": " more"}),
            chunk({}, "stop"),
        ]
    )
    message = final_message(to_anthropic(data, piece=5))
    assert [(b["type"], b.get("text") or b.get("thinking")) for b in message["content"]] == [
        ("thinking", "plan "),
        ("text", "answer"),
        ("thinking", "more plan"),
        ("text", " more"),
    ]


def test_every_delta_has_its_block_started_even_without_a_role_chunk():
    """ "Content block not found": a stream that starts with a tool call or text and no role chunk
    (as a non-streaming fallback's replay does) still opens each block before its deltas."""
    data = sse_bytes(
        [
            chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "Bash", "arguments": '{"a":1}'}}]}),
            chunk({"content": "after"}),
            chunk({}, "tool_calls"),
        ]
    )
    message = final_message(to_anthropic(data, piece=3))
    assert [b["type"] for b in message["content"]] == ["tool_use", "text"]
    assert message["stop_reason"] == "tool_use"


def test_an_upstream_error_mid_stream_is_an_error_event_after_open_blocks():
    data = sse_bytes(
        [chunk({"content": "par"}), {"error": {"message": "slot died", "type": "server_error"}}], done=False
    )
    events = anthropic_events(to_anthropic(data))
    assert events[-1] == ("error", {"type": "error", "error": {"type": "server_error", "message": "slot died"}})
    assert [name for name, _ in events].count("content_block_delta") == 1


def test_a_stream_cut_before_its_finish_is_an_error_not_a_complete_answer():
    data = sse_bytes([chunk({"content": "par"})], done=False)
    name, body = anthropic_events(to_anthropic(data))[-1]
    assert name == "error" and "finish_reason" in body["error"]["message"]


def test_several_tool_calls_in_one_chunk_all_arrive():
    calls = [
        {
            "index": i,
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": f"tool{i}", "arguments": f'{{"n":{i}}}'},
        }
        for i in range(3)
    ]
    data = sse_bytes(
        [chunk({"role": "assistant", "content": None}), chunk({"tool_calls": calls}), chunk({}, "tool_calls")]
    )
    message = final_message(to_anthropic(data))
    assert [(b["id"], b["name"], b["input"]) for b in message["content"]] == [
        ("call_0", "tool0", {"n": 0}),
        ("call_1", "tool1", {"n": 1}),
        ("call_2", "tool2", {"n": 2}),
    ]


def interleaved_calls(order: list[int]) -> bytes:
    """Two tool calls whose argument fragments come in ORDER (call positions), as a server that
    writes several calls at once may send them."""
    pieces = {0: ['{"comm', 'and": "ls', ' -la"}'], 1: ['{"pa', 'th": "a.txt"', "}"]}
    names = {0: "Bash", 1: "Read"}
    chunks, sent = [chunk({"role": "assistant", "content": None})], {0: 0, 1: 0}
    for position in order:
        head = {"id": f"call_{position}", "type": "function"} if sent[position] == 0 else {}
        function = {"arguments": pieces[position][sent[position]]}
        if sent[position] == 0:
            function["name"] = names[position]
        chunks.append(chunk({"tool_calls": [{"index": position, **head, "function": function}]}))
        sent[position] += 1
    return sse_bytes([*chunks, chunk({}, "tool_calls"), usage_chunk()])


@pytest.mark.parametrize("order", [[0, 1, 0, 1, 0, 1], [0, 1, 1, 1, 0, 0], [0, 0, 1, 0, 1, 1], [0, 0, 0, 1, 1, 1]])
@pytest.mark.parametrize("piece", [0, 7])
def test_interleaved_fragments_of_two_tool_calls_both_arrive_whole(order, piece):
    """A part cannot reopen, so a call begun while another's arguments are still incomplete JSON
    waits until they are whole (or the answer ends), then comes with all its arguments so far."""
    message = final_message(to_anthropic(interleaved_calls(order), piece=piece))
    assert [(b["id"], b["name"], b["input"]) for b in message["content"]] == [
        ("call_0", "Bash", {"command": "ls -la"}),
        ("call_1", "Read", {"path": "a.txt"}),
    ]
    assert message["stop_reason"] == "tool_use"


def test_interleaved_tool_calls_reach_a_responses_client_whole():
    decoder, encoder = OS.StreamDecoder(), RS.StreamEncoder("qwen")
    data = interleaved_calls([0, 1, 0, 1, 0, 1])
    out = encoder.encode(decoder.feed(data)) + encoder.encode(decoder.close())
    check_responses_stream(responses_events(out))
    reader = RS.StreamDecoder()
    answer = hub.assemble(reader.feed(out) + reader.close())
    calls = [(p.id, p.name, json.loads(p.arguments)) for p in answer.parts if isinstance(p, hub.ToolCall)]
    assert calls == [("call_0", "Bash", {"command": "ls -la"}), ("call_1", "Read", {"path": "a.txt"})]


def test_cumulative_argument_snapshots_become_fragments():
    """Servers that resend the whole arguments so far: the client gets each new piece once, so the
    input_json_delta fragments join into valid JSON."""
    snapshots = ['{"command"', '{"command": "ls', '{"command": "ls -la"}', '{"command": "ls -la"}']
    fragments = [chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "Bash", "arguments": ""}}]})]
    fragments += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": s}}]}) for s in snapshots]
    data = sse_bytes([*fragments, chunk({}, "tool_calls")])
    client = to_anthropic(data)
    partial = "".join(
        body["delta"]["partial_json"] for name, body in anthropic_events(client) if name == "content_block_delta"
    )
    assert json.loads(partial) == {"command": "ls -la"}
    assert final_message(client)["content"][0]["input"] == {"command": "ls -la"}


def test_fragments_that_nest_the_same_prefix_are_not_taken_for_snapshots():
    pieces = ['{"a":', '{"a":1}}']
    fragments = [
        chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": p}}]}) for p in pieces
    ]
    message = final_message(to_anthropic(sse_bytes([*fragments, chunk({}, "tool_calls")])))
    assert message["content"][0]["input"] == {"a": {"a": 1}}


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 0])
def test_think_tags_never_leak_into_the_answer(piece):
    """llama-server with --reasoning-format none leaves reasoning in the text: it becomes a
    thinking block whatever bytes the tags are cut at, and the answer has no tag."""
    data = sse_bytes(
        [
            chunk({"content": c})
            for c in ["\n<thi", "nk>\nLet me see.", " Done.</", "think>\n\n", "The answer", " is 4."]
        ]
        + [chunk({}, "stop")]
    )
    message = final_message(to_anthropic(data, piece=piece))
    assert [(b["type"], b.get("thinking", b.get("text"))) for b in message["content"]] == [
        ("thinking", "\nLet me see. Done."),
        ("text", "The answer is 4."),
    ]


def test_think_tags_in_a_whole_answer_become_reasoning():
    completion = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "<think>hmm</think>\n\n4"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    assert A.answer_from_hub(O.answer_to_hub(completion))["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": ""},
        {"type": "text", "text": "4"},
    ]


def test_a_tool_call_whose_name_comes_in_a_later_fragment_starts_when_it_is_known():
    fragments = [
        chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"arguments": '{"x"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"name": "Read", "arguments": ":2}"}}]}),
    ]
    message = final_message(to_anthropic(sse_bytes([*fragments, chunk({}, "tool_calls")])))
    assert message["content"][0] | {"id": "c1"} == {"type": "tool_use", "id": "c1", "name": "Read", "input": {"x": 2}}


def test_tool_call_fragments_without_an_index_follow_the_latest_call():
    fragments = [
        chunk({"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": '{"a"'}}]}),
        chunk({"tool_calls": [{"function": {"arguments": ":1}"}}]}),
        chunk({"tool_calls": [{"id": "c2", "function": {"name": "g", "arguments": "{}"}}]}),
    ]
    message = final_message(to_anthropic(sse_bytes([*fragments, chunk({}, "tool_calls")])))
    assert [(b["id"], b["input"]) for b in message["content"]] == [("c1", {"a": 1}), ("c2", {})]


def test_tool_call_ids_the_client_would_refuse_are_made_safe_the_same_way_both_ways():
    data = sse_bytes(
        [
            chunk({"tool_calls": [{"index": 0, "id": "call:1/a", "function": {"name": "f", "arguments": "{}"}}]}),
            chunk({}, "tool_calls"),
        ]
    )
    call_id = final_message(to_anthropic(data))["content"][0]["id"]
    assert call_id == "call_1_a" == A.tool_id("call:1/a")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    answers(signatures=False),
    st.lists(st.integers(1, 12), min_size=1, max_size=4),
    st.integers(1, 4),
    st.integers(0, 9),
)
def test_llama_server_streams_translate_to_the_whole_answer(answer, sizes, calls_per_chunk, piece):
    """Any answer, streamed by llama-server in any fragments (several tool calls per chunk), read
    in any byte pieces, adds up to the non-streamed translation of the same answer."""
    data = sse_bytes(llama_chunks(answer, sizes, calls_per_chunk))
    streamed = final_message(to_anthropic(data, piece=piece))
    whole = A.answer_from_hub(O.answer_to_hub(O.answer_from_hub(answer)))
    assert streamed == {**whole, "id": streamed["id"]}


# -- llama-server's chunks to a Gemini client --------------------------------------------------


def to_gemini(data: bytes, piece: int = 0) -> bytes:
    """An OpenAI chat stream translated to Gemini's, fed in pieces of PIECE bytes (0: whole)."""
    decoder, encoder = OS.StreamDecoder(), GS.StreamEncoder("qwen")
    size = piece or len(data) or 1
    out = b"".join(encoder.encode(decoder.feed(data[at : at + size])) for at in range(0, len(data), size))
    return out + encoder.encode(decoder.close())


def gemini_responses(data: bytes) -> list[dict[str, Any]]:
    """The GenerateContentResponses of a Gemini stream (CRLF-separated `data:` events)."""
    return [json.loads(event.removeprefix(b"data: ")) for event in data.split(b"\r\n\r\n") if event]


def gemini_parts(data: bytes) -> list[dict[str, Any]]:
    return [part for chunk in gemini_responses(data) for part in chunk["candidates"][0]["content"]["parts"]]


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 0])
def test_think_tags_become_thought_parts_never_answer_text(piece):
    data = sse_bytes(
        [chunk({"content": c}) for c in ["<thi", "nk>Let me see.", " Done.</", "think>\n\n", "The answer", " is 4."]]
        + [chunk({}, "stop")]
    )
    parts = gemini_parts(to_gemini(data, piece))
    assert "".join(p["text"] for p in parts if p.get("thought")) == "Let me see. Done."
    assert "".join(p["text"] for p in parts if not p.get("thought")) == "The answer is 4."
    assert all(p["text"] for p in parts if not p.get("thought")), "Gemini CLI refuses an empty text part"


def test_reasoning_content_becomes_thought_parts_and_usage_the_gemini_split():
    data = sse_bytes(
        [chunk({"role": "assistant", "content": None}), chunk({"reasoning_content": "plan"}), chunk({"content": "ok"})]
        + [chunk({}, "length"), usage_chunk(9, 2, 4)]
    )
    chunks = gemini_responses(to_gemini(data))
    assert [p for c in chunks for p in c["candidates"][0]["content"]["parts"]] == [
        {"text": "plan", "thought": True},
        {"text": "ok"},
    ]
    assert chunks[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert chunks[-1]["usageMetadata"] == {
        "promptTokenCount": 9,
        "candidatesTokenCount": 2,
        "totalTokenCount": 11,
        "cachedContentTokenCount": 4,
    }
    assert chunks[-1]["modelVersion"] == "qwen"


def test_an_upstream_error_mid_stream_is_a_google_error_chunk():
    data = sse_bytes([chunk({"content": "par"}), {"error": {"message": "slot died", "code": 500}}], done=False)
    chunks = gemini_responses(to_gemini(data))
    assert chunks[-1] == {"error": {"code": 500, "message": "slot died", "status": "INTERNAL"}}


def test_a_gemini_stream_cut_before_its_finish_is_an_error_not_a_complete_answer():
    decoder = GS.StreamDecoder()
    events = decoder.feed(b'data: {"candidates":[{"content":{"parts":[{"text":"par"}]}}]}\r\n\r\n') + decoder.close()
    assert isinstance(events[-1], hub.Failure) and "finishReason" in events[-1].message


def test_a_signature_on_a_gemini_function_call_comes_back_on_it():
    """Gemini 3 signs its function calls: the signature reaches the client as an empty thinking
    block before the call, and goes back onto the call."""
    data = (
        b'data: {"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"ls","args":{}},'
        b'"thoughtSignature":"SIG"}]},"finishReason":"STOP"}],"responseId":"r1"}\r\n\r\n'
    )
    decoder = GS.StreamDecoder()
    answer = hub.assemble(decoder.feed(data) + decoder.close())
    assert [type(p).__name__ for p in answer.parts] == ["Reasoning", "ToolCall"] and answer.stop == "tool_use"
    assert answer.parts[0] == hub.Reasoning("", "SIG")
    assert G.parts_from_hub(answer.parts, {}) == [
        {"functionCall": {"name": "ls", "args": {}}, "thoughtSignature": "SIG"}
    ], "the id made for the call is not sent to Gemini"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    answers(signatures=False),
    st.lists(st.integers(1, 12), min_size=1, max_size=4),
    st.integers(1, 4),
    st.integers(0, 9),
)
def test_llama_server_streams_translate_to_the_whole_gemini_answer(answer, sizes, calls_per_chunk, piece):
    """Any answer, streamed by llama-server in any fragments, read in any byte pieces, adds up (for
    a Gemini client) to the non-streamed translation of the same answer."""
    data = to_gemini(sse_bytes(llama_chunks(answer, sizes, calls_per_chunk)), piece=piece)
    decoder = GS.StreamDecoder()
    streamed = G.answer_from_hub(hub.assemble(decoder.feed(data) + decoder.close()))
    whole = G.answer_from_hub(O.answer_to_hub(O.answer_from_hub(answer)))
    assert streamed == {**whole, "modelVersion": streamed["modelVersion"], "responseId": streamed["responseId"]}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    answers(signatures=False),
    st.lists(st.integers(1, 12), min_size=1, max_size=4),
    st.integers(1, 4),
    st.integers(0, 9),
)
def test_llama_server_streams_translate_to_a_responses_stream_of_the_whole_answer(
    answer, sizes, calls_per_chunk, piece
):
    """The same for a Responses client (Codex): the events keep the SDK's contract and the final
    response holds what the non-streamed translation holds."""
    data = sse_bytes(llama_chunks(answer, sizes, calls_per_chunk))
    decoder, encoder = OS.StreamDecoder(), RS.StreamEncoder()
    size = piece or len(data)
    out = b"".join(encoder.encode(decoder.feed(data[at : at + size])) for at in range(0, len(data), size))
    events = responses_events(out + encoder.encode(decoder.close()))
    check_responses_stream(events)
    streamed = R.answer_to_hub(events[-1]["response"])
    whole = O.answer_to_hub(O.answer_from_hub(answer))  # llama-server's whole answer, translated
    assert streamed == R.answer_to_hub({**R.answer_from_hub(whole), "id": streamed.id})


# -- the strict SDKs, through a socket ---------------------------------------------------------

RICH = hub.Answer(
    (
        hub.Reasoning("The user wants a listing."),
        hub.Text("Listing it."),
        hub.ToolCall("call_a", "Bash", '{"command":"ls"}'),
        hub.ToolCall("call_b", "Read", '{"path":"README.md","limit":20}'),
    ),
    "tool_use",
    hub.Usage(120, 30, 64),
    "qwen",
)


async def serve(aiohttp_server: Any, path: str, body: bytes, content_type: str) -> str:
    """A server answering POST PATH with BODY; its base URL."""

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type=content_type)

    app = web.Application()
    app.router.add_post(path, answer)
    server = await aiohttp_server(app)
    return str(server.make_url(""))


async def test_anthropic_sdk_accumulates_a_translated_llama_stream(aiohttp_server):
    data = to_anthropic(sse_bytes(llama_chunks(RICH, [3, 1, 5], calls_per_chunk=3)), piece=11)
    url = await serve(aiohttp_server, "/v1/messages", data, "text/event-stream")
    async with anthropic.AsyncAnthropic(base_url=url, api_key="test", max_retries=0) as client:
        async with client.messages.stream(
            model="qwen", max_tokens=100, messages=[{"role": "user", "content": "ls"}]
        ) as stream:
            message = await stream.get_final_message()
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert message.content[0].thinking == "The user wants a listing."
    assert message.content[1].text == "Listing it."
    assert [(b.id, b.name, b.input) for b in message.content[2:]] == [
        ("call_a", "Bash", {"command": "ls"}),
        ("call_b", "Read", {"path": "README.md", "limit": 20}),
    ]
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens, message.usage.cache_read_input_tokens) == (
        120,
        30,
        64,
    )


async def test_anthropic_sdk_reads_a_translated_whole_answer(aiohttp_server):
    completion = O.answer_from_hub(RICH)
    body = json.dumps(A.answer_from_hub(O.answer_to_hub(completion))).encode()
    url = await serve(aiohttp_server, "/v1/messages", body, "application/json")
    async with anthropic.AsyncAnthropic(base_url=url, api_key="test", max_retries=0) as client:
        message = await client.messages.create(
            model="qwen", max_tokens=100, messages=[{"role": "user", "content": "ls"}]
        )
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert message.usage.input_tokens == 120


async def test_openai_sdk_accumulates_a_translated_anthropic_stream(aiohttp_server):
    """The other direction: an Anthropic upstream's stream as chat completion chunks."""
    upstream = AS.StreamEncoder("claude").encode(hub.events_of(RICH))
    decoder, encoder = AS.StreamDecoder(), OS.StreamEncoder("claude")
    data = encoder.encode(decoder.feed(upstream)) + encoder.encode(decoder.close())
    url = await serve(aiohttp_server, "/v1/chat/completions", data, "text/event-stream")
    async with openai.AsyncOpenAI(base_url=url.rstrip("/") + "/v1", api_key="test", max_retries=0) as client:
        async with client.chat.completions.stream(
            model="claude", messages=[{"role": "user", "content": "ls"}], stream_options={"include_usage": True}
        ) as stream:
            completion = await stream.get_final_completion()
    message = completion.choices[0].message
    assert message.content == "Listing it."
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls] == [
        ("call_a", "Bash", {"command": "ls"}),
        ("call_b", "Read", {"path": "README.md", "limit": 20}),
    ]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (184, 30)


async def test_openai_sdk_reads_a_translated_whole_answer(aiohttp_server):
    body = json.dumps(O.answer_from_hub(A.answer_to_hub(A.answer_from_hub(RICH)))).encode()
    url = await serve(aiohttp_server, "/v1/chat/completions", body, "application/json")
    async with openai.AsyncOpenAI(base_url=url.rstrip("/") + "/v1", api_key="test", max_retries=0) as client:
        completion = await client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "ls"}])
    assert completion.choices[0].message.tool_calls[1].function.name == "Read"
    assert completion.usage.prompt_tokens_details.cached_tokens == 64


chunk_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=4) | st.sampled_from(STREAM_WORDS),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(STREAM_WORDS), inner, max_size=4),
    max_leaves=20,
)


openai_chunks = st.fixed_dictionaries(
    {},
    optional={
        "choices": st.lists(
            st.fixed_dictionaries(
                {"index": st.just(0) | chunk_values},
                optional={
                    "delta": st.dictionaries(st.sampled_from(STREAM_WORDS), chunk_values, max_size=4)
                    | st.fixed_dictionaries(
                        {},
                        optional={
                            "content": chunk_values,
                            "reasoning_content": chunk_values,
                            "tool_calls": st.lists(
                                st.dictionaries(st.sampled_from(["index", "id", "function"]), chunk_values), max_size=3
                            )
                            | chunk_values,
                        },
                    ),
                    "finish_reason": chunk_values,
                },
            ),
            max_size=2,
        )
        | chunk_values,
        "usage": st.dictionaries(st.sampled_from(["prompt_tokens", "completion_tokens"]), chunk_values) | chunk_values,
        "error": chunk_values,
    },
)
anthropic_events_any = st.fixed_dictionaries(
    {"type": st.sampled_from(STREAM_WORDS[18:])},
    optional={
        "index": st.just(0) | chunk_values,
        "message": chunk_values,
        "content_block": chunk_values,
        "delta": st.dictionaries(st.sampled_from(STREAM_WORDS), chunk_values, max_size=3) | chunk_values,
        "usage": chunk_values,
        "error": chunk_values,
    },
)


GEMINI_STREAM_WORDS = [
    "candidates", "content", "parts", "text", "thought", "thoughtSignature", "functionCall", "name", "args", "id",
    "finishReason", "STOP", "MAX_TOKENS", "SAFETY", "usageMetadata", "promptTokenCount", "candidatesTokenCount",
    "error", "code", "message", "promptFeedback", "blockReason", "modelVersion", "responseId", "role", "model",
]  # fmt: skip
gemini_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=4) | st.sampled_from(GEMINI_STREAM_WORDS),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(GEMINI_STREAM_WORDS), inner, max_size=4)
    ),
    max_leaves=20,
)
gemini_chunks = st.fixed_dictionaries(
    {},
    optional={
        "candidates": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "content": st.fixed_dictionaries(
                        {},
                        optional={
                            "parts": st.lists(
                                st.dictionaries(
                                    st.sampled_from(["text", "thought", "thoughtSignature", "functionCall"]),
                                    gemini_values,
                                ),
                                max_size=3,
                            )
                            | gemini_values
                        },
                    )
                    | gemini_values,
                    "finishReason": gemini_values,
                },
            ),
            max_size=2,
        )
        | gemini_values,
        "usageMetadata": st.dictionaries(st.sampled_from(GEMINI_STREAM_WORDS[14:17]), gemini_values) | gemini_values,
        "error": gemini_values,
        "promptFeedback": gemini_values,
    },
)


RESPONSES_WORDS = [
    "response.created", "response.output_item.added", "response.output_text.delta", "response.output_item.done",
    "response.function_call_arguments.delta", "response.reasoning_text.delta", "response.completed",
    "response.incomplete", "response.failed", "error", "response.reasoning_summary_text.delta",
]  # fmt: skip
responses_events_any = st.fixed_dictionaries(
    {"type": st.sampled_from(RESPONSES_WORDS)},
    optional={
        "output_index": st.integers(0, 2) | chunk_values,
        "summary_index": st.integers(0, 2) | chunk_values,
        "item": st.fixed_dictionaries(
            {"type": st.sampled_from(["message", "function_call", "reasoning"]) | chunk_values},
            optional={
                "call_id": chunk_values,
                "name": chunk_values,
                "arguments": chunk_values,
                "content": chunk_values,
            },
        )
        | chunk_values,
        "delta": chunk_values,
        "response": st.dictionaries(st.sampled_from(["status", "usage", "error", "output", "id"]), chunk_values)
        | chunk_values,
        "code": chunk_values,
        "message": chunk_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(st.lists(openai_chunks | anthropic_events_any | gemini_chunks | responses_events_any | chunk_values, max_size=6))
def test_any_upstream_stream_is_translated_or_ends_in_an_error_event(chunks):
    """Whatever an upstream streams, each decoder gives hub events the encoders can write (ending
    in an error event when the stream makes no sense), never an exception."""
    data = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks)
    for decoder in (OS.StreamDecoder(), AS.StreamDecoder(), GS.StreamDecoder(), RS.StreamDecoder()):
        events = decoder.feed(data) + decoder.close()
        AS.StreamEncoder().encode(events)
        OS.StreamEncoder().encode(events)
        GS.StreamEncoder().encode(events)
        RS.StreamEncoder().encode(events)


@pytest.mark.parametrize(
    "event",
    [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": 1}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ["a"]}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": {"a": 1}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": 2.5}},
    ],
)
def test_an_anthropic_upstream_text_that_is_not_a_string_is_an_error_event(event):
    """A text that is not a string is an unreadable event: each client gets an error event naming
    it, not a number or a Python repr glued into its answer (and not a router exception, as a
    non-string first text once was in the Responses encoder)."""
    opening = {"type": "message_start", "message": {"id": "msg_1", "model": "m", "usage": {"input_tokens": 1}}}
    start = {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
    data = sse_bytes([opening, start, event], done=False)
    events = AS.StreamDecoder().feed(data)
    assert isinstance(events[-1], hub.Failure) and "expected a string" in events[-1].message
    assert not any(isinstance(e, hub.TextDelta) for e in events)
    assert b"event: error" in AS.StreamEncoder().encode(events)
    assert b'"error"' in OS.StreamEncoder().encode(events)
    assert b"response.failed" in RS.StreamEncoder().encode(events)
    assert b'"error"' in GS.StreamEncoder().encode(events)


def test_a_responses_upstream_item_a_shared_reader_refuses_is_an_error_event():
    """The Responses decoder reads a finished item with the request readers, which refuse a field
    of the wrong type with a BadRequest: mid-stream that is the upstream's unreadable event, an
    error event for the client, not an exception out of the stream."""
    item = {"id": "rs_1", "type": "reasoning", "summary": "not an array", "content": []}
    data = sse_bytes(
        [
            {"type": "response.created", "response": {"id": "resp_1", "model": "m"}},
            {"type": "response.output_item.added", "output_index": 0, "item": {**item, "summary": []}},
            {"type": "response.output_item.done", "output_index": 0, "item": item},
        ],
        done=False,
    )
    events = RS.StreamDecoder().feed(data)
    assert isinstance(events[-1], hub.Failure) and "item.summary: expected an array" in events[-1].message
    assert b"event: error" in AS.StreamEncoder().encode(events)


def test_an_answer_of_blanks_alone_is_kept_and_the_gap_after_reasoning_is_not():
    """Blanks held back while a `<think>` tag might still come are the answer when none comes
    (they were once dropped, so a whole answer of " " lost its only part); after `</think>` they
    are only the gap before an answer."""
    assert O.answer_to_hub({"choices": [{"message": {"content": " \n"}}]}).parts == (hub.Text(" \n"),)
    reasoned = O.answer_to_hub({"choices": [{"message": {"content": "<think>hm</think>\n\n"}}]})
    assert reasoned.parts == (hub.Reasoning("hm"),)
