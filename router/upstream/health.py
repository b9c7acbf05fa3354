"""Upstream health: a failed connection marks an upstream down (logged once), a background probe
connects once a second until it answers again (logged once). While it is down, new requests fail
fast with a message naming the URL; requests already queued wait for it until their queue_timeout.
In a pool, a server that is down simply gets no requests while the others are up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from router.log import logger

PROBE_INTERVAL = 1.0


@dataclass
class Health:
    """Whether an upstream answers connections, since when not, and the probe that watches it."""

    name: str
    url: str
    down_since: float | None = None
    last_error: str | None = None
    comebacks: int = 0  # times it answered again after being down (it may have restarted)
    on_up: Callable[[], None] | None = field(default=None, repr=False)  # the gate's wake-up, so queued requests go on
    _probe: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def down(self) -> bool:
        """True from a failed connection until a probe connects again."""
        return self.down_since is not None

    def mark_down(self, error: str) -> None:
        """Record a failed connection; log and start probing on the first one."""
        self.last_error = error
        if self.down:
            return
        self.down_since = time.time()
        logger.error(
            "upstream '%s' at %s is down (%s); no request goes to it until it answers again (checked every second)",
            self.name,
            self.url,
            error,
        )
        self._probe = asyncio.create_task(self._watch(), name=f"ghost-router probe {self.name}")

    def mark_up(self) -> None:
        """Record that the upstream answers again."""
        if not self.down:
            return
        logger.info(
            "upstream '%s' at %s is back after %.1fs",
            self.name,
            self.url,
            time.time() - (self.down_since or time.time()),
        )
        self.down_since, self.last_error = None, None
        self.comebacks += 1
        if self.on_up is not None:
            self.on_up()

    async def _watch(self) -> None:
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        while self.down:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), PROBE_INTERVAL)
            except (TimeoutError, OSError):
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self.mark_up()

    def stop(self) -> None:
        """Stop probing (the server left the rules file)."""
        if self._probe is not None:
            self._probe.cancel()

    async def close(self) -> None:
        """Stop probing and wait for the probe to end."""
        self.stop()
        if self._probe is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe

    def status(self) -> dict[str, object]:
        """For /_router/status."""
        return {"healthy": not self.down, "down_since": self.down_since, "last_error": self.last_error}
