"""The aiohttp application: its lifecycle, and the one handler every request goes through.

A request flows one way: access checks, the body read under the live limits, the protocol
adapter's parse into an immutable Request, plugins' intercept, the first matching rule, its
actions (edits, then an answer), the writer (router.respond), then the log line, the counters,
the recorder and the `exchange_finished` observers, all from the Outcome built at the end.
"""

from __future__ import annotations

import asyncio
import posixpath
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from urllib.parse import unquote

import aiohttp
from aiohttp import web

from router import access, metrics, respond
from router.answers import Answer, Result, Streamed
from router.config import Overrides, PluginRules, RouterConfig
from router.edits import Edits
from router.errors import CLIENT_CLOSED, BadRequest, RouterError
from router.jsonutil import dumps_bytes
from router.log import logger, request_line
from router.outcome import Outcome
from router.plugins import Plugins, load_plugins
from router.protocols.base import Reply, Request, new_request, parse_request
from router.record import Recorder
from router.registry import Registry
from router.reload import POLL_INTERVAL, RulesWatcher, watching
from router.state import RouterState

STATE = web.AppKey("ghost_router_state", RouterState)
WATCHER = web.AppKey("ghost_router_watcher", RulesWatcher)
RECORDER = web.AppKey("ghost_router_recorder", Recorder)
PAGES = ("/_router/status", "/metrics")
NO_OVERRIDES = Overrides()


def build_app(
    config: RouterConfig,
    registry: Registry | None = None,
    verbose: bool = False,
    *,
    plugins: Plugins | None = None,
    plugin_rules: PluginRules = (),  # type: ignore[assignment]
    plugin_dirs: Sequence[str] = (),
    rules_path: str | None = None,
    overrides: Overrides = NO_OVERRIDES,
    record: str | None = None,
    reload_interval: float = POLL_INTERVAL,
    listen_host: str = "127.0.0.1",
    insecure: bool = False,
) -> web.Application:
    """An application serving CONFIG's rules; with RULES_PATH the file (and PLUGIN_DIRS) are
    watched and hot-reloaded. PLUGINS default to the built-ins alone. Serve it with
    router.server.serving (handler cancellation: a client that leaves frees its slot)."""
    if plugins is None:
        plugins = load_plugins(entry_points=False)
    if registry is None:
        registry, _ = plugins.registry()
    app = web.Application()  # bodies are read by _read_body, under the live limits
    state = RouterState(registry, config, plugins, list(plugin_rules), verbose)
    state.listen_host, state.exposed, state.insecure = listen_host, not access.is_loopback(listen_host), insecure
    app[STATE] = state
    app.cleanup_ctx.append(_clients)
    if rules_path is not None:
        app.cleanup_ctx.append(_watcher(rules_path, overrides, plugin_dirs, reload_interval))
    if record is not None:
        app.cleanup_ctx.append(_recorder(record))
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def _clients(app: web.Application) -> AsyncIterator[None]:
    """The forwarding client and a session for calls beside forwarding (tokenizer): no cookies, no
    decompression, no proxies from the environment."""
    state = app[STATE]
    state.session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding", "User-Agent"),
    )
    yield
    await state.pool.close()
    await state.session.close()
    await state.client.close()


