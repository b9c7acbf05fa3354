"""What the rule table can name: matchers, actions and protocol adapters, each registered once.

The built-ins register here exactly as plugins will; the rules JSON Schema is built from what is
registered, so an added matcher or action is validated like a built-in one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol as TypingProtocol

if TYPE_CHECKING:
    from aiohttp import web

    from router.exchange import Exchange
    from router.protocols.base import Protocol
    from router.state import RouterState

Test = Callable[["Exchange"], bool]


class Action(TypingProtocol):
    """A compiled action step. `run` returns the response, or None to go on to the next step."""

    async def run(self, ex: Exchange, state: RouterState) -> web.StreamResponse | None:
        """Act on the exchange."""


@dataclass(frozen=True)
class BuildContext:
    """What an action may check while it is compiled: the upstreams the file defines."""

    upstreams: frozenset[str]
    default_upstream: str


@dataclass(frozen=True)
class MatcherSpec:
    """A matcher usable under `match:`. `compile(value)` returns a test or raises ValueError."""

    name: str
    schema: dict[str, Any]
    compile: Callable[[Any], Test]
    help: str = ""


@dataclass(frozen=True)
class ActionSpec:
    """An action usable under `action:`. A terminal action answers; others edit and pass on."""

    name: str
    schema: dict[str, Any]
    build: Callable[[Any, BuildContext], Action]
    terminal: bool = True
    help: str = ""


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


def builtin_registry() -> Registry:
    """A registry holding only the built-in protocols, matchers and actions (no other plugin)."""
    from router.plugins import load_plugins

    registry, _ = load_plugins(entry_points=False).registry()
    return registry
