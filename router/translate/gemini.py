"""Google's Gemini API (generateContent) to and from the hub: requests and answers (streams:
gemini_stream).

The model and the stream flag are in the URL path, not in the body: a request read here has no
model and does not stream until the caller says so (router.translate.apis), and `path` writes them.

Gemini's function calls may carry no id. Reading a conversation, a call without one gets an id
from its place in the conversation (the same every turn), and a result whose id names no call is
matched to the earliest unanswered call of its function; writing one, those made-up ids are left
out again and each result is named after the function of the call it answers. A thought
signature on a part that is not a thought (Gemini 3 puts them on function calls) becomes an empty
Reasoning part just before it, and goes back onto the part that follows it.

Schemas in Gemini's own dialect (`parameters`, `responseSchema`: upper-case types) become JSON
Schema (lower-case types). Dropped, as no other API can carry them: tools other than function
declarations (googleSearch, codeExecution, urlContext: their answers come from Google),
safetySettings, cachedContent, candidateCount, penalties and seeds, and `thoughtsTokenCount`
apart from the output tokens it belongs to.
"""

from __future__ import annotations

import secrets
from itertools import chain
from typing import Any
from urllib.parse import quote

from router.errors import BadRequest
from router.jsonutil import dumps, loads
from router.translate import hub
from router.translate.fields import array, mapping, number, strings, text

STOP_TO_HUB: dict[str, hub.StopReason] = {
    "STOP": "end",
    "MAX_TOKENS": "max_tokens",
    "SAFETY": "refusal",
    "RECITATION": "refusal",
    "BLOCKLIST": "refusal",
    "PROHIBITED_CONTENT": "refusal",
    "SPII": "refusal",
    "IMAGE_SAFETY": "refusal",
}
STOP_FROM_HUB = {
    "end": "STOP",
    "max_tokens": "MAX_TOKENS",
    "stop_sequence": "STOP",
    "tool_use": "STOP",
    "refusal": "SAFETY",
    "pause": "STOP",
}
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
MODES_TO_HUB = {"AUTO": "auto", "ANY": "required", "NONE": "none", "VALIDATED": "auto"}
MODES_FROM_HUB = {"auto": "AUTO", "required": "ANY", "none": "NONE", "tool": "ANY"}
MADE_UP_ID = "gemini_call_"  # ids made here for calls that came without one; never sent to Gemini


def path(model: str, stream: bool) -> str:
    """Where a Gemini server takes a turn for MODEL, streamed as server-sent events or whole."""
    name = quote(model.removeprefix("models/"), safe="")
    return (
        f"/v1beta/models/{name}:streamGenerateContent?alt=sse" if stream else f"/v1beta/models/{name}:generateContent"
    )


# -- requests ----------------------------------------------------------------------------------


def request_to_hub(body: dict[str, Any]) -> hub.Request:
    """A generateContent request body as a hub Request (no model, not streamed: both are in the
    path); raises BadRequest for a shape it cannot read."""
    messages = _Calls().messages(array(body.get("contents"), "contents"))
    config = mapping(body.get("generationConfig"), "generationConfig")
    thinking = mapping(config.get("thinkingConfig"), "generationConfig.thinkingConfig")
    budget, level = thinking.get("thinkingBudget"), thinking.get("thinkingLevel")
    return hub.Request(
        model="",
        messages=tuple(messages),
        system=_system(body.get("systemInstruction")),
        tools=tuple(_tools(array(body.get("tools") or [], "tools"))),
        tool_choice=_tool_choice(mapping(body.get("toolConfig"), "toolConfig")),
        max_tokens=number(config.get("maxOutputTokens"), "generationConfig.maxOutputTokens", whole=True),
        temperature=number(config.get("temperature"), "generationConfig.temperature"),
        top_p=number(config.get("topP"), "generationConfig.topP"),
        top_k=number(config.get("topK"), "generationConfig.topK", whole=True),
        stop=strings(config.get("stopSequences"), "generationConfig.stopSequences"),
        response_format=_response_format(config),
        reasoning_budget=budget if isinstance(budget, int) and budget > 0 else None,
        reasoning_effort=level.lower() if isinstance(level, str) and level else None,
    )


