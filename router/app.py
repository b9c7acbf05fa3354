"""The aiohttp application: one handler runs every request through the live rule table."""

from __future__ import annotations

import asyncio
import hmac
from functools import partial
from typing import AsyncIterator, Awaitable, Callable, Sequence

import aiohttp
from aiohttp import web

from router import metrics
from router.config import Overrides, PluginRules, RouterConfig
from router.errors import RouterError
from router.exchange import Exchange, split_target
from router.log import logger, request_line
from router.plugins import Plugins, load_plugins
from router.record import Recorder
from router.registry import Registry
from router.reload import POLL_INTERVAL, RulesWatcher, watching
from router.state import RouterState

STATE = web.AppKey("ghost_router_state", RouterState)
WATCHER = web.AppKey("ghost_router_watcher", RulesWatcher)
RECORDER = web.AppKey("ghost_router_recorder", Recorder)
CLIENT_CLOSED = 499  # nginx's code for "client closed the request", used in the log only


def build_app(
    config: RouterConfig,
    registry: Registry | None = None,
    verbose: bool = False,
    *,
    plugins: Plugins | None = None,
    plugin_rules: PluginRules = (),  # type: ignore[assignment]
    plugin_dirs: Sequence[str] = (),
    rules_path: str | None = None,
    overrides: Overrides = Overrides(),
    record: str | None = None,
    reload_interval: float = POLL_INTERVAL,
) -> web.Application:
    """An application serving CONFIG's rules; with RULES_PATH the file (and PLUGIN_DIRS) are
    watched and hot-reloaded. PLUGINS default to the built-ins alone.

    Start it with handler cancellation (see router.server) so a client that leaves frees its slot.
    """
    if plugins is None:
        plugins = load_plugins(entry_points=False)
    if registry is None:
        registry, _ = plugins.registry()
    app = web.Application()  # bodies are read by _read_body, under the live table's max_body
    app[STATE] = RouterState(registry, config, plugins, list(plugin_rules), verbose)
    app.cleanup_ctx.append(_client_session)
    if rules_path is not None:
        app.cleanup_ctx.append(_watcher(rules_path, overrides, plugin_dirs, reload_interval))
    if record is not None:
        app.cleanup_ctx.append(_recorder(record))
    app.router.add_route("*", "/{tail:.*}", _application_route)
    return app


def request_handler(app: web.Application) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """APP's requests as one handler for aiohttp's low-level server (router.server serves it so):
    the router has no routes to resolve, middlewares or signals, and going through the
    application's dispatch cost every forwarded request ~0.05 ms (cold) before its first byte."""
    return partial(dispatch, app[STATE], app)


async def _application_route(request: web.Request) -> web.StreamResponse:
    """The application's one route, for whoever serves the application itself (aiohttp's test client)."""
    return await dispatch(request.app[STATE], request.app, request)


async def dispatch(state: RouterState, app: web.Application, request: web.BaseRequest) -> web.StreamResponse:
    """The router's own pages, and every other request through the rule table."""
    path, query = split_target(request)
    if request.method in ("GET", "HEAD"):
        if path == "/_router/status":
            return _denied(request, state, path, query) or web.json_response(state.status())
        if path == "/metrics":
            return _denied(request, state, path, query) or web.Response(text=metrics.render(state), content_type="text/plain", charset="utf-8")
    return await handle(state, app, request, path, query)


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    """An aiohttp client for calls beside forwarding (tokenizer): no cookies, no decompression, no
    env proxies. Forwarding has its own lean client (state.forwarder), closed here too."""
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
    state.forwarder.close()


def _watcher(path: str, overrides: Overrides, plugin_dirs: Sequence[str], interval: float) -> Callable[[web.Application], AsyncIterator[None]]:
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


def _denied(request: web.BaseRequest, state: RouterState, path: str, query: str) -> web.Response | None:
    """The 401 answer for the router's own pages when a key is required and missing."""
    ex = Exchange.from_request(request, path, query, state.registry.default_protocol, None)
    try:
        _check_key(ex, state.config)
    except RouterError as error:
        return ex.protocol.error_response(error, "req_ghost_status")
    return None


