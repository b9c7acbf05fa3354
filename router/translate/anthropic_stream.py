"""Anthropic Messages streams to and from the hub's events: a decoder for an upstream's events and
an encoder that keeps the contract a strict client (Claude Code, the SDK) relies on."""

from __future__ import annotations

from typing import Any

from router.jsonutil import dumps, loads
from router.protocols.anthropic import ERROR_TYPES
from router.translate import hub
from router.translate.anthropic import (
    STOP_FROM_HUB,
    STOP_TO_HUB,
    error_body,
    message_id,
    tool_id,
    usage_from_hub,
    usage_to_hub,
)
from router.translate.fields import UNREADABLE, text
from router.translate.sse import EventReader, encode


class StreamDecoder:
    """Anthropic SSE bytes from an upstream to hub events."""

    def __init__(self) -> None:
        self._reader = EventReader()
        self._usage = hub.Usage()
        self._finish: hub.Finish | None = None

    def feed(self, chunk: bytes) -> list[hub.Event]:
        """The events CHUNK completes."""
        return [event for item in self._reader.feed(chunk) for event in self._read(item.data)]

    def close(self) -> list[hub.Event]:
        """The events left when the upstream's stream ends."""
        return [event for item in self._reader.close() for event in self._read(item.data)]

    def _read(self, data: str) -> list[hub.Event]:
        """The events of one upstream event; a Failure for one whose fields have the wrong types."""
        try:
            return self._decode(data)
        except UNREADABLE as exc:
            return [hub.Failure(502, f"the upstream sent an event that cannot be read ({exc}): {data[:200]}")]

    def _decode(self, data: str) -> list[hub.Event]:
        try:
            event = loads(data)
        except ValueError:
            return [hub.Failure(502, f"the upstream sent an event that is not JSON: {data[:200]}")]
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "message_start":
            message = event.get("message") or {}
            self._usage = usage_to_hub(message.get("usage"))
            return [hub.Start(str(message.get("id", "")), str(message.get("model", "")), self._usage)]
        if kind == "content_block_start":
            return self._block_start(int(event.get("index", 0)), event.get("content_block") or {})
        if kind == "content_block_delta":
            return self._delta(int(event.get("index", 0)), event.get("delta") or {})
        if kind == "content_block_stop":
            return [hub.PartStop(int(event.get("index", 0)))]
        if kind == "message_delta":
            delta, usage = event.get("delta") or {}, event.get("usage") or {}
            merged = {**usage_from_hub(self._usage), **{k: v for k, v in usage.items() if isinstance(v, int)}}
            self._usage = usage_to_hub(merged)
            self._finish = hub.Finish(
                STOP_TO_HUB.get(str(delta.get("stop_reason")), "end"), self._usage, delta.get("stop_sequence")
            )
            return []
        if kind == "message_stop":
            finish, self._finish = self._finish or hub.Finish("end", self._usage), None
            return [finish]
        if kind == "error":
            error = event.get("error") or {}
            return [hub.Failure(_status_of(error.get("type")), str(error.get("message", "")), error.get("type"))]
        return []

    def _block_start(self, index: int, block: dict[str, Any]) -> list[hub.Event]:
        kind = block.get("type")
        if kind == "tool_use":
            events: list[hub.Event] = [
                hub.PartStart(index, "tool_call", str(block.get("id", "")), str(block.get("name", "")))
            ]
            if block.get("input"):
                events.append(hub.ArgumentsDelta(index, dumps(block["input"])))
            return events
        if kind in ("thinking", "redacted_thinking"):
            reasoning: list[hub.Event] = [hub.PartStart(index, "reasoning")]
            said = text(block.get("thinking"), "content_block.thinking")
            return reasoning + ([hub.TextDelta(index, said)] if said else [])
        start: list[hub.Event] = [hub.PartStart(index, "text")]
        said = text(block.get("text"), "content_block.text")
        return start + ([hub.TextDelta(index, said)] if said else [])

    def _delta(self, index: int, delta: dict[str, Any]) -> list[hub.Event]:
        kind = delta.get("type")
        if kind == "text_delta":
            return [hub.TextDelta(index, text(delta.get("text"), "delta.text"))]
        if kind == "thinking_delta":
            return [hub.TextDelta(index, text(delta.get("thinking"), "delta.thinking"))]
        if kind == "input_json_delta":
            return [hub.ArgumentsDelta(index, text(delta.get("partial_json"), "delta.partial_json"))]
        if kind == "signature_delta":
            return [hub.SignatureDelta(index, text(delta.get("signature"), "delta.signature"))]
        return []


