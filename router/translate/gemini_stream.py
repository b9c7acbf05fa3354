"""Gemini streams (streamGenerateContent?alt=sse) to and from the hub's events: a decoder for an
upstream's chunks and an encoder for a client's.

Each chunk of a Gemini stream is a whole GenerateContentResponse holding the next parts: text
and thought text arrive in pieces, a function call whole. The stream has no end marker: it is
complete when the connection ends after a chunk with a finishReason.
"""

from __future__ import annotations

import secrets
from typing import Any

from router.jsonutil import dumps, loads
from router.translate import hub
from router.translate.fields import UNREADABLE
from router.translate.gemini import (
    MADE_UP_ID,
    STOP_FROM_HUB,
    arguments_object,
    error_body,
    new_call_id,
    stop_to_hub,
    usage_from_hub,
    usage_to_hub,
)
from router.translate.sse import EventReader


def encode(data: object) -> bytes:
    """One event as Google writes it: a `data:` line and CRLF line ends."""
    return f"data: {dumps(data)}\r\n\r\n".encode()


class StreamDecoder:
    """Gemini SSE bytes from an upstream to hub events; parts come out one at a time."""

    def __init__(self) -> None:
        self._reader = EventReader()
        self._started = False
        self._parts = 0
        self._open: tuple[int, str] | None = None  # hub index and kind ("text", "reasoning")
        self._reason: Any = None
        self._last: dict[str, Any] = {}
        self._usage = hub.Usage()
        self._called = False
        self._done = False

    def feed(self, chunk: bytes) -> list[hub.Event]:
        """The events CHUNK completes."""
        return [event for item in self._reader.feed(chunk) for event in self._read(item.data)]

    def close(self) -> list[hub.Event]:
        """The events left when the upstream's stream ends: the open part's end and Finish."""
        events = [event for item in self._reader.close() for event in self._read(item.data)]
        if self._done:
            return events
        self._done = True
        if self._reason is None and not _blocked(self._last):
            return [
                *events,
                *self._close_open(),
                hub.Failure(502, "the upstream's stream ended before its finishReason"),
            ]
        stop = stop_to_hub(self._reason, self._last, self._called)
        return [*events, *self._start({}), *self._close_open(), hub.Finish(stop, self._usage)]

    def _read(self, data: str) -> list[hub.Event]:
        """The events of one upstream chunk; a Failure for one whose fields have the wrong types."""
        if self._done:
            return []
        try:
            return self._decode(data)
        except UNREADABLE as exc:
            return [hub.Failure(502, f"the upstream sent a chunk that cannot be read ({exc}): {data[:200]}")]

    def _decode(self, data: str) -> list[hub.Event]:
        try:
            chunk = loads(data)
        except ValueError:
            return [hub.Failure(502, f"the upstream sent a chunk that is not JSON: {data[:200]}")]
        if not isinstance(chunk, dict):
            return []
        if isinstance(error := chunk.get("error"), dict | str):
            self._done = True
            message = error.get("message", "") if isinstance(error, dict) else error
            code = error.get("code") if isinstance(error, dict) else None
            return [hub.Failure(code if isinstance(code, int) and 400 <= code < 600 else 500, str(message))]
        self._last = chunk
        events = self._start(chunk)
        if isinstance(chunk.get("usageMetadata"), dict):
            self._usage = usage_to_hub(chunk["usageMetadata"])
        candidates = chunk.get("candidates")
        candidate = candidates[0] if isinstance(candidates, list) and candidates else {}
        if not isinstance(candidate, dict):
            return events
        content = candidate.get("content")
        for part in content.get("parts") or [] if isinstance(content, dict) else []:
            if isinstance(part, dict):
                events += self._part(part)
        if candidate.get("finishReason") is not None:
            self._reason = candidate["finishReason"]
        return events

    def _start(self, chunk: dict[str, Any]) -> list[hub.Event]:
        if self._started:
            return []
        self._started = True
        return [hub.Start(str(chunk.get("responseId", "")), str(chunk.get("modelVersion", "")))]

    def _part(self, part: dict[str, Any]) -> list[hub.Event]:
        signature = part.get("thoughtSignature")
        signature = signature if isinstance(signature, str) and signature else None
        said = part.get("text")
        if part.get("thought") is True:
            events = self._into("reasoning", said if isinstance(said, str) else "", force=bool(signature))
            return events + self._signature(signature)
        events = []
        if signature:  # a signature on an answer part: an empty reasoning part just before it
            events += self._open_part("reasoning") + self._signature(signature)
        if isinstance(said, str):
            return events + self._into("text", said)
        call = part.get("functionCall")
        if isinstance(call, dict):
            self._called = True
            call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else new_call_id()
            events += self._open_part("tool_call", str(call_id), str(call.get("name", "")))
            args = call.get("args")
            events.append(hub.ArgumentsDelta(self._parts - 1, dumps(args if args is not None else {})))
            return events + self._close_open()
        return events

    def _signature(self, signature: str | None) -> list[hub.Event]:
        """SIGNATURE for the open (reasoning) part."""
        return [hub.SignatureDelta(self._open[0], signature)] if signature and self._open else []

    def _into(self, kind: str, said: str, force: bool = False) -> list[hub.Event]:
        """SAID into an open part of KIND, opening one (and closing another) when needed; FORCE
        opens one even for no text."""
        events: list[hub.Event] = []
        if not said and not force:
            return events
        if self._open is None or self._open[1] != kind:
            events += self._open_part(kind)
        assert self._open is not None
        return events + ([hub.TextDelta(self._open[0], said)] if said else [])

    def _open_part(self, kind: Any, call_id: str = "", name: str = "") -> list[hub.Event]:
        """The open part's stop, then a new part of KIND."""
        events = self._close_open()
        self._open = (self._parts, kind)
        self._parts += 1
        return [*events, hub.PartStart(self._open[0], kind, call_id, name)]

    def _close_open(self) -> list[hub.Event]:
        if self._open is None:
            return []
        index, self._open = self._open[0], None
        return [hub.PartStop(index)]


