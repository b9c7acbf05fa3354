"""The real CLIs through a translating upstream: Claude Code to a server that speaks only OpenAI
chat (llama-server's chunk shapes, with reasoning), OpenCode to one that speaks only Anthropic,
Gemini CLI and Codex (Responses only) to ones replaying a real llama-server's chunks. Each turn
completes only if the client ran the tool and sent its result back through the router. And a real
llama-server's own OpenAI chat answers, translated for the anthropic SDK and printed by Gemini CLI
and by Codex."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from router import client_line
from router.app import build_app
from router.config import Overrides, embedded_rules_text, parse_config
from router.plugins import builtin_registry, load_plugins
from tests.clients import client_binary, split_line
from tests.fake_upstream import LLAMA_OVERFLOW
from tests.test_claude_code_cli import MARKER, run_claude
from tests.test_codex import LOOPBACK_ONLY
from tests.test_gemini import SETTINGS
from tests.test_llama_server import default_rules, llama  # noqa: F401 (the fixture)
from tests.test_opencode import opencode_env, run_opencode


def with_api(api: str):
    """An edit of the embedded rules: the default upstream speaks API."""
    return lambda text: re.sub(r"^    api: .*$", f"    api: {api}", text, count=1, flags=re.M)


@pytest.mark.parametrize("think_tags", [False, True], ids=["reasoning_content", "think-tags"])
async def test_real_claude_code_completes_a_tool_turn_through_an_openai_chat_upstream(
    aiohttp_server, agent_upstream, tmp_path, caplog, think_tags
):
    binary = client_binary("claude-2.1.332", "claude")
    agent_upstream.agent_reasoning = "The user wants a command run; I will use Bash."
    agent_upstream.agent_think = think_tags
    config = parse_config(
        with_api("openai-chat")(embedded_rules_text()),
        "default",
        builtin_registry(),
        Overrides(upstream_url=agent_upstream.url),
    )
    router = await aiohttp_server(build_app(config, verbose=True))
    code, out, err = await run_claude(binary, str(router.make_url("")).rstrip("/"), tmp_path, {})
    assert code == 0, f"stdout: {out}\nstderr: {err}"
    assert f"The command printed: {MARKER}" in out, out
    seen = agent_upstream.seen
    assert len(seen) >= 2 and all(s.path == "/v1/chat/completions" for s in seen)
    last = seen[-1].body["messages"]
    calls = [c["id"] for m in last if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    results = [m for m in last if m["role"] == "tool"]
    assert results and results[-1]["tool_call_id"] in calls and MARKER in json.dumps(results[-1]["content"])
    assert [m.get("reasoning_content") for m in last if m["role"] == "assistant"][
        0
    ] == agent_upstream.agent_reasoning, "Claude Code kept the thinking block and sent it back"
    assert all("<think>" not in json.dumps(m.get("content")) for m in last), "no <think> text leaked into answers"
    decisions = [r.getMessage() for r in caplog.records if r.name == "ghost_router"]
    assert all("status=200" in line for line in decisions), decisions


async def test_real_opencode_run_completes_a_tool_turn_through_an_anthropic_upstream(
    router_factory, agent_upstream, tmp_path, caplog
):
    binary = client_binary("opencode", "opencode")
    router = await router_factory(agent_upstream.url, with_api("anthropic"))
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    config = {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            "local": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Local",
                "options": {"baseURL": str(router.make_url("/v1")), "apiKey": "none"},
                "models": {"local-model": {"name": "local-model"}, "local-small": {"name": "local-small"}},
            }
        },
        "model": "local/local-model",
        "small_model": "local/local-small",
        "autoupdate": False,
        "share": "disabled",
    }
    (work / "opencode.json").write_text(json.dumps(config))
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "OPENCODE_DISABLE_AUTOUPDATE": "1"}
    process = await asyncio.create_subprocess_exec(
        str(binary),
        "run",
        f"Run the shell command: echo {MARKER}",
        cwd=work,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 240)
    text = out.decode(errors="replace")
    assert process.returncode == 0, text
    assert f"The command printed: {MARKER}" in text, text
    seen = agent_upstream.seen
    assert len(seen) >= 2 and all(s.path == "/v1/messages" for s in seen)
    assert any(
        block.get("type") == "tool_result" and MARKER in json.dumps(block.get("content"))
        for block in seen[-1].body["messages"][-1]["content"]
    )


async def test_real_llama_server_answers_the_anthropic_sdk_through_openai_chat(aiohttp_server, llama, sdk):  # noqa: F811
    """llama-server's own /v1/chat/completions chunks (a null-content role chunk, one token per
    chunk, finish_reason, then a usage chunk with timings) reach the SDK as a valid Anthropic
    stream and message."""
    config = parse_config(
        with_api("openai-chat")(embedded_rules_text()),
        "default",
        builtin_registry(),
        Overrides(upstream_url=llama.url, model="smollm2"),
    )
    client = sdk(await aiohttp_server(build_app(config)))
    messages = [{"role": "user", "content": "Say hi."}]
    async with client.messages.stream(model="m", max_tokens=8, messages=messages) as stream:
        streamed = await stream.get_final_message()
    whole = await client.messages.create(model="m", max_tokens=8, messages=messages)
    for message in (streamed, whole):
        assert [block.type for block in message.content] == ["text"] and message.content[0].text
        assert message.stop_reason in ("end_turn", "max_tokens")
        assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) > 0
        assert 0 < message.usage.output_tokens <= 8


# -- Gemini CLI to an OpenAI chat server ---------------------------------------------------------

GEMINI_PROMPT = "Run the shell command: echo GHOST_TOOL_RAN"


async def run_gemini(url: str, tmp_path: Path, prompt: str, timeout: float) -> tuple[int, str, str]:
    """`gemini -m local-model --yolo -p PROMPT` against the router at URL (the line `serve` prints,
    plus the saved auth choice, trust, and no telemetry): exit code, output, debug log."""
    binary = client_binary("gemini", "gemini")
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".gemini").mkdir(parents=True)
    work.mkdir()
    (home / ".gemini" / "settings.json").write_text(json.dumps(SETTINGS))
    line_env, argv = split_line(client_line.gemini_cli(url, "local-model", None))
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
        "GEMINI_DEBUG_LOG_FILE": str(tmp_path / "debug.log"),
        **line_env,
    }
    process = await asyncio.create_subprocess_exec(
        str(binary),
        *argv[1:],
        "--yolo",
        "-p",
        prompt,
        cwd=work,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        out, _ = await process.communicate()
        raise AssertionError(f"gemini -p did not finish in {timeout:g} s: {out.decode(errors='replace')}") from None
    debug = (tmp_path / "debug.log").read_text(errors="replace") if (tmp_path / "debug.log").exists() else ""
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), debug


class Recorder:
    """A pass-through to a real server that keeps the text of each streamed answer it relays."""

    def __init__(self, target: str) -> None:
        self.target, self.answers, self.paths, self.bodies = target, [], [], []

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.relay)
        return app

    async def relay(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        turn = request.method == "POST"  # the router's GET /slots (prefill progress) is relayed, not kept
        if turn:
            self.paths.append(request.path)
            self.bodies.append(body)
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            async with session.request(request.method, self.target + request.path, data=body, headers=headers) as up:
                response = web.StreamResponse(status=up.status, headers={"Content-Type": up.content_type})
                await response.prepare(request)
                raw = b""
                async for chunk in up.content.iter_any():
                    raw += chunk
                    await response.write(chunk)
                await response.write_eof()
        if turn:
            self.answers.append(_said(raw))
        return response


def _said(raw: bytes) -> str:
    """The answer text of an OpenAI chat stream or completion."""
    text = ""
    for line in raw.decode(errors="replace").splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices") or []:
                text += (choice.get("delta") or {}).get("content") or ""
    if raw.startswith(b"{"):
        choices = json.loads(raw).get("choices") or [{}]
        text = (choices[0].get("message") or {}).get("content") or ""
    return text


async def test_real_gemini_cli_prints_a_real_llama_servers_own_text(aiohttp_server, router_factory, llama, tmp_path):  # noqa: F811
    """Gemini CLI -> the router (the default rules, `api: openai-chat`) -> llama-server: the turn
    crosses as OpenAI chat, and the CLI prints what the model said. The turn's prompt (~11k tokens)
    takes minutes to read on a small machine: the translated stream's blank-line keep-alives carry
    Gemini CLI through it (it gives up after 300 s without a byte, then retries)."""
    recorder = Recorder(llama.url)
    relay = await aiohttp_server(recorder.app())
    router = await router_factory(str(relay.make_url("")).rstrip("/"), with_api("openai-chat"))
    code, out, debug = await run_gemini(str(router.make_url("")).rstrip("/"), tmp_path, "Say hello.", 1500)
    assert code == 0, f"{out}\n{debug[-3000:]}"
    assert recorder.paths and all(path == "/v1/chat/completions" for path in recorder.paths)
    assert len(set(recorder.bodies)) == len(recorder.bodies), (
        "no request was sent twice: keep-alives carried the prefill"
    )
    said = recorder.answers[-1].strip()
    assert said and said in out, f"the model said {said!r}; the CLI printed {out!r}"


async def test_real_gemini_cli_completes_a_tool_turn_through_llama_servers_chunk_shapes(
    aiohttp_server,
    router_factory,
    llama,  # noqa: F811
    tmp_path,
):
    """The chunk shapes come from the real llama-server (a forced tool call, then a text answer),
    recorded here; a test server replays them with the call Gemini CLI's tool needs. The turn
    completes only if the CLI ran the tool and sent its result back through the router."""
    shapes = await LlamaShapes.record(llama.url)
    replayer = LlamaReplayer(shapes)
    server = await aiohttp_server(replayer.app())
    router = await router_factory(str(server.make_url("")).rstrip("/"), with_api("openai-chat"))
    code, out, debug = await run_gemini(str(router.make_url("")).rstrip("/"), tmp_path, GEMINI_PROMPT, 600)
    assert code == 0, f"{out}\n{debug[-3000:]}"
    assert "The command printed:" in out and MARKER in out.split("The command printed:")[-1], out
    last = replayer.seen[-1]["messages"]
    calls = [c["id"] for m in last if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    results = [m for m in last if m["role"] == "tool"]
    assert calls == [shapes.call_id], "the call went back with the id llama-server gave it"
    assert results and results[-1]["tool_call_id"] == shapes.call_id and MARKER in results[-1]["content"]


@dataclass
class LlamaShapes:
    """Chunks a real llama-server streamed: a tool call and a short text answer."""

    call_chunks: list[dict[str, Any]]
    text_chunks: list[dict[str, Any]]

    @property
    def call_id(self) -> str:
        """The id llama-server gave the call ("" if it streamed none)."""
        return next((call["id"] for call in _calls(self.call_chunks) if call.get("id")), "")

    @classmethod
    async def record(cls, url: str) -> LlamaShapes:
        """SmolLM2 calls no tool when asked (nor when tool_choice is required, and llama-server
        refuses a grammar with tools): the call is started in the assistant's turn, as a prefill,
        and llama-server streams it as the tool call it parses. A prefill of the whole call, stopped
        at once, gives a clean stream (role chunk, call, finish_reason, usage); a prefill cut inside
        the arguments gives the call's chunks in pieces (the name and the first arguments, then
        argument fragments) until the model breaks the format: its call chunks are used, in the
        clean stream's frame."""
        tool = {
            "type": "function",
            "function": {
                "name": "run_shell_command",
                "parameters": {
                    "type": "object",
                    "properties": {"command": {"type": "string"}},
                    "required": ["command"],
                },
            },
        }
        base = {"model": "smollm2", "stream": True, "stream_options": {"include_usage": True}, "temperature": 0}
        call = '<tool_call>\n{"name": "run_shell_command", "arguments": {"command": "echo hi"}}\n</tool_call>'
        asked = {"role": "user", "content": "Run echo hi"}

        def prefilled(text: str) -> list[dict[str, Any]]:
            return [asked, {"role": "assistant", "content": text}]

        whole = await cls._stream(url, {**base, "messages": prefilled(call), "tools": [tool], "stop": ["\n", "<", " "]})
        cut = await cls._stream(url, {**base, "messages": prefilled(call[: call.index(" hi")]), "tools": [tool]})
        text = await cls._stream(url, {**base, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 48})
        pieces = [chunk for chunk in cut if _calls([chunk])]
        frame = [chunk for chunk in whole if not _calls([chunk])]
        shapes = cls(frame[:1] + pieces + frame[1:], text)
        assert shapes.call_id and len(pieces) > 1, f"llama-server streamed no tool call in pieces: {cut}"
        assert [c["choices"][0]["finish_reason"] for c in frame if c.get("choices")][-1] == "tool_calls", whole
        return shapes

    @staticmethod
    async def _stream(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The chunks llama-server streams for BODY (a connection of its own: it closes the one a
        stream used)."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{url}/v1/chat/completions", json=body) as response,
        ):
            assert response.status == 200, await response.text()
            raw = await response.read()
        return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: {")]


def _calls(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tool call fragments in CHUNKS."""
    return [
        call
        for chunk in chunks
        for choice in chunk.get("choices") or []
        for call in (choice.get("delta") or {}).get("tool_calls") or []
    ]


class LlamaReplayer:
    """Answers /v1/chat/completions with llama-server's recorded chunks: a request with tools and no
    tool result yet gets the recorded tool call, renamed for the client's shell tool (TOOL) and with its
    arguments (cut as the recorded fragments were); any other gets the recorded text chunks carrying
    `The command printed: <the tool's output>` (or the recorded text)."""

    def __init__(self, shapes: LlamaShapes, tool: str = "run_shell_command") -> None:
        self.shapes, self.tool, self.seen = shapes, tool, []

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.answer)
        return app

    async def answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.seen.append(body)
        messages = body["messages"]
        if body.get("tools") and not any(m["role"] == "tool" for m in messages):
            chunks = self._call()
        else:
            results = [m for m in messages if m["role"] == "tool"]
            chunks = self._text(f"The command printed: {results[-1]['content']}" if results else None)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in chunks:
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def _call(self) -> list[dict[str, Any]]:
        arguments = json.dumps({"command": f"echo {MARKER}", "description": "Run the command the user asked for"})
        chunks = copy.deepcopy(self.shapes.call_chunks)
        fragments = [c for c in chunks for ch in c.get("choices") or [] for call in ch["delta"].get("tool_calls") or []]
        pieces = _cut(arguments, len(fragments))
        for chunk, piece in zip(fragments, pieces, strict=True):
            call = chunk["choices"][0]["delta"]["tool_calls"][0]
            function = call.setdefault("function", {})
            if "name" in function:
                function["name"] = self.tool
            function["arguments"] = piece
        return chunks

    def _text(self, text: str | None) -> list[dict[str, Any]]:
        chunks = copy.deepcopy(self.shapes.text_chunks)
        if text is None:
            return chunks
        carrying = [c for c in chunks for ch in c.get("choices") or [] if ch["delta"].get("content")]
        for chunk, piece in zip(carrying, _cut(text, len(carrying)), strict=True):
            chunk["choices"][0]["delta"]["content"] = piece
        return chunks


def _cut(text: str, count: int) -> list[str]:
    """TEXT in COUNT pieces (the first ones longer), each piece a slice in order."""
    size, extra = divmod(len(text), count)
    pieces, at = [], 0
    for index in range(count):
        end = at + size + (1 if index < extra else 0)
        pieces.append(text[at:end])
        at = end
    return pieces


# -- Codex CLI through an OpenAI chat upstream -------------------------------------------------


def codex_router_config(upstream_url: str, model: str | None = None):
    """The embedded default rules and every plugin (Codex's among them), the default upstream
    speaking OpenAI chat."""
    plugins = load_plugins()
    registry, rules = plugins.registry()
    config = parse_config(
        with_api("openai-chat")(embedded_rules_text()),
        "default",
        registry,
        Overrides(upstream_url=upstream_url, model=model),
        rules,
    )
    return build_app(config, registry, plugins=plugins, plugin_rules=rules, verbose=True)


async def run_codex(router, model: str, prompt: str, workdir) -> tuple[int, str, str]:
    """`codex exec PROMPT` started from the client line serve prints for ROUTER (HOME and
    CODEX_HOME in WORKDIR, no config file): exit code, stdout (the final message), stderr."""
    binary = client_binary("codex", "codex")
    home, work = workdir / "home", workdir / "work"
    (home / ".codex").mkdir(parents=True)
    work.mkdir()
    env, argv = split_line(client_line.codex(str(router.make_url("")).rstrip("/"), model, 32768))
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(home / ".codex"), **env}
    exec_options = ["--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", *LOOPBACK_ONLY]
    process = await asyncio.create_subprocess_exec(
        str(binary),
        "exec",
        *argv[1:],
        *exec_options,
        prompt,
        cwd=work,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 900)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def test_real_codex_prints_llama_servers_own_text_through_openai_chat(aiohttp_server, llama, tmp_path, caplog):  # noqa: F811
    """Codex speaks only the Responses API, llama-server has none: the router translates Codex's
    turn to OpenAI chat and llama-server's chunks back into Responses events."""
    router = await aiohttp_server(codex_router_config(llama.url, "smollm2"))
    code, out, err = await run_codex(router, "smollm2", "Say hello in one short sentence.", tmp_path)
    assert code == 0, f"stdout: {out}\nstderr: {err}"
    assert out.strip(), f"no text from the model\nstderr: {err}"
    decisions = [r.getMessage() for r in caplog.records if r.name == "ghost_router"]
    # the status is not checked: once, of three runs, Codex closed the connection as soon as it had read
    # response.completed, before the router had seen llama-server end its stream (logged as 499)
    assert any("translated openai-responses -> openai-chat" in line for line in decisions), decisions
    print(f"\nCodex printed: {out.strip()!r}")


async def record_llama_chunks(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The chunks llama-server streams for BODY."""
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/v1/chat/completions", json=body) as response:
            assert response.status == 200, await response.text()
            data = (await response.read()).decode()
    return [
        json.loads(line[len("data: ") :])
        for line in data.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


@dataclass
class LlamaChunkKinds:
    """One chunk of each kind llama-server streams, as recorded from the real server: the role
    chunk, a content chunk, a tool call's first fragment and a later one, the finish chunk and the
    usage chunk. A replay fills them with other text and calls."""

    role: dict[str, Any]
    content: dict[str, Any]
    call_head: dict[str, Any]
    call_fragment: dict[str, Any]
    finish: dict[str, Any]
    usage: dict[str, Any]

    @classmethod
    async def record(cls, url: str) -> LlamaChunkKinds:
        tool = {
            "type": "function",
            "function": {
                "name": "exec_command",
                "description": "Runs a shell command",
                "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
            },
        }
        options = {"stream": True, "stream_options": {"include_usage": True}, "temperature": 0}
        said = await record_llama_chunks(
            url, {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, **options}
        )
        # SmolLM2 does not call tools on its own: an assistant turn that begins with one call makes
        # llama-server's tool_choice=required grammar hold the model to a second, streamed call
        prefill = '<tool_call>\n{"name": "exec_command", "arguments": {"cmd": "echo hi"}}\n</tool_call>'
        called = await record_llama_chunks(
            url,
            {
                "messages": [
                    {"role": "user", "content": "Run the shell command: echo hi"},
                    {"role": "assistant", "content": prefill},
                ],
                "tools": [tool],
                "tool_choice": "required",
                "max_tokens": 40,
                **options,
            },
        )

        def first(chunks: list[dict[str, Any]], test: Any) -> dict[str, Any]:
            found = [c for c in chunks if c.get("choices") and test(c["choices"][0])]
            assert found, f"llama-server streamed no such chunk: {json.dumps(chunks)[:2000]}"
            return found[0]

        fragments = [c for c in called if c.get("choices") and c["choices"][0].get("delta", {}).get("tool_calls")]
        assert fragments, f"llama-server made no tool call when one was required: {json.dumps(called)[:2000]}"
        streamed = max(c["choices"][0]["delta"]["tool_calls"][0]["index"] for c in fragments)
        calls = [c for c in fragments if c["choices"][0]["delta"]["tool_calls"][0]["index"] == streamed]
        return cls(
            role=first(said, lambda choice: "role" in choice.get("delta", {})),
            content=first(said, lambda choice: choice.get("delta", {}).get("content")),
            call_head=calls[0],
            call_fragment=calls[-1] if len(calls) > 1 else calls[0],
            finish=first(called, lambda choice: choice.get("finish_reason")),
            usage=next(c for c in said if c.get("usage")),
        )

    def text(self, said: str) -> list[dict[str, Any]]:
        """SAID in the recorded shapes, a few characters a chunk."""
        pieces = [self._with_delta(self.content, content=said[at : at + 4]) for at in range(0, len(said), 4)]
        return [self.role, *pieces, self._finish("stop"), self.usage]

    def call(self, call_id: str, name: str, arguments: str) -> list[dict[str, Any]]:
        """A call of NAME with ARGUMENTS in the recorded shapes: the head (its id, name and, as
        llama-server sends it, the first piece of the arguments), then the rest in fragments."""
        pieces = [arguments[at : at + 5] for at in range(0, len(arguments), 5)] or [""]
        head = copy.deepcopy(self.call_head)
        [fragment] = head["choices"][0]["delta"]["tool_calls"]
        fragment.update(index=0, id=call_id)
        fragment["function"].update(name=name, arguments=pieces[0])
        rest = []
        for piece in pieces[1:]:
            chunk = copy.deepcopy(self.call_fragment)
            [later] = chunk["choices"][0]["delta"]["tool_calls"]
            later["index"] = 0
            later["function"]["arguments"] = piece
            if "id" in later:  # a server that repeats the id and name in every fragment: the same ones
                later["id"] = call_id
            if "name" in later["function"]:
                later["function"]["name"] = name
            rest.append(chunk)
        return [self.role, head, *rest, self._finish("tool_calls"), self.usage]

    def _with_delta(self, chunk: dict[str, Any], **delta: Any) -> dict[str, Any]:
        chunk = copy.deepcopy(chunk)
        chunk["choices"][0]["delta"] = delta
        return chunk

    def _finish(self, reason: str) -> dict[str, Any]:
        chunk = copy.deepcopy(self.finish)
        chunk["choices"][0]["finish_reason"] = reason
        return chunk


class ReplayingChatServer:
    """An OpenAI chat upstream that answers in llama-server's recorded chunk shapes as a model
    playing a coding agent: it calls exec_command for `echo GHOST_TOOL_RAN`, then reports the
    tool's output."""

    def __init__(self, shapes: LlamaChunkKinds) -> None:
        self.shapes = shapes
        self.seen: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.seen.append(body)
        last = body["messages"][-1]
        if last["role"] == "tool":
            chunks = self.shapes.text(f"The command printed: {str(last['content']).strip()}")
        else:
            chunks = self.shapes.call("call_replay1", "exec_command", json.dumps({"cmd": f"echo {MARKER}"}))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in chunks:
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


async def test_real_codex_runs_a_tool_through_an_openai_chat_upstream_in_llama_servers_shapes(
    aiohttp_server,
    llama,  # noqa: F811
    tmp_path,
    caplog,
):
    """Codex's tool turn through `api: openai-chat`: the call streamed in the chunk shapes the real
    llama-server uses (recorded first), Codex runs it and sends the output back by call_id."""
    replay = ReplayingChatServer(await LlamaChunkKinds.record(llama.url))
    app = web.Application()
    app.router.add_post("/v1/chat/completions", replay.handle)
    upstream = await aiohttp_server(app)
    router = await aiohttp_server(codex_router_config(str(upstream.make_url("")).rstrip("/")))
    code, out, err = await run_codex(router, "local-model", f"Run the shell command: echo {MARKER}", tmp_path)
    assert code == 0, f"stdout: {out}\nstderr: {err}"
    assert "The command printed:" in out and MARKER in out, f"stdout: {out}\nstderr: {err}"
    assert len(replay.seen) >= 2
    last = replay.seen[-1]["messages"]
    calls = [c for m in last if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    results = [m for m in last if m["role"] == "tool"]
    assert calls[0]["id"] == "call_replay1" and calls[0]["function"]["name"] == "exec_command"
    assert results[0]["tool_call_id"] == "call_replay1" and MARKER in results[0]["content"]
    decisions = [r.getMessage() for r in caplog.records if r.name == "ghost_router"]
    assert all("status=200" in line for line in decisions), decisions


async def test_real_codex_takes_a_translated_context_overflow_for_its_own(aiohttp_server, tmp_path):
    """llama-server's context-size error from an OpenAI chat upstream reaches Codex with the code
    `context_length_exceeded`, which Codex reads as its context window being full (its compaction
    error), not as a server failure to retry."""

    async def overflow(request: web.Request) -> web.Response:
        return web.json_response(LLAMA_OVERFLOW, status=400)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", overflow)
    upstream = await aiohttp_server(app)
    router = await aiohttp_server(codex_router_config(str(upstream.make_url("")).rstrip("/")))
    code, out, err = await run_codex(router, "local-model", "hello", tmp_path)
    assert code != 0
    assert "ran out of room in the model's context window" in err, err


async def test_real_codex_reads_a_translated_mid_stream_failure(aiohttp_server, tmp_path):
    """An OpenAI chat server's error chunk after the answer began reaches Codex as `response.failed`
    with the server's message: Codex retries it as a server error (5 times), then reports it."""
    tries: list[int] = []

    async def fail_mid_stream(request: web.Request) -> web.StreamResponse:
        tries.append(1)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        delta = {"role": "assistant", "content": "Hel"}
        await response.write(f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': delta}]})}\n\n".encode())
        error = {"error": {"code": 500, "message": "the slot crashed", "type": "server_error"}}
        await response.write(f"data: {json.dumps(error)}\n\n".encode())
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", fail_mid_stream)
    upstream = await aiohttp_server(app)
    router = await aiohttp_server(codex_router_config(str(upstream.make_url("")).rstrip("/")))
    code, out, err = await run_codex(router, "local-model", "hello", tmp_path)
    assert code != 0
    assert "stream disconnected before completion: the slot crashed" in err, err
    assert len(tries) >= 2, "Codex retried it as a server error"


# -- Claude Code and OpenCode with a real llama-server's OpenAI chat API -------------------------


async def test_real_claude_code_prints_a_real_llama_servers_own_text_through_openai_chat(
    aiohttp_server,
    llama,  # noqa: F811
    tmp_path,
    caplog,
):
    """Claude Code's turns cross to llama-server's /v1/chat/completions (`api: openai-chat`) and the
    model's own words come back as Claude Code's answer."""
    binary = client_binary("claude-2.1.332", "claude")
    short = lambda text: text.replace(  # noqa: E731
        "rewrite: {drop_billing_header: true}\n      forward: {upstream: local, priority: user}",
        "rewrite: {drop_billing_header: true, max_tokens: 48}\n      forward: {upstream: local, priority: user}",
    )
    router = await aiohttp_server(
        build_app(default_rules(llama, lambda t: with_api("openai-chat")(short(t))), verbose=True)
    )
    extra = {"CLAUDE_STREAM_IDLE_TIMEOUT_MS": "1800000", "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "32768"}
    code, out, err = await run_claude(binary, str(router.make_url("")).rstrip("/"), tmp_path, extra, timeout=1800)
    assert code == 0, f"stdout: {out}\nstderr: {err}"
    assert out.strip() and "API Error" not in out, out
    turns = [r.getMessage() for r in caplog.records if r.name == "ghost_router" and "rule=main" in r.getMessage()]
    assert turns and all("translated anthropic -> openai-chat" in t and "status=200" in t for t in turns), turns
    print(f"\nClaude Code printed, through OpenAI chat: {out.strip()!r}")


async def test_real_claude_code_completes_a_tool_turn_through_llama_servers_chunk_shapes(
    aiohttp_server,
    llama,  # noqa: F811
    tmp_path,
):
    """llama-server's chunk shapes, recorded here, replayed with the Bash call Claude Code runs: the
    turn completes only if Claude Code ran it and sent its result back under llama-server's call id."""
    binary = client_binary("claude-2.1.332", "claude")
    shapes = await LlamaShapes.record(llama.url)
    replayer = LlamaReplayer(shapes, tool="Bash")
    server = await aiohttp_server(replayer.app())
    config = parse_config(
        with_api("openai-chat")(embedded_rules_text()),
        "default",
        builtin_registry(),
        Overrides(upstream_url=str(server.make_url("")).rstrip("/")),
    )
    router = await aiohttp_server(build_app(config))
    code, out, err = await run_claude(binary, str(router.make_url("")).rstrip("/"), tmp_path, {}, timeout=600)
    assert code == 0, f"stdout: {out}\nstderr: {err}"
    assert f"The command printed: {MARKER}" in out, out
    last = replayer.seen[-1]["messages"]
    results = [m for m in last if m["role"] == "tool"]
    assert results and results[-1]["tool_call_id"] == shapes.call_id and MARKER in json.dumps(results[-1]["content"])


async def test_real_opencode_prints_a_real_llama_servers_own_text(
    router_factory,
    llama,  # noqa: F811
    tmp_path,
    closed_port,
    caplog,
):
    """OpenCode, started from the line `serve` prints: its OpenAI chat turns go to llama-server as
    they are (an API the default rules' upstream lists) and it prints the model's own words."""
    binary = client_binary("opencode", "opencode")
    router = await router_factory(
        llama.url, lambda text: text.replace("fold_system_messages: false", "fold_system_messages: true")
    )
    settings, command = split_line(client_line.opencode(str(router.make_url("")).rstrip("/"), "smollm2", 32768))
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    args = ["run", *command[1:], "Say hello in one short sentence."]
    code, text = await run_opencode(binary, args, work, opencode_env(home, closed_port, settings), 1800)
    assert code == 0, text
    assert text.strip() and "Error" not in text, text
    forwarded = [r.getMessage() for r in caplog.records if r.name == "ghost_router" and "forward:" in r.getMessage()]
    assert forwarded and all("status=200" in line and "translated" not in line for line in forwarded), forwarded
    print(f"\nOpenCode printed: {text.strip()[-300:]!r}")
