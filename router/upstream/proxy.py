"""Forwarding through an upstream's gate with true streaming: bytes go out as they arrive.

Errors follow the spec: a full queue or a wait past queue_timeout is 529 overloaded_error, an
unreachable upstream 502 naming its URL, an upstream that dies mid-stream ends the stream with
an SSE error event, and the upstream's own 4xx/5xx passes through unchanged. A streaming request
that waits long in the queue gets its response headers early and keep-alive pings meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Awaitable, Callable

from aiohttp import web

from router.errors import Overloaded, RouterError, UpstreamUnavailable
from router.exchange import Exchange
from router.upstream.overflow import detect as detect_overflow
from router.upstream.http1 import ConnectFailed, Http1Client, Response, ResponseFailed, encode_header_lines
from router.upstream.pool import Upstream, UpstreamConfig
from router.upstream.queue import QueueFull, Server, Ticket

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer", b"trailers",
     b"transfer-encoding", b"upgrade"}
)  # header names (lower case) as they come off the wire
REQUEST_HEADERS_SKIPPED = HOP_BY_HOP | {b"host", b"content-length", b"expect"}
REQUEST_HEADERS_SKIPPED_WITH_AUTH = REQUEST_HEADERS_SKIPPED | {b"x-api-key", b"authorization"}  # unless forward_client_auth
ERROR_BODY_LIMIT = 64 * 1024


class UpstreamRefused(UpstreamUnavailable):
    """The upstream did not accept the connection."""


class UpstreamBroke(RouterError):
    """The upstream failed after its response had started."""

    def __init__(self, message: str) -> None:
        super().__init__(502, message, "api_error")


async def forward(ex: Exchange, upstream: Upstream, priority: str, client: Http1Client) -> web.StreamResponse:
    """Wait for a slot on one of UPSTREAM's servers at PRIORITY, then stream its answer to the client."""
    ex.priority, ex.upstream = priority, upstream.name
    upstream.config.edits.apply(ex)
    if upstream.all_down():
        raise UpstreamUnavailable(503, _down_message(upstream))
    prefix = upstream.prefix_key(ex)
    try:
        ticket = upstream.gate.enter(priority, upstream.preferred(prefix))
    except QueueFull as exc:
        raise Overloaded(
            f"ghost-router: upstream '{upstream.name}' ({upstream.urls}) is busy: {exc}. "
            "The request was not sent; retry, or raise max_queue in the rules file."
        ) from None
    waited = time.perf_counter()
    deadline = asyncio.get_running_loop().time() + upstream.config.queue_timeout
    queued = not ticket.granted.done()
    try:
        while True:
            if not ticket.granted.done():
                await _wait_for_slot(ex, ticket, upstream, deadline)
            if ex.queue_wait is None:
                ex.queue_wait = time.perf_counter() - waited
            assert ticket.server is not None
            upstream.served(prefix, ticket.server)
            try:
                return await _proxy(ex, upstream, ticket.server, client)
            except UpstreamRefused:
                # another server of the pool takes it; a request that had to queue also waits for a
                # restart within its queue_timeout; a fresh one to a lone server that is down fails fast
                if upstream.all_down() and not queued:
                    raise
                ticket = upstream.gate.requeue(ticket)
    except (asyncio.CancelledError, ConnectionResetError):
        upstream.stats.cancelled += 1  # the client left, queued or mid-stream
        raise
    finally:
        if ex.queue_wait is None:
            ex.queue_wait = time.perf_counter() - waited
        upstream.gate.leave(ticket)


def _down_message(upstream: Upstream) -> str:
    servers = upstream.servers
    since = time.strftime("%H:%M:%S", time.localtime(min(s.health.down_since or 0 for s in servers)))
    if len(servers) == 1:
        where, errors = f"at {servers[0].url}", servers[0].health.last_error
    else:
        where, errors = f"(all {len(servers)} servers)", "; ".join(f"{s.url}: {s.health.last_error}" for s in servers)
    return (
        f"ghost-router: upstream '{upstream.name}' {where} is down since {since} ({errors}); "
        "ghost-router checks it every second. Start the server there, or fix its url in the rules file (or --upstream)."
    )


