"""A forwarded request whose upstream speaks another API (`api:` in its settings): the request is
translated on the way out, the answer (whole or streamed, errors included) on the way back, so
the client sees its own API. router.translate does the translating; this module decides when,
and fits it into the relay."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from router.answers import JSON_CONTENT, SSE_HEADERS, Head
from router.edits import Edits
from router.errors import RouterError
from router.jsonutil import dumps_bytes
from router.protocols.base import Request
from router.translate.apis import APIS, StreamTranslator, answer_of, render_answer, translatable, translate_request
from router.translate.fields import UNREADABLE
from router.translate.hub import StreamError
from router.upstream.pool import Upstream

#: the request kinds that are model turns, per API (other kinds have no counterpart to translate to);
#: a Gemini kind names its model after a colon (`stream:MODEL`)
TURN_KINDS = {
    "anthropic": ("messages",),
    "openai-chat": ("chat",),
    "openai-responses": ("responses",),
    "gemini": ("generate", "stream"),
}
ANTHROPIC_VERSION = "2023-06-01"


class UntranslatableAnswer(RouterError):
    """The upstream's answer is not what its API promises, so it cannot be translated."""

    def __init__(self, message: str) -> None:
        super().__init__(502, message, "api_error")


@dataclass(frozen=True)
class Translation:
    """How one request crosses from its client's API (CLIENT) to its upstream's (UPSTREAM)."""

    client: str
    upstream: str
    upstream_name: str
    stream: bool
    client_wants_usage: bool = True
    model: str = ""  # the model the upstream is asked for

    @property
    def path(self) -> str:
        """Where the upstream's API takes this model turn (Gemini's path names the model and the stream)."""
        return APIS[self.upstream].turn_path(self.model, self.stream)

    @property
    def note(self) -> str:
        """`translated CLIENT -> UPSTREAM`, for the log line."""
        return f"translated {self.client} -> {self.upstream}"

    def body(self, edits: Edits) -> bytes:
        """The edited request in the upstream's API."""
        return dumps_bytes(translate_request(self.client, self.upstream, dict(edits.body), self.model, self.stream))

    def headers(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """HEADERS for a body the router wrote: JSON, not compressed (the answer is read), and the
        version header an Anthropic upstream requires."""
        kept = [(n, v) for n, v in headers if n.lower() not in ("content-type", "accept-encoding")]
        kept += [("Content-Type", "application/json"), ("Accept-Encoding", "identity")]
        if self.upstream == "anthropic" and not any(n.lower() == "anthropic-version" for n, _ in kept):
            kept.append(("anthropic-version", ANTHROPIC_VERSION))
        return kept

    async def answer(
        self, status: int, content_type: str, first: bytes, next_chunk: Callable[[], Awaitable[bytes]]
    ) -> AsyncGenerator[Head | bytes, None]:
        """The upstream's successful answer (FIRST, then NEXT_CHUNK until b"") in the client's API."""
        streamed = content_type.startswith("text/event-stream")
        if streamed and self.stream:
            yield Head(status, SSE_HEADERS)
            translator = StreamTranslator(self.upstream, self.client, self.client_wants_usage)
            chunk = first or await next_chunk()
            while chunk:
                if out := translator.feed(chunk):
                    yield out
                chunk = await next_chunk()
            yield translator.close()
            return
        raw = first + b"".join([chunk async for chunk in _rest(next_chunk)])
        try:  # a whole answer, or a stream where one was asked for (or the other way round)
            answer = answer_of(self.upstream, raw, streamed)
        except (*UNREADABLE, StreamError) as exc:
            raise UntranslatableAnswer(
                f"ghost-router: upstream '{self.upstream_name}' answered something that is not an answer in "
                f"the {self.upstream} API ({exc}); check the upstream's `api:` setting."
            ) from None
        yield Head(status, SSE_HEADERS if self.stream else JSON_CONTENT)
        yield render_answer(self.client, answer, self.stream, self.client_wants_usage)


async def _rest(next_chunk: Callable[[], Awaitable[bytes]]) -> AsyncIterator[bytes]:
    while chunk := await next_chunk():
        yield chunk


def plan(request: Request, upstream: Upstream, edits: Edits) -> Translation | None:
    """How REQUEST (as EDITS leave it) crosses to UPSTREAM, or None when it goes as it is: its API
    is one the upstream speaks, its path is no model turn, or its API is a plugin's that no
    translator knows. Raises RouterError for a crossing that cannot be made."""
    client = request.protocol.name
    if client in upstream.config.api or request.kind is None or not translatable(client, upstream.config.api[0]):
        return None
    api = upstream.config.api[0]
    where = f"upstream '{upstream.name}' (api: {', '.join(upstream.config.api)})"
    if request.kind.split(":", 1)[0] not in TURN_KINDS[client]:
        raise RouterError(
            400,
            f"ghost-router: {request.path} has no counterpart in {api}, the API of {where}; answer it "
            "locally (an `estimate` rule answers token counts).",
            "invalid_request_error",
        )
    body = request.body if isinstance(request.body, dict) else {}
    options = body.get("stream_options")
    wants_usage = client != "openai-chat" or (isinstance(options, dict) and options.get("include_usage") is True)
    return Translation(client, api, upstream.name, request.view.stream, wants_usage, _model(request, edits))


def _model(request: Request, edits: Edits) -> str:
    """The model the upstream is asked for: the edited body's, else the one a rule or the upstream's
    `model:` chose, else the one the client named (Gemini names it in the path)."""
    named = edits.body.get("model")
    return named if isinstance(named, str) and named else edits.model or request.view.model or ""
