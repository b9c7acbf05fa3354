#!/usr/bin/env bash
# Runs every benchmark with its default settings, then writes docs/performance.md and its plot.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 bench/overhead.py
python3 bench/translate.py
python3 bench/idle_cost.py
python3 bench/ghosts.py
python3 bench/flood.py
python3 bench/scale.py
python3 bench/memory.py
python3 bench/soak.py
python3 bench/token_estimate.py > bench/results/token_estimate.txt
python3 bench/llama_work.py
python3 bench/prefix_cache.py
python3 bench/report.py
