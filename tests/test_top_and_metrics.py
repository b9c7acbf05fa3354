"""`ghost-router top` rendered against a live router, and Prometheus metrics at /metrics."""

from __future__ import annotations

import asyncio
import re
import sys

from tests.conftest import user_message


async def top_once(url: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "router",
        "top",
        "--once",
        "--url",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode, out.decode(), err.decode()


async def test_top_shows_rules_queues_and_recent_requests(make_router, upstream, sdk, http):
    router = await make_router()
    client = sdk(router)
    await client.messages.count_tokens(model="m", messages=user_message("hi"))
    await client.messages.create(model="claude-opus", max_tokens=5, messages=user_message("a real turn"))
    holder = asyncio.create_task(
        client.messages.create(
            model="m", max_tokens=5, messages=user_message("held"), extra_headers={"x-test-upstream": "hold=h"}
        )
    )
    await upstream.wait_for(2)
    queued = asyncio.create_task(client.messages.create(model="m", max_tokens=5, messages=user_message("queued")))
    url = str(router.make_url("")).rstrip("/")
    for _ in range(200):
        code, screen, err = await top_once(url)
        if re.search(r"^local\s+\S+\s+1/1\s+1\s", screen, re.M):
            break
    assert code == 0, err
    assert screen.startswith(f"ghost-router 0.1.0 at {url}")
    assert "ghosts answered here 1   forwarded 1" in screen
    assert re.search(r"^local\s+http://127\.0\.0\.1:\d+\s+1/1\s+1\s", screen, re.M), screen
    assert re.search(r"^count-tokens\s+1\s+estimate$", screen, re.M)
    assert re.search(r"^main\s+3\s+rewrite\+forward:local/user$", screen, re.M)
    assert re.search(r"anthropic\s+POST /v1/messages\s+claude-opus\s+main\s+200", screen)
    print(screen)
    upstream.release("h")
    await asyncio.gather(holder, queued)


async def test_top_says_when_the_router_is_not_there(closed_port):
    code, _, err = await top_once(f"http://127.0.0.1:{closed_port}")
    assert code == 1 and "cannot reach the router" in err and "ghost-router serve" in err


async def test_metrics_page(make_router, upstream, sdk, http):
    router = await make_router()
    client = sdk(router)
    await client.messages.create(model="m", max_tokens=5, messages=user_message("x"))
    await client.messages.count_tokens(model="m", messages=user_message("x"))
    raw = await http(router)
    response = await raw.get("/metrics")
    assert response.status == 200 and response.content_type == "text/plain"
    text = await response.text()
    assert 'ghost_router_rule_hits_total{rule="main"} 1' in text
    assert 'ghost_router_rule_hits_total{rule="count-tokens"} 1' in text
    assert 'ghost_router_outcomes_total{outcome="forwarded"} 1' in text
    assert 'ghost_router_upstream_in_flight{upstream="local"} 0' in text
    assert "ghost_router_rules_load_error 0" in text
    for line in text.splitlines():
        assert line.startswith("# ") or re.match(
            r'^ghost_router_[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+$', line
        ), line
