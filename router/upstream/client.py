"""The HTTP client forwarding uses, behind a small interface: aiohttp's client protocol and writer,
with a connection pool of its own instead of ClientSession's per-request machinery.

The framing is aiohttp's: each connection is aiohttp's `ResponseHandler` (the protocol under
ClientSession, with its llhttp parser) and the request head is written by aiohttp's
`StreamWriter` (which refuses control characters in a header). So interim 1xx answers are
skipped, bodies framed by the connection closing are read to the end, a connection with bytes
left over after its answer is not reused, HEAD and 204/304 have no body, and header blocks are
bounded (MAX_HEADERS headers of at most MAX_FIELD_SIZE bytes), as with ClientSession. What a
proxy does not need is left out: cookies, redirects, proxies, tracing, URL normalisation, and
the per-request objects that carry them (docs/performance.md, "The forwarding client", has the
first byte this saves). What ClientSession does not do for a POST, this module does: an answer
that shows a reused keep-alive connection was closed by the server's idle timer (a silent close,
or a 408) is retried on a fresh connection.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import time
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.http import RawResponseMessage
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_writer import StreamWriter
from aiohttp.streams import StreamReader

MAX_FIELD_SIZE = 8190  # bytes per header line, nginx's large_client_header_buffers size
MAX_HEADERS = 100  # header lines per answer: ~800 KB at most in all
RETRIES_ON_STALE = 2
KEEPALIVE = 15.0  # seconds an idle connection is kept for reuse, as aiohttp's connector keeps them
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class ConnectFailed(Exception):
    """No connection could be made; `reason` says why (refused, unknown host, timeout)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ResponseFailed(Exception):
    """The upstream broke the exchange (closed, reset, or sent something that is not HTTP)."""


class _Stale(Exception):
    """A reused connection turned out closed before the answer began: the request may be sent again
    (never raised for a fresh connection)."""


@dataclass(frozen=True)
class _Origin:
    """Where a URL's requests go: one pool of connections each."""

    scheme: str
    host: str
    port: int


class _Headers:
    """A header list in the shape aiohttp's header writer reads (it only calls items())."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def items(self) -> list[tuple[str, str]]:
        return self.pairs


@dataclass
class UpstreamResponse:
    """An upstream's answer whose body is read in chunks as it arrives."""

    message: RawResponseMessage
    payload: StreamReader
    _connection: ResponseHandler
    _release: _Pool

    @property
    def status(self) -> int:
        """The HTTP status."""
        return self.message.code

    @property
    def reason(self) -> str | None:
        """The reason phrase."""
        return self.message.reason

    @property
    def raw_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """The headers as received."""
        return self.message.raw_headers

    async def read_chunk(self) -> bytes:
        """The next piece of the body as it arrives (b"" at its end). Raises ResponseFailed if the
        upstream breaks it off, asyncio.TimeoutError when it sends nothing for idle_timeout."""
        try:
            return await self.payload.readany()
        except aiohttp.ServerTimeoutError:
            raise TimeoutError from None
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, ConnectionError) as exc:
            raise ResponseFailed(_describe(exc)) from None

    def release(self) -> None:
        """The body was read whole: the connection may serve another request."""
        self._release.put(self._connection)

    def close(self) -> None:
        """Drop the connection (the upstream sees the request cancelled)."""
        self._connection.close()


class _Pool:
    """Idle keep-alive connections to one origin, newest last."""

    def __init__(self) -> None:
        self.idle: list[tuple[ResponseHandler, float]] = []
        self._sweep: asyncio.TimerHandle | None = None

    def take(self) -> ResponseHandler | None:
        """An idle connection still open and not past KEEPALIVE, else None (the others are closed)."""
        now = time.monotonic()
        while self.idle:
            connection, since = self.idle.pop()
            if connection.is_connected() and not connection.should_close and now - since < KEEPALIVE:
                return connection
            connection.close()
        return None

    def put(self, connection: ResponseHandler) -> None:
        """CONNECTION finished an exchange: keep it if it can serve another."""
        if connection.is_connected() and not connection.should_close:
            self.idle.append((connection, time.monotonic()))
            if self._sweep is None:
                self._sweep = asyncio.get_running_loop().call_later(KEEPALIVE, self._close_expired)
        else:
            connection.close()

    def _close_expired(self) -> None:
        """Close the connections idle for KEEPALIVE (a server keeps a thread or slot for each open one)."""
        self._sweep = None
        now = time.monotonic()
        expired = [connection for connection, since in self.idle if now - since >= KEEPALIVE]
        self.idle = [(connection, since) for connection, since in self.idle if now - since < KEEPALIVE]
        for connection in expired:
            connection.close()
        if self.idle:
            self._sweep = asyncio.get_running_loop().call_later(KEEPALIVE, self._close_expired)

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for connection, _ in self.idle:
            connection.close()
        self.idle.clear()


