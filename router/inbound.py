"""A guard in front of aiohttp's request handler: a deadline for a connection's first request head, a connection cap."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from aiohttp import web

# Seconds an answered connection keeps reading (and dropping) what the client still sends before it closes: closing
# a socket with unread bytes sends a reset, which can destroy the answer before the client has read it.
LINGER = 2.0


@dataclass(frozen=True)
class InboundLimits:
    """Limits on inbound connections; the defaults follow nginx's client_header_timeout and worker_connections."""

    # Seconds from accept until the first request head (request line and headers) has fully arrived, else 408.
    header_timeout: float = 60.0
    # Connections open at once; past it the oldest one still without a request head is closed, else the new one 503s.
    max_connections: int = 1024

    def __post_init__(self) -> None:
        """Refuse limits that would turn every connection away."""
        if not self.header_timeout > 0 or self.max_connections < 1:
            raise ValueError(f"header_timeout must be > 0 and max_connections >= 1, not {self}")


def _answer(status: str, text: str) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, its body one line of TEXT."""
    body = f"ghost-router {text}\n".encode()
    head = f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class ConnectionGuard:
    """A protocol factory around aiohttp's (runner.server) that times first request heads and caps connections."""

    def __init__(self, limits: InboundLimits, factory: Callable[[], asyncio.Protocol]) -> None:
        """Guard the connections whose protocols FACTORY makes."""
        self.limits = limits
        self.factory = factory
        self._open = 0  # from connection_made to connection_lost, answered ones included
        self._draining = 0  # of those, the ones the guard has answered and is closing
        self._waiting: dict[_Guarded, None] = {}  # served but their first head is incomplete, oldest first
        cap, wait = f"its limit of {limits.max_connections} connections", f"{limits.header_timeout:g} s"
        self._late = _answer(
            "408 Request Timeout",
            f"closed this connection: no whole request head within {wait} of connecting;"
            " send the request line and headers at once, on a new connection.",
        )
        self._evicted = _answer(
            "408 Request Timeout",
            "closed this connection, still without a whole request head,"
            f" to make room ({cap}); send the request again on a new connection.",
        )
        self._full = _answer(
            "503 Service Unavailable", f"is at {cap}, all busy with requests; retry shortly, or raise max_connections."
        )

    @property
    def open_connections(self) -> int:
        """Connections open now, including ones the guard has answered and is closing."""
        return self._open

    def __call__(self) -> asyncio.Protocol:
        """The protocol of one new connection."""
        return _Guarded(self)

    def _admit(self, conn: _Guarded) -> None:
        """Count a new connection and serve it, making room if it is one too many, else answer 503."""
        self._open += 1
        if self._open - self._draining > self.limits.max_connections:
            if not self._waiting:
                conn.answer(self._full)
                return
            next(iter(self._waiting)).answer(self._evicted)
        self._waiting[conn] = None
        conn.serve(self.factory(), self.limits.header_timeout)


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's protocol, behind a watch for the end of the first request head."""

    __slots__ = ("answered", "guard", "inner", "tail", "timer", "transport", "watching")

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.transport: asyncio.Transport | None = None
        self.inner: asyncio.Protocol | None = None  # None when the guard turned the connection away
        self.timer: asyncio.TimerHandle | None = None  # the first head's deadline, then the answered one's linger
        self.tail: bytes | None = None  # the first head's last 3 bytes so far; None while nothing but CR/LF came
        self.watching = False
        self.answered = False

    def serve(self, inner: asyncio.Protocol, timeout: float) -> None:
        """Hand the connection to INNER and start the first head's deadline."""
        self.inner, self.watching = inner, True
        self.timer = asyncio.get_running_loop().call_later(timeout, self.answer, self.guard._late)
        inner.connection_made(cast(asyncio.Transport, self.transport))

    def settle(self) -> None:
        """Stop watching for the first head."""
        if self.watching:
            self.watching = False
            del self.guard._waiting[self]
            cast(asyncio.TimerHandle, self.timer).cancel()

    def answer(self, response: bytes) -> None:
        """Write RESPONSE, stop passing bytes to aiohttp, and close once the client has read it or LINGER passed."""
        self.settle()
        transport = self.transport
        if transport is None or transport.is_closing() or self.answered:
            return
        self.answered = True
        self.guard._draining += 1
        transport.write(response)
        if self.guard._draining > self.guard.limits.max_connections or not transport.can_write_eof():
            transport.close()  # lingering connections are capped too: past the cap they close at once
            return
        transport.write_eof()
        self.timer = asyncio.get_running_loop().call_later(LINGER, transport.close)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport's kind
        self.guard._admit(self)

    def data_received(self, data: bytes) -> None:
        if self.watching:  # empty lines may come before a request line (RFC 9112 2.2): they do not end the head
            seen = data.lstrip(b"\r\n") if self.tail is None else self.tail + data
            if b"\n\r\n" in seen or b"\n\n" in seen:  # the empty line that ends the head (CRLF or bare LF)
                self.settle()
            elif seen:
                self.tail = seen[-3:]
        if self.inner is not None and not self.answered:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.inner is None or self.answered:
            return None  # the client has read the answer: close
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.settle()
        if self.timer is not None:
            self.timer.cancel()
        self.guard._open -= 1
        self.guard._draining -= self.answered
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


async def start_site(
    runner: web.BaseRunner, host: str, port: int, limits: InboundLimits, *, guard: ConnectionGuard | None = None
) -> asyncio.AbstractServer:
    """Listen on HOST:PORT for RUNNER (set up) through GUARD (default: a new ConnectionGuard(limits, runner.server))."""
    if runner.server is None:
        raise RuntimeError("start_site() needs `await runner.setup()` first")
    if guard is None:
        guard = ConnectionGuard(limits, runner.server)
    elif guard.limits != limits or guard.factory is not runner.server:
        raise ValueError("the guard must be ConnectionGuard(limits, runner.server)")
    return await asyncio.get_running_loop().create_server(guard, host, port, reuse_address=True)
