"""An upstream with several servers (`urls:`): requests go to the least busy healthy one within
its own concurrency limit, a server that is down is skipped (and taken back when it returns),
ties go to the server that last saw the same system prompt, reloads keep the queue."""

from __future__ import annotations

import asyncio
import textwrap
from typing import Any

import pytest

from router.app import STATE, build_app
from router.config import Overrides, parse_config
from router.errors import RulesError
from router.plugins import builtin_registry
from tests.conftest import user_message
from tests.fake_upstream import FakeUpstream
from tests.test_upstream_health import start_upstream, until

POOL_RULES = """
upstreams:
  gpus:
    urls: {urls}
    max_concurrency: 1
    queue_timeout: 30s
rules:
  - name: main
    match: {{}}
    action: {{forward: {{upstream: gpus, priority: user}}}}
"""


@pytest.fixture
def fakes(aiohttp_server: Any):
    """Start N one-slot fake upstreams (slots=LIMITS) on real ports."""
    started: list[FakeUpstream] = []

    async def make(*slots: int) -> list[FakeUpstream]:
        for limit in slots:
            fake = FakeUpstream(slots=limit)
            server = await aiohttp_server(fake.app())
            fake.url = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
            started.append(fake)
        return started[-len(slots) :]

    yield make
    for fake in started:
        assert not fake.violations, fake.violations


@pytest.fixture
def pool_router(aiohttp_server: Any):
    async def make(urls: str) -> Any:
        text = textwrap.dedent(POOL_RULES).format(urls=urls)
        return await aiohttp_server(build_app(parse_config(text, "pool.yaml", builtin_registry())))

    return make


def body(text: str, system: str = "You are a coding agent.") -> dict[str, Any]:
    return {"model": "m", "max_tokens": 5, "system": system, "messages": user_message(text)}


async def post(client: Any, text: str, hold: str | None = None, system: str = "You are a coding agent.") -> Any:
    headers = {"x-test-upstream": f"hold={hold}"} if hold else {}
    return await client.post("/v1/messages", json=body(text, system), headers=headers)


async def test_requests_spread_over_the_pool_each_server_within_its_own_limit(fakes, pool_router, aiohttp_client):
    big, small = await fakes(2, 1)
    router = await pool_router(f"[{{url: {big.url}, max_concurrency: 2}}, {small.url}]")
    client = await aiohttp_client(router)
    state = router.app[STATE]
    held = [asyncio.create_task(post(client, f"held {i}", hold="go")) for i in range(5)]
    await until(lambda: len(big.seen) + len(small.seen) == 3 and state.pool["gpus"].gate.queued == 2)
    assert (big.in_flight, small.in_flight) == (2, 1), "three slots in all, each server within its own"
    status = (await (await client.get("/_router/status")).json())["upstreams"]["gpus"]
    assert (status["in_flight"], status["max_concurrency"], status["queued"]) == (3, 3, 2)
    assert [s["in_flight"] for s in status["servers"]] == [2, 1]
    big.release("go")
    small.release("go")
    answers = await asyncio.gather(*held)
    assert [a.status for a in answers] == [200] * 5
    assert len(big.seen) + len(small.seen) == 5 and big.max_in_flight == 2 and small.max_in_flight == 1


async def test_a_server_that_is_down_is_skipped_and_taken_back_when_it_returns(
    fakes, pool_router, aiohttp_client, unused_tcp_port, caplog
):
    (alive,) = await fakes(1)
    router = await pool_router(f"[http://127.0.0.1:{unused_tcp_port}, {alive.url}]")
    client = await aiohttp_client(router)
    state = router.app[STATE]
    for i in range(4):  # the first goes to the dead server, is refused there, and is retried on the live one
        assert (await post(client, f"turn {i}")).status == 200
    assert len(alive.seen) == 4
    status = (await (await client.get("/_router/status")).json())["upstreams"]["gpus"]
    assert status["healthy"] is True, "a pool with one live server is healthy"
    assert [s["healthy"] for s in status["servers"]] == [False, True]
    assert sum("is down" in r.getMessage() for r in caplog.records) == 1

    revived = FakeUpstream()
    runner = await start_upstream(revived, unused_tcp_port)
    try:
        await until(lambda: not state.pool["gpus"].servers[0].health.down)
        both = [asyncio.create_task(post(client, f"again {i}", hold="go")) for i in range(2)]
        await until(lambda: len(revived.seen) == 1 and alive.in_flight == 1)
        revived.release("go")
        alive.release("go")
        assert [r.status for r in await asyncio.gather(*both)] == [200, 200]
    finally:
        await runner.cleanup()


