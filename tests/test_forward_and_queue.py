"""Forwarding through the priority queue against a one-slot upstream that fails loudly on overflow."""

from __future__ import annotations

import asyncio
import json

import anthropic
import pytest

from tests.conftest import RULES, user_message


def behave(directives: str) -> dict:
    return {"extra_headers": {"x-test-upstream": directives}}


async def hold_slot(client, upstream, gate: str) -> asyncio.Task:
    """Occupy the upstream's only slot with a request that waits for release(GATE)."""
    body = {"model": "m", "max_tokens": 5, "messages": user_message(gate)}
    holder = asyncio.create_task(client.post("/v1/messages", json=body, headers={"x-test-upstream": f"hold={gate}"}))
    await upstream.wait_for(len(upstream.seen) + 1)
    return holder


async def queued(router_server, count: int, upstream: str = "local") -> None:
    """Wait until COUNT requests wait in the router's queue."""
    from router.app import STATE

    gate = router_server.app[STATE].pool[upstream].gate
    for _ in range(500):
        if gate.queued == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{gate.queued} queued, expected {count}")


async def test_first_event_arrives_before_upstream_sends_its_last(make_router, upstream, sdk):
    client = sdk(await make_router())
    async with client.messages.stream(
        model="m", max_tokens=20, messages=user_message("hi"), **behave("hold=finish,events=5")
    ) as stream:
        first = await stream.__aiter__().__anext__()
        assert first.type == "message_start"
        assert upstream.last_event_sent == {}, "the upstream had already finished: the router buffered"
        upstream.release("finish")
        text = await stream.get_final_text()
    assert text == "tok0 tok1 tok2 tok3 tok4 "
    assert upstream.seen[0].outcome == "done"


async def test_non_streaming_forward_returns_the_upstream_message(make_router, upstream, sdk):
    client = sdk(await make_router())
    message = await client.messages.create(model="m", max_tokens=20, messages=user_message("hi"))
    assert message.content[0].text == "tok0 tok1 tok2 "
    assert upstream.seen[0].body["model"] == "local-model"


async def test_thirty_concurrent_mixed_requests_never_exceed_one_slot(make_router, upstream, sdk):
    client = sdk(await make_router())
    title_system = "You are naming a coding session so the user can pick it out of a long list of sessions."

    async def main_turn(i: int) -> str:
        async with client.messages.stream(
            model="claude-opus", max_tokens=50, messages=user_message(f"turn {i}"), **behave("events=4,delay=0.002")
        ) as s:
            return await s.get_final_text()

    async def title(i: int) -> str:
        m = await client.messages.create(
            model="claude-opus", max_tokens=50, system=title_system, messages=user_message(f"session number {i}")
        )
        return m.content[0].text

    async def count(i: int) -> int:
        return (
            await client.messages.count_tokens(model="claude-opus", messages=user_message(f"count {i} " * 10))
        ).input_tokens

    async def haiku(i: int) -> str:
        m = await client.messages.create(
            model="claude-haiku-4-5-20251001", max_tokens=1, messages=user_message("quota")
        )
        return m.content[0].text

    kinds_of_request = (main_turn, title, count, haiku)
    results = await asyncio.gather(*(kinds_of_request[i % 4](i) for i in range(30)))
    assert len(results) == 30 and all(r for r in results)
    assert upstream.max_in_flight == 1
    assert upstream.violations == []
    kinds = {s.body["model"] for s in upstream.seen}
    assert kinds <= {"local-model", "claude-haiku-4-5-20251001"}, "titles and counts must never reach the upstream"


async def test_user_turns_queued_behind_background_go_first(make_router, upstream, sdk):
    router = await make_router()
    client = sdk(router)
    first = asyncio.create_task(
        client.messages.create(model="m", max_tokens=5, messages=user_message("first"), **behave("hold=first"))
    )
    await upstream.wait_for(1)
    tasks = []
    for i in range(3):
        tasks.append(
            asyncio.create_task(
                client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=user_message(f"background {i}"))
            )
        )
        await queued(router, len(tasks))
    for i in range(2):
        tasks.append(
            asyncio.create_task(
                client.messages.create(
                    model="m",
                    max_tokens=5,
                    messages=user_message(f"subagent {i}"),
                    extra_headers={"x-claude-code-agent-id": f"a{i}"},
                )
            )
        )
        await queued(router, len(tasks))
    for i in range(3):
        tasks.append(
            asyncio.create_task(client.messages.create(model="m", max_tokens=5, messages=user_message(f"user {i}")))
        )
        await queued(router, len(tasks))
    upstream.release("first")
    await asyncio.gather(first, *tasks)
    order = [s.user_text for s in upstream.seen]
    assert order == [
        "first",
        "user 0",
        "user 1",
        "user 2",
        "subagent 0",
        "subagent 1",
        "background 0",
        "background 1",
        "background 2",
    ]
    assert upstream.max_in_flight == 1


