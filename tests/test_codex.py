"""Codex CLI: the Responses adapter (checked with the `openai` SDK), classification by
x-codex-turn-metadata, and the real `codex exec` through the router to a one-slot upstream."""

from __future__ import annotations

import asyncio
import json
import os
import tomllib

import openai
import pytest

from router import client_line
from tests.clients import client_binary, split_line

MARKER = "GHOST_TOOL_RAN"
# keeps the test on loopback: with plugins on, Codex runs `git ls-remote https://github.com/openai/plugins.git`
LOOPBACK_ONLY = ["--disable", "plugins"]

TITLE_PROMPT = (
    "Generate a concise, single-line task title of at most 36 characters and under five words where possible. "
    "Start with an imperative verb.\n\nUser prompt:\nrefactor the payment retry logic in billing.py"
)
TITLE_FORMAT = {
    "format": {
        "type": "json_schema",
        "strict": True,
        "name": "codex_output_schema",
        "schema": {
            "type": "object",
            "properties": {"title": {"type": "string", "minLength": 1, "maxLength": 36}},
            "required": ["title"],
            "additionalProperties": False,
        },
    }
}


def metadata(**fields: str) -> dict[str, str]:
    return {
        "x-codex-turn-metadata": json.dumps(
            {"session_id": "s1", "request_kind": "turn", "thread_source": "user", **fields}
        ),
        "User-Agent": "codex-tui/0.169.0 (Debian 12.0.0; x86_64)",
    }


@pytest.mark.parametrize("stream", [False, True])
async def test_tui_title_is_faked_as_json_the_openai_sdk_accepts(router_factory, upstream, stream):
    router = await router_factory(upstream.url)
    client = openai.AsyncOpenAI(base_url=str(router.make_url("/v1")), api_key="none", max_retries=0)
    kwargs = dict(
        model="local-model",
        input=[{"role": "user", "content": [{"type": "input_text", "text": TITLE_PROMPT}]}],
        text=TITLE_FORMAT,
        extra_headers=metadata(thread_source="thread_title"),
    )
    if stream:
        events = [e async for e in await client.responses.create(stream=True, **kwargs)]
        assert [e.type for e in events][0] == "response.created" and events[-1].type == "response.completed"
        response = events[-1].response
    else:
        response = await client.responses.create(**kwargs)
    title = json.loads(response.output_text)["title"]
    assert title == "Refactor the payment retry logic in"[:36] and len(title) <= 36
    assert upstream.seen == []
    await client.close()


async def test_turns_guardian_and_compaction_are_forwarded(router_factory, upstream, caplog):
    router = await router_factory(upstream.url)
    client = openai.AsyncOpenAI(base_url=str(router.make_url("/v1")), api_key="none", max_retries=0)
    for fields in ({}, {"thread_source": "guardian_review"}, {"request_kind": "compaction"}):
        response = await client.responses.create(model="local-model", input="hello", extra_headers=metadata(**fields))
        assert response.output_text == "tok0 tok1 tok2 "
    rules = [r.getMessage().split(" rule=")[1].split(" ")[0] for r in caplog.records if r.name == "ghost_router"]
    assert rules == ["main", "codex-guardian", "codex-compaction"]
    assert len(upstream.seen) == 3
    await client.close()


