"""Upstream faults beyond refusal and resets: stalls past idle_timeout, and garbage instead of HTTP.
Each gives a protocol-correct error, frees the slot, and the next request works."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.conftest import RULES, user_message

STALLING = RULES.replace("queue_timeout: 30s", "queue_timeout: 30s\n    idle_timeout: 300ms")
BODY = {"model": "m", "max_tokens": 5, "messages": user_message("x")}


async def test_a_stream_that_goes_silent_ends_with_an_sse_error_and_frees_the_slot(make_router, upstream, http):
    client = await http(await make_router(STALLING))
    response = await client.post(
        "/v1/messages", json={**BODY, "stream": True}, headers={"x-test-upstream": "events=5,stall_after=2"}
    )
    text = (await asyncio.wait_for(response.read(), 10)).decode()
    last = json.loads(text.strip().split("\n\n")[-1].split("data: ", 1)[1])
    assert last["type"] == "error" and "sent nothing for 0.3s (idle_timeout)" in last["error"]["message"]
    await upstream.wait_outcome(0, "cancelled")
    assert (await client.post("/v1/messages", json=BODY)).status == 200


async def test_no_headers_within_idle_timeout_is_504(make_router, upstream, http):
    client = await http(await make_router(STALLING))
    response = await client.post("/v1/messages", json=BODY, headers={"x-test-upstream": "hold_before=never"})
    assert response.status == 504
    assert "sent no response headers within 0.3s (idle_timeout)" in (await response.json())["error"]["message"]
    assert (await client.post("/v1/messages", json=BODY)).status == 200


@pytest.fixture
async def garbage_server(unused_tcp_port):
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"\x00\x01 this is not HTTP at all\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", unused_tcp_port)
    yield f"http://127.0.0.1:{unused_tcp_port}"
    server.close()
    await server.wait_closed()


async def test_garbage_instead_of_http_is_502_and_the_router_keeps_serving(make_router, http, garbage_server):
    client = await http(await make_router(RULES.replace("url: {upstream}", f"url: {garbage_server}")))
    for _ in range(2):
        response = await client.post("/v1/messages", json=BODY)
        assert response.status == 502
        body = await response.json()
        assert body["type"] == "error" and garbage_server in body["error"]["message"]
    assert (await client.head("/api/hello")).status == 200
