"""Hypothesis strategies for the translation tests: conversations and answers in each API's
canonical shape (the shape its renderer writes), and a checker of Anthropic's stream contract."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from router.jsonutil import dumps
from router.translate import hub

words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)
names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,15}", fullmatch=True)
ids = st.from_regex(r"[A-Za-z0-9_-]{1,24}", fullmatch=True)
base64 = st.from_regex(r"[A-Za-z0-9+/]{4,40}={0,2}", fullmatch=True)
urls = st.builds(lambda path: f"https://example.test/{path}.png", names)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False, width=64)
    | words
)
json_values = st.recursive(
    json_leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3), max_leaves=6
)
json_objects = st.dictionaries(names, json_values, max_size=4)
schemas = st.fixed_dictionaries(
    {"type": st.just("object"), "properties": st.dictionaries(names, st.just({"type": "string"}), max_size=3)}
)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """STRATEGY's values, or None."""
    return st.none() | strategy


def without_none(**fields: Any) -> dict[str, Any]:
    """FIELDS minus those that are None."""
    return {key: value for key, value in fields.items() if value is not None}


# -- Anthropic ---------------------------------------------------------------------------------

a_text = st.builds(lambda text: {"type": "text", "text": text}, words)
a_image = st.one_of(
    st.builds(
        lambda media, data: {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}},
        st.sampled_from(["image/png", "image/jpeg", "image/webp"]),
        base64,
    ),
    st.builds(lambda url: {"type": "image", "source": {"type": "url", "url": url}}, urls),
)
a_tool_result = st.builds(
    lambda call_id, content, error: {
        "type": "tool_result",
        "tool_use_id": call_id,
        "content": content,
        **({"is_error": True} if error else {}),
    },
    ids,
    st.lists(a_text | a_image, max_size=3),
    st.booleans(),
)
a_user = st.builds(
    lambda results, rest: {"role": "user", "content": results + rest},
    st.lists(a_tool_result, max_size=3),
    st.lists(a_text | a_image, max_size=3),
).filter(lambda message: message["content"])
a_assistant = st.builds(
    lambda thinking, text, calls: {"role": "assistant", "content": thinking + text + calls},
    st.lists(
        st.builds(lambda t, s: {"type": "thinking", "thinking": t, "signature": s}, words, st.just("") | ids)
        | st.builds(lambda d: {"type": "redacted_thinking", "data": d}, base64),
        max_size=2,
    ),
    st.lists(a_text, max_size=2),
    st.lists(
        st.builds(lambda i, n, args: {"type": "tool_use", "id": i, "name": n, "input": args}, ids, names, json_objects),
        max_size=3,
    ),
).filter(lambda message: message["content"])
a_tool = st.builds(
    lambda name, description, schema: {"name": name, **without_none(description=description), "input_schema": schema},
    names,
    optional(words),
    schemas,
)
a_tool_choice = st.one_of(
    st.builds(lambda kind: {"type": kind}, st.sampled_from(["auto", "any", "none"])),
    st.builds(lambda name: {"type": "tool", "name": name}, names),
)


