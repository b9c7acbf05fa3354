"""`ghost-router top`: a live terminal view of a running router, fed by GET /_router/status."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from router import progress
from router.ledger import describe

CLEAR = "\x1b[H\x1b[2J"


KEY_ENV = "GHOST_ROUTER_API_KEY"


def fetch(url: str, timeout: float = 2.0) -> dict[str, Any]:
    """The router's status document (sending $GHOST_ROUTER_API_KEY when the router requires a key)."""
    request = urllib.request.Request(f"{url.rstrip('/')}/_router/status")
    if os.environ.get(KEY_ENV):
        request.add_header("x-api-key", os.environ[KEY_ENV])
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - user-given router URL
        return json.load(response)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"


def render(status: dict[str, Any], url: str) -> str:
    """One screen of the view."""
    outcomes = status["outcomes"]
    lines = [
        f"ghost-router {status['version']} at {url}   up {status['uptime']:.0f}s "
        f"  rules: {status['rules_file']} (reloads: {status['reloads']})",
        f"requests {status['requests']}   ghosts answered here "
        f"{outcomes['answered']}   forwarded {outcomes['forwarded']}   "
        f"errors {outcomes['errors']}   client closed {outcomes['client_closed']}",
    ]
    if "savings" in status:
        lines.append(f"saved: {describe(status['savings'])}")
    for name, up in status["upstreams"].items():
        saved = up.get("slot_save")
        if saved:
            lines.append(
                f"slot files of {name}: {len(saved['files'])} in {saved['folder']}, {saved['bytes'] / 1e6:,.0f} MB "
                f"of {saved['budget'] / 1e6:,.0f} MB; {saved['saves']} saves, {saved['restores']} restores"
                + (f", {saved['refused']} refused" if saved["refused"] else "")
            )
            for item in saved["files"][:3]:
                clock = time.strftime("%H:%M:%S", time.localtime(item["saved_at"]))
                lines.append(f"  {clock} {item['file']} {item['tokens']:,} tokens {item['bytes'] / 1e6:,.0f} MB")
    if status["last_load_error"]:
        lines.append(f"LAST RELOAD FAILED (previous table live): {status['last_load_error']}")
    lines += [
        "",
        f"{'UPSTREAM':12} {'URL':32} {'IN FLIGHT':>10} {'QUEUED':>7} "
        f"{'WAIT p50':>10} {'WAIT max':>10} {'FORWARDED':>10} {'ERRORS':>7}",
    ]
    for name, up in status["upstreams"].items():
        slots = f"{up['in_flight']}/{up['max_concurrency']}"
        lines.append(
            f"{name[:12]:12} {up['url'][:32]:32} {slots:>10} {up['queued']:>7} {_ms(up['wait_p50_ms']):>10} "
            f"{_ms(up['wait_max_ms']):>10} {up['forwarded']:>10} {up['errors']:>7}"
        )
        servers = up.get("servers", [])
        for server in servers if len(servers) > 1 else []:
            state = "" if server["healthy"] else "  DOWN"
            lines.append(
                f"{'':12} {server['url'][:32]:32} "
                f"{server['in_flight']:>5}/{server['max_concurrency']:<4} {'':>7} {'':>10} "
                f"{'':>10} {server['forwarded']:>10} {server['errors']:>7}{state}"
            )
    lines += _in_flight(status.get("in_flight", []))
    lines += ["", f"{'RULE':24} {'HITS':>7}  ACTION"]
    for rule in status["rules"]:
        lines.append(f"{rule['name'][:24]:24} {rule['hits']:>7}  {rule['action']}")
    if status["unmatched"]:
        lines.append(f"{'(no rule)':24} {status['unmatched']:>7}  404")
    lines += [
        "",
        f"{'TIME':8} {'ID':7} {'CLIENT':12} {'REQUEST':34} {'MODEL':20} "
        f"{'RULE':20} {'STATUS':>6} {'WAIT':>9} {'TOTAL':>9}",
    ]
    for item in reversed(status["recent"]):
        clock = time.strftime("%H:%M:%S", time.localtime(item["time"]))
        request = f"{item['method']} {item['path']}"
        lines.append(
            f"{clock:8} {item['id'][-6:]:7} {item['client'][:12]:12} "
            f"{request[:34]:34} {(item['model'] or '-')[:20]:20} "
            f"{item['rule'][:20]:20} {item['status']:>6} {_ms(item['wait_ms']):>9} {_ms(item['total_ms']):>9}"
        )
    return "\n".join(lines)


def _in_flight(items: list[dict[str, Any]]) -> list[str]:
    """The forwards under way: queued (place in line), in prefill (progress), answering."""
    if not items:
        return []
    lines = ["", f"{'IN FLIGHT':9} {'CLIENT':12} {'UPSTREAM':12} {'MODEL':20} {'AGE':>7}  STATE"]
    for item in items:
        age = f"{item['elapsed_ms'] / 1000:.0f}s"
        lines.append(
            f"{item['id'][-6:]:9} {item['client'][:12]:12} {item['upstream'][:12]:12} "
            f"{(item['model'] or '-')[:20]:20} {age:>7}  {progress.state(item)}"
        )
    return lines


def run(url: str, interval: float, once: bool) -> int:
    """Show the view until Ctrl-C (or once)."""
    try:
        while True:
            try:
                frame = render(fetch(url), url)
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                print(
                    f"ghost-router top: cannot reach the router at {url}: "
                    f"{reason}. Is `ghost-router serve` running there?",
                    file=sys.stderr,
                )
                return 1
            if once:
                print(frame)
                return 0
            sys.stdout.write(CLEAR + frame + "\n")
            sys.stdout.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0
