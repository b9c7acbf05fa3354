"""A bug in the router (a fault nobody raised on purpose) still answers in the client's protocol:
a 500 before the answer's head, an error event after it; the traceback goes to the log and the
router keeps serving. The faults are injected; everything else is real sockets and real SDKs."""

from __future__ import annotations

import logging
from typing import Any

import anthropic
import openai
import pytest

import router.app
import router.upstream.translation
from tests.conftest import user_message
from tests.test_translate_forward import openai_client, router_with_plugins


def injected_fault(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("an injected fault")


def request_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ghost_router" and r.getMessage().startswith("#")]


def traceback_logged(caplog: pytest.LogCaptureFixture) -> bool:
    return any(
        r.levelno == logging.ERROR and r.exc_info and "an injected fault" in str(r.exc_info[1]) for r in caplog.records
    )


async def test_a_bug_before_the_head_is_a_500_in_anthropics_shape(aiohttp_server, upstream, sdk, monkeypatch, caplog):
    routed = await router_with_plugins(aiohttp_server, upstream.url, "anthropic")
    client = sdk(routed)
    monkeypatch.setattr(router.app, "parse_request", injected_fault)
    with pytest.raises(anthropic.InternalServerError) as caught:
        await client.messages.create(model="m", max_tokens=5, messages=user_message("hi"))
    error = caught.value.body["error"]
    assert caught.value.body["type"] == "error" and error["type"] == "api_error"
    assert "internal error ended this request (RuntimeError: an injected fault)" in error["message"]
    assert "log has its traceback" in error["message"]
    assert traceback_logged(caplog)
    assert "status=500" in request_lines(caplog)[-1] and "internal error" in request_lines(caplog)[-1]
    monkeypatch.undo()  # the router itself is unharmed
    message = await client.messages.create(model="m", max_tokens=5, messages=user_message("hi"))
    assert message.content[0].text == "tok0 tok1 tok2 "


async def test_a_bug_before_the_head_is_a_500_in_openais_shape(aiohttp_server, upstream, monkeypatch, caplog):
    routed = await router_with_plugins(aiohttp_server, upstream.url, "anthropic")
    monkeypatch.setattr(router.upstream.translation, "answer_of", injected_fault)
    async with openai_client(routed) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="m", messages=user_message("hi"))
    assert caught.value.body["type"] == "server_error"
    assert "RuntimeError: an injected fault" in caught.value.body["message"]
    assert traceback_logged(caplog)
    assert upstream.seen[0].path == "/v1/messages"  # the fault came after the upstream answered


async def test_a_bug_mid_stream_ends_the_stream_with_an_error_event(aiohttp_server, upstream, sdk, monkeypatch, caplog):
    routed = await router_with_plugins(aiohttp_server, upstream.url, "openai-chat")
    feed = router.upstream.translation.StreamTranslator.feed
    calls = 0

    def fails_on_its_second_chunk(self: Any, chunk: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return feed(self, chunk) if calls == 1 else injected_fault()

    monkeypatch.setattr(router.upstream.translation.StreamTranslator, "feed", fails_on_its_second_chunk)
    events = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with sdk(routed).messages.stream(
            model="m",
            max_tokens=50,
            messages=user_message("hi"),
            extra_headers={"x-test-upstream": "say=one two three,hold=rest"},
        ) as stream:
            async for event in stream:  # the upstream holds the rest until the first event is here
                events.append(event.type)
                upstream.release("rest")
    assert "message_start" in events  # the head and the first events went out before the fault
    assert "RuntimeError: an injected fault" in str(caught.value)
    assert traceback_logged(caplog)
    line = request_lines(caplog)[-1]
    assert "status=200" in line and "internal error" in line, line
