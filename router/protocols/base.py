"""The request as a protocol adapter reads it, and the contract every adapter fulfils, so rules and
actions never touch wire formats."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from multidict import CIMultiDictProxy

from router.answers import Answer
from router.errors import BadRequest, RouterError
from router.jsonutil import dumps, loads
from router.protocols.overflow import detect as detect_overflow
from router.schema_example import prompt_asks_for_json
from router.translate.sse import ServerEvent

CLIENTS_BY_USER_AGENT = (
    ("claude-cli/", "claude-code"),
    ("opencode/", "opencode"),
    ("codex", "codex"),
    ("GeminiCLI", "gemini-cli"),
)
_ids = itertools.count(1)


def client_from_user_agent(headers: CIMultiDictProxy[str] | Any, default: str) -> str:
    """The agent CLI named by the User-Agent header (claude-code, opencode, codex, gemini-cli), else DEFAULT."""
    agent = headers.get("User-Agent", "") if headers is not None else ""
    for marker, client in CLIENTS_BY_USER_AGENT:
        if agent.startswith(marker) or (marker == "GeminiCLI" and marker in agent):
            return client
    return default


@dataclass(frozen=True)
class RequestView:
    """The protocol-neutral facts the matchers and fakes look at, parsed once from the body."""

    model: str | None = None
    system: str = ""
    user: str = ""
    tool_names: tuple[str, ...] = ()
    stream: bool = False
    max_tokens: int | None = None
    json_requested: bool = False  # the API's own structured-output field asks for JSON
    output_schema: dict[str, Any] | None = None  # the JSON Schema that field gives, if any

    @property
    def tools(self) -> int:
        """How many tools the request declares."""
        return len(self.tool_names)

    @property
    def wants_json(self) -> bool:
        """Whether the answer must be JSON: asked in the API's own field, or in the prompt's words."""
        return self.json_requested or prompt_asks_for_json(self.system) or prompt_asks_for_json(self.user)


@dataclass(frozen=True)
class Request:
    """One request as it arrived: never changed after parsing (a forward's edits live in
    router.edits.Edits, so the log, the recorder and plugins always see what the client sent)."""

    method: str
    path: str  # percent-decoded, dot segments resolved: what rules match on
    query: str
    raw_path: str  # the same path as sent (percent escapes kept), for forwarding
    headers: CIMultiDictProxy[str]
    raw: bytes
    protocol: Protocol
    kind: str | None = None  # the adapter's request kind ("messages", ...), None for other paths
    body: Any = None  # the parsed JSON body (read it; never edit it)
    view: RequestView = RequestView()
    client: str = ""
    id: str = ""
    started: float = 0.0

    @property
    def target(self) -> str:
        """The path and query as forwarded."""
        return f"{self.raw_path}?{self.query}" if self.query else self.raw_path

    def elapsed_ms(self) -> float:
        """Milliseconds since the request arrived."""
        return (time.perf_counter() - self.started) * 1000


def new_request(
    method: str,
    path: str,
    query: str,
    raw_path: str,
    headers: CIMultiDictProxy[str],
    raw: bytes,
    protocol: Protocol,
    kind: str | None,
) -> Request:
    """A request as it arrived, with its id and arrival time, its body not parsed yet."""
    return Request(
        method, path, query, raw_path, headers, raw, protocol, kind, id=f"{next(_ids):06d}", started=time.perf_counter()
    )


def parse_request(request: Request) -> Request:
    """REQUEST with its body parsed by its protocol when it is one of the protocol's calls; raises BadRequest."""
    if request.kind is None:
        return request
    if not request.raw:
        raise BadRequest("request body is empty; expected a JSON object")
    try:
        body = loads(request.raw)
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    view, client = request.protocol.parse(request.kind, body, request.headers)
    return replace(request, body=body, view=view, client=client)


@dataclass(frozen=True)
class Reply:
    """A locally made answer: the assistant's text and why it stopped."""

    text: str
    stop_reason: str = "end_turn"


