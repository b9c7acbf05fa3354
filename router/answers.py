"""What actions return: a complete answer, or a stream of parts that arrives while it is relayed.

Actions and protocol adapters make these values; one place (router.respond) writes them to the
client, so no other module touches the aiohttp response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

SSE_HEADERS = (("Content-Type", "text/event-stream; charset=utf-8"), ("Cache-Control", "no-cache"))
JSON_CONTENT = (("Content-Type", "application/json"),)


@dataclass(frozen=True)
class Answer:
    """A whole answer: status, headers and body bytes."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, body: bytes, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
        """A JSON body."""
        return cls(status, body, (*JSON_CONTENT, *headers))

    @classmethod
    def events(cls, payload: bytes, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
        """A complete server-sent-event stream made locally (a fake reply), sent in one write."""
        return cls(200, payload, (*SSE_HEADERS, *headers))


@dataclass(frozen=True)
class Head:
    """A streamed answer's status line and headers. `early`: sent before the upstream answered
    (a waiting stream's keep-alive), so a later head of the same answer is not sent again."""

    status: int
    headers: tuple[tuple[str, str], ...]
    reason: str | None = None
    early: bool = False


Part = Head | bytes


@dataclass
class Trace:
    """What a forward did, filled in as it goes and read by the log line when the answer ends."""

    upstream: str = ""
    priority: str = ""
    server: str = ""
    queue_wait: float | None = None
    upstream_time: float | None = None
    upstream_status: int | None = None
    notes: list[str] = field(default_factory=list)
    queue_started: float | None = None  # perf_counter when it entered its upstream's queue
    sent_at: float | None = None  # when it was sent to its server (the latest try)
    answered_at: float | None = None  # when that server's answer (status and headers) arrived
    now: Callable[[], dict[str, object]] | None = None  # what it is doing now (queue place, prefill), for status
    delivered: tuple[int, int] | None = None  # (status, bytes) when the client left after the stream's last event


@dataclass
class Streamed:
    """An answer relayed as it arrives: a Head first, then body bytes. The iterator raises a
    RouterError for a failure (rendered as an error answer before the head, an SSE error event
    after it) and is closed when the client leaves."""

    parts: AsyncIterator[Part]
    trace: Trace = field(default_factory=Trace)


Result = Answer | Streamed
