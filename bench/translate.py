"""The cost of translating between APIs, beside plain forwarding, in one run.

    python bench/translate.py [--rounds 60] [--events 200] [--interval 0.001]

1. In process (no sockets): a Claude Code turn's body (bench.common.claude_code_body, 50 KB and
   150 KB) parsed and written again, as plain forwarding with a rewrite does, beside the same body
   translated to OpenAI chat (anthropic -> hub -> openai-chat, then written); an OpenAI chat
   stream's chunks turned into Anthropic events one by one, beside passing them on as they are.
2. Through real sockets, interleaved: an OpenAI chat client (streamed, 200 events 1 ms apart)
   through a router whose upstream speaks Anthropic (`api: anthropic`: each request and event is
   translated), beside an Anthropic client through the same router to the same upstream (plain
   forwarding), beside direct to the upstream.
Prints medians and ratios; writes bench/results/translate.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import claude_code_body, free_port, router_process, summary, upstream_process, write_result  # noqa: E402
from router.jsonutil import dumps_bytes, loads  # noqa: E402
from router.translate.apis import StreamTranslator, translate_request  # noqa: E402

JSON = {"Content-Type": "application/json"}
RULES = """version: 1
upstreams:
  local: {{url: "http://127.0.0.1:{port}", api: anthropic}}
rules:
  - name: all
    action: {{forward: {{}}}}
"""


def median_us(work, repeat: int) -> float:
    """Median microseconds of one call of WORK over REPEAT calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def openai_chunks(events: int) -> list[bytes]:
    """An OpenAI chat stream of EVENTS text deltas, as llama-server sends it."""
    head = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    chunks = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    chunks += [{**head, "choices": [{"index": 0, "delta": {"content": f" t{i}"}}]} for i in range(events)]
    chunks.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    chunks.append({**head, "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": events}})
    return [f"data: {json.dumps(c)}\n\n".encode() for c in chunks] + [b"data: [DONE]\n\n"]


def in_process(events: int) -> dict:
    report: dict = {}
    for size in (50_000, 150_000):
        raw = json.dumps(claude_code_body(size, True)).encode()
        plain = median_us(lambda raw=raw: dumps_bytes(loads(raw)), 200)
        translated = median_us(
            lambda raw=raw: dumps_bytes(translate_request("anthropic", "openai-chat", loads(raw))), 200
        )
        report[f"request_{size // 1000}kb"] = {"bytes": len(raw), "plain_us": plain, "translated_us": translated}
        print(
            f"a {len(raw):,}-byte Claude Code turn: parsed and written {plain:8.1f} us; "
            f"translated to OpenAI chat and written {translated:8.1f} us (+{translated - plain:.1f} us)"
        )
    chunks = openai_chunks(events)

    def stream() -> None:
        translator = StreamTranslator("openai-chat", "anthropic")
        for chunk in chunks:
            translator.feed(chunk)
        translator.close()

    per_event = median_us(stream, 50) / len(chunks)
    passed = median_us(lambda: [bytes(c) for c in chunks], 50) / len(chunks)
    report["stream_event"] = {"plain_us": passed, "translated_us": per_event}
    print(f"a streamed event: passed on {passed:.2f} us; translated openai-chat -> anthropic {per_event:.2f} us")
    return report


async def one(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[float, float]:
    start = time.perf_counter()
    async with session.post(url, data=body, headers=JSON) as response:
        first = None
        async for _ in response.content.iter_any():
            if first is None:
                first = time.perf_counter() - start
        assert response.status == 200, response.status
    return first or 0.0, time.perf_counter() - start


async def side_by_side(paths: dict[str, tuple[str, bytes]], rounds: int) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {name: {"ttfb": [], "total": []} for name in paths}
    shuffle = random.Random(7).shuffle
    order = list(paths.items())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        for name, (url, body) in order:  # warm-up
            await one(session, url, body)
        for _ in range(rounds):
            shuffle(order)
            for name, (url, body) in order:
                ttfb, total = await one(session, url, body)
                results[name]["ttfb"].append(ttfb)
                results[name]["total"].append(total)
    return results


def through_sockets(args: argparse.Namespace) -> dict:
    up, router = free_port(), free_port()
    anthropic_body = claude_code_body(50_000, True)
    openai_body = translate_request("anthropic", "openai-chat", anthropic_body)
    openai_body["stream_options"] = {"include_usage": True}
    with tempfile.TemporaryDirectory() as folder:
        rules = Path(folder) / "rules.yaml"
        rules.write_text(RULES.format(port=up))
        with upstream_process(up, args.events, args.interval), router_process(router, up, ["--rules", str(rules)]):
            paths = {
                "direct (anthropic)": (f"http://127.0.0.1:{up}/v1/messages", json.dumps(anthropic_body).encode()),
                "router, plain forward": (
                    f"http://127.0.0.1:{router}/v1/messages",
                    json.dumps(anthropic_body).encode(),
                ),
                "router, translated": (
                    f"http://127.0.0.1:{router}/v1/chat/completions",
                    json.dumps(openai_body).encode(),
                ),
            }
            results = asyncio.run(side_by_side(paths, args.rounds))
    direct = {k: summary(v) for k, v in results["direct (anthropic)"].items()}
    report = {}
    print(f"\nstreamed, {args.events} events {args.interval * 1000:g} ms apart, {args.rounds} rounds (ms: median)")
    print(f"{'path':24} {'TTFB':>8} {'total':>9} {'TTFB added':>11} {'total ratio':>12}")
    for name, values in results.items():
        ttfb, total = summary(values["ttfb"]), summary(values["total"])
        added, ratio = ttfb["median"] - direct["ttfb"]["median"], total["median"] / direct["total"]["median"]
        report[name] = {"ttfb": ttfb, "total": total, "ttfb_added_ms": added, "total_ratio": ratio}
        print(f"{name:24} {ttfb['median']:8.2f} {total['median']:9.2f} {added:+11.2f} {ratio:12.3f}")
    return report


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.001)
    args = parser.parse_args()
    report = {"in_process": in_process(args.events), "sockets": through_sockets(args)}
    command = f"python bench/translate.py --rounds {args.rounds} --events {args.events} --interval {args.interval}"
    write_result("translate", {**report, "command": command, "events": args.events})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
