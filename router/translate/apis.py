"""The APIs by name, and translating one request, answer or stream from one API to another
through the hub. Pure: bytes and dicts in, bytes and dicts out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from router.errors import BadRequest
from router.jsonutil import dumps_bytes, loads
from router.translate import (
    anthropic,
    anthropic_stream,
    gemini,
    gemini_stream,
    hub,
    openai_chat,
    openai_chat_stream,
    openai_responses,
    openai_responses_stream,
)

#: every value an upstream's `api:` may take
API_NAMES = ("anthropic", "openai-chat", "openai-responses", "gemini")


class Decoder(Protocol):
    """An API's stream to hub events."""

    def feed(self, chunk: bytes) -> list[hub.Event]: ...

    def close(self) -> list[hub.Event]: ...


class Encoder(Protocol):
    """Hub events to an API's stream."""

    def encode(self, events: list[hub.Event]) -> bytes: ...


@dataclass(frozen=True)
class Api:
    """What translation needs of one API."""

    name: str
    path: str | Callable[[str, bool], str]  # where turns are posted (Gemini's: from the model and stream flag)
    request_to_hub: Callable[[dict[str, Any]], hub.Request]
    request_from_hub: Callable[[hub.Request], dict[str, Any]]
    answer_to_hub: Callable[[dict[str, Any]], hub.Answer]
    answer_from_hub: Callable[[hub.Answer], dict[str, Any]]
    decoder: Callable[[], Decoder]
    encoder: Callable[[bool], Encoder]  # argument: whether the client asked for usage in the stream

    def turn_path(self, model: str, stream: bool) -> str:
        """Where a turn for MODEL is posted, streamed or not."""
        return self.path if isinstance(self.path, str) else self.path(model, stream)


APIS = {
    "anthropic": Api(
        "anthropic",
        "/v1/messages",
        anthropic.request_to_hub,
        anthropic.request_from_hub,
        anthropic.answer_to_hub,
        anthropic.answer_from_hub,
        anthropic_stream.StreamDecoder,
        lambda usage: anthropic_stream.StreamEncoder(),
    ),
    "openai-chat": Api(
        "openai-chat",
        "/v1/chat/completions",
        openai_chat.request_to_hub,
        openai_chat.request_from_hub,
        openai_chat.answer_to_hub,
        openai_chat.answer_from_hub,
        openai_chat_stream.StreamDecoder,
        lambda usage: openai_chat_stream.StreamEncoder(include_usage=usage),
    ),
    "openai-responses": Api(
        "openai-responses",
        "/v1/responses",
        openai_responses.request_to_hub,
        openai_responses.request_from_hub,
        openai_responses.answer_to_hub,
        openai_responses.answer_from_hub,
        openai_responses_stream.StreamDecoder,
        lambda usage: openai_responses_stream.StreamEncoder(),
    ),
    "gemini": Api(
        "gemini",
        gemini.path,
        gemini.request_to_hub,
        gemini.request_from_hub,
        gemini.answer_to_hub,
        gemini.answer_from_hub,
        gemini_stream.StreamDecoder,
        lambda usage: gemini_stream.StreamEncoder(),
    ),
}


def translatable(client: str, upstream: str) -> bool:
    """Whether requests of API CLIENT can be translated for an upstream speaking UPSTREAM."""
    return client in APIS and upstream in APIS


def translate_request(
    client: str, upstream: str, body: dict[str, Any], model: str | None = None, stream: bool | None = None
) -> dict[str, Any]:
    """A request BODY of API CLIENT in API UPSTREAM's shape, for MODEL and STREAM when given (an
    API that names them in its path has them outside BODY); raises BadRequest for a shape it cannot read."""
    try:
        request = APIS[client].request_to_hub(body)
        request = replace(
            request,
            model=request.model if model is None else model,
            stream=request.stream if stream is None else stream,
        )
        return APIS[upstream].request_from_hub(request)
    except (TypeError, AttributeError, KeyError, ValueError) as exc:  # a field of a type no API allows
        raise BadRequest(
            f"the request cannot be translated to {upstream} ({type(exc).__name__}: {exc}); check its fields' types"
        ) from None


def answer_of(api: str, raw: bytes, streamed: bool) -> hub.Answer:
    """The answer RAW holds: a whole answer of API, or (STREAMED) its complete stream; raises
    one of fields.UNREADABLE or StreamError when RAW is neither."""
    if streamed:
        decoder = APIS[api].decoder()
        return hub.assemble(decoder.feed(raw) + decoder.close())
    answer = loads(raw)
    if not isinstance(answer, dict):
        raise ValueError("the answer is not a JSON object")
    return APIS[api].answer_to_hub(answer)


def render_answer(api: str, answer: hub.Answer, stream: bool, wants_usage: bool = True) -> bytes:
    """ANSWER as API writes it: a whole answer, or the complete stream that carries it."""
    if stream:
        return APIS[api].encoder(wants_usage).encode(hub.events_of(answer))
    return dumps_bytes(APIS[api].answer_from_hub(answer))


class StreamTranslator:
    """An UPSTREAM stream turned into a CLIENT stream as its bytes arrive."""

    def __init__(self, upstream: str, client: str, client_wants_usage: bool = True) -> None:
        self._decoder = APIS[upstream].decoder()
        self._encoder = APIS[client].encoder(client_wants_usage)

    def feed(self, chunk: bytes) -> bytes:
        """The client's bytes for CHUNK of the upstream's (often none until an event completes)."""
        return self._encoder.encode(self._decoder.feed(chunk))

    def close(self) -> bytes:
        """The client's last bytes when the upstream's stream ends."""
        return self._encoder.encode(self._decoder.close())