def _blocked(chunk: dict[str, Any]) -> bool:
    feedback = chunk.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


class StreamEncoder:
    """Hub events to the Gemini chunks Gemini CLI and the google-genai SDK read: text and thought
    text as they come (never an empty text part), each function call whole once its arguments are
    complete, then a chunk with the finishReason and the usage; an error chunk if the stream fails."""

    def __init__(self, model: str = "") -> None:
        self.model = model
        self._id = secrets.token_hex(12)
        self._kinds: dict[int, str] = {}
        self._calls: dict[int, tuple[str, str, list[str]]] = {}  # part index -> id, name, argument fragments
        self._signatures: dict[int, str] = {}
        self._said: set[int] = set()  # reasoning parts that had text
        self._pending_signature: str | None = None  # from an empty reasoning part, for the next part
        self._finished = False

    def encode(self, events: list[hub.Event]) -> bytes:
        """The SSE bytes for EVENTS."""
        return b"".join(self._one(event) for event in events)

    def _chunk(self, parts: list[dict[str, Any]], **candidate: Any) -> bytes:
        if self._pending_signature and parts:
            parts = [{**parts[0], "thoughtSignature": self._pending_signature}, *parts[1:]]
            self._pending_signature = None
        content = {"role": "model", "parts": parts}
        usage = candidate.pop("usage", None)
        return encode(
            {
                "candidates": [{"content": content, **candidate, "index": 0}],
                **({"usageMetadata": usage} if usage is not None else {}),
                "modelVersion": self.model,
                "responseId": self._id,
            }
        )

    def _one(self, event: hub.Event) -> bytes:
        if self._finished:
            return b""
        if isinstance(event, hub.Start):
            self.model = event.model or self.model
            self._id = event.id or self._id
        elif isinstance(event, hub.PartStart):
            self._kinds[event.index] = event.kind
            if event.kind == "tool_call":
                self._calls[event.index] = (event.call_id, event.name, [])
        elif isinstance(event, hub.TextDelta) and event.text:
            if self._kinds.get(event.index) == "reasoning":
                self._said.add(event.index)
                return self._chunk([{"text": event.text, "thought": True}])
            return self._chunk([{"text": event.text}])
        elif isinstance(event, hub.ArgumentsDelta) and event.index in self._calls:
            self._calls[event.index][2].append(event.fragment)
        elif isinstance(event, hub.SignatureDelta):
            self._signatures[event.index] = self._signatures.get(event.index, "") + event.signature
        elif isinstance(event, hub.PartStop):
            return self._stop(event.index)
        elif isinstance(event, hub.Finish):
            out = self._flush_signature()
            usage = usage_from_hub(event.usage)
            self._finished = True
            return out + self._chunk([], finishReason=STOP_FROM_HUB[event.stop], usage=usage)
        elif isinstance(event, hub.Failure):
            self._finished = True
            return encode(error_body(event.status, event.message))
        return b""

    def _stop(self, index: int) -> bytes:
        """A part is complete: a function call goes out whole; a reasoning part's signature goes
        out with it (after its text) or onto the next part (when it had no text)."""
        if index in self._calls:
            call_id, name, fragments = self._calls.pop(index)
            call: dict[str, Any] = {"name": name, "args": arguments_object("".join(fragments))}
            if call_id and not call_id.startswith(MADE_UP_ID):
                call = {"id": call_id, **call}
            return self._chunk([{"functionCall": call}])
        signature = self._signatures.pop(index, None)
        if not signature:
            return b""
        if index in self._said:
            return self._chunk([{"text": "", "thought": True, "thoughtSignature": signature}])
        out = self._flush_signature()
        self._pending_signature = signature
        return out

    def _flush_signature(self) -> bytes:
        """A signature still waiting for a part, as a thought part of its own."""
        if not self._pending_signature:
            return b""
        signature, self._pending_signature = self._pending_signature, None
        return self._chunk([{"text": "", "thought": True, "thoughtSignature": signature}])
