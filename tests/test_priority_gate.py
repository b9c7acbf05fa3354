"""The priority gate alone: slots, priority classes, FIFO within a class, leaving, limits."""

from __future__ import annotations

import asyncio

import pytest

from router.upstream.queue import PriorityGate, QueueFull


async def test_grants_up_to_max_concurrency_then_queues():
    gate = PriorityGate(max_concurrency=2, max_queue=10)
    a, b, c = gate.enter("user"), gate.enter("user"), gate.enter("user")
    assert a.granted.done() and b.granted.done() and not c.granted.done()
    assert (gate.in_flight, gate.queued) == (2, 1)
    gate.leave(a)
    assert c.granted.done() and (gate.in_flight, gate.queued) == (2, 0)


async def test_priority_classes_then_fifo():
    gate = PriorityGate(max_concurrency=1, max_queue=10)
    holder = gate.enter("user")
    order = ["background", "subagent", "user", "background", "user", "subagent"]
    tickets = [(f"{p}{i}", gate.enter(p)) for i, p in enumerate(order)]
    granted = []
    gate.leave(holder)
    while len(granted) < len(tickets):
        name, ticket = next((n, t) for n, t in tickets if t.granted.done() and n not in granted)
        granted.append(name)
        gate.leave(ticket)
    assert granted == ["user2", "user4", "subagent1", "subagent5", "background0", "background3"]
    assert (gate.in_flight, gate.queued) == (0, 0)


async def test_leaving_while_queued_never_gets_a_slot():
    gate = PriorityGate(max_concurrency=1, max_queue=10)
    holder, gone, next_one = gate.enter("user"), gate.enter("user"), gate.enter("user")
    gate.leave(gone)
    assert gone.granted.cancelled() and gate.queued == 1
    gate.leave(holder)
    assert next_one.granted.done() and gate.in_flight == 1
    gate.leave(gone)  # leaving twice is harmless
    assert (gate.in_flight, gate.queued) == (1, 0)


async def test_queue_limit():
    gate = PriorityGate(max_concurrency=1, max_queue=1)
    gate.enter("user")
    gate.enter("user")
    with pytest.raises(QueueFull):
        gate.enter("user")


async def test_raising_max_concurrency_admits_waiters_at_once():
    gate = PriorityGate(max_concurrency=1, max_queue=10)
    gate.enter("user")
    waiting = [gate.enter("user") for _ in range(3)]
    gate.max_concurrency = 3
    assert [t.granted.done() for t in waiting] == [True, True, False]


async def test_many_leavers_do_not_grow_the_heap_without_bound():
    gate = PriorityGate(max_concurrency=1, max_queue=5)
    gate.enter("user")
    for _ in range(1000):
        gate.leave(gate.enter("background"))
    assert gate.queued == 0 and len(gate._heap) < 40


async def test_tasks_waiting_on_grants_run_in_priority_order():
    gate = PriorityGate(max_concurrency=1, max_queue=10)
    ran: list[str] = []

    async def job(name: str, priority: str) -> None:
        ticket = gate.enter(priority)
        try:
            await ticket.granted
            ran.append(name)
            await asyncio.sleep(0)
        finally:
            gate.leave(ticket)

    holder = gate.enter("user")
    jobs = [asyncio.create_task(job(n, p)) for n, p in [("title", "background"), ("agent", "subagent"), ("turn", "user")]]
    await asyncio.sleep(0)
    gate.leave(holder)
    await asyncio.gather(*jobs)
    assert ran == ["turn", "agent", "title"]
