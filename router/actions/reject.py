"""`reject`: answer with a protocol-correct error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

from router.edits import Edits
from router.errors import RouterError
from router.protocols.base import Request
from router.specs import ActionSpec, BuildContext, Services

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "message": {"type": "string", "minLength": 1},
        "type": {"type": "string", "description": "protocol error type; derived from status when left out"},
    },
    "required": ["message"],
}


@dataclass(frozen=True)
class Reject:
    """A compiled reject: status, message, optional protocol error type."""

    status: int
    message: str
    error_type: str | None

    async def run(self, request: Request, edits: Edits, services: Services) -> NoReturn:
        """Raise the error; the handler renders it in the client's protocol."""
        raise RouterError(self.status, self.message, self.error_type)


def build(options: dict[str, Any], context: BuildContext) -> Reject:
    """Default to 400."""
    return Reject(options.get("status", 400), options["message"], options.get("type"))


SPEC = ActionSpec("reject", SCHEMA, build, terminal=True, help="answer with an error")
