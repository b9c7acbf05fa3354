"""Each built-in matcher, through a real request, and the title maker and token estimate."""

from __future__ import annotations

import pytest

from router.actions.fake import title_from_prompt
from router.tokens import estimate_tokens
from tests.conftest import user_message

MATCHERS = """
upstreams:
  local: {{url: "{upstream}"}}
rules:
  - {{name: path, match: {{path: "/custom/*"}}, action: {{fake: {{status: 204}}}}}}
  - {{name: method, match: {{method: [PUT, DELETE]}}, action: {{fake: {{status: 202}}}}}}
  - {{name: model, match: {{model: "CLAUDE-*HAIKU*"}}, action: {{fake: {{text: model}}}}}}
  - {{name: system, match: {{system: ["security monitor", "other"]}}, action: {{fake: {{text: system}}}}}}
  - {{name: system_regex, match: {{system_regex: "^Env: \\\\d+"}}, action: {{fake: {{text: system_regex}}}}}}
  - {{name: user, match: {{user: quota}}, action: {{fake: {{text: user}}}}}}
  - {{name: user_regex, match: {{user_regex: "isNewTopic|topic\\\\?"}}, action: {{fake: {{text: user_regex}}}}}}
  - {{name: header, match: {{header: {{x-claude-code-agent-id: "agent-*", x-absent: null}}}}, action: {{fake: {{text: header}}}}}}
  - {{name: tools-name, match: {{tools: "Bash*"}}, action: {{fake: {{text: tools-name}}}}}}
  - {{name: tools-range, match: {{tools: {{min: 2, max: 3}}}}, action: {{fake: {{text: tools-range}}}}}}
  - {{name: max_tokens, match: {{max_tokens: {{max: 1}}}}, action: {{fake: {{text: max_tokens}}}}}}
  - {{name: stream, match: {{stream: true, client: claude-code}}, action: {{fake: {{text: stream+client}}}}}}
  - {{name: rest, match: {{}}, action: {{fake: {{text: rest}}}}}}
"""


def body(**change):
    return {"model": "local", "max_tokens": 100, "messages": user_message("hello"), **change}


def tools(*names):
    return [{"name": n, "input_schema": {"type": "object"}} for n in names]


CASES = [
    (body(model="claude-haiku-4-5-20251001"), {}, "model"),
    (
        body(system=[{"type": "text", "text": "You are a security monitor for autonomous AI coding agents."}]),
        {},
        "system",
    ),
    (body(messages=[{"role": "user", "content": "x"}, {"role": "system", "content": "Env: 42"}]), {}, "system_regex"),
    (body(messages=user_message("quota")), {}, "user"),
    (
        body(
            messages=[
                {"role": "user", "content": "quota"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "topic?"},
            ]
        ),
        {},
        "user_regex",
    ),
    (body(), {"x-claude-code-agent-id": "agent-7"}, "header"),
    (body(), {"x-claude-code-agent-id": "agent-7", "x-absent": "here"}, "rest"),
    (body(tools=tools("Read", "BashOutput")), {}, "tools-name"),
    (body(tools=tools("Read", "Write")), {}, "tools-range"),
    (body(tools=tools("A", "B", "C", "D")), {}, "rest"),
    (body(max_tokens=1), {}, "max_tokens"),
    (body(stream=True), {"User-Agent": "claude-cli/2.1.331 (external, cli)"}, "stream+client"),
    (body(stream=True), {}, "rest"),
    (body(), {}, "rest"),
]


@pytest.mark.parametrize("request_body, headers, expected", CASES)
async def test_first_matching_rule_answers(make_router, http, request_body, headers, expected):
    client = await http(await make_router(MATCHERS))
    response = await client.post("/v1/messages", json=request_body, headers=headers)
    assert response.status == 200
    text = await response.text()
    assert f'"{expected}"' in text if not request_body.get("stream") else f'"text":"{expected}"' in text


async def test_path_and_method_matchers(make_router, http):
    client = await http(await make_router(MATCHERS))
    assert (await client.get("/custom/thing")).status == 204
    assert (await client.delete("/anything")).status == 202


@pytest.mark.parametrize(
    "prompt, title",
    [
        (
            "<session>\nwrite a python function that adds two numbers\n</session>\n\nWrite the title",
            "Write a python function that adds",
        ),
        ("<system-reminder>ignore me</system-reminder>fix bug #42 in parser.py", "Fix bug #42 in parser.py"),
        ("", "New session"),
        ("    ", "New session"),
        ("añade soporte para ñandú", "Añade soporte para ñandú"),
        ("a" * 200, "New session"),
    ],
)
def test_title_from_prompt(prompt, title):
    assert title_from_prompt(prompt) == title


def test_estimate_tracks_text_size():
    prose = "The quick brown fox jumps over the lazy dog. " * 100
    assert 900 <= estimate_tokens(prose) <= 1200
    code = "def add(a: int, b: int) -> int:\n    return a + b\n" * 50
    assert 20 * 50 <= estimate_tokens(code) <= 30 * 50
    assert estimate_tokens("") == 0


def test_long_texts_are_estimated_from_slices_within_a_few_percent():
    from router.tokens import SAMPLE_ABOVE, _count

    text = (
        "def handler(request):\n    return {'status': 200, 'items': [1, 2, 3]}\n" + "Plain prose about the build. " * 3
    ) * 4000
    assert len(text) > SAMPLE_ABOVE
    assert abs(estimate_tokens(text) - _count(text)) / _count(text) < 0.03
