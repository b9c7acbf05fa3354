"""Progress while a forward waits (issue 19): its place in the queue, its prompt's progress at a
llama-server (GET /slots, played by the fake upstream with numbers the test sets), in
/_router/status, `top` and the log; and the timing headers on every answer.

No assertion depends on a duration: the tests set what the fake's /slots reports, then wait
(bounded) until the router shows it."""

from __future__ import annotations

import asyncio
import re
import textwrap
from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest

from router.app import STATE, build_app
from router.config import parse_config
from router.plugins import builtin_registry
from router.servers.llama import LlamaServer
from router.upstream import slots, waiting
from tests.conftest import RULES, user_message
from tests.fake_upstream import FakeUpstream, llama_slot
from tests.servers import require_llama_server
from tests.test_top_and_metrics import top_once

FAST = RULES.replace("queue_timeout: 30s", "queue_timeout: 30s\n    keepalive: 50ms")
TIMING = re.compile(r"^\d+\.\d$")
LONG_PROMPT = " ".join(f"word{i} alpha beta" for i in range(3000))  # ~20k tokens by the router's estimate


@pytest.fixture(autouse=True)
def _quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ask /slots at once and often, and repeat the waiting line often: only how soon the router
    notices changes, never what a test asserts."""
    monkeypatch.setattr(slots, "POLL_AFTER", 0.0)
    monkeypatch.setattr(slots, "POLL_EVERY", 0.01)
    monkeypatch.setattr(waiting, "REPEAT", 0.05)


async def until(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """CHECK's first true value (awaited when it is a coroutine function), within TIMEOUT."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def progress_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ghost_router.progress"]


def queue_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [line for line in progress_lines(caplog) if " queued for upstream " in line]


async def in_flight(client: Any) -> list[dict[str, Any]]:
    response = await client.get("/_router/status")
    return (await response.json())["in_flight"]


async def entry_with(
    client: Any, test: Callable[[dict[str, Any]], bool], what: str, timeout: float = 10.0
) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        return next((item for item in await in_flight(client) if test(item)), None)

    return await until(find, what, timeout)


def prefill_of(item: dict[str, Any]) -> dict[str, Any]:
    return item.get("progress") or {}


async def test_prefill_progress_shows_in_status_top_and_the_log(make_router, upstream, http, caplog):
    caplog.set_level("INFO", logger="ghost_router.progress")
    upstream.slot_report = [llama_slot(0, task=4, busy=False)]  # an idle llama-server that served task 4 before
    router = await make_router(FAST)
    client = await http(router)
    body = {"model": "m", "max_tokens": 5, "messages": user_message(LONG_PROMPT)}
    answer = asyncio.create_task(client.post("/v1/messages", json=body, headers={"x-test-upstream": "hold_before=p"}))
    await upstream.wait_for(1)
    item = await entry_with(client, lambda i: i.get("state") == "waiting", "the request waiting at its server")
    assert item["progress"] is None, "no busy slot yet: no progress"

    upstream.slot_report = [llama_slot(0, task=5, processed=2048)]
    item = await entry_with(client, lambda i: prefill_of(i).get("processed") == 2048, "the first report")
    first = item["progress"]
    assert first["task"] == 5 and first["guess"] is False and first["phase"] == "prefill"
    estimate = first["prompt_tokens_estimate"]
    assert estimate > 6144, estimate  # the router estimates the prompt: /slots does not say

    upstream.slot_report = [llama_slot(0, task=5, processed=6144)]
    item = await entry_with(client, lambda i: prefill_of(i).get("processed") == 6144, "the second report")
    second = item["progress"]
    assert second["rate"] > 0 and second["eta_s_estimate"] is not None, second
    # what is left at that rate, counting down since the report
    assert 0 <= second["eta_s_estimate"] <= (estimate - 6144) / second["rate"] * 1.01 + 0.1
    assert item["upstream"] == "local" and item["rule"] == "main" and item["path"] == "/v1/messages"

    code, screen, err = await top_once(str(router.make_url("")).rstrip("/"))
    assert code == 0, err
    row = next(line for line in screen.splitlines() if line.startswith(item["id"][-6:]))
    assert re.search(r"prefill: 6,144 of ~[\d,]+ prompt tokens \(\d+%\), [\d,]+ tokens/s, ~[\d,]+ s left$", row), row
    print(screen)

    line = await until(
        lambda: next((line for line in progress_lines(caplog) if "6,144 of ~" in line), None), "a log line"
    )
    assert line.startswith(f"#{item['id']} sent to upstream local at ") and "still waiting for its answer (" in line

    upstream.slot_report = [llama_slot(0, task=5, processed=estimate, decoded=3)]
    item = await entry_with(client, lambda i: prefill_of(i).get("phase") == "generating", "generation")
    assert item["progress"]["eta_s_estimate"] is None
    last = item["progress"]
    upstream.release("p")
    assert (await answer).status == 200
    assert await in_flight(client) == []
    savings = (await (await client.get("/_router/status")).json())["savings"]
    # the prefill rate the savings ledger prices saved tokens at: what the server was seen doing
    assert savings["prefill_tokens_per_second"] == pytest.approx(last["rate"], rel=0.01), (savings, last)


