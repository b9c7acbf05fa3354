"""`rewrite: {environment_first, project_context_last}` reorders Claude Code's volatile prompt text
through real sockets: exactly the volatile parts move, every character of text stays, requests
without those parts go through byte for byte, and odd shapes never cause a 500."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from router.edits import BodyEdits, Edits
from router.protocols.anthropic import AnthropicMessages
from router.protocols.base import new_request, parse_request

RULES = """
upstreams:
  local: {{url: "{upstream}"}}
rules:
  - name: main
    match: {{}}
    action:
      rewrite: {{drop_billing_header: true, {options}}}
      forward: {{}}
"""
BOTH = "environment_first: true, project_context_last: true"

INTRO = "You are a Claude agent, built on Anthropic's Claude Agent SDK."
MEMORY_BODY = (
    "You have a persistent file-based memory at `/home/dev/.claude/projects/-src-{project}/memory/`. "
    "Each memory is one file.\n\n```markdown\n---\nname: <slug>\n---\n```\n\nCheck for an existing file first.\n\n"
)
PROMPT_HEAD = (
    "\nYou are an agent working with the user toward their goals.\n\n# Harness\n - Tools run behind a mode.\n\n"
)
PROMPT_TAIL = "# Environment\n - The most recent Claude models are the Claude 5 family.\n\n# Context management\nAct."
ENV_HEAD = (
    "# Environment\nYou have been invoked in the following environment: \n"
    " - Primary working directory: /src/{project}\n - Is a git repository: true\n - Platform: linux\n\n"
)
ENV_REST = (
    "You are powered by the model local-model.\n\nThe following deferred tools are now available via ToolSearch:\n"
    "CronCreate\nWebFetch\n\nAvailable agent types for the Agent tool:\n- Explore: read-only search agent\n\n"
)
DATE = "Today's date is {date}."


def memory(project: str) -> str:
    return "# Memory\n\n" + MEMORY_BODY.format(project=project)


def environment(project: str, date: str) -> str:
    return ENV_HEAD.format(project=project) + ENV_REST + DATE.format(date=date)


def first_turn(words: str, project: str = "alpha", date: str = "2026-12-02") -> dict[str, Any]:
    """A first turn laid out as Claude Code 2.1.332 lays it out (texts shortened)."""
    reminder = "<system-reminder>\nContents of /src/{p}/CLAUDE.md:\n\nUse tabs.\n</system-reminder>\n"
    return {
        "model": "local-model",
        "max_tokens": 32000,
        "stream": False,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332.4a6; cc_entrypoint=sdk-cli;"},
            {"type": "text", "text": INTRO, "cache_control": {"type": "ephemeral"}},
            {
                "type": "text",
                "text": PROMPT_HEAD + memory(project) + PROMPT_TAIL,
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": reminder.format(p=project)},
                    {
                        "type": "text",
                        "text": "<system-reminder>\n# gitStatus\nCurrent branch: main\n</system-reminder>\n",
                    },
                    {"type": "text", "text": words},
                ],
            },
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": environment(project, date), "cache_control": {"type": "ephemeral"}}
                ],
            },
        ],
        "tools": [{"name": "Bash", "description": "Run a command", "input_schema": {"type": "object"}}],
        "metadata": {"user_id": '{"session_id":"d0112e25"}'},
    }


def second_turn(first: dict[str, Any], answer: str, words: str) -> dict[str, Any]:
    """Turn 2 as Claude Code sends it: the environment message's content is now a plain string."""
    body = copy.deepcopy(first)
    body["messages"][1]["content"] = body["messages"][1]["content"][0]["text"]
    body["messages"] += [
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        {"role": "user", "content": [{"type": "text", "text": words}]},
    ]
    return body


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))


def rendered(body: dict[str, Any]) -> str:
    """The prompt in the order a chat template lays it out: system text, tools, then each message."""
    parts = [text_of(body.get("system") or ""), json.dumps(body.get("tools"))]
    parts += [f"<{m['role']}>" + text_of(m["content"]) for m in body["messages"]]
    return "\n".join(parts)


