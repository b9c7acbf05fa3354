"""Loading a rules file: YAML with line numbers, JSON Schema validation, then compilation.

Every problem becomes one RulesError line: `FILE:LINE: rule #N 'name': field.path: what is wrong`.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from router.edits import BodyEdits
from router.errors import RulesError
from router.registry import Registry
from router.rules.engine import Condition, Rule, RuleTable
from router.rules.schema import build_schema
from router.secrets import split_userinfo
from router.specs import BuildContext
from router.units import parse_duration, parse_size
from router.upstream.pool import ServerConfig, UpstreamConfig
from router.upstream.warm import SlotSaveConfig

EMBEDDED_SOURCE = "<embedded default rules>"
DEFAULT_UPSTREAM = ("local", "http://127.0.0.1:8080")
DEFAULT_API = "anthropic"  # what an upstream speaks when its `api` is not given
DEFAULT_MAX_BODY = 64 * 1024 * 1024
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Limits:
    """Inbound limits (`limits:` in the rules file): what a client may hold, and for how long."""

    max_body: int = DEFAULT_MAX_BODY  # bytes of one request body
    header_timeout: float = 60.0  # a new connection's first request head must arrive within this
    body_timeout: float = 300.0  # a request body must arrive whole within this
    keepalive_timeout: float = 75.0  # an idle keep-alive connection is closed after this
    send_timeout: float = 120.0  # a client that takes no bytes for this long is dropped (its slot freed)
    max_connections: int = 1024  # open client connections; silent ones make room for new ones


@dataclass(frozen=True)
class RouterConfig:
    """A loaded, validated and compiled rules file."""

    source: str
    upstreams: dict[str, UpstreamConfig]
    default_upstream: str
    table: RuleTable
    limits: Limits = Limits()
    loaded_at: float = field(default_factory=time.time)
    api_keys: tuple[str, ...] = ()  # inbound keys; empty: no authentication (loopback only)
    allowed_hosts: tuple[str, ...] | None = None  # Host names accepted; None: loopback names when listening there
    allowed_origins: tuple[str, ...] = ()  # browser origins accepted (none by default)

    @property
    def max_body(self) -> int:
        """The largest request body accepted."""
        return self.limits.max_body


def embedded_rules_text() -> str:
    """The default rule table shipped inside the package."""
    return resources.files("router").joinpath("default_rules.yaml").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Overrides:
    """Command-line settings that win over the file, at start and at every reload."""

    upstream_url: str | None = None  # the default upstream's URL(s)
    model: str | None = None  # the model name the default upstream serves
    max_body: int | None = None  # limits.max_body


PluginRules = list[tuple[str, str]]  # (plugin name, YAML text of a rules list)


def load_config(
    path: str | os.PathLike[str] | None,
    registry: Registry,
    overrides: Overrides = Overrides(),
    plugin_rules: PluginRules = (),  # type: ignore[assignment]
) -> RouterConfig:
    """Load PATH (or the embedded default when None), applying OVERRIDES to the default upstream;
    PLUGIN_RULES go before the file's own rules (unless the file says `plugin_rules: false`)."""
    if path is None:
        return parse_config(embedded_rules_text(), EMBEDDED_SOURCE, registry, overrides, plugin_rules)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc.strerror or exc}") from None
    return parse_config(text, str(path), registry, overrides, plugin_rules)


def parse_config(
    text: str,
    source: str,
    registry: Registry,
    overrides: Overrides = Overrides(),
    plugin_rules: PluginRules = (),  # type: ignore[assignment]
) -> RouterConfig:
    """Parse, validate and compile rules-file TEXT; SOURCE names it in errors."""
    node, data = _read_yaml(text, source)
    where = _Locator(source, node, data)
    if not isinstance(data, dict):
        raise RulesError(f"{source}:1: the rules file must be a mapping with a 'rules:' list (see docs/rules.md)")
    error = _first_schema_error(build_schema(registry), data)
    if error is not None:
        raise where.error(*error)
    upstreams, default = _upstreams(data, where, overrides)
    context = BuildContext(frozenset(upstreams), default)
    own = [_compile_rule(index, raw, registry, context, where) for index, raw in enumerate(data["rules"])]
    added = _plugin_rules(plugin_rules, registry, context) if data.get("plugin_rules", True) else []
    rules = tuple(replace(rule, index=index) for index, rule in enumerate([*added, *own]))
    names = [r.name for r in rules]
    for index, name in enumerate(names):
        if name in names[:index]:
            where_from = where if index >= len(added) else None
            first = ", ".join(r.name for r in added) or "none"
            message = f"duplicate rule name {name!r}; rule names must be unique (plugin rules come first: {first})"
            if where_from is None:
                raise RulesError(f"plugin rules: {message}")
            raise where.error(["rules", index - len(added), "name"], message)
    limits = _limits(data.get("limits") or {}, overrides)
    keys = tuple(
        _expand(where, ["auth", "api_keys", i], key)
        for i, key in enumerate((data.get("auth") or {}).get("api_keys", []))
    )
    security = data.get("security") or {}
    hosts = security.get("allowed_hosts")
    return RouterConfig(
        source,
        upstreams,
        default,
        RuleTable(rules),
        limits,
        api_keys=keys,
        allowed_hosts=None if hosts is None else tuple(h.lower() for h in hosts),
        allowed_origins=tuple(o.rstrip("/").lower() for o in security.get("allowed_origins", [])),
    )


