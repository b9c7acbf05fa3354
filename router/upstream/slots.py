"""Prefill progress from llama-server's `GET /slots`: while forwarded requests on a server have been
sent and have no answer yet, the router asks that server for its slots (one request at a time, every
POLL_EVERY seconds once the oldest has waited POLL_AFTER) and pairs each request with the slot
working on it: tokens of its prompt processed so far, the rate, and an estimated time left.

Pairing is by order, because /slots does not say which HTTP request a slot serves. llama-server
numbers tasks as requests arrive (`id_task`); the router pairs its waiting requests on the server,
oldest first, with busy slots whose task is newer than any it had seen when the request was sent,
lowest task first. A pairing made with a choice (several waiting requests, or more candidate slots
than requests: another client of the same server) is marked `guess`.

The prompt's size is not in /slots (its `n_prompt_tokens` counts the tokens in the slot so far), so
the total is the router's own estimate of the request's tokens, and the time left follows from it:
both are marked as estimates. A server whose /slots does not answer a list of slots (not a
llama-server, or one started with --no-slots) is not asked again for RETRY_AFTER seconds.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from router import progress as words
from router.jsonutil import loads
from router.upstream.client import ConnectFailed, ResponseFailed, UpstreamClient
from router.upstream.queue import Server

POLL_AFTER = 1.0  # seconds a request waits for its answer before its server's slots are asked for
POLL_EVERY = 1.0  # seconds between two /slots requests to one server
TIMEOUT = 60.0  # seconds a /slots answer may take: llama-server answers it between two prompt batches
RETRY_AFTER = 600.0  # seconds before a server without /slots is asked again
LIMIT = 4 << 20  # bytes of a /slots answer read


@dataclass
class Prefill:
    """One forwarded request waiting for its answer, and what its server's slots say about it."""

    request_id: str
    total: Callable[[], int]  # the router's estimate of the prompt's tokens, computed when first needed
    floor: int = -1  # the highest task id the router had seen on the server when this was sent
    sent: float = field(default_factory=time.monotonic)
    task: int | None = None  # llama-server's id_task, once paired
    guess: bool = False
    ended: bool = False  # the paired task is no longer processing
    cached: int = 0
    processed: int = 0
    generated: int = 0
    _estimate: int | None = None
    _first: tuple[float, int] | None = None  # (when, processed) at the first report of progress
    _last: tuple[float, int] | None = None  # ... at the latest report that changed it

    def update(self, slot: dict[str, Any], now: float) -> None:
        """Take the paired slot's numbers."""
        self.cached = _int(slot.get("n_prompt_tokens_cache"))
        self.processed = _int(slot.get("n_prompt_tokens_processed"))
        token = slot.get("next_token")
        first = token[0] if isinstance(token, list) and token and isinstance(token[0], dict) else {}
        self.generated = _int(first.get("n_decoded"))
        if self._first is None:
            self._first = (now, self.processed)
        if self._last is None or self.processed != self._last[1]:
            self._last = (now, self.processed)

    @property
    def estimate(self) -> int:
        """The prompt's tokens: the router's estimate, or what the server already holds when more."""
        if self._estimate is None:
            self._estimate = self.total()
        return max(self._estimate, self.cached + self.processed)

    @property
    def rate(self) -> float | None:
        """Prompt tokens per second, from the reports seen (or since sending, after one report)."""
        if self._first is None or self._last is None:
            return None
        (t0, p0), (t1, p1) = self._first, self._last
        if p1 > p0 and t1 > t0:
            return (p1 - p0) / (t1 - t0)
        return p1 / (t1 - self.sent) if p1 > 0 and t1 > self.sent else None

    @property
    def eta(self) -> float | None:
        """Estimated seconds until the prompt is read (None while no rate is known), counting down
        between reports: llama-server reports once per batch of the prompt (2048 tokens by default)."""
        rate, left = self.rate, self.estimate - self.cached - self.processed
        if not rate or self.generated or self._last is None:
            return None
        return max(max(left, 0) / rate - (time.monotonic() - self._last[0]), 0.0)

    def measured(self) -> tuple[int, float] | None:
        """Prompt tokens the server was seen processing and the seconds that took, if it was seen
        making progress (for the prefill rate the savings ledger prices tokens at)."""
        if self._first is None or self._last is None:
            return None
        (t0, p0), (t1, p1) = self._first, self._last
        return (p1 - p0, t1 - t0) if p1 > p0 and t1 > t0 else None

    def status(self) -> dict[str, object] | None:
        """For /_router/status: None until paired with a slot."""
        if self.task is None:
            return None
        rate, eta = self.rate, self.eta
        return {
            "phase": "generating" if self.generated else "prefill",
            "task": self.task,
            "guess": self.guess,
            "prompt_tokens_estimate": self.estimate,
            "cached": self.cached,
            "processed": self.processed,
            "generated": self.generated,
            "rate": None if rate is None else round(rate, 1),
            "eta_s_estimate": None if eta is None else round(eta, 1),
        }

    def describe(self) -> str:
        """The log's words: `6,144 of ~10,240 prompt tokens (60%), 102 tokens/s, ~40 s left`."""
        doc = self.status()
        return "" if doc is None else words.prefill(doc)


