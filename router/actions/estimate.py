"""`estimate`: answer a token-count request without the model.

By default a fast local estimate. With `tokenizer: UPSTREAM` it asks that llama-server's
`POST /tokenize` (outside the slot queue, with a short timeout), caches the answer, and falls
back to the local estimate when the upstream is busy or down.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from router.answers import Answer
from router.edits import Edits
from router.errors import BadRequest
from router.protocols.base import Request
from router.specs import ActionSpec, BuildContext, Services
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
    rule: str
    cache: OrderedDict[bytes, int] = field(default_factory=OrderedDict)

    async def run(self, request: Request, edits: Edits, services: Services) -> Answer:
        """Answer the count request."""
        if request.kind != "count_tokens":
            raise BadRequest(
                f"ghost-router rule '{self.rule}' uses estimate, which only answers token-count requests, but this is "
                f"{request.method} {request.path}. Narrow the rule's match (e.g. path: /v1/messages/count_tokens)."
            )
        text = request.protocol.text_for_counting(request)
        exact = await self._exact(text, services) if self.tokenizer else None
        tokens = estimate_tokens(text) if exact is None else exact
        answer = request.protocol.count_answer(request, tokens)
        how = "estimate" if exact is None else "tokenizer"  # say which: an estimate is not a count
        return Answer(answer.status, answer.body, (*answer.headers, ("x-ghost-router-tokens", how)))

    async def _exact(self, text: str, services: Services) -> int | None:
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        if services.session is None or self.tokenizer is None:
            return None
        url = services.upstreams[self.tokenizer].url.rstrip("/") + "/tokenize"
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with services.session.post(url, json={"content": text}, timeout=timeout) as response:
                if response.status != 200:
                    return None
                tokens = len((await response.json())["tokens"])
        except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, TypeError):
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
    return Estimate(tokenizer, parse_duration(options.get("timeout", 2)), options.get("cache_size", 4096), context.rule)


SPEC = ActionSpec("estimate", SCHEMA, build, terminal=True, help="answer token counts locally")
