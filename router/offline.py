"""Evaluating the rule table without serving: `check`, `explain` and `replay`.

A request record is the JSON object `serve --record` writes (method, path, query, headers,
body); a bare request body is taken as `POST /v1/messages`.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

from router.answers import Answer
from router.config import RouterConfig
from router.edits import Edits
from router.errors import RouterError
from router.protocols.base import Request, new_request, parse_request
from router.registry import Registry
from router.rules.engine import Condition, Rule
from router.specs import Services
from router.upstream.client import UpstreamClient
from router.upstream.pool import UpstreamPool


@dataclass
class Decision:
    """What the table decides for one request, why earlier rules did not match, and what it answers."""

    exchange: Request
    rule: Rule | None
    skipped: list[tuple[Rule, Condition]]
    error: str | None = None
    answer: str = ""  # what the router would answer (a fake's body), or where it would forward

    @property
    def rule_name(self) -> str:
        """The matching rule's name, `-` if none (or the request is malformed)."""
        return self.rule.name if self.rule else "-"

    @property
    def action(self) -> str:
        """The actions as the log shows them."""
        if self.error:
            return "error"
        return self.rule.label if self.rule else "-"


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


class _NoHooks:
    async def each(self, name: str, **kwargs: Any) -> None:
        """Offline, no plugin observes or edits."""


def _raw(record: dict[str, Any]) -> bytes:
    if record.get("body") is not None:
        return json.dumps(record["body"]).encode()
    return str(record.get("body_text") or "").encode()


def decide(config: RouterConfig, registry: Registry, record: dict[str, Any], answer: bool = False) -> Decision:
    """Run RECORD through CONFIG's table; with ANSWER also its rule's actions, as far as they answer locally."""
    method, path = record["method"].upper(), record["path"]
    protocol, kind = registry.protocol_for(method, path)
    headers = CIMultiDictProxy(CIMultiDict((str(k), str(v)) for k, v in (record.get("headers") or {}).items()))
    query = record.get("query") or ""
    arrived = new_request(method, path, query, path, headers, _raw(record), protocol, kind)
    try:
        request = parse_request(arrived)
    except RouterError as error:
        return Decision(
            arrived, None, [], f"{error.status} {error.message}", _show(protocol.error_answer(error, "req_offline"))
        )
    skipped: list[tuple[Rule, Condition]] = []
    for rule in config.table.rules:
        failing = rule.failing(request)
        if failing is None:
            return Decision(request, rule, skipped, answer=_answer_of(request, rule, config) if answer else "")
        skipped.append((rule, failing))
    return Decision(request, None, skipped)


def _answer_of(request: Request, rule: Rule, config: RouterConfig) -> str:
    """What RULE answers REQUEST: a local answer in full, or where it is forwarded with which edits."""
    pool = UpstreamPool()
    pool.apply(config.upstreams)
    services = Services(pool, UpstreamClient(), None, _NoHooks())
    edits = Edits(request)
    for name, action in rule.actions:
        if name == "forward":
            upstream = pool[getattr(action, "upstream", config.default_upstream)]
            edits.apply(upstream.config.edits)
            changed = sorted(k for k in edits.body if request.body.get(k) != edits.body.get(k)) if edits.changed else []
            model = edits.body.get("model")
            return (
                f"forwarded to {upstream.name} ({upstream.urls})"
                + (f" as model {model}" if model else "")
                + (f", changed fields: {', '.join(changed)}" if changed else ", body unchanged")
            )
        try:
            result = asyncio.run(action.run(request, edits, services))
        except RouterError as error:
            result = request.protocol.error_answer(error, "req_offline")
        if isinstance(result, Answer):
            return _show(result)
    return "-"


def _show(answer: Answer) -> str:
    body = answer.body.decode("utf-8", "replace")
    return f"{answer.status} {body if len(body) <= 400 else body[:397] + '...'}"


def _seen(condition: Condition, ex: Request) -> str:
    """What the request had for the field a condition tests, for explanations."""
    view = ex.view
    values = {
        "path": ex.path,
        "method": ex.method,
        "model": view.model,
        "stream": view.stream,
        "max_tokens": view.max_tokens,
        "client": f"{ex.client or '-'} ({ex.protocol.name})",
        "tools": f"{view.tools} {list(view.tool_names)[:5]}",
        "system": _clip(view.system),
        "system_regex": _clip(view.system),
        "user": _clip(view.user),
        "user_regex": _clip(view.user),
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
    lines = [
        f"request: {ex.method} {ex.target} model={ex.view.model or '-'} "
        f"client={ex.client or '-'} tools={ex.view.tools} stream={ex.view.stream}"
    ]
    if decision.error:
        return [*lines, f"the router answers an error before any rule: {decision.error}", f"answer: {decision.answer}"]
    for rule, condition in decision.skipped:
        lines.append(
            f"  #{rule.index + 1} {rule.name}: no, {condition.describe()} "
            f"does not hold (request has {_seen(condition, ex)})"
        )
    if decision.rule is None:
        lines.append("  no rule matches: the router answers 404 not_found_error")
    else:
        rule = decision.rule
        lines.append(f"  #{rule.index + 1} {rule.name}: MATCH on {rule.why} -> {rule.label}")
        lines.append(f"answer: {decision.answer}")
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
        rows.append(
            f"{record.get('seq', index):>5}  {request[:44]:44} {(ex.view.model or '-')[:28]:28} "
            f"{decision.rule_name[:22]:22} {decision.action}{flag}"
        )
    rows.append("")
    rows.append("requests per rule:")
    order = [r.name for r in config.table.rules] + ["-"]
    for name in order:
        if counts[name]:
            rows.append(f"  {name:24} {counts[name]}")
    return rows, mismatches


def describe_table(config: RouterConfig) -> list[str]:
    """The compiled table as `check` prints it."""
    lines = [
        f"{config.source}: {len(config.table.rules)} rules, "
        f"{len(config.upstreams)} upstream(s), max_body {config.max_body} bytes"
    ]
    for upstream in config.upstreams.values():
        default = " (default)" if upstream.name == config.default_upstream else ""
        model = f" model={upstream.model}" if upstream.model else ""
        model += f" api={','.join(upstream.api)}"
        lines.append(
            f"upstream {upstream.name}{default}: {upstream.describe_servers()}{model} "
            f"max_concurrency={upstream.max_concurrency} "
            f"max_queue={upstream.max_queue} queue_timeout={upstream.queue_timeout:g}s"
        )
    for rule in config.table.rules:
        line = f" line {rule.line}" if rule.line else ""
        lines.append(f"  #{rule.index + 1} {rule.name}{line}: {rule.why} -> {rule.label}")
    return lines
