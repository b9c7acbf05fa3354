"""The Anthropic Messages API (what Claude Code speaks): /v1/messages and /v1/messages/count_tokens."""

from __future__ import annotations

import secrets
from typing import Any, ClassVar

from multidict import CIMultiDictProxy

from router.answers import Answer
from router.errors import BadRequest, RouterError
from router.jsonutil import dumps, dumps_bytes
from router.protocols import prefix
from router.protocols.base import Protocol, Reply, Request, RequestView, client_from_user_agent, expect, sse
from router.tokens import estimate_tokens, quick_estimate
from router.translate.sse import ServerEvent

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
            block["text"]
            for block in content
            if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
        )
    return ""


def _bad_message(index: int, message: Any) -> None:
    """Raise the BadRequest that names what is wrong with message INDEX."""
    expect(message, dict, f"messages.{index}", "an object with role and content")
    expect(message.get("role"), str, f"messages.{index}.role", "a string")
    expect(message.get("content"), (str, list), f"messages.{index}.content", "a string or an array of content blocks")


class AnthropicMessages(Protocol):
    """Adapter for Anthropic's Messages API, streaming and not, plus token counting."""

    name: ClassVar[str] = "anthropic"
    lazy_body: ClassVar[bool] = True
    stop_reasons: ClassVar[tuple[str, ...]] = ("end_turn", "max_tokens", "stop_sequence", "refusal")

    def kind_of(self, method: str, path: str) -> str | None:
        """Messages and count_tokens, POST only."""
        return _PATHS.get(path.rstrip("/")) if method == "POST" else None

    def parse(self, kind: str, body: Any, headers: CIMultiDictProxy[str]) -> tuple[RequestView, str]:
        """Check the fields the router reads and build the matcher view."""
        expect(body, dict, "body", "a JSON object")
        if "model" not in body:
            raise BadRequest("model: field required")
        expect(body["model"], str, "model", "a string")
        if "messages" not in body:
            raise BadRequest("messages: field required")
        messages = body["messages"]
        expect(messages, list, "messages", "an array of messages")
        system_parts = [self._system_text(body.get("system"))]
        last_user = None
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                _bad_message(index, message)
            content = message.get("content")
            if not isinstance(content, (str, list)):
                _bad_message(index, message)
            if message["role"] == "system":
                system_parts.append(content_text(content))
            elif message["role"] == "user":
                last_user = content
        max_tokens = body.get("max_tokens")
        if kind == "messages":
            if max_tokens is None:
                raise BadRequest("max_tokens: field required")
            expect(max_tokens, int, "max_tokens", "an integer")
        stream = body.get("stream", False)
        expect(stream, bool, "stream", "a boolean")
        tools = body.get("tools") or []
        expect(tools, list, "tools", "an array of tools")
        for index, tool in enumerate(tools):
            expect(tool, dict, f"tools.{index}", "an object")
        fmt = (body.get("output_config") or {}).get("format") if isinstance(body.get("output_config"), dict) else None
        fmt = fmt or body.get("output_format")
        structured = isinstance(fmt, dict) and fmt.get("type") == "json_schema"
        view = RequestView(
            model=body["model"],
            system="\n".join([part for part in system_parts if part]),
            user=content_text(last_user) if last_user is not None else "",  # only the last one is matched on
            tool_names=tuple(str(tool.get("name", "")) for tool in tools),
            stream=stream,
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            json_requested=structured,
            output_schema=fmt["schema"] if structured and isinstance(fmt.get("schema"), dict) else None,
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
        return {
            "type": "error",
            "error": {"type": error.error_type or error_type_for(error.status), "message": error.message},
        }

    def error_answer(self, error: RouterError, request_id: str) -> Answer:
        """An error in Anthropic's shape with a request-id header."""
        body = {**self.error_body(error), "request_id": request_id}
        return Answer.json(dumps_bytes(body), error.status, (("request-id", request_id),))

    def sse_error_event(self, error: RouterError) -> bytes:
        """An `error` event, as the API sends when a stream fails after it started."""
        return sse("error", self.error_body(error)).encode()

    def stream_complete(self, last_event: ServerEvent) -> bool:
        """`message_stop` ends a Messages stream."""
        return last_event.event == "message_stop"

    def sse_keepalive_event(self) -> bytes:
        """A `ping` event: legal anywhere in an Anthropic stream."""
        return b'event: ping\ndata: {"type": "ping"}\n\n'

    def context_overflow(self, prompt_tokens: int | None, context: int | None) -> RouterError:
        """Anthropic's own wording, which Claude Code recognises and answers by compacting."""
        sizes = f": {prompt_tokens} tokens > {context} maximum" if prompt_tokens and context else ""
        return RouterError(400, f"prompt is too long{sizes}", "invalid_request_error")

    def _message(self, request: Request, reply: Reply, streaming: bool) -> dict[str, Any]:
        return {
            "id": f"msg_ghost{secrets.token_hex(10)}",
            "type": "message",
            "role": "assistant",
            "model": request.view.model or "ghost-router",
            "content": [] if streaming else [{"type": "text", "text": reply.text}],
            "stop_reason": None if streaming else reply.stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": quick_estimate(len(request.raw)),
                "output_tokens": 1 if streaming else estimate_tokens(reply.text),
            },
        }

    def reply(self, request: Request, reply: Reply) -> Answer:
        """A complete message, or the full SSE event sequence when the request streams."""
        headers = (("request-id", f"req_ghost{request.id}"),)
        if not request.view.stream:
            return Answer.json(dumps_bytes(self._message(request, reply, False)), headers=headers)
        events = "".join(
            [
                sse("message_start", {"type": "message_start", "message": self._message(request, reply, True)}),
                sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                ),
                sse("ping", {"type": "ping"}),
                sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": reply.text}},
                ),
                sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
                sse(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                        "usage": {"output_tokens": estimate_tokens(reply.text)},
                    },
                ),
                sse("message_stop", {"type": "message_stop"}),
            ]
        ).encode()
        return Answer.events(events, headers)

    def count_answer(self, request: Request, tokens: int) -> Answer:
        """`{"input_tokens": N}` as count_tokens returns it."""
        return Answer.json(dumps_bytes({"input_tokens": tokens}))

    def text_for_counting(self, request: Request) -> str:
        """System, every message block (text, tool calls and results) and the tool definitions."""
        body = request.body or {}
        parts = [request.view.system]
        for message in body.get("messages", []):
            parts.append(_all_text(message.get("content")))
        for tool in body.get("tools") or []:
            parts.append(dumps(tool))
        return "\n".join(part for part in parts if part)

    # -- rewrites ------------------------------------------------------------------------------

    def cap_max_tokens(self, doc: dict[str, Any], cap: int) -> bool:
        """Lower max_tokens to CAP."""
        if isinstance(doc.get("max_tokens"), int) and doc["max_tokens"] > cap:
            doc["max_tokens"] = cap
            return True
        return False

    def drop_system_blocks(self, doc: dict[str, Any], prefix: str) -> bool:
        """Remove system blocks (or leading system lines) starting with PREFIX."""
        system = doc.get("system")
        if isinstance(system, list):
            kept = [b for b in system if not (isinstance(b, dict) and str(b.get("text", "")).startswith(prefix))]
            if len(kept) != len(system):
                doc["system"] = kept
                return True
        elif isinstance(system, str) and system.startswith(prefix):
            doc["system"] = system.split("\n", 1)[1] if "\n" in system else ""
            return True
        return False

    def stable_prefix(self, doc: dict[str, Any], environment_first: bool, project_context_last: bool) -> int:
        """Claude Code's environment message ahead of the user's first words; its per-project and
        per-day text after the stable text (router/protocols/prefix.py)."""
        return prefix.stable_prefix(doc, environment_first, project_context_last)

    def fold_system_messages(self, doc: dict[str, Any]) -> bool:
        """Move each role:"system" message's text into the user turn before it (or after it)."""
        messages = doc.get("messages")
        if not isinstance(messages, list) or not any(
            m.get("role") == "system" for m in messages if isinstance(m, dict)
        ):
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
            system = doc.get("system")
            if isinstance(system, list):
                doc["system"] = [*system, {"type": "text", "text": extra}]
            else:
                doc["system"] = f"{system}\n{extra}" if system else extra
        doc["messages"] = folded
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
            parts.append(block.get("text"))
        elif kind == "tool_use":
            parts.append(f"{block.get('name', '')} {dumps(block.get('input', {}))}")
        elif kind == "tool_result":
            parts.append(_all_text(block.get("content")))
        elif kind in ("thinking", "redacted_thinking"):
            parts.append(block.get("thinking"))
    return "\n".join(part for part in parts if isinstance(part, str))  # a mistyped field counts as no text