def _system(instruction: Any) -> tuple[hub.Text, ...]:
    if isinstance(instruction, str):
        return (hub.Text(instruction),) if instruction else ()
    parts = array(mapping(instruction, "systemInstruction").get("parts") or [], "systemInstruction.parts")
    return tuple(
        hub.Text(text(part.get("text"), f"systemInstruction.parts[{index}].text"))
        for index, part in enumerate(parts)
        if isinstance(part, dict) and "text" in part
    )


class _Calls:
    """Reads contents, giving calls without an id one from their place and matching results to calls."""

    def __init__(self) -> None:
        self.made = 0
        self.unanswered: list[tuple[str, str]] = []  # (function name, call id) of calls not answered yet, oldest first
        self.ids: set[str] = set()

    def messages(self, contents: list[Any]) -> list[hub.Message]:
        messages: list[hub.Message] = []
        for index, content in enumerate(contents):
            where = f"contents[{index}]"
            content = mapping(content, where)
            role = content.get("role", "user")
            if role not in ("user", "model", "function"):
                raise BadRequest(f"{where}.role: expected user or model")
            parts = array(content.get("parts") or [], f"{where}.parts")
            read = [
                self.part(mapping(part, f"{where}.parts[{i}]"), f"{where}.parts[{i}]") for i, part in enumerate(parts)
            ]
            messages.append(hub.Message("assistant" if role == "model" else "user", tuple(chain.from_iterable(read))))
        return messages

    def part(self, part: dict[str, Any], where: str) -> list[hub.Part]:
        signature = part.get("thoughtSignature")
        signature = signature if isinstance(signature, str) and signature else None
        if part.get("thought") is True:
            return [hub.Reasoning(text(part.get("text"), f"{where}.text"), signature)]
        before: list[hub.Part] = [hub.Reasoning("", signature)] if signature else []
        if "text" in part:
            return [*before, hub.Text(text(part["text"], f"{where}.text"))]
        if "inlineData" in part or "fileData" in part:
            return [*before, _image(part, where)]
        if "functionCall" in part:
            return [*before, self.call(mapping(part["functionCall"], f"{where}.functionCall"))]
        if "functionResponse" in part:
            return [*before, self.result(mapping(part["functionResponse"], f"{where}.functionResponse"), where)]
        return before  # executableCode, codeExecutionResult, videoMetadata: nothing another API could take

    def call(self, call: dict[str, Any]) -> hub.ToolCall:
        name = str(call.get("name", ""))
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            call_id = f"{MADE_UP_ID}{self.made}"
            self.made += 1
        self.unanswered.append((name, call_id))
        self.ids.add(call_id)
        args = call.get("args")
        return hub.ToolCall(call_id, name, dumps(args if args is not None else {}))

    def result(self, response: dict[str, Any], where: str) -> hub.ToolResult:
        name = str(response.get("name", ""))
        given = response.get("id")
        oldest = next((call_id for function, call_id in self.unanswered if function == name), None)
        if isinstance(given, str) and given in self.ids:
            call_id = given
        elif oldest is not None:
            call_id = oldest
        else:
            call_id = given if isinstance(given, str) and given else f"{MADE_UP_ID}{name}"
        answered = next((entry for entry in self.unanswered if entry[1] == call_id), None)
        if answered is not None:
            self.unanswered.remove(answered)
        output = response.get("response")
        content: list[hub.Text | hub.Image] = []
        is_error = False
        if isinstance(output, dict) and len(output) == 1 and isinstance(said := next(iter(output.values())), str):
            is_error = "error" in output
            if "error" in output or "output" in output:
                content += [hub.Text(said)] if said else []
            else:
                content.append(hub.Text(dumps(output)))
        elif output is not None:
            content.append(hub.Text(dumps(output)))
        for index, inner in enumerate(array(response.get("parts") or [], f"{where}.functionResponse.parts")):
            inner = mapping(inner, f"{where}.functionResponse.parts[{index}]")
            if "inlineData" in inner or "fileData" in inner:
                content.append(_image(inner, f"{where}.functionResponse.parts[{index}]"))
        return hub.ToolResult(call_id, tuple(content), is_error)


