"""Token estimates without a tokenizer: fast, deterministic, close to BPE counts on code and prose.

Calibrated against a real byte-level BPE tokenizer (SmolLM2's) on recorded Claude Code, OpenCode
and Codex request bodies: median error under 1%, worst 12.4% (`python bench/token_estimate.py`).
"""

from __future__ import annotations

import re
from collections import Counter

# Letter runs, single digits, newline runs, symbol runs, and underscores/tabs. Single spaces are
# not counted: BPE vocabularies merge a space into the word that follows it.
_PIECE = re.compile(r"[^\W\d_]+|\d|\n+|[^\w\s]+|[_\t]")


SAMPLE_ABOVE = 256 * 1024  # characters; longer texts are estimated from evenly spaced slices
SAMPLE_SLICES, SAMPLE_SLICE = 64, 2048


def estimate_tokens(text: str) -> int:
    """Estimate how many tokens a byte-level BPE tokenizer makes of TEXT.

    Texts over SAMPLE_ABOVE characters (bodies with images or pasted logs) are estimated from 64
    evenly spaced 2 KiB slices, so a 2 MB body costs what a 128 KiB one does and never stalls
    the event loop that is streaming other answers."""
    if len(text) <= SAMPLE_ABOVE:
        return _count(text)
    step = len(text) // SAMPLE_SLICES
    sample = [text[i * step : i * step + SAMPLE_SLICE] for i in range(SAMPLE_SLICES)]
    return round(_count(" ".join(sample)) * len(text) / (SAMPLE_SLICES * (SAMPLE_SLICE + 1)))


def _count(text: str) -> int:
    # Counting identical pieces first (in C) means the cost rule runs once per distinct piece.
    return sum(_piece_tokens(piece) * count for piece, count in Counter(_PIECE.findall(text)).items())


def _piece_tokens(piece: str) -> int:
    first = piece[0]
    if first.isalpha():
        if not piece.isascii():
            return len(piece)  # other scripts take about a token a character: better high than low
        if len(piece) <= 7:
            return 1  # common words are one token
        return 1 + (len(piece) - 4) // 6  # long identifiers split into a few
    if first in "\n_\t" or first.isdigit():
        return 1
    return (len(piece) + 1) // 2  # JSON punctuation like `":"` or `"},{"` merges in pairs


def quick_estimate(byte_count: int) -> int:
    """A constant-time rough count from a body's size, for usage figures on fake replies."""
    return max(1, byte_count // 4)
