"""Shell-style globs, checked when the rules load so a typo fails loudly instead of never matching."""

from __future__ import annotations

import fnmatch
import re


def compile_glob(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    """A compiled glob (`*`, `?`, `[abc]`); raises ValueError on an empty or unbalanced pattern."""
    if not pattern:
        raise ValueError("empty glob; use '*' to match anything")
    depth_open = None
    for index, char in enumerate(pattern):
        if char == "[" and depth_open is None:
            depth_open = index
        elif char == "]" and depth_open is not None and index > depth_open + 1:
            depth_open = None
    if depth_open is not None:
        raise ValueError(
            f"bad glob {pattern!r}: '[' at position {depth_open} is never closed (write [[] for a literal '[')"
        )
    return re.compile(fnmatch.translate(pattern), re.IGNORECASE if ignore_case else 0)


def compile_globs(patterns: list[str], ignore_case: bool = False) -> re.Pattern[str]:
    """One compiled pattern matching any of PATTERNS (globs, each checked as by compile_glob):
    a test runs one match, not one per glob."""
    compiled = [compile_glob(pattern, ignore_case) for pattern in patterns]
    if len(compiled) == 1:
        return compiled[0]
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), re.IGNORECASE if ignore_case else 0)


def compile_regex(pattern: str) -> re.Pattern[str]:
    """A compiled regular expression; raises ValueError naming the problem."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"bad regular expression {pattern!r}: {exc}") from None