def _watcher(
    path: str, overrides: Overrides, plugin_dirs: Sequence[str], interval: float
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        async with watching(app[STATE], path, overrides, plugin_dirs, interval) as watcher:
            app[WATCHER] = watcher
            yield

    return context


def _recorder(path: str) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        app[RECORDER] = Recorder(path)
        yield
        app[RECORDER].close()

    return context


def split_target(raw_target: str) -> tuple[str, str, str]:
    """(path for the rules, path to forward, query) from a request target: an absolute-form target
    (`http://host/path`) becomes its path, and `.` and `..` segments are resolved in both."""
    if not raw_target.startswith("/"):
        raw_target = "/" + raw_target.split("://", 1)[-1].partition("/")[2] if "://" in raw_target else "/"
    raw_path, _, query = raw_target.partition("?")
    segments = raw_path.split("/")
    if any(unquote(segment) in (".", "..") for segment in segments):
        resolved = posixpath.normpath("/".join(unquote(s) if unquote(s) in (".", "..") else s for s in segments))
        raw_path = "/" + resolved.lstrip("/") + ("/" if raw_path.endswith("/") and resolved != "/" else "")
    return unquote(raw_path), raw_path, query


async def handle(http: web.Request) -> web.StreamResponse:
    """Every request: the router's own pages, or the rule table. Errors answer in the client's protocol."""
    state = http.app[STATE]
    config, plugins = state.config, state.plugins  # this request finishes under what it started with
    path, raw_path, query = split_target(http.raw_path)
    protocol, kind = state.registry.protocol_for(http.method, path)
    request = new_request(http.method, path, query, raw_path, http.headers, b"", protocol, kind)
    state.requests += 1
    decided = Decided()
    since = request.started
    result: Result | None = None
    status, bytes_out, note = 0, 0, ""
    try:
        try:
            access.check(http.headers, config, state.listen_host)
            if http.method in ("GET", "HEAD") and path in PAGES:
                return await _page(http, state, path)
            raw = await _read_body(http, config)
            since = time.perf_counter()  # the clock of the timing headers (router.respond)
            request = replace(request, raw=raw)  # a body that does not parse is still logged and recorded
            request = parse_request(request)
            result = await _route(request, state, config, plugins, decided)
            if isinstance(result, Streamed):
                state.forwarding(request, decided.rule, result.trace)
            sent = await respond.send(http, result, protocol, config.limits.send_timeout, since)
        except Exception as fault:
            if isinstance(fault, ConnectionResetError | web.HTTPException):
                raise
            error = (
                fault if isinstance(fault, RouterError) else respond.internal_error(fault, f"in request #{request.id}")
            )
            note = respond.short(error.message)
            sent = await respond.send(
                http, await _error_answer(request, error, plugins), protocol, config.limits.send_timeout, since
            )
        status, bytes_out, note = sent.status, sent.bytes_out, sent.note or note
        return sent.response
    except (asyncio.CancelledError, ConnectionResetError) as exc:
        delivered = result.trace.delivered if isinstance(result, Streamed) else None
        if delivered:
            (status, bytes_out), note = delivered, "the client closed the connection after the answer's last event"
        else:
            status, note = (
                CLIENT_CLOSED,
                str(exc) if isinstance(exc, respond.ClientStalled) else "client closed the connection",
            )
        raise
    finally:
        trace = result.trace if isinstance(result, Streamed) else None
        outcome = Outcome(decided.rule, decided.why, decided.action, status, bytes_out, trace, note)
        if not (path in PAGES and status < 400):
            await _finish(http.app, state, plugins, request, outcome)


@dataclass
class Decided:
    """Which rule (or plugin) answered, for the outcome."""

    rule: str = "-"
    why: str = ""
    action: str = "-"


async def _page(http: web.Request, state: RouterState, path: str) -> web.StreamResponse:
    """GET /_router/status (JSON) or /metrics (Prometheus text)."""
    if path == "/metrics":
        return web.Response(text=metrics.render(state), content_type="text/plain", charset="utf-8")
    return web.Response(body=dumps_bytes(state.status()), content_type="application/json")


async def _finish(
    app: web.Application, state: RouterState, plugins: Plugins, request: Request, outcome: Outcome
) -> None:
    """The log line, the counters, the recorder and the observers, from the outcome."""
    logger.info(request_line(request, outcome, state.verbose))
    state.finished(request, outcome)
    recorder = app.get(RECORDER)
    if recorder is not None:
        recorder.write(request, outcome)
    await plugins.each("exchange_finished", request=request, outcome=outcome)


async def _route(
    request: Request, state: RouterState, config: RouterConfig, plugins: Plugins, decided: Decided
) -> Result:
    """The intercepting plugin's answer, or the first matching rule's."""
    intercepted = await plugins.first("intercept_request", request=request)
    if intercepted is not None:
        answer, name = intercepted
        decided.rule, decided.action = f"plugin:{name}", "intercept"
        result = request.protocol.reply(request, answer) if isinstance(answer, Reply) else answer
        if not isinstance(result, (Answer, Streamed)):
            raise RouterError(
                500,
                f"ghost-router: plugin {name} answered intercept_request with a "
                f"{type(result).__name__}; return an Answer, a Reply or None.",
                "api_error",
            )
        return result
    rule = config.table.match(request)
    if rule is None:
        state.hits["-"] += 1
        raise RouterError(
            404,
            f"ghost-router: no rule in {config.source} matches {request.method} {request.path}. "
            "Add a rule for it, or a last catch-all rule `match: {}` that forwards (docs/rules.md).",
            "not_found_error",
        )
    state.hits[rule.name] += 1
    decided.rule, decided.why, decided.action = rule.name, rule.why, rule.label
    edits, services = Edits(request), state.services()
    for _, action in rule.actions:
        result = await action.run(request, edits, services)
        if result is not None:
            return result
    raise RouterError(500, f"ghost-router: rule {rule.name} ended without an answer", "api_error")


async def _error_answer(request: Request, error: RouterError, plugins: Plugins) -> Answer:
    """ERROR in the client's protocol, after plugins had their say (handle_error)."""
    try:
        replaced = await plugins.first("handle_error", request=request, error=error)
    except RouterError:
        replaced = None  # the plugin failed (logged): the original error stands
    if replaced is not None:
        error = replaced[0]
    return request.protocol.error_answer(error, f"req_ghost{request.id}")


async def _read_body(http: web.Request, config: RouterConfig) -> bytes:
    """The whole body, refused as soon as it is known to exceed max_body, or when it takes longer than body_timeout."""
    limit = config.limits.max_body
    if http.content_length is not None and http.content_length > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(config.limits.body_timeout):
            async for chunk in http.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise RouterError(
            408,
            f"ghost-router: the request body did not arrive within {config.limits.body_timeout:g}s "
            "(limits.body_timeout). Check the client's connection, or raise the limit.",
            "timeout_error",
        ) from None
    except aiohttp.web.HTTPException as exc:  # a malformed body framing seen by aiohttp's parser
        raise BadRequest(f"the request body could not be read: {exc.reason}") from None
    return b"".join(chunks)


def _too_large(limit: int) -> RouterError:
    return RouterError(
        413,
        f"ghost-router: request body is larger than the {limit} byte limit. "
        "Raise limits.max_body in the rules file (or --max-body).",
        "request_too_large",
    )