def _image(part: dict[str, Any], where: str) -> hub.Image:
    if "inlineData" in part:
        data = mapping(part["inlineData"], f"{where}.inlineData")
        return hub.Image(media_type=_optional_text(data.get("mimeType")), data=text(data.get("data"), f"{where}.data"))
    data = mapping(part["fileData"], f"{where}.fileData")
    return hub.Image(media_type=_optional_text(data.get("mimeType")), url=text(data.get("fileUri"), f"{where}.fileUri"))


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _tools(tools: list[Any]) -> list[hub.Tool]:
    """Function declarations; other tools (googleSearch and the like) are Google's to run: dropped."""
    found = []
    for index, tool in enumerate(tools):
        declarations = mapping(tool, f"tools[{index}]").get("functionDeclarations") or []
        for place, declaration in enumerate(array(declarations, f"tools[{index}].functionDeclarations")):
            declaration = mapping(declaration, f"tools[{index}].functionDeclarations[{place}]")
            schema = declaration.get("parametersJsonSchema", declaration.get("parameters"))
            description = declaration.get("description")
            found.append(
                hub.Tool(
                    str(declaration.get("name", "")),
                    description if isinstance(description, str) else None,
                    json_schema(schema) if isinstance(schema, dict) else {"type": "object", "properties": {}},
                )
            )
    return found


