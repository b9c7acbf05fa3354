"""Running the application on a socket until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from typing import Any, Callable

from aiohttp import web

from router.app import request_handler


async def serve(app: web.Application, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Listen on HOST:PORT with handler cancellation (a client that leaves frees its slot)."""
    runner = LowLevelAppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        address = runner.addresses[0]
        on_ready(f"http://{_host_for_url(address[0])}:{address[1]}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


class LowLevelAppRunner(web.BaseRunner):
    """aiohttp's AppRunner, except that requests go straight to the router's one handler through
    aiohttp's low-level server instead of the application's routing, middlewares and signals.
    The application still starts and cleans up as under AppRunner (its cleanup contexts)."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._app = app

    async def shutdown(self) -> None:
        await self._app.shutdown()

    async def _make_server(self) -> web.Server:
        self._app.on_startup.freeze()
        await self._app.startup()
        self._app.freeze()
        return web.Server(request_handler(self._app), **self._kwargs)

    async def _cleanup_server(self) -> None:
        await self._app.cleanup()


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host
