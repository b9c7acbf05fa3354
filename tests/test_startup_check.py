"""What `serve` finds at its upstreams when it starts, and the client line it builds from that:
nothing listening, something that is not llama-server, a llama-server (real /props shape), a
/props that lies, and credentials in the URL that must reach /props but never the banner."""

from __future__ import annotations

import asyncio
import base64

import pytest
from aiohttp import web

from router.cli import banner_lines
from router.config import Overrides, load_config
from router.plugins import builtin_registry
from router.upstream.pool import ServerConfig
from router.upstream.probe import Found, look, look_all

PROPS = {"default_generation_settings": {"n_ctx": 65536}, "total_slots": 1, "model_path": "m.gguf"}


async def props_server(aiohttp_server, answer, seen: list[dict[str, str]] | None = None):
    async def props(request: web.Request) -> web.StreamResponse:
        if seen is not None:
            seen.append(dict(request.headers))
        return answer() if callable(answer) else web.json_response(answer)

    app = web.Application()
    app.router.add_get("/props", props)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def looked(server: ServerConfig) -> Found:
    """look() blocks (it runs before the event loop serves): run it off this test's loop."""
    return await asyncio.get_running_loop().run_in_executor(None, look, server)


def banner(url: str, found: Found) -> list[str]:
    config = load_config(None, builtin_registry(), Overrides(upstream_url=url, model="qwen"))
    return banner_lines("http://127.0.0.1:9090", config, {"local": [found]}, ["builtin"])


async def test_nothing_listening_is_reported_with_how_to_start_it_not_as_an_error(closed_port):
    found = await looked(ServerConfig(f"http://127.0.0.1:{closed_port}"))
    assert not found.listening and found.context is None
    lines = banner(found.url, found)
    assert f"nothing listens at http://127.0.0.1:{closed_port} yet" in lines[2]
    assert f"--port {closed_port}" in lines[2] and "not an error" in lines[2]
    assert lines[3].startswith("client: ANTHROPIC_BASE_URL=http://127.0.0.1:9090 ANTHROPIC_API_KEY=none ")
    assert "CLAUDE_CODE_MAX_CONTEXT_TOKENS" not in lines[3] and lines[4].startswith("tip: add CLAUDE_CODE_MAX")


async def test_a_llama_server_is_ready_with_its_context_and_slots_in_the_client_line(aiohttp_server):
    url = await props_server(aiohttp_server, PROPS)
    found = await looked(ServerConfig(url))
    assert (found.listening, found.context, found.slots) == (True, 65536, 1)
    lines = banner(url, found)
    assert lines[2] == f"upstream local (max_concurrency 1): {url} ready (llama-server: context 65,536 tokens, 1 slot)"
    assert "CLAUDE_CODE_MAX_CONTEXT_TOKENS=65536 CLAUDE_CODE_MAX_OUTPUT_TOKENS=8192 " in lines[3]
    assert len(lines) == 4, "no tip: 65,536 tokens leave room before Claude Code compacts"


async def test_a_small_context_gets_a_tip_with_the_numbers(aiohttp_server):
    url = await props_server(aiohttp_server, {"default_generation_settings": {"n_ctx": 32768}, "total_slots": 2})
    lines = banner(url, await looked(ServerConfig(url)))
    assert "context 32,768 tokens, 2 slots" in lines[2] and "CLAUDE_CODE_MAX_OUTPUT_TOKENS=4096 " in lines[3]
    assert lines[4] == (
        "tip: with 32,768 tokens of context Claude Code compacts once a conversation reaches 15,672 tokens, "
        "and its first prompt alone is about 12,500: start the server with --ctx-size 65536 or more"
    )


@pytest.mark.parametrize(
    "answer",
    [
        {"default_generation_settings": {"n_ctx": "65536"}},
        {"default_generation_settings": {"n_ctx": -1}},
        {"default_generation_settings": None},
        [1, 2, 3],
        lambda: web.Response(text="{not json"),
        lambda: web.Response(status=404, text="no such endpoint"),
        lambda: web.Response(body=b"[" * 100_000 + b"]" * 100_000, content_type="application/json"),
    ],
    ids=["string", "negative", "null", "list", "not-json", "404", "deep"],
)
async def test_a_props_answer_that_is_not_llama_servers_is_just_a_listening_server(aiohttp_server, answer):
    url = await props_server(aiohttp_server, answer)
    found = await looked(ServerConfig(url))
    assert found == Found(url, True)
    assert f"{url} accepts connections (no llama-server /props there)" in banner(url, found)[2]


async def test_credentials_from_the_url_reach_props_and_never_the_banner(aiohttp_server):
    seen: list[dict[str, str]] = []
    url = await props_server(aiohttp_server, PROPS, seen)
    secret = "url-pass-probe"
    config = load_config(
        None, builtin_registry(), Overrides(upstream_url=url.replace("http://", f"http://user:{secret}@"))
    )
    found = await asyncio.get_running_loop().run_in_executor(None, look_all, config.upstreams)
    assert found["local"][0].context == 65536
    assert seen[0]["Authorization"] == "Basic " + base64.b64encode(f"user:{secret}".encode()).decode()
    lines = banner_lines("http://127.0.0.1:9090", config, found, ["builtin"])
    assert secret not in "\n".join(lines) and url in lines[2]
