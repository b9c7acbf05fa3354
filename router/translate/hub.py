"""The one conversation model every API is translated to and from (hub and spoke).

Each API module maps its request, its answer and its stream to and from these values, so a new
API needs one module, not one translator per pair. Everything here is a plain immutable value;
nothing does I/O.

Tool call arguments stay JSON text (as OpenAI sends them); an API that carries them as an object
parses and writes that text. Usage counts follow Anthropic's split: `input_tokens` are the prompt
tokens neither read from nor written to a cache, so an API that counts all prompt tokens together
adds the cached ones back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Role = Literal["user", "assistant", "system"]
StopReason = Literal["end", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause"]


@dataclass(frozen=True)
class Text:
    """Plain text."""

    text: str


@dataclass(frozen=True)
class Image:
    """An image: base64 DATA of MEDIA_TYPE, or a URL."""

    media_type: str | None = None
    data: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class ToolCall:
    """The model asks to run tool NAME with ARGUMENTS (JSON text); ID links the result to it."""

    id: str
    name: str
    arguments: str = "{}"


@dataclass(frozen=True)
class ToolResult:
    """What a tool call returned (text and images); IS_ERROR when the tool failed."""

    call_id: str
    content: tuple[Text | Image, ...] = ()
    is_error: bool = False


@dataclass(frozen=True)
class Reasoning:
    """The model's reasoning before its answer. SIGNATURE is Anthropic's proof of origin (None
    when the reasoning came from elsewhere); REDACTED holds reasoning the API sent encrypted."""

    text: str
    signature: str | None = None
    redacted: str | None = None


Part = Text | Image | ToolCall | ToolResult | Reasoning


@dataclass(frozen=True)
class Message:
    """One turn of the conversation. A `system` message is an instruction in the middle of the
    conversation (OpenAI allows them anywhere); the leading ones live in Request.system."""

    role: Role
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class Tool:
    """A function the model may call, its arguments described by a JSON Schema."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True)
class ToolChoice:
    """Whether the model must call a tool: auto, required (any tool), none, or the tool NAME."""

    mode: Literal["auto", "required", "none", "tool"]
    name: str | None = None


@dataclass(frozen=True)
class ResponseFormat:
    """Structured output: JSON following SCHEMA (any JSON object when SCHEMA is None)."""

    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


