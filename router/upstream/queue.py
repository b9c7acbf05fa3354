"""A priority gate in front of one or more servers: each server takes at most its own number of
requests at once, the rest wait by priority class, FIFO within one.

A granted ticket goes to the least busy server that is up; on equal load, to the one the caller
prefers (the server that last saw the same prompt prefix, so its prompt cache is warm).

Waiting is event-driven: a leaving request hands its slot straight to the next ticket's future.
A ticket that leaves while queued (client gone, timeout) is dropped lazily from the heap.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from router.upstream.health import Health

PRIORITIES = {"user": 0, "subagent": 1, "background": 2}


class QueueFull(Exception):
    """The gate's queue already holds max_queue waiting requests."""


@dataclass(eq=False)
class Server:
    """One server behind an upstream: its URL, its own concurrency limit, its health and counters."""

    url: str
    max_concurrency: int = 1
    health: Health = None  # type: ignore[assignment]
    in_flight: int = 0
    forwarded: int = 0
    errors: int = 0
    authorization: str | None = field(default=None, repr=False)  # Basic credentials from the configured URL

    def __post_init__(self) -> None:
        if self.health is None:
            self.health = Health("", self.url)

    def free_share(self) -> float | None:
        """How busy the server is (0 idle .. <1), or None when it is down or full."""
        if self.health.down or self.in_flight >= self.max_concurrency:
            return None
        return self.in_flight / self.max_concurrency

    def status(self) -> dict[str, object]:
        """For /_router/status."""
        return {
            "url": self.url,
            "max_concurrency": self.max_concurrency,
            "in_flight": self.in_flight,
            "forwarded": self.forwarded,
            "errors": self.errors,
            **self.health.status(),
        }


@dataclass(order=True)
class Ticket:
    """One request's place: in the queue until granted, then holding a slot on `server` until it leaves."""

    rank: int
    seq: int
    granted: asyncio.Future[None] = field(compare=False)
    prefer: Server | None = field(default=None, compare=False)
    server: Server | None = field(default=None, compare=False)
    left: bool = field(default=False, compare=False)
    size: int = field(default=0, compare=False)  # body bytes held while queued


class PriorityGate:
    """Admits tickets onto SERVERS within each one's max_concurrency; queues up to `max_queue` more by priority."""

    def __init__(self, servers: Iterable[Server], max_queue: int, max_queued_bytes: int = 1 << 62) -> None:
        self.servers: list[Server] = []
        self.max_queue = max_queue
        self.max_queued_bytes = max_queued_bytes
        self.queued = 0
        self.queued_bytes = 0
        self._heap: list[Ticket] = []
        self._seq = itertools.count()
        self.set_servers(servers)

    @property
    def in_flight(self) -> int:
        """Requests holding a slot on any server."""
        return sum(server.in_flight for server in self.servers)

    @property
    def max_concurrency(self) -> int:
        """Slots of all servers together."""
        return sum(server.max_concurrency for server in self.servers)

    def set_servers(self, servers: Iterable[Server]) -> None:
        """Serve from SERVERS from now on (tickets granted on a dropped server still leave cleanly)."""
        self.servers = list(servers)
        for server in self.servers:
            server.health.on_up = self.wake
        self.wake()

    def enter(self, priority: str, prefer: Server | None = None, size: int = 0) -> Ticket:
        """Take a ticket for a request of SIZE body bytes: granted at once if a server has a free
        slot and nobody waits, else queued (within max_queue requests and max_queued_bytes)."""
        ticket = Ticket(
            PRIORITIES[priority], next(self._seq), asyncio.get_running_loop().create_future(), prefer, size=size
        )
        if self.queued == 0:
            server = self._pick(prefer)
            if server is not None:
                self._assign(ticket, server)
                return ticket
        if self.queued >= self.max_queue:
            raise QueueFull(f"{self.queued} requests already waiting (max_queue {self.max_queue})")
        if self.queued_bytes + size > self.max_queued_bytes:
            raise QueueFull(
                f"the {self.queued} waiting requests hold {self.queued_bytes} bytes; this one's {size} would pass "
                f"max_queued_bytes ({self.max_queued_bytes})"
            )
        self._push(ticket)
        return ticket

    def requeue(self, ticket: Ticket) -> Ticket:
        """TICKET's server refused the connection: free that slot and queue again in the old place."""
        again = Ticket(
            ticket.rank, ticket.seq, asyncio.get_running_loop().create_future(), ticket.prefer, size=ticket.size
        )
        if not ticket.left and ticket.server is not None:
            ticket.left = True
            ticket.server.in_flight -= 1
        self._push(again)  # it held a slot already, so max_queue does not turn it away
        self.wake()
        return again

    def leave(self, ticket: Ticket) -> None:
        """Give the ticket back: frees its slot if granted, removes it from the queue if not."""
        if ticket.left:
            return
        ticket.left = True
        if ticket.server is not None:
            ticket.server.in_flight -= 1
            self.wake()
        else:
            ticket.granted.cancel()
            self.queued -= 1
            self.queued_bytes -= ticket.size
            if len(self._heap) > 2 * self.queued + 32:  # many gave up while queued: drop their tickets
                self._heap = [t for t in self._heap if not t.left]
                heapq.heapify(self._heap)

    def hold(self, server: Server) -> bool:
        """Take a slot of SERVER for the router's own work (saving its slot to disk), only when the
        server runs nothing and nobody waits; give it back with release."""
        if self.queued or server.in_flight or server.health.down:
            return False
        server.in_flight += 1
        return True

    def release(self, server: Server) -> None:
        """Give back a slot taken with hold."""
        server.in_flight -= 1
        self.wake()

    def place(self, ticket: Ticket) -> tuple[int, int] | None:
        """TICKET's place in line (1 is next) and how many wait, or None when it is not waiting.
        A later request of a higher priority goes ahead of it, so the place can grow."""
        if ticket.left or ticket.granted.done():
            return None
        ahead = sum(1 for other in self._heap if not other.left and other < ticket)
        return ahead + 1, self.queued

    def wake(self) -> None:
        """Grant waiting tickets while some server has a free slot (after a leave, a reload, a server's return)."""
        while self._heap:
            ticket = self._heap[0]
            if ticket.left:
                heapq.heappop(self._heap)
                continue
            server = self._pick(ticket.prefer)
            if server is None:
                return
            heapq.heappop(self._heap)
            self.queued -= 1
            self.queued_bytes -= ticket.size
            self._assign(ticket, server)

    def _pick(self, prefer: Server | None) -> Server | None:
        """The least busy server that is up and has a free slot; PREFER wins a tie."""
        best, best_key = None, None
        for server in self.servers:
            share = server.free_share()
            if share is None:
                continue
            key = (share, server is not prefer)
            if best_key is None or key < best_key:
                best, best_key = server, key
        return best

    def _push(self, ticket: Ticket) -> None:
        heapq.heappush(self._heap, ticket)
        self.queued += 1
        self.queued_bytes += ticket.size

    @staticmethod
    def _assign(ticket: Ticket, server: Server) -> None:
        server.in_flight += 1
        ticket.server = server
        ticket.granted.set_result(None)