async def test_client_dropping_mid_stream_cancels_upstream_and_frees_the_slot(make_router, upstream, http):
    router = await make_router()
    client = await http(router)
    body = {"model": "m", "max_tokens": 5, "stream": True, "messages": user_message("dropped")}
    dropped = await client.post("/v1/messages", json=body, headers={"x-test-upstream": "hold=never"})
    assert dropped.status == 200
    assert (await dropped.content.readuntil(b"\n\n")).startswith(b"event: message_start")
    waiting = asyncio.create_task(
        client.post("/v1/messages", json={**body, "stream": False, "messages": user_message("next")})
    )
    await queued(router, 1)
    dropped.close()
    await upstream.wait_outcome(0, "cancelled")
    response = await waiting
    assert response.status == 200
    assert (await response.json())["content"][0]["text"] == "tok0 tok1 tok2 "
    assert [s.user_text for s in upstream.seen] == ["dropped", "next"]


async def test_client_leaving_while_queued_leaves_the_queue(make_router, upstream, http):
    router = await make_router()
    client = await http(router)
    body = {"model": "m", "max_tokens": 5, "messages": user_message("holder")}
    holder = asyncio.create_task(client.post("/v1/messages", json=body, headers={"x-test-upstream": "hold=h"}))
    await upstream.wait_for(1)
    leaver = asyncio.create_task(client.post("/v1/messages", json={**body, "messages": user_message("leaver")}))
    await queued(router, 1)
    leaver.cancel()
    await queued(router, 0)
    upstream.release("h")
    assert (await holder).status == 200
    after = await client.post("/v1/messages", json={**body, "messages": user_message("after")})
    assert after.status == 200
    assert [s.user_text for s in upstream.seen] == ["holder", "after"]


LIMITED = RULES.replace("max_queue: 256", "max_queue: {max_queue}").replace(
    "queue_timeout: 30s", "queue_timeout: {timeout}"
)


async def test_queue_full_is_529_overloaded(make_router, upstream, sdk):
    client = sdk(await make_router(LIMITED, max_queue=0, timeout="30s"))
    holder = asyncio.create_task(
        client.messages.create(model="m", max_tokens=5, messages=user_message("x"), **behave("hold=h"))
    )
    await upstream.wait_for(1)
    with pytest.raises(anthropic.APIStatusError) as info:
        await client.messages.create(model="m", max_tokens=5, messages=user_message("y"))
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"
    assert upstream.url in info.value.body["error"]["message"]
    upstream.release("h")
    await holder


async def test_queue_timeout_is_529_overloaded(make_router, upstream, sdk):
    client = sdk(await make_router(LIMITED, max_queue=10, timeout="200ms"))
    holder = asyncio.create_task(
        client.messages.create(model="m", max_tokens=5, messages=user_message("x"), **behave("hold=h"))
    )
    await upstream.wait_for(1)
    with pytest.raises(anthropic.APIStatusError) as info:
        await client.messages.create(model="m", max_tokens=5, messages=user_message("y"))
    assert info.value.status_code == 529
    assert "queue_timeout" in info.value.body["error"]["message"]
    upstream.release("h")
    await holder
    assert len(upstream.seen) == 1


async def test_unreachable_upstream_is_502_naming_the_url(make_router, sdk, closed_port):
    rules = RULES.replace("url: {upstream}", f"url: http://127.0.0.1:{closed_port}")
    client = sdk(await make_router(rules))
    with pytest.raises(anthropic.APIStatusError) as info:
        await client.messages.create(model="m", max_tokens=5, messages=user_message("x"))
    assert info.value.status_code == 502
    assert f"http://127.0.0.1:{closed_port}" in info.value.body["error"]["message"]
    assert info.value.body["error"]["type"] == "api_error"


@pytest.mark.parametrize("status", [400, 404, 500, 503])
async def test_upstream_errors_pass_through_unchanged(make_router, upstream, http, status):
    client = await http(await make_router())
    response = await client.post(
        "/v1/messages",
        json={"model": "m", "max_tokens": 5, "messages": user_message("x")},
        headers={"x-test-upstream": f"status={status}"},
    )
    assert response.status == status
    assert await response.json() == {
        "type": "error",
        "error": {"type": "upstream_says", "message": f"upstream error {status}"},
    }


