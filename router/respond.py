"""The one place that writes answers to the client: whole answers in one write, streamed ones part
by part as they arrive, each write bounded by the send timeout (a client that stops reading, say
a terminal stopped with Ctrl-Z, is dropped and its upstream slot freed).

Every answer carries the router's timing up to its head (docs/operate.md, "Response headers"):
  x-ghost-router-queue-ms     the wait in the upstream's queue for a slot (0 for answers made here)
  x-ghost-router-overhead-ms  the router's own time: from the request's body read whole to the head
                              going out, minus the queue wait and the wait for the upstream's head
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict

from router.answers import Answer, Head, Result, Streamed, Trace
from router.errors import InternalError, RouterError
from router.log import logger
from router.protocols.base import Protocol
from router.translate.sse import EventReader


class ClientStalled(ConnectionResetError):
    """The client took no bytes for send_timeout seconds; its connection was closed."""


@dataclass(frozen=True)
class Sent:
    """What went out: the response, its status, the body bytes written, and what went wrong late."""

    response: web.StreamResponse
    status: int
    bytes_out: int
    note: str = ""


QUEUE_HEADER = "x-ghost-router-queue-ms"
OVERHEAD_HEADER = "x-ghost-router-overhead-ms"


async def send(
    http: web.BaseRequest, result: Result, protocol: Protocol, send_timeout: float, since: float | None = None
) -> Sent:
    """Write RESULT. An error raised before any header went out is the caller's to answer; after
    that, an event stream gets the protocol's error event and anything else is cut short (a bug
    too: an InternalError, its traceback in the log).
    SINCE (perf_counter: when the request was read) starts the clock of the timing headers."""
    if isinstance(result, Answer):
        response = web.Response(status=result.status, body=result.body, headers=_timed(result.headers, since, None))
        await _bounded(response.prepare(http), http, send_timeout)
        await _bounded(response.write_eof(), http, send_timeout)
        return Sent(response, result.status, len(result.body))
    return await _relay(http, result, protocol, send_timeout, since)


def _timed(headers: tuple[tuple[str, str], ...], since: float | None, trace: Trace | None) -> CIMultiDict[str]:
    """HEADERS plus the timing headers (replacing any an upstream sent), measured now."""
    merged: CIMultiDict[str] = CIMultiDict(headers)
    if since is None:
        return merged
    now = time.perf_counter()
    queue = upstream = 0.0
    if trace is not None:
        if trace.queue_wait is not None:
            queue = trace.queue_wait
        elif trace.queue_started is not None:  # a stream's early head while it is still queued
            queue = now - trace.queue_started
        if trace.sent_at is not None:  # the wait for the server's head (so far, for an early head)
            upstream = (trace.answered_at or now) - trace.sent_at
    overhead = max(now - since - queue - upstream, 0.0)
    for name, seconds in ((QUEUE_HEADER, queue), (OVERHEAD_HEADER, overhead)):
        merged.popall(name, None)
        merged[name] = f"{seconds * 1000:.1f}"
    return merged


async def _relay(
    http: web.BaseRequest, result: Streamed, protocol: Protocol, send_timeout: float, since: float | None
) -> Sent:
    response: web.StreamResponse | None = None
    status = written = 0
    before = last = b""  # the last two parts written: where the stream's last event is
    async with contextlib.aclosing(result.parts) as parts:  # type: ignore[type-var]
        try:
            async for part in parts:
                if isinstance(part, Head):
                    if response is None:
                        response = web.StreamResponse(
                            status=part.status, reason=part.reason, headers=_timed(part.headers, since, result.trace)
                        )
                        status = part.status
                        await _bounded(response.prepare(http), http, send_timeout)
                    continue
                assert response is not None, "a streamed answer starts with its Head"
                if not part:
                    continue
                await _bounded(response.write(part), http, send_timeout)
                written += len(part)
                before, last = last, part
            if response is None:
                raise RouterError(502, "ghost-router: the upstream ended the exchange without an answer.", "api_error")
            await _bounded(response.write_eof(), http, send_timeout)
            return Sent(response, status, written)
        except (asyncio.CancelledError, ConnectionResetError) as exc:
            # the client left: after the stream's last event it has the whole answer (the log says so)
            if (
                response is not None
                and not isinstance(exc, ClientStalled)
                and response.content_type == "text/event-stream"
            ):
                events = EventReader().feed(before + last)
                if events and protocol.stream_complete(events[-1]):
                    result.trace.delivered = (status, written)
            raise
        except Exception as fault:  # before the head: the caller answers it; after: ended in words, even a bug
            if response is None:
                raise
            error = fault if isinstance(fault, RouterError) else internal_error(fault, "after the answer's head")
            return Sent(response, status, written, await _cut_short(http, response, protocol, error))


def internal_error(fault: Exception, where: str) -> InternalError:
    """FAULT, which nothing raised on purpose, logged with its traceback (WHERE it happened), and
    the 500 that tells the client so. The request's own line follows with the same words."""
    logger.error("internal error %s", where, exc_info=fault)
    return InternalError(fault)


def short(message: str) -> str:
    """MESSAGE cut to fit a log line's note."""
    return message if len(message) <= 300 else message[:297] + "..."


async def _cut_short(
    http: web.BaseRequest, response: web.StreamResponse, protocol: Protocol, error: RouterError
) -> str:
    """End an answer whose headers went out: an SSE error event, or a closed connection (a truncated
    body must not look complete). Returns the note for the log."""
    note = short(error.message)
    try:
        if response.content_type == "text/event-stream":
            await response.write(protocol.sse_error_event(error))
            await response.write_eof()
        elif http.transport is not None:
            http.transport.close()
    except ConnectionResetError:
        note += " (client also gone)"
    return note


async def _bounded(write: object, http: web.BaseRequest, send_timeout: float) -> None:
    """Await WRITE (a coroutine); a client that takes nothing for SEND_TIMEOUT is disconnected."""
    try:
        async with asyncio.timeout(send_timeout):
            await write  # type: ignore[misc]
    except TimeoutError:
        if http.transport is not None:
            http.transport.abort()
        raise ClientStalled(f"the client took no bytes for {send_timeout:g}s (limits.send_timeout)") from None
