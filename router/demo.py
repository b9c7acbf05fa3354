"""`ghost-router demo`: llama-server with the tiny SmolLM2 model, the router in front of it, and the
one line to start Claude Code against them. Ctrl-C stops both."""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
from pathlib import Path

from router import client_line
from router.app import build_app
from router.config import Overrides, load_config
from router.plugins import load_plugins
from router.server import serving
from router.servers.llama import LlamaServer, ServerMissing

# Room for Claude Code's ~12,500-token first prompt and a few turns before it compacts (its compaction
# keeps 13,000 tokens plus the output limit free); the KV cache takes about 1.5 GB at this size.
CONTEXT = 65536
EXPECT = (
    "what to expect: Claude Code's first turn sends about 12,500 tokens of prompt, which this model\n"
    "processes in one to a few minutes on a small machine (the router keeps the client waiting);\n"
    "later turns reuse it and answer in seconds. A 135M model's answers are not meaningful: the demo\n"
    "shows the traffic, not a coding agent. For a real model: ghost-router serve --upstream URL --model NAME."
)


async def run(port: int, llama_port: int, verbose: bool) -> int:
    """Start both, wait for a signal, stop both."""
    log = Path(tempfile.gettempdir()) / f"ghost-router-demo-llama-{llama_port}.log"
    llama = LlamaServer(port=llama_port, context=CONTEXT, log_path=log)
    try:
        print(
            f"starting llama-server (SmolLM2-135M, --parallel 1, --ctx-size {CONTEXT}) on {llama.url}, log: {log}",
            flush=True,
        )
        await llama.start()
    except ServerMissing as exc:
        print(f"ghost-router demo: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"ghost-router demo: {exc}", file=sys.stderr)
        return 1
    plugins = load_plugins()
    registry, plugin_rules = plugins.registry()
    config = load_config(None, registry, Overrides(upstream_url=llama.url, model="smollm2"), plugin_rules)
    app = build_app(config, registry, verbose, plugins=plugins, plugin_rules=plugin_rules)
    try:
        async with serving(app, "127.0.0.1", port) as url:
            print(f"ghost-router listening on {url}, forwarding to {llama.url}", flush=True)
            print(EXPECT, flush=True)
            print("client: " + client_line.claude_code(url, "smollm2", llama.context), flush=True)
            for name, line in client_line.plugin_clients(url, "smollm2", llama.context, plugins.loaded):
                print(f"client ({name}): {line}", flush=True)
            print("Ctrl-C stops both.", flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            print("stopping", flush=True)
    except OSError as exc:
        print(f"ghost-router demo: cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        await llama.stop()
    return 0
