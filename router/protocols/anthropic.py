"""The Anthropic Messages API (what Claude Code speaks): /v1/messages and /v1/messages/count_tokens."""

from __future__ import annotations

import secrets
from collections import deque
from typing import Any, ClassVar

import msgspec
from aiohttp import web
from multidict import CIMultiDictProxy

from router.errors import BadRequest, RouterError
from router.exchange import Exchange, RequestView
from router.jsonutil import dumps
from router.lazybody import LazyBody
from router.protocols.base import Protocol, Reply, client_from_user_agent, expect, send_event_stream
from router.tokens import estimate_tokens, quick_estimate

# https://docs.anthropic.com/en/api/errors
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

_PATHS = {"/v1/messages": "messages", "/v1/messages/count_tokens": "count_tokens"}


def error_type_for(status: int) -> str:
    """The Anthropic error type for an HTTP status."""
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text blocks of a block list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            block["text"] for block in content if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
        )
    return ""


class _MessageOutline(msgspec.Struct):
    """What the view reads of a message: its role, and its content as text or undecoded blocks."""

    role: str
    content: str | list[msgspec.Raw]


class _BlockOutline(msgspec.Struct):
    """What the view reads of a content block (a tool result's content is skimmed, not decoded)."""

    type: Any = None
    text: Any = ""


class _ToolOutline(msgspec.Struct):
    """What the view reads of a tool: its name (the schema is skimmed, not decoded)."""

    name: Any = ""


_MESSAGE_OUTLINES = msgspec.json.Decoder(list[_MessageOutline])
_BLOCK_OUTLINE = msgspec.json.Decoder(_BlockOutline)
_TOOL_OUTLINES = msgspec.json.Decoder(list[_ToolOutline] | None)


def _roles_and_contents(body: Any) -> list[tuple[str, Any]]:
    """Each message's role and content, checked; from a LazyBody the content of a block list
    stays undecoded (`_text_of` reads it). A message the outline refuses is found by the full check."""
    if isinstance(body, LazyBody) and not body.decoded("messages"):
        try:
            return [(message.role, message.content) for message in body.outline("messages", _MESSAGE_OUTLINES)]
        except msgspec.ValidationError:
            pass  # decoded below, where the check names the bad message
    messages = body["messages"]
    expect(messages, list, "messages", "an array of messages")
    pairs = []
    for index, message in enumerate(messages):
        # checked inline, the error text made only for a bad message: this loop runs over every
        # message of every request that is not outlined
        if not isinstance(message, dict) or not isinstance(role := message.get("role"), str) or not isinstance(content := message.get("content"), (str, list)):
            _bad_message(index, message)
        pairs.append((role, content))
    return pairs


def _text_of(content: Any) -> str:
    """content_text of a decoded content, or of an outlined one (a list of undecoded blocks)."""
    if not (isinstance(content, list) and content and isinstance(content[0], msgspec.Raw)):
        return content_text(content)
    texts = []
    for piece in content:
        try:
            block = _BLOCK_OUTLINE.decode(piece)
        except msgspec.ValidationError:
            continue  # not an object: no text, as in content_text
        if block.type == "text" and isinstance(block.text, str):
            texts.append(block.text)
    return "\n".join(texts)


class _RecentToolNames:
    """The names from the last few distinct `tools` fields, found by their bytes. An agent sends the
    same tool definitions with every turn (Claude Code: 20-60 KB, the same bytes turn after turn,
    subagents their own set); comparing bytes (~1 us for 20 KB) replaces skimming them (~8 us)."""

    KEPT = 8
    LARGEST = 1 << 20  # bytes; larger tool lists are outlined every time

    def __init__(self) -> None:
        self._entries: deque[tuple[bytes, tuple[str, ...]]] = deque(maxlen=self.KEPT)

    def names(self, raw: bytes) -> tuple[str, ...]:
        """The names of tools field RAW (msgspec.ValidationError when it is not a list of tools)."""
        for seen, names in self._entries:
            if seen == raw:
                return names
        names = tuple([str(tool.name) for tool in _TOOL_OUTLINES.decode(raw) or ()])
        if len(raw) <= self.LARGEST:
            self._entries.appendleft((raw, names))
        return names


_RECENT_TOOL_NAMES = _RecentToolNames()


def _tool_names(body: Any) -> tuple[str, ...]:
    """The declared tools' names, checked; from a LazyBody the schemas are skimmed, not decoded
    (nor skimmed again when the same tools came recently)."""
    if isinstance(body, LazyBody) and "tools" in body and not body.decoded("tools"):
        try:
            return _RECENT_TOOL_NAMES.names(body.undecoded("tools"))
        except msgspec.ValidationError:
            pass  # decoded below, where the check names the bad tool
    tools = body.get("tools") or []
    expect(tools, list, "tools", "an array of tools")
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            expect(tool, dict, f"tools.{index}", "an object")
    return tuple(str(tool.get("name", "")) for tool in tools)


