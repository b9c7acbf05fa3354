"""Forwarding overhead, side by side in one run: direct to the upstream vs through ghost-router vs
through a naive buffering proxy like the article's (threaded, polling every 50 ms), and beside
three floors (bench/floor_proxies.py): a bare aiohttp proxy, the same aiohttp server with
ghost-router's forwarding client and none of its logic, and a raw TCP relay.

    python bench/overhead.py [--rounds 100]

Requests carry 50 KB bodies shaped like a Claude Code turn (bench.common.claude_code_body: tools,
tool results, the billing block), which the default rules rewrite, so the router parses and
re-serializes each one as it does real traffic; streamed replies have 500 events. Each round sends the same
request through each path in turn, in a fresh random order (interleaved, so drift hits all alike) and records time to
first byte and whole-request time. Prints medians, spread and ratios; writes bench/results/overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import claude_code_body, free_port, router_process, summary, upstream_process, write_result  # noqa: E402
from bench.floor_proxies import floor_process  # noqa: E402
from bench.naive_proxy import naive_proxy_process  # noqa: E402

JSON = {"Content-Type": "application/json"}
shuffle = random.Random(6).shuffle  # seeded: the same sequence of orders in every run


async def one(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[float, float]:
    start = time.perf_counter()
    async with session.post(f"{url}/v1/messages", data=body, headers=JSON) as response:
        first = None
        async for _ in response.content.iter_any():
            if first is None:
                first = time.perf_counter() - start
        assert response.status == 200, response.status
    return first or 0.0, time.perf_counter() - start


async def measure(paths: dict[str, str], rounds: int, body: bytes) -> dict[str, dict[str, list[float]]]:
    results = {name: {"ttfb": [], "total": []} for name in paths}
    async with aiohttp.ClientSession() as session:
        for name, url in paths.items():  # warm-up
            await one(session, url, body)
        order = list(paths.items())
        for _ in range(rounds):
            # a fresh order each round: a process runs faster right after one that ran the same
            # code (shared libraries stay in the CPU caches), so a fixed order favours some paths
            shuffle(order)
            for name, url in order:
                ttfb, total = await one(session, url, body)
                results[name]["ttfb"].append(ttfb)
                results[name]["total"].append(total)
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument(
        "--interval", type=float, default=0.001, help="seconds between streamed events (default 1 ms: 1000 tokens/s)"
    )
    parser.add_argument("--body-bytes", type=int, default=50_000, help="request body size (default 50 KB)")
    args = parser.parse_args()
    up, router, naive, bare, lean, relay = (free_port() for _ in range(6))
    report = {}
    with (
        upstream_process(up, 500, args.interval),
        router_process(router, up),
        naive_proxy_process(naive, up),
        floor_process("bare_aiohttp", bare, up),
        floor_process("aiohttp_lean_client", lean, up),
        floor_process("tcp_relay", relay, up),
    ):
        paths = {
            "direct": f"http://127.0.0.1:{up}",
            "ghost-router": f"http://127.0.0.1:{router}",
            "naive proxy": f"http://127.0.0.1:{naive}",
            "floor: bare aiohttp proxy": f"http://127.0.0.1:{bare}",
            "floor: aiohttp + lean client": f"http://127.0.0.1:{lean}",
            "floor: tcp relay": f"http://127.0.0.1:{relay}",
        }
        for stream in (True, False):
            kind = "streaming" if stream else "non-streaming"
            body = json.dumps(claude_code_body(args.body_bytes, stream)).encode()
            results = asyncio.run(measure(paths, args.rounds, body))
            direct = {k: summary(v) for k, v in results["direct"].items()}
            print(f"\n{kind}: {len(body):,}-byte request, 500-event reply, {args.rounds} rounds (ms: median [p10-p90])")
            print(f"{'path':26} {'TTFB':>24} {'total':>26} {'TTFB added':>11} {'total ratio':>12}")
            report[kind] = {}
            for name, values in results.items():
                ttfb, total = summary(values["ttfb"]), summary(values["total"])
                added = ttfb["median"] - direct["ttfb"]["median"]
                ratio = total["median"] / direct["total"]["median"]
                report[kind][name] = {"ttfb": ttfb, "total": total, "ttfb_added_ms": added, "total_ratio": ratio}
                print(
                    f"{name:26} {ttfb['median']:8.2f} [{ttfb['p10']:6.2f}-{ttfb['p90']:6.2f}] {total['median']:9.2f} [{total['p10']:7.2f}-{total['p90']:7.2f}] {added:+10.2f} {ratio:11.3f}"
                )
    report["body_bytes"] = len(body)
    report["command"] = f"python bench/overhead.py --rounds {args.rounds} --interval {args.interval}" + (
        f" --body-bytes {args.body_bytes}" if args.body_bytes != 50_000 else ""
    )
    write_result("overhead", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
