"""OpenAI Responses streams to and from the hub's events: a decoder for an upstream's typed events
and an encoder that keeps the contract the openai SDK's `responses.stream()` and Codex rely on.

The encoder numbers output items as the hub numbers parts (output_index = part index), gives
each event a `sequence_number`, opens every item (and its content part) before its deltas and
completes it before the next, and ends with `response.completed` (`response.incomplete` when the
model hit its output limit) carrying the whole output and the usage, or with an `error` event and
`response.failed` (whose `error.code` Codex reads: `context_length_exceeded` makes it compact).
Reasoning goes out as `reasoning_text` (the model's own reasoning, not a summary).
"""

from __future__ import annotations

from typing import Any

from router.jsonutil import loads
from router.translate import hub
from router.translate.fields import UNREADABLE, text
from router.translate.openai_responses import (
    error_code,
    item_id,
    output_item,
    output_text,
    part_to_hub,
    response_id,
    response_object,
    status_from_hub,
    status_of,
    stop_to_hub,
    usage_from_hub,
    usage_to_hub,
)
from router.translate.sse import EventReader, encode

TEXT_DELTAS = ("response.output_text.delta", "response.refusal.delta")
REASONING_DELTAS = ("response.reasoning_text.delta", "response.reasoning_summary_text.delta")
ENDINGS = ("response.completed", "response.incomplete")


