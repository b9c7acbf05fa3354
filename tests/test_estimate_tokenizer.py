"""`estimate: {tokenizer: UPSTREAM}`: exact counts from llama-server's /tokenize, cached, outside
the slot queue, falling back to the local estimate when the tokenizer is down."""

from __future__ import annotations

import asyncio

from router.tokens import estimate_tokens
from tests.conftest import user_message

TOKENIZER = """
upstreams:
  local: {{url: "{upstream}"}}
  gone: {{url: "http://127.0.0.1:{closed_port}"}}
rules:
  - name: exact
    match: {{path: /v1/messages/count_tokens, model: exact}}
    action: {{estimate: {{tokenizer: local}}}}
  - name: fallback
    match: {{path: /v1/messages/count_tokens, model: fallback}}
    action: {{estimate: {{tokenizer: gone, timeout: 1s}}}}
  - name: main
    action: {{forward: {{}}}}
"""


async def test_exact_counts_are_cached_and_do_not_wait_for_the_slot(make_router, upstream, sdk, closed_port):
    client = sdk(await make_router(TOKENIZER, closed_port=closed_port))
    turn = asyncio.create_task(
        client.messages.create(
            model="m", max_tokens=5, messages=user_message("busy"), extra_headers={"x-test-upstream": "hold=turn"}
        )
    )
    await upstream.wait_for(1)
    messages = user_message("one two three four five six seven")
    first = await asyncio.wait_for(client.messages.count_tokens(model="exact", messages=messages), 5)
    again = await client.messages.count_tokens(model="exact", messages=messages)
    assert first.input_tokens == again.input_tokens == 7
    assert upstream.tokenize_calls == 1, "the second count came from the cache"
    assert not turn.done()
    upstream.release("turn")
    await turn


async def test_unreachable_tokenizer_falls_back_to_the_estimate(make_router, sdk, closed_port):
    client = sdk(await make_router(TOKENIZER, closed_port=closed_port))
    text = "def add(a, b):\n    return a + b\n"
    result = await client.messages.count_tokens(model="fallback", messages=user_message(text))
    assert result.input_tokens == estimate_tokens(text)
