"""The HTTP client forwarding uses, behind a small interface: aiohttp's client, set up as a proxy needs.

aiohttp's parser handles what upstream framing can throw at a proxy: interim 1xx answers are
skipped, bodies framed by the connection closing are read to the end, a connection with bytes
left over after its answer is not reused, and header blocks are bounded (MAX_HEADERS headers of
at most MAX_FIELD_SIZE bytes). What it does not do for a POST, this module does: an answer that
shows a reused keep-alive connection was closed by the server's idle timer (a silent close, or a
408) is retried once on a fresh connection.
"""

from __future__ import annotations

import contextvars
import io
import weakref
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

MAX_FIELD_SIZE = 8190  # bytes per header line, nginx's large_client_header_buffers size
MAX_HEADERS = 100  # header lines per answer: ~800 KB at most in all
RETRIES_ON_STALE = 2
LARGE_BODY = 1024 * 1024  # aiohttp's threshold for writing a body in pieces

_reused: contextvars.ContextVar[bool] = contextvars.ContextVar("ghost_router_connection_reused", default=False)


class ConnectFailed(Exception):
    """No connection could be made; `reason` says why (refused, unknown host, timeout)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ResponseFailed(Exception):
    """The upstream broke the exchange (closed, reset, or sent something that is not HTTP)."""


class _Connector(aiohttp.TCPConnector):
    """Notes, for the caller's task, whether the connection it got had served a request before."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._served: weakref.WeakSet[Any] = weakref.WeakSet()

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
        connection = await super().connect(req, traces, timeout)
        protocol = connection.protocol
        _reused.set(protocol in self._served)
        self._served.add(protocol)
        return connection


@dataclass
class UpstreamResponse:
    """An upstream's answer whose body is read in chunks as it arrives."""

    response: aiohttp.ClientResponse

    @property
    def status(self) -> int:
        """The HTTP status."""
        return self.response.status

    @property
    def reason(self) -> str | None:
        """The reason phrase."""
        return self.response.reason

    @property
    def raw_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """The headers as received."""
        return self.response.raw_headers

    async def read_chunk(self) -> bytes:
        """The next piece of the body as it arrives (b"" at its end). Raises ResponseFailed if the
        upstream breaks it off, asyncio.TimeoutError when it sends nothing for idle_timeout."""
        try:
            return await self.response.content.readany()
        except aiohttp.ServerTimeoutError:
            raise TimeoutError from None
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise ResponseFailed(_describe(exc)) from None

    def release(self) -> None:
        """The body was read whole: the connection may serve another request."""
        self.response.release()

    def close(self) -> None:
        """Drop the connection (the upstream sees the request cancelled)."""
        self.response.close()


class UpstreamClient:
    """Keep-alive connections to the upstream servers; one per router, closed with it."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=_Connector(limit=0, enable_cleanup_closed=False),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
                max_field_size=MAX_FIELD_SIZE,
                max_headers=MAX_HEADERS,
            )
        return self._session

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
        session = self._open()
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, connect=connect_timeout, sock_read=idle_timeout
        )
        target = URL(url, encoded=True)
        for attempt in range(RETRIES_ON_STALE + 1):
            _reused.set(False)
            try:
                data = io.BytesIO(body) if len(body) > LARGE_BODY else (body or None)  # big ones go out in pieces
                response = await session.request(
                    method,
                    target,
                    headers=headers,
                    data=data,
                    timeout=timeout,
                    allow_redirects=False,
                )
            except aiohttp.ClientConnectorError as exc:
                raise ConnectFailed(_describe(exc)) from None
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if _reused.get() and attempt < RETRIES_ON_STALE:
                    continue  # a keep-alive connection the server had already closed
                raise ResponseFailed(_describe(exc)) from None
            except aiohttp.ServerTimeoutError:
                raise TimeoutError from None
            except aiohttp.ClientResponseError as exc:  # too big a header block, or not HTTP at all
                raise ResponseFailed(f"sent an answer that is not valid HTTP ({exc.message})") from None
            except aiohttp.ClientError as exc:
                raise ResponseFailed(_describe(exc)) from None
            if response.status == 408 and _reused.get() and attempt < RETRIES_ON_STALE:
                response.close()  # its idle timer fired as the request arrived: the request was not read
                continue
            return UpstreamResponse(response)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Close every connection."""
        if self._session is not None:
            await self._session.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return exc.os_error.strerror or str(exc.os_error) or type(exc.os_error).__name__
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "broke off the answer"
    return str(exc) or type(exc).__name__