async def test_streamed_requests_on_a_two_slot_server_are_paired_in_order_and_marked_as_guesses(
    aiohttp_server, http, caplog
):
    fake = FakeUpstream(slots=2)
    fake.slot_report = [llama_slot(0), llama_slot(1)]
    served = await aiohttp_server(fake.app())
    rules = textwrap.dedent(FAST).replace("max_concurrency: 1", "max_concurrency: 2")
    config = parse_config(rules.format(upstream=str(served.make_url("")).rstrip("/")), "t.yaml", builtin_registry())
    router = await aiohttp_server(build_app(config))
    client = await http(router)
    llama_style = {"x-test-upstream": "hold_before=p,comments_every=3600"}

    async def ask(text: str) -> bytes:
        body = {"model": "m", "max_tokens": 5, "stream": True, "messages": user_message(text)}
        response = await client.post("/v1/messages", json=body, headers=llama_style)
        return await response.read()

    first = asyncio.create_task(ask("first " + LONG_PROMPT))
    await fake.wait_for(1)
    second = asyncio.create_task(ask("second"))
    await fake.wait_for(2)
    fake.slot_report = [llama_slot(0, task=9, processed=100), llama_slot(1, task=8, processed=512)]
    items = await until(
        lambda: _all_paired(client, 2), "both requests paired with a slot"
    )  # oldest request <-> lowest task
    by_task = {item["progress"]["task"]: item for item in items}
    assert int(by_task[8]["id"]) < int(by_task[9]["id"])
    assert all(item["progress"]["guess"] for item in items), "two waited at once: the pairing is a guess"
    top = (await top_once(str(router.make_url("")).rstrip("/")))[1]
    assert "(slot paired by order: a guess)" in top
    fake.release("p")
    assert b"message_stop" in await first and b"message_stop" in await second
    assert not fake.violations


async def _all_paired(client: Any, count: int) -> list[dict[str, Any]] | None:
    items = [item for item in await in_flight(client) if prefill_of(item).get("task") is not None]
    return items if len(items) == count else None


async def test_a_server_without_slots_is_asked_once_and_requests_still_work(make_router, upstream, http):
    router = await make_router(FAST)
    client = await http(router)
    body = {"model": "m", "max_tokens": 5, "messages": user_message("hi")}
    for number in (1, 2):
        answer = asyncio.create_task(
            client.post("/v1/messages", json=body, headers={"x-test-upstream": f"hold_before=g{number}"})
        )
        await upstream.wait_for(number)
        item = await entry_with(client, lambda i: i.get("state") == "waiting", "the request at its server")
        if number == 1:
            await until(lambda: upstream.slots_calls == 1, "the one /slots request")
        assert item["progress"] is None
        upstream.release(f"g{number}")
        assert (await answer).status == 200
    server = router.app[STATE].pool["local"].servers[0]
    assert slots.watch(server).unsupported_until > 0 and upstream.slots_calls == 1, "not asked again"


