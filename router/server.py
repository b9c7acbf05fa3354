"""Running the application on a socket until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from typing import Callable

from aiohttp import web


async def serve(app: web.Application, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Listen on HOST:PORT with handler cancellation (a client that leaves frees its slot)."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=5)
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


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host
