"""The built-in protocols, matchers and actions, registered exactly as a plugin's would be."""

from __future__ import annotations

from collections.abc import Callable

from router.actions import estimate, fake, forward, reject, rewrite
from router.hookspecs import hookimpl
from router.protocols.anthropic import AnthropicMessages
from router.protocols.base import Protocol
from router.rules.matchers import BUILTIN_MATCHERS
from router.specs import ActionSpec, MatcherSpec


@hookimpl(trylast=True)
def register_protocols(register: Callable[[Protocol], None]) -> None:
    """The Anthropic Messages API (the default protocol for requests no adapter claims)."""
    register(AnthropicMessages())


@hookimpl(trylast=True)
def register_matchers(register: Callable[[MatcherSpec], None]) -> None:
    """path, method, model, system, user, header, tools, stream, max_tokens, client, ..."""
    for spec in BUILTIN_MATCHERS:
        register(spec)


@hookimpl(trylast=True)
def register_actions(register: Callable[[ActionSpec], None]) -> None:
    """rewrite, fake, estimate, forward, reject."""
    for module in (rewrite, fake, estimate, forward, reject):
        register(module.SPEC)