async def test_queued_requests_show_their_place_in_status_top_and_the_log(make_router, upstream, http, caplog):
    caplog.set_level("INFO", logger="ghost_router.progress")
    router = await make_router(FAST)
    client = await http(router)

    def send(model: str, text: str, directives: str = "") -> asyncio.Task:
        body = {"model": model, "max_tokens": 5, "messages": user_message(text)}
        return asyncio.create_task(client.post("/v1/messages", json=body, headers={"x-test-upstream": directives}))

    holder = send("m", "holder", "hold=h")
    await upstream.wait_for(1)
    background = send("claude-3-5-haiku", "background")
    await entry_with(client, lambda i: i.get("state") == "queued", "the background request queued")
    assert "(this one 1st of 1 in line)" in queue_lines(caplog)[-1], progress_lines(caplog)
    user = send("m", "user turn")
    items = await until(
        lambda: _queued(client, 2), "two queued requests"
    )  # the user's turn goes ahead of the background one
    places = {item["priority"]: (item["place"], item["in_line"]) for item in items}
    assert places == {"user": (1, 2), "background": (2, 2)}, items
    assert "(this one 1st of 2 in line)" in queue_lines(caplog)[-1], progress_lines(caplog)
    screen = (await top_once(str(router.make_url("")).rstrip("/")))[1]
    assert re.search(r"^\d{6}\s+.*\s+queued, 1st of 2 in line$", screen, re.M), screen
    assert re.search(r"^\d{6}\s+.*\s+queued, 2nd of 2 in line$", screen, re.M), screen
    upstream.release("h")
    assert [(await t).status for t in (holder, background, user)] == [200, 200, 200]
    assert [s.user_text for s in upstream.seen] == ["holder", "user turn", "background"]


async def _queued(client: Any, count: int) -> list[dict[str, Any]] | None:
    items = [item for item in await in_flight(client) if item.get("state") == "queued"]
    return items if len(items) == count else None


def timing_of(headers: Any) -> tuple[float, float]:
    queue, overhead = headers["x-ghost-router-queue-ms"], headers["x-ghost-router-overhead-ms"]
    assert TIMING.match(queue) and TIMING.match(overhead), (queue, overhead)
    every = headers.getall if hasattr(headers, "getall") else headers.get_list  # aiohttp's or httpx's
    assert len(every("x-ghost-router-queue-ms")) == 1
    return float(queue), float(overhead)


async def test_every_answer_carries_the_timing_headers(make_router, upstream, http):
    router = await make_router(FAST)
    client = await http(router)
    message = {"model": "m", "max_tokens": 5, "messages": user_message("hi")}

    local = await client.head("/")  # a fake
    assert timing_of(local.headers)[0] == 0.0
    count = await client.post("/v1/messages/count_tokens", json={"model": "m", "messages": user_message("hi")})
    assert count.headers["x-ghost-router-tokens"] == "estimate", "a local estimate says it is one"
    assert timing_of(count.headers)[0] == 0.0
    whole = await client.post("/v1/messages", json=message)
    assert whole.status == 200
    timing_of(whole.headers)
    streamed = await client.post("/v1/messages", json={**message, "stream": True})
    assert streamed.status == 200 and b"message_stop" in await streamed.read()
    timing_of(streamed.headers)
    failed = await client.post("/v1/messages", json=message, headers={"x-test-upstream": "status=500"})
    assert failed.status == 500
    timing_of(failed.headers)
    refused = await client.post("/v1/messages", data=b"{not json")
    assert refused.status == 400
    assert timing_of(refused.headers)[0] == 0.0

    holder = asyncio.create_task(client.post("/v1/messages", json=message, headers={"x-test-upstream": "hold=h"}))
    await upstream.wait_for(len(upstream.seen) + 1)
    early = asyncio.create_task(client.post("/v1/messages", json={**message, "stream": True}))
    response = await early  # its head goes out while it waits in the queue (keep-alive)
    assert response.status == 200
    timing_of(response.headers)
    upstream.release("h")
    assert b"message_stop" in await response.read() and (await holder).status == 200


