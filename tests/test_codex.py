"""Codex CLI: the Responses adapter (checked with the `openai` SDK), classification by
x-codex-turn-metadata, and the real `codex exec` through the router to a one-slot upstream."""

from __future__ import annotations

import asyncio
import json
import os

import openai
import pytest

from tests.clients import client_binary

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
        f'base_url = "{router.make_url("/v1")}"\nwire_api = "responses"\n'
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