@dataclass(frozen=True)
class Request:
    """A request for the model's next turn."""

    model: str
    messages: tuple[Message, ...]
    system: tuple[Text, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    response_format: ResponseFormat | None = None
    reasoning_budget: int | None = None  # tokens the model may think for (Anthropic's thinking budget)
    reasoning_effort: str | None = None  # low, medium, high (OpenAI's reasoning_effort)
    stream: bool = False


@dataclass(frozen=True)
class Usage:
    """Token counts; input_tokens excludes the cached ones."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        """All prompt tokens, cached or not."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass(frozen=True)
class Answer:
    """The model's turn: its parts in order, why it stopped, what it cost."""

    parts: tuple[Text | ToolCall | Reasoning, ...]
    stop: StopReason = "end"
    usage: Usage = Usage()
    model: str = ""
    id: str = ""
    stop_sequence: str | None = None


# -- the stream vocabulary ---------------------------------------------------------------------
# A decoder turns one API's stream into these events, an encoder turns them into another API's.
# Parts open one at a time: PartStart, its deltas, PartStop, then the next part; a decoder whose
# API interleaves them (OpenAI's tool call fragments) holds one back until the open one is whole.


@dataclass(frozen=True)
class Start:
    """The answer begins; USAGE holds what is known so far (often the input tokens)."""

    id: str = ""
    model: str = ""
    usage: Usage = Usage()


@dataclass(frozen=True)
class PartStart:
    """Part INDEX begins: text, reasoning, or a tool call (with its ID and NAME)."""

    index: int
    kind: Literal["text", "reasoning", "tool_call"]
    call_id: str = ""
    name: str = ""


@dataclass(frozen=True)
class TextDelta:
    """More text for part INDEX (a text or a reasoning part)."""

    index: int
    text: str


@dataclass(frozen=True)
class ArgumentsDelta:
    """More of a tool call's JSON arguments (a fragment, not a snapshot)."""

    index: int
    fragment: str


@dataclass(frozen=True)
class SignatureDelta:
    """The signature of reasoning part INDEX."""

    index: int
    signature: str


@dataclass(frozen=True)
class PartStop:
    """Part INDEX is complete."""

    index: int


@dataclass(frozen=True)
class Finish:
    """The answer is complete: why it stopped and the final usage."""

    stop: StopReason
    usage: Usage = Usage()
    stop_sequence: str | None = None


@dataclass(frozen=True)
class Failure:
    """The stream failed: STATUS as an HTTP status would say it, the error TYPE if known, MESSAGE."""

    status: int
    message: str
    type: str | None = None


Event = Start | PartStart | TextDelta | ArgumentsDelta | SignatureDelta | PartStop | Finish | Failure


class StreamError(Exception):
    """A stream that breaks the event contract or that cannot be read."""


def assemble(events: Iterable[Event]) -> Answer:
    """The answer a stream of events adds up to; raises StreamError on a broken sequence."""
    started: Start | None = None
    parts: list[Text | ToolCall | Reasoning] = []
    open_index: int | None = None
    finish: Finish | None = None
    for event in events:
        if isinstance(event, Start):
            started = event
        elif isinstance(event, PartStart):
            if open_index is not None or event.index != len(parts):
                raise StreamError(f"part {event.index} starts while part {open_index} is open or out of order")
            open_index = event.index
            parts.append(
                ToolCall(event.call_id, event.name, "")
                if event.kind == "tool_call"
                else Reasoning("")
                if event.kind == "reasoning"
                else Text("")
            )
        elif isinstance(event, PartStop):
            if event.index != open_index:
                raise StreamError(f"part {event.index} stops but part {open_index} is open")
            open_index = None
        elif isinstance(event, TextDelta | ArgumentsDelta | SignatureDelta):
            if event.index != open_index:
                raise StreamError(f"a delta for part {event.index} while part {open_index} is open")
            parts[event.index] = _grow(parts[event.index], event)
        elif isinstance(event, Finish):
            finish = event
        elif isinstance(event, Failure):
            raise StreamError(f"the stream failed: {event.status} {event.message}")
    if finish is None:
        raise StreamError("the stream ended without finishing")
    return Answer(
        tuple(replace(p, arguments=p.arguments or "{}") if isinstance(p, ToolCall) else p for p in parts),
        finish.stop,
        finish.usage,
        started.model if started else "",
        started.id if started else "",
        finish.stop_sequence,
    )


def _grow(part: Text | ToolCall | Reasoning, event: TextDelta | ArgumentsDelta | SignatureDelta) -> Any:
    if isinstance(event, ArgumentsDelta) and isinstance(part, ToolCall):
        return replace(part, arguments=part.arguments + event.fragment)
    if isinstance(event, SignatureDelta) and isinstance(part, Reasoning):
        return replace(part, signature=(part.signature or "") + event.signature)
    if isinstance(event, TextDelta) and isinstance(part, Text | Reasoning):
        return replace(part, text=part.text + event.text)
    raise StreamError(f"a {type(event).__name__} for a {type(part).__name__} part")


def events_of(answer: Answer) -> list[Event]:
    """A whole answer as the stream of events that would carry it (one delta per part)."""
    events: list[Event] = [Start(answer.id, answer.model, replace(answer.usage, output_tokens=0))]
    for index, part in enumerate(answer.parts):
        if isinstance(part, ToolCall):
            events.append(PartStart(index, "tool_call", part.id, part.name))
            events.append(ArgumentsDelta(index, part.arguments))
        elif isinstance(part, Reasoning):
            events.append(PartStart(index, "reasoning"))
            events.append(TextDelta(index, part.text))
            if part.signature:
                events.append(SignatureDelta(index, part.signature))
        else:
            events.append(PartStart(index, "text"))
            events.append(TextDelta(index, part.text))
        events.append(PartStop(index))
    events.append(Finish(answer.stop, answer.usage, answer.stop_sequence))
    return events
