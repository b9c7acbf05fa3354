"""OpenCode (`opencode-ai`): the OpenAI chat completions API, its title call, and compaction.

OpenCode 1.18 talks to an OpenAI-compatible provider at POST /v1/chat/completions (stream, with
usage). Its title call (system "You are a title generator. You output ONLY a thread title.",
no tools) overlaps the first turn by about a second and expects plain text. Compaction ("You
are a context summarization agent.") uses the main model and must reach it: never faked.
A context overflow is left as the server says it: OpenCode compacts on "exceeds the available
context size".
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, ClassVar

from router.api import (
    Answer,
    Headers,
    Protocol,
    Reply,
    Request,
    RequestView,
    RouterError,
    ServerEvent,
    client_from_user_agent,
    dumps,
    dumps_bytes,
    estimate_tokens,
    expect,
    hookimpl,
    quick_estimate,
)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def message_text(content: Any) -> str:
    """The text of a chat message's content: a string or a list of `text` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


class OpenAIChat(Protocol):
    """Adapter for OpenAI's chat completions, streaming (chunks, then `[DONE]`) and not."""

    name: ClassVar[str] = "openai-chat"
    stop_reasons: ClassVar[tuple[str, ...]] = ("stop", "length")

    def kind_of(self, method: str, path: str) -> str | None:
        """POST /v1/chat/completions."""
        return (
            "chat" if method == "POST" and path.rstrip("/") in ("/v1/chat/completions", "/chat/completions") else None
        )

    def parse(self, kind: str, body: Any, headers: Headers) -> tuple[RequestView, str]:
        """Check the fields the router reads."""
        expect(body, dict, "body", "a JSON object")
        expect(body.get("model"), str, "model", "a string")
        messages = body.get("messages")
        expect(messages, list, "messages", "an array of messages")
        system, user = [], ""
        for index, message in enumerate(messages):
            expect(message, dict, f"messages[{index}]", "an object")
            role = message.get("role")
            expect(role, str, f"messages[{index}].role", "a string")
            if role in ("system", "developer"):
                system.append(message_text(message.get("content")))
            elif role == "user":
                user = message_text(message.get("content"))
        tools = body.get("tools") or []
        expect(tools, list, "tools", "an array")
        names = tuple(str((t.get("function") or {}).get("name", "")) for t in tools if isinstance(t, dict))
        stream = body.get("stream", False)
        expect(stream, bool, "stream", "a boolean")
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if limit is not None:
            expect(limit, int, "max_tokens", "an integer")
        fmt = body.get("response_format")
        structured = isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")
        schema = (fmt.get("json_schema") or {}).get("schema") if structured and isinstance(fmt, dict) else None
        view = RequestView(
            model=body["model"],
            system="\n".join(system),
            user=user,
            tool_names=names,
            stream=stream,
            max_tokens=limit,
            json_requested=structured,
            output_schema=schema if isinstance(schema, dict) else None,
        )
        return view, client_from_user_agent(headers, "openai")

    def _error(self, error: RouterError) -> tuple[int, dict[str, Any]]:
        status = 503 if error.status == 529 else error.status  # 529 is Anthropic's; OpenAI clients retry 503
        kind = ERROR_TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")
        return status, {"error": {"message": error.message, "type": kind, "param": None, "code": None}}

    def error_answer(self, error: RouterError, request_id: str) -> Answer:
        """`{"error": {"message", "type", "param", "code"}}`."""
        status, body = self._error(error)
        return Answer.json(dumps_bytes(body), status, (("x-request-id", request_id),))

    def sse_error_event(self, error: RouterError) -> bytes:
        """An error chunk, as OpenAI-compatible servers send mid-stream."""
        return f"data: {dumps(self._error(error)[1])}\n\n".encode()

    def stream_complete(self, last_event: ServerEvent) -> bool:
        """`data: [DONE]` ends a chat completions stream."""
        return last_event.data.strip() == "[DONE]"

    def sse_keepalive_event(self) -> bytes:
        """An SSE comment line: ignored by every SSE parser."""
        return b": ping\n\n"

    def _usage(self, request: Request, text: str) -> dict[str, int]:
        prompt, completion = quick_estimate(len(request.raw)), estimate_tokens(text)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def reply(self, request: Request, reply: Reply) -> Answer:
        """A chat.completion, or chunks then `data: [DONE]`."""
        ident, created, model = (
            f"chatcmpl-ghost{secrets.token_hex(8)}",
            int(time.time()),
            request.view.model or "ghost-router",
        )
        if not request.view.stream:
            return Answer.json(
                dumps_bytes(
                    {
                        "id": ident,
                        "object": "chat.completion",
                        "created": created,
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": reply.text},
                                "finish_reason": reply.stop_reason,
                                "logprobs": None,
                            }
                        ],
                        "usage": self._usage(request, reply.text),
                    }
                )
            )

        def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> str:
            data = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
                **extra,
            }
            return f"data: {dumps(data)}\n\n"

        parts = [
            chunk({"role": "assistant", "content": ""}, None),
            chunk({"content": reply.text}, None),
            chunk({}, reply.stop_reason),
        ]
        if ((request.body or {}).get("stream_options") or {}).get("include_usage"):
            usage = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": self._usage(request, reply.text),
            }
            parts.append(f"data: {dumps(usage)}\n\n")
        parts.append("data: [DONE]\n\n")
        return Answer.events("".join(parts).encode())

    def text_for_counting(self, request: Request) -> str:
        """Every message's text, tool calls and the tool definitions."""
        body = request.body or {}
        parts = [
            message_text(m.get("content")) + "".join(dumps(c) for c in m.get("tool_calls") or [])
            for m in body.get("messages", [])
            if isinstance(m, dict)
        ]
        parts += [dumps(t) for t in body.get("tools") or []]
        return "\n".join(p for p in parts if p)

    def cap_max_tokens(self, doc: dict[str, Any], cap: int) -> bool:
        """Lower max_tokens / max_completion_tokens to CAP."""
        changed = False
        for field in ("max_tokens", "max_completion_tokens"):
            if isinstance(doc.get(field), int) and doc[field] > cap:
                doc[field] = cap
                changed = True
        return changed

    def fold_system_messages(self, doc: dict[str, Any]) -> bool:
        """Append each system message after the first to the user message before it (or after it)."""
        messages = doc.get("messages")
        if not isinstance(messages, list):
            return False
        late = [
            i
            for i, m in enumerate(messages)
            if isinstance(m, dict) and m.get("role") in ("system", "developer") and i > 0
        ]
        if not late:
            return False
        folded: list[Any] = []
        pending: list[str] = []
        for index, message in enumerate(messages):
            if index in late:
                text = message_text(message.get("content"))
                if folded and folded[-1].get("role") == "user":
                    folded[-1] = {**folded[-1], "content": f"{message_text(folded[-1].get('content'))}\n\n{text}"}
                else:
                    pending.append(text)
                continue
            if pending and message.get("role") == "user":
                message = {**message, "content": "\n\n".join([*pending, message_text(message.get("content"))])}
                pending = []
            folded.append(message)
        if pending:
            folded.insert(0, {"role": "system", "content": "\n\n".join(pending)})
        doc["messages"] = folded
        return True


RULES = """
- name: opencode-title
  description: OpenCode's title call, which would take the slot beside the first turn; plain text expected
  match: {client: opencode, system: "You are a title generator"}
  action: {fake: {title_from_prompt: true}}
- name: opencode-compaction
  description: OpenCode's compaction needs the real model; it is forwarded ahead of other traffic
  match: {client: opencode, system: "You are a context summarization agent"}
  action: {forward: {priority: user}}
"""


@hookimpl
def register_protocols(register: Callable[[Protocol], None]) -> None:
    """The OpenAI chat completions adapter."""
    register(OpenAIChat())


@hookimpl
def register_rules(register: Callable[[str], None]) -> None:
    """Title fake and compaction forward for OpenCode (over either API it speaks)."""
    register(RULES)
