"""Body edits shared by the `rewrite` action and the per-upstream options (model, fold, drop)."""

from __future__ import annotations

from dataclasses import dataclass

from router.exchange import Exchange
from router.lazybody import LazyBody


@dataclass(frozen=True)
class BodyEdits:
    """Edits to a parsed request body, applied through the request's protocol adapter."""

    model: str | None = None
    drop_prefixes: tuple[str, ...] = ()
    fold_system_messages: bool = False
    drop_fields: tuple[str, ...] = ()
    max_tokens: int | None = None

    def apply(self, ex: Exchange) -> None:
        """Edit EX's body in place; a model already chosen by a rule's rewrite is kept."""
        body, protocol = ex.fields, ex.protocol  # a LazyBody decodes only the fields edited
        if not isinstance(body, (dict, LazyBody)):
            return
        changed = False  # every edit runs; each says whether it changed the body
        if self.model is not None and not ex.model_rewritten:
            changed = protocol.set_model(body, self.model)  # type: ignore[arg-type]
            ex.model_rewritten = True
        for prefix in self.drop_prefixes:
            changed = protocol.drop_system_blocks(body, prefix) or changed  # type: ignore[arg-type]
        if self.fold_system_messages:
            changed = protocol.fold_system_messages(body) or changed  # type: ignore[arg-type]
        if self.drop_fields:
            changed = protocol.drop_fields(body, list(self.drop_fields)) or changed  # type: ignore[arg-type]
        if self.max_tokens is not None:
            changed = protocol.cap_max_tokens(body, self.max_tokens) or changed  # type: ignore[arg-type]
        if changed:
            ex.body_changed = True
