"""Forwarding overhead, side by side in one run: direct to the upstream vs through ghost-router vs
through a naive buffering proxy like the article's (threaded, polling every 50 ms), and beside
two floors (bench/floor_proxies.py): a bare aiohttp proxy (aiohttp's server and client, as
ghost-router uses them, with none of its logic) and a raw TCP relay.

    python bench/overhead.py [--rounds 100] [--events 500] [--interval 0.001] [--pin] [--baseline DIR]

With --pin (a machine with two CPUs or more), the client and the upstream run on CPU 0 and each
proxy on CPU 1: a proxy that wakes its client then never waits while the client runs on its CPU,
which shows how much of the first byte added is the scheduler's and how much the proxy's work.

With --baseline DIR (another checkout, say `git worktree add DIR HEAD~1`), that checkout's router
runs beside this one in the same run, as "ghost-router (baseline)": an optimisation's gain side
by side, where drift and the host's load hit both alike.

Requests carry 50 KB bodies shaped like a Claude Code turn (bench.common.claude_code_body: tools,
tool results, the billing block), which the default rules rewrite, so the router parses and
re-serializes each one as it does real traffic; streamed replies have 500 events (--events), and a
non-streamed reply takes as long as that stream would. Each round sends the same
request through each path in turn, in a fresh random order (interleaved, so drift hits all alike) and records time to
first byte and whole-request time. Prints medians, spread and ratios; writes bench/results/overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
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
REQUEST_TIMEOUT = 60  # seconds: a request that takes longer stops the run, naming its path


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
    shuffle = random.Random(6).shuffle  # seeded: the same sequence of orders in every run
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:

        async def timed(name: str, url: str, when: str) -> tuple[float, float]:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    return await one(session, url, body)
            except TimeoutError:
                raise RuntimeError(f"{name}: no complete answer within {REQUEST_TIMEOUT} s ({when})") from None

        for name, url in paths.items():  # warm-up
            await timed(name, url, "warm-up")
        order = list(paths.items())
        for n in range(rounds):
            # a fresh order each round: a process runs faster right after one that ran the same
            # code (shared libraries stay in the CPU caches), so a fixed order favours some paths
            shuffle(order)
            for name, url in order:
                ttfb, total = await timed(name, url, f"round {n + 1}")
                results[name]["ttfb"].append(ttfb)
                results[name]["total"].append(total)
    return results


def run_once(args: argparse.Namespace) -> dict:
    """One measurement with fresh processes: {kind: {path: medians, spread, added first byte, ratio}}."""
    up, router, naive, bare, relay, baseline = (free_port() for _ in range(6))
    report: dict = {"measured": time.strftime("%Y-%m-%d %H:%M")}
    client, proxy = (0, 1) if args.pin else (None, None)
    if client is not None:
        os.sched_setaffinity(0, {client})  # this process is the client
    with contextlib.ExitStack() as running:
        running.enter_context(upstream_process(up, args.events, args.interval, cpu=client))
        running.enter_context(router_process(router, up, cpu=proxy))
        running.enter_context(naive_proxy_process(naive, up, cpu=proxy))
        running.enter_context(floor_process("bare_aiohttp", bare, up, cpu=proxy))
        running.enter_context(floor_process("tcp_relay", relay, up, cpu=proxy))
        paths = {
            "direct": f"http://127.0.0.1:{up}",
            "ghost-router": f"http://127.0.0.1:{router}",
            "naive proxy": f"http://127.0.0.1:{naive}",
            "floor: bare aiohttp proxy": f"http://127.0.0.1:{bare}",
            "floor: tcp relay": f"http://127.0.0.1:{relay}",
        }
        if args.baseline:
            running.enter_context(router_process(baseline, up, cpu=proxy, checkout=Path(args.baseline).resolve()))
            paths["ghost-router (baseline)"] = f"http://127.0.0.1:{baseline}"
        for stream in (True, False):
            kind = "streaming" if stream else "non-streaming"
            body = json.dumps(claude_code_body(args.body_bytes, stream)).encode()
            results = asyncio.run(measure(paths, args.rounds, body))
            direct = {k: summary(v) for k, v in results["direct"].items()}
            print(
                f"\n{kind}: {len(body):,}-byte request, {args.events}-event reply, {args.rounds} rounds (ms: median [p10-p90])"
            )
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
    return report


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument(
        "--interval", type=float, default=0.001, help="seconds between streamed events (default 1 ms: 1000 tokens/s)"
    )
    parser.add_argument("--events", type=int, default=500, help="events per streamed reply (default 500)")
    parser.add_argument("--body-bytes", type=int, default=50_000, help="request body size (default 50 KB)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="whole runs, each with fresh processes (medians move between runs)"
    )
    parser.add_argument("--name", default="overhead", help="results file: bench/results/NAME.json")
    parser.add_argument("--pin", action="store_true", help="client and upstream on CPU 0, each proxy on CPU 1")
    parser.add_argument("--baseline", help="another checkout whose router runs beside this one (A/B in one run)")
    args = parser.parse_args()
    runs = []
    for n in range(args.repeat):
        if args.repeat > 1:
            print(f"\n=== run {n + 1} of {args.repeat}")
        runs.append(run_once(args))
    command = f"python bench/overhead.py --rounds {args.rounds} --interval {args.interval}"
    for flag, value, default in (
        ("--events", args.events, 500),
        ("--body-bytes", args.body_bytes, 50_000),
        ("--repeat", args.repeat, 1),
        ("--name", args.name, "overhead"),
        ("--pin", "" if args.pin else None, None),
        ("--baseline", "DIR" if args.baseline else None, None),
    ):
        command += f" {flag} {value}".rstrip() if value != default else ""
    if args.repeat > 1:
        print("\nper run, against direct (first byte added ms; whole-request ratio):")
        routers = ["ghost-router", *(["ghost-router (baseline)"] if args.baseline else [])]
        for n, run in enumerate(runs, 1):
            for name in routers:
                print(
                    f"  run {n} {name}: "
                    + "; ".join(
                        f"{kind} {run[kind][name]['ttfb_added_ms']:+.2f} ms, {run[kind][name]['total_ratio']:.3f}"
                        for kind in ("streaming", "non-streaming")
                    )
                )
    # the last run's table at the top level, every run under "runs"
    write_result(
        args.name, {**runs[-1], "events": args.events, "interval": args.interval, "command": command, "runs": runs}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
