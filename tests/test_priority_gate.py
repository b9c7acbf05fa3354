"""The priority gate alone: slots, priority classes, FIFO within a class, leaving, limits, and
sharing requests among the servers of a pool."""

from __future__ import annotations

import asyncio

import pytest

from router.upstream.queue import PriorityGate, QueueFull, Server


def one_server_gate(max_concurrency: int, max_queue: int) -> PriorityGate:
    return PriorityGate([Server("http://a", max_concurrency)], max_queue)


async def test_grants_up_to_max_concurrency_then_queues():
    gate = one_server_gate(2, 10)
    a, b, c = gate.enter("user"), gate.enter("user"), gate.enter("user")
    assert a.granted.done() and b.granted.done() and not c.granted.done()
    assert (gate.in_flight, gate.queued) == (2, 1)
    gate.leave(a)
    assert c.granted.done() and (gate.in_flight, gate.queued) == (2, 0)


async def test_priority_classes_then_fifo():
    gate = one_server_gate(1, 10)
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
    gate = one_server_gate(1, 10)
    holder, gone, next_one = gate.enter("user"), gate.enter("user"), gate.enter("user")
    gate.leave(gone)
    assert gone.granted.cancelled() and gate.queued == 1
    gate.leave(holder)
    assert next_one.granted.done() and gate.in_flight == 1
    gate.leave(gone)  # leaving twice is harmless
    assert (gate.in_flight, gate.queued) == (1, 0)


async def test_queue_limit():
    gate = one_server_gate(1, 1)
    gate.enter("user")
    gate.enter("user")
    with pytest.raises(QueueFull):
        gate.enter("user")


async def test_raising_max_concurrency_admits_waiters_at_once():
    gate = one_server_gate(1, 10)
    gate.enter("user")
    waiting = [gate.enter("user") for _ in range(3)]
    gate.servers[0].max_concurrency = 3
    gate.wake()
    assert [t.granted.done() for t in waiting] == [True, True, False]


async def test_many_leavers_do_not_grow_the_heap_without_bound():
    gate = one_server_gate(1, 5)
    gate.enter("user")
    for _ in range(1000):
        gate.leave(gate.enter("background"))
    assert gate.queued == 0 and len(gate._heap) < 40


async def test_tasks_waiting_on_grants_run_in_priority_order():
    gate = one_server_gate(1, 10)
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
    jobs = [
        asyncio.create_task(job(n, p)) for n, p in [("title", "background"), ("agent", "subagent"), ("turn", "user")]
    ]
    await asyncio.sleep(0)
    gate.leave(holder)
    await asyncio.gather(*jobs)
    assert ran == ["turn", "agent", "title"]


async def test_a_pool_grants_the_least_busy_server_within_each_ones_limit():
    small, big = Server("http://small", 1), Server("http://big", 2)
    gate = PriorityGate([small, big], max_queue=10)
    first, second, third, fourth = (gate.enter("user") for _ in range(4))
    assert [t.server for t in (first, second, third)] == [small, big, big]  # 0/1 beats 0/2 by order, then 0/2, then 1/2
    assert not fourth.granted.done() and (gate.in_flight, gate.max_concurrency) == (3, 3)
    gate.leave(second)
    assert fourth.server is big and (small.in_flight, big.in_flight) == (1, 2)


async def test_on_equal_load_the_preferred_server_wins_but_never_over_a_less_busy_one():
    a, b = Server("http://a", 2), Server("http://b", 2)
    gate = PriorityGate([a, b], max_queue=10)
    assert gate.enter("user", prefer=b).server is b
    assert gate.enter("user", prefer=b).server is a  # b is busier now: least busy first


async def test_a_server_that_is_down_gets_nothing_and_its_return_wakes_the_queue():
    a, b = Server("http://a", 1), Server("http://b", 1)
    gate = PriorityGate([a, b], max_queue=10)
    a.health.down_since = 1.0
    holder = gate.enter("user")
    waiting = gate.enter("user")
    assert holder.server is b and not waiting.granted.done()
    a.health.mark_up()
    assert waiting.server is a


async def test_a_refused_ticket_is_queued_again_ahead_of_later_arrivals():
    a, b = Server("http://a", 1), Server("http://b", 1)
    gate = PriorityGate([a, b], max_queue=10)
    refused, busy = gate.enter("user"), gate.enter("user")
    later = gate.enter("user")
    a.health.down_since = 1.0  # as the proxy marks it on a refused connection
    again = gate.requeue(refused)
    assert not again.granted.done() and gate.queued == 2 and a.in_flight == 0
    gate.leave(busy)
    assert again.server is b and not later.granted.done()
    gate.leave(refused)  # leaving the old ticket again changes nothing
    assert (a.in_flight, b.in_flight, gate.queued) == (0, 1, 1)
