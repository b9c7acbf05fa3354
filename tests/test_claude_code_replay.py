"""Claude Code's traffic patterns, replayed through the default rules: each decision and answer shape.

Sequences follow the recorded interactive sessions: title and first turn together, 26 concurrent
count_tokens, the auto-mode classifier, subagents 1 ms apart, 2.1.197's per-turn titles, and
older versions' Haiku housekeeping. Every answer goes through the anthropic SDK, which validates
its shape; the fake upstream has one slot and fails loudly on a second request.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from router.app import STATE, build_app
from router.config import Overrides, embedded_rules_text, parse_config
from router.plugins import builtin_registry
from tests import claude_code_shapes as cc


@pytest.fixture
def default_router(aiohttp_server, upstream):
    """A router on the embedded default rules (optionally edited), pointed at the fake upstream."""

    async def make(edit=lambda text: text):
        config = parse_config(
            edit(embedded_rules_text()), "default", builtin_registry(), Overrides(upstream_url=upstream.url)
        )
        return await aiohttp_server(build_app(config))

    return make


async def send(client, body: dict[str, Any], headers: dict[str, str], hold: str | None = None):
    """Send BODY as Claude Code would; the SDK validates the answer (JSON or every SSE event)."""
    core = {k: body[k] for k in ("model", "max_tokens", "messages")}
    extra = {k: v for k, v in body.items() if k not in core and k != "stream"}
    headers = {**headers, **({"x-test-upstream": f"hold={hold}"} if hold else {})}
    if body.get("stream"):
        async with client.messages.stream(**core, extra_body=extra, extra_headers=headers) as stream:
            return await stream.get_final_message()
    return await client.messages.create(**core, extra_body=extra, extra_headers=headers)


def prompt_of(body: dict[str, Any]) -> str:
    """The user's prompt: the last text of the first message."""
    content = body["messages"][0]["content"]
    return content if isinstance(content, str) else content[-1]["text"]


def decisions(caplog) -> list[str]:
    """rule names from the router's log lines, in completion order."""
    return [r.getMessage().split(" rule=")[1].split(" ")[0] for r in caplog.records if r.name == "ghost_router"]


async def queued(router, count: int) -> None:
    gate = router.app[STATE].pool["local"].gate
    for _ in range(500):
        if gate.queued == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{gate.queued} queued, expected {count}")


async def test_first_prompt_title_is_answered_while_the_turn_holds_the_slot(default_router, upstream, sdk, caplog):
    client = sdk(await default_router())
    turn = asyncio.create_task(send(client, cc.main_turn("list the files here"), cc.headers(), hold="turn"))
    await asyncio.sleep(0.002)
    title = await asyncio.wait_for(send(client, cc.title_request("list the files here"), cc.headers()), 5)
    assert json.loads(title.content[0].text) == {"title": "List the files here"}
    assert not turn.done(), "the title did not wait for the turn"
    upstream.release("turn")
    assert (await turn).content[0].text == "tok0 tok1 tok2 "
    assert sorted(decisions(caplog)) == ["main", "session-title"]
    (seen,) = upstream.seen
    assert b"x-anthropic-billing-header" not in seen.raw
    assert seen.body["system"][0]["text"].startswith("You are Claude Code")
    assert seen.body["model"] == "local-model" and len(seen.body["tools"]) == 12


async def test_context_burst_of_26_count_tokens_is_answered_while_a_turn_streams(default_router, upstream, sdk, caplog):
    client = sdk(await default_router())
    turn = asyncio.create_task(send(client, cc.main_turn("explain"), cc.headers(), hold="turn"))
    await upstream.wait_for(1)

    async def count(i: int) -> int:
        body = cc.count_tokens_request(i)
        extra = {"tools": body["tools"]} if "tools" in body else {}
        result = await client.messages.count_tokens(
            model=body["model"], messages=body["messages"], extra_body=extra, extra_headers=cc.headers()
        )
        return result.input_tokens

    counts = await asyncio.wait_for(asyncio.gather(*(count(i) for i in range(26))), 5)
    assert all(n > 0 for n in counts)
    assert counts[3] > counts[2], "a request with a tool counts the tool definition too"
    assert not turn.done() and len(upstream.seen) == 1
    upstream.release("turn")
    await turn
    assert decisions(caplog).count("count-tokens") == 26


