"""Cost per request against body size, 1 KB to 2 MB: forwarding (router minus direct) of a body
no rule changes, forwarding of a Claude Code shaped body the default rules rewrite (parsed,
edited, re-serialized), and token estimates. Shows how the cost grows (it should be no worse
than linear: the body is read once, parsed once, and forwarded untouched when no rewrite
changes it).

    python bench/scale.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import claude_code_body, free_port, router_process, upstream_process, write_result  # noqa: E402

SIZES = [1_000, 10_000, 100_000, 500_000, 1_000_000, 2_000_000]


def body(size: int, stream: bool = False) -> bytes:
    return json.dumps(
        {
            "model": "local-model",
            "max_tokens": 10,
            "stream": stream,
            "messages": [{"role": "user", "content": "word " * (size // 5)}],
        }
    ).encode()


async def timed(session: aiohttp.ClientSession, url: str, data: bytes) -> float:
    start = time.perf_counter()
    # bytes, not a file object: aiohttp uploads a file in 64 KB pieces, one await each, and a
    # megabyte body then reaches the upstream slower from this client than from the router
    async with session.post(url, data=data, headers={"Content-Type": "application/json"}) as response:
        await response.read()
        assert response.status == 200, response.status
    return time.perf_counter() - start


def paired(through: list[float], direct: list[float]) -> float:
    """The added time in ms: the median of each round's difference (the two requests of a round
    run back to back, so a slow moment of the machine hits both)."""
    return statistics.median(t - d for t, d in zip(through, direct)) * 1000


async def run(direct: str, router: str, rounds: int) -> list[dict]:
    rows = []
    async with aiohttp.ClientSession() as session:
        for size in SIZES:
            data, shaped = body(size), json.dumps(claude_code_body(size, stream=False)).encode()
            forward = {"direct": [], "router": [], "estimate": [], "shaped_direct": [], "shaped_router": []}
            for _ in range(rounds):
                forward["direct"].append(await timed(session, f"{direct}/v1/messages", data))
                forward["router"].append(await timed(session, f"{router}/v1/messages", data))
                forward["estimate"].append(await timed(session, f"{router}/v1/messages/count_tokens", data))
                forward["shaped_direct"].append(await timed(session, f"{direct}/v1/messages", shaped))
                forward["shaped_router"].append(await timed(session, f"{router}/v1/messages", shaped))
            med = {k: statistics.median(v) * 1000 for k, v in forward.items()}
            rows.append(
                {
                    "bytes": len(data),
                    "direct_ms": med["direct"],
                    "router_ms": med["router"],
                    "estimate_ms": med["estimate"],
                    "rewritten_bytes": len(shaped),
                    "forward_added_ms": paired(forward["router"], forward["direct"]),
                    "rewritten_added_ms": paired(forward["shaped_router"], forward["shaped_direct"]),
                }
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    up, router = free_port(), free_port()
    with upstream_process(up, 5, 0.0), router_process(router, up):
        rows = asyncio.run(run(f"http://127.0.0.1:{up}", f"http://127.0.0.1:{router}", args.rounds))
    print(
        f"{'body':>10} {'direct':>9} {'router':>9} {'added':>9} {'added/MB':>9} {'estimate':>9} {'rewritten':>10} {'added':>9}   (ms, medians of {args.rounds})"
    )
    for row in rows:
        per_mb = row["forward_added_ms"] / (row["bytes"] / 1e6)
        print(
            f"{row['bytes']:>10} {row['direct_ms']:9.2f} {row['router_ms']:9.2f} {row['forward_added_ms']:9.2f} {per_mb:9.2f} {row['estimate_ms']:9.2f} {row['rewritten_bytes']:>10} {row['rewritten_added_ms']:9.2f}"
        )
    big, half = rows[-1], rows[-2]
    growth = big["forward_added_ms"] / half["forward_added_ms"]
    rewritten_growth = big["rewritten_added_ms"] / half["rewritten_added_ms"]
    print(f"added cost 2 MB / 1 MB = {growth:.2f}, rewritten {rewritten_growth:.2f} (2.0 is linear)")
    write_result(
        "scale",
        {
            "command": f"python bench/scale.py --rounds {args.rounds}",
            "rows": rows,
            "growth_2mb_over_1mb": growth,
            "rewritten_growth_2mb_over_1mb": rewritten_growth,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
