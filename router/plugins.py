"""Finding and loading plugins, and calling their hooks (sync or async) in order.

Places, and only these: the built-ins (always), installed packages' `ghost_router` entry points,
and `*.py` files in the plugin folders given (the `plugins/` folder next to the rules file and
`--plugins-dir`). `GHOST_ROUTER_PLUGINS=name,name` allows only those names (`none`: no plugin
beyond the built-ins). A plugin that fails to load is reported with its file and error and
left out; the router keeps serving.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from router import builtin_plugin, hookspecs
from router.errors import RouterError
from router.log import logger
from router.registry import Registry

ALLOW_ENV = "GHOST_ROUTER_PLUGINS"
ENTRY_POINT_GROUP = "ghost_router"


async def await_me_maybe(value: Any) -> Any:
    """The value, awaited if it is awaitable (hooks may be sync or async)."""
    if inspect.isawaitable(value):
        return await value
    return value


@dataclass
class Plugins:
    """A loaded plugin set: the pluggy manager, what loaded, and what failed."""

    manager: pluggy.PluginManager
    loaded: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def _impls(self, name: str) -> list[Any]:
        return list(reversed(getattr(self.manager.hook, name).get_hookimpls()))  # pluggy's call order

    async def first(self, name: str, **kwargs: Any) -> tuple[Any, str] | None:
        """Call hook NAME in order; the first non-None answer and the plugin that gave it. A plugin
        that raises is logged with its name and the request gets a 500 in its own protocol."""
        for impl in self._impls(name):
            try:
                result = await _call(impl, kwargs)
            except RouterError:
                raise  # an error the plugin means the client to get
            except Exception as exc:  # a broken plugin is the client's error answer, not a crash
                logger.error("plugin %s failed in %s: %s: %s", impl.plugin_name, name, type(exc).__name__, exc)
                raise RouterError(
                    500,
                    f"ghost-router: plugin {impl.plugin_name} failed in {name} ({type(exc).__name__}: {exc}); the "
                    "request was not handled. Fix or remove the plugin (its error is in the router's log).",
                    "api_error",
                ) from None
            if result is not None:
                return result, impl.plugin_name
        return None

    async def each(self, name: str, **kwargs: Any) -> None:
        """Call every implementation of hook NAME; an exception is logged and swallowed."""
        for impl in self._impls(name):
            try:
                await _call(impl, kwargs)
            except Exception as exc:  # noqa: BLE001 - an observer must never break a request
                logger.error("plugin %s failed in %s: %s: %s", impl.plugin_name, name, type(exc).__name__, exc)

    def _register_each(self, name: str, register_for: Callable[[str], Callable[[Any], None]]) -> None:
        """Call registration hook NAME on every plugin, built-ins (trylast) first; REGISTER_FOR(plugin)
        is the callback that plugin gets. A plugin that fails is reported, not fatal."""
        for impl in getattr(self.manager.hook, name).get_hookimpls():
            try:
                impl.function(*[register_for(impl.plugin_name) for _ in impl.argnames])
            except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, not fatal
                self.errors.append(f"plugin {impl.plugin_name}: {name} failed: {type(exc).__name__}: {exc}")

    def registry(self) -> tuple[Registry, list[tuple[str, str]]]:
        """The matchers, actions and protocols every plugin registers, and their default rules
        as (plugin, YAML text) pairs."""
        registry = Registry()
        self._register_each("register_protocols", lambda plugin: registry.add_protocol)
        self._register_each("register_matchers", lambda plugin: registry.add_matcher)
        self._register_each("register_actions", lambda plugin: registry.add_action)
        rules: list[tuple[str, str]] = []
        self._register_each("register_rules", lambda plugin: lambda text: rules.append((plugin, text)))
        return registry, rules


def _allowed(name: str) -> bool:
    allow = os.environ.get(ALLOW_ENV)
    if allow is None:
        return True
    names = {n.strip() for n in allow.split(",") if n.strip()}
    return name in names and "none" not in names


async def _call(impl: Any, kwargs: dict[str, Any]) -> Any:
    """Call a hook implementation with the arguments it accepts, as pluggy maps them."""
    return await await_me_maybe(impl.function(*[kwargs[name] for name in impl.argnames]))


def builtin_registry() -> Registry:
    """A registry holding only the built-in protocols, matchers and actions (no other plugin)."""
    registry, _ = load_plugins(entry_points=False).registry()
    return registry


def load_plugins(folders: Iterable[str | os.PathLike[str]] = (), entry_points: bool = True) -> Plugins:
    """Build the plugin manager: built-ins, then entry points, then plugin files."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    plugins = Plugins(manager)
    manager.register(builtin_plugin, name="builtin")
    plugins.loaded.append("builtin")
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if entry_points else ()
    for entry_point in sorted(found, key=lambda e: e.name):  # a stable order: plugin rules are ordered too
        if not _allowed(entry_point.name) or manager.get_plugin(entry_point.name):
            continue
        try:
            _register(plugins, entry_point.load(), entry_point.name)
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            plugins.errors.append(f"plugin {entry_point.name} ({entry_point.value}): {type(exc).__name__}: {exc}")
    for folder in folders:
        for path in sorted(Path(folder).glob("*.py")):
            if path.name.startswith("_"):
                continue
            if not _allowed(path.stem):
                continue
            try:
                _register(plugins, _import_file(path), path.stem)
            except Exception as exc:  # noqa: BLE001 - reported, not fatal
                plugins.errors.append(f"plugin file {path}: {type(exc).__name__}: {exc}")
    for error in plugins.errors:
        logger.error("%s (left out; the router goes on without it)", error)
    return plugins


def _register(plugins: Plugins, module: Any, name: str) -> None:
    existing = plugins.manager.get_plugin(name)
    if existing is not None:
        if name == "builtin" or name not in plugins.loaded:
            raise ValueError(f"a plugin named {name!r} is already loaded")
        plugins.manager.unregister(existing)  # a plugin file replaces the installed plugin of the same name
        plugins.loaded.remove(name)
    plugins.manager.register(module, name=name)
    try:
        plugins.manager.check_pending()
    except pluggy.PluginValidationError as exc:
        plugins.manager.unregister(module)
        raise ValueError(f"{exc} (known hooks: {', '.join(h.__name__ for h in hookspecs.HOOKS)})") from None
    plugins.loaded.append(name)


def _import_file(path: Path) -> Any:
    """Import a plugin file as a fresh module (a changed file is re-read on reload)."""
    module_name = f"ghost_router_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module
