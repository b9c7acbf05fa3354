"""`ghost-router serve` as a user runs it, the per-request log line, and GET /_router/status."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import aiohttp

from tests.conftest import user_message


async def test_serve_prints_banner_answers_and_stops_cleanly(upstream):
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "router",
        "serve",
        "--port",
        "0",
        "--upstream",
        upstream.url,
        "--model",
        "qwen2.5-coder",
        "-v",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        banner = [(await asyncio.wait_for(process.stdout.readline(), 20)).decode() for _ in range(5)]
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", banner[0]).group(1)
        assert banner[1].startswith("rules: <embedded default rules>")
        assert banner[2].strip() == "plugins: codex, gemini, opencode"
        # the fake upstream listens but is no llama-server: no context size, so no window settings
        assert (
            banner[3].strip()
            == f"upstream local (max_concurrency 1): {upstream.url} accepts connections (no llama-server /props there)"
        )
        assert banner[4].strip() == (
            f"client: ANTHROPIC_BASE_URL={url} ANTHROPIC_API_KEY=none CLAUDE_STREAM_IDLE_TIMEOUT_MS=1800000 "
            "claude --model qwen2.5-coder --permission-mode default"
        )
        async with aiohttp.ClientSession(base_url=url) as http:
            async with http.head("/api/hello") as probe:
                assert probe.status == 200
            title = {"model": "m", "max_tokens": 50, "system": "You are naming a coding session", "messages": []}
            title["messages"] = user_message("fix the flaky build " * 50)
            async with http.post("/v1/messages", json=title) as ghost:
                assert ghost.status == 200
            async with http.post(
                "/v1/messages",
                json={"model": "m", "max_tokens": 5, "messages": user_message("hi")},
                headers={"x-api-key": "sk-never-log-me"},
            ) as turn:
                assert turn.status == 200
            async with http.get("/_router/status") as status:
                doc = await status.json()
        assert doc["rules_file"] == "<embedded default rules>"
        hits = {r["name"]: r["hits"] for r in doc["rules"]}
        assert (hits["probe"], hits["count-tokens"], hits["main"]) == (1, 0, 1)
        assert [s.body["model"] for s in upstream.seen if s.path == "/v1/messages"] == ["qwen2.5-coder"]
        assert doc["upstreams"]["local"]["forwarded"] == 1
        assert doc["savings"]["ghost_turns"] == 1 and doc["savings"]["ghost_prompt_tokens"] > 200, doc["savings"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0
    log = err.decode()
    assert "rule=probe action=fake status=200" in log
    assert "rule=main action=rewrite+forward:local/user status=200" in log
    assert "why=[method='HEAD']" in log
    assert "sk-never-log-me" not in log
    stopped = re.search(r"ghost-router stopped after [\d,]+ s: 4 requests; saved: (.*)", log)
    assert stopped, log[-500:]
    assert stopped.group(1).startswith("1 ghost turn answered here (~"), stopped.group(1)


async def test_serve_refuses_non_loopback_without_insecure():
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", "serve", "--host", "0.0.0.0", "--port", "0", stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    assert "refusing to listen on 0.0.0.0" in err.decode() and "--insecure" in err.decode()


async def test_rules_command_prints_the_embedded_table():
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", "rules", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0 and b"name: count-tokens" in out


async def test_log_line_has_every_field_and_no_keys(make_router, upstream, http, caplog):
    client = await http(await make_router())
    body = {
        "model": "claude-opus",
        "max_tokens": 5,
        "messages": user_message("hi"),
        "tools": [{"name": "Bash", "input_schema": {}}],
    }
    response = await client.post(
        "/v1/messages", json=body, headers={"x-api-key": "sk-secret-1", "Authorization": "Bearer sk-secret-2"}
    )
    await response.read()
    lines = [r.getMessage() for r in caplog.records if r.name == "ghost_router"]
    assert len(lines) == 1
    line = lines[0]
    for field in [
        "POST /v1/messages",
        "model=claude-opus",
        "tools=1",
        "rule=main",
        "action=rewrite+forward:local/user",
        "status=200",
        "wait=",
        "upstream=",
        "bytes=",
        "why=[match-all]",
    ]:
        assert field in line, line
    assert re.match(r"#\d{6} anthropic ", line)
    assert "sk-secret" not in caplog.text


async def test_status_reports_queue_and_hits_live(make_router, upstream, http):
    router = await make_router()
    client = await http(router)
    holder = asyncio.create_task(
        client.post(
            "/v1/messages",
            json={"model": "m", "max_tokens": 5, "messages": user_message("a")},
            headers={"x-test-upstream": "hold=h"},
        )
    )
    await upstream.wait_for(1)
    waiter = asyncio.create_task(
        client.post("/v1/messages", json={"model": "m", "max_tokens": 5, "messages": user_message("b")})
    )
    for _ in range(200):
        doc = await (await client.get("/_router/status")).json()
        if doc["upstreams"]["local"]["queued"] == 1:
            break
        await asyncio.sleep(0.01)
    assert doc["upstreams"]["local"]["in_flight"] == 1 and doc["upstreams"]["local"]["queued"] == 1
    assert doc["rules_file"] == "test-rules.yaml" and doc["last_load_error"] is None
    assert next(r for r in doc["rules"] if r["name"] == "main")["hits"] == 2
    upstream.release("h")
    await holder
    await waiter


async def test_client_gone_is_logged_as_499(make_router, upstream, http, caplog):
    router = await make_router()
    client = await http(router)
    response = await client.post(
        "/v1/messages",
        json={"model": "m", "max_tokens": 5, "stream": True, "messages": user_message("x")},
        headers={"x-test-upstream": "hold=never"},
    )
    await response.content.readuntil(b"\n\n")
    response.close()
    await upstream.wait_outcome(0, "cancelled")
    for _ in range(200):
        if any("status=499" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.01)
    assert any("status=499" in r.getMessage() and "client closed" in r.getMessage() for r in caplog.records)
    from router.app import STATE

    assert router.app[STATE].pool["local"].stats.cancelled == 1
