"""An upstream that goes away: detected and reported once, new requests fail fast naming the URL,
queued requests survive a restart that comes back within their timeout, recovery is noticed."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from router.app import STATE
from tests.conftest import RULES, user_message
from tests.fake_upstream import FakeUpstream


async def start_upstream(fake: FakeUpstream, port: int) -> web.AppRunner:
    runner = web.AppRunner(fake.app(), handler_cancellation=True, shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


BODY = {"model": "m", "max_tokens": 5, "messages": user_message("hi")}


async def test_down_is_reported_once_fails_fast_and_recovery_is_noticed(make_router, http, unused_tcp_port, caplog):
    rules = RULES.replace("url: {upstream}", f"url: http://127.0.0.1:{unused_tcp_port}")
    router = await make_router(rules)
    client = await http(router)
    state = router.app[STATE]
    first = await client.post("/v1/messages", json=BODY)
    assert first.status == 502
    started = time.monotonic()
    for _ in range(5):
        fast = await client.post("/v1/messages", json=BODY)
        assert fast.status == 503
        message = (await fast.json())["error"]["message"]
        assert f"http://127.0.0.1:{unused_tcp_port} is down since" in message and "checks it every second" in message
    assert time.monotonic() - started < 5
    doc = await (await client.get("/_router/status")).json()
    assert doc["upstreams"]["local"]["healthy"] is False and doc["upstreams"]["local"]["last_error"]
    assert sum("no request goes to it until it answers again" in r.getMessage() for r in caplog.records) == 1, (
        "logged once, not once per request"
    )

    runner = await start_upstream(FakeUpstream(), unused_tcp_port)
    try:
        await until(lambda: not state.pool["local"].all_down())
        assert (await client.post("/v1/messages", json=BODY)).status == 200
        assert sum("is back after" in r.getMessage() for r in caplog.records) == 1
    finally:
        await runner.cleanup()


async def test_queued_requests_survive_an_upstream_restart(make_router, sdk, unused_tcp_port):
    fake = FakeUpstream()
    runner = await start_upstream(fake, unused_tcp_port)
    router = await make_router(RULES.replace("url: {upstream}", f"url: http://127.0.0.1:{unused_tcp_port}"))
    state = router.app[STATE]
    client = sdk(router)
    held = asyncio.create_task(
        client.messages.create(
            model="m", max_tokens=5, messages=user_message("held"), extra_headers={"x-test-upstream": "hold=never"}
        )
    )
    await fake.wait_for(1)
    queued = asyncio.create_task(client.messages.create(model="m", max_tokens=5, messages=user_message("queued")))
    await until(lambda: state.pool["local"].gate.queued == 1)
    await runner.cleanup()  # the server goes away: the held request fails, the queued one waits
    try:
        await held
    except Exception:  # noqa: BLE001 - the held request's fate is the upstream's, not the point here
        pass
    await asyncio.sleep(0.3)
    assert not queued.done()
    restarted = FakeUpstream()
    runner = await start_upstream(restarted, unused_tcp_port)
    try:
        message = await asyncio.wait_for(queued, 15)
        assert message.content[0].text == "tok0 tok1 tok2 "
        assert [s.user_text for s in restarted.seen] == ["queued"]
    finally:
        await runner.cleanup()