async def test_all_servers_down_fails_fast_naming_each(pool_router, aiohttp_client, closed_port, unused_tcp_port):
    router = await pool_router(f"[http://127.0.0.1:{closed_port}, http://127.0.0.1:{unused_tcp_port}]")
    client = await aiohttp_client(router)
    first = await post(client, "first")
    assert first.status == 502  # refused by one, retried on the other, refused again
    fast = await post(client, "second")
    message = (await fast.json())["error"]["message"]
    assert fast.status == 503 and "all 2 servers" in message
    assert f"127.0.0.1:{closed_port}" in message and f"127.0.0.1:{unused_tcp_port}" in message


async def test_on_equal_load_a_system_prompt_goes_back_to_the_server_that_saw_it(fakes, pool_router, aiohttp_client):
    first, second = await fakes(1, 1)
    router = await pool_router(f"[{first.url}, {second.url}]")
    client = await aiohttp_client(router)
    busy = asyncio.create_task(post(client, "other work", hold="go", system="Another agent."))
    await first.wait_for(1)
    assert (await post(client, "turn 1", system="Agent A.")).status == 200  # the first server is busy: the second
    first.release("go")
    await busy
    assert (await post(client, "turn 2", system="Agent A.")).status == 200  # both idle: back to the second
    assert (await post(client, "turn 1", system="Agent B.")).status == 200  # unknown prompt, both idle: the first
    assert [s.user_text for s in second.seen] == ["turn 1", "turn 2"]
    assert [s.user_text for s in first.seen] == ["other work", "turn 1"]


async def test_reload_adds_and_removes_servers_and_keeps_the_queue(fakes, aiohttp_server, aiohttp_client, tmp_path):
    a, b = await fakes(1, 1)
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(POOL_RULES).format(urls=f"[{a.url}]"))
    config = parse_config(path.read_text(), str(path), builtin_registry())
    router = await aiohttp_server(build_app(config, rules_path=str(path), reload_interval=0.05))
    client = await aiohttp_client(router)
    state = router.app[STATE]
    held = asyncio.create_task(post(client, "held", hold="a"))
    await a.wait_for(1)
    queued = asyncio.create_task(post(client, "queued"))
    await until(lambda: state.pool["gpus"].gate.queued == 1)
    path.write_text(textwrap.dedent(POOL_RULES).format(urls=f"[{a.url}, {b.url}]"))
    await until(lambda: queued.done())
    assert (await queued).status == 200 and [s.user_text for s in b.seen] == ["queued"]
    path.write_text(textwrap.dedent(POOL_RULES).format(urls=f"[{b.url}]"))
    await until(lambda: [s.url for s in state.pool["gpus"].servers] == [b.url])
    a.release("a")
    assert (await held).status == 200, "a request in flight on a removed server finishes"
    assert (await post(client, "after")).status == 200 and b.seen[-1].user_text == "after"
    assert state.pool["gpus"].gate.in_flight == 0


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        ("{url: 'http://a:1', urls: ['http://b:1']}", "either `url` (one server) or `urls`"),
        ("{max_concurrency: 2}", "either `url` (one server) or `urls`"),
        ("{urls: ['http://a:1', 'http://a:1/']}", "http://a:1 is listed twice"),
        ("{urls: ['ftp://a']}", "expected http(s)://host:port"),
        ("{urls: []}", "upstreams.gpus.urls"),
    ],
)
def test_pool_config_errors_say_what_is_wrong(upstream, expected):
    text = f"upstreams:\n  gpus: {upstream}\nrules: []\n"
    with pytest.raises(RulesError) as caught:
        parse_config(text, "pool.yaml", builtin_registry())
    assert expected in str(caught.value) and str(caught.value).startswith("pool.yaml:2:")


def test_serve_upstream_with_commas_makes_the_default_upstream_a_pool():
    text = "upstreams:\n  local: {url: 'http://x:1', max_concurrency: 2}\nrules: []\n"
    config = parse_config(text, "pool.yaml", builtin_registry(), Overrides(upstream_url="http://a:1, http://b:2/"))
    servers = config.upstreams["local"].servers
    assert [(s.url, s.max_concurrency) for s in servers] == [("http://a:1", 2), ("http://b:2", 2)]
    assert config.upstreams["local"].max_concurrency == 4
