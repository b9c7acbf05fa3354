"""Hot reload: the rules file and the plugin files are polled for changes (and reloaded on SIGHUP).

A good file replaces the live table at once; requests already running finish under the table
they started with; upstream queues are kept. A bad file (or a plugin that fails to load) leaves
the last good table live and the error (file, line, rule, field) goes to the log and to
/_router/status.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from router.config import Overrides, load_config
from router.errors import RulesError
from router.log import logger
from router.plugins import load_plugins
from router.state import RouterState

POLL_INTERVAL = 0.25  # seconds: a saved change is live well within one second
Signature = tuple[tuple[str, int, int, int], ...]


def _signature(paths: Sequence[Path]) -> Signature:
    result = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            continue
        result.append((str(path), info.st_mtime_ns, info.st_size, info.st_ino))
    return tuple(result)


class RulesWatcher:
    """Watches one rules file and the plugin folders; `reload()` may also be called directly."""

    def __init__(
        self,
        state: RouterState,
        path: str,
        overrides: Overrides,
        plugin_dirs: Sequence[str] = (),
        interval: float = POLL_INTERVAL,
    ) -> None:
        self.state, self.path, self.overrides, self.interval = state, path, overrides, interval
        self.plugin_dirs = [Path(d) for d in plugin_dirs]
        self._rules_signature = self._rules_stat()
        self._plugins_signature = self._plugins_stat()
        self._wake = asyncio.Event()

    def _rules_stat(self) -> Signature | None:
        return _signature([Path(self.path)]) or None

    def _plugins_stat(self) -> Signature:
        return _signature(sorted(p for d in self.plugin_dirs for p in d.glob("*.py")))

    def trigger(self) -> None:
        """Reload at the next tick, changed or not (SIGHUP)."""
        self._rules_signature = ()
        self._plugins_signature = (("", -1, -1, -1),)
        self._wake.set()

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            rules, plugins = self._rules_stat(), self._plugins_stat()
            if rules != self._rules_signature or plugins != self._plugins_signature:
                with_plugins = plugins != self._plugins_signature
                self._rules_signature, self._plugins_signature = rules, plugins
                self.reload(with_plugins)

    def reload(self, with_plugins: bool = False) -> bool:
        """Load the file (and the plugins) now; adopt them if valid, else keep the live table."""
        state = self.state
        try:
            if with_plugins:
                plugins = load_plugins(self.plugin_dirs)
                if plugins.errors:
                    raise RulesError(plugins.errors[0])
                registry, plugin_rules = plugins.registry()
                if plugins.errors:
                    raise RulesError(plugins.errors[0])
            else:
                plugins, registry, plugin_rules = state.plugins, state.registry, state.plugin_rules
            config = load_config(self.path, registry, self.overrides, plugin_rules)
            if state.exposed and not state.insecure and not config.api_keys:
                raise RulesError(
                    f"{self.path}: auth.api_keys: this router listens on {state.listen_host}, beyond loopback, and "
                    "the new rules have no inbound keys: anyone who can reach it could use your model. Keep the keys, "
                    "or restart with --host 127.0.0.1 (or --insecure)."
                )
        except RulesError as error:
            message = str(error)
            if message != state.last_load_error:
                logger.error("rules not reloaded, the previous table stays live: %s", message)
            state.load_failed(message)
            return False
        state.adopt(config, plugins, registry, plugin_rules)
        extra = f", plugins: {', '.join(plugins.loaded)}" if with_plugins else ""
        logger.info("rules reloaded from %s: %d rules%s", self.path, len(config.table.rules), extra)
        return True


@contextlib.asynccontextmanager
async def watching(
    state: RouterState,
    path: str,
    overrides: Overrides,
    plugin_dirs: Sequence[str] = (),
    interval: float = POLL_INTERVAL,
) -> AsyncIterator[RulesWatcher]:
    """Run a watcher (and its SIGHUP handler) for the lifetime of the block."""
    watcher = RulesWatcher(state, path, overrides, plugin_dirs, interval)
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
