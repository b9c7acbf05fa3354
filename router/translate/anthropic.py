"""Anthropic's Messages API to and from the hub: requests and answers (streams: anthropic_stream).

Dropped on the way to the hub, as no other API can carry them: cache_control marks, server
tools (web search and the like), citations, metadata and service tiers.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from router.errors import BadRequest
from router.jsonutil import dumps, loads
from router.protocols.anthropic import error_type_for
from router.translate import hub
from router.translate.fields import array, strings, text

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
        return hub.Reasoning(str(block.get("thinking", "")), text(block.get("signature"), f"{where}.signature") or None)
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
