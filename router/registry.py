"""What the rule table can name: matchers, actions and protocol adapters, each registered once.

The built-ins register here exactly as plugins will; the rules JSON Schema is built from what is
registered, so an added matcher or action is validated like a built-in one.
"""

from __future__ import annotations

from typing import Any

from router.protocols.base import Protocol
from router.specs import ActionSpec, MatcherSpec


class Registry:
    """Matchers, actions and protocols by name; registering a taken name is an error."""

    def __init__(self) -> None:
        self.matchers: dict[str, MatcherSpec] = {}
        self.actions: dict[str, ActionSpec] = {}
        self.protocols: dict[str, Protocol] = {}

    def add_matcher(self, spec: MatcherSpec) -> None:
        """Register a matcher."""
        _claim(self.matchers, spec.name, spec, "matcher")

    def add_action(self, spec: ActionSpec) -> None:
        """Register an action."""
        _claim(self.actions, spec.name, spec, "action")

    def add_protocol(self, protocol: Protocol) -> None:
        """Register a protocol adapter; the first registered one answers requests no adapter claims."""
        _claim(self.protocols, protocol.name, protocol, "protocol")

    @property
    def default_protocol(self) -> Protocol:
        """The adapter whose error shape is used for requests no adapter claims."""
        return next(iter(self.protocols.values()))

    def protocol_for(self, method: str, path: str) -> tuple[Protocol, str | None]:
        """The adapter claiming METHOD PATH and the request kind, else the default adapter and None."""
        for protocol in self.protocols.values():
            kind = protocol.kind_of(method, path)
            if kind is not None:
                return protocol, kind
        return self.default_protocol, None


def _claim(table: dict[str, Any], name: str, value: Any, what: str) -> None:
    if name in table:
        raise ValueError(f"a {what} named {name!r} is already registered")
    table[name] = value
