"""Property-based: random, truncated and mistyped bodies, odd headers and paths never make the
router itself answer 500, never crash it, and every answer is in the client's error shape."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.app import build_app
from router.config import parse_config
from router.jsonutil import loads
from router.plugins import builtin_registry
from tests.conftest import RULES, user_message

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "model": JSON | st.text(max_size=30),
        "messages": JSON
        | st.lists(
            st.fixed_dictionaries({"role": JSON | st.sampled_from(["user", "assistant", "system"]), "content": JSON}),
            max_size=4,
        ),
        "max_tokens": JSON,
        "stream": JSON,
        "system": JSON,
        "tools": JSON,
        "output_config": JSON,
    },
)
PATHS = st.sampled_from(
    [
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/chat/completions",
        "/v1/responses",
        "/v1beta/models/gemini-x:generateContent",
        "/v1beta/models/m:countTokens",
        "/v1/nope",
        "/%ff",
        "/v1/messages/",
    ]
)
VALID = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
TRICKY = st.sampled_from(
    [1.5, float("inf"), "10", True, None, [], {}, -1, 10**30, "\U0001f600" * 50, [None], [{}], {"type": 1}, "x" * 5000]
)
ONE_FIELD_WRONG = st.tuples(
    st.sampled_from(["model", "max_tokens", "messages", "stream", "system", "tools", "contents", "input"]),
    TRICKY | JSON,
).map(lambda pair: json.dumps({**VALID, pair[0]: pair[1]}).encode())
BODIES = (
    FIELDS.map(lambda d: json.dumps(d).encode())
    | st.binary(max_size=200)
    | FIELDS.map(lambda d: json.dumps(d).encode()[: max(1, len(json.dumps(d)) // 2)])
)
HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "User-Agent",
            "x-api-key",
            "x-codex-turn-metadata",
            "Content-Type",
            "x-claude-code-agent-id",
            "anthropic-version",
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    max_size=4,
)


async def test_random_input_never_gets_a_router_500(router_factory, upstream):
    router = await router_factory(upstream.url)
    loop = asyncio.get_running_loop()
    from aiohttp import ClientSession

    async with ClientSession(base_url=str(router.make_url(""))) as client:
        ran = []

        async def one(path: str, body: bytes, headers: dict[str, str]) -> None:
            ran.append(path)
            async with client.post(path, data=body, headers={**headers, "x-test-upstream": "events=1"}) as response:
                raw = await response.read()
            if response.status >= 400:
                assert response.status != 500, (path, body, raw)
                assert "error" in json.loads(raw), raw

        deep = st.tuples(
            st.sampled_from(["/v1/messages", "/v1/messages/count_tokens"]), ONE_FIELD_WRONG
        )  # valid but one field

        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
        @given(request=deep | st.tuples(PATHS, BODIES), headers=HEADERS)
        def check(request: tuple[str, bytes], headers: dict[str, str]) -> None:
            # hypothesis runs in a worker thread; each example runs on the test's event loop
            asyncio.run_coroutine_threadsafe(one(*request, headers), loop).result(timeout=30)

        await loop.run_in_executor(None, check)
        assert len(ran) >= 400
        async with client.post(
            "/v1/messages", json={"model": "m", "max_tokens": 5, "messages": user_message("still alive")}
        ) as ok:
            assert ok.status == 200


# Hostile values spliced as raw bytes into every field of an otherwise valid body: JSON nested
# deeper than any parser's recursion limit, integers of thousands of digits, bytes that are not
# UTF-8, lone surrogate escapes, numbers out of float range.
HOSTILE = st.sampled_from(
    [
        b"[" * 1000 + b"]" * 1000,
        b"[" * 5000 + b"]" * 5000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        b"9" * 5000,
        b"-" + b"1" * 50_000,
        b"1e999999",
        b'"\xff\xfe"',
        b'"caf\xe9"',
        b'"\xed\xa0\x80"',
        b'"\\ud83d"',
        b'["ok", "\xc3"]',
    ]
)
SLOTS = st.sampled_from(
    [
        b'{"model":@,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}',
        b'{"model":"m","max_tokens":@,"messages":[{"role":"user","content":"hi"}]}',
        b'{"model":"m","max_tokens":5,"messages":@}',
        b'{"model":"m","max_tokens":5,"messages":[{"role":@,"content":"hi"}]}',
        b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":@}]}',
        b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":@}]}]}',
        b'{"model":"m","max_tokens":5,"system":@,"messages":[{"role":"user","content":"hi"}]}',
        b'{"model":"m","max_tokens":5,"tools":[{"name":"t","input_schema":@}],"messages":[]}',
        b'{"model":"m","max_tokens":5,"metadata":{"user_id":@},"messages":[]}',
        b'{"model":"m","max_tokens":5,"stream":@,"messages":[]}',
        b'{"model":"m","max_tokens":5,"output_config":{"format":@},"messages":[]}',
        b'{"model":"m","max_tokens":5,"temperature":@,"messages":[]}',
        b'{@:1,"model":"m","max_tokens":5,"messages":[]}',
    ]
)


@pytest.mark.parametrize("record", [False, True], ids=["plain", "with --record"])
async def test_hostile_values_in_every_field_never_get_a_router_500(aiohttp_server, upstream, tmp_path, record):
    config = parse_config(RULES.format(upstream=upstream.url), "rules.yaml", builtin_registry())
    capture = tmp_path / "capture.jsonl"
    router = await aiohttp_server(build_app(config, record=str(capture) if record else None))
    loop = asyncio.get_running_loop()
    from aiohttp import ClientSession

    sent = []
    async with ClientSession(base_url=str(router.make_url(""))) as client:

        async def one(path: str, body: bytes) -> None:
            sent.append(body)
            async with client.post(path, data=body, headers={"Content-Type": "application/json"}) as response:
                raw = await response.read()
            assert response.status != 500, (path, body[:200], raw[:300])
            if response.status >= 400:
                assert "error" in json.loads(raw), raw[:300]

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            path=st.sampled_from(["/v1/messages", "/v1/messages/count_tokens", "/v1/chat/completions"]),
            slot=SLOTS,
            value=HOSTILE,
        )
        def check(path: str, slot: bytes, value: bytes) -> None:
            body = slot.replace(b"@", value if not slot.startswith(b"{@") or value.startswith(b'"') else b'"k"')
            asyncio.run_coroutine_threadsafe(one(path, body), loop).result(timeout=60)

        await loop.run_in_executor(None, check)
        async with client.post(
            "/v1/messages", json={"model": "m", "max_tokens": 5, "messages": user_message("still alive")}
        ) as ok:
            assert ok.status == 200
    if record:  # one line per request, the last one included, each one JSON
        # read back as `replay` reads it
        assert len([loads(line) for line in capture.read_text().splitlines()]) == len(sent) + 1
