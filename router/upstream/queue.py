"""A priority gate: at most N requests in flight, the rest wait by priority class, FIFO within one.

Waiting is event-driven: a leaving request hands its slot straight to the next ticket's future.
A ticket that leaves while queued (client gone, timeout) is dropped lazily from the heap.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass, field

PRIORITIES = {"user": 0, "subagent": 1, "background": 2}


class QueueFull(Exception):
    """The gate's queue already holds max_queue waiting requests."""


@dataclass(order=True)
class Ticket:
    """One request's place: in the queue until granted, then holding a slot until it leaves."""

    rank: int
    seq: int
    granted: asyncio.Future[None] = field(compare=False)
    left: bool = field(default=False, compare=False)


class PriorityGate:
    """Admits at most `max_concurrency` tickets; queues up to `max_queue` more by priority."""

    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        self._max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.in_flight = 0
        self.queued = 0
        self._heap: list[Ticket] = []
        self._seq = itertools.count()

    @property
    def max_concurrency(self) -> int:
        """How many requests may be in flight at once."""
        return self._max_concurrency

    @max_concurrency.setter
    def max_concurrency(self, value: int) -> None:
        self._max_concurrency = value
        self._grant()

    def enter(self, priority: str) -> Ticket:
        """Take a ticket: granted at once if a slot is free and nobody waits, else queued."""
        ticket = Ticket(PRIORITIES[priority], next(self._seq), asyncio.get_running_loop().create_future())
        if self.queued == 0 and self.in_flight < self._max_concurrency:
            self.in_flight += 1
            ticket.granted.set_result(None)
            return ticket
        if self.queued >= self.max_queue:
            raise QueueFull(f"{self.queued} requests already waiting (max_queue {self.max_queue})")
        heapq.heappush(self._heap, ticket)
        self.queued += 1
        return ticket

    def leave(self, ticket: Ticket) -> None:
        """Give the ticket back: frees its slot if granted, removes it from the queue if not."""
        if ticket.left:
            return
        ticket.left = True
        if ticket.granted.done():
            self.in_flight -= 1
            self._grant()
        else:
            ticket.granted.cancel()
            self.queued -= 1
            if len(self._heap) > 2 * self.queued + 32:  # many gave up while queued: drop their tickets
                self._heap = [t for t in self._heap if not t.left]
                heapq.heapify(self._heap)

    def _grant(self) -> None:
        while self.in_flight < self._max_concurrency and self._heap:
            ticket = heapq.heappop(self._heap)
            if ticket.left:
                continue
            self.queued -= 1
            self.in_flight += 1
            ticket.granted.set_result(None)
