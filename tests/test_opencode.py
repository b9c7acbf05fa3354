"""OpenCode: the OpenAI chat completions adapter (checked with the `openai` SDK as a strict client),
its default rules, and the real `opencode run` through the router to a one-slot upstream."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import openai
import pytest

from router import client_line
from tests.clients import client_binary, split_line

TITLE_SYSTEM = (
    "You are a title generator. You output ONLY a thread title. Nothing else.\n\n<task>\nGenerate a brief title"
)
OPENCODE_UA = {"User-Agent": "opencode/1.18.33 ai-sdk/provider-utils/4.0.23 runtime/bun/1.3.14"}


def opencode_env(home: Path, closed_port: int, settings: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a test runs `opencode` in: its HOME, no update check, no models.dev fetch, and
    its background install of @opencode-ai/plugin sent to a closed loopback port: loopback only."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "npm_config_registry": f"http://127.0.0.1:{closed_port}/",
        **(settings or {}),
    }


async def run_opencode(
    binary: Path, args: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> tuple[int, str]:
    """Run `opencode ARGS`; its return code and output (stdout and stderr together)."""
    process = await asyncio.create_subprocess_exec(
        str(binary),
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        out, _ = await process.communicate()
        raise AssertionError(f"opencode did not finish in {timeout:g} s\n{out.decode(errors='replace')}") from None
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


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
    router_factory, agent_upstream, tmp_path, caplog, closed_port
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
    code, text = await run_opencode(
        binary, ["run", "Run the shell command: echo GHOST_TOOL_RAN"], work, opencode_env(home, closed_port), 240
    )
    assert code == 0, text
    assert "The command printed: GHOST_TOOL_RAN" in text
    decisions = [r.getMessage() for r in caplog.records if r.name == "ghost_router"]
    assert any("rule=opencode-title action=fake status=200" in line for line in decisions), decisions
    assert all(s.body["model"] == "local-model" and s.body.get("tools") for s in agent_upstream.seen), (
        "only main turns reach the upstream"
    )
    assert len(agent_upstream.seen) >= 2 and agent_upstream.max_in_flight == 1


def test_the_client_line_declares_the_router_as_a_provider_in_the_environment():
    env, command = split_line(client_line.opencode("http://127.0.0.1:9090/", "Qwen/Qwen3 Coder's", 65536))
    assert command == ["opencode", "--model", "ghost-router/Qwen/Qwen3 Coder's"]
    assert list(env) == ["OPENCODE_CONFIG_CONTENT"]
    provider = json.loads(env["OPENCODE_CONFIG_CONTENT"])["provider"]["ghost-router"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"] == {
        "baseURL": "http://127.0.0.1:9090/v1",
        "headerTimeout": 1_800_000,
        "chunkTimeout": 1_800_000,
    }
    assert provider["models"] == {"Qwen/Qwen3 Coder's": {"limit": {"context": 65536, "output": 8192}}}
    # OpenCode compacts when a turn's tokens reach context - min(limit.output, 32000): measured at 57,344
    assert client_line.opencode_compaction_room(65536) == 57344
    assert client_line.opencode_compaction_room(32768) == 32768 - 4096

    env, command = split_line(client_line.opencode("http://127.0.0.1:9090", "qwen", None))
    assert command == ["opencode", "--model", "ghost-router/qwen"]
    assert json.loads(env["OPENCODE_CONFIG_CONTENT"])["provider"]["ghost-router"]["models"] == {"qwen": {}}


async def run_client_line(line: str, tmp_path: Path, closed_port: int, timeout: float) -> tuple[int, str]:
    """`opencode run` started from the client line LINE alone: its environment words, then its
    command's options after `run` (the line starts the interactive TUI); HOME empty, no config file."""
    binary = client_binary("opencode", "opencode")
    settings, command = split_line(line)
    assert command[0] == "opencode"
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    args = ["run", *command[1:], "Run the shell command: echo GHOST_TOOL_RAN"]
    code, text = await run_opencode(binary, args, work, opencode_env(home, closed_port, settings), timeout)
    written = [*work.rglob("opencode.json*"), *home.rglob("opencode.json*"), *home.rglob("config.json")]
    assert written == [], "the line needs no config file, and OpenCode writes none"
    return code, text


async def test_the_client_line_without_a_context_completes_a_tool_turn(
    router_factory, agent_upstream, tmp_path, closed_port
):
    router = await router_factory(agent_upstream.url)
    line = client_line.opencode(str(router.make_url("")).rstrip("/"), "local-model", None)
    code, text = await run_client_line(line, tmp_path, closed_port, 240)
    assert code == 0, text
    assert "The command printed: GHOST_TOOL_RAN" in text
    turns = agent_upstream.seen
    assert [t.body["max_tokens"] for t in turns] == [32000, 32000], "no limit declared: OpenCode's own 32,000"


async def opencode_line_carries_a_330_s_prefill(router_factory, agent_upstream, tmp_path, closed_port):
    """The upstream sends nothing for 330 s before the first turn's first byte (OpenCode 1.18.33 gives
    a server 300 s for its response headers and 300 s between stream chunks, then retries, up to 5
    times); the router's early head and keep-alive comments and the line's timeouts carry it through:
    the turn completes and no request is sent twice."""
    rules_with_prefill = lambda text: text.replace(  # noqa: E731
        "    max_concurrency: 1 ", '    headers: {x-test-upstream: "first_byte_after=330"}\n    max_concurrency: 1 '
    )
    router = await router_factory(agent_upstream.url, rules_with_prefill)
    line = client_line.opencode(str(router.make_url("")).rstrip("/"), "local-model", 65536)
    code, text = await run_client_line(line, tmp_path, closed_port, 1500)
    assert code == 0, text
    assert "The command printed: GHOST_TOOL_RAN" in text
    turns = [request for request in agent_upstream.seen if request.path == "/v1/chat/completions"]
    assert len(turns) == 2, "the tool call and the follow-up, each sent once: no retry"
    assert [t.outcome for t in turns] == ["done", "done"]
    assert turns[1].arrived - turns[0].arrived >= 330, "the first turn waited out the whole prefill"
    assert [t.body["max_tokens"] for t in turns] == [8192, 8192], "the line's output limit reached OpenCode"
    assert agent_upstream.max_in_flight == 1
