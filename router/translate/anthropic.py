"""Anthropic's Messages API to and from the hub: requests, answers and streams.

Dropped on the way to the hub, as no other API can carry them: cache_control marks, server
tools (web search and the like), citations, metadata and service tiers.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from router.errors import BadRequest
from router.jsonutil import dumps, loads
from router.protocols.anthropic import ERROR_TYPES, error_type_for
from router.translate import hub
from router.translate.fields import array, strings
from router.translate.sse import EventReader, encode

STOP_TO_HUB: dict[str, hub.StopReason] = {
    "end_turn": "end",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_use": "tool_use",
    "refusal": "refusal",
    "pause_turn": "pause",
    "model_context_window_exceeded": "max_tokens",
}
STOP_FROM_HUB = {
    "end": "end_turn",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_use": "tool_use",
    "refusal": "refusal",
    "pause": "pause_turn",
}
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires an output limit; an OpenAI chat client may give none
_NOT_IN_ID = re.compile(r"[^a-zA-Z0-9_-]")


def tool_id(call_id: str) -> str:
    """A tool call id Anthropic accepts (letters, digits, _ and -), the same for the same id, so a
    call and its result still match after translation."""
    return _NOT_IN_ID.sub("_", call_id) if call_id else "toolu_missing"


# -- requests ----------------------------------------------------------------------------------


def request_to_hub(body: dict[str, Any]) -> hub.Request:
    """A Messages API request body as a hub Request; raises BadRequest for a shape it cannot read."""
    system = _system(body.get("system"))
    messages: list[hub.Message] = []
    for index, message in enumerate(array(body.get("messages"), "messages")):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant", "system"):
            raise BadRequest(f"messages.{index}.role: expected user or assistant")
        parts = _content(message.get("content"), f"messages.{index}.content")
        if role == "system" and not messages:
            system += tuple(p for p in parts if isinstance(p, hub.Text))
        else:
            messages.append(hub.Message(role, parts))
    thinking = body.get("thinking")
    output: dict[str, Any] = body["output_config"] if isinstance(body.get("output_config"), dict) else {}
    fmt = output.get("format") or body.get("output_format")
    return hub.Request(
        model=str(body.get("model", "")),
        messages=tuple(messages),
        system=system,
        tools=tuple(_tool(tool) for tool in array(body.get("tools") or [], "tools") if _is_custom(tool)),
        tool_choice=_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=_parallel(body.get("tool_choice")),
        max_tokens=body.get("max_tokens"),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        top_k=body.get("top_k"),
        stop=strings(body.get("stop_sequences"), "stop_sequences"),
        response_format=hub.ResponseFormat(fmt.get("schema")) if isinstance(fmt, dict) else None,
        reasoning_effort=output.get("effort"),
        reasoning_budget=thinking.get("budget_tokens")
        if isinstance(thinking, dict) and thinking.get("type") == "enabled"
        else None,
        stream=body.get("stream") is True,
    )


def request_from_hub(request: hub.Request) -> dict[str, Any]:
    """A hub Request as a Messages API request body."""
    body: dict[str, Any] = {"model": request.model, "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS}
    if request.system:
        body["system"] = [{"type": "text", "text": part.text} for part in request.system]
    body["messages"] = _messages_from_hub(request.messages, body)
    if request.tools:
        body["tools"] = [
            {
                "name": tool.name,
                **({"description": tool.description} if tool.description is not None else {}),
                "input_schema": tool.parameters,
            }
            for tool in request.tools
        ]
    if request.tool_choice or request.parallel_tool_calls is False:
        choice = request.tool_choice or hub.ToolChoice("auto")
        mode = {"auto": "auto", "required": "any", "none": "none", "tool": "tool"}[choice.mode]
        body["tool_choice"] = {
            "type": mode,
            **({"name": choice.name} if choice.mode == "tool" else {}),
            **({"disable_parallel_tool_use": True} if request.parallel_tool_calls is False else {}),
        }
    for field, value in (("temperature", request.temperature), ("top_p", request.top_p), ("top_k", request.top_k)):
        if value is not None:
            body[field] = value
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.response_format:
        schema = request.response_format.schema or {"type": "object"}
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if request.reasoning_effort is not None:
        body["output_config"] = {**body.get("output_config", {}), "effort": request.reasoning_effort}
    if request.reasoning_budget is not None:
        body["thinking"] = {"type": "enabled", "budget_tokens": request.reasoning_budget}
    if request.stream:
        body["stream"] = True
    return body


def _messages_from_hub(messages: tuple[hub.Message, ...], body: dict[str, Any]) -> list[dict[str, Any]]:
    """Messages API messages; a system message in the middle joins the user turn beside it."""
    rendered: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []  # system text waiting for a user turn
    for message in messages:
        blocks = [_block_from_hub(part) for part in message.parts]
        if message.role == "system":
            texts = [block for block in blocks if block["type"] == "text"]
            if rendered and rendered[-1]["role"] == "user":
                rendered[-1]["content"].extend(texts)
            else:
                pending.extend(texts)
            continue
        if message.role == "user" and pending:
            blocks = [*blocks[: _results_end(blocks)], *pending, *blocks[_results_end(blocks) :]]
            pending = []
        rendered.append({"role": message.role, "content": blocks})
    if pending:
        body.setdefault("system", []).extend(pending)
    return rendered


def _results_end(blocks: list[dict[str, Any]]) -> int:
    """Where a user turn's leading tool results end (they must come first)."""
    return next((i for i, block in enumerate(blocks) if block["type"] != "tool_result"), len(blocks))


