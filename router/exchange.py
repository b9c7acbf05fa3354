"""One request's journey through the router: what arrived, what the rules made of it, what went out."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict, CIMultiDictProxy

from router.errors import BadRequest
from router.jsonutil import dumps_bytes, loads
from router.lazybody import LazyBody

if TYPE_CHECKING:
    from aiohttp import web

    from router.protocols.base import Protocol

_ids = itertools.count(1)


def split_target(request: web.Request) -> tuple[str, str]:
    """The request's path (percent-decoded) and its query string as sent. Read from the request
    line: aiohttp's `path` goes through a URL object, which costs every request time for nothing
    when, as with every API path, there is nothing to decode."""
    path, _, query = request.raw_path.partition("?")
    if "%" in path or not path.startswith("/"):  # escapes, or an absolute URL sent to a proxy
        path = request.path
    return path, query


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

    method: str
    path: str
    headers: CIMultiDictProxy[str] | CIMultiDict[str]
    protocol: Protocol
    kind: str | None = None  # protocol request kind ("messages", "count_tokens"), None if not a protocol call
    query: str = ""
    request: web.Request | None = None  # None when a rule table is evaluated offline (explain, replay)
    target: str = ""
    raw: bytes = b""
    _body: Any = field(default=None, repr=False)  # the parsed body, once something needs all of it
    _lazy: LazyBody | None = field(default=None, repr=False)  # its top-level fields, decoded on use
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
    upstream: str = ""  # the upstream it was forwarded to, if any
    status: int = 0
    queue_wait: float | None = None
    upstream_time: float | None = None
    bytes_out: int = 0
    note: str = ""

    @classmethod
    def from_request(cls, request: web.Request, path: str, query: str, protocol: Protocol, kind: str | None) -> Exchange:
        """An exchange for a live request with PATH and QUERY from `split_target` (the body is read later)."""
        exchange = cls(request.method, path, request.headers, protocol, kind, query, request)
        exchange.target = request.raw_path  # path and query exactly as sent, for forwarding
        return exchange

    def parse(self) -> None:
        """Parse the raw body once, for protocol requests; raise BadRequest on malformed input.
        A protocol that reads bodies field by field (`lazy_body`) gets a LazyBody when the body
        is a well-formed object: only what it reads is decoded."""
        if self.kind is None:
            return
        if not self.raw:
            raise BadRequest("request body is empty; expected a JSON object")
        self._body = self._lazy = None
        if self.protocol.lazy_body:
            self._lazy = LazyBody.split(self.raw)
        if self._lazy is None:
            try:
                self._body = loads(self.raw)
            except ValueError as exc:
                raise BadRequest(f"request body is not valid JSON: {exc}") from None
        try:
            self.view, self.client = self.protocol.parse(self.kind, self.fields, self.headers)
        except UnicodeDecodeError as exc:  # in a LazyBody field: the split skims strings unchecked
            raise BadRequest(f"request body is not valid JSON: {exc}") from None

    @property
    def body(self) -> Any:
        """The parsed JSON body as plain Python objects (None before parsing or without a body).
        Edit it in place, or assign a new one, and set `body_changed`."""
        if self._lazy is not None:  # someone needs all of it: decode the rest, edits included
            self._body, self._lazy = self._lazy.to_dict(), None
        return self._body

    @body.setter
    def body(self, value: Any) -> None:
        self._body, self._lazy = value, None

    @property
    def fields(self) -> Any:
        """The body for reading a few top-level fields: a LazyBody (which decodes only the fields
        read) until something needed the whole `body`, then that body. A field changed here must
        be assigned back (`fields[key] = value`) to be written out."""
        return self._lazy if self._lazy is not None else self._body

    @property
    def path_qs(self) -> str:
        """The path with its query string, as forwarded."""
        if self.target:
            return self.target
        return f"{self.path}?{self.query}" if self.query else self.path

    def body_bytes(self) -> bytes:
        """The body to send upstream: the untouched bytes unless a rewrite changed it."""
        if not self.body_changed:
            return self.raw
        if self._lazy is not None:
            return self._lazy.encode()
        return self.raw if self._body is None else dumps_bytes(self._body)

    def elapsed_ms(self) -> float:
        """Milliseconds since the request arrived."""
        return (time.perf_counter() - self.started) * 1000
