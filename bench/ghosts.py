"""What a ghost costs: latency of fake answers and token estimates while a long stream is being
forwarded, and fakes per second with the router on one core, beside the article's naive proxy
(and LiteLLM's proxy with a mock response, where it is installed).

    python bench/ghosts.py [--requests 3000] [--litellm PATH_TO_litellm]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, pinned, process, router_process, summary, upstream_process, write_result  # noqa: E402
from bench.naive_proxy import naive_proxy_process  # noqa: E402
from tests import claude_code_shapes as cc  # noqa: E402

TITLE = cc.title_request("fix the flaky parser test")
COUNT = cc.count_tokens_request(3)


async def latency_during_stream(url: str, samples: int) -> dict[str, dict[str, float]]:
    """Ghost latencies while one 500-event stream (2 s) is being forwarded."""
    results: dict[str, list[float]] = {"fake title": [], "count_tokens estimate": []}
    async with aiohttp.ClientSession() as session:
        body = {
            "model": "local-model",
            "max_tokens": 100,
            "stream": True,
            "messages": [{"role": "user", "content": "main turn"}],
        }
        async with session.post(f"{url}/v1/messages", json=body) as main:
            await main.content.readany()
            for _ in range(samples):
                for name, path, payload in (
                    ("fake title", "/v1/messages", TITLE),
                    ("count_tokens estimate", "/v1/messages/count_tokens", COUNT),
                ):
                    start = time.perf_counter()
                    async with session.post(f"{url}{path}", json=payload, headers=cc.headers()) as response:
                        await response.read()
                        assert response.status == 200
                    results[name].append(time.perf_counter() - start)
            await main.read()
    return {name: summary(values) for name, values in results.items()}


async def throughput(
    url: str, path: str, payload: dict, requests: int, concurrency: int = 32, key: str | None = None
) -> float:
    """Answers per second for REQUESTS identical ghost requests, CONCURRENCY at a time."""
    headers = {**cc.headers(), **({"Authorization": f"Bearer {key}"} if key else {})}
    queue = list(range(requests))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            while queue:
                queue.pop()
                async with session.post(f"{url}{path}", json=payload, headers=headers) as response:
                    await response.read()
                    assert response.status == 200, response.status

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return requests / (time.perf_counter() - start)


LITELLM_CONFIG = """
model_list:
  - model_name: claude-haiku-4-5-20251001
    litellm_params:
      model: anthropic/claude-haiku-4-5-20251001
      mock_response: "OK"
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--litellm", default=shutil.which("litellm"), help="the litellm command, if installed")
    args = parser.parse_args()
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})  # the load generator on CPU 1, the proxy under test on CPU 0
    up, router, naive = free_port(), free_port(), free_port()
    report: dict = {"command": f"python bench/ghosts.py --requests {args.requests} --samples {args.samples}"}
    haiku = cc.haiku_request("", "quota", 1)
    with upstream_process(up, 500, 0.004), router_process(router, up, cpu=0):
        url = f"http://127.0.0.1:{router}"
        report["latency_during_stream_ms"] = asyncio.run(latency_during_stream(url, args.samples))
        report["fakes_per_second"] = {
            "ghost-router (fake)": asyncio.run(throughput(url, "/v1/messages", haiku, args.requests))
        }
        report["fakes_per_second"]["ghost-router (estimate)"] = asyncio.run(
            throughput(url, "/v1/messages/count_tokens", COUNT, args.requests)
        )
    with naive_proxy_process(naive, up):
        report["fakes_per_second"]["naive proxy (count_tokens)"] = asyncio.run(
            throughput(f"http://127.0.0.1:{naive}", "/v1/messages/count_tokens", COUNT, args.requests)
        )
    if args.litellm:
        port = free_port()
        config = Path(tempfile.mkdtemp()) / "litellm.yaml"
        config.write_text(LITELLM_CONFIG)
        key = f"sk-bench-{secrets.token_hex(16)}"  # LiteLLM refuses to start without one
        env = {"ANTHROPIC_API_KEY": "none", "LITELLM_LOG": "ERROR", "LITELLM_MASTER_KEY": key}
        with process(
            pinned(
                [
                    args.litellm,
                    "--config",
                    str(config),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--num_workers",
                    "1",
                ],
                0,
            ),
            port,
            env,
            timeout=120,
        ):
            time.sleep(2)
            report["fakes_per_second"]["LiteLLM proxy (mock_response)"] = asyncio.run(
                throughput(f"http://127.0.0.1:{port}", "/v1/messages", haiku, min(args.requests, 1000), key=key)
            )
    else:
        report["litellm"] = "not installed here: pass --litellm PATH to include it"
    print("ghost latency while a 500-event stream is forwarded (ms: median [p10-p90]):")
    for name, values in report["latency_during_stream_ms"].items():
        print(f"  {name:24} {values['median']:.3f} [{values['p10']:.3f}-{values['p90']:.3f}]")
    base = report["fakes_per_second"]["ghost-router (fake)"]
    print("ghost answers per second, proxy on one core:")
    for name, rate in report["fakes_per_second"].items():
        print(f"  {name:32} {rate:8.0f}/s  ({rate / base:.2f}x ghost-router)")
    write_result("ghosts", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
