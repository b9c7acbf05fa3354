"""Two floors for the forwarding overhead, measured beside ghost-router in bench/overhead.py:

- `bare aiohttp`: an aiohttp server forwarding with aiohttp's client, streaming, no rules, no
  queue, no logging: what any aiohttp-based proxy costs at least, and what ghost-router (served by
  aiohttp's AppRunner, forwarding with aiohttp's client) would cost with none of its logic;
- `tcp relay`: bytes copied between two sockets by asyncio protocols, no HTTP at all: what one
  more process on the path costs at least.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
from aiohttp import web

from bench.common import ROOT, pinned, process


def serve_bare_aiohttp(port: int, target: str) -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        session: aiohttp.ClientSession = request.app["session"]
        async with session.request(
            request.method, target + request.path_qs, data=body, headers={"Content-Type": "application/json"}
        ) as up:
            response = web.StreamResponse(
                status=up.status, headers={"Content-Type": up.headers.get("Content-Type", "")}
            )
            await response.prepare(request)
            async for chunk in up.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def session(app: web.Application):
        app["session"] = aiohttp.ClientSession()
        yield
        await app["session"].close()

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.cleanup_ctx.append(session)
    app.router.add_route("*", "/{tail:.*}", handle)
    _install_uvloop()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, handler_cancellation=True)


def serve_tcp_relay(port: int, target_port: int) -> None:
    class Upstream(asyncio.Protocol):
        def __init__(self, client: Client) -> None:
            self.client = client

        def data_received(self, data: bytes) -> None:
            self.client.transport.write(data)

        def connection_lost(self, exc: Exception | None) -> None:
            self.client.transport.close()

    class Client(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport, self.pending, self.upstream = transport, [], None
            asyncio.ensure_future(self.connect())

        async def connect(self) -> None:
            loop = asyncio.get_running_loop()
            upstream_transport, _ = await loop.create_connection(lambda: Upstream(self), "127.0.0.1", target_port)
            self.upstream = upstream_transport
            for data in self.pending:
                upstream_transport.write(data)

        def data_received(self, data: bytes) -> None:
            if self.upstream is None:
                self.pending.append(data)
            else:
                self.upstream.write(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.upstream is not None:
                self.upstream.close()

    async def main() -> None:
        await asyncio.get_running_loop().create_server(Client, "127.0.0.1", port)
        await asyncio.Event().wait()

    _install_uvloop()
    asyncio.run(main())


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()


def floor_process(kind: str, port: int, upstream_port: int, cpu: int | None = None):
    """One of the floors in its own process, optionally pinned to CPU: KIND is `bare_aiohttp` or `tcp_relay`."""
    target = str(upstream_port) if kind == "tcp_relay" else f"'http://127.0.0.1:{upstream_port}'"
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from bench.floor_proxies import serve_{kind}; serve_{kind}({port}, {target})"
    return process(pinned([sys.executable, "-c", code], cpu), port)
