"""Soak: mixed ghosts and streams through the router for several minutes, on loopback, bounded
in time and count. Nothing may be lost or duplicated, and the router must not grow.

    python bench/soak.py [--minutes 5] [--concurrency 24] [--servers 2]

The router runs on its embedded default rules in front of a pool of SERVERS one-slot paced
upstreams (`--upstream URL1,URL2`). Each of CONCURRENCY clients loops over a cycle of ten:
two session titles (faked), two count_tokens (estimated), a probe (HEAD), three streamed turns,
one non-streamed turn, and one streamed turn the client abandons after its first event.

Every turn carries a unique id that the upstreams record and echo. At the end:
- every turn the client did not abandon got 200 and its own complete answer (lost = 0);
- every such id reached an upstream exactly once, abandoned ones at most once (duplicated = 0);
- no upstream ever had more than its one slot busy;
- the router's RSS, open descriptors and asyncio tasks, sampled every tenth of the run after a
  warm-up tenth, stay flat (RSS within 10%; descriptors and tasks grow by no more than the
  requests that can be in flight).
Exits 1 if any check fails; writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, router_process, rss_and_fds, upstream_process, write_result  # noqa: E402
from tests import claude_code_shapes as cc  # noqa: E402

CYCLE = [
    "title",
    "count",
    "turn-stream",
    "probe",
    "turn-json",
    "title",
    "turn-stream",
    "count",
    "abandon",
    "turn-stream",
]
MAX_REQUESTS = 2_000_000  # a bound on top of the time limit


@dataclass
class Tally:
    """What the clients sent and got."""

    sent: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    completed_ids: set[str] = field(default_factory=set)
    abandoned_ids: set[str] = field(default_factory=set)

    def count(self, kind: str) -> None:
        self.sent[kind] = self.sent.get(kind, 0) + 1

    def fail(self, what: str) -> None:
        if len(self.failures) < 50:
            self.failures.append(what)
        self.sent["failed"] = self.sent.get("failed", 0) + 1


async def one(session: aiohttp.ClientSession, url: str, kind: str, request_id: str, tally: Tally) -> None:
    tally.count(kind)
    if kind == "title":
        async with session.post(
            f"{url}/v1/messages", json=cc.title_request(f"session {request_id}"), headers=cc.headers()
        ) as response:
            text = await response.text()  # streamed, as Claude Code asks for it
            if response.status != 200 or '\\"title\\"' not in text or "message_stop" not in text:
                tally.fail(f"{kind} {request_id}: {response.status} {text[:200]}")
        return
    if kind == "count":
        async with session.post(
            f"{url}/v1/messages/count_tokens", json=cc.count_tokens_request(3), headers=cc.headers()
        ) as response:
            body = await response.json()
            if response.status != 200 or not isinstance(body.get("input_tokens"), int):
                tally.fail(f"{kind} {request_id}: {response.status} {body}")
        return
    if kind == "probe":
        async with session.head(f"{url}/") as response:
            if response.status != 200:
                tally.fail(f"{kind}: {response.status}")
        return
    stream = kind != "turn-json"
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": request_id}],
    }
    async with session.post(f"{url}/v1/messages", json=body, headers=cc.headers()) as response:
        if kind == "abandon":
            await response.content.readline()  # the first line of the stream, then hang up
            tally.abandoned_ids.add(request_id)
            response.close()
            return
        text = await response.text()
        complete = "message_stop" in text if stream else text.rstrip().endswith("}")
        if response.status != 200 or not complete or request_id not in text:
            tally.fail(
                f"{kind} {request_id}: status {response.status}, complete {complete}, own id {request_id in text}"
            )
        else:
            tally.completed_ids.add(request_id)


async def soak(url: str, pid: int, seconds: float, concurrency: int, upstreams: list[str]) -> dict:
    tally, samples = Tally(), []
    numbers = itertools.count()
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    async def client(session: aiohttp.ClientSession, offset: int) -> None:
        for step in itertools.count(offset):
            n = next(numbers)
            if time.monotonic() >= deadline or n >= MAX_REQUESTS:
                return
            try:
                await one(session, url, CYCLE[step % len(CYCLE)], f"req-{n:08d}", tally)
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                tally.fail(f"{CYCLE[step % len(CYCLE)]} req-{n:08d}: {type(exc).__name__}: {exc}")

    async def sampler(session: aiohttp.ClientSession) -> None:
        step = seconds / 10
        for tick in range(1, 11):
            await asyncio.sleep(max(0.0, started + tick * step - time.monotonic()))
            async with session.get(f"{url}/_router/status") as response:
                status = await response.json()
            rss, fds = rss_and_fds(pid)
            sample = {
                "seconds": round(time.monotonic() - started, 1),
                "requests": status["requests"],
                "rss_kib": rss,
                "fds": fds,
                "tasks": status["tasks"],
            }
            samples.append(sample)
            print(
                f"{sample['seconds']:>7.1f}s {sample['requests']:>8} requests: RSS {rss / 1024:.1f} MiB, {fds} descriptors, {status['tasks']} tasks",
                flush=True,
            )

    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 2), timeout=timeout) as session:
        await asyncio.gather(sampler(session), *(client(session, i) for i in range(concurrency)))
        await asyncio.sleep(0.5)  # abandoned streams finish cancelling upstream
        upstream_stats = []
        for upstream in upstreams:
            async with session.get(f"{upstream}/_stats?ids=1") as response:
                upstream_stats.append(await response.json())
    return {"tally": tally, "samples": samples, "upstreams": upstream_stats}


def check(result: dict, concurrency: int) -> dict:
    """The checks; each count is 0 when it passed. Descriptors and tasks are sampled while requests
    are in flight, so up to CONCURRENCY of them (twice that many descriptors: the client's and the
    upstream's connection) come and go between samples; a leak grows with the request count."""
    tally: Tally = result["tally"]
    upstreams = result["upstreams"]
    seen: dict[str, int] = {}
    for stats in upstreams:
        for request_id in stats["ids"]:
            seen[request_id] = seen.get(request_id, 0) + 1
    duplicated = sum(stats["duplicates"] for stats in upstreams) + sum(n - 1 for n in seen.values() if n > 1)
    unknown = set(seen) - tally.completed_ids - tally.abandoned_ids
    missing = tally.completed_ids - set(seen)
    first, last = result["samples"][0], result["samples"][-1]
    growth = (last["rss_kib"] - first["rss_kib"]) / first["rss_kib"]
    checks = {
        "lost (failed or incomplete answers)": tally.sent.get("failed", 0),
        "duplicated at an upstream": duplicated,
        "completed but never reached an upstream": len(missing),
        "reached an upstream but never sent": len(unknown),
        "upstreams above their one slot": sum(stats["max_in_flight"] > 1 for stats in upstreams),
        "RSS growth above 10%": int(growth > 0.10),
        "descriptor growth beyond requests in flight": max(0, last["fds"] - first["fds"] - 2 * concurrency),
        "task growth beyond requests in flight": max(0, last["tasks"] - first["tasks"] - concurrency),
    }
    return {"checks": checks, "rss_growth": growth, "first": first, "last": last}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--events", type=int, default=20, help="events per streamed reply (2 ms apart)")
    args = parser.parse_args()
    ports = [free_port() for _ in range(args.servers)]
    upstreams = [f"http://127.0.0.1:{port}" for port in ports]
    router = free_port()
    with ExitStack() as stack:
        for port in ports:
            stack.enter_context(upstream_process(port, args.events, 0.002))
        proc = stack.enter_context(router_process(router, ",".join(upstreams)))
        result = asyncio.run(
            soak(f"http://127.0.0.1:{router}", proc.pid, args.minutes * 60, args.concurrency, upstreams)
        )
    verdict = check(result, args.concurrency)
    tally: Tally = result["tally"]
    total = sum(v for k, v in tally.sent.items() if k != "failed")
    forwarded = [stats["requests"] for stats in result["upstreams"]]
    print(
        f"\n{total} requests in {args.minutes:g} min ({total / (args.minutes * 60):.0f}/s): {dict(sorted(tally.sent.items()))}"
    )
    print(
        f"turns answered completely {len(tally.completed_ids)}, abandoned by the client {len(tally.abandoned_ids)}; per upstream server: {forwarded}"
    )
    print(
        f"RSS {verdict['first']['rss_kib'] / 1024:.1f} -> {verdict['last']['rss_kib'] / 1024:.1f} MiB ({verdict['rss_growth']:+.1%}), "
        f"descriptors {verdict['first']['fds']} -> {verdict['last']['fds']}, tasks {verdict['first']['tasks']} -> {verdict['last']['tasks']}"
    )
    for name, value in verdict["checks"].items():
        print(f"  {'ok  ' if value == 0 else 'FAIL'} {name}: {value}")
    for failure in tally.failures[:10]:
        print(f"  failure: {failure}")
    write_result(
        "soak",
        {
            "command": f"python bench/soak.py --minutes {args.minutes:g} --concurrency {args.concurrency} --servers {args.servers}",
            "requests": total,
            "sent": tally.sent,
            "completed": len(tally.completed_ids),
            "abandoned": len(tally.abandoned_ids),
            "per_server": forwarded,
            "checks": verdict["checks"],
            "rss_growth": verdict["rss_growth"],
            "samples": result["samples"],
        },
    )
    return 1 if any(verdict["checks"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