def _limits(raw: dict[str, Any], overrides: Overrides) -> Limits:
    """The inbound limits; --max-body wins over the file."""
    defaults = Limits()
    return Limits(
        max_body=overrides.max_body or parse_size(raw.get("max_body", defaults.max_body)),
        header_timeout=parse_duration(raw.get("header_timeout", defaults.header_timeout)),
        body_timeout=parse_duration(raw.get("body_timeout", defaults.body_timeout)),
        keepalive_timeout=parse_duration(raw.get("keepalive_timeout", defaults.keepalive_timeout)),
        send_timeout=parse_duration(raw.get("send_timeout", defaults.send_timeout)),
        max_connections=raw.get("max_connections", defaults.max_connections),
    )


def _expand(where: _Locator, path: list[Any], value: str) -> str:
    """VALUE with `${ENV_VAR}` replaced from the environment (an unset variable is an error at PATH)."""
    try:
        return _ENV_REF.sub(lambda m: os.environ[m.group(1)], value)
    except KeyError as exc:
        raise where.error(path, f"environment variable {exc.args[0]} is not set") from None


def _plugin_rules(plugin_rules: PluginRules, registry: Registry, context: BuildContext) -> list[Rule]:
    """Compile each plugin's default rules, validated like the file's own."""
    schema = build_schema(registry)
    compiled: list[Rule] = []
    for plugin, text in plugin_rules:
        source = f"plugin {plugin} rules"
        _, data = _read_yaml(text, source)
        document = {"rules": data}
        where = _Locator(source, None, document)
        error = _first_schema_error(schema, document)
        if error is not None:
            raise where.error(*error)
        compiled += [_compile_rule(index, raw, registry, context, where) for index, raw in enumerate(data)]
    return compiled