class SlotWatch:
    """One server's /slots, asked while requests sent to it wait for their answers."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.waiting: list[Prefill] = []
        self.highest = -1  # the highest id_task seen
        self.unsupported_until = 0.0
        self.polls = 0
        self.measured_tokens, self.measured_seconds = 0, 0.0  # prefill seen, over all requests
        self._task: asyncio.Task[None] | None = None

    def add(self, prefill: Prefill, client: UpstreamClient, headers: list[tuple[str, str]]) -> None:
        """Follow PREFILL until `remove`; HEADERS go with each /slots request (the upstream's credentials)."""
        prefill.floor = self.highest
        self.waiting.append(prefill)
        if self._task is None and time.monotonic() >= self.unsupported_until:
            self._task = asyncio.get_running_loop().create_task(self._poll(client, headers))

    def remove(self, prefill: Prefill) -> None:
        """Stop following PREFILL (its answer started, or it failed)."""
        if prefill in self.waiting:
            self.waiting.remove(prefill)
            if measured := prefill.measured():
                self.measured_tokens += measured[0]
                self.measured_seconds += measured[1]
        if not self.waiting and self._task is not None:
            self._task.cancel()  # nothing left to follow (a new request starts a new poll)
            self._task = None

    async def _poll(self, client: UpstreamClient, headers: list[tuple[str, str]]) -> None:
        try:
            while self.waiting:
                due = min(p.sent for p in self.waiting) + POLL_AFTER - time.monotonic()
                if due > 0:
                    await asyncio.sleep(due)
                    continue
                slots = await self._ask(client, headers)
                if slots is None:
                    self.unsupported_until = time.monotonic() + RETRY_AFTER
                    return
                self.pair(slots, time.monotonic())
                await asyncio.sleep(POLL_EVERY)
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    async def _ask(self, client: UpstreamClient, headers: list[tuple[str, str]]) -> list[dict[str, Any]] | None:
        """The server's slots, or None when it has no /slots (or did not answer in time)."""
        self.polls += 1
        try:
            up = await client.send("GET", self.server.url + "/slots", headers, b"", TIMEOUT, TIMEOUT)
        except (ConnectFailed, ResponseFailed, TimeoutError, RuntimeError):  # RuntimeError: the router is closing
            return []  # the forwarded request reports the server's failure; try again next time
        try:
            body, size = [], 0
            while size < LIMIT:
                chunk = await up.read_chunk()
                if not chunk:
                    break
                body.append(chunk)
                size += len(chunk)
        except (ResponseFailed, TimeoutError):
            up.close()
            return []
        up.release()
        try:
            slots = loads(b"".join(body)) if up.status == 200 else None
        except ValueError:
            slots = None
        if not isinstance(slots, list) or not all(isinstance(s, dict) and "is_processing" in s for s in slots):
            return None
        return slots

    def pair(self, slots: list[dict[str, Any]], now: float) -> None:
        """Pair waiting requests with busy slots (see the module's docstring) and take their numbers."""
        busy = {s["id_task"]: s for s in slots if s.get("is_processing") and isinstance(s.get("id_task"), int)}
        self.highest = max([self.highest, *(s["id_task"] for s in slots if isinstance(s.get("id_task"), int))])
        for prefill in self.waiting:
            if prefill.task is not None and not prefill.ended:
                if prefill.task in busy:
                    prefill.update(busy[prefill.task], now)
                else:
                    prefill.ended = True
        claimed = {p.task for p in self.waiting}
        free = sorted(task for task in busy if task not in claimed)
        unpaired = [p for p in self.waiting if p.task is None]
        for prefill in unpaired:
            options = [task for task in free if task > prefill.floor]
            if not options:
                continue
            prefill.task, prefill.guess = options[0], len(options) > 1 or len(unpaired) > 1
            free.remove(options[0])
            prefill.update(busy[options[0]], now)


_watches: weakref.WeakKeyDictionary[Server, SlotWatch] = weakref.WeakKeyDictionary()


def watch(server: Server) -> SlotWatch:
    """SERVER's slot watch (one per server, made when first needed)."""
    found = _watches.get(server)
    if found is None:
        found = _watches[server] = SlotWatch(server)
    return found


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
