"""Recognising a local server's "context window exceeded" error, so the client can compact.

llama-server: `{"error": {"type": "exceed_context_size_error", "message": "request (40021 tokens)
exceeds the available context size (32768 tokens), ...", "n_prompt_tokens": 40021, "n_ctx": 32768}}`
vLLM and OpenAI-style servers: "This model's maximum context length is 4096 tokens. However, you
requested 5000 tokens ...". Ollama (OpenAI API): "... exceeds the context length ...". OpenAI's
Responses API: code `context_length_exceeded`, "Your input exceeds the context window of this model".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_MARKERS = re.compile(
    rb"exceeds? the available context size|exceed_context_size_error|maximum "
    rb"context length|context length exceeded|exceeds the context length|context_length_exceeded",
    re.I,
)
_NUMBERS = [
    re.compile(r"request \((\d+) tokens\) exceeds the available context size \((\d+) tokens\)"),
    re.compile(r"maximum context length is (\d+) tokens\. However, you requested (\d+) tokens"),
]


@dataclass(frozen=True)
class Overflow:
    """A context overflow, with the sizes when the server said them."""

    prompt_tokens: int | None
    context: int | None


def detect(body: bytes) -> Overflow | None:
    """An Overflow if BODY is a context-size error from a known server, else None."""
    if not _MARKERS.search(body):
        return None
    text = body.decode("utf-8", "replace")
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and "n_prompt_tokens" in error:
        return Overflow(_int(error.get("n_prompt_tokens")), _int(error.get("n_ctx")))
    first, second = _NUMBERS
    if match := first.search(text):
        return Overflow(int(match.group(1)), int(match.group(2)))
    if match := second.search(text):
        return Overflow(int(match.group(2)), int(match.group(1)))
    return Overflow(None, None)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) else None
