"""The real CLIs through a translating upstream: Claude Code to a server that speaks only OpenAI
chat (llama-server's chunk shapes, with reasoning), OpenCode to one that speaks only Anthropic.
Each turn completes only if the client ran the tool and sent its result back through the router.
And a real llama-server's own OpenAI chat answers, translated for the anthropic SDK."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from router.app import build_app
from router.config import Overrides, embedded_rules_text, parse_config
from router.plugins import builtin_registry
from tests.clients import client_binary
from tests.test_claude_code_cli import MARKER, run_claude
from tests.test_llama_server import llama  # noqa: F401 (the fixture)


def with_api(api: str):
    """An edit of the embedded rules: the default upstream speaks API."""
    return lambda text: text.replace("    max_concurrency: 1 ", f"    api: {api}\n    max_concurrency: 1 ", 1)


@pytest.mark.parametrize("think_tags", [False, True], ids=["reasoning_content", "think-tags"])
async def test_real_claude_code_completes_a_tool_turn_through_an_openai_chat_upstream(
    aiohttp_server, agent_upstream, tmp_path, caplog, think_tags
):
    binary = client_binary("claude-2.1.332", "claude")
    agent_upstream.agent_reasoning = "The user wants a command run; I will use Bash."
    agent_upstream.agent_think = think_tags
    config = parse_config(
        with_api("openai-chat")(embedded_rules_text()),
        "default",
        builtin_registry(),
        Overrides(upstream_url=agent_upstream.url),
    )
    router = await aiohttp_server(build_app(config, verbose=True))
    code, out, err = await run_claude(binary, str(router.make_url("")).rstrip("/"), tmp_path, {})
    assert code == 0, f"stdout: {out}\nstderr: {err}"
    assert f"The command printed: {MARKER}" in out, out
    seen = agent_upstream.seen
    assert len(seen) >= 2 and all(s.path == "/v1/chat/completions" for s in seen)
    last = seen[-1].body["messages"]
    calls = [c["id"] for m in last if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    results = [m for m in last if m["role"] == "tool"]
    assert results and results[-1]["tool_call_id"] in calls and MARKER in json.dumps(results[-1]["content"])
    assert [m.get("reasoning_content") for m in last if m["role"] == "assistant"][
        0
    ] == agent_upstream.agent_reasoning, "Claude Code kept the thinking block and sent it back"
    assert all("<think>" not in json.dumps(m.get("content")) for m in last), "no <think> text leaked into answers"
    decisions = [r.getMessage() for r in caplog.records if r.name == "ghost_router"]
    assert all("status=200" in line for line in decisions), decisions


async def test_real_opencode_run_completes_a_tool_turn_through_an_anthropic_upstream(
    router_factory, agent_upstream, tmp_path, caplog
):
    binary = client_binary("opencode", "opencode")
    router = await router_factory(agent_upstream.url, with_api("anthropic"))
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
        f"Run the shell command: echo {MARKER}",
        cwd=work,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 240)
    text = out.decode(errors="replace")
    assert process.returncode == 0, text
    assert f"The command printed: {MARKER}" in text, text
    seen = agent_upstream.seen
    assert len(seen) >= 2 and all(s.path == "/v1/messages" for s in seen)
    assert any(
        block.get("type") == "tool_result" and MARKER in json.dumps(block.get("content"))
        for block in seen[-1].body["messages"][-1]["content"]
    )


async def test_real_llama_server_answers_the_anthropic_sdk_through_openai_chat(aiohttp_server, llama, sdk):  # noqa: F811
    """llama-server's own /v1/chat/completions chunks (a null-content role chunk, one token per
    chunk, finish_reason, then a usage chunk with timings) reach the SDK as a valid Anthropic
    stream and message."""
    config = parse_config(
        with_api("openai-chat")(embedded_rules_text()),
        "default",
        builtin_registry(),
        Overrides(upstream_url=llama.url, model="smollm2"),
    )
    client = sdk(await aiohttp_server(build_app(config)))
    messages = [{"role": "user", "content": "Say hi."}]
    async with client.messages.stream(model="m", max_tokens=8, messages=messages) as stream:
        streamed = await stream.get_final_message()
    whole = await client.messages.create(model="m", max_tokens=8, messages=messages)
    for message in (streamed, whole):
        assert [block.type for block in message.content] == ["text"] and message.content[0].text
        assert message.stop_reason in ("end_turn", "max_tokens")
        assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) > 0
        assert 0 < message.usage.output_tokens <= 8
