"""The headers a forwarded request and its answer carry across the router: hop-by-hop headers
(and those `Connection` names) never cross, client credentials cross only with
forward_client_auth, and the upstream's and the rule's header edits are applied."""

from __future__ import annotations

from typing import Any

from router.edits import Edits
from router.protocols.base import Request
from router.secrets import CREDENTIAL_HEADERS
from router.upstream.client import UpstreamResponse
from router.upstream.pool import Upstream
from router.upstream.queue import Server

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "expect"}


def request_headers(request: Request, edits: Edits, upstream: Upstream, server: Server) -> list[tuple[str, str]]:
    """The client's headers minus hop-by-hop ones (and those `Connection` names), minus client
    credentials (unless forward_client_auth), plus the upstream's and the rule's header edits."""
    config = upstream.config
    skipped = set(NOT_FORWARDED) | _connection_listed(request.headers.getall("Connection", []))
    if not config.forward_client_auth:
        skipped |= CREDENTIAL_HEADERS
    changed = {name.lower(): (name, value) for name, value in [*config.headers, *edits.headers.items()]}
    if server.authorization and "authorization" not in changed:
        changed["authorization"] = ("Authorization", server.authorization)
    headers = [
        (name, _sendable(value))
        for name, value in request.headers.items()
        if name.lower() not in skipped and name.lower() not in changed
    ]
    headers += [(name, value) for name, value in changed.values() if value is not None]
    return headers


def response_headers(up: UpstreamResponse) -> tuple[tuple[str, str], ...]:
    """The upstream's headers for the client, as received (UTF-8), minus hop-by-hop ones."""
    listed = _connection_listed(v.decode("latin-1") for k, v in up.raw_headers if k.lower() == b"connection")
    headers = []
    for name, value in up.raw_headers:
        text = name.decode("latin-1")
        if text.lower() not in HOP_BY_HOP and text.lower() not in listed:
            headers.append((text, value.decode("utf-8", "replace")))
    return tuple(headers)


def _connection_listed(values: Any) -> set[str]:
    return {token.strip().lower() for value in values for token in value.split(",") if token.strip()}


def _sendable(value: str) -> str:
    """A received header value that can be encoded again (invalid UTF-8 bytes become U+FFFD)."""
    return value if value.isascii() else value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def content_type(up: UpstreamResponse) -> str:
    return next((v.decode("latin-1").lower() for k, v in up.raw_headers if k.lower() == b"content-type"), "")


def slots_headers(upstream: Upstream, server: Server) -> list[tuple[str, str]]:
    """The upstream's own headers (its credentials) for GET /slots."""
    headers = list(upstream.config.headers)
    if server.authorization and not any(name.lower() == "authorization" for name, _ in headers):
        headers.append(("Authorization", server.authorization))
    return headers
