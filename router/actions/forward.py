"""`forward`: send the request to a named upstream through its priority queue, streaming back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from router.exchange import Exchange
from router.registry import ActionSpec, BuildContext
from router.state import RouterState
from router.upstream.proxy import forward
from router.upstream.queue import PRIORITIES

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "upstream": {"type": "string", "minLength": 1},
        "priority": {"enum": list(PRIORITIES)},
    },
}


@dataclass(frozen=True)
class Forward:
    """A compiled forward: which upstream, at which priority class."""

    upstream: str
    priority: str

    @property
    def label(self) -> str:
        """`forward:UPSTREAM/PRIORITY` for logs and decision tables."""
        return f"forward:{self.upstream}/{self.priority}"

    async def run(self, ex: Exchange, state: RouterState) -> web.StreamResponse:
        """Let plugins edit the request, then queue and proxy."""
        if state.plugins.implemented("before_forward"):
            await state.plugins.each("before_forward", exchange=ex, upstream=self.upstream)
        return await forward(ex, state.pool[self.upstream], self.priority, state.forwarder)


def build(options: dict[str, Any] | None, context: BuildContext) -> Forward:
    """Check the upstream exists; default to the default upstream at user priority."""
    options = options or {}
    name = options.get("upstream", context.default_upstream)
    if name not in context.upstreams:
        raise ValueError(f"unknown upstream {name!r}; defined upstreams: {', '.join(sorted(context.upstreams))}")
    return Forward(name, options.get("priority", "user"))


SPEC = ActionSpec("forward", {**SCHEMA, "type": ["object", "null"]}, build, terminal=True, help="forward through the queue")
