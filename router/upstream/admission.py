"""Slot admission: a request enters its upstream's priority gate, waits for a slot within its
queue_timeout, and is requeued when the server it got refuses the connection.

Errors follow the spec: a full queue (by count or by queued bytes) or a wait past queue_timeout
is 529 overloaded_error; an upstream that is down fails fast with a message naming its URL.
"""

from __future__ import annotations

import time

from router.errors import Overloaded, UpstreamUnavailable
from router.upstream.pool import Upstream
from router.upstream.queue import QueueFull, Ticket


def enter(upstream: Upstream, priority: str, prefix: int | None, size: int) -> Ticket:
    """A ticket in UPSTREAM's gate for a request of SIZE body bytes; raises the client's error."""
    if upstream.all_down():
        raise UpstreamUnavailable(503, down_message(upstream))
    try:
        return upstream.gate.enter(priority, upstream.preferred(prefix), size)
    except QueueFull as exc:
        raise Overloaded(
            f"ghost-router: upstream '{upstream.name}' ({upstream.urls}) is busy: {exc}. "
            "The request was not sent; retry, or raise max_queue / max_queued_bytes in the rules file."
        ) from None


def wait_expired(upstream: Upstream) -> Exception:
    """The error for a request whose queue_timeout ran out before it got a slot."""
    timeout = upstream.config.queue_timeout
    if upstream.all_down():
        return UpstreamUnavailable(
            503,
            f"ghost-router: upstream '{upstream.name}' ({upstream.urls}) went down and did not come back within "
            f"queue_timeout ({timeout:g}s). Start the server there, or fix its url in the rules file.",
        )
    return Overloaded(
        f"ghost-router: request waited {timeout:g}s in the queue of upstream '{upstream.name}' ({upstream.urls}) "
        "without a free slot (queue_timeout). The upstream is busy with other requests; retry, or raise "
        "queue_timeout in the rules file."
    )


def down_message(upstream: Upstream) -> str:
    """Why UPSTREAM takes no requests now, and what to do."""
    servers = upstream.servers
    since = time.strftime("%H:%M:%S", time.localtime(min(s.health.down_since or 0 for s in servers)))
    if len(servers) == 1:
        where, errors = f"at {servers[0].url}", servers[0].health.last_error
    else:
        where, errors = f"(all {len(servers)} servers)", "; ".join(f"{s.url}: {s.health.last_error}" for s in servers)
    return (
        f"ghost-router: upstream '{upstream.name}' {where} is down since {since} ({errors}); "
        "ghost-router checks it every second. Start the server there, or fix its url in the rules file (or --upstream)."
    )
