"""One request's journey through the router: what arrived, what the rules made of it, what went out."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDictProxy

from router.jsonutil import dumps_bytes

if TYPE_CHECKING:
    from aiohttp import web

    from router.protocols.base import Protocol

_ids = itertools.count(1)


@dataclass
class RequestView:
    """The protocol-neutral facts the matchers look at, parsed once from the body."""

    model: str | None = None
    system: str = ""
    user: str = ""
    tool_names: tuple[str, ...] = ()
    stream: bool = False
    max_tokens: int | None = None

    @property
    def tools(self) -> int:
        """How many tools the request declares."""
        return len(self.tool_names)


@dataclass
class Exchange:
    """Per-request state shared by the protocol adapter, the rule engine, the actions and the log."""

    request: web.Request
    protocol: Protocol
    kind: str | None = None  # protocol request kind ("messages", "count_tokens"), None if not a protocol call
    raw: bytes = b""
    body: dict[str, Any] | None = None
    view: RequestView = field(default_factory=RequestView)
    client: str = ""
    id: str = field(default_factory=lambda: f"{next(_ids):06d}")
    started: float = field(default_factory=time.perf_counter)
    body_changed: bool = False
    model_rewritten: bool = False  # a rule chose the model; the upstream's `model` does not override it
    header_edits: dict[str, str | None] = field(default_factory=dict)  # None removes the header
    response: web.StreamResponse | None = None  # set once response headers have gone out
    # outcome, for the log line and the status counters
    rule: str = "-"
    why: str = ""
    action: str = "-"
    priority: str = ""
    status: int = 0
    queue_wait: float | None = None
    upstream_time: float | None = None
    bytes_out: int = 0
    note: str = ""

    @property
    def method(self) -> str:
        """The HTTP method."""
        return self.request.method

    @property
    def path(self) -> str:
        """The request path without the query string."""
        return self.request.path

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The request headers as received."""
        return self.request.headers

    def body_bytes(self) -> bytes:
        """The body to send upstream: the untouched bytes unless a rewrite changed it."""
        if self.body_changed and self.body is not None:
            return dumps_bytes(self.body)
        return self.raw

    def elapsed_ms(self) -> float:
        """Milliseconds since the request arrived."""
        return (time.perf_counter() - self.started) * 1000
