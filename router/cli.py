"""The `ghost-router` command: `serve` runs the router, `rules` prints the embedded default table."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys

from router import __version__
from router.config import Overrides, RouterConfig, embedded_rules_text, load_config
from router.errors import RulesError
from router.registry import builtin_registry
from router.units import parse_size


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args.run(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ghost-router", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ghost-router {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the router")
    serve.add_argument("--rules", metavar="PATH", help="rules file (default: the embedded default rules)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=9090, help="port to listen on (default: 9090; 0 picks a free one)")
    serve.add_argument("--upstream", metavar="URL", help="URL of the default upstream, overriding the rules file")
    serve.add_argument("--model", metavar="NAME", help="model name the default upstream serves (requests are rewritten to it)")
    serve.add_argument("--max-body", metavar="SIZE", help="largest request body, e.g. 64MiB (overrides limits.max_body)")
    serve.add_argument("--insecure", action="store_true", help="allow listening on a non-loopback address")
    serve.add_argument("-v", "--verbose", action="store_true", help="log why each rule matched")
    serve.set_defaults(run=_serve)

    rules = commands.add_parser("rules", help="print the embedded default rules (a starting point for --rules)")
    rules.set_defaults(run=lambda args: print(embedded_rules_text(), end="") or 0)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from router.app import build_app
    from router.server import serve

    registry = builtin_registry()
    try:
        config = load_config(args.rules, registry, Overrides(upstream_url=args.upstream, model=args.model))
        if args.max_body:
            config = replace(config, max_body=parse_size(args.max_body))
    except (RulesError, ValueError) as exc:
        print(f"ghost-router: {exc}", file=sys.stderr)
        return 2
    if not _is_loopback(args.host) and not args.insecure:
        print(
            f"ghost-router: refusing to listen on {args.host}: anyone who can reach it could use your "
            "local model. Listen on 127.0.0.1, or pass --insecure if the network is yours alone.",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    app = build_app(config, registry, verbose=args.verbose)
    try:
        asyncio.run(serve(app, args.host, args.port, lambda url: _banner(url, config)))
    except OSError as exc:
        print(f"ghost-router: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _banner(url: str, config: RouterConfig) -> None:
    lines = [f"ghost-router {__version__} listening on {url}", f"rules: {config.source} ({len(config.table.rules)} rules)"]
    for upstream in config.upstreams.values():
        lines.append(f"upstream {upstream.name}: {upstream.url} (max_concurrency {upstream.max_concurrency})")
    lines.append(f"client: ANTHROPIC_BASE_URL={url} ANTHROPIC_API_KEY=none claude --model {_model_hint(config)}")
    print("\n".join(lines), flush=True)


def _model_hint(config: RouterConfig) -> str:
    """The model name the default upstream serves, else a placeholder."""
    return config.upstreams[config.default_upstream].model or "<model>"
