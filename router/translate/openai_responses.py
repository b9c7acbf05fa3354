"""OpenAI's Responses API (Codex CLI) to and from the hub: requests and answers (streams:
openai_responses_stream).

`instructions` and leading system or developer messages are the hub's system; the input items
(messages, `function_call`, `function_call_output`, `reasoning`) become turns, the items of one
assistant turn (reasoning, text, calls) joined into one hub message. A reasoning item's text is
its `reasoning_text` content, else its summary; its `encrypted_content` is the hub's redacted
reasoning. Output items are one per hub part, their ids made from the response id and the part's
index, so a stream and the whole answer name the same items.

Dropped on the way to the hub, as no other API can carry them: tools other than functions (web
search, namespaces, local shell, custom and MCP tools), items of other kinds (their calls and
outputs), `store`, `include`, `previous_response_id`, `prompt_cache_key`, `metadata`,
`client_metadata`, `truncation`, `service_tier` and `reasoning.summary`.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from router.errors import BadRequest
from router.jsonutil import dumps
from router.translate import hub, openai_chat
from router.translate.fields import array, text

ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}
ERROR_CODES_TO_STATUS = {"context_length_exceeded": 400, "rate_limit_exceeded": 429, "invalid_prompt": 400}
ITEM_PREFIXES = {"text": "msg", "reasoning": "rs", "tool_call": "fc"}
_DATA_URL = re.compile(r"data:([^;,]+)?;base64,(.*)", re.S)


# -- requests ----------------------------------------------------------------------------------


def request_to_hub(body: dict[str, Any]) -> hub.Request:
    """A Responses API request body as a hub Request; raises BadRequest for a shape it cannot read."""
    system = [hub.Text(text(body.get("instructions"), "instructions"))] if body.get("instructions") else []
    messages: list[hub.Message] = []
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for index, item in enumerate(array(items if items is not None else [], "input")):
        if not isinstance(item, dict):
            raise BadRequest(f"input[{index}]: expected an object")
        _item_to_hub(item, f"input[{index}]", system, messages)
    reasoning = body.get("reasoning")
    text_options = body.get("text")
    return hub.Request(
        model=str(body.get("model", "")),
        messages=tuple(messages),
        system=tuple(system),
        tools=tuple(_tool(tool) for tool in array(body.get("tools") or [], "tools") if _is_function(tool)),
        tool_choice=_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=body.get("parallel_tool_calls"),
        max_tokens=body.get("max_output_tokens"),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        response_format=_response_format(text_options.get("format") if isinstance(text_options, dict) else None),
        reasoning_effort=reasoning.get("effort") if isinstance(reasoning, dict) else None,
        stream=body.get("stream") is True,
    )


def _item_to_hub(item: dict[str, Any], where: str, system: list[hub.Text], messages: list[hub.Message]) -> None:
    """ITEM added to MESSAGES (or SYSTEM, for leading instructions)."""
    kind, role = item.get("type", "message"), item.get("role")
    if kind == "message":
        if role in ("system", "developer"):
            instruction = hub.Text(_text_of(item.get("content"), f"{where}.content"))
            if messages:
                messages.append(hub.Message("system", (instruction,)))
            else:
                system.append(instruction)
        elif role == "user":
            _append(messages, "user", _user_parts(item.get("content"), f"{where}.content"))
        elif role == "assistant":
            content = item.get("content")
            said = _text_of(content, f"{where}.content")
            _append(messages, "assistant", (hub.Text(said),) if said or isinstance(content, str) else ())
        else:
            raise BadRequest(f"{where}.role: expected system, developer, user or assistant")
    elif kind == "function_call":
        arguments = item.get("arguments", "{}")
        call = hub.ToolCall(
            text(item.get("call_id"), f"{where}.call_id"),
            text(item.get("name"), f"{where}.name"),
            arguments if isinstance(arguments, str) else dumps(arguments),
        )
        _append(messages, "assistant", (call,))
    elif kind == "function_call_output":
        output = item.get("output")
        content = _user_parts(output, f"{where}.output") if output is not None else ()
        result = hub.ToolResult(text(item.get("call_id"), f"{where}.call_id"), content)
        _append(messages, "user", (result,))
    elif kind == "reasoning":
        _append(messages, "assistant", (_reasoning_to_hub(item, where),))


def _append(messages: list[hub.Message], role: hub.Role, parts: tuple[hub.Part, ...]) -> None:
    """PARTS join the last message when it has ROLE (the items of one turn), else start one."""
    if messages and messages[-1].role == role:
        messages[-1] = hub.Message(role, messages[-1].parts + parts)
    elif parts:
        messages.append(hub.Message(role, parts))


def _reasoning_to_hub(item: dict[str, Any], where: str) -> hub.Reasoning:
    content = _texts(item.get("content"), ("reasoning_text",), f"{where}.content")
    summary = _texts(item.get("summary"), ("summary_text",), f"{where}.summary")
    encrypted = item.get("encrypted_content")
    return hub.Reasoning(
        "".join(content) if content else "\n\n".join(summary),
        None,
        text(encrypted, f"{where}.encrypted_content") or None,
    )


def _texts(parts: Any, kinds: tuple[str, ...], where: str) -> list[str]:
    """The texts of the PARTS of KINDS (None: none)."""
    if parts is None:
        return []
    return [
        text(part.get("text"), f"{where}[{index}].text")
        for index, part in enumerate(array(parts, where))
        if isinstance(part, dict) and part.get("type") in kinds
    ]


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    return "".join(_texts(content, ("input_text", "output_text", "text"), where))


def _user_parts(content: Any, where: str) -> tuple[hub.Text | hub.Image, ...]:
    if isinstance(content, str):
        return (hub.Text(content),)
    parts: list[hub.Text | hub.Image] = []
    for index, part in enumerate(array(content, where)):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append(hub.Text(text(part.get("text"), f"{where}[{index}].text")))
        elif kind == "input_image":
            url = part.get("image_url")
            parts.append(_image(text(url if not isinstance(url, dict) else url.get("url"), f"{where}[{index}]")))
        elif kind is None:
            raise BadRequest(f"{where}[{index}]: expected a content part object with a type")
    return tuple(parts)


def _image(url: str) -> hub.Image:
    match = _DATA_URL.fullmatch(url)
    return hub.Image(media_type=match.group(1), data=match.group(2)) if match else hub.Image(url=url)


def _is_function(tool: Any) -> bool:
    return isinstance(tool, dict) and tool.get("type") == "function" and isinstance(tool.get("name"), str)


def _tool(tool: dict[str, Any]) -> hub.Tool:
    parameters = tool.get("parameters")
    description = tool.get("description")
    return hub.Tool(
        tool["name"],
        description if isinstance(description, str) else None,
        parameters if isinstance(parameters, dict) else {"type": "object", "properties": {}},
    )


def _tool_choice(choice: Any) -> hub.ToolChoice | None:
    if choice in ("auto", "required", "none"):
        return hub.ToolChoice(choice)
    if isinstance(choice, dict) and choice.get("type") == "function":
        return hub.ToolChoice("tool", str(choice.get("name", "")))
    return None


def _response_format(fmt: Any) -> hub.ResponseFormat | None:
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return hub.ResponseFormat()
    if fmt.get("type") == "json_schema":
        schema = fmt.get("schema")
        return hub.ResponseFormat(schema if isinstance(schema, dict) else None, fmt.get("name"), fmt.get("strict"))
    return None


def request_from_hub(request: hub.Request) -> dict[str, Any]:
    """A hub Request as a Responses API request body: the system texts as `instructions`, nothing
    stored at the server (`store: false`), each tool non-strict (as the client described it)."""
    body: dict[str, Any] = {"model": request.model}
    if request.system:
        body["instructions"] = "\n\n".join(part.text for part in request.system)
    body["input"] = [item for message in request.messages for item in _items_from_hub(message)]
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "name": tool.name,
                **({"description": tool.description} if tool.description is not None else {}),
                "parameters": tool.parameters,
                "strict": False,
            }
            for tool in request.tools
        ]
    if choice := request.tool_choice:
        body["tool_choice"] = {"type": "function", "name": choice.name} if choice.mode == "tool" else choice.mode
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    for field, value in (
        ("max_output_tokens", request.max_tokens),
        ("temperature", request.temperature),
        ("top_p", request.top_p),
    ):
        if value is not None:
            body[field] = value
    if fmt := request.response_format:
        body["text"] = {
            "format": {"type": "json_object"}
            if fmt.schema is None
            else {
                "type": "json_schema",
                "name": fmt.name or "response",
                "schema": fmt.schema,
                **({"strict": fmt.strict} if fmt.strict is not None else {}),
            }
        }
    if request.reasoning_effort is not None:
        body["reasoning"] = {"effort": request.reasoning_effort}
    body["store"] = False
    if request.stream:
        body["stream"] = True
    return body


def _items_from_hub(message: hub.Message) -> list[dict[str, Any]]:
    """The input items of one hub message, in its parts' order (neighbouring texts and images share
    one message item)."""
    if message.role == "system":
        said = "".join(p.text for p in message.parts if isinstance(p, hub.Text))
        return [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": said}]}]
    items: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, hub.ToolResult):
            items.append({"type": "function_call_output", "call_id": part.call_id, "output": _output(part.content)})
        elif isinstance(part, hub.ToolCall):
            items.append(_call_item(part))
        elif isinstance(part, hub.Reasoning):
            items.append(_reasoning_item(part))
        elif isinstance(part, hub.Text | hub.Image):
            content = _content_part(part, message.role)
            last = items[-1] if items else None
            if last is not None and last["type"] == "message":
                last["content"].append(content)
            else:
                items.append({"type": "message", "role": message.role, "content": [content]})
    return items


def _content_part(part: hub.Text | hub.Image, role: str) -> dict[str, Any]:
    if isinstance(part, hub.Text):
        return {"type": "output_text" if role == "assistant" else "input_text", "text": part.text}
    url = part.url if part.url is not None else f"data:{part.media_type or 'image/png'};base64,{part.data or ''}"
    return {"type": "input_image", "image_url": url}


def _output(content: tuple[hub.Text | hub.Image, ...]) -> Any:
    """A tool's output: a string for text alone, else input_text and input_image parts."""
    if all(isinstance(part, hub.Text) for part in content):
        return "".join(part.text for part in content if isinstance(part, hub.Text))
    return [_content_part(part, "user") for part in content]


