"""Gemini CLI: the Gemini API adapter, structured background calls answered from their schema,
the real `gemini -p` through the router to a one-slot upstream (auto model mode and -m), and the
client line `serve` prints carrying it through a 330 s silent prefill."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from router import client_line
from tests.clients import client_binary, split_line

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

# what a user's ~/.gemini/settings.json holds after the first run's auth dialog, with usage
# statistics, telemetry and updates off: the tests talk to loopback only
SETTINGS = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "general": {"disableAutoUpdate": True, "enableAutoUpdateNotification": False},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
}
PROMPT = "Run the shell command: echo GHOST_TOOL_RAN"


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
    assert (await response.json())["candidates"][0]["content"]["role"] == "model"
    # no local server speaks Gemini: the default rules' llama-server gets the turn in Anthropic's
    # API (the first its `api` lists), capped by the rule
    assert upstream.seen[0].path == "/v1/messages" and upstream.seen[0].body["max_tokens"] == 2048


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
    (home / ".gemini" / "settings.json").write_text(json.dumps(SETTINGS))
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


def test_the_client_line_points_gemini_cli_at_the_router_with_the_local_model():
    env, argv = split_line(client_line.gemini_cli("http://127.0.0.1:9090", "qwen", 65536))
    assert env == {"GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:9090", "GEMINI_API_KEY": "none"}
    assert argv == ["gemini", "-m", "qwen"]
    # no env or flag of Gemini CLI sets its context window: the line is the same without one
    assert client_line.gemini_cli("http://127.0.0.1:9090", "qwen", None) == client_line.gemini_cli(
        "http://127.0.0.1:9090", "qwen", 65536
    )
    env, argv = split_line(client_line.gemini_cli("http://[::1]:9090/x y", "my model:q4", None))
    assert env["GOOGLE_GEMINI_BASE_URL"] == "http://[::1]:9090/x y" and argv == ["gemini", "-m", "my model:q4"]


async def gemini_line_carries_a_330_s_prefill(router_factory, agent_upstream, tmp_path):
    """The upstream sends nothing for 330 s before the first turn's first byte. Gemini CLI 0.61
    gives a request 60 s for its headers and 300 s between body bytes, then retries it (each retry
    a new prefill); the router's early head and keep-alive bytes, with nothing but the line `serve`
    prints, carry it: the turn completes and no request is sent twice."""
    binary = client_binary("gemini", "gemini")

    def slow_prefill(rules: str) -> str:
        edited = rules.replace(
            "    max_concurrency: 1 ", '    headers: {x-test-upstream: "first_byte_after=330"}\n    max_concurrency: 1 '
        )
        assert edited != rules, "the default upstream's max_concurrency line moved"
        return edited

    router = await router_factory(agent_upstream.url, slow_prefill)
    url = str(router.make_url("")).rstrip("/")
    line_env, argv = split_line(client_line.gemini_cli(url, "local-model", 65536))
    assert argv[0] == "gemini"
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".gemini").mkdir(parents=True)
    work.mkdir()
    (home / ".gemini" / "settings.json").write_text(json.dumps(SETTINGS))
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GEMINI_CLI_TRUST_WORKSPACE": "true",  # the folder-trust dialog, answered
        "GEMINI_DEBUG_LOG_FILE": str(tmp_path / "debug.log"),
        **line_env,
    }
    process = await asyncio.create_subprocess_exec(
        str(binary),
        *argv[1:],
        "--yolo",
        "-p",
        PROMPT,
        cwd=work,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 1500)
    except TimeoutError:
        process.kill()
        out, _ = await process.communicate()
        raise AssertionError(f"gemini -p did not finish in 1500 s: {out.decode(errors='replace')}") from None
    text = out.decode(errors="replace")
    assert process.returncode == 0, text
    assert "GHOST_TOOL_RAN" in text.split("The command printed:")[-1] and "The command printed:" in text, text
    seen = agent_upstream.seen
    assert len(seen) == 2, f"the tool call and the follow-up, each sent once: no retry ({len(seen)} requests)"
    assert all(s.body.get("tools") for s in seen) and [s.outcome for s in seen] == ["done", "done"]
    # the default rules' upstream speaks no Gemini: the turns reach it translated to Anthropic's API
    assert [s.path for s in seen] == ["/v1/messages", "/v1/messages"]
    assert "tool_result" in json.dumps(seen[1].body["messages"][-1]), "Gemini CLI ran the tool and sent its result"
