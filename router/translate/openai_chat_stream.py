"""OpenAI chat completion streams to and from the hub's events: a decoder for an upstream's chunks
(local servers' shapes included) and an encoder for a client's."""

from __future__ import annotations

import secrets
from typing import Any

from router.jsonutil import dumps, loads
from router.translate import hub
from router.translate.fields import UNREADABLE
from router.translate.openai_chat import (
    STOP_FROM_HUB,
    STOP_TO_HUB,
    error_body,
    new_call_id,
    usage_from_hub,
    usage_to_hub,
)
from router.translate.sse import EventReader, encode
from router.translate.think import ThinkSplitter


class _Call:
    """A streamed tool call as the decoder tracks it."""

    def __init__(self, call_id: str, name: str) -> None:
        self.id, self.name = call_id, name
        self.arguments = ""
        self.snapshots = False  # the server resends the whole arguments so far each time
        self.part: int | None = None  # its hub part index once started


class StreamDecoder:
    """Chat completion chunks (SSE bytes) from an upstream to hub events.

    Several tool calls may arrive in one chunk and their fragments in any size; a server that
    sends the whole arguments so far each time (snapshots) is told apart from fragments, so the
    hub gets fragments only. Parts come out one at a time, in the order they begin."""

    def __init__(self) -> None:
        self._reader = EventReader()
        self._started = False
        self._parts = 0
        self._open: tuple[int, str] | None = None  # hub index and kind ("text", "reasoning", "tool_call")
        self._calls: dict[int, _Call] = {}
        self._open_call: int | None = None
        self._waiting: list[int] = []  # calls begun while another's arguments were still incomplete JSON
        self._think = ThinkSplitter()
        self._stop: hub.StopReason | None = None
        self._usage = hub.Usage()
        self._done = False
        self._saw_call = False

    def feed(self, chunk: bytes) -> list[hub.Event]:
        """The events CHUNK completes."""
        return [event for item in self._reader.feed(chunk) for event in self._read(item.data)]

    def close(self) -> list[hub.Event]:
        """The events left at the end of the upstream's stream: the open part's end and Finish."""
        events = [event for item in self._reader.close() for event in self._read(item.data)]
        return events + self._finish()

    def _finish(self) -> list[hub.Event]:
        if self._done:
            return []
        self._done = True
        events = self._text_pieces(self._think.close())
        for position in self._waiting:  # the calls that waited behind another, whole
            events += self._begin_call(position)
        self._waiting = []
        events += self._close_open()
        if self._stop is None:
            return [*events, hub.Failure(502, "the upstream's stream ended before its finish_reason")]
        stop = "tool_use" if self._stop == "end" and self._saw_call else self._stop
        return [*self._start({}), *events, hub.Finish(stop, self._usage)]

    def _read(self, data: str) -> list[hub.Event]:
        """The events of one upstream event; a Failure for one whose fields have the wrong types."""
        try:
            return self._decode(data)
        except UNREADABLE as exc:
            return [hub.Failure(502, f"the upstream sent an event that cannot be read ({exc}): {data[:200]}")]

    def _decode(self, data: str) -> list[hub.Event]:
        if self._done:
            return []
        if data.strip() == "[DONE]":
            if self._stop is None:
                self._stop = "end"
            return self._finish()
        try:
            chunk = loads(data)
        except ValueError:
            return [hub.Failure(502, f"the upstream sent a chunk that is not JSON: {data[:200]}")]
        if not isinstance(chunk, dict):
            return []
        if isinstance(error := chunk.get("error"), dict | str):
            self._done = True
            message = error.get("message", "") if isinstance(error, dict) else error
            kind = error.get("type") if isinstance(error, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
            return [
                hub.Failure(code if isinstance(code, int) else 500, str(message), None if kind is None else str(kind))
            ]
        events = self._start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self._usage = usage_to_hub(chunk["usage"])
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                events += self._into("reasoning", reasoning)
            content = delta.get("content")
            if isinstance(content, str) and content:
                events += self._text_pieces(self._think.feed(content))
            for call in delta.get("tool_calls") or []:
                if isinstance(call, dict):
                    events += self._tool_fragment(call)
            if choice.get("finish_reason"):
                self._stop = STOP_TO_HUB.get(str(choice["finish_reason"]), "end")
        return events

    def _start(self, chunk: dict[str, Any]) -> list[hub.Event]:
        if self._started:
            return []
        self._started = True
        return [hub.Start(str(chunk.get("id", "")), str(chunk.get("model", "")))]

    def _text_pieces(self, pieces: list[tuple[str, str]]) -> list[hub.Event]:
        return [event for kind, text in pieces for event in self._into(kind, text)]

    def _into(self, kind: str, text: str) -> list[hub.Event]:
        """TEXT into an open part of KIND, opening one (and closing another) when needed."""
        events: list[hub.Event] = []
        if not text:
            return events
        if self._open is None or self._open[1] != kind:
            events += self._close_open()
            events.append(self._open_part("reasoning" if kind == "reasoning" else "text"))
        assert self._open is not None
        return [*events, hub.TextDelta(self._open[0], text)]

    def _open_part(self, kind: Any, call_id: str = "", name: str = "") -> hub.PartStart:
        self._open = (self._parts, kind)
        self._parts += 1
        return hub.PartStart(self._open[0], kind, call_id, name)

    def _close_open(self) -> list[hub.Event]:
        if self._open is None:
            return []
        index, self._open, self._open_call = self._open[0], None, None
        return [hub.PartStop(index)]

    def _tool_fragment(self, fragment: dict[str, Any]) -> list[hub.Event]:
        self._saw_call = True
        position = fragment.get("index")
        if not isinstance(position, int):  # no index: a new call when it has an id, else the latest
            position = len(self._calls) if fragment.get("id") or not self._calls else list(self._calls)[-1]
        function = fragment.get("function") or {}
        call = self._calls.get(position)
        if call is None:
            call = self._calls[position] = _Call(str(fragment.get("id") or new_call_id()), "")
        if function.get("name") and not call.name:
            call.name = str(function["name"])
        arguments = function.get("arguments")
        if isinstance(arguments, dict):
            arguments = dumps(arguments)
        piece = _increment(call, arguments) if isinstance(arguments, str) and arguments else ""
        call.arguments += piece
        if call.part is not None:  # begun: its part is open, unless another call began after it
            if not piece:
                return []
            if self._open_call != position:
                return [hub.Failure(502, "the upstream sent more arguments for a tool call after the next one began")]
            return [hub.ArgumentsDelta(call.part, piece), *self._after_open_call()]
        if not call.name or position in self._waiting:
            return []  # not begun until its name is known; or waiting behind another call
        if self._open_call is not None and not _is_json(self._calls[self._open_call].arguments):
            # another call's arguments are still coming: some servers interleave two calls' fragments,
            # and a part cannot be reopened, so this one waits until the other's arguments are whole
            self._waiting.append(position)
            return []
        return self._begin_call(position)

    def _begin_call(self, position: int) -> list[hub.Event]:
        """Open the part of the call at POSITION (closing the open one), with its arguments so far."""
        call = self._calls[position]
        events = self._text_pieces(self._think.close()) + self._close_open()
        start = self._open_part("tool_call", call.id, call.name)
        call.part, self._open_call = start.index, position
        events.append(start)
        if call.arguments:
            events.append(hub.ArgumentsDelta(start.index, call.arguments))
        return events

    def _after_open_call(self) -> list[hub.Event]:
        """The calls that waited, begun in order once the open call's arguments are whole JSON."""
        events: list[hub.Event] = []
        while self._waiting and self._open_call is not None and _is_json(self._calls[self._open_call].arguments):
            events += self._begin_call(self._waiting.pop(0))
        return events


def _increment(call: _Call, arguments: str) -> str:
    """What ARGUMENTS add to CALL's arguments so far: all of them when they are a fragment, the
    new end when the server resends the whole so far (a snapshot)."""
    so_far = call.arguments
    if not call.snapshots and so_far and arguments.startswith(so_far) and not _is_json(so_far + arguments):
        call.snapshots = True
    if call.snapshots:
        return arguments[len(so_far) :] if arguments.startswith(so_far) else ""
    return arguments


def _is_json(text: str) -> bool:
    try:
        loads(text)
    except ValueError:
        return False
    return True


class StreamEncoder:
    """Hub events to chat completion chunks: the role first, content and reasoning_content deltas,
    tool_calls fragments by index, the finish_reason, a usage chunk, then `[DONE]`."""

    def __init__(self, model: str = "", include_usage: bool = True) -> None:
        self.model = model
        self.include_usage = include_usage
        self._id = f"chatcmpl-{secrets.token_hex(12)}"
        self._started = False
        self._kinds: dict[int, str] = {}
        self._calls: dict[int, int] = {}  # hub part index -> tool call index
        self._finished = False

    def encode(self, events: list[hub.Event]) -> bytes:
        """The SSE bytes for EVENTS."""
        return b"".join(self._one(event) for event in events)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return encode(None, self._envelope([choice]))

    def _envelope(self, choices: list[Any], **extra: Any) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": self.model,
            "choices": choices,
            **extra,
        }

    def _one(self, event: hub.Event) -> bytes:
        if self._finished:
            return b""
        out = b""
        if not self._started and not isinstance(event, hub.Failure):
            self._started = True
            if isinstance(event, hub.Start):
                self.model = event.model or self.model
                if event.id.startswith("chatcmpl"):
                    self._id = event.id
            out += self._chunk({"role": "assistant", "content": ""})
        if isinstance(event, hub.PartStart):
            self._kinds[event.index] = event.kind
            if event.kind == "tool_call":
                self._calls[event.index] = len(self._calls)
                call = {
                    "index": self._calls[event.index],
                    "id": event.call_id,
                    "type": "function",
                    "function": {"name": event.name, "arguments": ""},
                }
                out += self._chunk({"tool_calls": [call]})
        elif isinstance(event, hub.TextDelta):
            field = "reasoning_content" if self._kinds.get(event.index) == "reasoning" else "content"
            out += self._chunk({field: event.text})
        elif isinstance(event, hub.ArgumentsDelta) and event.index in self._calls:
            call = {"index": self._calls[event.index], "function": {"arguments": event.fragment}}
            out += self._chunk({"tool_calls": [call]})
        elif isinstance(event, hub.Finish):
            out += self._chunk({}, STOP_FROM_HUB[event.stop])
            if self.include_usage:
                out += encode(None, self._envelope([], usage=usage_from_hub(event.usage)))
            out += b"data: [DONE]\n\n"
            self._finished = True
        elif isinstance(event, hub.Failure):
            out += encode(None, error_body(event.status, event.message, event.type))
            self._finished = True
        return out
