"""The command line that starts Claude Code against the router: built here only, printed by `serve`
and `demo`, quoted in README.md and docs/clients/claude-code.md (a docs test compares them).

Each setting, and what Claude Code 2.1.332 does without it (docs/clients/claude-code.md has the
measurements):
- CLAUDE_STREAM_IDLE_TIMEOUT_MS: Claude Code aborts a stream that brings no event for 300 s plus
  at most 30 of the router's pings, then retries it; a first prefill on a big model takes longer.
- CLAUDE_CODE_MAX_CONTEXT_TOKENS: for a model name it does not know, Claude Code plans for
  1,000,000 tokens and never compacts in time.
- CLAUDE_CODE_MAX_OUTPUT_TOKENS: Claude Code keeps min(max output, 20,000) + 13,000 tokens free
  for its compaction summary; with its default 32,000 that is 33,000 tokens, more than a 32k
  server has, so it compacts before every turn. An eighth of the context leaves room to work.
- --permission-mode default: the default rules block the auto-mode safety classifier (it would
  run on the local model), so in auto mode every tool call would be refused.
"""

from __future__ import annotations

STREAM_IDLE_TIMEOUT_MS = 1_800_000  # 30 minutes without an event before Claude Code gives up on a stream
MAX_OUTPUT_SHARE = 8  # the output limit is the context divided by this
MAX_OUTPUT_CEILING = 32_000  # Claude Code's own default output limit for a model it does not know


def max_output_tokens(context: int) -> int:
    """The output limit that leaves a CONTEXT-token window room for conversation before compaction."""
    return max(1024, min(context // MAX_OUTPUT_SHARE, MAX_OUTPUT_CEILING))


def claude_code(url: str, model: str, context: int | None, classifier_blocked: bool = True) -> str:
    """`ANTHROPIC_BASE_URL=... claude --model MODEL ...` for a router at URL whose default server
    serves MODEL with CONTEXT tokens (None: unknown, the window settings are left out)."""
    env = [f"ANTHROPIC_BASE_URL={url}", "ANTHROPIC_API_KEY=none"]
    if context:
        env += [
            f"CLAUDE_CODE_MAX_CONTEXT_TOKENS={context}",
            f"CLAUDE_CODE_MAX_OUTPUT_TOKENS={max_output_tokens(context)}",
        ]
    env.append(f"CLAUDE_STREAM_IDLE_TIMEOUT_MS={STREAM_IDLE_TIMEOUT_MS}")
    command = ["claude", "--model", model]
    if classifier_blocked:
        command += ["--permission-mode", "default"]
    return " ".join(env + command)


def compaction_room(context: int) -> int:
    """Tokens Claude Code lets a conversation reach before it compacts, with the line's settings."""
    return context - min(max_output_tokens(context), 20_000) - 13_000
