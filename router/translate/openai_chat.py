"""OpenAI's chat completions API (and what local servers add to it) to and from the hub: requests
and answers (streams: openai_chat_stream).

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
from router.jsonutil import dumps
from router.translate import hub
from router.translate.fields import array, strings
from router.translate.think import ThinkSplitter

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


def usage_to_hub(
    usage: Any, names: tuple[str, str, str] = ("prompt_tokens", "completion_tokens", "prompt")
) -> hub.Usage:
    """OpenAI's usage (prompt tokens include the cached ones) as hub Usage. NAMES: its prompt and
    output counts and the prefix of its details (`input_tokens`, `output_tokens`, `input` in the
    Responses API)."""
    if not isinstance(usage, dict):
        return hub.Usage()
    prompt_name, output_name, details_prefix = names
    details = usage.get(f"{details_prefix}_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    cached = cached if isinstance(cached, int) else 0
    prompt, output = usage.get(prompt_name), usage.get(output_name)
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
