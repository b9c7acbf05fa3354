"""The contract every protocol adapter fulfils, so rules and actions never touch wire formats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from router.lazybody import LazyBody

if TYPE_CHECKING:
    from aiohttp import web
    from multidict import CIMultiDictProxy

    from router.errors import RouterError
    from router.exchange import Exchange, RequestView


CLIENTS_BY_USER_AGENT = (
    ("claude-cli/", "claude-code"),
    ("opencode/", "opencode"),
    ("codex", "codex"),
    ("GeminiCLI", "gemini-cli"),
)


def client_from_user_agent(headers: CIMultiDictProxy[str] | Any, default: str) -> str:
    """The agent CLI named by the User-Agent header (claude-code, opencode, codex, gemini-cli), else DEFAULT."""
    agent = headers.get("User-Agent", "") if headers is not None else ""
    for marker, client in CLIENTS_BY_USER_AGENT:
        if agent.startswith(marker) or (marker == "GeminiCLI" and marker in agent):
            return client
    return default


@dataclass(frozen=True)
class Reply:
    """A locally made answer: the assistant's text and why it stopped."""

    text: str
    stop_reason: str = "end_turn"


def json_type_name(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def expect(value: Any, kind: type | tuple[type, ...], field: str, what: str) -> None:
    """Raise BadRequest `FIELD: expected WHAT, got TYPE` unless VALUE is a KIND (a bool is no int)."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        from router.errors import BadRequest

        raise BadRequest(f"{field}: expected {what}, got {json_type_name(value)}")


async def send_event_stream(ex: Exchange, payload: bytes, headers: dict[str, str] | None = None) -> web.StreamResponse:
    """Answer EX with a complete server-sent-event stream made locally (a fake reply), in one write."""
    from aiohttp import web

    response = web.StreamResponse(headers={**(headers or {}), "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"})
    response.content_length = len(payload)
    await response.prepare(ex.request)
    await response.write(payload)
    await response.write_eof()
    return response


class Protocol:
    """A client API. Subclasses claim paths, parse bodies and render replies, counts and errors."""

    name: ClassVar[str] = "base"
    #: the stop reasons a fake may use, first is the default
    stop_reasons: ClassVar[tuple[str, ...]] = ("end_turn",)
    #: True: `parse` and the edits below get a router.lazybody.LazyBody (a mapping that decodes a
    #: top-level field when it is read) instead of a dict, when the body is a well-formed object
    lazy_body: ClassVar[bool] = False

    def kind_of(self, method: str, path: str) -> str | None:
        """The request kind this adapter handles at METHOD PATH ("messages", ...), or None."""
        return None

    def parse(self, kind: str, body: Any, headers: CIMultiDictProxy[str]) -> tuple[RequestView, str]:
        """Validate the JSON body (parsed, or a LazyBody, see `lazy_body`) and return the matcher
        view plus the client name; raise BadRequest."""
        raise NotImplementedError

    def error_response(self, error: RouterError, request_id: str) -> web.Response:
        """An HTTP error response in this protocol's error shape."""
        raise NotImplementedError

    def sse_error_event(self, error: RouterError) -> bytes:
        """An error as one server-sent event, for failures after a stream has started."""
        raise NotImplementedError

    def sse_keepalive_event(self) -> bytes | None:
        """A server-sent event that keeps a queued stream alive without faking content (None: none)."""
        return None

    async def send_reply(self, ex: Exchange, reply: Reply) -> web.StreamResponse:
        """Answer the request with a complete local reply, streamed if the request asked for a stream."""
        raise NotImplementedError

    def count_response(self, ex: Exchange, tokens: int) -> web.Response:
        """Answer a token-count request."""
        raise NotImplementedError

    def context_overflow(self, prompt_tokens: int | None, context: int | None) -> RouterError | None:
        """The error that makes this protocol's clients compact their context, or None to pass the
        server's own error through."""
        return None

    def wants_json(self, ex: Exchange) -> bool:
        """Whether the client asked for a JSON answer (structured output)."""
        return False

    def output_schema(self, ex: Exchange) -> dict[str, Any] | None:
        """The JSON Schema the client asked its answer to follow, if any."""
        return None

    def text_for_counting(self, ex: Exchange) -> str:
        """All the text of the request that the model would see, for token estimates."""
        raise NotImplementedError

    # Request edits used by the rewrite action. Each returns True when it changed the body, which
    # is a dict, or a LazyBody for a `lazy_body` protocol (read and set its fields as a dict's).

    def set_model(self, body: dict[str, Any], model: str) -> bool:
        """Replace the model name."""
        if body.get("model") == model:
            return False
        body["model"] = model
        return True

    def cap_max_tokens(self, body: dict[str, Any], cap: int) -> bool:
        """Lower the requested output limit to at most CAP."""
        return False

    def drop_system_blocks(self, body: dict[str, Any], prefix: str) -> bool:
        """Remove system text blocks that start with PREFIX (volatile headers that break caching)."""
        return False

    def fold_system_messages(self, body: dict[str, Any]) -> bool:
        """Fold role:"system" messages after the first into a neighbouring user turn."""
        return False

    def drop_fields(self, body: dict[str, Any], fields: list[str]) -> bool:
        """Remove fields an upstream rejects; dotted paths reach inside, `*` spans a list."""
        return any([_drop_path(body, dotted.split(".")) for dotted in fields])


def _drop_path(node: Any, parts: list[str]) -> bool:
    """Delete the field at PARTS under NODE; True if anything was deleted. A LazyBody's field
    changed inside is assigned back, so that it is written out."""
    head, rest = parts[0], parts[1:]
    if head == "*":
        if not rest:
            return False
        if isinstance(node, LazyBody):
            return any([_drop_inside(node, key, rest) for key in list(node)])
        children = node if isinstance(node, list) else list(node.values()) if isinstance(node, dict) else []
        return any([_drop_path(child, rest) for child in children])
    if not isinstance(node, (dict, LazyBody)) or head not in node:
        return False
    if not rest:
        del node[head]
        return True
    return _drop_inside(node, head, rest)


def _drop_inside(node: Any, key: str, rest: list[str]) -> bool:
    changed = _drop_path(node[key], rest)
    if changed and isinstance(node, LazyBody):
        node[key] = node[key]
    return changed