async def _wait_for_slot(ex: Exchange, ticket: Ticket, upstream: Upstream, deadline: float) -> None:
    """Wait for TICKET's grant until DEADLINE; a stream that waits past `keepalive` gets headers and pings."""
    config = upstream.config
    if await _keep_alive_until(ex, ticket.granted, config.keepalive, deadline):
        return
    if upstream.all_down():
        raise UpstreamUnavailable(
            503, f"ghost-router: upstream '{upstream.name}' ({upstream.urls}) went down and did not come back within "
            f"queue_timeout ({config.queue_timeout:g}s). Start the server there, or fix its url in the rules file."
        )
    raise Overloaded(
        f"ghost-router: request waited {config.queue_timeout:g}s in the queue of upstream "
        f"'{upstream.name}' ({upstream.urls}) without a free slot (queue_timeout). "
        "The upstream is busy with other requests; retry, or raise queue_timeout in the rules file."
    )


async def _keep_alive_until(
    ex: Exchange, waited_on: asyncio.Future[Any], keepalive: float, deadline: float = float("inf"), first_ping: float | None = None
) -> bool:
    """Wait for WAITED_ON until DEADLINE (loop time); True if it finished. Meanwhile a streaming
    request gets its response headers and an SSE ping every KEEPALIVE seconds (the first after
    FIRST_PING seconds, default KEEPALIVE), so clients that give up on silent connections keep
    waiting, whether for a slot or for a slow prompt's first token."""
    loop = asyncio.get_running_loop()
    ping = ex.protocol.sse_keepalive_event() if ex.view.stream and keepalive > 0 else None
    next_ping = loop.time() + (keepalive if first_ping is None else first_ping) if ping else float("inf")
    while not waited_on.done():
        now = loop.time()
        if now >= deadline:
            return False
        await asyncio.wait({waited_on}, timeout=min(deadline, next_ping) - now)
        if ping and not waited_on.done() and loop.time() >= next_ping:
            if ex.response is None:
                ex.response = web.StreamResponse(
                    headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
                )
                await ex.response.prepare(ex.request)
                ex.status = 200
            await ex.response.write(ping)
            next_ping += keepalive
    return True


async def _request(ex: Exchange, config: UpstreamConfig, client: Http1Client, server: Server, body: bytes) -> Response:
    """Send the request; a stream whose upstream is slow to answer gets keep-alive pings meanwhile."""
    sending = client.request(
        ex.method, server.url, ex.path_qs, _request_headers(ex, config), body, config.connect_timeout, config.idle_timeout
    )
    if not (ex.view.stream and config.keepalive > 0):
        return await sending
    # The pings run beside the request rather than around it: this coroutine resumes the moment the
    # headers arrive, before the connection can be seen dropping, so no early bytes are lost. They
    # start only once `keepalive` has passed without headers: most answers begin sooner, and a task
    # per request would cost every stream time on the hot path.
    pingers: list[asyncio.Future[bool]] = []
    timer = asyncio.get_running_loop().call_later(config.keepalive, _start_pinging, ex, config.keepalive, pingers)
    try:
        return await sending
    finally:
        timer.cancel()
        for pinger in pingers:
            pinger.cancel()


def _start_pinging(ex: Exchange, keepalive: float, pingers: list[asyncio.Future[bool]]) -> None:
    """Headers and pings for a stream whose upstream has not answered within KEEPALIVE."""
    pinger = asyncio.ensure_future(_keep_alive_until(ex, asyncio.get_running_loop().create_future(), keepalive, first_ping=0))
    pinger.add_done_callback(lambda task: task.cancelled() or task.exception())  # a client gone mid-ping is the handler's business
    pingers.append(pinger)


