"""`estimate`: answer a token-count request without the model.

By default a fast local estimate. With `tokenizer: UPSTREAM` it asks that llama-server's
`POST /tokenize` (outside the slot queue, with a short timeout), caches the answer, and falls
back to the local estimate when the upstream is busy or down.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from router.errors import BadRequest
from router.exchange import Exchange
from router.registry import ActionSpec, BuildContext
from router.state import RouterState
from router.tokens import estimate_tokens
from router.units import DURATION_PATTERN, parse_duration

SCHEMA = {
    "type": ["object", "null"],
    "additionalProperties": False,
    "properties": {
        "tokenizer": {"type": "string", "description": "upstream whose POST /tokenize gives exact counts"},
        "timeout": {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": DURATION_PATTERN}]},
        "cache_size": {"type": "integer", "minimum": 0},
    },
}


@dataclass
class Estimate:
    """A compiled estimate; holds the tokenizer cache."""

    tokenizer: str | None
    timeout: float
    cache_size: int
    cache: OrderedDict[bytes, int] = field(default_factory=OrderedDict)

    async def run(self, ex: Exchange, state: RouterState) -> web.StreamResponse:
        """Answer the count request."""
        if ex.kind != "count_tokens":
            raise BadRequest(
                f"ghost-router rule '{ex.rule}' uses estimate, which only answers token-count requests, "
                f"but this is {ex.method} {ex.path}. Narrow the rule's match (e.g. path: /v1/messages/count_tokens)."
            )
        text = ex.protocol.text_for_counting(ex)
        tokens = await self._exact(text, state) if self.tokenizer else None
        if tokens is None:
            tokens = estimate_tokens(text)
        else:
            ex.note = "tokenizer"
        return ex.protocol.count_response(ex, tokens)

    async def _exact(self, text: str, state: RouterState) -> int | None:
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        upstream = state.pool[self.tokenizer]
        url = upstream.url.rstrip("/") + "/tokenize"
        try:
            async with state.session.post(url, json={"content": text}, timeout=aiohttp.ClientTimeout(total=self.timeout)) as response:
                if response.status != 200:
                    return None
                tokens = len((await response.json())["tokens"])
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, TypeError):
            return None
        self.cache[key] = tokens
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return tokens


def build(options: dict[str, Any] | None, context: BuildContext) -> Estimate:
    """Check the tokenizer upstream exists."""
    options = options or {}
    tokenizer = options.get("tokenizer")
    if tokenizer is not None and tokenizer not in context.upstreams:
        raise ValueError(f"unknown upstream {tokenizer!r}; defined upstreams: {', '.join(sorted(context.upstreams))}")
    return Estimate(tokenizer, parse_duration(options.get("timeout", 2)), options.get("cache_size", 4096))


SPEC = ActionSpec("estimate", SCHEMA, build, terminal=True, help="answer token counts locally")
