"""The real Claude Code CLI (`claude -p`) through ghost-router's default rules to a one-slot upstream.

The upstream plays the model: it asks for a Bash tool call, then reports the tool's output, so
the turn only completes if Claude Code ran the tool and sent the tool_result back through the
router. It fails loudly if a second request is ever in flight.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from router import client_line
from router.app import build_app
from router.config import Overrides, embedded_rules_text, load_config, parse_config
from router.plugins import builtin_registry
from tests.clients import client_binary

MARKER = "GHOST_TOOL_RAN"


async def run_claude(
    binary, router_url: str, workdir, extra_env: dict[str, str], timeout: float = 180
) -> tuple[int, str, str]:
    home = workdir / "home"
    home.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": router_url,
        "ANTHROPIC_API_KEY": "none",
        # keeps Claude Code's own telemetry and update checks off the network: tests talk to loopback only
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
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
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
        raise AssertionError(
            f"claude -p did not finish in {timeout:g} s\nstdout: {out.decode()}\nstderr: {err.decode()}"
        ) from None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("version", ["2.1.332", "2.1.331", "2.1.197"])
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


async def claude_code_line_carries_a_330_s_prefill(aiohttp_server, agent_upstream, tmp_path):
    """The upstream sends nothing for 330 s before each turn's first byte (Claude Code 2.1.332 gives a
    silent stream 300 s); the router's pings and the settings in the line `serve` prints carry it
    through: the turn completes and no request is sent twice."""
    binary = client_binary("claude-2.1.332", "claude")
    rules = embedded_rules_text().replace(
        "    max_concurrency: 1 ", '    headers: {x-test-upstream: "first_byte_after=330"}\n    max_concurrency: 1 '
    )
    config = parse_config(rules, "rules.yaml", builtin_registry(), Overrides(upstream_url=agent_upstream.url))
    router = await aiohttp_server(build_app(config, verbose=True))
    url = str(router.make_url("")).rstrip("/")
    line = client_line.claude_code(url, "local-model", 65536)
    settings = dict(word.split("=", 1) for word in line.split(" claude ")[0].split())
    assert settings.pop("ANTHROPIC_BASE_URL") == url and settings.pop("ANTHROPIC_API_KEY") == "none"
    code, out, err = await run_claude(binary, url, tmp_path, settings, timeout=1500)
    assert code == 0, f"stdout: {out}\nstderr: {err}"
    assert f"The command printed: {MARKER}" in out, out
    turns = [request for request in agent_upstream.seen if request.path == "/v1/messages"]
    assert len(turns) == 2, "the tool call and the follow-up, each sent once: no retry"
    assert [t.outcome for t in turns] == ["done", "done"]
