"""OpenAI's chat completions API (and what local servers add to it) to and from the hub.

Local servers send reasoning as `reasoning_content` (llama-server, vLLM, DeepSeek) or `reasoning`
(Ollama), or leave it in the text between `<think>` and `</think>` (llama-server with
--reasoning-format none): all three become Reasoning parts, never answer text.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from typing import Any

from router.errors import BadRequest
from router.jsonutil import dumps, loads
from router.translate import hub
from router.translate.fields import array, strings
from router.translate.sse import EventReader, encode

STOP_TO_HUB: dict[str, hub.StopReason] = {
    "stop": "end",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
STOP_FROM_HUB = {
    "end": "stop",
    "max_tokens": "length",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause": "stop",
}
ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}
_DATA_URL = re.compile(r"data:([^;,]+)?;base64,(.*)", re.S)


# -- requests ----------------------------------------------------------------------------------


def request_to_hub(body: dict[str, Any]) -> hub.Request:
    """A chat completions request body as a hub Request; raises BadRequest for a shape it cannot read."""
    system: list[hub.Text] = []
    messages: list[hub.Message] = []
    for index, message in enumerate(array(body.get("messages"), "messages")):
        if not isinstance(message, dict):
            raise BadRequest(f"messages[{index}]: expected an object")
        role = message.get("role")
        where = f"messages[{index}]"
        if role in ("system", "developer"):
            text = hub.Text(_text_of(message.get("content")))
            if messages:
                messages.append(hub.Message("system", (text,)))
            else:
                system.append(text)
        elif role == "user":
            parts = _user_parts(message.get("content"), f"{where}.content")
            _append(messages, "user", parts, merge=bool(messages) and _only_results(messages[-1]))
        elif role == "tool":
            content = _user_parts(message.get("content"), f"{where}.content")
            result = hub.ToolResult(str(message.get("tool_call_id", "")), () if content == (hub.Text(""),) else content)
            _append(messages, "user", (result,), merge=bool(messages) and _only_results(messages[-1]))
        elif role == "assistant":
            messages.append(hub.Message("assistant", _assistant_parts(message)))
        else:
            raise BadRequest(f"{where}.role: expected system, developer, user, assistant or tool")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    stop = body.get("stop")
    return hub.Request(
        model=str(body.get("model", "")),
        messages=tuple(messages),
        system=tuple(system),
        tools=tuple(_tool(tool) for tool in array(body.get("tools") or [], "tools") if _is_function(tool)),
        tool_choice=_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=body.get("parallel_tool_calls"),
        max_tokens=limit,
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        top_k=body.get("top_k"),
        stop=strings(stop, "stop"),
        response_format=_response_format(body.get("response_format")),
        reasoning_effort=body.get("reasoning_effort"),
        stream=body.get("stream") is True,
    )


def _append(messages: list[hub.Message], role: hub.Role, parts: tuple[hub.Part, ...], merge: bool) -> None:
    """Tool results and the user text after them are one user turn in the hub."""
    if merge:
        messages[-1] = hub.Message(role, messages[-1].parts + parts)
    else:
        messages.append(hub.Message(role, parts))


def _only_results(message: hub.Message) -> bool:
    return message.role == "user" and all(isinstance(part, hub.ToolResult) for part in message.parts)


def _user_parts(content: Any, where: str) -> tuple[Any, ...]:
    if content is None:
        return ()
    if isinstance(content, str):
        return (hub.Text(content),)
    parts: list[hub.Text | hub.Image] = []
    for index, part in enumerate(array(content, where)):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append(hub.Text(str(part.get("text", ""))))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append(_image(str(url or "")))
        elif kind is None:
            raise BadRequest(f"{where}[{index}]: expected a content part object with a type")
    return tuple(parts)


def _image(url: str) -> hub.Image:
    match = _DATA_URL.fullmatch(url)
    return hub.Image(media_type=match.group(1), data=match.group(2)) if match else hub.Image(url=url)


def _assistant_parts(message: dict[str, Any]) -> tuple[hub.Part, ...]:
    parts: list[hub.Part] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        parts.append(hub.Reasoning(reasoning))
    content = message.get("content")
    if isinstance(content, str):
        if content:
            parts.append(hub.Text(content))
    elif content is not None:
        parts.extend(p for p in _user_parts(content, "content") if isinstance(p, hub.Text))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {} if isinstance(call, dict) else {}
        arguments = function.get("arguments", "{}")
        parts.append(
            hub.ToolCall(
                str(call.get("id", "")),
                str(function.get("name", "")),
                arguments if isinstance(arguments, str) else dumps(arguments),
            )
        )
    return tuple(parts)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _is_function(tool: Any) -> bool:
    return (
        isinstance(tool, dict) and tool.get("type", "function") == "function" and isinstance(tool.get("function"), dict)
    )


def _tool(tool: dict[str, Any]) -> hub.Tool:
    function = tool["function"]
    parameters = function.get("parameters")
    return hub.Tool(
        str(function.get("name", "")),
        function.get("description"),
        parameters if isinstance(parameters, dict) else {"type": "object", "properties": {}},
    )


def _tool_choice(choice: Any) -> hub.ToolChoice | None:
    if choice in ("auto", "required", "none"):
        return hub.ToolChoice(choice)
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return hub.ToolChoice("tool", str(choice["function"].get("name", "")))
    return None


def _response_format(fmt: Any) -> hub.ResponseFormat | None:
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return hub.ResponseFormat()
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        return hub.ResponseFormat(spec.get("schema"), spec.get("name"), spec.get("strict"))
    return None


def request_from_hub(request: hub.Request) -> dict[str, Any]:
    """A hub Request as a chat completions request body (usage asked for when it streams). The
    system texts become one system message: strict chat templates refuse a second one."""
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": "\n\n".join(part.text for part in request.system)})
    for message in request.messages:
        messages.extend(_messages_from_hub(message))
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    **({"description": tool.description} if tool.description is not None else {}),
                    "parameters": tool.parameters,
                },
            }
            for tool in request.tools
        ]
    if request.tool_choice:
        choice = request.tool_choice
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}} if choice.mode == "tool" else choice.mode
        )
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    for field, value in (
        ("max_tokens", request.max_tokens),
        ("temperature", request.temperature),
        ("top_p", request.top_p),
        ("top_k", request.top_k),
        ("reasoning_effort", request.reasoning_effort),
    ):
        if value is not None:
            body[field] = value
    if request.stop:
        body["stop"] = list(request.stop)
    if fmt := request.response_format:
        body["response_format"] = (
            {"type": "json_object"}
            if fmt.schema is None
            else {
                "type": "json_schema",
                "json_schema": {
                    "name": fmt.name or "response",
                    "schema": fmt.schema,
                    **({"strict": fmt.strict} if fmt.strict is not None else {}),
                },
            }
        )
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _messages_from_hub(message: hub.Message) -> list[dict[str, Any]]:
    if message.role == "system":
        return [{"role": "system", "content": "".join(p.text for p in message.parts if isinstance(p, hub.Text))}]
    if message.role == "assistant":
        return [_assistant_from_hub(message.parts)]
    rendered: list[dict[str, Any]] = []
    rest: list[hub.Part] = []
    result_images: list[hub.Part] = []  # a tool message carries text only: its images follow as a user turn
    for part in message.parts:
        if isinstance(part, hub.ToolResult):
            texts = [p for p in part.content if isinstance(p, hub.Text)]
            result_images += [p for p in part.content if isinstance(p, hub.Image)]
            rendered.append({"role": "tool", "tool_call_id": part.call_id, "content": _content_from_hub(texts)})
        else:
            rest.append(part)
    if result_images or rest:
        rendered.append({"role": "user", "content": _content_from_hub([*result_images, *rest])})
    return rendered


def _content_from_hub(parts: Sequence[hub.Part]) -> Any:
    """A string for one text (or none), else an array of text and image_url parts."""
    if not parts:
        return ""
    if len(parts) == 1 and isinstance(parts[0], hub.Text):
        return parts[0].text
    return [_part_from_hub(part) for part in parts if isinstance(part, hub.Text | hub.Image)]


def _part_from_hub(part: hub.Text | hub.Image) -> dict[str, Any]:
    if isinstance(part, hub.Text):
        return {"type": "text", "text": part.text}
    url = part.url if part.url is not None else f"data:{part.media_type or 'image/png'};base64,{part.data or ''}"
    return {"type": "image_url", "image_url": {"url": url}}


def _assistant_from_hub(parts: tuple[hub.Part, ...] | list[Any]) -> dict[str, Any]:
    texts = [p for p in parts if isinstance(p, hub.Text)]
    calls = [p for p in parts if isinstance(p, hub.ToolCall)]
    reasoning = "".join(p.text for p in parts if isinstance(p, hub.Reasoning))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": _content_from_hub(list(texts)) if texts else (None if calls else ""),
    }
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in calls
        ]
    return message


# -- answers -----------------------------------------------------------------------------------


def usage_to_hub(usage: Any) -> hub.Usage:
    """OpenAI's usage (prompt tokens include the cached ones) as hub Usage."""
    if not isinstance(usage, dict):
        return hub.Usage()
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    cached = cached if isinstance(cached, int) else 0
    prompt = usage.get("prompt_tokens")
    output = usage.get("completion_tokens")
    return hub.Usage(
        max((prompt if isinstance(prompt, int) else 0) - cached, 0), output if isinstance(output, int) else 0, cached
    )