async def test_upstream_dying_mid_stream_ends_with_an_sse_error_event(make_router, upstream, http, sdk):
    router = await make_router()
    client = await http(router)
    body = {"model": "m", "max_tokens": 5, "stream": True, "messages": user_message("x")}
    response = await client.post(
        "/v1/messages", json=body, headers={"x-test-upstream": "events=5,die_after=2,die_when=die"}
    )
    text = ""
    while "tok1" not in text:  # what came before the failure reaches the client as it arrives
        text += (await response.content.readany()).decode()
    upstream.gate("die").set()
    text += (await response.read()).decode()
    assert response.status == 200
    assert "tok1" in text and "tok2" not in text
    last = text.strip().split("\n\n")[-1]
    assert last.startswith("event: error\n")
    error = json.loads(last.split("data: ", 1)[1])
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert "middle of the response" in error["error"]["message"]
    with pytest.raises(anthropic.APIStatusError):
        async with sdk(router).messages.stream(
            model="m", max_tokens=5, messages=user_message("x"), **behave("events=5,die_after=2")
        ) as s:
            await s.get_final_message()
    ok = await client.post("/v1/messages", json={**body, "stream": False})
    assert ok.status == 200, "the router keeps serving and the slot is free"


KEEPALIVE = RULES.replace("queue_timeout: 30s", "queue_timeout: {timeout}\n    keepalive: 50ms")


async def test_queued_stream_gets_headers_and_pings_then_the_real_stream(make_router, upstream, http, sdk):
    router = await make_router(KEEPALIVE, timeout="30s")
    client = await http(router)
    holder = await hold_slot(client, upstream, "h")
    body = {"model": "m", "max_tokens": 5, "stream": True, "messages": user_message("queued")}
    waiting = await asyncio.wait_for(client.post("/v1/messages", json=body), 5)
    assert waiting.status == 200 and waiting.content_type == "text/event-stream", "headers go out while queued"
    first = await waiting.content.readuntil(b"\n\n")
    assert first == b'event: ping\ndata: {"type": "ping"}\n\n'
    upstream.release("h")
    await holder
    rest = (await waiting.read()).decode()
    assert "event: message_start" in rest and rest.rstrip().endswith('data: {"type": "message_stop"}')
    # and the SDK accepts a stream that begins with pings
    holder = await hold_slot(client, upstream, "h2")
    asyncio.get_running_loop().call_later(0.3, upstream.release, "h2")
    async with sdk(router).messages.stream(model="m", max_tokens=5, messages=user_message("sdk")) as s:
        assert await s.get_final_text() == "tok0 tok1 tok2 "
    await holder


async def test_queued_stream_that_times_out_after_pings_gets_an_sse_overloaded_event(make_router, upstream, http):
    router = await make_router(KEEPALIVE, timeout="300ms")
    client = await http(router)
    holder = await hold_slot(client, upstream, "h")
    waiting = await client.post(
        "/v1/messages", json={"model": "m", "max_tokens": 5, "stream": True, "messages": user_message("q")}
    )
    text = (await waiting.read()).decode()
    assert text.startswith("event: ping")
    last = text.strip().split("\n\n")[-1]
    assert last.startswith("event: error") and '"overloaded_error"' in last
    upstream.release("h")
    await holder


async def test_early_headers_then_upstream_error_becomes_an_sse_error_event(make_router, upstream, http):
    router = await make_router(KEEPALIVE, timeout="30s")
    client = await http(router)
    holder = await hold_slot(client, upstream, "h")
    waiting = await client.post(
        "/v1/messages",
        json={"model": "m", "max_tokens": 5, "stream": True, "messages": user_message("q")},
        headers={"x-test-upstream": "status=400"},
    )
    await waiting.content.readuntil(b"\n\n")
    upstream.release("h")
    await holder
    last = (await waiting.read()).decode().strip().split("\n\n")[-1]
    error = json.loads(last.split("data: ", 1)[1])
    assert error == {"type": "error", "error": {"type": "upstream_says", "message": "upstream error 400"}}


async def test_stream_whose_upstream_is_slow_to_answer_gets_pings_not_silence(make_router, upstream, http, sdk):
    router = await make_router(KEEPALIVE, timeout="30s")
    client = await http(router)
    body = {"model": "m", "max_tokens": 5, "stream": True, "messages": user_message("long prompt")}
    waiting = await asyncio.wait_for(
        client.post("/v1/messages", json=body, headers={"x-test-upstream": "hold_before=prefill"}), 5
    )
    assert waiting.status == 200 and waiting.content_type == "text/event-stream", (
        "headers go out while the upstream is still silent"
    )
    assert await waiting.content.readuntil(b"\n\n") == b'event: ping\ndata: {"type": "ping"}\n\n'
    upstream.release("prefill")
    rest = (await waiting.read()).decode()
    assert "event: message_start" in rest and rest.rstrip().endswith('data: {"type": "message_stop"}')
    asyncio.get_running_loop().call_later(0.3, upstream.release, "prefill2")
    async with sdk(router).messages.stream(
        model="m", max_tokens=5, messages=user_message("sdk"), **behave("hold_before=prefill2")
    ) as s:
        assert await s.get_final_text() == "tok0 tok1 tok2 "
    assert upstream.max_in_flight == 1


