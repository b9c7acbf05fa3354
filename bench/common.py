"""Shared pieces for the benchmarks: a paced upstream, processes on loopback, timing helpers.

Everything runs on 127.0.0.1; every load is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def upstream_app(events: int, interval: float) -> web.Application:
    """An Anthropic-speaking upstream: non-streaming JSON, or EVENTS text deltas INTERVAL apart."""

    async def messages(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            await asyncio.sleep(events * interval)  # the time a server takes to generate the reply
            text = "".join(f"t{i} " for i in range(events))
            return web.json_response({"id": "msg_b", "type": "message", "role": "assistant", "model": "m", "content": [{"type": "text", "text": text}],
                                      "stop_reason": "end_turn", "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": events}})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(sse("message_start", {"type": "message_start", "message": {"id": "msg_b", "type": "message", "role": "assistant", "model": "m", "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}}))
        await response.write(sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}))
        for i in range(events):
            if interval:
                await asyncio.sleep(interval)
            await response.write(sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"t{i} "}}))
        await response.write(sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        await response.write(sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": events}}))
        await response.write(sse("message_stop", {"type": "message_stop"}))
        await response.write_eof()
        return response

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/messages", messages)
    return app


def serve_upstream_forever(port: int, events: int, interval: float) -> None:
    """Entry point for the upstream subprocess (on uvloop when installed, like the router)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(upstream_app(events, interval), host="127.0.0.1", port=port, print=None, access_log=None, handler_cancellation=True)


@contextmanager
def process(args: list[str], ready_port: int, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run ARGS until the block ends; wait until READY_PORT accepts connections."""
    proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", ready_port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{args} did not start")
                time.sleep(0.05)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def upstream_process(port: int, events: int, interval: float):
    """The paced upstream in its own process."""
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from bench.common import serve_upstream_forever; serve_upstream_forever({port}, {events}, {interval})"
    return process([sys.executable, "-c", code], port)


def router_process(port: int, upstream_port: int, extra: list[str] = ()):  # type: ignore[assignment]
    """ghost-router serve on its embedded default rules, logging off (as a benchmark should measure the proxy)."""
    args = [sys.executable, "-m", "router", "serve", "--port", str(port), "--upstream", f"http://127.0.0.1:{upstream_port}", *extra]
    return process(args, port)


def summary(values: list[float]) -> dict[str, float]:
    """Median and spread (p10, p90) in milliseconds."""
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"median": statistics.median(ordered) * 1000, "p10": pick(0.10) * 1000, "p90": pick(0.90) * 1000}