def usage_from_hub(usage: hub.Usage) -> dict[str, Any]:
    """Hub Usage as OpenAI's usage object."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.prompt_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
    }


def answer_to_hub(completion: dict[str, Any]) -> hub.Answer:
    """A chat.completion as a hub Answer; `<think>` text becomes reasoning."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    parts: list[hub.Text | hub.ToolCall | hub.Reasoning] = []
    for part in _assistant_parts({**message, "content": None}):
        if isinstance(part, hub.Reasoning):
            parts.append(part)
    content = message.get("content")
    if isinstance(content, str) and content:
        splitter = ThinkSplitter()
        pieces = splitter.feed(content) + splitter.close()
        reasoning = "".join(text for kind, text in pieces if kind == "reasoning")
        answer = "".join(text for kind, text in pieces if kind == "text")
        if reasoning:
            parts.append(hub.Reasoning(reasoning))
        if answer:
            parts.append(hub.Text(answer))
    parts += [p for p in _assistant_parts({"tool_calls": message.get("tool_calls")}) if isinstance(p, hub.ToolCall)]
    parts = [replace_id(p) if isinstance(p, hub.ToolCall) else p for p in parts]
    stop = STOP_TO_HUB.get(str(choice.get("finish_reason")), "end")
    if stop == "end" and any(isinstance(p, hub.ToolCall) for p in parts):
        stop = "tool_use"
    return hub.Answer(
        tuple(parts),
        stop,
        usage_to_hub(completion.get("usage")),
        str(completion.get("model", "")),
        str(completion.get("id", "")),
    )


