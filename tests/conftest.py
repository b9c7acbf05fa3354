"""Shared fixtures: a real fake upstream and routers built from rules text, all on real sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import textwrap
from collections.abc import Awaitable, Callable
from typing import Any

import anthropic
import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestServer
from yarl import URL

from router.app import STATE, build_app
from router.config import parse_config
from router.plugins import builtin_registry
from router.server import serving
from tests.fake_upstream import FakeUpstream


class RouterServer(BaseTestServer):
    """A router application served exactly as `ghost-router serve` serves it (router.server.serving)."""

    def __init__(self, app: web.Application) -> None:
        super().__init__(scheme="http", host="127.0.0.1")
        self.app = app
        self._serving: Any = None

    async def start_server(self, loop: Any = None, **kwargs: Any) -> None:
        if self._serving is not None:
            return
        self._serving = serving(self.app, "127.0.0.1", 0)
        self._root = URL(await self._serving.__aenter__())
        self.port = self._root.port

    async def _make_runner(self, **kwargs: Any) -> Any:
        raise NotImplementedError("served by router.server.serving")

    @property
    def started(self) -> bool:
        return self._serving is not None

    async def close(self) -> None:
        if self._serving is not None and not self._closed:
            self._closed = True
            await self._serving.__aexit__(None, None, None)


@pytest.fixture
async def aiohttp_server(aiohttp_server: Any) -> Any:
    """pytest-aiohttp's fixture, except that a router application is served as `serve` serves it."""
    servers: list[RouterServer] = []

    async def serve(app: web.Application, **kwargs: Any) -> BaseTestServer:
        if STATE not in app:
            return await aiohttp_server(app, **kwargs)
        server = RouterServer(app)
        await server.start_server()
        servers.append(server)
        return server

    yield serve
    for server in servers:
        await server.close()


RULES = """
version: 1
upstreams:
  local:
    url: {upstream}
    max_concurrency: 1
    max_queue: 256
    queue_timeout: 30s
rules:
  - name: probe
    match: {{method: HEAD}}
    action: {{fake: {{status: 200}}}}
  - name: count-tokens
    match: {{path: /v1/messages/count_tokens}}
    action: {{estimate: {{}}}}
  - name: title
    match: {{system: "You are naming a coding session"}}
    action: {{fake: {{title_from_prompt: true}}}}
  - name: background
    match: {{model: "claude-*haiku*"}}
    action: {{forward: {{upstream: local, priority: background}}}}
  - name: subagent
    match: {{header: {{x-claude-code-agent-id: "*"}}}}
    action: {{forward: {{upstream: local, priority: subagent}}}}
  - name: main
    match: {{}}
    action:
      rewrite: {{model: local-model, drop_billing_header: true}}
      forward: {{upstream: local, priority: user}}
"""


@pytest.fixture(autouse=True)
def _quiet_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ghost_router")


@pytest.fixture
async def upstream(aiohttp_server: Any) -> FakeUpstream:
    """A one-slot fake upstream listening on a real loopback port; `.url` is its base URL."""
    fake = FakeUpstream(slots=1)
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    yield fake
    assert not fake.violations, fake.violations


@pytest.fixture
def closed_port() -> Any:
    """A loopback port nobody listens on for the whole test: bound but never listening, so
    connections are refused and no other process can take it meanwhile."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


async def start_agent_upstream(aiohttp_server: Any) -> FakeUpstream:
    """A one-slot fake upstream that plays a coding agent's model in every protocol: it asks for
    one shell command (`echo GHOST_TOOL_RAN`), then reports the tool's output."""
    fake = FakeUpstream(slots=1, agent_command="echo GHOST_TOOL_RAN")
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    return fake


@pytest.fixture
async def agent_upstream(aiohttp_server: Any) -> FakeUpstream:
    """start_agent_upstream's fake, checked for slot violations at the end."""
    fake = await start_agent_upstream(aiohttp_server)
    yield fake
    assert not fake.violations, fake.violations


RouterFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture
def make_router(aiohttp_server: Any, upstream: FakeUpstream) -> RouterFactory:
    """Start a router on a real port from rules text; `{upstream}` is replaced by the fake's URL."""

    async def make(rules: str = RULES, verbose: bool = True, **values: Any) -> TestServer:
        text = textwrap.dedent(rules).format(upstream=upstream.url, **values)
        config = parse_config(text, "test-rules.yaml", builtin_registry())
        return await aiohttp_server(build_app(config, verbose=verbose))

    return make


@pytest.fixture
def router_factory(aiohttp_server: Any) -> Callable[..., Awaitable[TestServer]]:
    """A router on the embedded default rules plus every installed plugin (the bundled client
    plugins among them), pointed at UPSTREAM_URL; EDIT may change the rules text first."""
    from router.config import Overrides, embedded_rules_text
    from router.plugins import load_plugins

    async def make(upstream_url: str, edit: Callable[[str], str] = lambda text: text) -> TestServer:
        plugins = load_plugins()
        registry, rules = plugins.registry()
        config = parse_config(
            edit(embedded_rules_text()), "default", registry, Overrides(upstream_url=upstream_url), rules
        )
        return await aiohttp_server(build_app(config, registry, plugins=plugins, plugin_rules=rules))

    return make


@pytest.fixture
async def sdk() -> Callable[..., anthropic.AsyncAnthropic]:
    """Make anthropic SDK clients pointed at a router (the strict client); closed after the test."""
    clients: list[anthropic.AsyncAnthropic] = []

    def make(router: TestServer, **kwargs: Any) -> anthropic.AsyncAnthropic:
        kwargs.setdefault("max_retries", 0)
        client = anthropic.AsyncAnthropic(base_url=str(router.make_url("")), api_key="sk-test-secret-key", **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def http(aiohttp_client: Any) -> Callable[[TestServer], Awaitable[Any]]:
    """A raw aiohttp test client for a running router (for bodies the SDK would refuse to send)."""

    async def make(router: TestServer) -> Any:
        return await aiohttp_client(router)

    return make


async def post_and_leave_after(
    router: Any, path: str, body: dict[str, Any], last_event: bytes, headers: str = ""
) -> bytes:
    """POST BODY as a stream over a raw socket (with the header lines HEADERS, each ending in CRLF),
    read until LAST_EVENT's blank line, then hang up without reading the body's end (as Codex does
    after `response.completed`). The upstream should hold its body's end until the router has
    logged the request (finished_line)."""
    payload = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection(router.host, router.port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{headers}"
        f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    received = b""
    while not re.search(re.escape(last_event) + rb".*?(\r?\n){2}", received, re.S):
        chunk = await reader.read(65536)
        assert chunk, received
        received += chunk
    writer.close()
    await writer.wait_closed()
    return received


async def finished_line(caplog: Any, release: Callable[[], None]) -> str:
    """The router's log line for the one request, once it is written; then RELEASE lets the
    upstream end the body it held open until then."""
    for _ in range(3000):  # up to a minute: the line comes when the router sees the client gone
        lines = [r.getMessage() for r in caplog.records if r.name == "ghost_router" and " status=" in r.getMessage()]
        if lines:
            release()
            return lines[0]
        await asyncio.sleep(0.02)
    release()
    raise AssertionError("the router wrote no log line for the request")


def user_message(text: str) -> list[dict[str, Any]]:
    """A one-message conversation."""
    return [{"role": "user", "content": text}]
