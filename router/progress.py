"""A forward's progress in words, for the log and `ghost-router top`: its place in the queue, and
its prompt's progress at the server (router.upstream.slots). Pure: no I/O, no router imports."""

from __future__ import annotations

from typing import Any


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 21st..."""
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def prefill(progress: dict[str, Any]) -> str:
    """A prefill progress document (router.upstream.slots.Prefill.status) in words:
    `6,144 of ~10,240 prompt tokens (60%), 102 tokens/s, ~40 s left`; `~` marks estimates."""
    done = progress["cached"] + progress["processed"]
    total = progress["prompt_tokens_estimate"]
    text = f"{done:,} of ~{total:,} prompt tokens ({100 * done // max(total, 1)}%)"
    if progress["cached"]:
        text += f", {progress['cached']:,} from cache"
    if progress["phase"] == "generating":
        text += f", generating ({progress['generated']:,} tokens so far)"
    else:
        if progress["rate"] is not None:
            text += f", {progress['rate']:,.0f} tokens/s"
        if progress["eta_s_estimate"] is not None:
            text += f", ~{progress['eta_s_estimate']:,.0f} s left"
    return text + (" (slot paired by order: a guess)" if progress["guess"] else "")


def state(item: dict[str, Any]) -> str:
    """What an in-flight request (an entry of /_router/status `in_flight`) is doing, in words."""
    kind = item.get("state", "-")
    if kind == "queued":
        return f"queued, {ordinal(item['place'])} of {item['in_line']} in line"
    if kind == "waiting":
        return f"prefill: {prefill(item['progress'])}" if item.get("progress") else "waiting for the server"
    return str(kind)
