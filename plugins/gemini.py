"""Gemini CLI (`@google/gemini-cli`): the Gemini API, and its background calls by model name.

Gemini CLI 0.61 calls POST /v1beta/models/<model>:streamGenerateContent?alt=sse for turns and
:generateContent for background work. Even with `-m local-model`, its background calls (the
model router's complexity classifier, session summary, next-speaker check, loop detection,
compression) name hard-coded Gemini models in the URL, and carry no tools (turns do: in the
default `auto` model mode turns name Gemini models too). Structured ones (responseMimeType
application/json with a schema) only have to parse: they are answered here from their schema.
The rest (compression among them) go to the local model behind the user's turns.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any, ClassVar

from router.api import (
    Answer,
    BadRequest,
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
    hookimpl,
    quick_estimate,
)

_PATH = re.compile(r"^/v1(?:beta|alpha)?/models/([^/:]+):(generateContent|streamGenerateContent|countTokens)$")
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


def parts_text(content: Any) -> str:
    """The text parts of a Gemini content object."""
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return ""
    return "\n".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))


class GeminiGenerate(Protocol):
    """Adapter for generateContent, streamGenerateContent (SSE) and countTokens."""

    name: ClassVar[str] = "gemini"
    stop_reasons: ClassVar[tuple[str, ...]] = ("STOP", "MAX_TOKENS")

    def kind_of(self, method: str, path: str) -> str | None:
        """The model is in the path: kinds are `generate:MODEL`, `stream:MODEL`, `count_tokens`."""
        match = _PATH.match(path) if method == "POST" else None
        if not match:
            return None
        model, verb = match.groups()
        return {"generateContent": f"generate:{model}", "streamGenerateContent": f"stream:{model}"}.get(
            verb, "count_tokens"
        )

    def parse(self, kind: str, body: Any, headers: Headers) -> tuple[RequestView, str]:
        """systemInstruction is the system text; the last user content is the user text."""
        if not isinstance(body, dict):
            raise BadRequest("body: expected a JSON object")
        contents = body.get("contents", [])
        if not isinstance(contents, list):
            raise BadRequest("contents: expected an array")
        user = ""
        for content in contents:
            if not isinstance(content, dict):
                raise BadRequest("contents: every item must be an object")
            if content.get("role", "user") == "user" and parts_text(content):
                user = parts_text(content)
        tools = body.get("tools") or []
        if not isinstance(tools, list):
            raise BadRequest("tools: expected an array")
        names = tuple(
            str(d.get("name", ""))
            for t in tools
            if isinstance(t, dict)
            for d in t.get("functionDeclarations") or []
            if isinstance(d, dict)
        )
        config = body.get("generationConfig") or {}
        limit = config.get("maxOutputTokens") if isinstance(config, dict) else None
        model = kind.split(":", 1)[1] if ":" in kind else None
        structured = isinstance(config, dict) and config.get("responseMimeType") == "application/json"
        schema = (config.get("responseJsonSchema") or config.get("responseSchema")) if structured else None
        view = RequestView(
            model=model,
            system=parts_text(body.get("systemInstruction")),
            user=user,
            tool_names=names,
            stream=kind.startswith("stream:"),
            max_tokens=limit if isinstance(limit, int) else None,
            json_requested=structured,
            output_schema=schema if isinstance(schema, dict) else None,
        )
        return view, client_from_user_agent(headers, "gemini")

    def _error(self, error: RouterError) -> tuple[int, dict[str, Any]]:
        status = 503 if error.status == 529 else error.status
        return status, {
            "error": {"code": status, "message": error.message, "status": STATUS_NAMES.get(status, "INTERNAL")}
        }

    def error_answer(self, error: RouterError, request_id: str) -> Answer:
        """`{"error": {"code", "message", "status"}}`."""
        status, body = self._error(error)
        return Answer.json(dumps_bytes(body), status)

    def sse_error_event(self, error: RouterError) -> bytes:
        """The error object as one SSE data line."""
        return f"data: {dumps(self._error(error)[1])}\r\n\r\n".encode()

    def context_overflow(self, prompt_tokens: int | None, context: int | None) -> RouterError:
        """Google's own 400 for a prompt longer than the model takes. Gemini CLI compresses its history
        by its own count (usageMetadata.promptTokenCount against the model's limit), not on an error:
        this one it shows, in the words it would get from Google."""
        if prompt_tokens is None or context is None:
            return RouterError(400, "The input token count exceeds the maximum number of tokens allowed.")
        return RouterError(
            400, f"The input token count ({prompt_tokens}) exceeds the maximum number of tokens allowed ({context})."
        )

    def stream_complete(self, last_event: ServerEvent) -> bool:
        """A chunk whose candidate has its `finishReason` ends a Gemini stream (nothing follows it)."""
        return '"finishReason"' in last_event.data

    def sse_keepalive_event(self) -> bytes:
        """A blank line, a no-op to SSE parsers. Not a `: ping` comment: the reader in @google/genai
        matches `data:` at the head of its buffer after whitespace, so a comment stalls it and Gemini
        CLI throws the answer away; without anything the CLI gives up after 60 s without headers."""
        return b"\r\n"

    def _candidate(self, request: Request, reply: Reply) -> dict[str, Any]:
        prompt, answer = quick_estimate(len(request.raw)), estimate_tokens(reply.text)
        return {
            "candidates": [
                {
                    "content": {"parts": [{"text": reply.text}], "role": "model"},
                    "finishReason": reply.stop_reason,
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": prompt,
                "candidatesTokenCount": answer,
                "totalTokenCount": prompt + answer,
            },
            "modelVersion": request.view.model or "ghost-router",
            "responseId": f"ghost{secrets.token_hex(8)}",
        }

    def reply(self, request: Request, reply: Reply) -> Answer:
        """One GenerateContentResponse, as JSON or as one SSE data event."""
        if not request.view.stream:
            return Answer.json(dumps_bytes(self._candidate(request, reply)))
        return Answer.events(f"data: {dumps(self._candidate(request, reply))}\r\n\r\n".encode())

    def count_answer(self, request: Request, tokens: int) -> Answer:
        """`{"totalTokens": N}`."""
        return Answer.json(dumps_bytes({"totalTokens": tokens}))

    def text_for_counting(self, request: Request) -> str:
        """System instruction, every content's parts and the tool declarations."""
        body = request.body or {}
        inner = body.get("generateContentRequest") or body
        parts = [parts_text(inner.get("systemInstruction"))] + [
            dumps(c.get("parts", [])) for c in inner.get("contents", []) if isinstance(c, dict)
        ]
        parts += [dumps(t) for t in inner.get("tools") or []]
        return "\n".join(p for p in parts if p)

    def set_model(self, doc: dict[str, Any], model: str) -> bool:
        """The model is in the path, not the body: left as the client named it."""
        return False

    def cap_max_tokens(self, doc: dict[str, Any], cap: int) -> bool:
        """Set generationConfig.maxOutputTokens to at most CAP."""
        config = doc.get("generationConfig")
        config = config if isinstance(config, dict) else {}
        if isinstance(config.get("maxOutputTokens"), int) and config["maxOutputTokens"] <= cap:
            return False
        doc["generationConfig"] = {**config, "maxOutputTokens": cap}
        return True


RULES = """
- name: gemini-structured
  description: background calls on hard-coded Gemini models that want JSON (router classifier, next-speaker, loop check)
  match: {client: gemini-cli, model: "gemini-*", tools: 0, json_output: true}
  action: {fake: {json_from_schema: true}}
- name: gemini-background
  description: other tool-less calls on Gemini models (summary, compression) go to the local model behind user turns
  match: {client: gemini-cli, model: "gemini-*", tools: 0}
  action:
    rewrite: {max_tokens: 2048}
    forward: {priority: background}
- name: gemini-count-tokens
  match: {client: gemini-cli, path: "/v1*/models/*:countTokens"}
  action: {estimate: {}}
"""


@hookimpl
def register_protocols(register: Callable[[Protocol], None]) -> None:
    """The Gemini API adapter."""
    register(GeminiGenerate())


@hookimpl
def register_rules(register: Callable[[str], None]) -> None:
    """Structured background calls answered from their schema; the rest behind user turns."""
    register(RULES)