async def test_a_slow_forwarded_request_logs_when_it_queues_waits_and_is_answered(make_router, upstream, http, caplog):
    caplog.set_level("INFO", logger="ghost_router.progress")

    def progress() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "ghost_router.progress"]

    async def logged(count: int) -> list[str]:
        while len(progress()) < count:  # the line comes from a timer: wait for it, bounded
            await asyncio.sleep(0.01)
        return progress()

    router = await make_router(KEEPALIVE, timeout="30s")  # keepalive 50ms: "slow" is 50 ms here
    client = await http(router)
    quick = {"model": "m", "max_tokens": 5, "messages": user_message("quick")}
    assert (await client.post("/v1/messages", json=quick)).status == 200
    await asyncio.sleep(0.2)  # past the keepalive: a line would have come by now; none may
    assert progress() == [], "a quick answer adds no line"
    holder = await hold_slot(client, upstream, "slow-prefill")
    lines = await asyncio.wait_for(logged(1), 10)
    assert " sent to upstream local at http://127.0.0.1:" in lines[0] and "still waiting for its answer" in lines[0]
    body = {"model": "m", "max_tokens": 5, "messages": user_message("second")}
    second = asyncio.create_task(client.post("/v1/messages", json=body))
    await queued(router, 1)
    assert "queued for upstream local at priority user: 1 in flight, 1 queued" in progress()[-1], progress()
    upstream.release("slow-prefill")
    assert (await holder).status == 200 and (await second).status == 200
    first_id = lines[0].split()[0]
    answered = [line for line in progress() if "answering" in line]
    assert answered[0].startswith(f"{first_id} upstream local answering: status 200 after "), progress()


async def test_a_stream_whose_upstream_sends_only_comments_while_it_reads_gets_pings_and_progress_lines(
    make_router, upstream, http, sdk, caplog
):
    """llama-server sends a stream's headers at once and only SSE comments (`:`) during the prefill:
    the router still sends the protocol's own keep-alive events (Claude Code counts events, not
    comments), and logs the request as waiting until its content starts."""
    caplog.set_level("INFO", logger="ghost_router.progress")

    def progress() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "ghost_router.progress"]

    router = await make_router(KEEPALIVE, timeout="30s")
    client = await http(router)
    body = {"model": "m", "max_tokens": 5, "stream": True, "messages": user_message("long prompt")}
    llama_style = {"x-test-upstream": "hold_before=prefill,comments_every=3600"}
    waiting = await asyncio.wait_for(client.post("/v1/messages", json=body, headers=llama_style), 5)
    assert waiting.status == 200 and waiting.content_type == "text/event-stream"
    seen = b""
    while b"event: ping" not in seen:  # the router's own keep-alive comes after the upstream's comment
        seen += await waiting.content.readuntil(b"\n\n")
    assert seen.startswith(b":\n\n") and seen.endswith(b'event: ping\ndata: {"type": "ping"}\n\n'), seen
    while not any("still waiting for its answer" in line for line in progress()):
        await asyncio.sleep(0.01)  # the line comes from a timer: wait for it (the test's timeout bounds it)
    upstream.release("prefill")
    rest = (await waiting.read()).decode()
    assert "event: message_start" in rest and rest.rstrip().endswith('data: {"type": "message_stop"}')
    assert any(" upstream local answering: status 200 after " in line for line in progress()), progress()
    asyncio.get_running_loop().call_later(0.3, upstream.release, "prefill2")
    async with sdk(router).messages.stream(
        model="m", max_tokens=5, messages=user_message("sdk"), **behave("hold_before=prefill2,comments_every=0.05")
    ) as s:
        assert await s.get_final_text() == "tok0 tok1 tok2 ", "the SDK reads comments and pings before the message"
    assert upstream.max_in_flight == 1


async def test_a_client_that_leaves_while_its_upstream_sends_only_comments_frees_the_slot(make_router, upstream, http):
    router = await make_router(KEEPALIVE, timeout="30s")
    client = await http(router)
    body = {"model": "m", "max_tokens": 5, "stream": True, "messages": user_message("long prompt")}
    leaving = await client.post(
        "/v1/messages", json=body, headers={"x-test-upstream": "hold_before=never,comments_every=3600"}
    )
    await leaving.content.readuntil(b"\n\n")
    leaving.close()
    while upstream.seen[0].outcome != "cancelled":  # the router closed its upstream connection
        await asyncio.sleep(0.01)
    after = await client.post("/v1/messages", json={**body, "stream": False, "messages": user_message("next")})
    assert after.status == 200 and upstream.seen[-1].outcome == "done"
