"""`forward`: send the request to a named upstream through its priority queue, streaming back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router.answers import Streamed, Trace
from router.edits import Edits
from router.protocols.base import Request
from router.specs import ActionSpec, BuildContext, Services
from router.upstream.queue import PRIORITIES
from router.upstream.relay import relay

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

    async def run(self, request: Request, edits: Edits, services: Services) -> Streamed:
        """Apply the upstream's own edits, let plugins edit, then queue and relay."""
        upstream = services.upstreams[self.upstream]
        edits.apply(upstream.config.edits)
        await services.hooks.each("before_forward", request=request, edits=edits, upstream=self.upstream)
        trace = Trace()
        return Streamed(relay(request, edits, upstream, self.priority, services.client, trace), trace)


def build(options: dict[str, Any] | None, context: BuildContext) -> Forward:
    """Check the upstream exists; default to the default upstream at user priority."""
    options = options or {}
    name = options.get("upstream", context.default_upstream)
    if name not in context.upstreams:
        raise ValueError(f"unknown upstream {name!r}; defined upstreams: {', '.join(sorted(context.upstreams))}")
    return Forward(name, options.get("priority", "user"))


SPEC = ActionSpec(
    "forward", {**SCHEMA, "type": ["object", "null"]}, build, terminal=True, help="forward through the queue"
)