def replace_id(call: hub.ToolCall) -> hub.ToolCall:
    """CALL with an id of its own when the server gave none."""
    return call if call.id else hub.ToolCall(new_call_id(), call.name, call.arguments)


def new_call_id() -> str:
    """A fresh tool call id."""
    return f"call_{secrets.token_hex(12)}"


def answer_from_hub(answer: hub.Answer, model: str = "") -> dict[str, Any]:
    """A hub Answer as a chat.completion."""
    return {
        "id": answer.id if answer.id.startswith("chatcmpl") else f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": 0,
        "model": answer.model or model,
        "choices": [
            {
                "index": 0,
                "message": _assistant_from_hub(answer.parts),
                "finish_reason": STOP_FROM_HUB[answer.stop],
                "logprobs": None,
            }
        ],
        "usage": usage_from_hub(answer.usage),
    }


def error_body(status: int, message: str, error_type: str | None) -> dict[str, Any]:
    """OpenAI's error object."""
    kind = error_type or ERROR_TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


# -- streams -----------------------------------------------------------------------------------


class ThinkSplitter:
    """Splits streamed text into reasoning (a leading `<think>...</think>`) and answer text,
    whatever pieces the tags arrive in."""

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self._state = "start"  # start: nothing but blanks yet; thinking; answer
        self._held = ""

    def feed(self, text: str) -> list[tuple[str, str]]:
        """(kind, text) pieces, kind "reasoning" or "text"; a possible tag's start is held back."""
        self._held += text
        pieces: list[tuple[str, str]] = []
        while self._held:
            if self._state == "start":
                stripped = self._held.lstrip()
                if stripped.startswith(self.OPEN):
                    self._state, self._held = "thinking", stripped[len(self.OPEN) :]
                elif self.OPEN.startswith(stripped):
                    break  # blanks or the start of the tag: wait for more
                else:
                    self._state = "answer"
            elif self._state == "thinking":
                end = self._held.find(self.CLOSE)
                if end == -1:
                    keep = _partial_suffix(self._held, self.CLOSE)
                    cut = len(self._held) - keep
                    if cut:
                        pieces.append(("reasoning", self._held[:cut]))
                    self._held = self._held[cut:]
                    break
                if end:
                    pieces.append(("reasoning", self._held[:end]))
                self._state, self._held = "after", self._held[end + len(self.CLOSE) :]
            elif self._state == "after":
                self._held = self._held.lstrip()  # the blank line between reasoning and answer
                if self._held:
                    self._state = "answer"
            else:
                pieces.append(("text", self._held))
                self._held = ""
        return pieces

    def close(self) -> list[tuple[str, str]]:
        """What is still held when the text ends."""
        held, self._held = self._held, ""
        if not held or (not held.strip() and self._state in ("start", "after")):
            return []
        return [("reasoning" if self._state == "thinking" else "text", held)]


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of TEXT that begins TAG."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class _Call:
    """A streamed tool call as the decoder tracks it."""

    def __init__(self, call_id: str, name: str) -> None:
        self.id, self.name = call_id, name
        self.arguments = ""
        self.snapshots = False  # the server resends the whole arguments so far each time
        self.part: int | None = None  # its hub part index once started