def _call_item(call: hub.ToolCall, item_id: str | None = None) -> dict[str, Any]:
    item = {"type": "function_call", "call_id": call.id, "name": call.name, "arguments": call.arguments}
    return {"id": item_id, **item, "status": "completed"} if item_id else item


def _reasoning_item(reasoning: hub.Reasoning, item_id: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "reasoning", "summary": []}
    if item_id:
        item = {"id": item_id, **item}
    if reasoning.text:
        item["content"] = [{"type": "reasoning_text", "text": reasoning.text}]
    if reasoning.redacted:
        item["encrypted_content"] = reasoning.redacted
    return item


# -- answers -----------------------------------------------------------------------------------


def usage_to_hub(usage: Any) -> hub.Usage:
    """The Responses API's usage (input tokens include the cached ones) as hub Usage."""
    return openai_chat.usage_to_hub(usage, ("input_tokens", "output_tokens", "input"))


def usage_from_hub(usage: hub.Usage) -> dict[str, Any]:
    """Hub Usage as the Responses API's usage object (no API says its reasoning tokens to the hub)."""
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.prompt_tokens + usage.output_tokens,
    }


def stop_to_hub(status: Any, incomplete: Any, called: bool) -> hub.StopReason:
    """Why a response with STATUS (and INCOMPLETE details) stopped; CALLED: it calls tools."""
    reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
    if status == "incomplete" and reason == "content_filter":
        return "refusal"
    if status == "incomplete":
        return "max_tokens"
    return "tool_use" if called else "end"