def shared(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


async def forwarded(make_router, upstream, http, bodies: list[dict[str, Any]], options: str = BOTH) -> list[Any]:
    client = await http(await make_router(RULES, options=options))
    for body in bodies:
        response = await client.post("/v1/messages", json=body)
        assert response.status == 200, await response.text()
    return upstream.seen[-len(bodies) :]


async def test_both_options_move_exactly_the_volatile_parts(make_router, upstream, http):
    body = first_turn("list the files here")
    (seen,) = await forwarded(make_router, upstream, http, [body])
    sent = seen.body
    assert sent["system"] == [
        {"type": "text", "text": INTRO, "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": PROMPT_HEAD + PROMPT_TAIL, "cache_control": {"type": "ephemeral"}},
    ], "only the # Memory section left the system prompt"
    assert [m["role"] for m in sent["messages"]] == ["system", "system", "user"]
    environment_rest, project, user = sent["messages"]
    assert environment_rest == {
        "role": "system",
        "content": [{"type": "text", "text": ENV_REST, "cache_control": {"type": "ephemeral"}}],
    }
    assert project == {
        "role": "system",
        "content": memory("alpha") + ENV_HEAD.format(project="alpha") + DATE.format(date="2026-12-02"),
    }
    assert user == body["messages"][0], "the user's message itself is untouched"
    for field in ("tools", "metadata", "max_tokens", "model"):
        assert sent[field] == body[field]


async def test_every_character_of_text_stays(make_router, upstream, http):
    body = first_turn("list the files here")
    (seen,) = await forwarded(make_router, upstream, http, [body])
    sent = seen.body
    original = PROMPT_HEAD + memory("alpha") + PROMPT_TAIL
    kept_system = sent["system"][1]["text"]
    moved = sent["messages"][1]["content"]
    memory_text = moved[: moved.index("# Environment\n")]
    assert kept_system.replace(PROMPT_TAIL, memory_text + PROMPT_TAIL) == original
    env_text = text_of(sent["messages"][0]["content"])
    head_and_date = moved[len(memory_text) :]
    head, date = head_and_date[: head_and_date.index("Today's")], head_and_date[head_and_date.index("Today's") :]
    assert head + env_text + date == environment("alpha", "2026-12-02")
    before = sorted(text_of(body["system"][1:]) + "".join(text_of(m["content"]) for m in body["messages"]))
    after = sorted(text_of(sent["system"]) + "".join(text_of(m["content"]) for m in sent["messages"]))
    assert before == after, "the same characters, only in another order"


async def test_a_new_conversation_shares_everything_but_what_changed(make_router, upstream, http):
    a1 = first_turn("list the files here")
    a2 = first_turn("what does main.py print?")
    b1 = first_turn("list the files here", project="beta")
    tomorrow = first_turn("list the files here", date="2026-12-03")
    seen = await forwarded(make_router, upstream, http, [a1, a2, b1, tomorrow])
    base, same_project, other_project, next_day = (rendered(s.body) for s in seen)
    assert shared(base, same_project).endswith("Current branch: main\n</system-reminder>\n"), "up to the user's words"
    assert shared(base, other_project).endswith("file-based memory at `/home/dev/.claude/projects/-src-")
    assert shared(base, other_project).count("You are powered by the model local-model.") == 1, "after the environment"
    assert shared(base, next_day).endswith("Today's date is 2026-12-0"), (
        "the date is the last thing before the user's turn"
    )
    # without the options the environment came after the user's words and the memory path early on
    plain = [rendered(b | {"system": b["system"][1:]}) for b in (a1, a2, b1)]
    assert len(shared(plain[0], plain[1])) < len(shared(base, same_project)) - len(ENV_REST)
    assert "# Context management" not in shared(plain[0], plain[2]), "the memory path cut the prefix short"


async def test_later_turns_keep_the_first_turns_prefix(make_router, upstream, http):
    turn1 = first_turn("list the files here")
    turn2 = second_turn(turn1, "main.py and CLAUDE.md.", "and the hidden ones?")
    first, second = await forwarded(make_router, upstream, http, [turn1, turn2])
    assert rendered(second.body).startswith(rendered(first.body)), "turn 2 extends turn 1's prompt"
    assert [m["role"] for m in second.body["messages"]] == ["system", "system", "user", "assistant", "user"]


@pytest.mark.parametrize(
    "options, roles",
    [("environment_first: true", ["system", "user"]), ("project_context_last: true", ["system", "user", "system"])],
)
async def test_each_option_alone(make_router, upstream, http, options, roles):
    body = first_turn("list the files here")
    (seen,) = await forwarded(make_router, upstream, http, [body], options)
    sent = seen.body
    assert [m["role"] for m in sent["messages"]] == roles
    if options.startswith("environment_first"):
        assert sent["system"] == body["system"][1:], "the system prompt is left alone"
        assert sent["messages"] == [body["messages"][1], body["messages"][0]]
    else:
        assert sent["system"][1]["text"] == PROMPT_HEAD + PROMPT_TAIL
        assert sent["messages"][1] == body["messages"][0]
        assert text_of(sent["messages"][2]["content"]) == ENV_REST


async def test_folding_after_reordering_keeps_the_order(make_router, upstream, http):
    rules = RULES.replace("{options}}}", "{options}, fold_system_messages: true}}")
    client = await http(await make_router(rules, options=BOTH))
    response = await client.post("/v1/messages", json=first_turn("list the files here"))
    assert response.status == 200
    sent = upstream.seen[-1].body
    assert [m["role"] for m in sent["messages"]] == ["user"]
    texts = [b["text"] for b in sent["messages"][0]["content"]]
    assert texts[0] == ENV_REST and texts[1].startswith("# Memory\n") and texts[-1] == "list the files here"


UNTOUCHED = [
    {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hello"}]},
    {"model": "m", "max_tokens": 8, "system": "You are terse.", "messages": [{"role": "user", "content": "hi"}]},
    {
        "model": "m",
        "max_tokens": 8,
        "system": [{"type": "text", "text": "You are naming a coding session."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "<session>\nfix it\n</session>"}]}],
    },
    {
        "model": "m",
        "max_tokens": 8,
        "system": [{"type": "text", "text": "Rules.\n\n# Notes\nnone"}],
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"},
            {"role": "system", "content": "# Environment\nlate, after an answer: not Claude Code's layout"},
        ],
    },
]


