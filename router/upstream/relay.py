"""The relay: a forwarded request waits for a slot, goes to its server, and its answer is relayed
as it arrives. A stream gets its headers early and keep-alive events while it waits, for a slot
or for a slow prompt's first byte, so clients that give up on silent connections keep waiting.

An unreachable server is 502 naming its URL, no answer within idle_timeout is 504, an upstream
that dies mid-stream ends the stream with an SSE error event, and the upstream's own 4xx/5xx
passes through unchanged (a context overflow becomes the client protocol's own error). When the
upstream speaks another API (`api:`), router.upstream.translation carries the request there and
the answer back, errors in the client's shape.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from router import progress as words
from router.answers import SSE_HEADERS, Head, Part, Trace
from router.edits import Edits
from router.errors import RouterError, UpstreamUnavailable
from router.log import progress
from router.protocols.base import Request
from router.secrets import CREDENTIAL_HEADERS, strip_query_credentials
from router.tokens import estimate_tokens
from router.upstream import admission, slots
from router.upstream.client import ConnectFailed, ResponseFailed, UpstreamClient, UpstreamResponse
from router.upstream.pool import Upstream
from router.upstream.queue import Server, Ticket
from router.upstream.slot_files import prompt_blocks
from router.upstream.translation import Translation, plan

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "expect"}
ERROR_BODY_LIMIT = 64 * 1024
REPEAT = 30.0  # seconds between two "still waiting" lines of one request


class UpstreamRefused(UpstreamUnavailable):
    """The server did not accept the connection: another server of the pool may take the request."""


class UpstreamBroke(RouterError):
    """The upstream failed after its answer had started."""

    def __init__(self, message: str) -> None:
        super().__init__(502, message, "api_error")


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


async def relay(
    request: Request, edits: Edits, upstream: Upstream, priority: str, client: UpstreamClient, trace: Trace
) -> AsyncIterator[Part]:
    """Wait for a slot on one of UPSTREAM's servers at PRIORITY, then relay its answer (in the
    client's API when the upstream speaks another)."""
    translation = plan(request, upstream, edits)
    body = translation.body(edits) if translation else edits.encode()
    if translation:
        trace.notes.append(translation.note)
    prefix = upstream.prefix_key(request)
    trace.upstream, trace.priority = upstream.name, priority
    ticket = admission.enter(upstream, priority, prefix, len(body))
    queued = not ticket.granted.done()
    waited = trace.queue_started = time.perf_counter()
    doing = _Doing(upstream, ticket)
    trace.now = doing.status
    if queued:
        place, in_line = upstream.gate.place(ticket) or (0, 0)
        progress.info(
            "#%s queued for upstream %s at priority %s: %d in flight, %d queued (this one %s of %d in line)",
            request.id,
            upstream.name,
            priority,
            upstream.gate.in_flight,
            upstream.gate.queued,
            words.ordinal(place),
            in_line,
        )
    deadline = asyncio.get_running_loop().time() + upstream.config.queue_timeout
    heartbeat = Heartbeat(request, upstream.config.keepalive)
    warm = upstream.warm
    blocks = prompt_blocks(body) if warm else []
    try:
        while True:
            if not ticket.granted.done():
                async for part in heartbeat.until(ticket.granted, deadline):
                    yield part
                if not ticket.granted.done():
                    raise admission.wait_expired(upstream)
            if trace.queue_wait is None:
                trace.queue_wait = time.perf_counter() - waited
            assert ticket.server is not None
            upstream.served(prefix, ticket.server)
            try:
                if warm:
                    await warm.before_turn(ticket.server, blocks, client)
                async for part in _exchange(
                    request, edits, body, upstream, ticket.server, client, heartbeat, trace, translation, doing
                ):
                    yield part
                if warm and trace.upstream_status is not None and trace.upstream_status < 400:
                    await warm.after_turn(ticket.server, blocks, upstream.gate)
                return
            except UpstreamRefused:
                # another server of the pool takes it; a request that had to queue also waits for a
                # restart within its queue_timeout; a fresh one to a lone server that is down fails fast
                if upstream.all_down() and not queued:
                    raise
                ticket = doing.ticket = upstream.gate.requeue(ticket)
    except (asyncio.CancelledError, GeneratorExit, ConnectionResetError):
        upstream.stats.cancelled += 1  # the client left, queued or mid-stream
        raise
    finally:
        if trace.queue_wait is None:
            trace.queue_wait = time.perf_counter() - waited
        upstream.gate.leave(ticket)


