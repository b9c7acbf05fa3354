"""The hooks a ghost-router plugin can implement. Every hook may be `def` or `async def`, and may
accept any subset of its arguments (pluggy's own argument mapping), as in llm and datasette.

Plugins are modules (or objects) with functions marked `@hookimpl`; they are found through the
`ghost_router` entry-point group, plugin files in the `plugins/` folder next to the rules file,
and `--plugins-dir`. See docs/plugins.md for each hook with an example.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

from router.answers import Result
from router.edits import Edits
from router.errors import RouterError
from router.outcome import Outcome
from router.protocols.base import Protocol, Reply, Request
from router.specs import ActionSpec, MatcherSpec

PROJECT = "ghost_router"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_matchers(register: Callable[[MatcherSpec], None]) -> None:
    """Add matchers usable under `match:`; each one's JSON Schema extends the rules-file schema."""


@hookspec
def register_actions(register: Callable[[ActionSpec], None]) -> None:
    """Add actions usable under `action:`; each one's JSON Schema extends the rules-file schema."""


@hookspec
def register_protocols(register: Callable[[Protocol], None]) -> None:
    """Add protocol adapters (a client API: which paths it claims, how it parses and answers)."""


@hookspec
def register_rules(register: Callable[[str], None]) -> None:
    """Add default rules (YAML text of a rules list) placed before the rules file's own rules."""


@hookspec(firstresult=True)
def intercept_request(request: Request) -> Result | Reply | None:
    """Answer a parsed request before the rule table; the first plugin that returns an answer wins."""


@hookspec
def before_forward(request: Request, edits: Edits, upstream: str) -> None:
    """Edit what is sent (edits.set, edits.delete, edits.set_header) just before it is queued for UPSTREAM."""


@hookspec
def exchange_finished(request: Request, outcome: Outcome) -> None:
    """Observe a finished request and its outcome, exactly once per request; exceptions are logged."""


@hookspec(firstresult=True)
def handle_error(request: Request, error: RouterError) -> RouterError | None:
    """Replace an error before it is answered; the first plugin that returns one wins."""


HOOKS: tuple[Callable[..., Any], ...] = (
    register_matchers,
    register_actions,
    register_protocols,
    register_rules,
    intercept_request,
    before_forward,
    exchange_finished,
    handle_error,
)
