"""Prometheus text exposition of the router's counters at GET /metrics."""

from __future__ import annotations

from router.state import RouterState


def _labels(**labels: str) -> str:
    escaped = (
        f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in labels.items()
    )
    return "{" + ",".join(escaped) + "}"


def render(state: RouterState) -> str:
    """The metrics page."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP ghost_router_{name} {help_text}")
        lines.append(f"# TYPE ghost_router_{name} {kind}")
        lines.extend(f"ghost_router_{name}{labels} {value:g}" for labels, value in samples)

    metric("requests_total", "counter", "Requests received.", [("", state.requests)])
    metric(
        "outcomes_total",
        "counter",
        "Finished requests by outcome.",
        [(_labels(outcome=k), v) for k, v in sorted(state.outcomes.items())],
    )
    savings = state.savings()
    metric("ghost_turns_total", "counter", "Model turns answered here (fakes).", [("", savings["ghost_turns"])])
    metric(
        "saved_prompt_tokens_total",
        "counter",
        "Prompt tokens no server had to process: ghosts' prompts (estimated) and tokens restored from saved slots.",
        [
            (_labels(source="ghosts"), savings["ghost_prompt_tokens"]),
            (_labels(source="restored_slots"), savings["restored_prompt_tokens"]),
        ],
    )
    if savings["seconds_saved"] is not None:
        metric(
            "saved_prefill_seconds_total",
            "counter",
            "Those tokens at the servers' measured prefill rate.",
            [("", savings["seconds_saved"])],
        )
    metric(
        "rule_hits_total",
        "counter",
        "Requests matched, by rule.",
        [(_labels(rule=r.name), state.hits[r.name]) for r in state.config.table.rules],
    )
    metric("unmatched_total", "counter", "Requests no rule matched.", [("", state.hits["-"])])
    upstreams = state.pool.by_name.items()
    metric(
        "upstream_in_flight",
        "gauge",
        "Requests in flight to the upstream.",
        [(_labels(upstream=n), u.gate.in_flight) for n, u in upstreams],
    )
    metric(
        "upstream_queued",
        "gauge",
        "Requests waiting for an upstream slot.",
        [(_labels(upstream=n), u.gate.queued) for n, u in upstreams],
    )
    metric(
        "upstream_max_concurrency",
        "gauge",
        "Slots of the upstream.",
        [(_labels(upstream=n), u.gate.max_concurrency) for n, u in upstreams],
    )
    metric(
        "upstream_forwarded_total",
        "counter",
        "Requests sent to the upstream.",
        [(_labels(upstream=n), u.stats.forwarded) for n, u in upstreams],
    )
    metric(
        "upstream_errors_total",
        "counter",
        "Upstream connection and stream failures.",
        [(_labels(upstream=n), u.stats.errors) for n, u in upstreams],
    )
    metric(
        "upstream_cancelled_total",
        "counter",
        "Requests whose client left while queued or streaming.",
        [(_labels(upstream=n), u.stats.cancelled) for n, u in upstreams],
    )
    servers = [(n, s) for n, u in upstreams for s in u.servers]
    metric(
        "server_in_flight",
        "gauge",
        "Requests in flight to one server of an upstream.",
        [(_labels(upstream=n, url=s.url), s.in_flight) for n, s in servers],
    )
    metric(
        "server_up",
        "gauge",
        "1 while the server accepts connections, 0 while it is down.",
        [(_labels(upstream=n, url=s.url), 0 if s.health.down else 1) for n, s in servers],
    )
    metric(
        "server_forwarded_total",
        "counter",
        "Requests sent to one server of an upstream.",
        [(_labels(upstream=n, url=s.url), s.forwarded) for n, s in servers],
    )
    metric("rules_reloads_total", "counter", "Successful rule reloads.", [("", state.reloads)])
    metric(
        "rules_load_error",
        "gauge",
        "1 while the last reload failed (the previous table is live).",
        [("", 1 if state.last_load_error else 0)],
    )
    metric("rules_loaded_timestamp_seconds", "gauge", "When the live table was loaded.", [("", state.config.loaded_at)])
    return "\n".join(lines) + "\n"
