"""Codex CLI (`@openai/codex`): the OpenAI Responses API and its request classification.

Codex 0.169 speaks only POST /v1/responses (streamed). Every request carries the header
`x-codex-turn-metadata` (JSON) whose `request_kind` (turn, compaction) and `thread_source`
(user, thread_title, guardian_review) say what it is. The TUI's title call expects JSON
`{"title": "..."}` (1-36 characters, via `text.format`) and runs beside the first turn.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any, ClassVar

from router.api import (
    Answer,
    BadRequest,
    Headers,
    MatcherSpec,
    Protocol,
    Reply,
    Request,
    RequestView,
    RouterError,
    ServerEvent,
    Test,
    client_from_user_agent,
    compile_glob,
    dumps,
    dumps_bytes,
    estimate_tokens,
    hookimpl,
    quick_estimate,
)

METADATA_HEADER = "x-codex-turn-metadata"
CONTEXT_EXCEEDED = "context_length_exceeded"  # the error code on which Codex compacts


def item_text(content: Any) -> str:
    """Text of a Responses input item's content: a string or input_text/output_text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and p.get("type") in ("input_text", "output_text", "text")
        )
    return ""


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {dumps({'type': event, **data})}\n\n"


class OpenAIResponses(Protocol):
    """Adapter for OpenAI's Responses API, streaming (typed events) and not."""

    name: ClassVar[str] = "openai-responses"
    stop_reasons: ClassVar[tuple[str, ...]] = ("completed",)

    def kind_of(self, method: str, path: str) -> str | None:
        """POST /v1/responses."""
        return "responses" if method == "POST" and path.rstrip("/") in ("/v1/responses", "/responses") else None

    def parse(self, kind: str, body: Any, headers: Headers) -> tuple[RequestView, str]:
        """Instructions and system/developer items are the system text; the last user item is the user text."""
        if not isinstance(body, dict):
            raise BadRequest("body: expected a JSON object")
        if not isinstance(body.get("model"), str):
            raise BadRequest("model: expected a string")
        items = body.get("input", [])
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        if not isinstance(items, list):
            raise BadRequest("input: expected a string or an array of items")
        system = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
        user = ""
        for item in items:
            if not isinstance(item, dict):
                raise BadRequest("input: every item must be an object")
            if item.get("role") in ("system", "developer"):
                system.append(item_text(item.get("content")))
            elif item.get("role") == "user":
                user = item_text(item.get("content"))
        tools = body.get("tools") or []
        if not isinstance(tools, list):
            raise BadRequest("tools: expected an array")
        names = tuple(str(t.get("name", t.get("type", ""))) for t in tools if isinstance(t, dict))
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise BadRequest("stream: expected a boolean")
        limit = body.get("max_output_tokens")
        fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
        structured = isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object")
        schema = fmt.get("schema") if structured and isinstance(fmt, dict) else None
        view = RequestView(
            model=body["model"],
            system="\n".join(system),
            user=user,
            tool_names=names,
            stream=stream,
            max_tokens=limit if isinstance(limit, int) else None,
            json_requested=structured,
            output_schema=schema if isinstance(schema, dict) else None,
        )
        return view, client_from_user_agent(headers, "openai")

    def _error(self, error: RouterError) -> tuple[int, dict[str, Any]]:
        status = 503 if error.status == 529 else error.status
        kind = "server_error" if status >= 500 else "invalid_request_error"
        return status, {"error": {"message": error.message, "type": kind, "param": None, "code": error.error_type}}

    def context_overflow(self, prompt_tokens: int | None, context: int | None) -> RouterError:
        """OpenAI's code `context_length_exceeded`, on which Codex compacts its context."""
        sizes = f" ({prompt_tokens} tokens > {context} maximum)" if prompt_tokens and context else ""
        return RouterError(400, f"Your input exceeds the context window of this model{sizes}.", CONTEXT_EXCEEDED)

    def error_answer(self, error: RouterError, request_id: str) -> Answer:
        """`{"error": {...}}` as the Responses API returns it."""
        status, body = self._error(error)
        return Answer.json(dumps_bytes(body), status, (("x-request-id", request_id),))

    def sse_error_event(self, error: RouterError) -> bytes:
        """A `response.failed` event: Codex reports it and ends the turn."""
        failed = {
            "response": {
                "id": f"resp_ghost{secrets.token_hex(8)}",
                "object": "response",
                "status": "failed",
                "error": {"code": error.error_type or "server_error", "message": error.message},
                "output": [],
            }
        }
        return _sse("response.failed", failed).encode()

    def stream_complete(self, last_event: ServerEvent) -> bool:
        """`response.completed`, `response.incomplete` or `response.failed` ends a Responses stream."""
        return last_event.event in ("response.completed", "response.incomplete", "response.failed")

    def sse_keepalive_event(self) -> bytes:
        """An SSE comment line."""
        return b": ping\n\n"

    @staticmethod
    def _response(request: Request, ids: tuple[str, str], text: str | None, status: str) -> dict[str, Any]:
        response_id, item_id = ids
        output = []
        if text is not None:
            output = [
                {
                    "type": "message",
                    "id": item_id,
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            ]
        prompt, completion = quick_estimate(len(request.raw)), estimate_tokens(text or "")
        return {
            "id": response_id,
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "model": request.view.model,
            "output": output,
            "error": None,
            "incomplete_details": None,
            "usage": {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": completion,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + completion,
            },
        }

    def reply(self, request: Request, reply: Reply) -> Answer:
        """A response object, or the typed event sequence ending in `response.completed`."""
        ids = (f"resp_ghost{secrets.token_hex(8)}", f"msg_ghost{secrets.token_hex(8)}")
        if not request.view.stream:
            return Answer.json(dumps_bytes(self._response(request, ids, reply.text, "completed")))
        started = {**self._response(request, ids, None, "in_progress"), "usage": None}
        item = {"type": "message", "id": ids[1], "status": "in_progress", "role": "assistant", "content": []}
        part = {"type": "output_text", "text": "", "annotations": []}
        done_part = {**part, "text": reply.text}
        where = {"item_id": ids[1], "output_index": 0, "content_index": 0}
        events: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"response": started}),
            ("response.in_progress", {"response": started}),
            ("response.output_item.added", {"output_index": 0, "item": item}),
            ("response.content_part.added", {**where, "part": part}),
            ("response.output_text.delta", {**where, "delta": reply.text}),
            ("response.output_text.done", {**where, "text": reply.text}),
            ("response.content_part.done", {**where, "part": done_part}),
            (
                "response.output_item.done",
                {"output_index": 0, "item": {**item, "status": "completed", "content": [done_part]}},
            ),
            ("response.completed", {"response": self._response(request, ids, reply.text, "completed")}),
        ]
        payload = "".join(_sse(name, {**data, "sequence_number": number}) for number, (name, data) in enumerate(events))
        return Answer.events(payload.encode())

    def text_for_counting(self, request: Request) -> str:
        """Instructions, every input item and the tool definitions."""
        body = request.body or {}
        parts = [request.view.system] + [
            item_text(i.get("content"))
            for i in body.get("input", [])
            if isinstance(i, dict) and i.get("role") == "user"
        ]
        parts += [dumps(t) for t in body.get("tools") or []]
        return "\n".join(p for p in parts if p)

    def cap_max_tokens(self, doc: dict[str, Any], cap: int) -> bool:
        """Set max_output_tokens to at most CAP."""
        if isinstance(doc.get("max_output_tokens"), int) and doc["max_output_tokens"] <= cap:
            return False
        doc["max_output_tokens"] = cap
        return True


