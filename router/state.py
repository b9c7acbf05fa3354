"""The router's live state: the rule table in force, the upstreams, the HTTP client, counters."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from router import __version__
from router.answers import Trace
from router.config import PluginRules, RouterConfig
from router.errors import CLIENT_CLOSED
from router.ledger import Ledger
from router.outcome import Outcome
from router.plugins import Plugins
from router.protocols.base import Request
from router.registry import Registry
from router.specs import Services
from router.upstream import slots
from router.upstream.client import UpstreamClient
from router.upstream.pool import UpstreamPool

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
    listen_host: str = "127.0.0.1"
    exposed: bool = False  # listening beyond loopback: a reload may not drop auth.api_keys
    insecure: bool = False  # --insecure: listening beyond loopback without keys was asked for
    pool: UpstreamPool = field(default_factory=UpstreamPool)
    session: aiohttp.ClientSession | None = None  # for calls beside forwarding (tokenizer); opened with the app
    client: UpstreamClient = field(default_factory=UpstreamClient)  # the forwarding client
    hits: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)  # answered locally / forwarded / errors / client closed
    requests: int = 0
    reloads: int = 0
    last_load_error: str | None = None
    last_load_error_at: float | None = None
    started_at: float = field(default_factory=time.time)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT))
    waits: dict[str, deque[float]] = field(default_factory=dict)
    ledger: Ledger = field(default_factory=Ledger)
    live: dict[str, tuple[Request, str, Trace]] = field(default_factory=dict)  # forwards under way, by id

    def __post_init__(self) -> None:
        self.pool.apply(self.config.upstreams)

    def adopt(
        self,
        config: RouterConfig,
        plugins: Plugins | None = None,
        registry: Registry | None = None,
        plugin_rules: PluginRules | None = None,
    ) -> None:
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

    def services(self) -> Services:
        """What actions may use, with the plugin set in force now."""
        return Services(self.pool, self.client, self.session, self.plugins)

    def forwarding(self, request: Request, rule: str, trace: Trace) -> None:
        """A request whose answer is relayed from an upstream, shown at status until `finished`."""
        self.live[request.id] = (request, rule, trace)

    def in_flight(self) -> list[dict[str, Any]]:
        """The forwards under way, oldest first: queued (place in line), waiting for the server
        (prefill progress from llama-server's slots) or answering."""
        items = []
        for request, rule, trace in self.live.values():
            items.append(
                {
                    "id": request.id,
                    "client": request.client or "-",
                    "method": request.method,
                    "path": request.path,
                    "model": request.view.model,
                    "rule": rule,
                    "upstream": trace.upstream,
                    "priority": trace.priority,
                    "elapsed_ms": round(request.elapsed_ms(), 1),
                    **(trace.now() if trace.now else {"state": "starting"}),
                }
            )
        return items

    def finished(self, request: Request, outcome: Outcome) -> None:
        """Count a finished request for status, top and metrics."""
        self.live.pop(request.id, None)
        if outcome.status == CLIENT_CLOSED:
            kind = "client_closed"
            if outcome.upstream and (upstream := self.pool.by_name.get(outcome.upstream)) is not None:
                upstream.stats.cancelled += 1  # it left, queued or mid-stream (not after a stream's last event)
        elif outcome.status >= 400 or outcome.status == 0:
            kind = "errors"
        elif outcome.upstream:
            kind = "forwarded"
        else:
            kind = "answered"
            if outcome.action.startswith("fake") and (request.view.system or request.view.user):
                self.ledger.ghost(len(request.raw))
        self.outcomes[kind] += 1
        wait = outcome.queue_wait
        if outcome.upstream and wait is not None:
            self.waits.setdefault(outcome.upstream, deque(maxlen=WAIT_WINDOW)).append(wait)
        self.recent.append(
            {
                "id": request.id,
                "time": time.time(),
                "client": request.client or "-",
                "method": request.method,
                "path": request.path,
                "model": request.view.model,
                "rule": outcome.rule,
                "action": outcome.action,
                "status": outcome.status,
                "wait_ms": None if wait is None else round(wait * 1000, 1),
                "total_ms": round(request.elapsed_ms(), 1),
            }
        )

    def savings(self) -> dict[str, Any]:
        """The savings ledger, with what the upstreams' warm restarts restored."""
        upstreams = self.pool.by_name.values()
        restored = sum(u.warm.ledger.tokens_restored for u in upstreams if u.warm)
        watches = [slots.watch(server) for u in upstreams for server in u.servers]
        tokens = sum(w.measured_tokens for w in watches)
        return self.ledger.summary(restored, tokens, sum(w.measured_seconds for w in watches))

    def status(self) -> dict[str, Any]:
        """The document served at GET /_router/status."""
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
            "savings": self.savings(),
            "rules": [
                {"name": r.name, "line": r.line, "action": r.label, "hits": self.hits[r.name]}
                for r in config.table.rules
            ],
            "unmatched": self.hits["-"],
            "upstreams": upstreams,
            "default_upstream": config.default_upstream,
            "max_body": config.max_body,
            "limits": dataclasses.asdict(config.limits),
            "in_flight": self.in_flight(),
            "recent": list(self.recent),
        }