def _status_of(error_type: Any) -> int:
    return next((status for status, name in ERROR_TYPES.items() if name == error_type), 500)


class StreamEncoder:
    """Hub events to the Anthropic SSE stream a strict client accepts: message_start (with usage)
    first, each block started before its deltas with the type its deltas need, message_delta with
    the final usage, message_stop last."""

    def __init__(self, model: str = "") -> None:
        self.model = model
        self._started = False
        self._open: tuple[int, str] | None = None  # client block index and kind
        self._next_index = 0
        self._finished = False

    def encode(self, events: list[hub.Event]) -> bytes:
        """The SSE bytes for EVENTS."""
        return b"".join(self._one(event) for event in events)

    def _one(self, event: hub.Event) -> bytes:
        if self._finished:
            return b""
        if isinstance(event, hub.Start):
            return self._start(event)
        out = b"" if self._started or isinstance(event, hub.Failure) else self._start(hub.Start())
        if isinstance(event, hub.PartStart):
            out += self._close_block()
            kind = {"text": "text", "reasoning": "thinking", "tool_call": "tool_use"}[event.kind]
            block: dict[str, Any] = (
                {"type": "tool_use", "id": tool_id(event.call_id), "name": event.name, "input": {}}
                if kind == "tool_use"
                else {"type": "thinking", "thinking": "", "signature": ""}
                if kind == "thinking"
                else {"type": "text", "text": ""}
            )
            self._open = (self._next_index, kind)
            self._next_index += 1
            out += encode(
                "content_block_start",
                {"type": "content_block_start", "index": self._open[0], "content_block": block},
            )
        elif isinstance(event, hub.TextDelta):
            delta = (
                {"type": "thinking_delta", "thinking": event.text}
                if self._open_kind("thinking")
                else {"type": "text_delta", "text": event.text}
            )
            out += self._delta(delta, "thinking" if delta["type"] == "thinking_delta" else "text")
        elif isinstance(event, hub.ArgumentsDelta):
            out += self._delta({"type": "input_json_delta", "partial_json": event.fragment}, "tool_use")
        elif isinstance(event, hub.SignatureDelta):
            out += self._delta({"type": "signature_delta", "signature": event.signature}, "thinking")
        elif isinstance(event, hub.PartStop):
            out += self._close_block()
        elif isinstance(event, hub.Finish):
            out += self._close_block()
            out += encode(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": STOP_FROM_HUB[event.stop], "stop_sequence": event.stop_sequence},
                    "usage": usage_from_hub(event.usage),
                },
            )
            out += encode("message_stop", {"type": "message_stop"})
            self._finished = True
        elif isinstance(event, hub.Failure):
            out += encode("error", error_body(event.status, event.message, event.type))
            self._finished = True
        return out

    def _start(self, event: hub.Start) -> bytes:
        if self._started:
            return b""
        self._started = True
        message: dict[str, Any] = {
            "id": message_id(event.id),
            "type": "message",
            "role": "assistant",
            "model": event.model or self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_from_hub(event.usage),
        }
        return encode("message_start", {"type": "message_start", "message": message})

    def _open_kind(self, kind: str) -> bool:
        return self._open is not None and self._open[1] == kind

    def _delta(self, delta: dict[str, Any], kind: str) -> bytes:
        """A delta into the open block; a delta the open block cannot take gets a block of its own."""
        out = b""
        if not self._open_kind(kind):
            out += self._close_block()
            block = {
                "text": {"type": "text", "text": ""},
                "thinking": {"type": "thinking", "thinking": "", "signature": ""},
            }.get(kind)
            if block is None:
                return out  # arguments with no tool call open: nothing could carry them
            self._open = (self._next_index, kind)
            self._next_index += 1
            out += encode(
                "content_block_start", {"type": "content_block_start", "index": self._open[0], "content_block": block}
            )
        assert self._open is not None
        return out + encode(
            "content_block_delta", {"type": "content_block_delta", "index": self._open[0], "delta": delta}
        )

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open = self._open[0], None
        return encode("content_block_stop", {"type": "content_block_stop", "index": index})