def _bad_message(index: int, message: Any) -> None:
    """Raise the BadRequest that names what is wrong with message INDEX."""
    expect(message, dict, f"messages.{index}", "an object with role and content")
    expect(message.get("role"), str, f"messages.{index}.role", "a string")
    expect(message.get("content"), (str, list), f"messages.{index}.content", "a string or an array of content blocks")


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {dumps(data)}\n\n"


class AnthropicMessages(Protocol):
    """Adapter for Anthropic's Messages API, streaming and not, plus token counting."""

    name: ClassVar[str] = "anthropic"
    lazy_body: ClassVar[bool] = True
    stop_reasons: ClassVar[tuple[str, ...]] = ("end_turn", "max_tokens", "stop_sequence", "refusal")

    def kind_of(self, method: str, path: str) -> str | None:
        """Messages and count_tokens, POST only."""
        return _PATHS.get(path.rstrip("/")) if method == "POST" else None

    def parse(self, kind: str, body: Any, headers: CIMultiDictProxy[str]) -> tuple[RequestView, str]:
        """Check the fields the router reads and build the matcher view. From a LazyBody, messages
        and tools are only outlined (roles, the last user text, tool names), not decoded."""
        expect(body, (dict, LazyBody), "body", "a JSON object")
        if "model" not in body:
            raise BadRequest("model: field required")
        expect(body["model"], str, "model", "a string")
        if "messages" not in body:
            raise BadRequest("messages: field required")
        system_parts = [self._system_text(body.get("system"))]
        last_user = None
        for role, content in _roles_and_contents(body):
            if role == "system":
                system_parts.append(_text_of(content))
            elif role == "user":
                last_user = content
        user = _text_of(last_user) if last_user is not None else ""  # only the last one is matched on
        max_tokens = body.get("max_tokens")
        if kind == "messages":
            if max_tokens is None:
                raise BadRequest("max_tokens: field required")
            expect(max_tokens, int, "max_tokens", "an integer")
        stream = body.get("stream", False)
        expect(stream, bool, "stream", "a boolean")
        view = RequestView(
            model=body["model"],
            system="\n".join([part for part in system_parts if part]),
            user=user,
            tool_names=_tool_names(body),
            stream=stream,
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        )
        return view, client_from_user_agent(headers, self.name)

    @staticmethod
    def _system_text(system: Any) -> str:
        if system is None:
            return ""
        expect(system, (str, list), "system", "a string or an array of text blocks")
        return content_text(system)

    # -- answers -------------------------------------------------------------------------------

    def error_body(self, error: RouterError) -> dict[str, Any]:
        """The JSON error object Anthropic's API returns."""
        return {"type": "error", "error": {"type": error.error_type or error_type_for(error.status), "message": error.message}}

    def error_response(self, error: RouterError, request_id: str) -> web.Response:
        """An error in Anthropic's shape with a request-id header."""
        body = self.error_body(error)
        body["request_id"] = request_id
        return web.Response(
            status=error.status, text=dumps(body), content_type="application/json", headers={"request-id": request_id}
        )

    def sse_error_event(self, error: RouterError) -> bytes:
        """An `error` event, as the API sends when a stream fails after it started."""
        return _sse("error", self.error_body(error)).encode()

    def sse_keepalive_event(self) -> bytes:
        """A `ping` event: legal anywhere in an Anthropic stream."""
        return b'event: ping\ndata: {"type": "ping"}\n\n'

    def context_overflow(self, prompt_tokens: int | None, context: int | None) -> RouterError:
        """Anthropic's own wording, which Claude Code recognises and answers by compacting."""
        sizes = f": {prompt_tokens} tokens > {context} maximum" if prompt_tokens and context else ""
        return RouterError(400, f"prompt is too long{sizes}", "invalid_request_error")

    def wants_json(self, ex: Exchange) -> bool:
        """True when output_config.format (or the older output_format) asks for a JSON schema."""
        body = ex.fields or {}  # only these fields are decoded
        fmt = (body.get("output_config") or {}).get("format") or body.get("output_format") or {}
        return isinstance(fmt, dict) and fmt.get("type") == "json_schema"

    def output_schema(self, ex: Exchange) -> dict[str, Any] | None:
        """output_config.format.schema (or output_format.schema)."""
        body = ex.fields or {}  # only these fields are decoded
        fmt = (body.get("output_config") or {}).get("format") or body.get("output_format") or {}
        return fmt.get("schema") if isinstance(fmt, dict) and isinstance(fmt.get("schema"), dict) else None

    def _message(self, ex: Exchange, reply: Reply, streaming: bool) -> dict[str, Any]:
        return {
            "id": f"msg_ghost{secrets.token_hex(10)}",
            "type": "message",
            "role": "assistant",
            "model": ex.view.model or "ghost-router",
            "content": [] if streaming else [{"type": "text", "text": reply.text}],
            "stop_reason": None if streaming else reply.stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": quick_estimate(len(ex.raw)),
                "output_tokens": 1 if streaming else estimate_tokens(reply.text),
            },
        }

    async def send_reply(self, ex: Exchange, reply: Reply) -> web.StreamResponse:
        """A complete message, or the full SSE event sequence when the request streams."""
        headers = {"request-id": f"req_ghost{ex.id}"}
        if not ex.view.stream:
            return web.Response(text=dumps(self._message(ex, reply, False)), content_type="application/json", headers=headers)
        events = "".join(
            [
                _sse("message_start", {"type": "message_start", "message": self._message(ex, reply, True)}),
                _sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                _sse("ping", {"type": "ping"}),
                _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": reply.text}}),
                _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
                _sse(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                        "usage": {"output_tokens": estimate_tokens(reply.text)},
                    },
                ),
                _sse("message_stop", {"type": "message_stop"}),
            ]
        ).encode()
        return await send_event_stream(ex, events, headers)

    def count_response(self, ex: Exchange, tokens: int) -> web.Response:
        """`{"input_tokens": N}` as count_tokens returns it."""
        return web.Response(text=dumps({"input_tokens": tokens}), content_type="application/json")

    def text_for_counting(self, ex: Exchange) -> str:
        """System, every message block (text, tool calls and results) and the tool definitions."""
        body = ex.body or {}
        parts = [ex.view.system]
        for message in body.get("messages", []):
            parts.append(_all_text(message.get("content")))
        for tool in body.get("tools") or []:
            parts.append(dumps(tool))
        return "\n".join(part for part in parts if part)

    # -- rewrites ------------------------------------------------------------------------------

    def cap_max_tokens(self, body: dict[str, Any], cap: int) -> bool:
        """Lower max_tokens to CAP."""
        if isinstance(body.get("max_tokens"), int) and body["max_tokens"] > cap:
            body["max_tokens"] = cap
            return True
        return False

    def drop_system_blocks(self, body: dict[str, Any], prefix: str) -> bool:
        """Remove system blocks (or leading system lines) starting with PREFIX."""
        system = body.get("system")
        if isinstance(system, list):
            kept = [b for b in system if not (isinstance(b, dict) and str(b.get("text", "")).startswith(prefix))]
            if len(kept) != len(system):
                body["system"] = kept
                return True
        elif isinstance(system, str) and system.startswith(prefix):
            body["system"] = system.split("\n", 1)[1] if "\n" in system else ""
            return True
        return False

    def fold_system_messages(self, body: dict[str, Any]) -> bool:
        """Move each role:"system" message's text into the user turn before it (or after it)."""
        messages = body.get("messages")
        if not isinstance(messages, list) or not any(m.get("role") == "system" for m in messages if isinstance(m, dict)):
            return False
        folded: list[dict[str, Any]] = []
        pending: list[dict[str, Any]] = []  # system text waiting for the next user turn
        for message in messages:
            if message.get("role") == "system":
                block = {"type": "text", "text": content_text(message.get("content"))}
                if folded and folded[-1].get("role") == "user":
                    folded[-1] = _with_blocks(folded[-1], after=[block])
                else:
                    pending.append(block)
                continue
            if pending and message.get("role") == "user":
                message = _with_blocks(message, before=pending)
                pending = []
            folded.append(message)
        if pending:  # no user turn to carry it: keep it as top-level system text
            extra = "\n".join(b["text"] for b in pending)
            system = body.get("system")
            if isinstance(system, list):
                body["system"] = [*system, {"type": "text", "text": extra}]
            else:
                body["system"] = f"{system}\n{extra}" if system else extra
        body["messages"] = folded
        return True


def _blocks(content: Any) -> list[Any]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])


def _with_blocks(message: dict[str, Any], before: list[Any] = (), after: list[Any] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    return {**message, "content": [*before, *_blocks(message.get("content")), *after]}


def _all_text(content: Any) -> str:
    """Every piece of text in a content value, including tool calls and tool results."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append(block.get("text", ""))
        elif kind == "tool_use":
            parts.append(f"{block.get('name', '')} {dumps(block.get('input', {}))}")
        elif kind == "tool_result":
            parts.append(_all_text(block.get("content")))
        elif kind in ("thinking", "redacted_thinking"):
            parts.append(block.get("thinking", ""))
    return "\n".join(parts)