async def test_the_sdks_accept_answers_with_the_headers(make_router, upstream, sdk):
    router = await make_router(FAST)
    client = sdk(router)
    raw = await client.messages.with_raw_response.create(model="m", max_tokens=5, messages=user_message("hi"))
    assert (await raw.parse()).content[0].text == "tok0 tok1 tok2 "
    timing_of(raw.headers)
    async with client.messages.stream(model="m", max_tokens=5, messages=user_message("hi")) as stream:
        assert await stream.get_final_text() == "tok0 tok1 tok2 "
    count = await client.messages.count_tokens(model="m", messages=user_message("hi"))
    assert count.input_tokens > 0
    with pytest.raises(anthropic.InternalServerError) as failed:
        await client.messages.create(
            model="m", max_tokens=5, messages=user_message("hi"), extra_headers={"x-test-upstream": "status=500"}
        )
    timing_of(failed.value.response.headers)
    chat = openai.AsyncOpenAI(base_url=str(router.make_url("/v1")), api_key="none", max_retries=0)
    try:
        raw_chat = await chat.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
        assert raw_chat.parse().choices[0].message.content == "tok0 tok1 tok2 "
        timing_of(raw_chat.headers)
        pieces = [
            c
            async for c in await chat.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        ]
        assert "".join(c.choices[0].delta.content or "" for c in pieces if c.choices) == "tok0 tok1 tok2 "
    finally:
        await chat.close()


async def test_a_request_whose_server_refuses_leaves_nothing_followed(aiohttp_server, http, closed_port):
    config = parse_config(
        textwrap.dedent(FAST).format(upstream=f"http://127.0.0.1:{closed_port}"), "t.yaml", builtin_registry()
    )
    router = await aiohttp_server(build_app(config))
    client = await http(router)
    failed = await client.post("/v1/messages", json={"model": "m", "max_tokens": 5, "messages": user_message("hi")})
    assert failed.status == 502
    timing_of(failed.headers)
    server = router.app[STATE].pool["local"].servers[0]
    assert slots.watch(server).waiting == [] and await in_flight(client) == []


@pytest.fixture
async def small_batch_llama(tmp_path, unused_tcp_port_factory):
    """A real llama-server that reads prompts in batches of 64 tokens, so /slots reports often."""
    require_llama_server()
    server = LlamaServer(
        port=unused_tcp_port_factory(),
        log_path=tmp_path / "llama-server.log",
        extra=["--batch-size", "64", "--ubatch-size", "64"],
    )
    await server.start()
    yield server
    await server.stop()


async def test_a_real_llama_servers_slots_give_progress_for_whole_and_streamed_answers(
    aiohttp_server, http, small_batch_llama
):
    config = parse_config(textwrap.dedent(FAST).format(upstream=small_batch_llama.url), "t.yaml", builtin_registry())
    router = await aiohttp_server(build_app(config))
    client = await http(router)
    prompt = " ".join(f"item{i} is {i * 3}" for i in range(150))  # ~750 tokens: a dozen batches
    for number, stream in ((1, False), (2, True)):
        body = {"model": "m", "max_tokens": 3, "stream": stream, "messages": user_message(f"list {number}: {prompt}")}
        answer = asyncio.create_task(client.post("/v1/messages", json=body))
        item = await entry_with(
            client, lambda i: prefill_of(i).get("processed", 0) > 0, "progress from the real /slots", timeout=300
        )
        progress = item["progress"]
        assert progress["guess"] is False and isinstance(progress["task"], int)
        assert progress["processed"] < progress["prompt_tokens_estimate"]
        response = await answer
        assert response.status == 200 and (b"message_stop" in await response.read()) is stream
        timing_of(response.headers)
    assert await in_flight(client) == []