@pytest.mark.parametrize("body", UNTOUCHED, ids=["no-system", "system-string", "title", "late-system"])
async def test_requests_without_those_parts_go_through_byte_for_byte(make_router, upstream, http, body):
    rules = RULES.replace("drop_billing_header: true, ", "")
    client = await http(await make_router(rules, options=BOTH))
    raw = json.dumps(body, indent=1).encode()
    response = await client.post("/v1/messages", data=raw, headers={"content-type": "application/json"})
    assert response.status == 200
    assert upstream.seen[-1].raw == raw


HOSTILE = [
    {"system": "# Memory\nat /home/x/memory\n# Other\nkept", "messages": [{"role": "user", "content": "hi"}]},
    {"system": "# Memory\nonly memory", "messages": [{"role": "user", "content": "hi"}]},
    {"system": [{"type": "image"}, "text", {"type": "text", "text": 5}, {"type": "text", "text": "\n# Memory\nm"}]},
    {"system": [], "messages": [{"role": "system", "content": "# Environment\nx"}]},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": []}]},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": [{"type": "image"}, 7]}]},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": "# Environment\nno blank line"}]},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": "Today's date is"}]},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": [{"type": "text"}]}]},
    {"messages": [{"role": "assistant", "content": "a"}, {"role": "system", "content": "# Environment\n\nx"}]},
    {"messages": []},
    {"system": 12, "messages": [{"role": "user", "content": "hi"}]},
    {"messages": [{"role": "user", "content": "hi"}, "not a message"]},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": {"text": "odd"}}]},
    {"messages": {"role": "user"}},
]


@pytest.mark.parametrize("shape", HOSTILE, ids=[f"hostile-{i}" for i in range(len(HOSTILE))])
async def test_odd_shapes_never_cause_a_500(make_router, upstream, http, shape):
    client = await http(await make_router(RULES, options=BOTH))
    body = {"model": "m", "max_tokens": 8, **shape}
    if "messages" not in body:
        body["messages"] = [{"role": "user", "content": "hi"}]
    response = await client.post("/v1/messages", json=body)
    assert response.status in (200, 400), await response.text()
    if response.status == 200:
        sent = upstream.seen[-1].body
        before = sorted(text_of(body.get("system") or "") + "".join(text_of(m["content"]) for m in body["messages"]))
        after = sorted(text_of(sent.get("system") or "") + "".join(text_of(m["content"]) for m in sent["messages"]))
        assert before == after


def test_the_moved_size_is_there_for_a_savings_ledger():
    body = first_turn("list the files here")
    raw = json.dumps(body).encode()
    headers = CIMultiDictProxy(CIMultiDict({"content-type": "application/json"}))
    request = parse_request(
        new_request("POST", "/v1/messages", "", "/v1/messages", headers, raw, AnthropicMessages(), "messages")
    )
    edits = Edits(request)
    edits.apply(BodyEdits(environment_first=True, project_context_last=True))
    moved = memory("alpha") + ENV_HEAD.format(project="alpha") + DATE.format(date="2026-12-02") + ENV_REST
    assert edits.moved_chars == len(moved)
    assert edits.moved_tokens == len(moved) // 4
    untouched = Edits(request)
    untouched.apply(BodyEdits(model="m"))
    assert untouched.moved_chars == 0 and untouched.moved_tokens == 0
