"""The router's own work on one Claude Code turn, back to back and after the process sat idle.

    python bench/idle_cost.py [--samples 300]

Times, in this one process and without sockets, what ghost-router does to a 50 KB Claude Code
shaped turn before it forwards it, with the calls app.handle and the forward action make: parse
(new_request, then parse_request: the JSON body parsed and the Anthropic adapter's matcher view
built), match (config.table.match on the default rules with the bundled plugins' rules), edit
(Edits(request).apply with the rule's rewrite, then with the upstream's own edits) and write back
(Edits.encode: the rewritten body serialized). Each request is timed
back to back with the previous one, then after sleeping 2 ms, then after sleeping 50 ms: nothing
else runs in between, so a difference is what an idle CPU costs the same work when it resumes,
which is what every request meets in bench/overhead.py (the router sits idle for seconds between
its requests there, as it does between a user's turns). Writes bench/results/idle_cost.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from multidict import CIMultiDict, CIMultiDictProxy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import claude_code_body, summary, write_result  # noqa: E402
from router.config import Overrides, load_config  # noqa: E402
from router.edits import Edits  # noqa: E402
from router.plugins import load_plugins  # noqa: E402
from router.protocols.base import new_request, parse_request  # noqa: E402

STAGES = ("parse", "match", "edit", "write back", "all")
PAUSES = {"back to back": 0.0, "after 2 ms idle": 0.002, "after 50 ms idle": 0.05}
HEADERS = CIMultiDictProxy(
    CIMultiDict(
        {
            "Content-Type": "application/json",
            "User-Agent": "claude-cli/2.1.331 (external, cli)",
            "anthropic-version": "2023-06-01",
            "x-api-key": "sk-not-a-key",
            "x-stainless-lang": "js",
        }
    )
)


def one_request(registry, config, raw: bytes) -> list[float]:  # noqa: ANN001
    """Seconds per stage (and in all) for one request, as app.handle and the forward action run them."""
    protocol, kind = registry.protocol_for("POST", "/v1/messages")
    started = time.perf_counter()
    request = parse_request(new_request("POST", "/v1/messages", "", "/v1/messages", HEADERS, raw, protocol, kind))
    parsed = time.perf_counter()
    rule = config.table.match(request)
    matched = time.perf_counter()
    edits = Edits(request)
    forward = None
    for name, action in rule.actions:
        if name == "rewrite":
            for header, value in action.headers:
                edits.set_header(header, value)
            edits.apply(action.edits)
        elif name == "forward":
            forward = action
    assert forward is not None, f"rule {rule.name} does not forward"
    edits.apply(config.upstreams[forward.upstream].edits)
    edited = time.perf_counter()
    body = edits.encode()
    written = time.perf_counter()
    assert edits.changed and body != raw
    return [parsed - started, matched - parsed, edited - matched, written - edited, written - started]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=300, help="requests timed per pause (a third of it after 50 ms)")
    args = parser.parse_args()
    plugins = load_plugins()
    registry, plugin_rules = plugins.registry()
    config = load_config(None, registry, Overrides(), plugin_rules)
    raw = json.dumps(claude_code_body(50_000, True)).encode()
    for _ in range(200):  # warm up: imports, caches, the interpreter's specializations
        one_request(registry, config, raw)
    report: dict = {
        "body_bytes": len(raw),
        "rules": len(config.table.rules),
        "command": f"python bench/idle_cost.py --samples {args.samples}",
    }
    print(f"{len(raw):,}-byte Claude Code turn, {len(config.table.rules)} rules (us: median [p10-p90])")
    print(f"{'':18}" + "".join(f"{stage:>24}" for stage in STAGES))
    for label, pause in PAUSES.items():
        samples: list[list[float]] = []
        for _ in range(max(1, args.samples // 3) if pause >= 0.05 else args.samples):
            if pause:
                time.sleep(pause)
            samples.append(one_request(registry, config, raw))
        stats = {
            stage: {k: v * 1000 for k, v in summary([s[i] for s in samples]).items()} for i, stage in enumerate(STAGES)
        }
        report[label] = stats
        print(f"{label:18}" + "".join(f"{s['median']:8.1f} [{s['p10']:5.1f}-{s['p90']:6.1f}]" for s in stats.values()))
    base = report["back to back"]["all"]["median"]
    report["ratios"] = {label: report[label]["all"]["median"] / base for label in PAUSES}
    print(
        "all stages, against back to back: "
        + ", ".join(f"{label} {ratio:.2f}x" for label, ratio in report["ratios"].items())
    )
    write_result("idle_cost", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
