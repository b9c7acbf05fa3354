"""What `serve` finds at each upstream server when it starts: whether anything listens there, and
what a llama-server says about itself at `GET /props` (context size, slots). Nothing listening is
not an error: the server may start later, and requests wait for it or fail naming its URL."""

from __future__ import annotations

import socket
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from router.jsonutil import loads
from router.upstream.pool import ServerConfig, UpstreamConfig

PROPS_LIMIT = 1 << 20  # bytes of /props read: llama-server's is a few KB
TIMEOUT = 2.0  # seconds for the connect and for /props: a local server answers at once


@dataclass(frozen=True)
class Found:
    """One server as found at start-up."""

    url: str
    listening: bool
    problem: str = ""  # why nothing answered
    context: int | None = None  # tokens of context per slot, as /props reports n_ctx
    slots: int | None = None

    def describe(self) -> str:
        """The banner's words for this server."""
        if not self.listening:
            port = urlsplit(self.url).port or 80
            return (
                f"nothing listens at {self.url} yet ({self.problem}); not an error if you start it later, e.g. "
                f"`llama-server -m MODEL.gguf --port {port} -c 65536`. Until it answers, requests to it get an "
                "error naming this URL"
            )
        if self.context is None:
            return f"{self.url} accepts connections (no llama-server /props there)"
        slots = f", {self.slots} slot{'s' if self.slots != 1 else ''}" if self.slots else ""
        return f"{self.url} ready (llama-server: context {self.context:,} tokens{slots})"


def look(server: ServerConfig, timeout: float = TIMEOUT) -> Found:
    """Connect to SERVER, then ask it for GET /props."""
    parts = urlsplit(server.url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", port), timeout).close()
    except OSError as exc:
        return Found(server.url, False, problem=exc.strerror or str(exc) or type(exc).__name__)
    headers = {"Authorization": server.authorization} if server.authorization else {}
    try:
        request = urllib.request.Request(f"{server.url}/props", headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the configured upstream
            props = loads(response.read(PROPS_LIMIT))
        context = props["default_generation_settings"]["n_ctx"]
        slots = props.get("total_slots")
    except (OSError, ValueError, KeyError, TypeError):
        return Found(server.url, True)
    if not isinstance(context, int) or context <= 0:
        return Found(server.url, True)
    return Found(server.url, True, context=context, slots=slots if isinstance(slots, int) and slots > 0 else None)


def look_all(upstreams: dict[str, UpstreamConfig]) -> dict[str, list[Found]]:
    """Every server of every upstream, by upstream name."""
    return {name: [look(server) for server in upstream.servers] for name, upstream in upstreams.items()}
