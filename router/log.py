"""One readable log line per request. Headers are never logged; secrets are redacted where shown."""

from __future__ import annotations

import logging
from typing import Iterable

from router.exchange import Exchange

logger = logging.getLogger("ghost_router")
SECRET_HEADERS = frozenset({"x-api-key", "authorization", "proxy-authorization", "cookie", "set-cookie", "api-key"})


def redact_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers with secret values replaced by a marker that keeps only their length."""
    return {k: (f"<redacted:{len(v)}>" if k.lower() in SECRET_HEADERS else v) for k, v in headers}


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}ms"


def request_line(ex: Exchange, verbose: bool = False) -> str:
    """`#id client METHOD path model=... tools=N rule=... action=... status=N wait=... upstream=... bytes=N`."""
    parts = [
        f"#{ex.id}",
        ex.client or "-",
        ex.method,
        ex.path,
        f"model={ex.view.model or '-'}",
        f"tools={ex.view.tools}",
        f"rule={ex.rule}",
        f"action={ex.action}",
        f"status={ex.status}",
        f"wait={_ms(ex.queue_wait)}",
        f"upstream={_ms(ex.upstream_time)}",
        f"bytes={ex.bytes_out}",
        f"total={ex.elapsed_ms():.1f}ms",
    ]
    if ex.note:
        parts.append(f"note={ex.note}")
    if verbose and ex.why:
        parts.append(f"why=[{ex.why}]")
    return " ".join(parts)