async def test_classifier_is_blocked_with_a_reason_never_allowed(default_router, upstream, sdk, caplog):
    client = sdk(await default_router())
    answer = await send(client, cc.classifier_request("curl -s http://127.0.0.1:9/install.sh | bash"), cc.headers())
    text = answer.content[0].text
    assert text.startswith("<block>yes</block><reason>") and text.endswith("</reason>")
    assert "--permission-mode default" in text
    assert "<block>no" not in text
    assert upstream.seen == [] and decisions(caplog) == ["auto-mode-classifier"]


async def test_classifier_alternative_forwards_at_background_priority(default_router, upstream, sdk, caplog):
    def enable_forward(text: str) -> str:
        start = text.index("  - name: auto-mode-classifier\n    match")
        end = text.index("  # Alternative: let the local model judge")
        alternative = text[text.index("  # - name: auto-mode-classifier") : text.index("  # Any other housekeeping")]
        return text[:start] + alternative.replace("  # ", "  ").replace("\n  #", "\n ") + text[end:]

    router = await default_router(enable_forward)
    client = sdk(router)
    turn = asyncio.create_task(send(client, cc.main_turn("first"), cc.headers(), hold="turn"))
    await upstream.wait_for(1)
    classifier = asyncio.create_task(send(client, cc.classifier_request("rm -rf build"), cc.headers()))
    await queued(router, 1)
    user = asyncio.create_task(send(client, cc.main_turn("second"), cc.headers()))
    await queued(router, 2)
    upstream.release("turn")
    await asyncio.gather(turn, classifier, user)
    assert [s.body["max_tokens"] for s in upstream.seen] == [32000, 32000, 64], "the classifier went last"
    assert all(s.body["model"] == "local-model" for s in upstream.seen), "the upstream gets its own model name"
    assert "security monitor" in upstream.seen[2].body["system"][0]["text"]
    assert b"x-anthropic-billing-header" not in upstream.seen[2].raw


async def test_subagents_one_ms_apart_queue_behind_the_users_turn(default_router, upstream, sdk, caplog):
    router = await default_router()
    client = sdk(router)
    parent = asyncio.create_task(send(client, cc.main_turn("launch two agents"), cc.headers(), hold="parent"))
    await upstream.wait_for(1)
    agents = []
    for name in ("a98b575f284eb4b28", "a8ba071012d87ff54"):
        agents.append(
            asyncio.create_task(send(client, cc.main_turn(f"agent {name}", subagent=True), cc.headers(agent_id=name)))
        )
        await asyncio.sleep(0.001)
    await queued(router, 2)
    user = asyncio.create_task(send(client, cc.main_turn("user follow-up"), cc.headers()))
    await queued(router, 3)
    upstream.release("parent")
    await asyncio.gather(parent, user, *agents)
    prompts = [prompt_of(s.body) for s in upstream.seen]
    assert prompts == ["launch two agents", "user follow-up", "agent a98b575f284eb4b28", "agent a8ba071012d87ff54"]
    assert decisions(caplog).count("subagent") == 2
    assert upstream.max_in_flight == 1
    assert all(b"x-anthropic-billing-header" not in s.raw for s in upstream.seen)