async def test_real_codex_exec_completes_a_tool_turn_through_the_router(
    router_factory, agent_upstream, tmp_path, caplog
):
    binary = client_binary("codex", "codex")
    fake = agent_upstream
    router = await router_factory(fake.url)
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".codex").mkdir(parents=True)
    work.mkdir()
    (home / ".codex" / "config.toml").write_text(
        'model = "local-model"\nmodel_provider = "local"\n\n[model_providers.local]\nname = "local"\n'
        f'base_url = "{router.make_url("/v1")}"\nwire_api = "responses"\n\n[features]\nplugins = false\n'
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(home / ".codex")}
    process = await asyncio.create_subprocess_exec(
        str(binary),
        "exec",
        "--skip-git-repo-check",
        "--dangerously-bypass-approvals-and-sandbox",
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
    assert "The command printed:" in text and text.count("GHOST_TOOL_RAN") >= 2, text
    assert len(fake.seen) >= 2 and fake.max_in_flight == 1 and not fake.violations
    assert all(s.path == "/v1/responses" for s in fake.seen)
    assert all(
        "client=" not in r.getMessage() and " codex POST /v1/responses" in r.getMessage()
        for r in caplog.records
        if r.name == "ghost_router"
    )


def overrides(argv: list[str]) -> dict[str, str]:
    """The line's `-c key=value` overrides."""
    return dict(argv[i + 1].split("=", 1) for i, word in enumerate(argv) if word == "-c")


def test_the_codex_line_defines_the_router_as_its_provider_on_the_command_line():
    env, argv = split_line(client_line.codex("http://127.0.0.1:9090/", "Qwen 3 'coder'", 65536))
    assert env == {} and argv[0] == "codex", "no API key and no config file: the provider has no env_key"
    assert argv[argv.index("-m") + 1] == "Qwen 3 'coder'"
    settings = overrides(argv)
    provider_id = settings.pop("model_provider")
    provider = tomllib.loads("provider = " + settings.pop(f"model_providers.{provider_id}"))["provider"]
    assert provider == {
        "name": provider_id,
        "base_url": "http://127.0.0.1:9090/v1",
        "wire_api": "responses",
        "stream_idle_timeout_ms": client_line.CODEX_STREAM_IDLE_TIMEOUT_MS,
    }
    assert client_line.CODEX_STREAM_IDLE_TIMEOUT_MS > 300_000, "longer than Codex's own 300 s for a silent stream"
    window, limit = int(settings.pop("model_context_window")), int(settings.pop("model_auto_compact_token_limit"))
    assert settings == {}
    assert (window, limit) == (65536, 65536 - 65536 // 8), "room for an answer, as the Claude Code line keeps"
    assert limit < window * 9 // 10, "Codex compacts at the smaller of its 90% and the line's limit"

    _, argv = split_line(client_line.codex("http://127.0.0.1:9090", "qwen", None))
    assert "model_context_window" not in overrides(argv) and "model_auto_compact_token_limit" not in overrides(argv)


async def run_codex_line(binary, line: str, workdir, timeout: float) -> tuple[int, str]:
    """Run the printed line as `codex exec` (same options, the prompt as its argument), HOME and
    CODEX_HOME in WORKDIR with no config file."""
    home, work = workdir / "home", workdir / "work"
    (home / ".codex").mkdir(parents=True)
    work.mkdir()
    env, argv = split_line(line)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(home / ".codex"), **env}
    exec_options = ["--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", *LOOPBACK_ONLY]
    process = await asyncio.create_subprocess_exec(
        str(binary),
        "exec",
        *argv[1:],
        *exec_options,
        f"Run the shell command: echo {MARKER}",
        cwd=work,
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
        raise AssertionError(f"codex exec did not finish in {timeout:g} s\n{out.decode(errors='replace')}") from None
    assert not (home / ".codex" / "config.toml").exists()
    return process.returncode, out.decode(errors="replace")


def tool_results(body: dict) -> list[dict]:
    return [item for item in body.get("input", []) if item.get("type") == "function_call_output"]


async def codex_line_carries_a_330_s_prefill(router_factory, agent_upstream, tmp_path):
    """The upstream sends nothing for 330 s before the first turn's first byte (Codex 0.169.0 drops a
    stream that brings no event for 300 s, and the router's keep-alive comments are no events to
    it); the settings in the line carry it through: the turn completes and no request is sent twice."""
    binary = client_binary("codex", "codex")
    router = await router_factory(
        agent_upstream.url,
        lambda rules: rules.replace(
            "    max_concurrency: 1 ", '    headers: {x-test-upstream: "first_byte_after=330"}\n    max_concurrency: 1 '
        ),
    )
    url = str(router.make_url("")).rstrip("/")
    code, out = await run_codex_line(binary, client_line.codex(url, "local-model", 65536), tmp_path, timeout=1500)
    assert code == 0, out
    assert "The command printed:" in out and out.count(MARKER) >= 2, out
    turns = agent_upstream.seen
    assert [t.path for t in turns] == ["/v1/responses"] * 2, "the tool call and the follow-up, each sent once"
    assert [t.outcome for t in turns] == ["done", "done"]
    assert not tool_results(turns[0].body) and MARKER in str(tool_results(turns[1].body)), "Codex ran the tool"
    assert turns[1].arrived - turns[0].arrived >= 330, "the first turn waited out the whole prefill"
    assert agent_upstream.max_in_flight == 1
