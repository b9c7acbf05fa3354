"""`rewrite`: edit the request (model, volatile system text, prompt order, rejected fields, limits, headers).

Not terminal: the rule's answering action (usually forward) runs next; a rule with only a
rewrite forwards to the default upstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router.edits import BodyEdits, Edits
from router.protocols.base import Request
from router.specs import ActionSpec, BuildContext, Services
from router.units import HEADERS_SCHEMA

BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "drop_billing_header": {"type": "boolean"},
        "drop_system_prefix": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "fold_system_messages": {"type": "boolean"},
        "environment_first": {"type": "boolean"},
        "project_context_last": {"type": "boolean"},
        "drop_fields": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "max_tokens": {"type": "integer", "minimum": 1},
        "headers": HEADERS_SCHEMA,
    },
}


@dataclass(frozen=True)
class Rewrite:
    """A compiled rewrite: body edits plus header edits."""

    edits: BodyEdits
    headers: tuple[tuple[str, str | None], ...]

    async def run(self, request: Request, edits: Edits, services: Services) -> None:
        """Edit the outgoing body and headers; go on to the next action."""
        for name, value in self.headers:
            edits.set_header(name, value)
        edits.apply(self.edits)


def build(options: dict[str, Any], context: BuildContext) -> Rewrite:
    """Collect the edits."""
    prefixes = list(options.get("drop_system_prefix", []))
    if options.get("drop_billing_header"):
        prefixes.insert(0, BILLING_HEADER_PREFIX)
    edits = BodyEdits(
        model=options.get("model"),
        drop_prefixes=tuple(prefixes),
        fold_system_messages=bool(options.get("fold_system_messages")),
        environment_first=bool(options.get("environment_first")),
        project_context_last=bool(options.get("project_context_last")),
        drop_fields=tuple(options.get("drop_fields", [])),
        max_tokens=options.get("max_tokens"),
    )
    return Rewrite(edits, tuple((options.get("headers") or {}).items()))


SPEC = ActionSpec("rewrite", SCHEMA, build, terminal=False, help="edit the request, then continue")
