"""Editing rules.yaml while requests stream: new rules go live at once, streams finish intact,
bad edits leave the last good table serving and are reported, and a fix is picked up."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from router.app import STATE, WATCHER, build_app
from router.config import load_config
from router.plugins import builtin_registry
from tests.conftest import user_message

BASE = """\
upstreams:
  local: {{url: "{upstream}", max_concurrency: {slots}}}
rules:
  - name: greeting
    match: {{user: hello}}
    action: {{fake: {{text: "{greeting}"}}}}
  - name: main
    action: {{forward: {{}}}}
"""


@pytest.fixture
def rules_file(tmp_path, upstream):
    path = tmp_path / "rules.yaml"

    def write(text: str | None = None, greeting: str = "v1", slots: int = 1) -> None:
        path.write_text(
            text if text is not None else BASE.format(upstream=upstream.url, greeting=greeting, slots=slots)
        )

    write()
    return path, write


@pytest.fixture
async def live_router(aiohttp_server, rules_file):
    path, _ = rules_file
    config = load_config(str(path), builtin_registry())
    return await aiohttp_server(build_app(config, rules_path=str(path)))


async def until(predicate, timeout: float = 5.0) -> float:
    """Seconds until PREDICATE holds (fails after TIMEOUT)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def greeting(client) -> str:
    message = await client.messages.create(model="m", max_tokens=5, messages=user_message("hello"))
    return message.content[0].text


async def test_edits_go_live_streams_finish_bad_edits_are_reported_and_fixes_picked_up(
    live_router, rules_file, upstream, sdk, http
):
    path, write = rules_file
    state = live_router.app[STATE]
    client = sdk(live_router)
    assert await greeting(client) == "v1"

    raw = await http(live_router)
    stream = await raw.post(
        "/v1/messages",
        json={"model": "m", "max_tokens": 5, "stream": True, "messages": user_message("long")},
        headers={"x-test-upstream": "hold=finish,events=50"},
    )
    assert (await stream.content.readuntil(b"\n\n")).startswith(b"event: message_start")

    write(greeting="v2")
    reload_seconds = await until(lambda: state.reloads == 1)
    assert await greeting(client) == "v2"

    write("rules:\n  - name: broken\n    action: {fake: {text: [unclosed\n")
    await until(lambda: state.last_load_error is not None)
    assert state.last_load_error.startswith(f"{path}:4:") and "invalid YAML" in state.last_load_error
    assert await greeting(client) == "v2", "the last good table keeps serving"
    doc = await (await raw.get("/_router/status")).json()
    assert doc["last_load_error"] == state.last_load_error

    write(BASE.format(upstream=upstream.url, greeting="v3", slots=1).replace("fake:", "fak:"))
    await until(lambda: "unknown action 'fak'" in (state.last_load_error or ""))
    assert "rule #1 'greeting'" in state.last_load_error and ":6:" in state.last_load_error

    write(greeting="v4")
    await until(lambda: state.last_load_error is None)
    assert await greeting(client) == "v4"
    assert state.reloads == 2

    upstream.release("finish")
    body = (await stream.read()).decode()
    assert body.count("event: content_block_delta") == 50 and body.rstrip().endswith('data: {"type": "message_stop"}')
    print(f"reload went live {reload_seconds * 1000:.0f} ms after the save")


async def test_sighup_reloads_even_when_the_file_looks_unchanged(live_router, rules_file, sdk):
    path, write = rules_file
    state = live_router.app[STATE]
    before = os.stat(path)
    write(greeting="v1-")  # same size, same mtime after utime: the poll cannot see it
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    live_router.app[WATCHER]._rules_signature = live_router.app[WATCHER]._rules_stat()
    await asyncio.sleep(0.6)
    assert state.reloads == 0
    os.kill(os.getpid(), signal.SIGHUP)
    await until(lambda: state.reloads == 1)
    assert await greeting(sdk(live_router)) == "v1-"


async def test_raising_max_concurrency_admits_queued_requests_without_dropping_them(
    aiohttp_server, rules_file, upstream, sdk
):
    path, write = rules_file
    upstream.slots = 2
    config = load_config(str(path), builtin_registry())
    router = await aiohttp_server(build_app(config, rules_path=str(path)))
    client = sdk(router)
    state = router.app[STATE]
    first = asyncio.create_task(
        client.messages.create(
            model="m", max_tokens=5, messages=user_message("a"), extra_headers={"x-test-upstream": "hold=go"}
        )
    )
    await upstream.wait_for(1)
    second = asyncio.create_task(
        client.messages.create(
            model="m", max_tokens=5, messages=user_message("b"), extra_headers={"x-test-upstream": "hold=go"}
        )
    )
    await until(lambda: state.pool["local"].gate.queued == 1)
    write(slots=2)
    await upstream.wait_for(2)
    assert state.pool["local"].gate.in_flight == 2 and upstream.max_in_flight == 2
    upstream.release("go")
    assert [m.content[0].text for m in await asyncio.gather(first, second)] == ["tok0 tok1 tok2 "] * 2


async def test_missing_file_keeps_the_table_and_recovers(live_router, rules_file, sdk):
    path, write = rules_file
    state = live_router.app[STATE]
    path.unlink()
    await until(lambda: state.last_load_error is not None)
    assert "cannot read rules file" in state.last_load_error
    assert await greeting(sdk(live_router)) == "v1"
    write(greeting="back")
    await until(lambda: state.last_load_error is None)
    assert await greeting(sdk(live_router)) == "back"
