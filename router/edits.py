"""What a forward sends instead of the request as it arrived: the body-edit surface.

Rewrites, upstream options and `before_forward` plugins change the outgoing body and headers
only through `Edits`; the Request itself stays as it arrived (the log, the recorder and replay
see what the client sent). The body is re-encoded only when something changed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from router.jsonutil import dumps_bytes
from router.protocols.base import Request
from router.tokens import quick_estimate


@dataclass(frozen=True)
class BodyEdits:
    """Edits a rule (rewrite) or an upstream's options ask for, applied through the request's protocol."""

    model: str | None = None
    drop_prefixes: tuple[str, ...] = ()
    fold_system_messages: bool = False
    environment_first: bool = False
    project_context_last: bool = False
    drop_fields: tuple[str, ...] = ()
    max_tokens: int | None = None


class Edits:
    """The outgoing body (a copy-on-write of the request's top level) and header edits of one request."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self._doc: dict[str, Any] | None = None  # the edited top level, made on the first edit
        self.headers: dict[str, str | None] = {}  # header name -> new value, None removes it
        self.model_chosen = False  # a rule chose the model; an upstream's `model` does not override it
        self.model: str | None = None  # the model chosen (an API that names it in the path has none in the body)
        self.moved_chars = 0  # characters of prompt text the prefix options moved (see `moved_tokens`)

    @property
    def body(self) -> Mapping[str, Any]:
        """The body as it will be sent (read only: change it with `set` and `delete`)."""
        if self._doc is not None:
            return self._doc
        return self.request.body if isinstance(self.request.body, dict) else {}

    @property
    def changed(self) -> bool:
        """Whether the body will differ from what arrived."""
        return self._doc is not None

    def set(self, field: str, value: Any) -> None:
        """Set top-level FIELD of the outgoing body."""
        self._writable()[field] = value

    def delete(self, field: str) -> None:
        """Remove top-level FIELD from the outgoing body (if present)."""
        if field in self.body:
            del self._writable()[field]

    def set_header(self, name: str, value: str | None) -> None:
        """Send header NAME with VALUE upstream (None: do not send it)."""
        self.headers[name] = value

    def apply(self, edits: BodyEdits) -> None:
        """Apply a rule's or an upstream's EDITS; a model already chosen by a rule is kept."""
        if not isinstance(self.request.body, dict):
            return
        protocol = self.request.protocol
        doc = dict(self.body)
        changed = False  # every edit runs; each says whether it changed the body
        if edits.model is not None and not self.model_chosen:
            changed = protocol.set_model(doc, edits.model)
            self.model_chosen, self.model = True, edits.model
        for prefix in edits.drop_prefixes:
            changed = protocol.drop_system_blocks(doc, prefix) or changed
        if edits.environment_first or edits.project_context_last:
            moved = protocol.stable_prefix(doc, edits.environment_first, edits.project_context_last)
            self.moved_chars += moved
            changed = bool(moved) or changed
        if edits.fold_system_messages:
            changed = protocol.fold_system_messages(doc) or changed
        if edits.drop_fields:
            changed = protocol.drop_fields(doc, list(edits.drop_fields)) or changed
        if edits.max_tokens is not None:
            changed = protocol.cap_max_tokens(doc, edits.max_tokens) or changed
        if changed:
            self._doc = doc

    @property
    def moved_tokens(self) -> int:
        """About how many prompt tokens the prefix options (`environment_first`,
        `project_context_last`) moved behind stable text: 0 when they moved nothing. For a savings
        ledger: a later conversation can reuse these from the server's cache."""
        return quick_estimate(self.moved_chars) if self.moved_chars else 0

    def encode(self) -> bytes:
        """The body to send: the bytes as they arrived unless something changed it."""
        return self.request.raw if self._doc is None else dumps_bytes(self._doc)

    def _writable(self) -> dict[str, Any]:
        if self._doc is None:
            self._doc = dict(self.body)
        return self._doc