def _block_from_hub(part: hub.Part) -> dict[str, Any]:
    if isinstance(part, hub.Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, hub.Image):
        return {"type": "image", "source": _image_source(part)}
    if isinstance(part, hub.ToolCall):
        return {
            "type": "tool_use",
            "id": tool_id(part.id),
            "name": part.name,
            "input": _arguments_object(part.arguments),
        }
    if isinstance(part, hub.ToolResult):
        content = [_block_from_hub(inner) for inner in part.content]
        return {
            "type": "tool_result",
            "tool_use_id": tool_id(part.call_id),
            "content": content,
            **({"is_error": True} if part.is_error else {}),
        }
    if part.redacted is not None:
        return {"type": "redacted_thinking", "data": part.redacted}
    return {"type": "thinking", "thinking": part.text, "signature": part.signature or ""}


def _image_source(image: hub.Image) -> dict[str, Any]:
    if image.url is not None:
        return {"type": "url", "url": image.url}
    return {"type": "base64", "media_type": image.media_type or "image/png", "data": image.data or ""}


def _arguments_object(arguments: str) -> Any:
    """Tool arguments as the object Anthropic carries; text that is no JSON object is kept under `arguments`."""
    try:
        value = loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


def _system(system: Any) -> tuple[hub.Text, ...]:
    if system is None:
        return ()
    if isinstance(system, str):
        return (hub.Text(system),) if system else ()
    return tuple(part for part in _content(system, "system") if isinstance(part, hub.Text))


def _content(content: Any, where: str) -> tuple[hub.Part, ...]:
    if isinstance(content, str):
        return (hub.Text(content),)
    return tuple(
        part
        for index, block in enumerate(array(content, where))
        if (part := _block_to_hub(block, f"{where}.{index}")) is not None
    )


