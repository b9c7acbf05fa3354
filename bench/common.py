"""Shared pieces for the benchmarks: a paced upstream, processes on loopback, timing helpers.

Everything runs on 127.0.0.1; every load is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def claude_code_body(size: int = 50_000, stream: bool = True) -> dict:
    """A request shaped like a Claude Code turn of about SIZE bytes of JSON: the billing block and
    instructions as system blocks, tool definitions with JSON schemas, then a conversation of
    tool calls and file-sized tool results, ending in a user message. Its model is a Claude name
    and its billing block changes the system prompt, so the default rules rewrite it (model set,
    block dropped) and the router parses and re-serializes it, as it does for real traffic. Small
    sizes get fewer and shorter tools (the smallest body is about 2 KB)."""
    small = size < 20_000
    tools = [
        {
            "name": f"Tool{n}",
            "description": f"Tool {n}. "
            + "Use it when the task needs it; report exactly what happened and any error. " * (2 if small else 12),
            "input_schema": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "additionalProperties": False,
                "required": ["path"],
                "properties": {
                    "path": {"type": "string", "description": "absolute path"},
                    "limit": {"type": "number", "description": "lines to read"},
                    "flags": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}},
                },
            },
        }
        for n in range(max(1, min(16, size // 3200)))
    ]
    body = {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 32000,
        "stream": stream,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.331.a1f; cc_entrypoint=cli;"},
            {
                "type": "text",
                "text": "You are Claude Code, Anthropic's official CLI for Claude.",
                "cache_control": {"type": "ephemeral"},
            },
            {
                "type": "text",
                "text": "Follow the user's instructions; keep answers short. " * max(2, min(80, size // 650)),
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "tools": tools,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Read the sources and fix the failing test."}]}
        ],
        "metadata": {"user_id": '{"device_id":"0f3c","session_id":"d0112e25-4e5c-4420-bd4d-2569c1c5af78"}'},
        "thinking": {"type": "adaptive"},
    }
    line = "    def handle(self, request):  # a line of a file the agent read\n"
    turn = 0
    while len(json.dumps(body)) < size - 200:
        turn += 1
        call = f"toolu_{turn:04d}"
        lines = 40 if not small else 4
        body["messages"] += [
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": call,
                        "name": "Tool1",
                        "input": {"path": f"/src/module{turn}.py", "limit": 400},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call, "content": [{"type": "text", "text": line * lines}]}
                ],
            },
        ]
    body["messages"].append({"role": "user", "content": [{"type": "text", "text": "Now run the tests again."}]})
    return body


def upstream_app(events: int, interval: float, prefill: float = 0.0) -> web.Application:
    """An Anthropic-speaking upstream: non-streaming JSON, or EVENTS text deltas INTERVAL apart,
    after PREFILL seconds of (simulated) prompt processing. A last user message that starts with
    `req-` is an id: it is counted (GET /_stats lists the ids seen and how many came twice) and
    the reply's text starts with it."""

    stats = {"in_flight": 0, "max_in_flight": 0, "requests": 0, "duplicates": 0}
    ids: set[str] = set()

    async def counted(request: web.Request) -> web.StreamResponse:
        stats["in_flight"] += 1
        stats["requests"] += 1
        stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        try:
            return await messages(request)
        finally:
            stats["in_flight"] -= 1

    async def stats_view(request: web.Request) -> web.Response:
        return web.json_response({**stats, "ids": sorted(ids) if "ids" in request.query else len(ids)})

    async def messages(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        last = body["messages"][-1]["content"] if body.get("messages") else ""
        echo = last if isinstance(last, str) and last.startswith("req-") else ""
        if echo:
            stats["duplicates"] += echo in ids
            ids.add(echo)
        if prefill:
            await asyncio.sleep(prefill)
        if not body.get("stream"):
            await asyncio.sleep(events * interval)  # the time a server takes to generate the reply
            text = echo + "".join(f" t{i}" for i in range(events))
            return web.json_response(
                {
                    "id": "msg_b",
                    "type": "message",
                    "role": "assistant",
                    "model": "m",
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 1, "output_tokens": events},
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(
            sse(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_b",
                        "type": "message",
                        "role": "assistant",
                        "model": "m",
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": 1, "output_tokens": 1},
                    },
                },
            )
        )
        await response.write(
            sse(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
        )
        if echo:
            await response.write(
                sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": echo}},
                )
            )
        for i in range(events):
            if interval:
                await asyncio.sleep(interval)
            await response.write(
                sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"t{i} "}},
                )
            )
        await response.write(sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        await response.write(
            sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": events},
                },
            )
        )
        await response.write(sse("message_stop", {"type": "message_stop"}))
        await response.write_eof()
        return response

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/messages", counted)
    app.router.add_get("/_stats", stats_view)
    return app


