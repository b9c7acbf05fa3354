"""Token estimates without a tokenizer: fast, deterministic, close to BPE counts on code and prose.

Calibrated against a real byte-level BPE tokenizer (SmolLM2's) on recorded Claude Code, OpenCode
and Codex request bodies: median error under 1%, worst 12.4% (`python bench/token_estimate.py`).
"""

from __future__ import annotations

import re

# Letter runs, single digits, newline runs, symbol runs, and underscores/tabs. Single spaces are
# not counted: BPE vocabularies merge a space into the word that follows it.
_PIECE = re.compile(r"[^\W\d_]+|\d|\n+|[^\w\s]+|[_\t]")


def estimate_tokens(text: str) -> int:
    """Estimate how many tokens a byte-level BPE tokenizer makes of TEXT."""
    tokens = 0
    for piece in _PIECE.findall(text):
        first = piece[0]
        if first.isalpha():
            if not piece.isascii():
                tokens += len(piece)  # other scripts take about a token a character: better high than low
            elif len(piece) <= 7:
                tokens += 1  # common words are one token
            else:
                tokens += 1 + (len(piece) - 4) // 6  # long identifiers split into a few
        elif first in "\n_\t" or first.isdigit():
            tokens += 1
        else:
            tokens += (len(piece) + 1) // 2  # JSON punctuation like `":"` or `"},{"` merges in pairs
    return tokens


def quick_estimate(byte_count: int) -> int:
    """A constant-time rough count from a body's size, for usage figures on fake replies."""
    return max(1, byte_count // 4)