def _block_to_hub(block: Any, where: str) -> hub.Part | None:
    if not isinstance(block, dict):
        raise BadRequest(f"{where}: expected a content block object")
    kind = block.get("type")
    if kind == "text":
        return hub.Text(str(block.get("text", "")))
    if kind == "image":
        source = block.get("source") or {}
        if source.get("type") == "url":
            return hub.Image(url=source.get("url"))
        return hub.Image(media_type=source.get("media_type"), data=source.get("data"))
    if kind == "tool_use":
        return hub.ToolCall(str(block.get("id", "")), str(block.get("name", "")), dumps(block.get("input", {})))
    if kind == "tool_result":
        inner = block.get("content")
        parts = _content(inner, f"{where}.content") if inner is not None else ()
        return hub.ToolResult(
            str(block.get("tool_use_id", "")),
            tuple(p for p in parts if isinstance(p, hub.Text | hub.Image)),
            block.get("is_error") is True,
        )
    if kind == "thinking":
        return hub.Reasoning(str(block.get("thinking", "")), block.get("signature") or None)
    if kind == "redacted_thinking":
        return hub.Reasoning("", redacted=str(block.get("data", "")))
    return None  # documents, server tool blocks: nothing another API could take


def _is_custom(tool: Any) -> bool:
    return isinstance(tool, dict) and tool.get("type") in (None, "custom") and "name" in tool


def _tool(tool: dict[str, Any]) -> hub.Tool:
    schema = tool.get("input_schema")
    return hub.Tool(
        str(tool["name"]),
        tool.get("description"),
        schema if isinstance(schema, dict) else {"type": "object", "properties": {}},
    )


def _tool_choice(choice: Any) -> hub.ToolChoice | None:
    if not isinstance(choice, dict):
        return None
    mode = {"auto": "auto", "any": "required", "none": "none", "tool": "tool"}.get(choice.get("type", ""))
    if mode is None:
        return None
    return hub.ToolChoice(mode, choice.get("name") if mode == "tool" else None)  # type: ignore[arg-type]


def _parallel(choice: Any) -> bool | None:
    return False if isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True else None


# -- answers -----------------------------------------------------------------------------------


def usage_to_hub(usage: Any) -> hub.Usage:
    """Anthropic's usage object as hub Usage (missing counts are 0)."""
    usage = usage if isinstance(usage, dict) else {}

    def count(name: str) -> int:
        value = usage.get(name)
        return value if isinstance(value, int) else 0

    return hub.Usage(
        count("input_tokens"),
        count("output_tokens"),
        count("cache_read_input_tokens"),
        count("cache_creation_input_tokens"),
    )


def usage_from_hub(usage: hub.Usage) -> dict[str, int]:
    """Hub Usage as Anthropic's usage object."""
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
    }


def answer_to_hub(message: dict[str, Any]) -> hub.Answer:
    """A Messages API message as a hub Answer."""
    parts = [_block_to_hub(block, f"content.{i}") for i, block in enumerate(message.get("content") or [])]
    return hub.Answer(
        tuple(p for p in parts if isinstance(p, hub.Text | hub.ToolCall | hub.Reasoning)),
        STOP_TO_HUB.get(str(message.get("stop_reason")), "end"),
        usage_to_hub(message.get("usage")),
        str(message.get("model", "")),
        str(message.get("id", "")),
        message.get("stop_sequence"),
    )


def answer_from_hub(answer: hub.Answer, model: str = "") -> dict[str, Any]:
    """A hub Answer as a Messages API message."""
    return {
        "id": message_id(answer.id),
        "type": "message",
        "role": "assistant",
        "model": answer.model or model,
        "content": [_block_from_hub(part) for part in answer.parts],
        "stop_reason": STOP_FROM_HUB[answer.stop],
        "stop_sequence": answer.stop_sequence,
        "usage": usage_from_hub(answer.usage),
    }


def message_id(upstream_id: str) -> str:
    """An Anthropic message id: the upstream's when it already is one."""
    return upstream_id if upstream_id.startswith("msg_") else f"msg_{secrets.token_hex(12)}"


def error_body(status: int, message: str, error_type: str | None) -> dict[str, Any]:
    """Anthropic's error object."""
    return {"type": "error", "error": {"type": error_type or error_type_for(status), "message": message}}


# -- streams -----------------------------------------------------------------------------------