async def test_v197_probe_and_title_on_every_turn(default_router, upstream, sdk, http, caplog):
    router = await default_router()
    raw = await http(router)
    assert (await raw.head("/")).status == 200
    assert (await raw.head("/api/hello")).status == 200
    client = sdk(router)
    for prompt in ["write a python function that adds two numbers", "now add tests for it"]:
        title, turn = await asyncio.gather(
            send(client, cc.title_request(prompt, "2.1.197"), cc.headers("2.1.197")),
            send(client, cc.main_turn(prompt, "2.1.197"), cc.headers("2.1.197")),
        )
        assert json.loads(title.content[0].text)["title"] == prompt[:1].upper() + " ".join(prompt.split()[:6])[1:]
    assert len(upstream.seen) == 2
    assert decisions(caplog).count("session-title-legacy") == 2 and decisions(caplog).count("probe") == 2


@pytest.mark.parametrize(
    "system, user, max_tokens, rule, answer",
    [
        (
            "Analyze if this message indicates a new conversation topic. Format your response as a JSON object with two fields: 'isNewTopic' (boolean) and 'title'.",
            "fix the login bug",
            512,
            "topic",
            {"isNewTopic": False, "title": None},
        ),
        ("", "quota", 1, "quota-probe", "OK"),
        (
            "Your task is to process Bash commands that an AI coding agent wants to run.",
            "<policy_spec>\n# Claude Code Bash command prefix detection\n</policy_spec>\nCommand: git status",
            512,
            "bash-prefix",
            "none",
        ),
        (
            "Summarize this coding conversation in under 50 characters.",
            "refactor the payment module",
            512,
            "session-title-legacy",
            "Refactor the payment module",
        ),
    ],
)
async def test_legacy_haiku_housekeeping_is_faked_in_the_callers_format(
    default_router, upstream, sdk, caplog, system, user, max_tokens, rule, answer
):
    client = sdk(await default_router())
    result = await send(client, cc.haiku_request(system, user, max_tokens), cc.headers("1.0.100"))
    text = result.content[0].text
    assert (json.loads(text) if isinstance(answer, dict) else text) == answer
    assert decisions(caplog) == [rule] and upstream.seen == []


async def test_other_haiku_calls_go_to_the_local_model_behind_user_turns_with_a_cap(
    default_router, upstream, sdk, caplog
):
    router = await default_router()
    client = sdk(router)
    turn = asyncio.create_task(send(client, cc.main_turn("first"), cc.headers(), hold="turn"))
    await upstream.wait_for(1)
    haiku = asyncio.create_task(
        send(client, cc.haiku_request("Filter these tools", "which tools matter?", 4096), cc.headers("1.0.100"))
    )
    await queued(router, 1)
    user = asyncio.create_task(send(client, cc.main_turn("second"), cc.headers()))
    await queued(router, 2)
    upstream.release("turn")
    await asyncio.gather(turn, haiku, user)
    assert [prompt_of(s.body) for s in upstream.seen] == ["first", "second", "which tools matter?"]
    assert upstream.seen[2].body["max_tokens"] == 512 and upstream.seen[2].body["model"] == "local-model"


async def test_fold_and_drop_are_per_upstream_options(default_router, upstream, sdk):
    def strict_server(text: str) -> str:
        text = text.replace("fold_system_messages: false", "fold_system_messages: true")
        return text.replace("    # drop_fields: [", "    drop_fields: [")

    client = sdk(await default_router(strict_server))
    await send(client, cc.main_turn("list the files here"), cc.headers())
    body = upstream.seen[0].body
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["messages"][0]["content"][-1]["text"].startswith("# Environment")
    for field in ("thinking", "output_config", "context_management"):
        assert field not in body
    assert all("defer_loading" not in tool for tool in body["tools"])


async def test_model_override_renames_main_turns_only(aiohttp_server, upstream, sdk):
    config = parse_config(
        embedded_rules_text(),
        "default",
        builtin_registry(),
        Overrides(upstream_url=upstream.url, model="qwen2.5-coder-7b"),
    )
    client = sdk(await aiohttp_server(build_app(config)))
    await send(client, cc.main_turn("hi"), cc.headers())
    assert upstream.seen[0].body["model"] == "qwen2.5-coder-7b"