class StreamDecoder:
    """Chat completion chunks (SSE bytes) from an upstream to hub events.

    Several tool calls may arrive in one chunk and their fragments in any size; a server that
    sends the whole arguments so far each time (snapshots) is told apart from fragments, so the
    hub gets fragments only. Parts come out one at a time, in the order they begin."""

    def __init__(self) -> None:
        self._reader = EventReader()
        self._started = False
        self._parts = 0
        self._open: tuple[int, str] | None = None  # hub index and kind ("text", "reasoning", "tool_call")
        self._calls: dict[int, _Call] = {}
        self._open_call: int | None = None
        self._think = ThinkSplitter()
        self._stop: hub.StopReason | None = None
        self._usage = hub.Usage()
        self._done = False
        self._saw_call = False

    def feed(self, chunk: bytes) -> list[hub.Event]:
        """The events CHUNK completes."""
        return [event for item in self._reader.feed(chunk) for event in self._read(item.data)]

    def close(self) -> list[hub.Event]:
        """The events left at the end of the upstream's stream: the open part's end and Finish."""
        events = [event for item in self._reader.close() for event in self._read(item.data)]
        return events + self._finish()

    def _finish(self) -> list[hub.Event]:
        if self._done:
            return []
        self._done = True
        events = self._text_pieces(self._think.close()) + self._close_open()
        if self._stop is None:
            return [*events, hub.Failure(502, "the upstream's stream ended before its finish_reason")]
        stop = "tool_use" if self._stop == "end" and self._saw_call else self._stop
        return [*self._start({}), *events, hub.Finish(stop, self._usage)]

    def _read(self, data: str) -> list[hub.Event]:
        """The events of one upstream event; a Failure for one whose fields have the wrong types."""
        try:
            return self._decode(data)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            return [hub.Failure(502, f"the upstream sent an event that cannot be read ({exc}): {data[:200]}")]

    def _decode(self, data: str) -> list[hub.Event]:
        if self._done:
            return []
        if data.strip() == "[DONE]":
            if self._stop is None:
                self._stop = "end"
            return self._finish()
        try:
            chunk = loads(data)
        except ValueError:
            return [hub.Failure(502, f"the upstream sent a chunk that is not JSON: {data[:200]}")]
        if not isinstance(chunk, dict):
            return []
        if isinstance(error := chunk.get("error"), dict | str):
            self._done = True
            message = error.get("message", "") if isinstance(error, dict) else error
            kind = error.get("type") if isinstance(error, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
            return [
                hub.Failure(code if isinstance(code, int) else 500, str(message), None if kind is None else str(kind))
            ]
        events = self._start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self._usage = usage_to_hub(chunk["usage"])
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                events += self._into("reasoning", reasoning)
            content = delta.get("content")
            if isinstance(content, str) and content:
                events += self._text_pieces(self._think.feed(content))
            for call in delta.get("tool_calls") or []:
                if isinstance(call, dict):
                    events += self._tool_fragment(call)
            if choice.get("finish_reason"):
                self._stop = STOP_TO_HUB.get(str(choice["finish_reason"]), "end")
        return events

    def _start(self, chunk: dict[str, Any]) -> list[hub.Event]:
        if self._started:
            return []
        self._started = True
        return [hub.Start(str(chunk.get("id", "")), str(chunk.get("model", "")))]

    def _text_pieces(self, pieces: list[tuple[str, str]]) -> list[hub.Event]:
        return [event for kind, text in pieces for event in self._into(kind, text)]

    def _into(self, kind: str, text: str) -> list[hub.Event]:
        """TEXT into an open part of KIND, opening one (and closing another) when needed."""
        events: list[hub.Event] = []
        if not text:
            return events
        if self._open is None or self._open[1] != kind:
            events += self._close_open()
            events.append(self._open_part("reasoning" if kind == "reasoning" else "text"))
        assert self._open is not None
        return [*events, hub.TextDelta(self._open[0], text)]

    def _open_part(self, kind: Any, call_id: str = "", name: str = "") -> hub.PartStart:
        self._open = (self._parts, kind)
        self._parts += 1
        return hub.PartStart(self._open[0], kind, call_id, name)

    def _close_open(self) -> list[hub.Event]:
        if self._open is None:
            return []
        index, self._open, self._open_call = self._open[0], None, None
        return [hub.PartStop(index)]

    def _tool_fragment(self, fragment: dict[str, Any]) -> list[hub.Event]:
        self._saw_call = True
        position = fragment.get("index")
        if not isinstance(position, int):  # no index: a new call when it has an id, else the latest
            position = len(self._calls) if fragment.get("id") or not self._calls else list(self._calls)[-1]
        function = fragment.get("function") or {}
        call = self._calls.get(position)
        if call is None:
            call = self._calls[position] = _Call(str(fragment.get("id") or new_call_id()), "")
        if function.get("name") and not call.name:
            call.name = str(function["name"])
        arguments = function.get("arguments")
        if isinstance(arguments, dict):
            arguments = dumps(arguments)
        piece = _increment(call, arguments) if isinstance(arguments, str) and arguments else ""
        events: list[hub.Event] = []
        if call.part is None:
            if not call.name:
                call.arguments += piece  # not started until its name is known
                return []
            events += self._text_pieces(self._think.close()) + self._close_open()
            start = self._open_part("tool_call", call.id, call.name)
            events.append(start)
            call.part, self._open_call = start.index, position
            piece, call.arguments = call.arguments + piece, call.arguments + piece
        else:
            call.arguments += piece
            if self._open_call != position:
                return [hub.Failure(502, "the upstream interleaved the arguments of two tool calls")]
        if piece:
            events.append(hub.ArgumentsDelta(call.part, piece))
        return events


def _increment(call: _Call, arguments: str) -> str:
    """What ARGUMENTS add to CALL's arguments so far: all of them when they are a fragment, the
    new end when the server resends the whole so far (a snapshot)."""
    so_far = call.arguments
    if not call.snapshots and so_far and arguments.startswith(so_far) and not _is_json(so_far + arguments):
        call.snapshots = True
    if call.snapshots:
        return arguments[len(so_far) :] if arguments.startswith(so_far) else ""
    return arguments


def _is_json(text: str) -> bool:
    try:
        loads(text)
    except ValueError:
        return False
    return True


class StreamEncoder:
    """Hub events to chat completion chunks: the role first, content and reasoning_content deltas,
    tool_calls fragments by index, the finish_reason, a usage chunk, then `[DONE]`."""

    def __init__(self, model: str = "", include_usage: bool = True) -> None:
        self.model = model
        self.include_usage = include_usage
        self._id = f"chatcmpl-{secrets.token_hex(12)}"
        self._started = False
        self._kinds: dict[int, str] = {}
        self._calls: dict[int, int] = {}  # hub part index -> tool call index
        self._finished = False

    def encode(self, events: list[hub.Event]) -> bytes:
        """The SSE bytes for EVENTS."""
        return b"".join(self._one(event) for event in events)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return encode(None, self._envelope([choice]))

    def _envelope(self, choices: list[Any], **extra: Any) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": self.model,
            "choices": choices,
            **extra,
        }

    def _one(self, event: hub.Event) -> bytes:
        if self._finished:
            return b""
        out = b""
        if not self._started and not isinstance(event, hub.Failure):
            self._started = True
            if isinstance(event, hub.Start):
                self.model = event.model or self.model
                if event.id.startswith("chatcmpl"):
                    self._id = event.id
            out += self._chunk({"role": "assistant", "content": ""})
        if isinstance(event, hub.PartStart):
            self._kinds[event.index] = event.kind
            if event.kind == "tool_call":
                self._calls[event.index] = len(self._calls)
                call = {
                    "index": self._calls[event.index],
                    "id": event.call_id,
                    "type": "function",
                    "function": {"name": event.name, "arguments": ""},
                }
                out += self._chunk({"tool_calls": [call]})
        elif isinstance(event, hub.TextDelta):
            field = "reasoning_content" if self._kinds.get(event.index) == "reasoning" else "content"
            out += self._chunk({field: event.text})
        elif isinstance(event, hub.ArgumentsDelta) and event.index in self._calls:
            call = {"index": self._calls[event.index], "function": {"arguments": event.fragment}}
            out += self._chunk({"tool_calls": [call]})
        elif isinstance(event, hub.Finish):
            out += self._chunk({}, STOP_FROM_HUB[event.stop])
            if self.include_usage:
                out += encode(None, self._envelope([], usage=usage_from_hub(event.usage)))
            out += b"data: [DONE]\n\n"
            self._finished = True
        elif isinstance(event, hub.Failure):
            out += encode(None, error_body(event.status, event.message, event.type))
            self._finished = True
        return out
