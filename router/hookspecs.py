"""The hooks a ghost-router plugin can implement. Every hook may be `def` or `async def`.

Plugins are modules (or objects) with functions marked `@hookimpl`; they are found through the
`ghost_router` entry-point group, plugin files in the `plugins/` folder next to the rules file,
and `--plugins-dir`. See docs/plugins.md for each hook with an example.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    from aiohttp import web

    from router.errors import RouterError
    from router.exchange import Exchange
    from router.protocols.base import Protocol
    from router.registry import ActionSpec, MatcherSpec

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


@hookspec
def intercept_request(exchange: Exchange) -> web.StreamResponse | None:
    """Answer a parsed request before the rule table; the first plugin that returns a response wins."""


@hookspec
def before_forward(exchange: Exchange, upstream: str) -> None:
    """Edit a request (exchange.body, exchange.header_edits) just before it is queued for UPSTREAM."""


@hookspec
def exchange_finished(exchange: Exchange) -> None:
    """Observe a finished exchange, exactly once per request; exceptions are logged and swallowed."""


@hookspec
def handle_error(exchange: Exchange, error: RouterError) -> RouterError | None:
    """Replace an error before it is answered; the first plugin that returns one wins."""


HOOKS: tuple[Callable[..., Any], ...] = (
    register_matchers, register_actions, register_protocols, register_rules,
    intercept_request, before_forward, exchange_finished, handle_error,
)
