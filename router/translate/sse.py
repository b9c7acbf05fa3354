"""Server-sent events read incrementally from bytes as they arrive, in any pieces."""

from __future__ import annotations

from dataclasses import dataclass

from router.jsonutil import dumps


@dataclass(frozen=True)
class ServerEvent:
    """One event: its name (`message` when unnamed) and its data lines joined."""

    event: str
    data: str


class EventReader:
    """Collects bytes and yields the complete events in them (comments and ids are skipped)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[ServerEvent]:
        """The events CHUNK completes."""
        self._buffer += chunk
        events: list[ServerEvent] = []
        while True:
            line, found = self._next_line()
            if not found:
                return events
            if event := self._take(line):
                events.append(event)

    def close(self) -> list[ServerEvent]:
        """The last event, when the stream ends without its blank line."""
        line, self._buffer = self._buffer.decode("utf-8", "replace"), b""
        events = [event] if line and (event := self._take(line)) else []
        if event := self._take(""):
            events.append(event)
        return events

    def _next_line(self) -> tuple[str, bool]:
        buffer = self._buffer
        newline, ret = buffer.find(b"\n"), buffer.find(b"\r")
        if ret != -1 and (newline == -1 or ret < newline):
            if ret + 1 == len(buffer):
                return "", False  # a CR at the end: a CRLF may be split across chunks
            end = ret + 2 if buffer[ret + 1] == 0x0A else ret + 1
            cut = ret
        elif newline != -1:
            end = cut = newline
            end += 1
        else:
            return "", False
        self._buffer = buffer[end:]
        return buffer[:cut].decode("utf-8", "replace"), True

    def _take(self, line: str) -> ServerEvent | None:
        if not line:
            if not self._data and not self._event:
                return None
            event = ServerEvent(self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def encode(event: str | None, data: object) -> bytes:
    """One event as bytes: `event:` (when named) and its data as compact JSON."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {dumps(data)}\n\n".encode()
