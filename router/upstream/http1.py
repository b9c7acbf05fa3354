"""A lean HTTP/1.1 client for the forwarding hot path: keep-alive connections on asyncio
protocols, responses parsed by httptools (llhttp, Node.js's parser), body chunks handed on as
they arrive, nothing re-encoded.

Why not aiohttp's client (still used for everything else)? On every forwarded request it costs
about 0.15 ms more CPU and several more event-loop turns; that was most of the latency the router
added to a turn (docs/performance.md). This client does only what forwarding needs: one request
at a time per connection, Content-Length request bodies, any response framing llhttp reads.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict

PAUSE_ABOVE = 256 * 1024  # stop reading from the upstream while this much waits for a slow client
RESUME_BELOW = 64 * 1024
IDLE_PER_ORIGIN = 32  # keep-alive connections kept per server


class ConnectFailed(Exception):
    """The connection could not be opened (refused, unreachable, connect_timeout)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ResponseFailed(Exception):
    """The server closed the connection or sent something that is not HTTP."""


@dataclass(frozen=True)
class Origin:
    """Where a base URL points: host, port, TLS, and the path prefix requests go under."""

    host: str
    port: int
    tls: bool
    prefix: str
    host_header: str

    @classmethod
    def parse(cls, base_url: str) -> Origin:
        parts = urlsplit(base_url)
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        default = port == (443 if tls else 80)
        host = parts.hostname or "127.0.0.1"
        shown = f"[{host}]" if ":" in host else host
        return cls(host, port, tls, parts.path.rstrip("/"), shown if default else f"{shown}:{port}")


class _Connection(asyncio.Protocol):
    """One keep-alive connection; the parser's callbacks fill in the current response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None
        self.start()

    def start(self, head_only: bool = False) -> None:
        """Get ready for the next response (HEAD_ONLY: the answer to a HEAD has no body)."""
        self.head_only = head_only
        self.reason = ""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.keep_alive = False
        self.complete = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self.received = False
        self.error: ResponseFailed | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail("answered with a protocol upgrade, which a forwarded API request cannot use")
            self.close()
        except httptools.HttpParserError as exc:
            self._fail(f"sent something that is not an HTTP response ({exc})")
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self._fail(f"closed the connection ({exc or 'end of stream'})")

    # httptools callbacks
    def on_status(self, status: bytes) -> None:
        self.reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.keep_alive = self.parser.should_keep_alive() and not self.head_only  # llhttp knows it only here
        if self.head_only:
            self.complete = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > PAUSE_ABOVE and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # the reader's side
    def _fail(self, message: str) -> None:
        if self.error is None:
            self.error = ResponseFailed(message)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Until the parser has news; asyncio.TimeoutError after TIMEOUT seconds of silence."""
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter) if timeout > 0 else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def take_chunk(self) -> bytes:
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.paused and self.buffered < RESUME_BELOW and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return chunk

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(asyncio.TimeoutError())


class Response:
    """An upstream response whose headers have arrived; read the body with `read_chunk`."""

    def __init__(self, client: Http1Client, origin: Origin, connection: _Connection, idle_timeout: float) -> None:
        self._client, self._origin, self._connection, self._idle_timeout = client, origin, connection, idle_timeout
        self.status: int = connection.parser.get_status_code()
        self.reason = connection.reason
        self.raw_headers = connection.raw_headers  # (name, value) as received, names in their case

    @cached_property
    def headers(self) -> CIMultiDict[str]:
        """The response headers (decoded as latin-1, as HTTP defines them)."""
        return CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw_headers)

    def has_body_ready(self) -> bool:
        """True when body bytes (or the body's end) arrived with the headers."""
        return bool(self._connection.chunks) or self._connection.complete

    async def read_chunk(self) -> bytes:
        """The next piece of the body as it arrived (de-chunked), b"" at its end. Raises
        ResponseFailed if the connection breaks, asyncio.TimeoutError after idle_timeout of silence."""
        connection = self._connection
        while True:
            if connection.chunks:
                return connection.take_chunk()
            if connection.complete:
                return b""
            if connection.error is not None:
                raise connection.error
            await connection.wait(self._idle_timeout)

    def release(self) -> None:
        """The body was read to its end: keep the connection for the next request if it allows."""
        connection = self._connection
        if connection.complete and connection.keep_alive and not connection.closed:
            self._client.keep(self._origin, connection)
        else:
            connection.close()

    def close(self) -> None:
        """Drop the connection (the server sees the request cancelled)."""
        self._connection.close()