class StreamDecoder:
    """Anthropic SSE bytes from an upstream to hub events."""

    def __init__(self) -> None:
        self._reader = EventReader()
        self._usage = hub.Usage()
        self._finish: hub.Finish | None = None

    def feed(self, chunk: bytes) -> list[hub.Event]:
        """The events CHUNK completes."""
        return [event for item in self._reader.feed(chunk) for event in self._read(item.data)]

    def close(self) -> list[hub.Event]:
        """The events left when the upstream's stream ends."""
        return [event for item in self._reader.close() for event in self._read(item.data)]

    def _read(self, data: str) -> list[hub.Event]:
        """The events of one upstream event; a Failure for one whose fields have the wrong types."""
        try:
            return self._decode(data)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            return [hub.Failure(502, f"the upstream sent an event that cannot be read ({exc}): {data[:200]}")]

    def _decode(self, data: str) -> list[hub.Event]:
        try:
            event = loads(data)
        except ValueError:
            return [hub.Failure(502, f"the upstream sent an event that is not JSON: {data[:200]}")]
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "message_start":
            message = event.get("message") or {}
            self._usage = usage_to_hub(message.get("usage"))
            return [hub.Start(str(message.get("id", "")), str(message.get("model", "")), self._usage)]
        if kind == "content_block_start":
            return self._block_start(int(event.get("index", 0)), event.get("content_block") or {})
        if kind == "content_block_delta":
            return self._delta(int(event.get("index", 0)), event.get("delta") or {})
        if kind == "content_block_stop":
            return [hub.PartStop(int(event.get("index", 0)))]
        if kind == "message_delta":
            delta, usage = event.get("delta") or {}, event.get("usage") or {}
            merged = {**usage_from_hub(self._usage), **{k: v for k, v in usage.items() if isinstance(v, int)}}
            self._usage = usage_to_hub(merged)
            self._finish = hub.Finish(
                STOP_TO_HUB.get(str(delta.get("stop_reason")), "end"), self._usage, delta.get("stop_sequence")
            )
            return []
        if kind == "message_stop":
            finish, self._finish = self._finish or hub.Finish("end", self._usage), None
            return [finish]
        if kind == "error":
            error = event.get("error") or {}
            return [hub.Failure(_status_of(error.get("type")), str(error.get("message", "")), error.get("type"))]
        return []

    def _block_start(self, index: int, block: dict[str, Any]) -> list[hub.Event]:
        kind = block.get("type")
        if kind == "tool_use":
            events: list[hub.Event] = [
                hub.PartStart(index, "tool_call", str(block.get("id", "")), str(block.get("name", "")))
            ]
            if block.get("input"):
                events.append(hub.ArgumentsDelta(index, dumps(block["input"])))
            return events
        if kind in ("thinking", "redacted_thinking"):
            reasoning: list[hub.Event] = [hub.PartStart(index, "reasoning")]
            return reasoning + ([hub.TextDelta(index, block["thinking"])] if block.get("thinking") else [])
        start: list[hub.Event] = [hub.PartStart(index, "text")]
        return start + ([hub.TextDelta(index, block["text"])] if block.get("text") else [])

    def _delta(self, index: int, delta: dict[str, Any]) -> list[hub.Event]:
        kind = delta.get("type")
        if kind == "text_delta":
            return [hub.TextDelta(index, str(delta.get("text", "")))]
        if kind == "thinking_delta":
            return [hub.TextDelta(index, str(delta.get("thinking", "")))]
        if kind == "input_json_delta":
            return [hub.ArgumentsDelta(index, str(delta.get("partial_json", "")))]
        if kind == "signature_delta":
            return [hub.SignatureDelta(index, str(delta.get("signature", "")))]
        return []


def _status_of(error_type: Any) -> int:
    return next((status for status, name in ERROR_TYPES.items() if name == error_type), 500)


