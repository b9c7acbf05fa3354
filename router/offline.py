"""Evaluating the rule table without serving: `check`, `explain` and `replay`.

A request record is the JSON object `serve --record` writes (method, path, query, headers,
body); a bare request body is taken as `POST /v1/messages`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

from multidict import CIMultiDict

from router.config import RouterConfig
from router.errors import RouterError
from router.exchange import Exchange
from router.registry import Registry
from router.rules.engine import Condition, Rule


@dataclass
class Decision:
    """What the table decides for one request, and why earlier rules did not match."""

    exchange: Exchange
    rule: Rule | None
    skipped: list[tuple[Rule, Condition]]
    error: str | None = None

    @property
    def rule_name(self) -> str:
        """The matching rule's name, `-` if none (or the request is malformed)."""
        return self.rule.name if self.rule else "-"

    @property
    def action(self) -> str:
        """The actions as the log shows them."""
        if self.error:
            return "error"
        return self.rule.label() if self.rule else "-"


def as_record(document: dict[str, Any], method: str | None = None, path: str | None = None) -> dict[str, Any]:
    """A record from a recorded line or from a bare request body."""
    if "method" in document and "path" in document:
        record = dict(document)
    else:
        record = {"method": "POST", "path": "/v1/messages", "headers": {}, "body": document}
    if method:
        record["method"] = method
    if path:
        record["path"], _, query = path.partition("?")
        record["query"] = query or record.get("query", "")
    return record


def exchange_for(record: dict[str, Any], registry: Registry) -> Exchange:
    """An exchange built from a record, with its body parsed as the live router would."""
    method, path = record["method"].upper(), record["path"]
    protocol, kind = registry.protocol_for(method, path)
    headers = CIMultiDict((str(k), str(v)) for k, v in (record.get("headers") or {}).items())
    ex = Exchange(method, path, headers, protocol, kind, record.get("query") or "")
    if record.get("body") is not None:
        ex.raw = json.dumps(record["body"]).encode()
    elif record.get("body_text"):
        ex.raw = record["body_text"].encode()
    return ex


def decide(config: RouterConfig, registry: Registry, record: dict[str, Any]) -> Decision:
    """Run RECORD through CONFIG's table."""
    ex = exchange_for(record, registry)
    try:
        ex.parse()
    except RouterError as error:
        return Decision(ex, None, [], f"{error.status} {error.message}")
    skipped = []
    for rule in config.table.rules:
        failing = rule.failing(ex)
        if failing is None:
            return Decision(ex, rule, skipped)
        skipped.append((rule, failing))
    return Decision(ex, None, skipped)


def _seen(condition: Condition, ex: Exchange) -> str:
    """What the request had for the field a condition tests, for explanations."""
    view = ex.view
    values = {
        "path": ex.path, "method": ex.method, "model": view.model, "stream": view.stream, "max_tokens": view.max_tokens,
        "client": f"{ex.client or '-'} ({ex.protocol.name})", "tools": f"{view.tools} {list(view.tool_names)[:5]}",
        "system": _clip(view.system), "system_regex": _clip(view.system), "user": _clip(view.user), "user_regex": _clip(view.user),
    }
    if condition.field == "header":
        return repr({name: ex.headers.get(name) for name in condition.value})
    return repr(values[condition.field]) if condition.field in values else "(not shown)"


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def explain(decision: Decision) -> list[str]:
    """Lines saying which rule matches and why each earlier rule did not."""
    ex = decision.exchange
    lines = [f"request: {ex.method} {ex.path_qs} model={ex.view.model or '-'} client={ex.client or '-'} tools={ex.view.tools} stream={ex.view.stream}"]
    if decision.error:
        return [*lines, f"the router answers an error before any rule: {decision.error}"]
    for rule, condition in decision.skipped:
        lines.append(f"  #{rule.index + 1} {rule.name}: no, {condition.describe()} does not hold (request has {_seen(condition, ex)})")
    if decision.rule is None:
        lines.append("  no rule matches: the router answers 404 not_found_error")
    else:
        rule = decision.rule
        lines.append(f"  #{rule.index + 1} {rule.name}: MATCH on {rule.why()} -> {rule.label()}")
    return lines


def replay(config: RouterConfig, registry: Registry, records: Iterable[dict[str, Any]]) -> tuple[list[str], int]:
    """A decision table for RECORDS with counts per rule; also the number of disagreements with
    the decisions recorded live (records written by `serve --record` carry them)."""
    rows = [f"{'seq':>5}  {'request':44} {'model':28} {'rule':22} action"]
    counts: Counter[str] = Counter()
    mismatches = 0
    for index, record in enumerate(records, 1):
        decision = decide(config, registry, record)
        ex = decision.exchange
        counts[decision.rule_name] += 1
        live = (record.get("decision") or {}).get("rule")
        flag = ""
        if live is not None and live != decision.rule_name:
            mismatches += 1
            flag = f"  (live: {live})"
        request = f"{ex.method} {ex.path}"
        rows.append(f"{record.get('seq', index):>5}  {request[:44]:44} {(ex.view.model or '-')[:28]:28} {decision.rule_name[:22]:22} {decision.action}{flag}")
    rows.append("")
    rows.append("requests per rule:")
    order = [r.name for r in config.table.rules] + ["-"]
    for name in order:
        if counts[name]:
            rows.append(f"  {name:24} {counts[name]}")
    return rows, mismatches


def describe_table(config: RouterConfig) -> list[str]:
    """The compiled table as `check` prints it."""
    lines = [f"{config.source}: {len(config.table.rules)} rules, {len(config.upstreams)} upstream(s), max_body {config.max_body} bytes"]
    for upstream in config.upstreams.values():
        default = " (default)" if upstream.name == config.default_upstream else ""
        model = f" model={upstream.model}" if upstream.model else ""
        lines.append(
            f"upstream {upstream.name}{default}: {upstream.describe_servers()}{model} max_concurrency={upstream.max_concurrency} "
            f"max_queue={upstream.max_queue} queue_timeout={upstream.queue_timeout:g}s"
        )
    for rule in config.table.rules:
        line = f" line {rule.line}" if rule.line else ""
        lines.append(f"  #{rule.index + 1} {rule.name}{line}: {rule.why()} -> {rule.label()}")
    return lines