def _request_headers(ex: Exchange, config: UpstreamConfig) -> bytes:
    """The client's header lines as it sent them, minus hop-by-hop ones and (unless configured)
    client keys, plus the rule's edits; encoded for the request head."""
    skipped = REQUEST_HEADERS_SKIPPED if config.forward_client_auth else REQUEST_HEADERS_SKIPPED_WITH_AUTH
    edits = [*config.headers, *ex.header_edits.items()]
    if edits:
        skipped = skipped | {name.lower().encode("utf-8", "surrogateescape") for name, _ in edits}
    if ex.request is not None:
        received = ex.request.raw_headers  # bytes as received: nothing to decode and encode again
    else:
        received = tuple((k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape")) for k, v in ex.headers.items())
    parts: list[bytes] = []
    for name, value in received:
        if name.lower() not in skipped:
            parts += (name, b": ", value, b"\r\n")
    if edits:
        last = {name.lower(): (name, value) for name, value in edits}  # a later edit of the same header wins
        parts.append(encode_header_lines((name, value) for name, value in last.values() if value is not None))
    return b"".join(parts)


def _response_headers(raw_headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """The upstream's response headers minus hop-by-hop ones, for the client."""
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers if k.lower() not in HOP_BY_HOP]


async def _proxy(ex: Exchange, upstream: Upstream, server: Server, client: Http1Client) -> web.StreamResponse:
    config = upstream.config
    upstream.stats.forwarded += 1
    server.forwarded += 1
    upstream.stats.max_seen_in_flight = max(upstream.stats.max_seen_in_flight, upstream.gate.in_flight)
    if len(upstream.servers) > 1:
        ex.note += f"server {server.url}; "
    body = ex.body_bytes()
    started = time.perf_counter()
    try:
        up = await _request(ex, config, client, server, body)
    except ConnectFailed as exc:
        _count_error(upstream, server)
        server.health.mark_down(exc.reason)
        raise UpstreamRefused(
            502,
            f"ghost-router could not connect to upstream '{upstream.name}' at {server.url} "
            f"({exc.reason}). Start the server there, or fix upstreams.{upstream.name}.url "
            "in the rules file (or --upstream).",
        ) from None
    except asyncio.TimeoutError:
        _count_error(upstream, server)
        raise UpstreamUnavailable(
            504,
            f"ghost-router: upstream '{upstream.name}' at {server.url} sent no response headers within "
            f"{config.idle_timeout:g}s (idle_timeout). Check the server; raise idle_timeout for slow prompts.",
        ) from None
    except ResponseFailed as exc:
        _count_error(upstream, server)
        raise UpstreamUnavailable(
            502, f"ghost-router: upstream '{upstream.name}' at {server.url} failed before answering: it {exc}."
        ) from None
    server.health.mark_up()
    complete = False

    async def next_chunk() -> bytes:
        try:
            return await up.read_chunk()
        except (ResponseFailed, asyncio.TimeoutError) as exc:
            _count_error(upstream, server)
            reason = f"sent nothing for {config.idle_timeout:g}s (idle_timeout)" if isinstance(exc, asyncio.TimeoutError) else str(exc)
            raise UpstreamBroke(
                f"ghost-router: upstream '{upstream.name}' at {server.url} {reason} in the middle of the "
                "response. The answer is incomplete; retry the request."
            ) from None

    try:
        head = b""
        if up.status >= 400:
            head = await _read_up_to(next_chunk, ERROR_BODY_LIMIT)
            overflow = detect_overflow(head) if config.context_errors else None
            translated = overflow and ex.protocol.context_overflow(overflow.prompt_tokens, overflow.context)
            if translated:
                raise translated
            if ex.response is not None:  # a stream whose headers already went out: an SSE error event
                raise _error_from_body(up.status, head)
        ex.status = up.status
        if ex.response is None:
            # when the first piece of the answer came with the headers (or was read above), both
            # leave in one write, so the client wakes once (a separate header write cost ~0.4 ms on 2 cores)
            kind = _HeadersWithFirstChunk if head or up.has_body_ready() else web.StreamResponse
            ex.response = kind(status=up.status, reason=up.reason, headers=_response_headers(up.raw_headers))
        await ex.response.prepare(ex.request)  # also completes keep-alive headers a cancelled pinger began
        chunk = head or await next_chunk()
        while chunk:
            await ex.response.write(chunk)
            ex.bytes_out += len(chunk)
            chunk = await next_chunk()
        complete = True
        await ex.response.write_eof()
        return ex.response
    finally:
        ex.upstream_time = time.perf_counter() - started
        if complete:
            up.release()
        else:
            up.close()  # closes the upstream connection: the server sees the request cancelled


class _HeadersWithFirstChunk(web.StreamResponse):
    """A streamed response whose headers go out with its first chunk (one write, so the client
    wakes once). Used only when that chunk is already here: a stream whose upstream sent headers
    and then goes quiet still gets its headers at once."""

    _send_headers_immediately = False  # aiohttp's switch (web.Response sets it too); older aiohttp ignores it


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


def _error_from_body(status: int, raw: bytes) -> RouterError:
    """The upstream's error as a RouterError, for a stream whose headers already went out."""
    message = raw.decode("utf-8", "replace")
    error_type = None
    try:
        error = json.loads(raw).get("error")
        if isinstance(error, dict):
            message, error_type = str(error.get("message", message)), error.get("type")
        elif isinstance(error, str):
            message = error
    except (ValueError, AttributeError):
        pass
    return RouterError(status, message, error_type if isinstance(error_type, str) else None)
