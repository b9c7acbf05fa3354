"""Named upstreams: their settings, their servers, their gates, their counters. Gates outlive rule reloads.

An upstream is one server (`url:`) or a pool of them (`urls:`); either way it has one priority
queue, and each server takes at most its own max_concurrency requests at once.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from router.edits import BodyEdits
from router.protocols.base import Request
from router.upstream.health import Health
from router.upstream.queue import PriorityGate, Server
from router.upstream.warm import SlotSaveConfig, WarmStarts

STICKY_ENTRIES = 1024  # prompt prefixes remembered per pool


@dataclass(frozen=True)
class ServerConfig:
    """One server of an upstream as the rules file describes it."""

    url: str  # without credentials: safe to show
    max_concurrency: int = 1
    authorization: str | None = field(default=None, repr=False)  # from user:password@ in the URL


@dataclass(frozen=True)
class UpstreamConfig:
    """One upstream (a server or a pool of them) as the rules file describes it."""

    name: str
    servers: tuple[ServerConfig, ...]
    max_queue: int = 256
    max_queued_bytes: int = 256 * 1024 * 1024
    queue_timeout: float = 900.0
    connect_timeout: float = 10.0
    idle_timeout: float = 600.0
    keepalive: float = 10.0
    headers: tuple[tuple[str, str], ...] = ()
    forward_client_auth: bool = False
    context_errors: bool = True  # turn the server's context-overflow error into the client's own
    api: tuple[str, ...] = ("anthropic",)  # the APIs the server speaks; other clients' turns go in the first
    slot_save: SlotSaveConfig | None = None  # warm restarts: llama-server's slots saved to and restored from disk
    edits: BodyEdits = BodyEdits()  # what this server needs: its model name, folded system messages, dropped fields

    @property
    def url(self) -> str:
        """The first server's base URL."""
        return self.servers[0].url

    @property
    def max_concurrency(self) -> int:
        """Slots of all servers together."""
        return sum(server.max_concurrency for server in self.servers)

    def describe_servers(self) -> str:
        """`URL` for one server, `URL (N slots), ...` for a pool."""
        if len(self.servers) == 1:
            return self.url
        return ", ".join(
            f"{s.url} ({s.max_concurrency} slot{'s' if s.max_concurrency > 1 else ''})" for s in self.servers
        )

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
    """A live upstream: current settings, its servers and the gate that shares them out."""

    config: UpstreamConfig
    gate: PriorityGate = field(init=False)
    stats: UpstreamStats = field(default_factory=UpstreamStats)
    warm: WarmStarts | None = None
    _sticky: OrderedDict[int, Server] = field(default_factory=OrderedDict, repr=False)

    def __post_init__(self) -> None:
        self.gate = PriorityGate(self._servers(self.config, {}), self.config.max_queue, self.config.max_queued_bytes)
        self._adopt_slot_save(self.config)

    @property
    def name(self) -> str:
        """The upstream's name in the rules file."""
        return self.config.name

    @property
    def servers(self) -> list[Server]:
        """The live servers, in rules-file order."""
        return self.gate.servers

    @property
    def url(self) -> str:
        """The base URL of the first server that is up (else the first one)."""
        return next((s.url for s in self.servers if not s.health.down), self.servers[0].url)

    @property
    def urls(self) -> str:
        """All server URLs, for messages."""
        return ", ".join(server.url for server in self.servers)

    def all_down(self) -> bool:
        """True when no server of this upstream answers connections."""
        return all(server.health.down for server in self.gate.servers)

    def reconfigure(self, config: UpstreamConfig) -> None:
        """Adopt CONFIG; servers whose URL stays keep their health and in-flight counts."""
        current = {server.url: server for server in self.servers}
        servers = self._servers(config, current)
        for server in current.values():
            if server not in servers:
                server.health.stop()
        self.config = config
        self._adopt_slot_save(config)
        self.gate.max_queue = config.max_queue
        self.gate.max_queued_bytes = config.max_queued_bytes
        self.gate.set_servers(servers)

    def _adopt_slot_save(self, config: UpstreamConfig) -> None:
        if config.slot_save is None:
            if self.warm is not None:
                self.warm.close()
            self.warm = None
        elif self.warm is None:
            self.warm = WarmStarts(config.name, config.slot_save)
        else:
            self.warm.reconfigure(config.slot_save)

    def _servers(self, config: UpstreamConfig, current: dict[str, Server]) -> list[Server]:
        servers = []
        for server_config in config.servers:
            server = current.get(server_config.url) or Server(
                server_config.url, health=Health(config.name, server_config.url)
            )
            server.max_concurrency = server_config.max_concurrency
            server.authorization = server_config.authorization
            servers.append(server)
        return servers

    def prefix_key(self, request: Request) -> int | None:
        """In a pool, what identifies the request's prompt prefix cheaply (the model and the start
        of the system prompt); None for a single server, which has nothing to choose."""
        if len(self.servers) < 2:
            return None
        return hash((request.view.model, request.view.system[:4096]))

    def preferred(self, key: int | None) -> Server | None:
        """The server that last served prompt prefix KEY (its cache holds it)."""
        return None if key is None else self._sticky.get(key)

    def served(self, key: int | None, server: Server) -> None:
        """Remember SERVER for prompt prefix KEY."""
        if key is None:
            return
        self._sticky[key] = server
        self._sticky.move_to_end(key)
        if len(self._sticky) > STICKY_ENTRIES:
            self._sticky.popitem(last=False)


