"""The real Claude Code CLI (`claude -p`) through ghost-router's default rules to a one-slot upstream.

The upstream plays the model: it asks for a Bash tool call, then reports the tool's output, so
the turn only completes if Claude Code ran the tool and sent the tool_result back through the
router. It fails loudly if a second request is ever in flight.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from router.app import build_app
from router.config import Overrides, load_config
from router.plugins import builtin_registry
from tests.clients import client_binary

MARKER = "GHOST_TOOL_RAN"


async def run_claude(binary, router_url: str, workdir, extra_env: dict[str, str]) -> tuple[int, str, str]:
    home = workdir / "home"
    home.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": router_url,
        "ANTHROPIC_API_KEY": "none",
        # keeps Claude Code's own telemetry and update checks off the network: tests talk to loopback only
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # Claude Code aborts a stream after 300 s without an event (pings do not count); a first
        # prefill on a busy CI core can take longer. Its own setting, as the client line sets it.
        "CLAUDE_STREAM_IDLE_TIMEOUT_MS": "1800000",
        **extra_env,
    }
    process = await asyncio.create_subprocess_exec(
        str(binary),
        "-p",
        f"Run the shell command: echo {MARKER}",
        "--model",
        "local-model",
        "--allowedTools",
        "Bash",
        cwd=workdir,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 180)
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
        raise AssertionError(
            f"claude -p did not finish in 180 s\nstdout: {out.decode()}\nstderr: {err.decode()}"
        ) from None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("version", ["2.1.331", "2.1.197"])
@pytest.mark.parametrize("switches", [{}, {"CLAUDE_CODE_ATTRIBUTION_HEADER": "0"}], ids=["plain", "attribution-off"])
async def test_claude_p_completes_a_tool_turn_through_the_default_rules(
    aiohttp_server, agent_upstream, tmp_path, caplog, version, switches
):
    binary = client_binary(f"claude-{version}", "claude")
    config = load_config(None, builtin_registry(), Overrides(upstream_url=agent_upstream.url))
    router = await aiohttp_server(build_app(config, verbose=True))
    code, out, err = await run_claude(binary, str(router.make_url("")).rstrip("/"), tmp_path, switches)
    assert code == 0, f"stdout: {out}\nstderr: {err}"
    assert f"The command printed: {MARKER}" in out, out

    seen = agent_upstream.seen
    assert len(seen) >= 2, "a tool turn needs the tool_use answer and the tool_result follow-up"
    for request in seen:
        assert request.path == "/v1/messages", "only main turns reach the upstream"
        assert request.body["model"] == "local-model"
        assert len(request.body["tools"]) >= 10, "main turns carry Claude Code's tool set"
        assert b"x-anthropic-billing-header" not in request.raw, "the billing block never reaches the upstream"
    assert any(
        block.get("type") == "tool_result" and MARKER in str(block.get("content"))
        for block in seen[-1].body["messages"][-1]["content"]
    ), "Claude Code ran the tool and sent its result back"
    assert agent_upstream.max_in_flight == 1
    decisions = [r.getMessage() for r in caplog.records if r.name == "ghost_router"]
    assert all("status=200" in line for line in decisions), decisions