def _read_yaml(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"{mark.line + 1}:{mark.column + 1}" if mark else "1"
        raise RulesError(f"{source}:{line}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise RulesError(f"{source}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return node, data


def _first_schema_error(schema: dict[str, Any], data: Any) -> tuple[list[Any], str] | None:
    """The most relevant schema violation as (path, message), or None."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), -len(e.absolute_path)))
    if not errors:
        return None
    error = jsonschema.exceptions.best_match(errors, key=jsonschema.exceptions.relevance)
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        extra = [key for key in error.instance if key not in allowed]
        path.append(extra[0])
        kind = {"match": "matcher", "action": "action"}.get(str(path[-2]) if len(path) > 1 else "", "field")
        return path, f"unknown {kind} {extra[0]!r}; allowed: {', '.join(allowed)}"
    if error.validator == "required":
        return path, f"{error.message}"
    described: Any = error  # the nearest schema that says what it accepts
    while described is not None:
        description = described.schema.get("description") if isinstance(described.schema, dict) else None
        if description and described.validator in ("anyOf", "oneOf", "pattern"):
            return list(described.absolute_path), f"{described.instance!r} is not valid here; expected {description}"
        described = described.parent
    return path, error.message


def _upstreams(data: dict[str, Any], where: _Locator, overrides: Overrides) -> tuple[dict[str, UpstreamConfig], str]:
    raw = data.get("upstreams") or {DEFAULT_UPSTREAM[0]: {"url": DEFAULT_UPSTREAM[1]}}
    default = data.get("default_upstream", next(iter(raw)))
    if default not in raw:
        raise where.error(["default_upstream"], f"unknown upstream {default!r}; defined upstreams: {', '.join(raw)}")
    upstreams = {}
    for name, options in raw.items():
        headers = [
            (header, _expand(where, ["upstreams", name, "headers", header], value))
            for header, value in (options.get("headers") or {}).items()
        ]
        is_default = name == default
        model = overrides.model if (overrides.model and is_default) else options.get("model")
        upstreams[name] = UpstreamConfig(
            name=name,
            servers=_servers(name, options, overrides.upstream_url if is_default else None, where),
            max_queue=options.get("max_queue", 256),
            max_queued_bytes=parse_size(options.get("max_queued_bytes", "256MiB")),
            queue_timeout=parse_duration(options.get("queue_timeout", 900)),
            connect_timeout=parse_duration(options.get("connect_timeout", 10)),
            idle_timeout=parse_duration(options.get("idle_timeout", 600)),
            keepalive=parse_duration(options.get("keepalive", 10)),
            headers=tuple(headers),
            forward_client_auth=options.get("forward_client_auth", False),
            context_errors=options.get("context_errors", True),
            api=_apis(options.get("api", DEFAULT_API)),
            slot_save=_slot_save(name, options.get("slot_save"), where),
            edits=BodyEdits(
                model=model,
                fold_system_messages=options.get("fold_system_messages", False),
                drop_fields=tuple(options.get("drop_fields", [])),
            ),
        )
    return upstreams, default


def _apis(value: str | list[str]) -> tuple[str, ...]:
    """An upstream's `api`: one API, or the list of those its server speaks (the first is the one
    other APIs are translated to)."""
    return (value,) if isinstance(value, str) else tuple(value)


def _slot_save(name: str, options: dict[str, Any] | None, where: _Locator) -> SlotSaveConfig | None:
    """An upstream's `slot_save` settings; the folder must exist (llama-server does not make it)."""
    if options is None:
        return None
    folder = _expand(where, ["upstreams", name, "slot_save", "folder"], options["folder"])
    if not Path(folder).expanduser().is_dir():
        raise where.error(
            ["upstreams", name, "slot_save", "folder"],
            f"{folder!r} is not a folder; make it and start llama-server with --slot-save-path pointing to it",
        )
    return SlotSaveConfig(
        folder=folder,
        budget=parse_size(options.get("budget", "20GiB")),
        idle=parse_duration(options.get("idle", 3)),
    )


def _servers(name: str, options: dict[str, Any], override: str | None, where: _Locator) -> tuple[ServerConfig, ...]:
    """The upstream's servers: `url`, or each of `urls` (a URL or {url, max_concurrency}); OVERRIDE
    (from --upstream, comma-separated for a pool) replaces them."""
    each = options.get("max_concurrency", 1)
    if override:
        entries: list[Any] = [u.strip() for u in override.split(",") if u.strip()]
    else:
        entries = options["urls"] if "urls" in options else [options["url"]]
    servers: list[ServerConfig] = []
    for index, entry in enumerate(entries):
        url, limit = (entry, each) if isinstance(entry, str) else (entry["url"], entry.get("max_concurrency", each))
        try:
            url, authorization = split_userinfo(url.rstrip("/"))
        except ValueError as exc:
            raise where.error(
                ["upstreams", name, "urls" if "urls" in options else "url"], f"{url!r} is not a valid URL: {exc}"
            ) from None
        if any(server.url == url for server in servers):
            raise where.error(["upstreams", name, "urls", index], f"{url} is listed twice; each server once")
        servers.append(ServerConfig(url, limit, authorization))
    return tuple(servers)


def _compile_rule(index: int, raw: dict[str, Any], registry: Registry, context: BuildContext, where: _Locator) -> Rule:
    base = ["rules", index]
    conditions = []
    for name, value in (raw.get("match") or {}).items():
        try:
            conditions.append(Condition(name, value, registry.matchers[name].compile(value)))
        except ValueError as exc:
            raise where.error([*base, "match", name], str(exc)) from None
    edits: list[tuple[str, Any]] = []
    answers: list[tuple[str, Any]] = []
    context = replace(context, rule=raw.get("name") or f"#{index + 1}")
    for name, options in raw["action"].items():
        spec = registry.actions[name]
        try:
            compiled = spec.build(options, context)
        except ValueError as exc:
            raise where.error([*base, "action", name], str(exc)) from None
        (answers if spec.terminal else edits).append((name, compiled))
    if len(answers) > 1:
        terminal = ", ".join(n for n, s in registry.actions.items() if s.terminal)
        raise where.error(
            [*base, "action"],
            f"a rule answers once: use one of {terminal} (got {', '.join(n for n, _ in answers)}); "
            "edits like rewrite may come before it",
        )
    if not answers:  # edits only: forward to the default upstream
        answers.append(("forward", registry.actions["forward"].build(None, context)))
    return Rule(index, raw.get("name") or f"#{index + 1}", where.line(base), tuple(conditions), tuple(edits + answers))


class _Locator:
    """Turns a data path into `FILE:LINE: rule #N 'name': field` using the YAML node marks."""

    def __init__(self, source: str, node: yaml.Node | None, data: Any) -> None:
        self.source, self.node, self.data = source, node, data

    def line(self, path: list[Any]) -> int | None:
        """1-based line of the value (or key) at PATH, as deep as the file goes."""
        node = self.node
        line = node.start_mark.line + 1 if node is not None else None
        for part in path:
            if isinstance(node, yaml.MappingNode):
                pair = next(((k, v) for k, v in node.value if k.value == str(part)), None)
                if pair is None:
                    break
                line, node = pair[0].start_mark.line + 1, pair[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line

    def error(self, path: list[Any], message: str) -> RulesError:
        """A one-line error for PATH."""
        location = f"{self.source}:{self.line(path) or 1}"
        if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
            index = path[1]
            raw = self.data["rules"][index] if isinstance(self.data.get("rules"), list) else {}
            name = raw.get("name") if isinstance(raw, dict) else None
            rule = f"rule #{index + 1}" + (f" {name!r}" if isinstance(name, str) else "")
            field = ".".join(map(str, path[2:])) or "(the rule itself)"
            return RulesError(f"{location}: {rule}: {field}: {message}")
        field = ".".join(map(str, path)) or "(top level)"
        return RulesError(f"{location}: {field}: {message}")