class StreamDecoder:
    """Responses API events (SSE bytes) from an upstream to hub events.

    Each output item is one hub part, opened at its first content (a message or reasoning item
    without text opens none) and closed when the item is done; an item's text that came only in
    its `output_item.done` is sent then. Encrypted reasoning has no stream event in the hub and is
    left out."""

    def __init__(self) -> None:
        self._reader = EventReader()
        self._started = False
        self._parts = 0
        self._open: tuple[int, int] | None = None  # (output index, hub index) of the open part
        self._sent: dict[int, bool] = {}  # output index -> whether its part got any content
        self._calls: set[int] = set()
        self._summary = 0
        self._done = False

    def feed(self, chunk: bytes) -> list[hub.Event]:
        """The events CHUNK completes."""
        return [event for item in self._reader.feed(chunk) for event in self._read(item.data)]

    def close(self) -> list[hub.Event]:
        """The events left when the upstream's stream ends: a Failure when it never completed."""
        events = [event for item in self._reader.close() for event in self._read(item.data)]
        if self._done:
            return events
        self._done = True
        return [*events, *self._close_open(), hub.Failure(502, "the upstream's stream ended before response.completed")]

    def _read(self, data: str) -> list[hub.Event]:
        """The events of one upstream event; a Failure for one whose fields have the wrong types."""
        if self._done:
            return []
        try:
            return self._decode(data)
        except UNREADABLE as exc:
            self._done = True
            return [hub.Failure(502, f"the upstream sent an event that cannot be read ({exc}): {data[:200]}")]

    def _decode(self, data: str) -> list[hub.Event]:
        try:
            event = loads(data)
        except ValueError:
            self._done = True
            return [hub.Failure(502, f"the upstream sent an event that is not JSON: {data[:200]}")]
        if not isinstance(event, dict):
            return []
        kind = event.get("type")
        if kind in ("response.created", "response.in_progress", "response.queued"):
            return self._start(event.get("response") or {})
        if kind == "response.output_item.added":
            return self._start({}) + self._item_added(int(event["output_index"]), event.get("item") or {})
        if kind in TEXT_DELTAS or kind in REASONING_DELTAS:
            position = int(event["output_index"])
            summary = event.get("summary_index", 0)
            gap = "\n\n" if kind.startswith("response.reasoning_summary") and summary != self._summary else ""
            self._summary = summary if isinstance(summary, int) else 0
            reasoning = kind in REASONING_DELTAS
            return self._content(
                position, "reasoning" if reasoning else "text", gap + text(event.get("delta"), "delta")
            )
        if kind == "response.function_call_arguments.delta":
            return self._arguments(int(event["output_index"]), text(event.get("delta"), "delta"))
        if kind == "response.output_item.done":
            return self._item_done(int(event["output_index"]), event.get("item") or {})
        if kind in ENDINGS:
            response = event.get("response") or {}
            self._done = True
            stop = stop_to_hub(response.get("status"), response.get("incomplete_details"), bool(self._calls))
            return [*self._start(response), *self._close_open(), hub.Finish(stop, usage_to_hub(response.get("usage")))]
        if kind == "response.failed":
            error = (event.get("response") or {}).get("error") or {}
            return self._failure(error.get("code"), error.get("message"))
        if kind == "error":
            return self._failure(event.get("code"), event.get("message"))
        return []

    def _failure(self, code: Any, message: Any) -> list[hub.Event]:
        self._done = True
        return [*self._close_open(), hub.Failure(status_of(code), str(message or "the upstream failed"), code)]

    def _start(self, response: dict[str, Any]) -> list[hub.Event]:
        if self._started:
            return []
        self._started = True
        return [hub.Start(str(response.get("id", "")), str(response.get("model", "")))]

    def _item_added(self, position: int, item: dict[str, Any]) -> list[hub.Event]:
        self._summary = 0
        if item.get("type") != "function_call":
            return []
        self._calls.add(position)
        call_id, name = str(item.get("call_id") or ""), str(item.get("name") or "")
        events = self._open_part(position, "tool_call", call_id, name)
        if arguments := item.get("arguments"):
            self._sent[position] = True
            events.append(hub.ArgumentsDelta(self._parts - 1, text(arguments, "item.arguments")))
        return events

    def _open_part(self, position: int, kind: Any, call_id: str = "", name: str = "") -> list[hub.Event]:
        events = self._close_open()
        self._open = (position, self._parts)
        self._sent[position] = False
        self._parts += 1
        return [*events, hub.PartStart(self._open[1], kind, call_id, name)]

    def _close_open(self) -> list[hub.Event]:
        if self._open is None:
            return []
        index, self._open = self._open[1], None
        return [hub.PartStop(index)]

    def _content(self, position: int, kind: str, piece: str) -> list[hub.Event]:
        if not piece:
            return []
        events = [] if self._open and self._open[0] == position else self._open_part(position, kind)
        assert self._open is not None
        self._sent[position] = True
        return [*events, hub.TextDelta(self._open[1], piece)]

    def _arguments(self, position: int, fragment: str) -> list[hub.Event]:
        if not (self._open and self._open[0] == position):
            self._done = True
            return [hub.Failure(502, "the upstream sent the arguments of a tool call that is not open")]
        self._sent[position] = True
        return [hub.ArgumentsDelta(self._open[1], fragment)] if fragment else []

    def _item_done(self, position: int, item: dict[str, Any]) -> list[hub.Event]:
        part = part_to_hub(item, "item")
        events: list[hub.Event] = []
        if not self._sent.get(position):  # nothing streamed: the done item holds it all
            if isinstance(part, hub.ToolCall) and self._open and self._open[0] == position:
                events.append(hub.ArgumentsDelta(self._open[1], part.arguments))
            elif isinstance(part, hub.Text | hub.Reasoning) and part.text:
                events += self._content(position, "text" if isinstance(part, hub.Text) else "reasoning", part.text)
        if self._open and self._open[0] == position:
            events += self._close_open()
        return events


