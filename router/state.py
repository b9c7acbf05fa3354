"""The router's live state: the rule table in force, the upstreams, the HTTP client, counters."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from router.upstream.http1 import Http1Client
from router.upstream.pool import UpstreamPool

if TYPE_CHECKING:
    import aiohttp

    from router.config import PluginRules, RouterConfig
    from router.exchange import Exchange
    from router.plugins import Plugins
    from router.registry import Registry

RECENT = 20  # requests shown by `ghost-router top`
WAIT_WINDOW = 200  # queue waits kept per upstream for the p50/max shown in status


@dataclass
class RouterState:
    """Everything a request needs beyond itself. One per application, kept under an AppKey."""

    registry: Registry
    config: RouterConfig
    plugins: Plugins
    plugin_rules: PluginRules = field(default_factory=list)
    verbose: bool = False
    pool: UpstreamPool = field(default_factory=UpstreamPool)
    session: aiohttp.ClientSession = None  # type: ignore[assignment]  # set in the app's cleanup context (tokenizer calls)
    forwarder: Http1Client = field(default_factory=Http1Client)  # the forwarding hot path's own client
    hits: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)  # answered locally / forwarded / errors / client closed
    requests: int = 0
    reloads: int = 0
    last_load_error: str | None = None
    last_load_error_at: float | None = None
    started_at: float = field(default_factory=time.time)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT))
    waits: dict[str, deque[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pool.apply(self.config.upstreams)

    def adopt(self, config: RouterConfig, plugins: Plugins | None = None, registry: Registry | None = None, plugin_rules: PluginRules | None = None) -> None:
        """Make CONFIG (and a reloaded plugin set) live; requests already running keep what they started with."""
        self.pool.apply(config.upstreams)
        if plugins is not None and registry is not None:
            self.plugins, self.registry, self.plugin_rules = plugins, registry, plugin_rules or []
        self.config = config
        self.reloads += 1
        self.last_load_error = None
        self.last_load_error_at = None

    def load_failed(self, message: str) -> None:
        """Remember why the last reload failed (the previous table stays live)."""
        if message != self.last_load_error:
            self.last_load_error_at = time.time()
        self.last_load_error = message

    def finished(self, ex: Exchange) -> None:
        """Count a finished exchange for status, top and metrics."""
        if ex.status == 499:
            kind = "client_closed"
        elif ex.status >= 400 or ex.status == 0:
            kind = "errors"
        elif ex.upstream:
            kind = "forwarded"
        else:
            kind = "answered"
        self.outcomes[kind] += 1
        if ex.upstream and ex.queue_wait is not None:
            self.waits.setdefault(ex.upstream, deque(maxlen=WAIT_WINDOW)).append(ex.queue_wait)
        self.recent.append(
            {
                "id": ex.id, "time": time.time(), "client": ex.client or "-", "method": ex.method, "path": ex.path,
                "model": ex.view.model, "rule": ex.rule, "action": ex.action, "status": ex.status,
                "wait_ms": None if ex.queue_wait is None else round(ex.queue_wait * 1000, 1),
                "total_ms": round(ex.elapsed_ms(), 1),
            }
        )

    def status(self) -> dict[str, Any]:
        """The document served at GET /_router/status."""
        from router import __version__

        config = self.config
        upstreams = self.pool.status()
        for name, doc in upstreams.items():
            waits = sorted(self.waits.get(name, ()))
            doc["wait_p50_ms"] = round(waits[len(waits) // 2] * 1000, 1) if waits else None
            doc["wait_max_ms"] = round(waits[-1] * 1000, 1) if waits else None
        return {
            "version": __version__,
            "rules_file": config.source,
            "plugins": {"loaded": self.plugins.loaded, "errors": self.plugins.errors},
            "loaded_at": config.loaded_at,
            "reloads": self.reloads,
            "last_load_error": self.last_load_error,
            "last_load_error_at": self.last_load_error_at,
            "uptime": round(time.time() - self.started_at, 1),
            "tasks": len(asyncio.all_tasks()),
            "requests": self.requests,
            "outcomes": {k: self.outcomes[k] for k in ("answered", "forwarded", "errors", "client_closed")},
            "rules": [
                {"name": r.name, "line": r.line, "action": r.label(), "hits": self.hits[r.name]} for r in config.table.rules
            ],
            "unmatched": self.hits["-"],
            "upstreams": upstreams,
            "default_upstream": config.default_upstream,
            "max_body": config.max_body,
            "recent": list(self.recent),
        }