async def _exchange(
    request: Request,
    edits: Edits,
    body: bytes,
    upstream: Upstream,
    server: Server,
    client: UpstreamClient,
    heartbeat: Heartbeat,
    trace: Trace,
    translation: Translation | None = None,
    doing: _Doing | None = None,
) -> AsyncIterator[Part]:
    """One try on SERVER: send, then relay the answer."""
    config = upstream.config
    upstream.stats.forwarded += 1
    server.forwarded += 1
    upstream.stats.max_seen_in_flight = max(upstream.stats.max_seen_in_flight, upstream.gate.in_flight)
    trace.server = server.url
    if len(upstream.servers) > 1:
        trace.notes.append(f"server {server.url}")
    forward_auth = config.forward_client_auth
    query = request.query if forward_auth else strip_query_credentials(request.query)
    url = server.url + request.raw_path + (f"?{query}" if query else "")
    headers = request_headers(request, edits, upstream, server)
    if translation:  # the upstream's own path; the client's query belongs to the client's API
        url = server.url + translation.path
        headers = translation.headers(headers)
    sending = client.send(
        request.method,
        url,
        headers,
        body,
        config.connect_timeout,
        config.idle_timeout,
    )
    started = trace.sent_at = time.perf_counter()
    trace.answered_at = None
    # a request the server has not answered after `keepalive` seconds (a long prefill) is announced,
    # with its progress when the server is a llama-server; quick answers add no log lines
    waiting = _Announcement(request, upstream, server, config.keepalive, client)
    if doing is not None:
        doing.waiting = waiting
    try:
        if heartbeat.event:
            task = asyncio.ensure_future(sending)
            try:
                async for part in heartbeat.until(task):
                    yield part
            finally:
                if not task.done():
                    task.cancel()
                    task.add_done_callback(_close_late_response)
            up = task.result()
        else:
            up = await sending
    except ConnectFailed as exc:
        waiting.cancel()  # no answer will come: no more lines, no more /slots for it
        _count_error(upstream, server)
        server.health.mark_down(exc.reason)
        raise UpstreamRefused(
            502,
            f"ghost-router could not connect to upstream '{upstream.name}' at {server.url} ({exc.reason}). "
            f"Start the server there, or fix upstreams.{upstream.name}.url in the rules file (or --upstream).",
        ) from None
    except TimeoutError:
        waiting.cancel()
        _count_error(upstream, server)
        raise UpstreamUnavailable(
            504,
            f"ghost-router: upstream '{upstream.name}' at {server.url} sent no response headers within "
            f"{config.idle_timeout:g}s (idle_timeout). Check the server; raise idle_timeout for slow prompts.",
        ) from None
    except ResponseFailed as exc:
        waiting.cancel()
        _count_error(upstream, server)
        raise UpstreamUnavailable(
            502, f"ghost-router: upstream '{upstream.name}' at {server.url} failed before answering: it {exc}."
        ) from None
    except BaseException:  # failed, or the client left
        waiting.cancel()
        raise
    server.health.mark_up()
    trace.upstream_status = up.status
    trace.answered_at = time.perf_counter()
    if up.status >= 400 or not heartbeat.event:
        waiting.cancel()
        waiting.answered(up.status)
    complete = False

    async def next_chunk() -> bytes:
        try:
            return await up.read_chunk()
        except (TimeoutError, ResponseFailed) as exc:
            _count_error(upstream, server)
            reason = (
                f"sent nothing for {config.idle_timeout:g}s (idle_timeout)"
                if isinstance(exc, asyncio.TimeoutError)
                else str(exc)
            )
            raise UpstreamBroke(
                f"ghost-router: upstream '{upstream.name}' at {server.url} {reason} in the middle of the "
                "response. The answer is incomplete; retry the request."
            ) from None

    try:
        first = b""
        if up.status >= 400:
            first = await _read_up_to(next_chunk, ERROR_BODY_LIMIT)
            translated = request.protocol.upstream_error(up.status, first) if config.context_errors else None
            if translated:
                raise translated
            if heartbeat.started or translation:  # an SSE error event, or an error in the client's shape
                raise _error_from_body(up.status, first, keep_type=not translation)
        if translation:
            async with aclosing(translation.answer(up.status, _content_type(up), first, next_chunk)) as parts:
                async for part in _kept_alive(parts, heartbeat):
                    yield part
            complete = True
            return
        yield Head(up.status, response_headers(up), up.reason)
        if first:
            chunk = first
        elif heartbeat.event:
            # llama-server sends a stream's headers at once and only SSE comments while it reads the
            # prompt: the answer starts with its first content, and until then the client gets the
            # protocol's keep-alive events, as while waiting for headers
            heartbeat.started = True
            chunk = b""
            async for piece in _until_content(next_chunk, heartbeat):
                if isinstance(piece, Content):
                    chunk = piece.data
                    break
                yield piece
            waiting.answered(up.status)
        else:
            chunk = await next_chunk()
        while chunk:
            yield chunk
            chunk = await next_chunk()
        complete = True
    finally:
        waiting.cancel()
        trace.upstream_time = time.perf_counter() - started
        if complete:
            up.release()
        else:
            up.close()  # the server sees the request cancelled


async def _kept_alive(parts: AsyncIterator[Part], heartbeat: Heartbeat) -> AsyncIterator[Part]:
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