@st.composite
def anthropic_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A Messages API request in canonical shape."""
    choice = draw(optional(a_tool_choice))
    if choice is not None and draw(st.booleans()):
        choice = {**choice, "disable_parallel_tool_use": True}
    return without_none(
        model=draw(names),
        max_tokens=draw(st.integers(1, 200_000)),
        system=draw(optional(st.lists(a_text, min_size=1, max_size=3))),
        messages=draw(st.lists(a_user | a_assistant, min_size=1, max_size=6)),
        tools=draw(optional(st.lists(a_tool, min_size=1, max_size=3))),
        tool_choice=choice,
        temperature=draw(optional(st.floats(0, 1))),
        top_p=draw(optional(st.floats(0, 1))),
        top_k=draw(optional(st.integers(1, 100))),
        stop_sequences=draw(optional(st.lists(words, min_size=1, max_size=3))),
        output_config=draw(
            optional(
                st.builds(lambda s: {"format": {"type": "json_schema", "schema": s}}, schemas)
                | st.builds(lambda e: {"effort": e}, st.sampled_from(["low", "medium", "high"]))
                | st.builds(lambda s: {"format": {"type": "json_schema", "schema": s}, "effort": "high"}, schemas)
            )
        ),
        thinking=draw(optional(st.builds(lambda b: {"type": "enabled", "budget_tokens": b}, st.integers(1024, 32000)))),
        stream=draw(st.none() | st.just(True)),
    )


def anthropic_loosened(body: dict[str, Any]) -> dict[str, Any]:
    """BODY with its one-text contents written as plain strings, as clients often send them."""
    messages = [
        {**m, "content": m["content"][0]["text"]} if len(m["content"]) == 1 and m["content"][0]["type"] == "text" else m
        for m in body["messages"]
    ]
    system = body.get("system")
    if system and len(system) == 1:
        return {**body, "messages": messages, "system": system[0]["text"]}
    return {**body, "messages": messages}


# -- OpenAI chat -------------------------------------------------------------------------------

o_text = st.builds(lambda text: {"type": "text", "text": text}, words)
o_image = st.builds(
    lambda url: {"type": "image_url", "image_url": {"url": url}},
    urls
    | st.builds(lambda media, data: f"data:{media};base64,{data}", st.sampled_from(["image/png", "image/gif"]), base64),
)
o_content = words | st.lists(o_text | o_image, min_size=1, max_size=3).filter(
    lambda parts: not (len(parts) == 1 and parts[0]["type"] == "text")
)
o_texts = words | st.lists(o_text, min_size=2, max_size=3)
o_call = st.builds(
    lambda i, name, arguments: {"id": i, "type": "function", "function": {"name": name, "arguments": arguments}},
    ids,
    names,
    st.builds(json.dumps, json_objects) | words,
)


@st.composite
def o_assistant(draw: st.DrawFn) -> dict[str, Any]:
    calls = draw(st.lists(o_call, max_size=3))
    content = draw(optional(o_texts))
    message = {"role": "assistant", "content": content if content is not None else (None if calls else "")}
    if reasoning := draw(optional(words)):
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    return message


o_user = st.builds(lambda content: {"role": "user", "content": content}, o_content)
o_tool = st.builds(lambda i, content: {"role": "tool", "tool_call_id": i, "content": content}, ids, o_texts)
o_system = st.builds(lambda text: {"role": "system", "content": f"(system) {text}"}, words)
o_function = st.builds(
    lambda name, description, schema: {
        "type": "function",
        "function": {"name": name, **without_none(description=description), "parameters": schema},
    },
    names,
    optional(words),
    schemas,
)


@st.composite
def openai_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A chat completions request in canonical shape."""
    stream = draw(st.booleans())
    fmt = draw(
        optional(
            st.just({"type": "json_object"})
            | st.builds(
                lambda name, schema, strict: {
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": schema, **without_none(strict=strict)},
                },
                names,
                schemas,
                optional(st.booleans()),
            )
        )
    )
    return without_none(
        model=draw(names),
        messages=draw(st.lists(o_system, max_size=1))
        + [draw(o_user)]
        + draw(st.lists(o_user | o_assistant() | o_tool | o_system, max_size=6)),
        tools=draw(optional(st.lists(o_function, min_size=1, max_size=3))),
        tool_choice=draw(
            optional(
                st.sampled_from(["auto", "required", "none"])
                | st.builds(lambda n: {"type": "function", "function": {"name": n}}, names)
            )
        ),
        parallel_tool_calls=draw(optional(st.booleans())),
        max_tokens=draw(optional(st.integers(1, 100_000))),
        temperature=draw(optional(st.floats(0, 2))),
        top_p=draw(optional(st.floats(0, 1))),
        top_k=draw(optional(st.integers(1, 100))),
        reasoning_effort=draw(optional(st.sampled_from(["low", "medium", "high"]))),
        stop=draw(optional(st.lists(words, min_size=1, max_size=4))),
        response_format=fmt,
        stream=True if stream else None,
        stream_options={"include_usage": True} if stream else None,
    )


# -- Gemini ------------------------------------------------------------------------------------

g_text = st.builds(lambda text: {"text": text}, words)
g_image = st.one_of(
    st.builds(
        lambda media, data: {"inlineData": {"mimeType": media, "data": data}},
        st.sampled_from(["image/png", "image/jpeg"]),
        base64,
    ),
    st.builds(
        lambda media, url: {"fileData": {**without_none(mimeType=media), "fileUri": url}},
        optional(st.just("image/png")),
        urls,
    ),
)
g_thought = st.builds(
    lambda text, signature: {"text": text, "thought": True, **without_none(thoughtSignature=signature)},
    words,
    optional(ids),
)
g_responses = (
    st.builds(lambda text: {"output": text}, words.filter(lambda text: not text.lstrip().startswith("{")))
    | st.builds(lambda text: {"error": text}, words)
    | json_objects.filter(lambda value: not (len(value) == 1 and set(value) <= {"output", "error"}))
)


