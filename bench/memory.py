"""Resident memory, descriptors and tasks across 20,000 mixed requests: they must stay flat.

    python bench/memory.py [--requests 20000]

Mixed: fakes (titles), estimates (count_tokens), probes and forwarded turns (streamed and not)
against a fast upstream, 16 at a time. The router's RSS (from /proc), open descriptors and
asyncio tasks (from /_router/status) are sampled after a warm-up (the first tenth) and then every tenth.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, router_process, rss_and_fds, upstream_process, write_result  # noqa: E402
from tests import claude_code_shapes as cc  # noqa: E402


async def send(session: aiohttp.ClientSession, url: str, i: int) -> None:
    kind = i % 5
    if kind == 0:
        request = session.post(f"{url}/v1/messages", json=cc.title_request(f"session {i}"), headers=cc.headers())
    elif kind == 1:
        request = session.post(
            f"{url}/v1/messages/count_tokens", json=cc.count_tokens_request(i % 26), headers=cc.headers()
        )
    elif kind == 2:
        request = session.head(f"{url}/api/hello")
    else:
        body = {
            "model": "m",
            "max_tokens": 10,
            "stream": kind == 3,
            "messages": [{"role": "user", "content": f"turn {i}"}],
        }
        request = session.post(f"{url}/v1/messages", json=body, headers=cc.headers())
    async with request as response:
        await response.read()
        assert response.status == 200, response.status


async def run(url: str, pid: int, total: int) -> list[dict]:
    samples = []
    counter = iter(range(total))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as session:

        async def worker(stop_at: int) -> None:
            for i in counter:
                await send(session, url, i)
                if i + 1 >= stop_at:
                    return

        done, step = 0, max(total // 10, 1)  # warm up with the first tenth, then sample every tenth
        for checkpoint in range(step, total + 1, step):
            await asyncio.gather(*(worker(checkpoint) for _ in range(16)))
            done = checkpoint
            async with session.get(f"{url}/_router/status") as response:
                status = await response.json()
            rss, fds = rss_and_fds(pid)
            samples.append(
                {
                    "requests": done,
                    "rss_kib": rss,
                    "fds": fds,
                    "tasks": status["tasks"],
                    "in_flight": sum(u["in_flight"] for u in status["upstreams"].values()),
                }
            )
            print(
                f"{done:>6} requests: RSS {rss / 1024:.1f} MiB, {fds} descriptors, {status['tasks']} tasks", flush=True
            )
    return samples


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    up, router = free_port(), free_port()
    with upstream_process(up, 5, 0.0), router_process(router, up) as proc:
        samples = asyncio.run(run(f"http://127.0.0.1:{router}", proc.pid, args.requests))
    first, last = samples[0], samples[-1]
    growth = (last["rss_kib"] - first["rss_kib"]) / first["rss_kib"]
    print(
        f"RSS after warm-up {first['rss_kib'] / 1024:.1f} MiB, at the end {last['rss_kib'] / 1024:.1f} MiB ({growth:+.1%}); "
        f"descriptors {first['fds']} -> {last['fds']}; tasks {first['tasks']} -> {last['tasks']}"
    )
    write_result(
        "memory",
        {"command": f"python bench/memory.py --requests {args.requests}", "samples": samples, "rss_growth": growth},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
