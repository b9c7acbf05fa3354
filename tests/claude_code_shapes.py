"""Request bodies and headers shaped like Claude Code's (2.1.197 to 2.1.331), written for the tests.

Shapes follow the measured traffic described in the spec: the billing-header system block, the
role:"system" environment message, 12 tools with one `defer_loading`, the title and classifier
prompts, count_tokens bodies, subagent headers and older Haiku housekeeping calls.
"""

from __future__ import annotations

import secrets
from typing import Any

TITLE_331 = (
    "You are naming a coding session so the user can pick it out of a long list of sessions. The title "
    'is a name for what the session is about, not a sentence describing the task.\n\nReturn JSON with a single "title" field.'
)
TITLE_197 = (
    "Generate a concise, sentence-case title (3-7 words) that captures the main topic or goal of this coding session."
)
CLASSIFIER = (
    "You are a security monitor for autonomous AI coding agents.\n\n## Context\n\nThe agent you are monitoring ..."
    + "rule " * 2000
)
JSON_TITLE_FORMAT = {
    "effort": "high",
    "format": {
        "type": "json_schema",
        "schema": {
            "type": "object",
            "properties": {"title": {"type": "string"}},
            "required": ["title"],
            "additionalProperties": False,
        },
    },
}
TOOL_NAMES = [
    "Agent",
    "Bash",
    "Edit",
    "ListAgents",
    "Read",
    "ReportFindings",
    "ScheduleWakeup",
    "Skill",
    "ToolSearch",
    "Workflow",
    "DeferredToolPlaceholder",
    "Write",
]


def headers(version: str = "2.1.331", agent_id: str | None = None) -> dict[str, str]:
    """Claude Code's request headers (the SDK adds the x-stainless ones itself)."""
    result = {
        "User-Agent": f"claude-cli/{version} (external, cli)",
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
        "x-app": "cli",
        "X-Claude-Code-Session-Id": "d0112e25-4e5c-4420-bd4d-2569c1c5af78",
    }
    if agent_id:
        result["x-claude-code-agent-id"] = agent_id
    return result


def billing_block(version: str = "2.1.331", subagent: bool = False) -> dict[str, str]:
    """The volatile first system block: a different 3-hex suffix per conversation and request kind."""
    extra = " cc_is_subagent=true;" if subagent else ""
    return {
        "type": "text",
        "text": f"x-anthropic-billing-header: cc_version={version}.{secrets.token_hex(2)[:3]}; cc_entrypoint=cli;{extra}",
    }


def tools(count: int = 12) -> list[dict[str, Any]]:
    """Tool definitions; the placeholder tool carries `defer_loading` as 2.1.331 sends it."""
    result = []
    for name in TOOL_NAMES[:count]:
        tool: dict[str, Any] = {
            "name": name,
            "description": f"{name} tool. " + "Use it carefully and report what happened. " * 20,
            "input_schema": {
                "type": "object",
                "properties": {"command": {"type": "string", "description": "what to run"}},
                "required": ["command"],
            },
        }
        if name == "DeferredToolPlaceholder":
            tool["defer_loading"] = True
        result.append(tool)
    return result


def main_turn(prompt: str, version: str = "2.1.331", subagent: bool = False, stream: bool = True) -> dict[str, Any]:
    """A main (or subagent) turn: 47-55 KB in the real client, with the environment as a system message."""
    return {
        "model": "local-model",
        "max_tokens": 32000,
        "stream": stream,
        "system": [
            billing_block(version, subagent),
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {"type": "text", "text": "You are an agent working with the user toward their goals. " * 200},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>\nAttribution for git commits ...\n</system-reminder>"},
                    {"type": "text", "text": prompt},
                ],
            },
            {
                "role": "system",
                "content": "# Environment\nYou have been invoked in the following environment:\n - Primary working directory: /work\n - Date: 2026-11-24",
            },
        ],
        "tools": tools(10 if subagent else 12),
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": '{"device_id":"test"}'},
    }


def title_request(prompt: str, version: str = "2.1.331") -> dict[str, Any]:
    """The session-title call: streamed, no tools, JSON output format."""
    instructions = TITLE_331 if version == "2.1.331" else TITLE_197
    return {
        "model": "local-model",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            billing_block(version),
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {"type": "text", "text": instructions},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": f"<session>\n{prompt}\n</session>\n\nWrite the title in the predominant language of the session.",
                    }
                ],
            }
        ],
        "tools": [],
        "output_config": JSON_TITLE_FORMAT,
    }


def count_tokens_request(index: int) -> dict[str, Any]:
    """One of /context's count_tokens preflights: model, one user message, maybe one tool; no system."""
    body: dict[str, Any] = {
        "model": "local-model",
        "messages": [{"role": "user", "content": f"context item {index} " * (index + 1)}],
    }
    if index % 2:
        body["tools"] = tools(12)[index % 12 : index % 12 + 1]
    return body


def classifier_request(command: str) -> dict[str, Any]:
    """The auto-mode safety classifier: hard-coded model, non-streaming, max_tokens 64."""
    return {
        "model": "claude-sonnet-5",
        "max_tokens": 64,
        "system": [billing_block(), {"type": "text", "text": CLASSIFIER}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<transcript>\n"},
                    {"type": "text", "text": f'{{"Bash":"{command}"}}\n'},
                    {"type": "text", "text": "</transcript>\n"},
                ],
            }
        ],
        "stop_sequences": ["</block>"],
        "thinking": {"type": "disabled"},
    }


def haiku_request(system: str, user: str, max_tokens: int = 512) -> dict[str, Any]:
    """An older version's Haiku housekeeping call."""
    return {
        "model": "claude-haiku-4-5-20251001",
        "max_tokens": max_tokens,
        "system": [{"type": "text", "text": system}],
        "messages": [{"role": "user", "content": user}],
    }