class StreamEncoder:
    """Hub events to the Anthropic SSE stream a strict client accepts: message_start (with usage)
    first, each block started before its deltas with the type its deltas need, message_delta with
    the final usage, message_stop last."""

    def __init__(self, model: str = "") -> None:
        self.model = model
        self._started = False
        self._open: tuple[int, str] | None = None  # client block index and kind
        self._next_index = 0
        self._finished = False

    def encode(self, events: list[hub.Event]) -> bytes:
        """The SSE bytes for EVENTS."""
        return b"".join(self._one(event) for event in events)

    def _one(self, event: hub.Event) -> bytes:
        if self._finished:
            return b""
        if isinstance(event, hub.Start):
            return self._start(event)
        out = b"" if self._started or isinstance(event, hub.Failure) else self._start(hub.Start())
        if isinstance(event, hub.PartStart):
            out += self._close_block()
            kind = {"text": "text", "reasoning": "thinking", "tool_call": "tool_use"}[event.kind]
            block: dict[str, Any] = (
                {"type": "tool_use", "id": tool_id(event.call_id), "name": event.name, "input": {}}
                if kind == "tool_use"
                else {"type": "thinking", "thinking": "", "signature": ""}
                if kind == "thinking"
                else {"type": "text", "text": ""}
            )
            self._open = (self._next_index, kind)
            self._next_index += 1
            out += encode(
                "content_block_start",
                {"type": "content_block_start", "index": self._open[0], "content_block": block},
            )
        elif isinstance(event, hub.TextDelta):
            delta = (
                {"type": "thinking_delta", "thinking": event.text}
                if self._open_kind("thinking")
                else {"type": "text_delta", "text": event.text}
            )
            out += self._delta(delta, "thinking" if delta["type"] == "thinking_delta" else "text")
        elif isinstance(event, hub.ArgumentsDelta):
            out += self._delta({"type": "input_json_delta", "partial_json": event.fragment}, "tool_use")
        elif isinstance(event, hub.SignatureDelta):
            out += self._delta({"type": "signature_delta", "signature": event.signature}, "thinking")
        elif isinstance(event, hub.PartStop):
            out += self._close_block()
        elif isinstance(event, hub.Finish):
            out += self._close_block()
            out += encode(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": STOP_FROM_HUB[event.stop], "stop_sequence": event.stop_sequence},
                    "usage": usage_from_hub(event.usage),
                },
            )
            out += encode("message_stop", {"type": "message_stop"})
            self._finished = True
        elif isinstance(event, hub.Failure):
            out += encode("error", error_body(event.status, event.message, event.type))
            self._finished = True
        return out

    def _start(self, event: hub.Start) -> bytes:
        if self._started:
            return b""
        self._started = True
        message: dict[str, Any] = {
            "id": message_id(event.id),
            "type": "message",
            "role": "assistant",
            "model": event.model or self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_from_hub(event.usage),
        }
        return encode("message_start", {"type": "message_start", "message": message})

    def _open_kind(self, kind: str) -> bool:
        return self._open is not None and self._open[1] == kind

    def _delta(self, delta: dict[str, Any], kind: str) -> bytes:
        """A delta into the open block; a delta the open block cannot take gets a block of its own."""
        out = b""
        if not self._open_kind(kind):
            out += self._close_block()
            block = {
                "text": {"type": "text", "text": ""},
                "thinking": {"type": "thinking", "thinking": "", "signature": ""},
            }.get(kind)
            if block is None:
                return out  # arguments with no tool call open: nothing could carry them
            self._open = (self._next_index, kind)
            self._next_index += 1
            out += encode(
                "content_block_start", {"type": "content_block_start", "index": self._open[0], "content_block": block}
            )
        assert self._open is not None
        return out + encode(
            "content_block_delta", {"type": "content_block_delta", "index": self._open[0], "delta": delta}
        )

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open = self._open[0], None
        return encode("content_block_stop", {"type": "content_block_stop", "index": index})
