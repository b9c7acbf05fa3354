"""What plugins register (matchers, actions) and what a compiled action may use while it runs.

Actions get `Services`, a narrow view of the router: the upstreams, the forwarding client, an
HTTP session for calls beside forwarding (the tokenizer), and the hooks. Nothing else of the
router's state reaches them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from typing import Protocol as TypingProtocol

import aiohttp

from router.answers import Result
from router.edits import Edits
from router.protocols.base import Request
from router.upstream.client import UpstreamClient
from router.upstream.pool import UpstreamPool

Test = Callable[[Request], bool]


class Hooks(TypingProtocol):
    """Calling the plugins' observer hooks (router.plugins.Plugins is one)."""

    async def each(self, name: str, **kwargs: Any) -> None:
        """Call every implementation of hook NAME with the arguments it accepts."""


@dataclass(frozen=True)
class Services:
    """What actions may use: the upstreams, the forwarding client, a side session, the hooks."""

    upstreams: UpstreamPool
    client: UpstreamClient
    session: aiohttp.ClientSession | None
    hooks: Hooks


class Action(TypingProtocol):
    """A compiled action step: an answer, or None to go on to the rule's next action."""

    async def run(self, request: Request, edits: Edits, services: Services) -> Result | None:
        """Act on the request; edits carry what a forward will send."""


@dataclass(frozen=True)
class BuildContext:
    """What an action may check while it is compiled: the upstreams the file defines."""

    upstreams: frozenset[str]
    default_upstream: str
    rule: str = ""  # the name of the rule being compiled, for error messages


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
