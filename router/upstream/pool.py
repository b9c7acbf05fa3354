"""Named upstreams: their settings, their gates, their counters. Gates outlive rule reloads."""

from __future__ import annotations

from dataclasses import dataclass, field

from router.edits import BodyEdits
from router.upstream.health import Health
from router.upstream.queue import PriorityGate


@dataclass(frozen=True)
class UpstreamConfig:
    """One upstream server as the rules file describes it."""

    name: str
    url: str
    max_concurrency: int = 1
    max_queue: int = 256
    queue_timeout: float = 900.0
    connect_timeout: float = 10.0
    idle_timeout: float = 600.0
    keepalive: float = 10.0
    headers: tuple[tuple[str, str], ...] = ()
    forward_client_auth: bool = False
    context_errors: bool = True  # turn the server's context-overflow error into the client's own
    edits: BodyEdits = BodyEdits()  # what this server needs: its model name, folded system messages, dropped fields

    @property
    def model(self) -> str | None:
        """The model name this upstream serves, if set."""
        return self.edits.model


@dataclass
class UpstreamStats:
    """Counters shown at /_router/status."""

    forwarded: int = 0
    errors: int = 0
    cancelled: int = 0
    max_seen_in_flight: int = 0


@dataclass
class Upstream:
    """A live upstream: current settings plus the gate that serialises requests to it."""

    config: UpstreamConfig
    gate: PriorityGate
    stats: UpstreamStats = field(default_factory=UpstreamStats)
    health: Health = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.health is None:
            self.health = Health(self.config.name, self.config.url)

    @property
    def name(self) -> str:
        """The upstream's name in the rules file."""
        return self.config.name

    @property
    def url(self) -> str:
        """The base URL requests go to."""
        return self.config.url


class UpstreamPool:
    """All upstreams by name. `apply` takes a new set of configs without dropping queued requests."""

    def __init__(self) -> None:
        self.by_name: dict[str, Upstream] = {}

    def apply(self, configs: dict[str, UpstreamConfig]) -> None:
        """Adopt CONFIGS: keep existing gates (and their queues), update their limits, add new ones."""
        for name, config in configs.items():
            current = self.by_name.get(name)
            if current is None:
                self.by_name[name] = Upstream(config, PriorityGate(config.max_concurrency, config.max_queue))
                continue
            current.config = config
            current.health.url = config.url
            current.gate.max_queue = config.max_queue
            current.gate.max_concurrency = config.max_concurrency
        for name in list(self.by_name):
            upstream = self.by_name[name]
            if name not in configs and upstream.gate.in_flight == 0 and upstream.gate.queued == 0:
                del self.by_name[name]

    def __getitem__(self, name: str) -> Upstream:
        return self.by_name[name]

    async def close(self) -> None:
        """Stop every health probe."""
        for upstream in self.by_name.values():
            await upstream.health.close()

    def status(self) -> dict[str, dict[str, object]]:
        """Per-upstream settings and live counts."""
        return {
            name: {
                "url": up.url,
                "max_concurrency": up.gate.max_concurrency,
                "in_flight": up.gate.in_flight,
                "queued": up.gate.queued,
                "max_queue": up.gate.max_queue,
                "forwarded": up.stats.forwarded,
                "errors": up.stats.errors,
                "cancelled": up.stats.cancelled,
                "max_seen_in_flight": up.stats.max_seen_in_flight,
                **up.health.status(),
            }
            for name, up in self.by_name.items()
        }