@st.composite
def g_call(draw: st.DrawFn) -> dict[str, Any]:
    """A functionCall part, with or without an id (and sometimes a thought signature)."""
    call = without_none(id=draw(optional(ids)), name=draw(names), args=draw(json_objects))
    return {"functionCall": call, **without_none(thoughtSignature=draw(optional(ids)))}


@st.composite
def g_turns(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A user turn, the model's turn, and when it called functions a user turn answering each."""
    turns = [{"role": "user", "parts": draw(st.lists(g_text | g_image, min_size=1, max_size=3))}]
    calls = draw(st.lists(g_call(), max_size=3))
    model = draw(st.lists(g_thought, max_size=1)) + draw(st.lists(g_text, max_size=2)) + calls
    if not model:
        return turns
    turns.append({"role": "model", "parts": model})
    if calls:
        answers = []
        for part in calls:
            call = part["functionCall"]
            response = without_none(id=call.get("id"), name=call["name"], response=draw(g_responses))
            if draw(st.booleans()):
                response["parts"] = [draw(g_image)]
            answers.append({"functionResponse": response})
        turns.append({"role": "user", "parts": answers + draw(st.lists(g_text, max_size=1))})
    return turns


g_declaration = st.builds(
    lambda name, description, schema: {
        "name": name,
        **without_none(description=description),
        "parametersJsonSchema": schema,
    },
    names,
    optional(words),
    schemas,
)
g_tool_config = st.builds(
    lambda mode: {"functionCallingConfig": {"mode": mode}}, st.sampled_from(["AUTO", "ANY", "NONE"])
)
g_tool_config |= st.builds(
    lambda name: {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}, names
)


@st.composite
def gemini_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A generateContent request in canonical shape (no model, no stream flag: both are in the path)."""
    config = without_none(
        maxOutputTokens=draw(optional(st.integers(1, 100_000))),
        temperature=draw(optional(st.floats(0, 2))),
        topP=draw(optional(st.floats(0, 1))),
        topK=draw(optional(st.integers(1, 100))),
        stopSequences=draw(optional(st.lists(words, min_size=1, max_size=3))),
    )
    if draw(st.booleans()):
        config["responseMimeType"] = "application/json"
        if draw(st.booleans()):
            config["responseJsonSchema"] = draw(schemas)
    budget, level = draw(optional(st.integers(1, 32_000))), draw(optional(st.sampled_from(["LOW", "MEDIUM", "HIGH"])))
    if budget is not None or level is not None:
        config["thinkingConfig"] = {"includeThoughts": True, **without_none(thinkingBudget=budget, thinkingLevel=level)}
    tools = draw(optional(st.lists(g_declaration, min_size=1, max_size=3)))
    return without_none(
        contents=[turn for turns in draw(st.lists(g_turns(), min_size=1, max_size=3)) for turn in turns],
        systemInstruction=draw(optional(st.builds(lambda parts: {"parts": parts}, st.lists(g_text, min_size=1)))),
        tools=[{"functionDeclarations": tools}] if tools else None,
        toolConfig=draw(optional(g_tool_config)),
        generationConfig=config or None,
    )


# -- OpenAI Responses --------------------------------------------------------------------------

r_image = st.builds(
    lambda url: {"type": "input_image", "image_url": url},
    urls
    | st.builds(lambda media, data: f"data:{media};base64,{data}", st.sampled_from(["image/png", "image/gif"]), base64),
)
r_input = st.builds(lambda text: {"type": "input_text", "text": text}, words) | r_image
r_output = words | st.lists(r_input, min_size=1, max_size=3).filter(
    lambda parts: any(part["type"] == "input_image" for part in parts)
)
r_result = st.builds(lambda i, output: {"type": "function_call_output", "call_id": i, "output": output}, ids, r_output)
r_user_turn = st.builds(
    lambda results, content: results + ([{"type": "message", "role": "user", "content": content}] if content else []),
    st.lists(r_result, max_size=3),
    st.lists(r_input, max_size=3),
).filter(bool)
r_reasoning = st.builds(
    lambda said, encrypted: {
        "type": "reasoning",
        "summary": [],
        **({"content": [{"type": "reasoning_text", "text": said}]} if said else {}),
        **({"encrypted_content": encrypted} if encrypted else {}),
    },
    optional(words),
    optional(base64),
)
r_call = st.builds(
    lambda i, name, arguments: {"type": "function_call", "call_id": i, "name": name, "arguments": arguments},
    ids,
    names,
    st.builds(json.dumps, json_objects) | words,
)
r_assistant_turn = st.builds(
    lambda reasoning, said, calls: (
        reasoning
        + (
            [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": said}]}]
            if said
            else []
        )
        + calls
    ),
    st.lists(r_reasoning, max_size=1),
    optional(words),
    st.lists(r_call, max_size=3),
).filter(bool)
r_developer = st.builds(
    lambda text: [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": text}]}], words
)
r_function = st.builds(
    lambda name, description, schema: {
        "type": "function",
        "name": name,
        **without_none(description=description),
        "parameters": schema,
        "strict": False,
    },
    names,
    optional(words),
    schemas,
)


@st.composite
def r_conversation(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Turns in order: user, assistant, user, ... with developer messages between some of them."""
    items: list[dict[str, Any]] = []
    for turn in range(draw(st.integers(1, 6))):
        if turn and draw(st.booleans()):
            items += draw(r_developer)
        items += draw(r_user_turn if turn % 2 == 0 else r_assistant_turn)
    return items


@st.composite
def responses_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A Responses API request in canonical shape."""
    fmt = draw(
        optional(
            st.just({"type": "json_object"})
            | st.builds(
                lambda name, schema, strict: (
                    {"type": "json_schema", "name": name, "schema": schema} | without_none(strict=strict)
                ),
                names,
                schemas,
                optional(st.booleans()),
            )
        )
    )
    return without_none(
        model=draw(names),
        instructions=draw(optional(words)),
        input=draw(r_conversation()),
        tools=draw(optional(st.lists(r_function, min_size=1, max_size=3))),
        tool_choice=draw(
            optional(
                st.sampled_from(["auto", "required", "none"])
                | st.builds(lambda n: {"type": "function", "name": n}, names)
            )
        ),
        parallel_tool_calls=draw(optional(st.booleans())),
        max_output_tokens=draw(optional(st.integers(1, 100_000))),
        temperature=draw(optional(st.floats(0, 2))),
        top_p=draw(optional(st.floats(0, 1))),
        text={"format": fmt} if fmt else None,
        reasoning=draw(optional(st.builds(lambda e: {"effort": e}, st.sampled_from(["low", "medium", "high"])))),
        store=False,
        stream=draw(st.none() | st.just(True)),
    )


# -- answers -----------------------------------------------------------------------------------

usages = st.builds(hub.Usage, *(st.integers(0, 100_000) for _ in range(2)), st.integers(0, 5000), st.just(0))


@st.composite
def answers(draw: st.DrawFn, signatures: bool = True) -> hub.Answer:
    """A hub answer as a local server gives one: reasoning, then text, then tool calls."""
    parts: list[Any] = []
    if draw(st.booleans()):
        parts.append(hub.Reasoning(draw(words), draw(ids) if signatures and draw(st.booleans()) else None))
    if draw(st.booleans()):
        parts.append(hub.Text(draw(words)))
    calls = draw(st.lists(st.builds(hub.ToolCall, ids, names, st.builds(dumps, json_objects)), max_size=3))
    parts += calls
    stop = "tool_use" if calls else draw(st.sampled_from(["end", "max_tokens"]))
    return hub.Answer(tuple(parts), stop, draw(usages), draw(names), "")


# -- Anthropic's stream contract ---------------------------------------------------------------


def check_anthropic_stream(events: list[tuple[str, dict[str, Any]]]) -> None:
    """Fail unless EVENTS keep the contract Claude Code and the SDK rely on."""
    events = [(name, data) for name, data in events if data["type"] != "ping"]
    kinds = [data["type"] for _, data in events]
    assert kinds[0] == "message_start", kinds
    assert "usage" in events[0][1]["message"], "message_start without usage"
    assert kinds[-2:] == ["message_delta", "message_stop"], kinds
    open_blocks: dict[int, str] = {}
    seen: set[int] = set()
    delta_kind = {"text": "text_delta", "thinking": "thinking_delta", "tool_use": "input_json_delta"}
    for name, data in events:
        assert name == data["type"], (name, data)
        if data["type"] == "content_block_start":
            assert not open_blocks, f"block {data['index']} starts while {open_blocks} is open"
            assert data["index"] == len(seen), "block indexes must count up from 0"
            open_blocks[data["index"]] = data["content_block"]["type"]
            seen.add(data["index"])
        elif data["type"] == "content_block_delta":
            assert data["index"] in open_blocks, f"Content block not found: {data['index']}"
            kind = open_blocks[data["index"]]
            allowed = {delta_kind[kind]} | ({"signature_delta"} if kind == "thinking" else set())
            assert data["delta"]["type"] in allowed, f"{data['delta']['type']} into a {kind} block"
        elif data["type"] == "content_block_stop":
            assert open_blocks.pop(data["index"], None) is not None
        elif data["type"] == "message_delta":
            assert not open_blocks
            assert "output_tokens" in data["usage"], "message_delta without usage"


# -- llama-server's stream ---------------------------------------------------------------------


def pieces(text: str, sizes: list[int]) -> list[str]:
    """TEXT cut into pieces of the given SIZES (cycled), at least one."""
    out, at, turn = [], 0, 0
    while at < len(text) or not out:
        size = max(1, sizes[turn % len(sizes)] if sizes else len(text))
        out.append(text[at : at + size])
        at, turn = at + size, turn + 1
    return out


def llama_chunks(answer: hub.Answer, sizes: list[int], calls_per_chunk: int = 1) -> list[dict[str, Any]]:
    """ANSWER as llama-server streams it: a role chunk (content null), reasoning_content and content
    deltas in pieces, each tool call's first fragment with index, id and name and its arguments
    in pieces (CALLS_PER_CHUNK calls' fragments share a chunk), the finish_reason, then usage."""
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": None}]
    for part in answer.parts:
        if isinstance(part, hub.Reasoning):
            deltas += [{"reasoning_content": p} for p in pieces(part.text, sizes)]
        elif isinstance(part, hub.Text):
            deltas += [{"content": p} for p in pieces(part.text, sizes)]
    calls = [p for p in answer.parts if isinstance(p, hub.ToolCall)]
    fragments: list[dict[str, Any]] = []
    for index, call in enumerate(calls):
        fragments.append(
            {"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        )
        fragments += [{"index": index, "function": {"arguments": p}} for p in pieces(call.arguments, sizes)]
    for at in range(0, len(fragments), calls_per_chunk):
        deltas.append({"tool_calls": fragments[at : at + calls_per_chunk]})
    base = {"id": "chatcmpl-llama", "object": "chat.completion.chunk", "created": 1, "model": answer.model}
    chunks = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    finish = {"end": "stop", "max_tokens": "length", "tool_use": "tool_calls"}[answer.stop]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    usage = {
        "prompt_tokens": answer.usage.prompt_tokens,
        "completion_tokens": answer.usage.output_tokens,
        "total_tokens": answer.usage.prompt_tokens + answer.usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": answer.usage.cache_read_tokens},
    }
    chunks.append({**base, "choices": [], "usage": usage, "timings": {"prompt_n": 1, "predicted_n": 1}})
    return chunks


def sse_bytes(chunks: list[dict[str, Any]], done: bool = True) -> bytes:
    """CHUNKS as `data:` lines, then `[DONE]`."""
    return b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + (b"data: [DONE]\n\n" if done else b"")


# -- the Responses stream contract -------------------------------------------------------------


def responses_events(data: bytes) -> list[dict[str, Any]]:
    """The data of each event of a Responses stream (checked against its `event:` line)."""
    events = []
    for block in data.decode().split("\n\n"):
        if block:
            lines = dict(line.split(": ", 1) for line in block.split("\n"))
            event = json.loads(lines["data"])
            assert lines["event"] == event["type"], block
            events.append(event)
    return events


def check_responses_stream(events: list[dict[str, Any]]) -> None:
    """Fail unless EVENTS keep the contract the openai SDK's responses.stream() and Codex rely on:
    sequence numbers counting from 0, created and in_progress first, each item added before its
    content and done before the next, and a last event whose output holds the items as done."""
    kinds = [event["type"] for event in events]
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert kinds[:2] == ["response.created", "response.in_progress"], kinds
    assert kinds[-1] in ("response.completed", "response.incomplete", "response.failed"), kinds
    rid = events[0]["response"]["id"]
    open_item: dict[str, Any] | None = None
    done: list[dict[str, Any]] = []
    for event in events[2:-1]:
        if event["type"] == "response.output_item.added":
            assert open_item is None and event["output_index"] == len(done), event
            open_item = event["item"]
        elif event["type"] == "response.output_item.done":
            assert open_item is not None and event["item"]["id"] == open_item["id"], event
            assert event["item"]["type"] == open_item["type"]
            done.append(event["item"])
            open_item = None
        elif event["type"] != "error":
            assert open_item is not None and event["output_index"] == len(done), event
            assert event["item_id"] == open_item["id"], event
    assert open_item is None, "an item was never done"
    last = events[-1]["response"]
    assert last["id"] == rid
    if events[-1]["type"] != "response.failed":
        assert last["output"] == done
        assert set(last["usage"]) >= {"input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details"}