async def handle(state: RouterState, app: web.Application, request: web.BaseRequest, path: str, query: str) -> web.StreamResponse:
    """Parse once, pick the first matching rule, run its actions; answer errors in the client's protocol."""
    config, plugins = state.config, state.plugins  # this request finishes under what it started with
    protocol, kind = state.registry.protocol_for(request.method, path)
    ex = Exchange.from_request(request, path, query, protocol, kind)
    state.requests += 1
    try:
        try:
            response = await _route(ex, state, config, plugins)
        except RouterError as error:
            replaced = await plugins.first("handle_error", exchange=ex, error=error)
            if replaced is not None:
                error, name = replaced
                ex.note = f"error from plugin {name}; "
            response = await _answer_error(ex, error)
        ex.status = ex.status or response.status
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            ex.bytes_out = len(response.body)
        elif not ex.bytes_out:
            ex.bytes_out = response.body_length
        return response
    except (asyncio.CancelledError, ConnectionResetError):
        ex.status, ex.note = CLIENT_CLOSED, "client closed the connection"
        raise
    finally:
        logger.info(request_line(ex, state.verbose))
        state.finished(ex)
        if plugins.implemented("exchange_finished"):
            await plugins.each("exchange_finished", exchange=ex)
        recorder = app.get(RECORDER)
        if recorder is not None:
            recorder.write(ex)


def _check_key(ex: Exchange, config: RouterConfig) -> None:
    """With auth.api_keys set, every request must carry one in x-api-key or Authorization: Bearer."""
    if not config.api_keys:
        return
    bearer = ex.headers.get("Authorization", "")
    offered = ex.headers.get("x-api-key") or ex.headers.get("x-goog-api-key") or (bearer[7:] if bearer[:7].lower() == "bearer " else "")
    if not any(hmac.compare_digest(offered.encode(), key.encode()) for key in config.api_keys):
        raise RouterError(
            401,
            "ghost-router: this router requires an API key (auth.api_keys in its rules file); "
            "send one of them as x-api-key or Authorization: Bearer (for Claude Code: ANTHROPIC_API_KEY).",
            "authentication_error",
        )


async def _route(ex: Exchange, state: RouterState, config: RouterConfig, plugins: Plugins) -> web.StreamResponse:
    _check_key(ex, config)
    ex.raw = await _read_body(ex.request, config.max_body)
    ex.parse()
    intercepted = await plugins.first("intercept_request", exchange=ex) if plugins.implemented("intercept_request") else None
    if intercepted is not None:
        response, name = intercepted
        ex.rule, ex.action = f"plugin:{name}", "intercept"
        return response
    rule = config.table.match(ex)
    if rule is None:
        state.hits["-"] += 1
        raise RouterError(
            404,
            f"ghost-router: no rule in {config.source} matches {ex.method} {ex.path}. "
            "Add a rule for it, or a last catch-all rule `match: {}` that forwards (docs/rules.md).",
            "not_found_error",
        )
    state.hits[rule.name] += 1
    ex.rule, ex.why = rule.name, rule.why()
    ex.action = rule.label()
    for _, action in rule.actions:
        response = await action.run(ex, state)
        if response is not None:
            return response
    raise AssertionError(f"rule {rule.name} ended without an answering action")  # the loader prevents this


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refused as soon as it is known to exceed LIMIT (the live rules' max_body)."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> RouterError:
    return RouterError(
        413,
        f"ghost-router: request body is larger than the {limit} byte limit. "
        "Raise limits.max_body in the rules file (or --max-body).",
        "request_too_large",
    )


async def _answer_error(ex: Exchange, error: RouterError) -> web.StreamResponse:
    """Render ERROR; once headers are out, an SSE stream gets an error event, anything else is cut."""
    ex.status = error.status
    ex.note += error.message if len(error.message) <= 300 else error.message[:297] + "..."
    response = ex.response
    if response is None or not response.prepared:
        return ex.protocol.error_response(error, f"req_ghost{ex.id}")
    try:
        if response.content_type == "text/event-stream":
            await response.write(ex.protocol.sse_error_event(error))
            await response.write_eof()
        elif ex.request.transport is not None:
            ex.request.transport.close()  # a truncated non-stream body must not look complete
    except ConnectionResetError:
        ex.note += " (client also gone)"
    return response
