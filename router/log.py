"""One readable log line per request, and progress lines while a forwarded one waits. Headers are
never logged; credentials are redacted where shown."""

from __future__ import annotations

import logging

from router.outcome import Outcome
from router.protocols.base import Request

logger = logging.getLogger("ghost_router")
# A forwarded request's progress before its line: queued, sent, answering (a long prefill is not silence).
progress = logging.getLogger("ghost_router.progress")


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}ms"


def request_line(request: Request, outcome: Outcome, verbose: bool = False) -> str:
    """`#id client METHOD path model=... tools=N rule=... action=... status=N wait=... upstream=... bytes=N`."""
    parts = [
        f"#{request.id}",
        request.client or "-",
        request.method,
        request.path,
        f"model={request.view.model or '-'}",
        f"tools={request.view.tools}",
        f"rule={outcome.rule}",
        f"action={outcome.action}",
        f"status={outcome.status}",
        f"wait={_ms(outcome.queue_wait)}",
        f"upstream={_ms(outcome.upstream_time)}",
        f"bytes={outcome.bytes_out}",
        f"total={request.elapsed_ms():.1f}ms",
    ]
    notes = [*(outcome.trace.notes if outcome.trace else []), outcome.note]
    if any(notes):
        parts.append("note=" + "; ".join(note for note in notes if note))
    if verbose and outcome.why:
        parts.append(f"why=[{outcome.why}]")
    return " ".join(parts)
