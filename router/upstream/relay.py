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

from router import progress as words
from router.answers import Head, Part, Trace
from router.edits import Edits
from router.errors import RouterError, UpstreamUnavailable
from router.log import progress
from router.protocols.base import Request
from router.secrets import strip_query_credentials
from router.upstream import admission
from router.upstream.client import ConnectFailed, ResponseFailed, UpstreamClient, UpstreamResponse
from router.upstream.headers import content_type, request_headers, response_headers
from router.upstream.pool import Upstream
from router.upstream.queue import PriorityGate, Server
from router.upstream.slot_files import prompt_blocks
from router.upstream.translation import Translation, plan
from router.upstream.waiting import Announcement, Content, Doing, Heartbeat, kept_alive, until_content
from router.upstream.warm import WarmStarts

ERROR_BODY_LIMIT = 64 * 1024


class UpstreamRefused(UpstreamUnavailable):
    """The server did not accept the connection: another server of the pool may take the request."""


class UpstreamBroke(RouterError):
    """The upstream failed after its answer had started."""

    def __init__(self, message: str) -> None:
        super().__init__(502, message, "api_error")


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
    doing = Doing(upstream, ticket)
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
            server = ticket.server
            assert server is not None
            upstream.served(prefix, server)
            try:
                if warm:
                    await warm.before_turn(server, blocks, client)
                async for part in _exchange(
                    request, edits, body, upstream, server, client, heartbeat, trace, translation, doing
                ):
                    yield part
                if warm and trace.upstream_status is not None and trace.upstream_status < 400:
                    await warm.after_turn(server, blocks, upstream.gate)
                return
            except UpstreamRefused:
                # another server of the pool takes it; a request that had to queue also waits for a
                # restart within its queue_timeout; a fresh one to a lone server that is down fails fast
                if upstream.all_down() and not queued:
                    raise
                ticket = doing.ticket = upstream.gate.requeue(ticket)
            except BaseException:
                if warm and trace.upstream_status is not None and trace.upstream_status < 400:
                    # a client that hangs up right after the answer's last event is marked delivered by
                    # router.respond as the cancellation passes it, once this frame is left: looked at then
                    loop = asyncio.get_running_loop()
                    loop.call_soon(_after_delivered, warm, server, blocks, upstream.gate, trace)
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
    doing: Doing | None = None,
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
    waiting = Announcement(request, upstream, server, config.keepalive, client)
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
            async with aclosing(translation.answer(up.status, content_type(up), first, next_chunk)) as parts:
                async for part in kept_alive(parts, heartbeat):
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
            async for piece in until_content(next_chunk, heartbeat):
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


_after_turns: set[asyncio.Task[None]] = set()  # held here: the loop keeps only weak references to tasks


def _after_delivered(warm: WarmStarts, server: Server, blocks: list[str], gate: PriorityGate, trace: Trace) -> None:
    """A turn whose client left after the answer's last event still counts and schedules its save."""
    if trace.delivered:
        task = asyncio.get_running_loop().create_task(warm.after_turn(server, blocks, gate))
        _after_turns.add(task)
        task.add_done_callback(_after_turns.discard)


def _close_late_response(task: asyncio.Future[UpstreamResponse]) -> None:
    """A response that arrived after its client left is closed, not leaked."""
    if not task.cancelled() and task.exception() is None:
        task.result().close()


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