def json_type_name(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def expect(value: Any, kind: type | tuple[type, ...], field: str, what: str) -> None:
    """Raise BadRequest `FIELD: expected WHAT, got TYPE` unless VALUE is a KIND (a bool is no int)."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise BadRequest(f"{field}: expected {what}, got {json_type_name(value)}")


def sse(event: str, data: Any) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {dumps(data)}\n\n"


class Protocol:
    """A client API. Subclasses claim paths, parse bodies and render replies, counts and errors.
    Every method is a pure function of its arguments: no I/O."""

    name: ClassVar[str] = "base"
    #: the stop reasons a fake may use, first is the default
    stop_reasons: ClassVar[tuple[str, ...]] = ("end_turn",)

    def kind_of(self, method: str, path: str) -> str | None:
        """The request kind this adapter handles at METHOD PATH ("messages", ...), or None."""
        return None

    def parse(self, kind: str, body: Any, headers: CIMultiDictProxy[str]) -> tuple[RequestView, str]:
        """Validate the parsed JSON BODY; return the matcher view and the client name; raise BadRequest."""
        raise NotImplementedError

    def error_answer(self, error: RouterError, request_id: str) -> Answer:
        """An error answer in this protocol's error shape."""
        raise NotImplementedError

    def sse_error_event(self, error: RouterError) -> bytes:
        """An error as one server-sent event, for failures after a stream has started."""
        raise NotImplementedError

    def sse_keepalive_event(self) -> bytes | None:
        """A server-sent event that keeps a waiting stream alive without faking content (None: none)."""
        return None

    def stream_complete(self, last_event: ServerEvent) -> bool:
        """True when LAST_EVENT, the last server-sent event that went to the client, is the one that
        ends this protocol's streamed answers: a client that leaves after it has the whole answer
        (Codex hangs up on `response.completed` without reading the body's end)."""
        return False

    def reply(self, request: Request, reply: Reply) -> Answer:
        """A complete local reply, as an event stream if the request asked for a stream."""
        raise NotImplementedError

    def count_answer(self, request: Request, tokens: int) -> Answer:
        """The answer to a token-count request."""
        raise NotImplementedError

    def context_overflow(self, prompt_tokens: int | None, context: int | None) -> RouterError | None:
        """The error that makes this protocol's clients compact their context, or None to pass the
        server's own error through."""
        return None

    def upstream_error(self, status: int, body: bytes) -> RouterError | None:
        """The error to answer instead of an upstream's error answer (STATUS, BODY), or None to pass
        it through: a server's context overflow becomes this protocol's own."""
        overflow = detect_overflow(body)
        return self.context_overflow(overflow.prompt_tokens, overflow.context) if overflow else None

    def text_for_counting(self, request: Request) -> str:
        """All the text of the request that the model would see, for token estimates."""
        raise NotImplementedError

    # Request edits used by rewrites and upstream options. DOC is a shallow copy of the body's
    # top level: replace values, never change a nested value in place (the request keeps the
    # body as it arrived). Each returns True when it changed something.

    def set_model(self, doc: dict[str, Any], model: str) -> bool:
        """Replace the model name."""
        if doc.get("model") == model:
            return False
        doc["model"] = model
        return True

    def cap_max_tokens(self, doc: dict[str, Any], cap: int) -> bool:
        """Lower the requested output limit to at most CAP."""
        return False

    def drop_system_blocks(self, doc: dict[str, Any], prefix: str) -> bool:
        """Remove system text blocks that start with PREFIX (volatile headers that break caching)."""
        return False

    def fold_system_messages(self, doc: dict[str, Any]) -> bool:
        """Fold role:"system" messages after the first into a neighbouring user turn."""
        return False

    def stable_prefix(self, doc: dict[str, Any], environment_first: bool, project_context_last: bool) -> int:
        """Move volatile prompt text after the stable text (rewrite's `environment_first` and
        `project_context_last`); the number of characters of text moved, 0 when unchanged."""
        return 0

    def drop_fields(self, doc: dict[str, Any], fields: list[str]) -> bool:
        """Remove fields an upstream rejects; dotted paths reach inside, `*` spans a list or object."""
        changed = False
        for dotted in fields:
            head, *rest = dotted.split(".")
            if head == "*" or head not in doc:
                continue
            if not rest:
                del doc[head]
                changed = True
                continue
            replaced = without_path(doc[head], rest)
            if replaced is not _UNCHANGED:
                doc[head] = replaced
                changed = True
        return changed


_UNCHANGED: Any = object()


def without_path(node: Any, parts: list[str]) -> Any:
    """A copy of NODE without the field at PARTS (copied along the way only), or _UNCHANGED."""
    head, rest = parts[0], parts[1:]
    if head == "*":
        if not rest:
            return _UNCHANGED
        keys = range(len(node)) if isinstance(node, list) else list(node) if isinstance(node, dict) else []
        copy: Any = _UNCHANGED
        for key in keys:
            replaced = without_path(node[key], rest)
            if replaced is not _UNCHANGED:
                copy = (list(node) if isinstance(node, list) else dict(node)) if copy is _UNCHANGED else copy
                copy[key] = replaced
        return copy
    if not isinstance(node, dict) or head not in node:
        return _UNCHANGED
    if not rest:
        return {k: v for k, v in node.items() if k != head}
    replaced = without_path(node[head], rest)
    return _UNCHANGED if replaced is _UNCHANGED else {**node, head: replaced}
