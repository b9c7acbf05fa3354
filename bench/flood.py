"""A flood of ghosts beside a streaming main turn: 300 concurrent count_tokens, titles and probes.
Every ghost must be answered, the upstream must never see more than max_concurrency, and the main
turn's first byte must not be delayed by the ghosts (compared with the same turn alone).

The turn is sent, then the 300 ghosts at once, while the upstream spends --prefill seconds on the
prompt before its first token (as a local server does; 0.2 s is a very fast one). A second
measurement sends the ghosts first and the turn right behind them: the worst case, where the
turn's request waits for the router to read the ghosts ahead of it.

    python bench/flood.py [--rounds 15] [--prefill 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, router_process, upstream_process, write_result  # noqa: E402
from tests import claude_code_shapes as cc  # noqa: E402


async def main_turn_ttfb(session: aiohttp.ClientSession, url: str) -> float:
    body = cc.main_turn("the real turn")
    start = time.perf_counter()
    async with session.post(f"{url}/v1/messages", json=body, headers=cc.headers()) as response:
        await response.content.readany()
        ttfb = time.perf_counter() - start
        await response.read()
        assert response.status == 200
    return ttfb


async def ghost(session: aiohttp.ClientSession, url: str, i: int) -> int:
    if i % 3 == 0:
        async with session.post(
            f"{url}/v1/messages/count_tokens", json=cc.count_tokens_request(i % 26), headers=cc.headers()
        ) as r:
            await r.read()
            return r.status
    if i % 3 == 1:
        async with session.post(f"{url}/v1/messages", json=cc.title_request(f"session {i}"), headers=cc.headers()) as r:
            await r.read()
            return r.status
    async with session.head(f"{url}/api/hello") as r:
        return r.status


async def run(url: str, upstream: str, rounds: int) -> dict:
    alone, beside, behind, answered = [], [], [], 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await main_turn_ttfb(session, url)
        for _ in range(rounds):
            alone.append(await main_turn_ttfb(session, url))
            turn = asyncio.create_task(main_turn_ttfb(session, url))
            await asyncio.sleep(0.002)  # the turn is on its way, then the flood
            ghosts = [asyncio.create_task(ghost(session, url, i)) for i in range(300)]
            beside.append(await turn)
            answered += sum(1 for s in await asyncio.gather(*ghosts) if s == 200)
            ghosts = [asyncio.create_task(ghost(session, url, i)) for i in range(300)]
            await asyncio.sleep(0)  # the flood first, the turn right behind it
            behind.append(await main_turn_ttfb(session, url))
            answered += sum(1 for s in await asyncio.gather(*ghosts) if s == 200)
        async with session.get(f"{upstream}/_stats") as r:
            stats = await r.json()
    median = lambda values: statistics.median(values) * 1000  # noqa: E731
    return {
        "rounds": rounds,
        "ghosts_sent": 600 * rounds,
        "ghosts_answered": answered,
        "upstream_max_in_flight": stats["max_in_flight"],
        "upstream_requests": stats["requests"],
        "main_ttfb_alone_ms": median(alone),
        "main_ttfb_beside_flood_ms": median(beside),
        "delay_ms": median(beside) - median(alone),
        "main_ttfb_behind_flood_ms": median(behind),
        "worst_case_delay_ms": median(behind) - median(alone),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--prefill", type=float, default=0.2)
    args = parser.parse_args()
    up, router = free_port(), free_port()
    with upstream_process(up, 200, 0.002, args.prefill), router_process(router, up):
        result = asyncio.run(run(f"http://127.0.0.1:{router}", f"http://127.0.0.1:{up}", args.rounds))
    result["command"] = f"python bench/flood.py --rounds {args.rounds} --prefill {args.prefill}"
    print(
        f"{result['ghosts_answered']}/{result['ghosts_sent']} ghosts answered; upstream saw {result['upstream_requests']} requests, "
        f"at most {result['upstream_max_in_flight']} at once (max_concurrency 1)"
    )
    print(
        f"main turn first byte: alone {result['main_ttfb_alone_ms']:.2f} ms, with 300 ghosts beside it "
        f"{result['main_ttfb_beside_flood_ms']:.2f} ms (delay {result['delay_ms']:+.2f} ms)"
    )
    print(
        f"worst case, turn sent right behind the 300 ghosts: {result['main_ttfb_behind_flood_ms']:.2f} ms "
        f"(delay {result['worst_case_delay_ms']:+.2f} ms)"
    )
    write_result("flood", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
