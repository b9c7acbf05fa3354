"""The benchmarks still run (tiny settings, loopback only); their numbers are read in docs/performance.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize(
    "script, args, result",
    [
        ("overhead.py", ["--rounds", "2"], "overhead"),
        ("overhead.py", ["--rounds", "1", "--pin", "--baseline", ".", "--name", "overhead_pinned"], "overhead_pinned"),
        ("ghosts.py", ["--requests", "40", "--samples", "3", "--litellm", ""], "ghosts"),
        ("flood.py", ["--rounds", "1", "--prefill", "0.05"], "flood"),
        ("scale.py", ["--rounds", "1"], "scale"),
        ("memory.py", ["--requests", "200"], "memory"),
        ("soak.py", ["--minutes", "0.05", "--concurrency", "4"], "soak"),
        ("idle_cost.py", ["--samples", "6"], "idle_cost"),
        ("translate.py", ["--rounds", "1", "--events", "10"], "translate"),
    ],
)
def test_benchmark_runs(tmp_path, script, args, result):
    results = ROOT / "bench" / "results"
    saved = (results / f"{result}.json").read_text() if (results / f"{result}.json").exists() else None
    try:
        run = subprocess.run(
            [sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True, timeout=300, cwd=ROOT
        )
        assert run.returncode == 0, run.stdout + run.stderr
        data = json.loads((results / f"{result}.json").read_text())
        assert data["command"].startswith(f"python bench/{script}")
    finally:
        if saved is not None:  # keep the full run's numbers that docs/performance.md was made from
            (results / f"{result}.json").write_text(saved)