class UpstreamClient:
    """Keep-alive connections to the upstream servers; one per router, closed with it."""

    def __init__(self) -> None:
        self._pools: defaultdict[_Origin, _Pool] = defaultdict(_Pool)
        self._tls: ssl.SSLContext | None = None

    async def send(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes,
        connect_timeout: float,
        idle_timeout: float,
    ) -> UpstreamResponse:
        """Send the request; return once the answer's headers arrived. Raises ConnectFailed,
        ResponseFailed, or asyncio.TimeoutError (no answer within IDLE_TIMEOUT)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ConnectFailed(f"not an http:// or https:// URL: {url}")
        origin = _Origin(scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = _head_fields(parts.netloc, parts.username, parts.password, headers, method, body)
        pool = self._pools[origin]
        for _ in range(RETRIES_ON_STALE):
            reused = pool.take()
            if reused is None:
                break
            try:
                return await self._exchange(reused, pool, method, target, head, body, idle_timeout, reused=True)
            except _Stale:
                continue  # a keep-alive connection the server had already closed
        connection = await self._connect(origin, connect_timeout)
        return await self._exchange(connection, pool, method, target, head, body, idle_timeout, reused=False)

    async def _connect(self, origin: _Origin, timeout: float) -> ResponseHandler:
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if origin.scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: ResponseHandler(loop), origin.host, origin.port, ssl=tls
                )
        except TimeoutError:
            raise ConnectFailed(f"no connection within {timeout:g}s") from None
        except OSError as exc:  # asyncio words a refusal "Connect call failed (...)": the errno says which
            errno = None if isinstance(exc, socket.gaierror) else exc.errno  # getaddrinfo's codes are not errnos
            reason = os.strerror(errno) if errno else exc.strerror or str(exc) or type(exc).__name__
            raise ConnectFailed(reason) from None
        return connection

    async def _exchange(
        self,
        connection: ResponseHandler,
        pool: _Pool,
        method: str,
        target: str,
        head: list[tuple[str, str]],
        body: bytes,
        idle_timeout: float,
        reused: bool,
    ) -> UpstreamResponse:
        connection.set_response_params(
            skip_payload=method == "HEAD",
            read_until_eof=True,
            auto_decompress=False,
            read_timeout=idle_timeout,
            max_field_size=MAX_FIELD_SIZE,
            max_headers=MAX_HEADERS,
        )
        writer = StreamWriter(connection, asyncio.get_running_loop())
        try:
            await writer.write_headers(f"{method} {target} HTTP/1.1", _Headers(head))  # type: ignore[arg-type]
            if body:
                # into the transport's buffer at once, never waiting for the server to read it (the
                # body is in memory already), so an answer sent before the body was read is seen
                await writer.write(body, drain=False)
            writer.set_eof()
        except ValueError as exc:  # a control character in a header
            connection.close()
            raise ResponseFailed(f"was not sent the request: {exc}") from None
        except ConnectionError:
            connection.close()
            if reused:
                raise _Stale from None
            raise ResponseFailed("closed the connection") from None
        connection.start_timeout()
        try:
            while True:
                message, payload = await connection.read()
                if not 100 <= message.code < 200 or message.code == 101:
                    break  # an interim 1xx answer: the real one follows
        except BaseException as exc:
            connection.close()
            if isinstance(exc, aiohttp.ServerTimeoutError):
                raise TimeoutError from None
            if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionError)):
                if reused:
                    raise _Stale from None
                raise ResponseFailed(_describe(exc)) from None
            if isinstance(exc, HttpProcessingError):  # too big a header block, or not HTTP at all
                raise ResponseFailed(f"sent an answer that is not valid HTTP ({exc.message})") from None
            if isinstance(exc, aiohttp.ClientError):
                raise ResponseFailed(_describe(exc)) from None
            raise
        if message.code == 408 and reused:
            connection.close()  # its idle timer fired as the request arrived: the request was not read
            raise _Stale
        return UpstreamResponse(message, payload, connection, pool)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    async def close(self) -> None:
        """Close every connection."""
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


def _head_fields(
    netloc: str,
    user: str | None,
    password: str | None,
    headers: list[tuple[str, str]],
    method: str,
    body: bytes,
) -> list[tuple[str, str]]:
    """The request's header fields: Host, the given HEADERS, credentials from the URL, Content-Length."""
    host = netloc.rpartition("@")[2]
    fields = [("Host", host), *headers]
    if user is not None and not any(name.lower() == "authorization" for name, _ in headers):
        token = base64.b64encode(f"{unquote(user)}:{unquote(password or '')}".encode()).decode("ascii")
        fields.append(("Authorization", f"Basic {token}"))
    if body or method in BODY_METHODS:
        fields.append(("Content-Length", str(len(body))))
    return fields


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "broke off the answer"
    if isinstance(exc, aiohttp.ClientOSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
