"""OpenCode: the OpenAI chat completions adapter (checked with the `openai` SDK as a strict client),
its default rules, and the real `opencode run` through the router to a one-slot upstream."""

from __future__ import annotations

import asyncio
import json
import os

import openai
import pytest

from tests.clients import client_binary

TITLE_SYSTEM = (
    "You are a title generator. You output ONLY a thread title. Nothing else.\n\n<task>\nGenerate a brief title"
)
OPENCODE_UA = {"User-Agent": "opencode/1.18.33 ai-sdk/provider-utils/4.0.23 runtime/bun/1.3.14"}


def openai_client(router, **kwargs) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=str(router.make_url("/v1")), api_key="none", max_retries=0, default_headers=OPENCODE_UA, **kwargs
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_title_is_faked_in_a_shape_the_openai_sdk_accepts(router_factory, upstream, stream):
    client = openai_client(await router_factory(upstream.url))
    messages = [
        {"role": "system", "content": TITLE_SYSTEM},
        {"role": "user", "content": "Generate a title for this conversation:\n"},
        {"role": "user", "content": '"fix the flaky parser test"'},
    ]
    if stream:
        chunks = [
            c
            async for c in await client.chat.completions.create(
                model="local-small", messages=messages, stream=True, stream_options={"include_usage": True}
            )
        ]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].usage is not None and chunks[-2].choices[0].finish_reason == "stop"
    else:
        completion = await client.chat.completions.create(model="local-small", messages=messages)
        text = completion.choices[0].message.content
        assert completion.choices[0].finish_reason == "stop"
    assert text == "Fix the flaky parser test"
    assert upstream.seen == []
    await client.close()


async def test_main_turns_and_compaction_are_forwarded(router_factory, upstream):
    client = openai_client(await router_factory(upstream.url))
    turn = await client.chat.completions.create(
        model="local-model",
        messages=[{"role": "system", "content": "You are opencode"}, {"role": "user", "content": "hi"}],
    )
    compaction = await client.chat.completions.create(
        model="local-model",
        messages=[
            {"role": "system", "content": "You are a context summarization agent."},
            {"role": "user", "content": "summarize"},
        ],
    )
    assert turn.choices[0].message.content == compaction.choices[0].message.content == "tok0 tok1 tok2 "
    assert [s.path for s in upstream.seen] == ["/v1/chat/completions"] * 2
    await client.close()


async def test_errors_are_in_the_openai_shape(router_factory, closed_port):
    client = openai_client(await router_factory(f"http://127.0.0.1:{closed_port}"))
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(model="local-model", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 502
    assert info.value.body["message"].startswith("ghost-router could not connect to upstream 'local'")
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(model="local-model", messages="not a list")  # type: ignore[arg-type]
    assert bad.value.body["message"] == "messages: expected an array of messages, got string"
    await client.close()


async def test_real_opencode_run_completes_a_tool_turn_with_its_title_answered_by_the_router(
    router_factory, agent_upstream, tmp_path, caplog
):
    binary = client_binary("opencode", "opencode")
    router = await router_factory(agent_upstream.url)
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    config = {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            "local": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Local",
                "options": {"baseURL": str(router.make_url("/v1")), "apiKey": "none"},
                "models": {"local-model": {"name": "local-model"}, "local-small": {"name": "local-small"}},
            }
        },
        "model": "local/local-model",
        "small_model": "local/local-small",
        "autoupdate": False,
        "share": "disabled",
    }
    (work / "opencode.json").write_text(json.dumps(config))
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "OPENCODE_DISABLE_AUTOUPDATE": "1"}
    process = await asyncio.create_subprocess_exec(
        str(binary),
        "run",
        "Run the shell command: echo GHOST_TOOL_RAN",
        cwd=work,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 240)
    text = out.decode(errors="replace")
    assert process.returncode == 0, text
    assert "The command printed: GHOST_TOOL_RAN" in text
    decisions = [r.getMessage() for r in caplog.records if r.name == "ghost_router"]
    assert any("rule=opencode-title action=fake status=200" in line for line in decisions), decisions
    assert all(s.body["model"] == "local-model" and s.body.get("tools") for s in agent_upstream.seen), (
        "only main turns reach the upstream"
    )
    assert len(agent_upstream.seen) >= 2 and agent_upstream.max_in_flight == 1
