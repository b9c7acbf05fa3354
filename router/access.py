"""Who may use the router: inbound keys, the Host a request names, and the browser origin it comes from.

A web page can send a simple cross-site POST to a loopback port, and a DNS-rebinding page can
reach it under its own host name: requests that carry a browser `Origin` not allowed, or a `Host`
that is not the router's own name, are refused before anything else happens. CLIs and SDKs send
no Origin and name the address they were given, so they are not affected.
"""

from __future__ import annotations

import hmac
import ipaddress

from multidict import CIMultiDictProxy

from router.config import RouterConfig
from router.errors import RouterError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether HOST (a name or an address) is this machine's loopback."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check(headers: CIMultiDictProxy[str], config: RouterConfig, listen_host: str) -> None:
    """Raise the RouterError (401/403) that refuses a request, or return."""
    _check_origin(headers.get("Origin"), config)
    _check_host(headers.get("Host"), config, listen_host)
    _check_key(headers, config)


def _host_name(host: str) -> str:
    """The name part of a Host header: without its port, IPv6 brackets kept off."""
    if host.startswith("["):
        return host[1 : host.find("]")].lower() if "]" in host else host.lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


def _check_host(host: str | None, config: RouterConfig, listen_host: str) -> None:
    allowed = config.allowed_hosts
    if allowed is None:
        if not is_loopback(listen_host):
            return  # listening beyond loopback: inbound keys protect it
        allowed = (*LOOPBACK_NAMES, listen_host.lower())
    if "*" in allowed or host is None:  # HTTP/1.0 clients may send no Host
        return
    name = _host_name(host)
    if name in allowed or (config.allowed_hosts is None and is_loopback(name)):
        return
    raise RouterError(
        403,
        f"ghost-router: refused a request for host {host!r}: this router answers only to "
        f"{', '.join(allowed)} (a web page using another name may be a DNS-rebinding attack). If you reach "
        "it under another name on purpose, add it to security.allowed_hosts in the rules file.",
        "permission_error",
    )


def _check_origin(origin: str | None, config: RouterConfig) -> None:
    if origin is None or origin.rstrip("/").lower() in config.allowed_origins or "*" in config.allowed_origins:
        return
    raise RouterError(
        403,
        f"ghost-router: refused a request from the web page at {origin}: browsers may not use this router "
        "(any page you visit could otherwise use your local model). To allow a web app of your own, add its "
        "origin to security.allowed_origins in the rules file.",
        "permission_error",
    )


def _check_key(headers: CIMultiDictProxy[str], config: RouterConfig) -> None:
    """With auth.api_keys set, every request must carry one in x-api-key, x-goog-api-key or Authorization: Bearer."""
    if not config.api_keys:
        return
    bearer = headers.get("Authorization", "")
    offered = (
        headers.get("x-api-key")
        or headers.get("x-goog-api-key")
        or (bearer[7:] if bearer[:7].lower() == "bearer " else "")
    )
    if not any(hmac.compare_digest(offered.encode(), key.encode()) for key in config.api_keys):
        raise RouterError(
            401,
            "ghost-router: this router requires an API key (auth.api_keys in its rules file); "
            "send one of them as x-api-key or Authorization: Bearer (for Claude Code: ANTHROPIC_API_KEY).",
            "authentication_error",
        )