def status_from_hub(stop: hub.StopReason) -> tuple[str, dict[str, str] | None]:
    """The status and incomplete_details of a response that stopped for STOP."""
    if stop == "max_tokens":
        return "incomplete", {"reason": "max_output_tokens"}
    if stop == "refusal":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def part_to_hub(item: dict[str, Any], where: str) -> hub.Text | hub.ToolCall | hub.Reasoning | None:
    """One output item as a hub part (None for items of other kinds)."""
    kind = item.get("type")
    if kind == "message":
        content = item.get("content")
        return hub.Text("".join(_texts(content, ("output_text", "refusal"), f"{where}.content")))
    if kind == "function_call":
        arguments = item.get("arguments")
        return hub.ToolCall(
            text(item.get("call_id"), f"{where}.call_id"),
            text(item.get("name"), f"{where}.name"),
            arguments if isinstance(arguments, str) and arguments else "{}",
        )
    if kind == "reasoning":
        return _reasoning_to_hub(item, where)
    return None


def answer_to_hub(response: dict[str, Any]) -> hub.Answer:
    """A response object as a hub Answer; raises ValueError for a response that failed."""
    if response.get("status") == "failed" or isinstance(response.get("error"), dict):
        raise ValueError(f"the response failed: {response.get('error')}")
    parts = [
        part_to_hub(item, f"output[{index}]")
        for index, item in enumerate(array(response.get("output") or [], "output"))
        if isinstance(item, dict)
    ]
    kept = tuple(part for part in parts if part is not None)
    called = any(isinstance(part, hub.ToolCall) for part in kept)
    return hub.Answer(
        kept,
        stop_to_hub(response.get("status"), response.get("incomplete_details"), called),
        usage_to_hub(response.get("usage")),
        str(response.get("model", "")),
        str(response.get("id", "")),
    )