def serve_upstream_forever(port: int, events: int, interval: float, prefill: float = 0.0) -> None:
    """Entry point for the upstream subprocess (on uvloop when installed, like the router)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(
        upstream_app(events, interval, prefill),
        host="127.0.0.1",
        port=port,
        print=None,
        access_log=None,
        handler_cancellation=True,
    )


@contextmanager
def process(
    args: list[str], ready_port: int, env: dict[str, str] | None = None, timeout: float = 30, cwd: Path = ROOT
) -> Iterator[subprocess.Popen]:
    """Run ARGS in CWD until the block ends; wait until READY_PORT accepts connections. Its output is
    dropped, or kept in $BENCH_LOG_DIR/PORT.log when that variable names a folder."""
    logs = os.environ.get("BENCH_LOG_DIR")
    output = open(Path(logs) / f"{ready_port}.log", "ab") if logs else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(args, cwd=cwd, env={**os.environ, **(env or {})}, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + timeout
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
        if logs:
            output.close()  # type: ignore[union-attr]


def upstream_process(port: int, events: int, interval: float, prefill: float = 0.0, cpu: int | None = None):
    """The paced upstream in its own process, optionally pinned to CPU."""
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from bench.common import serve_upstream_forever; serve_upstream_forever({port}, {events}, {interval}, {prefill})"
    return process(pinned([sys.executable, "-c", code], cpu), port)


def router_process(
    port: int,
    upstream: int | str,
    extra: list[str] = (),  # type: ignore[assignment]
    cpu: int | None = None,
    checkout: Path = ROOT,
):
    """ghost-router serve on its embedded default rules (logging on, as users run it) in front of
    UPSTREAM (a loopback port, or URLs as --upstream takes them), optionally pinned to CPU; the
    code of CHECKOUT (`python -m router` there imports its own `router` package)."""
    url = upstream if isinstance(upstream, str) else f"http://127.0.0.1:{upstream}"
    args = [sys.executable, "-m", "router", "serve", "--port", str(port), "--upstream", url, *extra]
    return process(pinned(args, cpu), port, cwd=checkout)


def pinned(args: list[str], cpu: int | None) -> list[str]:
    """ARGS run on one CPU (with taskset) when CPU is given and the machine has more than one."""
    if cpu is None or (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        return args
    return ["taskset", "-c", str(cpu), *args]


def rss_and_fds(pid: int) -> tuple[int, int]:
    """Resident memory in KiB and open descriptors of PID (Linux /proc)."""
    rss = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def write_result(name: str, data: dict) -> Path:
    """Save a benchmark's results as bench/results/NAME.json, with the date they were measured."""
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps({"measured": time.strftime("%Y-%m-%d"), **data}, indent=2))
    return path


def summary(values: list[float]) -> dict[str, float]:
    """Median and spread (p10, p90) in milliseconds."""
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"median": statistics.median(ordered) * 1000, "p10": pick(0.10) * 1000, "p90": pick(0.90) * 1000}
