"""Serving the application on a socket: one definition used by `serve`, `demo` and the tests.

aiohttp's AppRunner serves the application (its routing answers `Expect: 100-continue`, closes
idle keep-alive connections after limits.keepalive_timeout), with handler cancellation so a
client that leaves frees its upstream slot; router.inbound guards the listening socket (a
timeout for a new connection's first request head, and a connection cap).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from router.app import STATE
from router.inbound import InboundLimits, start_site


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str, port: int) -> AsyncIterator[str]:
    """Serve APP on HOST:PORT (0: a free port) for the block; yields the base URL."""
    limits = app[STATE].config.limits
    runner = web.AppRunner(
        app, handler_cancellation=True, access_log=None, shutdown_timeout=5, keepalive_timeout=limits.keepalive_timeout
    )
    await runner.setup()
    try:
        server = await start_site(runner, host, port, InboundLimits(limits.header_timeout, limits.max_connections))
        address = server.sockets[0].getsockname()  # type: ignore[attr-defined]  # an asyncio.Server
        try:
            yield f"http://{_host_for_url(address[0])}:{address[1]}"
        finally:
            server.close()
    finally:
        await runner.cleanup()


async def serve_until_signal(app: web.Application, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve APP until SIGINT or SIGTERM; ON_READY gets the base URL once it listens."""
    async with serving(app, host, port) as url:
        on_ready(url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host
