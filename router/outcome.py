"""What became of a request, built once from what the rule, the actions and the writer returned:
the log line, the status counters, the recorder and `exchange_finished` observers read it."""

from __future__ import annotations

from dataclasses import dataclass

from router.answers import Trace


@dataclass(frozen=True)
class Outcome:
    """The rule that matched, its actions, and how the answer went."""

    rule: str = "-"
    why: str = ""
    action: str = "-"
    status: int = 0  # 499 when the client left first (router.errors.CLIENT_CLOSED)
    bytes_out: int = 0
    trace: Trace | None = None  # what a forward did (upstream, priority, queue wait, upstream time)
    note: str = ""

    @property
    def upstream(self) -> str:
        """The upstream the request was forwarded to, or ''."""
        return self.trace.upstream if self.trace else ""

    @property
    def queue_wait(self) -> float | None:
        """Seconds spent waiting for a slot, if forwarded."""
        return self.trace.queue_wait if self.trace else None

    @property
    def upstream_time(self) -> float | None:
        """Seconds from sending to the answer's end, if forwarded."""
        return self.trace.upstream_time if self.trace else None
