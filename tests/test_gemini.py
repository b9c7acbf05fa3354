"""Gemini CLI: the Gemini API adapter, structured background calls answered from their schema,
and the real `gemini -p` through the router to a one-slot upstream (auto model mode and -m)."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from tests.clients import client_binary

GEMINI_UA = {
    "User-Agent": "GeminiCLI-tui/0.61.0/gemini-3.1-pro-preview (linux; x64; terminal)",
    "x-goog-api-key": "none",
}
CLASSIFIER = {
    "contents": [{"role": "user", "parts": [{"text": "read package.json"}]}],
    "systemInstruction": {"parts": [{"text": "You are a specialized Task Routing AI. Score the complexity."}]},
    "generationConfig": {
        "responseMimeType": "application/json",
        "responseJsonSchema": {
            "type": "OBJECT",
            "properties": {"complexity_reasoning": {"type": "STRING"}, "complexity_score": {"type": "INTEGER"}},
            "required": ["complexity_reasoning", "complexity_score"],
        },
    },
}


async def test_structured_background_calls_are_answered_from_their_schema(router_factory, upstream, http):
    client = await http(await router_factory(upstream.url))
    response = await client.post(
        "/v1beta/models/gemini-3.5-flash-lite:generateContent", json=CLASSIFIER, headers=GEMINI_UA
    )
    assert response.status == 200
    body = await response.json()
    answer = json.loads(body["candidates"][0]["content"]["parts"][0]["text"])
    # Gemini CLI checks the answer against its own stricter schema (a score from 1 to 100)
    assert answer == {"complexity_reasoning": "answered by ghost-router", "complexity_score": 1}
    assert body["candidates"][0]["finishReason"] == "STOP" and body["usageMetadata"]["totalTokenCount"] > 0
    stream = await client.post(
        "/v1beta/models/gemini-3.5-flash-lite:streamGenerateContent?alt=sse", json=CLASSIFIER, headers=GEMINI_UA
    )
    text = await stream.text()
    assert text.startswith("data: {") and text.endswith("\r\n\r\n")
    count = await client.post(
        "/v1beta/models/local-model:countTokens", json={"contents": CLASSIFIER["contents"]}, headers=GEMINI_UA
    )
    assert (await count.json())["totalTokens"] > 0
    assert upstream.seen == []


async def test_tool_less_background_calls_are_forwarded_behind_turns_with_a_cap(router_factory, upstream, http):
    client = await http(await router_factory(upstream.url))
    summary = {
        "contents": [{"role": "user", "parts": [{"text": "summarize the session"}]}],
        "generationConfig": {"maxOutputTokens": 65536},
    }
    response = await client.post(
        "/v1beta/models/gemini-3.5-flash-lite:generateContent", json=summary, headers=GEMINI_UA
    )
    assert response.status == 200
    assert upstream.seen[0].body["generationConfig"]["maxOutputTokens"] == 2048


async def test_errors_are_in_the_gemini_shape(router_factory, http, closed_port):
    client = await http(await router_factory(f"http://127.0.0.1:{closed_port}"))
    turn = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "tools": [{"functionDeclarations": [{"name": "read_file"}]}],
    }
    response = await client.post("/v1beta/models/local-model:generateContent", json=turn, headers=GEMINI_UA)
    assert response.status == 502
    error = (await response.json())["error"]
    assert error["code"] == 502 and error["status"] == "INTERNAL" and "could not connect" in error["message"]
    bad = await client.post("/v1beta/models/local-model:generateContent", json={"contents": "nope"}, headers=GEMINI_UA)
    assert bad.status == 400 and (await bad.json())["error"]["status"] == "INVALID_ARGUMENT"


@pytest.mark.parametrize("model", [None, "local-model"], ids=["auto-model", "m-local-model"])
async def test_real_gemini_cli_completes_a_tool_turn_with_its_ghosts_answered_here(
    router_factory, agent_upstream, tmp_path, caplog, model
):
    binary = client_binary("gemini", "gemini")
    fake = agent_upstream
    router = await router_factory(fake.url)
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".gemini").mkdir(parents=True)
    work.mkdir()
    settings = {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "general": {"disableAutoUpdate": True},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
    }
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings))
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GEMINI_API_KEY": "none",
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
        "GOOGLE_GEMINI_BASE_URL": str(router.make_url("")).rstrip("/"),
        "GEMINI_DEBUG_LOG_FILE": str(tmp_path / "debug.log"),  # where the CLI's own warnings go
    }
    args = [
        str(binary),
        *(["-m", model] if model else []),
        "--yolo",
        "-p",
        "Run the shell command: echo GHOST_TOOL_RAN",
    ]
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=work,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 240)
    text = out.decode(errors="replace")
    assert process.returncode == 0, text
    assert "The command printed:" in text and "GHOST_TOOL_RAN" in text.split("The command printed:")[-1], text
    rules = [r.getMessage().split(" rule=")[1].split(" ")[0] for r in caplog.records if r.name == "ghost_router"]
    if model is None:
        assert rules[0] == "gemini-structured", "the auto-mode model router's classifier is answered here"
    debug = (tmp_path / "debug.log").read_text() if (tmp_path / "debug.log").exists() else ""
    failures = [line for line in debug.splitlines() if "[Routing]" in line and "failed" in line]
    assert not failures, "the CLI rejected the classifier's answer: " + "\n".join(failures)
    if model is None:
        assert "Classifier" in debug.split("[Routing] Selected model:")[1].split(")")[0], (
            "the CLI chose its model from the classifier's answer: " + debug
        )
    assert all(s.body.get("tools") for s in fake.seen), "only turns reach the upstream"
    assert len(fake.seen) >= 2 and fake.max_in_flight == 1 and not fake.violations