def codex_turn(value: dict[str, str]) -> Test:
    """Fields of the `x-codex-turn-metadata` header (or body client_metadata) against globs."""
    globs = {field: compile_glob(pattern) for field, pattern in value.items()}

    def test(request: Request) -> bool:
        raw = request.headers.get(METADATA_HEADER)
        if raw is None and isinstance(request.body, dict):
            metadata = request.body.get("client_metadata")
            raw = metadata.get(METADATA_HEADER) if isinstance(metadata, dict) else None
        if not raw:  # no metadata: no field can match (every codex_turn names at least one)
            return False
        try:
            metadata = json.loads(raw)
        except ValueError:
            return False
        return isinstance(metadata, dict) and all(
            isinstance(metadata.get(f), str) and g.match(metadata[f]) for f, g in globs.items()
        )

    return test


RULES = """
- name: codex-title
  description: the TUI's thread title, beside the first turn; JSON {"title"} of at most 36 characters
  match: {client: codex, codex_turn: {thread_source: thread_title}}
  action: {fake: {title_from_prompt: true}}
- name: codex-guardian
  description: Codex's own safety reviewer; never answered here, queued behind user turns
  match: {client: codex, codex_turn: {thread_source: guardian_review}}
  action: {forward: {priority: background}}
- name: codex-compaction
  description: compaction needs the real model
  match: {client: codex, codex_turn: {request_kind: compaction}}
  action: {forward: {priority: user}}
"""


@hookimpl
def register_protocols(register: Callable[[Protocol], None]) -> None:
    """The Responses API adapter."""
    register(OpenAIResponses())


@hookimpl
def register_matchers(register: Callable[[MatcherSpec], None]) -> None:
    """`codex_turn: {field: glob}` over x-codex-turn-metadata."""
    schema = {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "minProperties": 1,
        "description": "{request_kind|thread_source|...: glob}",
    }
    register(MatcherSpec("codex_turn", schema, codex_turn, "fields of Codex's x-codex-turn-metadata header"))


@hookimpl
def register_rules(register: Callable[[str], None]) -> None:
    """Title fake, guardian and compaction forwards."""
    register(RULES)
