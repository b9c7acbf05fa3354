"""Credentials: the one list of where clients and URLs carry them, and how they are kept out of
everything the router writes (upstream requests, logs, records, status pages, error bodies)."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

#: request and response headers that carry a credential (lower case)
CREDENTIAL_HEADERS = frozenset(
    {"x-api-key", "authorization", "proxy-authorization", "x-goog-api-key", "api-key", "cookie", "set-cookie"}
)
#: query parameters that carry a credential (Gemini's `?key=`, and common others)
CREDENTIAL_PARAMS = frozenset({"key", "api_key", "api-key", "apikey", "access_token", "token"})


def redacted(value: str) -> str:
    """A marker that keeps only the secret's length."""
    return f"<redacted:{len(value)}>"


def redact_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers with credential values replaced by `redacted` markers."""
    return {k: (redacted(v) if k.lower() in CREDENTIAL_HEADERS else v) for k, v in headers}


def redact_query(query: str) -> str:
    """QUERY with credential parameters' values replaced by `redacted` markers."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(name.lower() in CREDENTIAL_PARAMS for name, _ in pairs):
        return query
    return urlencode([(n, redacted(v) if n.lower() in CREDENTIAL_PARAMS else v) for n, v in pairs], safe="<>:")


def strip_query_credentials(query: str) -> str:
    """QUERY without credential parameters (they are not forwarded upstream)."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(name.lower() in CREDENTIAL_PARAMS for name, _ in pairs):
        return query
    return urlencode([(n, v) for n, v in pairs if n.lower() not in CREDENTIAL_PARAMS])


def split_userinfo(url: str) -> tuple[str, str | None]:
    """URL without `user:password@`, and the Basic Authorization value that carries them (or None)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return clean, "Basic " + base64.b64encode(pair.encode()).decode()
