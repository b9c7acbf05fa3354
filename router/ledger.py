"""The savings ledger: what the router spared the servers, for /_router/status, /metrics, `top` and
the line `serve` prints when it stops.

- Ghosts: model turns answered here (fakes), and their prompts' tokens, estimated: the prefill a
  server would have done for them (an upper bound: part of a ghost's prompt might have been in a
  server's cache).
- Prompt tokens a server found in its cache thanks to the router, measured by the server: the first
  turn after a warm restart (its prompt's size less the tokens llama-server's /metrics say it
  processed; without --metrics, the tokens restored, an upper bound).
- Time: those tokens at the prefill rate the servers showed (tokens processed over the time they
  took, measured while requests were in prefill); unknown until a prefill was measured.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.tokens import quick_estimate

MIN_MEASURED_TOKENS = 256  # a prefill rate from fewer tokens says little


@dataclass
class Ledger:
    """Counters of what was saved."""

    ghost_turns: int = 0
    ghost_prompt_tokens: int = 0

    def ghost(self, body_bytes: int) -> None:
        """A model turn of BODY_BYTES was answered here."""
        self.ghost_turns += 1
        self.ghost_prompt_tokens += quick_estimate(body_bytes)

    def summary(
        self, restored_tokens: int, prefill_tokens: int, prefill_seconds: float
    ) -> dict[str, float | int | None]:
        """The ledger with RESTORED_TOKENS (from the upstreams' warm restarts) and the time saved at
        the rate of PREFILL_TOKENS in PREFILL_SECONDS (what the servers were seen processing)."""
        rate = prefill_tokens / prefill_seconds if prefill_tokens >= MIN_MEASURED_TOKENS and prefill_seconds else None
        tokens = self.ghost_prompt_tokens + restored_tokens
        return {
            "ghost_turns": self.ghost_turns,
            "ghost_prompt_tokens": self.ghost_prompt_tokens,
            "restored_prompt_tokens": restored_tokens,
            "prompt_tokens_saved": tokens,
            "prefill_tokens_per_second": None if rate is None else round(rate, 1),
            "seconds_saved": None if rate is None else round(tokens / rate, 1),
        }


def describe(summary: dict[str, float | int | None]) -> str:
    """The ledger in one line of words."""
    seconds = summary["seconds_saved"]
    time_saved = (
        f", about {_duration(float(seconds))} of prefill at {summary['prefill_tokens_per_second']} tokens/s"
        if seconds is not None
        else ""
    )
    turns = summary["ghost_turns"]
    return (
        f"{turns} ghost turn{'' if turns == 1 else 's'} answered here (~{summary['ghost_prompt_tokens']:,} prompt "
        "tokens), "
        f"{summary['restored_prompt_tokens']:,} prompt tokens restored from saved slots{time_saved}"
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
