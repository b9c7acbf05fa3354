"""The command lines that start each bundled client against the router: built here only, printed by
`serve` and `demo`, quoted in README.md and docs/clients/ (a docs test compares them).

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

Gemini CLI 0.61 (`gemini_cli`), each setting and what it does without it:
- GEMINI_API_KEY=none: its first-run auth dialog then selects "Use Gemini API Key" with the key
  filled in (Enter twice, remembered in ~/.gemini/settings.json); without it, Google sign-in. No
  env or flag skips the dialog; `gemini -p` refuses to start without security.auth.selectedType
  in settings.json ("Invalid auth method selected").
- -m MODEL: without it, its `auto` mode names Gemini models in every turn and asks a classifier
  first (the router answers it).
- Nothing for a long prefill: Gemini CLI gives a request 60 s to send its headers and 300 s
  between body bytes, then retries it, up to 10 times; no env or flag changes that. Only the
  router's early head and keep-alive bytes carry a silent prefill through.
- Nothing for the context: for a model name it does not know it assumes 1,048,576 tokens and
  compresses at half of that, so never in time; model.compressionThreshold (a fraction of those
  tokens) is read from settings.json only.
- The folder-trust dialog is left to the user: --skip-trust would trust any folder it starts in,
  with its hooks, MCP servers and settings.

Codex CLI 0.169.0 (`codex`), each setting and what it does without it:
- -c model_provider=... -c 'model_providers.ghost-router={...}': the router as a provider given on
  the command line, so no config.toml edit; with no env_key it sends no API key and wants none.
  Without them it uses its built-in OpenAI provider.
- stream_idle_timeout_ms (in the provider): Codex drops a stream that brings no SSE event for 300 s
  (the router's keep-alive comments are no events to it) and retries it, up to 5 times, each retry
  a new prefill; a 330 s prefill never completes and `codex exec` exits 1 after about 31 minutes
  ("idle timeout waiting for SSE"). It has no other timeout for a silent server.
- model_context_window: for a model name it does not know, Codex assumes 272,000 tokens (also its
  ceiling for such a model) and compacts at 90% of that, so never in time.
- model_auto_compact_token_limit: Codex compacts at 90% of the window and reserves nothing else
  for the answer; the line keeps the Claude Code line's room for it (an eighth, at most 32,000).

OpenCode 1.18.33 (`opencode`), each setting and what it does without it:
- OPENCODE_CONFIG_CONTENT + --model ghost-router/MODEL: a whole config in the environment, merged
  over the user's config files, declaring the router as an @ai-sdk/openai-compatible provider
  (baseURL URL/v1, no API key) serving MODEL. Without it, an opencode.json to edit.
- headerTimeout, chunkTimeout (provider options): OpenCode aborts a request whose headers take
  300 s, or whose stream brings no byte for 300 s, and retries it up to 5 times (2 to 30 s later),
  each retry a new prefill; a 330 s prefill without the router's keep-alive never completes and
  `opencode run` exits 1 after about 31 minutes ("Provider response headers timed out after
  300000ms"; "SSE read timed out" when the server sent its headers first). The router's
  early head and keep-alive comments alone carry such a prefill through (any byte resets the
  chunk timer); the line's 30 minutes also cover a server that sends its headers before its
  prefill, or `keepalive: 0`.
- limit.context, limit.output (the model's): for a model it does not know (context 0) OpenCode never
  compacts until the server refuses a prompt as too long, and asks for 32,000 output tokens a turn.
  It compacts once a turn's tokens reach context - min(limit.output, 32,000); the line's output
  limit is the Claude Code line's (an eighth of the context).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from shlex import quote

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


CODEX_PROVIDER = "ghost-router"  # the model provider the Codex line defines with -c (no config.toml edit)
CODEX_STREAM_IDLE_TIMEOUT_MS = 1_800_000  # 30 minutes without an SSE event before Codex drops a stream


def codex_auto_compact_limit(context: int) -> int:
    """Tokens Codex lets a conversation reach before it compacts, in the line: the same room for the
    model's answer as the Claude Code line keeps (Codex's own default, 90% of the window, keeps less)."""
    return max(context // 2, context - max_output_tokens(context))


def codex(url: str, model: str, context: int | None) -> str:
    """`codex -c model_provider=ghost-router -c 'model_providers.ghost-router={...}' -m MODEL ...` for
    a router at URL whose default server serves MODEL with CONTEXT tokens (None: unknown, the window
    settings are left out). No config.toml edit, no API key: the provider has no env_key."""
    provider = {
        "name": f'"{CODEX_PROVIDER}"',
        "base_url": json.dumps(url.rstrip("/") + "/v1"),  # a JSON string is a TOML basic string
        "wire_api": '"responses"',
        "stream_idle_timeout_ms": str(CODEX_STREAM_IDLE_TIMEOUT_MS),
    }
    table = "{" + ",".join(f"{key}={value}" for key, value in provider.items()) + "}"
    command = ["codex", "-c", f"model_provider={CODEX_PROVIDER}", "-c", f"model_providers.{CODEX_PROVIDER}={table}"]
    command += ["-m", model]
    if context:
        command += ["-c", f"model_context_window={context}"]
        command += ["-c", f"model_auto_compact_token_limit={codex_auto_compact_limit(context)}"]
    return " ".join(quote(word) for word in command)


def gemini_cli(url: str, model: str, context: int | None) -> str:
    """`GOOGLE_GEMINI_BASE_URL=... GEMINI_API_KEY=none gemini -m MODEL` for a router at URL whose
    default server serves MODEL. CONTEXT has no place in it: Gemini CLI 0.61 takes its compression
    threshold from settings.json only (model.compressionThreshold, a fraction of 1,048,576 tokens)."""
    env = [f"GOOGLE_GEMINI_BASE_URL={quote(url)}", "GEMINI_API_KEY=none"]
    return " ".join(env + ["gemini", "-m", quote(model)])


OPENCODE_PROVIDER = "ghost-router"  # the provider the OpenCode line declares in OPENCODE_CONFIG_CONTENT
OPENCODE_TIMEOUT_MS = 1_800_000  # 30 minutes for response headers and between stream chunks (OpenCode: 300 s)


def opencode_config(url: str, model: str, context: int | None) -> dict[str, object]:
    """The OpenCode config the line passes in OPENCODE_CONFIG_CONTENT: the router as an
    OpenAI-compatible provider serving MODEL, its window declared when CONTEXT is known."""
    declared: dict[str, object] = {}
    if context:
        declared["limit"] = {"context": context, "output": max_output_tokens(context)}
    options = {
        "baseURL": url.rstrip("/") + "/v1",
        "headerTimeout": OPENCODE_TIMEOUT_MS,
        "chunkTimeout": OPENCODE_TIMEOUT_MS,
    }
    provider = {"npm": "@ai-sdk/openai-compatible", "options": options, "models": {model: declared}}
    return {"provider": {OPENCODE_PROVIDER: provider}}


def opencode_compaction_room(context: int) -> int:
    """Tokens OpenCode lets a conversation reach before it compacts, with the line's settings: its
    rule is context - min(limit.output, 32,000) for a model that declares no input limit."""
    return context - max_output_tokens(context)


def opencode(url: str, model: str, context: int | None) -> str:
    """`OPENCODE_CONFIG_CONTENT='{...}' opencode --model ghost-router/MODEL` for a router at URL whose
    default server serves MODEL with CONTEXT tokens (None: unknown, the model's limit is left out).
    No config file edit, no API key: the provider is given whole in the environment."""
    content = json.dumps(opencode_config(url, model, context), separators=(",", ":"))
    return " ".join(
        [f"OPENCODE_CONFIG_CONTENT={quote(content)}", "opencode", "--model", quote(f"{OPENCODE_PROVIDER}/{model}")]
    )


# The other bundled clients' lines, by the plugin that serves them: its label and its line.
PLUGIN_CLIENTS: dict[str, Callable[[str, str, int | None], str]] = {
    "codex": codex,
    "gemini": gemini_cli,
    "opencode": opencode,
}


def plugin_clients(url: str, model: str, context: int | None, plugins: Iterable[str]) -> list[tuple[str, str]]:
    """(plugin, line) for each loaded plugin that serves a client with a line of its own."""
    lines = []
    for name in plugins:
        if name in PLUGIN_CLIENTS:
            line = PLUGIN_CLIENTS[name](url, model, context)
            lines.append((name, line))
    return lines
