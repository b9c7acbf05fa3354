"""Hot reload: the rules file is polled for changes (and reloaded on SIGHUP).

A good file replaces the live table at once; requests already running finish under the table
they started with; upstream queues are kept. A bad file leaves the last good table live and the
error (file, line, rule, field) goes to the log and to /_router/status.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import AsyncIterator

from router.config import Overrides, load_config
from router.errors import RulesError
from router.log import logger
from router.state import RouterState

POLL_INTERVAL = 0.25  # seconds: a saved change is live well within one second


class RulesWatcher:
    """Watches one rules file; `reload()` may also be called directly (SIGHUP does)."""

    def __init__(self, state: RouterState, path: str, overrides: Overrides, interval: float = POLL_INTERVAL) -> None:
        self.state, self.path, self.overrides, self.interval = state, path, overrides, interval
        self._signature = self._stat()
        self._wake = asyncio.Event()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size, info.st_ino

    def trigger(self) -> None:
        """Reload at the next tick, changed or not (SIGHUP)."""
        self._signature = None
        self._wake.set()

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            signature = self._stat()
            if signature != self._signature:
                self._signature = signature
                self.reload()

    def reload(self) -> bool:
        """Load the file now; adopt it if valid, else keep the live table and report why."""
        try:
            config = load_config(self.path, self.state.registry, self.overrides)
        except RulesError as error:
            message = str(error)
            if message != self.state.last_load_error:
                logger.error("rules not reloaded, the previous table stays live: %s", message)
            self.state.load_failed(message)
            return False
        self.state.adopt(config)
        logger.info("rules reloaded from %s: %d rules", self.path, len(config.table.rules))
        return True


@contextlib.asynccontextmanager
async def watching(state: RouterState, path: str, overrides: Overrides, interval: float = POLL_INTERVAL) -> AsyncIterator[RulesWatcher]:
    """Run a watcher (and its SIGHUP handler) for the lifetime of the block."""
    watcher = RulesWatcher(state, path, overrides, interval)
    task = asyncio.create_task(watcher.run(), name="ghost-router rules watcher")
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not on this platform/thread
        loop.add_signal_handler(signal.SIGHUP, watcher.trigger)
    try:
        yield watcher
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGHUP)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
