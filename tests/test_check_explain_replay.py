"""`check`, `explain`, `replay` and `serve --record`, run as a user runs them."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys

import aiohttp

from tests import claude_code_shapes as cc

GHOST = [sys.executable, "-m", "router"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GHOST, *args], capture_output=True, text=True, timeout=60)


def test_check_prints_the_compiled_table():
    result = run("check")
    assert result.returncode == 0
    assert result.stdout.startswith("<embedded default rules>: 19 rules, 1 upstream(s)")
    assert "#1 codex-title: client='codex', codex_turn={'thread_source': 'thread_title'} -> fake" in result.stdout, (
        "plugin rules come first"
    )
    assert "#7 opencode-title: client='opencode', system='You are a title generator' -> fake" in result.stdout
    assert (
        "upstream local (default): http://127.0.0.1:8080 model=local-model api=anthropic,openai-chat,openai-responses "
        "max_concurrency=1" in result.stdout
    )
    assert re.search(r"#19 main line \d+: match-all -> rewrite\+forward:local/user", result.stdout)


def test_check_exits_non_zero_with_the_error(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: x\n    match: {modle: a}\n    action: {fake: {text: a}}\n")
    result = run("check", str(path))
    assert result.returncode == 1
    assert f"{path}:3: rule #1 'x': match.modle: unknown matcher 'modle'" in result.stderr


def test_explain_says_why_each_earlier_rule_did_not_match(tmp_path):
    request = tmp_path / "classifier.json"
    request.write_text(json.dumps(cc.classifier_request("rm -rf /")))
    result = run("explain", str(request))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "request: POST /v1/messages model=claude-sonnet-5 client=anthropic tools=0 stream=False"
    assert lines[1] == "  #1 codex-title: no, client='codex' does not hold (request has 'anthropic (anthropic)')"
    assert "  #7 opencode-title: no, client='opencode' does not hold (request has 'anthropic (anthropic)')" in lines
    assert "  #9 probe: no, method='HEAD' does not hold (request has 'POST')" in lines
    assert "#14 quota-probe: no, max_tokens=1 does not hold (request has 64)" in result.stdout
    assert lines[-2].startswith("  #16 auto-mode-classifier: MATCH on system='You are a security monitor")
    assert (
        lines[-1].startswith('answer: 200 {"id":"msg_ghost') and "<block>yes</block>" in lines[-1]
    )  # what the fake says
    count = run("explain", str(request), "--path", "/v1/messages/count_tokens")
    assert count.stdout.splitlines()[-2].startswith("  #10 count-tokens: MATCH")
    assert count.stdout.splitlines()[-1].startswith('answer: 200 {"input_tokens":')


def test_explain_a_malformed_request(tmp_path):
    request = tmp_path / "bad.json"
    request.write_text(json.dumps({"model": 5, "messages": []}))
    result = run("explain", str(request))
    assert "the router answers an error before any rule: 400 model: expected a string, got number" in result.stdout


async def test_recorded_session_replays_to_the_live_decisions(tmp_path, upstream):
    capture = tmp_path / "session.jsonl"
    process = await asyncio.create_subprocess_exec(
        *GHOST,
        "serve",
        "--port",
        "0",
        "--upstream",
        upstream.url,
        "--record",
        str(capture),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        url = re.search(r"(http://\S+)", (await asyncio.wait_for(process.stdout.readline(), 20)).decode()).group(1)
        headers = {**cc.headers(), "x-api-key": "sk-ant-very-secret", "Authorization": "Bearer sk-also-secret"}
        async with aiohttp.ClientSession(base_url=url, headers=headers) as http:
            async with http.head("/api/hello") as r:
                assert r.status == 200
            bodies = [
                cc.title_request("fix the parser"),
                cc.main_turn("fix the parser", stream=False),
                cc.classifier_request("ls"),
                cc.haiku_request("", "quota", 1),
            ]
            for body in bodies:
                async with http.post("/v1/messages", json=body) as r:
                    assert r.status == 200
            async with http.post(
                "/v1/messages",
                json=cc.main_turn("agent work", subagent=True, stream=False),
                headers={"x-claude-code-agent-id": "a1"},
            ) as r:
                assert r.status == 200
            for i in range(3):
                async with http.post("/v1/messages/count_tokens", json=cc.count_tokens_request(i)) as r:
                    assert r.status == 200
            async with http.post("/v1/messages", data=b"{not json", headers={"Content-Type": "application/json"}) as r:
                assert r.status == 400
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), 20)

    text = capture.read_text()
    assert "sk-ant-very-secret" not in text and "sk-also-secret" not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert len(records) == 10
    assert records[0]["method"] == "HEAD" and records[0]["headers"]["x-api-key"].startswith("<redacted")
    assert records[-1]["body_text"] == "{not json" and records[-1]["decision"]["status"] == 400
    live = [r["decision"]["rule"] for r in records]
    assert live == [
        "probe",
        "session-title",
        "main",
        "auto-mode-classifier",
        "quota-probe",
        "subagent",
        "count-tokens",
        "count-tokens",
        "count-tokens",
        "-",
    ]

    replayed = run("replay", str(capture))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "10/10 decisions match the live router's" in replayed.stdout
    assert re.search(r"count-tokens\s+3", replayed.stdout) and re.search(r"main\s+1", replayed.stdout)


def test_replay_flags_decisions_that_differ_and_exits_non_zero(tmp_path):
    capture = tmp_path / "c.jsonl"
    record = {
        "seq": 1,
        "method": "POST",
        "path": "/v1/messages",
        "headers": {},
        "body": cc.haiku_request("", "quota", 1),
        "decision": {"rule": "main"},
    }
    capture.write_text(json.dumps(record) + "\n")
    result = run("replay", str(capture))
    assert result.returncode == 1
    assert "quota-probe" in result.stdout and "(live: main)" in result.stdout and "0/1 decisions match" in result.stdout
