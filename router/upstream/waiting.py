"""What a forwarded request does while it waits: keep-alive events for its client (an early head,
then the protocol's keep-alive event every `keepalive` seconds, for a slot, a slow first byte, or
a translated stream's SSE comments), and lines in the log and /_router/status saying what it waits
for (its place in the queue, the server's prefill progress from GET /slots)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from router.answers import SSE_HEADERS, Head, Part
from router.log import progress
from router.protocols.base import Request
from router.tokens import estimate_tokens
from router.upstream import slots
from router.upstream.client import UpstreamClient
from router.upstream.headers import slots_headers
from router.upstream.pool import Upstream
from router.upstream.queue import Server, Ticket

REPEAT = 30.0  # seconds between two "still waiting" lines of one request


class Heartbeat:
    """Keep-alive for a waiting stream: an early head, then a keep-alive event every `keepalive` seconds."""

    def __init__(self, request: Request, keepalive: float) -> None:
        self.event = request.protocol.sse_keepalive_event() if request.view.stream and keepalive > 0 else None
        self.keepalive = keepalive
        self.started = False  # the early head went out

    async def until(self, waited: asyncio.Future[Any], deadline: float = float("inf")) -> AsyncIterator[Part]:
        """Parts to send while WAITED is pending, until DEADLINE (loop time)."""
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self.keepalive if self.event else float("inf")
        while not waited.done() and loop.time() < deadline:
            await asyncio.wait({waited}, timeout=min(deadline, next_beat) - loop.time())
            if self.event and not waited.done() and loop.time() >= next_beat:
                if not self.started:
                    self.started = True
                    yield Head(200, SSE_HEADERS, early=True)
                yield self.event
                next_beat += self.keepalive


async def kept_alive(parts: AsyncIterator[Part], heartbeat: Heartbeat) -> AsyncIterator[Part]:
    """PARTS, with HEARTBEAT's keep-alive events (and its early head) while the next part is slow:
    a translated stream reads the upstream's SSE comments during a long prefill and has nothing
    to send for them."""
    if heartbeat.event is None:
        async for part in parts:
            yield part
        return
    while True:
        task = asyncio.ensure_future(anext(parts))
        try:
            async for beat in heartbeat.until(task):
                yield beat
        finally:
            if not task.done():  # the client left: the translation stops before it is closed
                task.cancel()
                await asyncio.wait({task})
        try:
            part = task.result()
        except StopAsyncIteration:
            return
        heartbeat.started = heartbeat.started or isinstance(part, Head)
        yield part


@dataclass(frozen=True)
class Content:
    """The first bytes of an answer's content (not SSE comments)."""

    data: bytes


async def until_content(
    next_chunk: Callable[[], Awaitable[bytes]], heartbeat: Heartbeat
) -> AsyncIterator[Part | Content]:
    """The upstream's SSE comment lines as they arrive, with HEARTBEAT's keep-alive events between them
    every `keepalive`, then the first chunk with content (b"" if the body ends first) as Content."""
    assert heartbeat.event is not None
    at_line_start = True
    while True:
        task = asyncio.ensure_future(next_chunk())
        try:
            async for beat in heartbeat.until(task):
                yield beat if at_line_start or not isinstance(beat, bytes) else b"\n" + beat
                at_line_start = True
        finally:
            if not task.done():
                task.cancel()
        chunk = task.result()
        if chunk and _only_sse_comments(chunk):
            yield chunk
            at_line_start = chunk.endswith(b"\n")
            continue
        yield Content(chunk)
        return


def _only_sse_comments(chunk: bytes) -> bool:
    """Whether CHUNK holds nothing but SSE comment lines (`:...`) and blank lines."""
    return all(not line.strip() or line.startswith(b":") for line in chunk.split(b"\n"))


class Announcement:
    """Logs a request still waiting for its server's answer after DELAY seconds (the upstream's
    keepalive; 10 s when that is off) and every REPEAT seconds after, then when the answer starts.
    Meanwhile the server's slots are followed for the request's prefill progress (router.upstream.slots)."""

    def __init__(self, request: Request, upstream: Upstream, server: Server, delay: float, client: UpstreamClient):
        self.request, self.upstream, self.url, self.started = request, upstream, server.url, time.perf_counter()
        self.said = False
        self.open = True
        self.prefill = slots.Prefill(request.id, lambda: estimate_tokens(request.protocol.text_for_counting(request)))
        self.slots = slots.watch(server)
        self.slots.add(self.prefill, client, slots_headers(upstream, server))
        self.timer = asyncio.get_running_loop().call_later(delay if delay > 0 else 10.0, self._say)

    def _say(self) -> None:
        self.said = True
        progress.info(
            "#%s sent to upstream %s at %s %.0f s ago, still waiting for its answer (%s)",
            self.request.id,
            self.upstream.name,
            self.url,
            time.perf_counter() - self.started,
            self.prefill.describe() or "the server may be reading a long prompt",
        )
        self.timer = asyncio.get_running_loop().call_later(REPEAT, self._say)

    def status(self) -> dict[str, object]:
        """For /_router/status: waiting for the server's answer, with the prefill's progress when known."""
        if not self.open:
            return {"state": "answering", "server": self.url}
        return {"state": "waiting", "server": self.url, "progress": self.prefill.status()}

    def answered(self, status: int) -> None:
        self.cancel()
        if self.said:
            progress.info(
                "#%s upstream %s answering: status %d after %.1f s",
                self.request.id,
                self.upstream.name,
                status,
                time.perf_counter() - self.started,
            )
            self.said = False

    def cancel(self) -> None:
        self.timer.cancel()
        self.open = False
        self.slots.remove(self.prefill)


@dataclass
class Doing:
    """What a forwarded request is doing now: queued (its place in line), waiting for its server
    (with prefill progress), or answering. Read by /_router/status through Trace.now."""

    upstream: Upstream
    ticket: Ticket
    waiting: Announcement | None = None

    def status(self) -> dict[str, object]:
        place = self.upstream.gate.place(self.ticket)
        if place is not None:
            return {"state": "queued", "place": place[0], "in_line": place[1]}
        if self.waiting is None:
            return {"state": "sending"}
        return self.waiting.status()