def json_schema(schema: Any) -> Any:
    """SCHEMA with Gemini's upper-case type names (`OBJECT`, `STRING`) in JSON Schema's lower case."""
    if isinstance(schema, list):
        return [json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            converted[key] = value.lower()
        elif key == "type" and isinstance(value, list):
            converted[key] = [v.lower() if isinstance(v, str) else v for v in value]
        elif key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            converted[key] = {name: json_schema(inner) for name, inner in value.items()}
        elif key in ("items", "anyOf", "oneOf", "allOf", "not", "additionalProperties", "prefixItems"):
            converted[key] = json_schema(value)
        else:
            converted[key] = value
    return converted


def _tool_choice(config: dict[str, Any]) -> hub.ToolChoice | None:
    calling = mapping(config.get("functionCallingConfig"), "toolConfig.functionCallingConfig")
    mode = MODES_TO_HUB.get(str(calling.get("mode", "")).upper())
    if mode is None:
        return None
    allowed = strings(calling.get("allowedFunctionNames"), "toolConfig.functionCallingConfig.allowedFunctionNames")
    if mode == "required" and len(allowed) == 1:
        return hub.ToolChoice("tool", allowed[0])
    return hub.ToolChoice(mode)  # type: ignore[arg-type]


def _response_format(config: dict[str, Any]) -> hub.ResponseFormat | None:
    if config.get("responseMimeType") != "application/json":
        return None
    schema = config.get("responseJsonSchema", config.get("responseSchema"))
    return hub.ResponseFormat(json_schema(schema) if isinstance(schema, dict) else None)


def request_from_hub(request: hub.Request) -> dict[str, Any]:
    """A hub Request as a generateContent request body (the model and stream flag go in the path)."""
    names = {p.id: p.name for m in request.messages for p in m.parts if isinstance(p, hub.ToolCall)}
    body: dict[str, Any] = {"contents": [_content_from_hub(message, names) for message in request.messages]}
    if request.system:
        body["systemInstruction"] = {"parts": [{"text": part.text} for part in request.system]}
    if request.tools:
        body["tools"] = [{"functionDeclarations": [_declaration(tool) for tool in request.tools]}]
    if request.tool_choice:
        choice = request.tool_choice
        calling: dict[str, Any] = {"mode": MODES_FROM_HUB[choice.mode]}
        if choice.mode == "tool":
            calling["allowedFunctionNames"] = [choice.name or ""]
        body["toolConfig"] = {"functionCallingConfig": calling}
    config: dict[str, Any] = {}
    for field, value in (
        ("maxOutputTokens", request.max_tokens),
        ("temperature", request.temperature),
        ("topP", request.top_p),
        ("topK", request.top_k),
    ):
        if value is not None:
            config[field] = value
    if request.stop:
        config["stopSequences"] = list(request.stop)
    if fmt := request.response_format:
        config["responseMimeType"] = "application/json"
        if fmt.schema is not None:
            config["responseJsonSchema"] = fmt.schema
    if request.reasoning_budget is not None or request.reasoning_effort is not None:
        thinking: dict[str, Any] = {"includeThoughts": True}
        if request.reasoning_budget is not None:
            thinking["thinkingBudget"] = request.reasoning_budget
        if request.reasoning_effort is not None:
            thinking["thinkingLevel"] = request.reasoning_effort.upper()
        config["thinkingConfig"] = thinking
    if config:
        body["generationConfig"] = config
    return body


def _declaration(tool: hub.Tool) -> dict[str, Any]:
    return {
        "name": tool.name,
        **({"description": tool.description} if tool.description is not None else {}),
        "parametersJsonSchema": tool.parameters,
    }


def _content_from_hub(message: hub.Message, names: dict[str, str]) -> dict[str, Any]:
    """One content; a system message in the middle of the conversation is a user turn (Gemini has
    no other place for it)."""
    return {"role": "model" if message.role == "assistant" else "user", "parts": parts_from_hub(message.parts, names)}


def parts_from_hub(parts: tuple[hub.Part, ...] | list[Any], names: dict[str, str]) -> list[dict[str, Any]]:
    """Gemini parts for hub PARTS; NAMES gives a result's function from its call's id. An empty
    Reasoning part's signature goes onto the part after it."""
    rendered: list[dict[str, Any]] = []
    signature: str | None = None
    for part in parts:
        if isinstance(part, hub.Reasoning) and not part.text and part.signature and part.redacted is None:
            if signature:
                rendered.append({"text": "", "thought": True, "thoughtSignature": signature})
            signature = part.signature
            continue
        one = _part_from_hub(part, names)
        if one is None:
            continue
        if signature:
            one["thoughtSignature"], signature = signature, None
        rendered.append(one)
    if signature:
        rendered.append({"text": "", "thought": True, "thoughtSignature": signature})
    return rendered


def _part_from_hub(part: hub.Part, names: dict[str, str]) -> dict[str, Any] | None:
    if isinstance(part, hub.Text):
        return {"text": part.text}
    if isinstance(part, hub.Image):
        return _image_from_hub(part)
    if isinstance(part, hub.ToolCall):
        call = {"name": part.name, "args": arguments_object(part.arguments)}
        return {"functionCall": _with_id(part.id, call)}
    if isinstance(part, hub.ToolResult):
        return {"functionResponse": _with_id(part.call_id, _response_from_hub(part, names))}
    if part.redacted is not None:
        return None  # reasoning another API sent encrypted: nothing Gemini could read
    return {"text": part.text, "thought": True, **({"thoughtSignature": part.signature} if part.signature else {})}


def _with_id(call_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """FIELDS with the call's id first, unless the id was made up here for a call without one."""
    return fields if not call_id or call_id.startswith(MADE_UP_ID) else {"id": call_id, **fields}


def _image_from_hub(image: hub.Image) -> dict[str, Any]:
    if image.url is not None:
        return {"fileData": {**({"mimeType": image.media_type} if image.media_type else {}), "fileUri": image.url}}
    return {"inlineData": {"mimeType": image.media_type or "image/png", "data": image.data or ""}}


def _response_from_hub(result: hub.ToolResult, names: dict[str, str]) -> dict[str, Any]:
    """A functionResponse: its texts (joined) as `output` (`error` when the tool failed; the object
    itself when the text is a JSON object), its images as parts."""
    said = "\n\n".join(p.text for p in result.content if isinstance(p, hub.Text))
    response: dict[str, Any]
    if result.is_error:
        response = {"error": said}
    else:
        value = _json_object(said)
        response = value if value is not None and not _looks_like_output(value) else {"output": said}
    name = names.get(result.call_id) or result.call_id.removeprefix(MADE_UP_ID)
    rendered: dict[str, Any] = {"name": name, "response": response}
    images = [_image_from_hub(p) for p in result.content if isinstance(p, hub.Image)]
    if images:
        rendered["parts"] = images
    return rendered


def _json_object(said: str) -> dict[str, Any] | None:
    try:
        value = loads(said) if said.lstrip().startswith("{") else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _looks_like_output(value: dict[str, Any]) -> bool:
    """Whether VALUE would be read back as a plain `output` or `error` text."""
    return len(value) == 1 and next(iter(value)) in ("output", "error") and isinstance(next(iter(value.values())), str)


def arguments_object(arguments: str) -> Any:
    """Tool arguments as the object Gemini carries; text that is no JSON object is kept under `arguments`."""
    try:
        value = loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


# -- answers -----------------------------------------------------------------------------------


def usage_to_hub(usage: Any) -> hub.Usage:
    """Gemini's usageMetadata (the prompt count includes the cached tokens, the thoughts are
    counted apart from the candidates) as hub Usage."""
    usage = usage if isinstance(usage, dict) else {}

    def count(name: str) -> int:
        value = usage.get(name)
        return value if isinstance(value, int) else 0

    cached = count("cachedContentTokenCount")
    return hub.Usage(
        max(count("promptTokenCount") + count("toolUsePromptTokenCount") - cached, 0),
        count("candidatesTokenCount") + count("thoughtsTokenCount"),
        cached,
    )


def usage_from_hub(usage: hub.Usage) -> dict[str, int]:
    """Hub Usage as Gemini's usageMetadata (the output tokens, reasoning included, as candidates)."""
    metadata = {
        "promptTokenCount": usage.prompt_tokens,
        "candidatesTokenCount": usage.output_tokens,
        "totalTokenCount": usage.prompt_tokens + usage.output_tokens,
    }
    if usage.cache_read_tokens:
        metadata["cachedContentTokenCount"] = usage.cache_read_tokens
    return metadata


def answer_to_hub(response: dict[str, Any]) -> hub.Answer:
    """A GenerateContentResponse as a hub Answer (its first candidate); calls without an id get
    one. Raises ValueError for a shape it cannot read."""
    candidates = response.get("candidates") or [{}]
    candidate = candidates[0] if isinstance(candidates, list) and isinstance(candidates[0], dict) else {}
    try:
        parts = _answer_parts(mapping(candidate.get("content"), "content"))
    except BadRequest as exc:
        raise ValueError(exc.message) from None
    return hub.Answer(
        tuple(parts),
        stop_to_hub(candidate.get("finishReason"), response, any(isinstance(p, hub.ToolCall) for p in parts)),
        usage_to_hub(response.get("usageMetadata")),
        str(response.get("modelVersion", "")),
        str(response.get("responseId", "")),
    )


def _answer_parts(content: dict[str, Any]) -> list[hub.Text | hub.ToolCall | hub.Reasoning]:
    calls = _Calls()
    parts: list[hub.Text | hub.ToolCall | hub.Reasoning] = []
    for index, part in enumerate(array(content.get("parts") or [], "content.parts")):
        for read in calls.part(mapping(part, f"parts[{index}]"), f"parts[{index}]"):
            if isinstance(read, hub.ToolCall) and read.id.startswith(MADE_UP_ID):
                read = hub.ToolCall(new_call_id(), read.name, read.arguments)
            if isinstance(read, hub.Text | hub.ToolCall | hub.Reasoning):
                parts.append(read)
    return parts


def stop_to_hub(reason: Any, response: dict[str, Any], called: bool) -> hub.StopReason:
    """Why the answer stopped: a blocked prompt is a refusal; STOP after function calls is tool_use."""
    feedback = response.get("promptFeedback")
    if reason is None and isinstance(feedback, dict) and feedback.get("blockReason"):
        return "refusal"
    stop = STOP_TO_HUB.get(str(reason), "end")
    return "tool_use" if stop == "end" and called else stop


def new_call_id() -> str:
    """A fresh id for a call Gemini sent without one (unique in the conversation, as Anthropic requires)."""
    return f"{MADE_UP_ID}{secrets.token_hex(8)}"


def answer_from_hub(answer: hub.Answer, model: str = "") -> dict[str, Any]:
    """A hub Answer as a GenerateContentResponse."""
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts_from_hub(answer.parts, {})},
                "finishReason": STOP_FROM_HUB[answer.stop],
                "index": 0,
            }
        ],
        "usageMetadata": usage_from_hub(answer.usage),
        "modelVersion": answer.model or model,
        "responseId": response_id(answer.id),
    }


def response_id(upstream_id: str) -> str:
    """The upstream's answer id, or a new one."""
    return upstream_id or secrets.token_hex(12)


def error_body(status: int, message: str, error_type: str | None = None) -> dict[str, Any]:
    """Google's error object."""
    return {"error": {"code": status, "message": message, "status": STATUS_NAMES.get(status, "INTERNAL")}}