def response_id(upstream_id: str) -> str:
    """A response id: the upstream's when it already is one."""
    return upstream_id if upstream_id.startswith("resp_") else f"resp_{secrets.token_hex(12)}"


def item_id(response: str, kind: str, index: int) -> str:
    """The id of output item INDEX (a hub part of KIND) of RESPONSE."""
    return f"{ITEM_PREFIXES[kind]}_{response.removeprefix('resp_')}_{index}"


def output_item(part: hub.Text | hub.ToolCall | hub.Reasoning, response: str, index: int) -> dict[str, Any]:
    """Hub part INDEX of RESPONSE as a completed output item."""
    if isinstance(part, hub.ToolCall):
        return _call_item(part, item_id(response, "tool_call", index))
    if isinstance(part, hub.Reasoning):
        return _reasoning_item(part, item_id(response, "reasoning", index))
    return {
        "id": item_id(response, "text", index),
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [output_text(part.text)],
    }


def output_text(said: str) -> dict[str, Any]:
    """An output_text content part."""
    return {"type": "output_text", "text": said, "annotations": [], "logprobs": []}


def response_object(
    rid: str, model: str, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """A response object with the fields the SDK's Response and Codex read."""
    return {
        "id": rid,
        "object": "response",
        "created_at": 0,
        "status": status,
        "model": model,
        "output": output,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "parallel_tool_calls": True,
        "temperature": None,
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "usage": usage,
        **extra,
    }


def answer_from_hub(answer: hub.Answer, model: str = "") -> dict[str, Any]:
    """A hub Answer as a response object."""
    rid = response_id(answer.id)
    status, incomplete = status_from_hub(answer.stop)
    output = [output_item(part, rid, index) for index, part in enumerate(answer.parts)]
    return response_object(
        rid, answer.model or model, status, output, usage_from_hub(answer.usage), incomplete_details=incomplete
    )


def error_code(status: int, error_type: str | None) -> str:
    """The `code` of a Responses error: the hub's type when it names one, else one from STATUS."""
    return error_type or ERROR_TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")


def status_of(code: Any) -> int:
    """The HTTP status a Responses error CODE stands for."""
    return ERROR_CODES_TO_STATUS.get(str(code), 500)