class UpstreamPool:
    """All upstreams by name. `apply` takes a new set of configs without dropping queued requests."""

    def __init__(self) -> None:
        self.by_name: dict[str, Upstream] = {}

    def apply(self, configs: dict[str, UpstreamConfig]) -> None:
        """Adopt CONFIGS: keep existing gates (and their queues), update their limits, add new ones."""
        for name, config in configs.items():
            current = self.by_name.get(name)
            if current is None:
                self.by_name[name] = Upstream(config)
            else:
                current.reconfigure(config)
        for name in list(self.by_name):
            upstream = self.by_name[name]
            if name not in configs and upstream.gate.in_flight == 0 and upstream.gate.queued == 0:
                for server in upstream.servers:
                    server.health.stop()
                del self.by_name[name]

    def __getitem__(self, name: str) -> Upstream:
        return self.by_name[name]

    async def close(self) -> None:
        """Stop every health probe."""
        for upstream in self.by_name.values():
            for server in upstream.servers:
                await server.health.close()
            if upstream.warm is not None:
                upstream.warm.close()

    def status(self) -> dict[str, dict[str, object]]:
        """Per-upstream settings and live counts, with each server's own."""
        status: dict[str, dict[str, object]] = {}
        for name, up in self.by_name.items():
            servers = [server.status() for server in up.servers]
            down = [s for s in up.servers if s.health.down]
            status[name] = {
                "url": up.urls,
                "api": up.config.api[0] if len(up.config.api) == 1 else list(up.config.api),
                "max_concurrency": up.gate.max_concurrency,
                "in_flight": up.gate.in_flight,
                "queued": up.gate.queued,
                "max_queue": up.gate.max_queue,
                "queued_bytes": up.gate.queued_bytes,
                "forwarded": up.stats.forwarded,
                "errors": up.stats.errors,
                "cancelled": up.stats.cancelled,
                "max_seen_in_flight": up.stats.max_seen_in_flight,
                "healthy": len(down) < len(up.servers),
                "down_since": min((s.health.down_since or 0.0 for s in down), default=None)
                if len(down) == len(up.servers)
                else None,
                "last_error": "; ".join(f"{s.url}: {s.health.last_error}" for s in down) or None,
                "servers": servers,
                "slot_save": up.warm.status() if up.warm else None,
            }
        return status