class StreamEncoder:
    """Hub events to the Responses API's typed events, each with its sequence_number."""

    def __init__(self, model: str = "") -> None:
        self.model = model
        self._id = response_id("")
        self._sequence = 0
        self._started = False
        self._finished = False
        self._parts: dict[int, hub.Text | hub.ToolCall | hub.Reasoning] = {}  # so far, by index

    def encode(self, events: list[hub.Event]) -> bytes:
        """The SSE bytes for EVENTS."""
        return b"".join(self._one(event) for event in events)

    def _event(self, kind: str, **data: Any) -> bytes:
        out = encode(kind, {"type": kind, **data, "sequence_number": self._sequence})
        self._sequence += 1
        return out

    def _response(self, status: str, usage: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        output = [output_item(part, self._id, index) for index, part in sorted(self._parts.items())]
        return response_object(self._id, self.model, status, output, usage, **extra)

    def _one(self, event: hub.Event) -> bytes:
        if self._finished:
            return b""
        out = b""
        if not self._started:
            self._started = True
            if isinstance(event, hub.Start):
                self.model = event.model or self.model
                self._id = response_id(event.id)
            out += self._event("response.created", response=self._response("in_progress"))
            out += self._event("response.in_progress", response=self._response("in_progress"))
        if isinstance(event, hub.PartStart):
            out += self._part_start(event)
        elif isinstance(event, hub.TextDelta) and event.index in self._parts:
            out += self._text_delta(event)
        elif isinstance(event, hub.ArgumentsDelta) and isinstance(self._parts.get(event.index), hub.ToolCall):
            call = self._parts[event.index]
            assert isinstance(call, hub.ToolCall)
            self._parts[event.index] = hub.ToolCall(call.id, call.name, call.arguments + event.fragment)
            where = self._where(event.index, "tool_call")
            out += self._event("response.function_call_arguments.delta", **where, delta=event.fragment)
        elif isinstance(event, hub.PartStop) and event.index in self._parts:
            out += self._part_stop(event.index)
        elif isinstance(event, hub.Finish):
            out += self._finish(event)
        elif isinstance(event, hub.Failure):
            out += self._failure(event)
        return out

    def _where(self, index: int, kind: str, content: bool = False) -> dict[str, Any]:
        where: dict[str, Any] = {"item_id": item_id(self._id, kind, index), "output_index": index}
        return {**where, "content_index": 0} if content else where

    def _part_start(self, event: hub.PartStart) -> bytes:
        index, kind = event.index, event.kind
        if kind == "tool_call":
            call = self._parts[index] = hub.ToolCall(event.call_id, event.name, "")
            item = {**output_item(call, self._id, index), "status": "in_progress"}
            return self._event("response.output_item.added", output_index=index, item=item)
        if kind == "reasoning":
            self._parts[index] = hub.Reasoning("")
            item = {"id": item_id(self._id, kind, index), "type": "reasoning", "summary": [], "content": []}
            out = self._event("response.output_item.added", output_index=index, item=item)
            part = {"type": "reasoning_text", "text": ""}
            return out + self._event("response.content_part.added", **self._where(index, kind, True), part=part)
        self._parts[index] = hub.Text("")
        item = {**output_item(hub.Text(""), self._id, index), "status": "in_progress", "content": []}
        out = self._event("response.output_item.added", output_index=index, item=item)
        return out + self._event("response.content_part.added", **self._where(index, kind, True), part=output_text(""))

    def _text_delta(self, event: hub.TextDelta) -> bytes:
        part = self._parts[event.index]
        if isinstance(part, hub.ToolCall):
            return b""
        self._parts[event.index] = type(part)(part.text + event.text)
        if isinstance(part, hub.Reasoning):
            where = self._where(event.index, "reasoning", True)
            return self._event("response.reasoning_text.delta", **where, delta=event.text)
        where = self._where(event.index, "text", True)
        return self._event("response.output_text.delta", **where, delta=event.text, logprobs=[])

    def _part_stop(self, index: int) -> bytes:
        part = self._parts[index]
        item = output_item(part, self._id, index)
        out = b""
        if isinstance(part, hub.ToolCall):
            where = self._where(index, "tool_call")
            out += self._event(
                "response.function_call_arguments.done", **where, name=part.name, arguments=part.arguments
            )
        elif isinstance(part, hub.Reasoning):
            where = self._where(index, "reasoning", True)
            out += self._event("response.reasoning_text.done", **where, text=part.text)
            done = {"type": "reasoning_text", "text": part.text}
            out += self._event("response.content_part.done", **where, part=done)
        else:
            where = self._where(index, "text", True)
            out += self._event("response.output_text.done", **where, text=part.text, logprobs=[])
            out += self._event("response.content_part.done", **where, part=output_text(part.text))
        return out + self._event("response.output_item.done", output_index=index, item=item)

    def _finish(self, event: hub.Finish) -> bytes:
        self._finished = True
        status, incomplete = status_from_hub(event.stop)
        response = self._response(status, usage_from_hub(event.usage), incomplete_details=incomplete)
        return self._event("response.completed" if status == "completed" else "response.incomplete", response=response)

    def _failure(self, event: hub.Failure) -> bytes:
        self._finished = True
        code = error_code(event.status, event.type)
        out = self._event("error", code=code, message=event.message, param=None)
        failed = self._response("failed", error={"code": code, "message": event.message})
        return out + self._event("response.failed", response=failed)