async def _until_content(
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


class _Announcement:
    """Logs a request still waiting for its server's answer after DELAY seconds (the upstream's
    keepalive; 10 s when that is off) and every REPEAT seconds after, then when the answer starts.
    Meanwhile the server's slots are followed for the request's prefill progress (router.upstream.slots)."""

    def __init__(self, request: Request, upstream: Upstream, server: Server, delay: float, client: UpstreamClient):
        self.request, self.upstream, self.url, self.started = request, upstream, server.url, time.perf_counter()
        self.said = False
        self.open = True
        self.prefill = slots.Prefill(request.id, lambda: estimate_tokens(request.protocol.text_for_counting(request)))
        self.slots = slots.watch(server)
        self.slots.add(self.prefill, client, _slots_headers(upstream, server))
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
class _Doing:
    """What a forwarded request is doing now: queued (its place in line), waiting for its server
    (with prefill progress), or answering. Read by /_router/status through Trace.now."""

    upstream: Upstream
    ticket: Ticket
    waiting: _Announcement | None = None

    def status(self) -> dict[str, object]:
        place = self.upstream.gate.place(self.ticket)
        if place is not None:
            return {"state": "queued", "place": place[0], "in_line": place[1]}
        if self.waiting is None:
            return {"state": "sending"}
        return self.waiting.status()


def _slots_headers(upstream: Upstream, server: Server) -> list[tuple[str, str]]:
    """The upstream's own headers (its credentials) for GET /slots."""
    headers = list(upstream.config.headers)
    if server.authorization and not any(name.lower() == "authorization" for name, _ in headers):
        headers.append(("Authorization", server.authorization))
    return headers


def _close_late_response(task: asyncio.Future[UpstreamResponse]) -> None:
    """A response that arrived after its client left is closed, not leaked."""
    if not task.cancelled() and task.exception() is None:
        task.result().close()


def request_headers(request: Request, edits: Edits, upstream: Upstream, server: Server) -> list[tuple[str, str]]:
    """The client's headers minus hop-by-hop ones (and those `Connection` names), minus client
    credentials (unless forward_client_auth), plus the upstream's and the rule's header edits."""
    config = upstream.config
    skipped = set(NOT_FORWARDED) | _connection_listed(request.headers.getall("Connection", []))
    if not config.forward_client_auth:
        skipped |= CREDENTIAL_HEADERS
    changed = {name.lower(): (name, value) for name, value in [*config.headers, *edits.headers.items()]}
    if server.authorization and "authorization" not in changed:
        changed["authorization"] = ("Authorization", server.authorization)
    headers = [
        (name, _sendable(value))
        for name, value in request.headers.items()
        if name.lower() not in skipped and name.lower() not in changed
    ]
    headers += [(name, value) for name, value in changed.values() if value is not None]
    return headers


def response_headers(up: UpstreamResponse) -> tuple[tuple[str, str], ...]:
    """The upstream's headers for the client, as received (UTF-8), minus hop-by-hop ones."""
    listed = _connection_listed(v.decode("latin-1") for k, v in up.raw_headers if k.lower() == b"connection")
    headers = []
    for name, value in up.raw_headers:
        text = name.decode("latin-1")
        if text.lower() not in HOP_BY_HOP and text.lower() not in listed:
            headers.append((text, value.decode("utf-8", "replace")))
    return tuple(headers)


def _connection_listed(values: Any) -> set[str]:
    return {token.strip().lower() for value in values for token in value.split(",") if token.strip()}


def _sendable(value: str) -> str:
    """A received header value that can be encoded again (invalid UTF-8 bytes become U+FFFD)."""
    return value if value.isascii() else value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _count_error(upstream: Upstream, server: Server) -> None:
    upstream.stats.errors += 1
    server.errors += 1


async def _read_up_to(next_chunk: Callable[[], Awaitable[bytes]], limit: int) -> bytes:
    """The body's first LIMIT bytes or more (all of it when shorter)."""
    chunks, size = [], 0
    while size < limit:
        chunk = await next_chunk()
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _content_type(up: UpstreamResponse) -> str:
    return next((v.decode("latin-1").lower() for k, v in up.raw_headers if k.lower() == b"content-type"), "")


def _error_from_body(status: int, raw: bytes, keep_type: bool = True) -> RouterError:
    """The upstream's error as a RouterError, for a stream whose headers already went out or for
    a client of another API (whose protocol then picks the error type: KEEP_TYPE false)."""
    message, error_type = raw.decode("utf-8", "replace"), None
    try:
        error = json.loads(raw).get("error")
        if isinstance(error, dict):
            message, error_type = str(error.get("message", message)), error.get("type")
        elif isinstance(error, str):
            message = error
    except (ValueError, AttributeError, RecursionError):
        pass
    return RouterError(status, message, error_type if isinstance(error_type, str) and keep_type else None)