class Http1Client:
    """Keep-alive connections per origin; `request` returns once the response headers are in."""

    def __init__(self) -> None:
        self._idle: dict[Origin, list[_Connection]] = {}
        self._origins: dict[str, Origin] = {}
        self._tls: ssl.SSLContext | None = None

    async def request(
        self, method: str, base_url: str, target: str, headers: Iterable[tuple[str, str]] | bytes, body: bytes,
        connect_timeout: float, idle_timeout: float,
    ) -> Response:
        """Send METHOD BASE_URL+TARGET with HEADERS (name-value pairs, or header lines already
        encoded, each ending in CRLF) and BODY. Raises ConnectFailed, ResponseFailed, or
        asyncio.TimeoutError when no headers arrive within IDLE_TIMEOUT."""
        origin = self._origins.get(base_url)
        if origin is None:
            origin = self._origins[base_url] = Origin.parse(base_url)
        head = _request_head(method, origin, target, headers, body)
        while True:
            connection, reused = self._idle_connection(origin), True
            if connection is None:
                connection, reused = await self._connect(origin, connect_timeout), False
            connection.start(head_only=method == "HEAD")
            assert connection.transport is not None
            connection.transport.writelines([head, body] if body else [head])
            try:
                while not connection.headers_done:
                    if connection.error is not None:
                        raise connection.error
                    await connection.wait(idle_timeout)
            except ResponseFailed:
                if reused and not connection.received:
                    continue  # a kept-alive connection the server had closed meanwhile: once more on a new one
                raise
            except BaseException:
                connection.close()
                raise
            return Response(self, origin, connection, idle_timeout)

    def keep(self, origin: Origin, connection: _Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) < IDLE_PER_ORIGIN:
            idle.append(connection)
        else:
            connection.close()

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection
        return None

    async def _connect(self, origin: Origin, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = None
        if origin.tls:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(_Connection, origin.host, origin.port, ssl=tls, server_hostname=origin.host if tls else None),
                timeout or None,
            )
        except asyncio.TimeoutError:
            raise ConnectFailed(f"no connection within {timeout:g}s (connect_timeout)") from None
        except OSError as exc:
            raise ConnectFailed(exc.strerror or str(exc)) from None
        return connection

    def close(self) -> None:
        """Close every kept-alive connection."""
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def _request_head(method: str, origin: Origin, target: str, headers: Iterable[tuple[str, str]] | bytes, body: bytes) -> bytes:
    if not isinstance(headers, bytes):
        headers = encode_header_lines(headers)
    length = f"Content-Length: {len(body)}\r\n" if body or method in ("POST", "PUT", "PATCH") else ""
    start = f"{method} {origin.prefix}{target} HTTP/1.1\r\nHost: {origin.host_header}\r\n".encode("utf-8", "surrogateescape")
    return b"".join((start, headers, length.encode(), b"\r\n"))


def encode_header_lines(headers: Iterable[tuple[str, str]]) -> bytes:
    """`Name: value` CRLF lines for HEADERS; a value holding CR or LF is left out (it would split the head)."""
    return "".join(
        [f"{name}: {value}\r\n" for name, value in headers if "\r" not in value and "\n" not in value]
    ).encode("utf-8", "surrogateescape")
