"""The router's live state: the rule table in force, the upstreams, the HTTP client, counters."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from router.upstream.pool import UpstreamPool

if TYPE_CHECKING:
    import aiohttp

    from router.config import RouterConfig
    from router.registry import Registry


@dataclass
class RouterState:
    """Everything a request needs beyond itself. One per application, kept under an AppKey."""

    registry: Registry
    config: RouterConfig
    verbose: bool = False
    pool: UpstreamPool = field(default_factory=UpstreamPool)
    session: aiohttp.ClientSession = None  # type: ignore[assignment]  # set in the app's cleanup context
    hits: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    last_load_error: str | None = None
    last_load_error_at: float | None = None
    started_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.pool.apply(self.config.upstreams)

    def adopt(self, config: RouterConfig) -> None:
        """Make CONFIG the live table; requests already running keep the table they started with."""
        self.pool.apply(config.upstreams)
        self.config = config
        self.last_load_error = None

    def status(self) -> dict[str, Any]:
        """The document served at GET /_router/status."""
        from router import __version__

        config = self.config
        return {
            "version": __version__,
            "rules_file": config.source,
            "loaded_at": config.loaded_at,
            "last_load_error": self.last_load_error,
            "last_load_error_at": self.last_load_error_at,
            "requests": self.requests,
            "rules": [
                {"name": r.name, "line": r.line, "actions": [n for n, _ in r.actions], "hits": self.hits[r.name]}
                for r in config.table.rules
            ],
            "unmatched": self.hits["-"],
            "upstreams": self.pool.status(),
            "default_upstream": config.default_upstream,
            "max_body": config.max_body,
        }
