"""The JSON Schema of the rules file, built from the registered matchers and actions."""

from __future__ import annotations

from typing import Any

from router.registry import Registry
from router.translate.apis import API_NAMES
from router.units import DURATION_PATTERN, HEADERS_SCHEMA, SIZE_PATTERN

DURATION = {
    "anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": DURATION_PATTERN}],
    "description": "seconds, or a string like '250ms', '30s', '15m', '1h'",
}
SIZE = {
    "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": SIZE_PATTERN}],
    "description": "bytes, or a string like '512KiB', '64MiB'",
}

URL = {"type": "string", "pattern": "^https?://[^/\\s]+", "description": "http(s)://host:port[/prefix]"}

UPSTREAM = {
    "type": "object",
    "additionalProperties": False,
    "oneOf": [{"required": ["url"]}, {"required": ["urls"]}],
    "description": "an upstream with either `url` (one server) or `urls` (a pool of servers), not both",
    "properties": {
        "url": URL,
        "urls": {
            "type": "array",
            "minItems": 1,
            "items": {
                "anyOf": [
                    URL,
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["url"],
                        "properties": {"url": URL, "max_concurrency": {"type": "integer", "minimum": 1}},
                    },
                ],
                "description": "a server URL, or {url: ..., max_concurrency: N}",
            },
        },
        "max_concurrency": {"type": "integer", "minimum": 1},
        "max_queue": {"type": "integer", "minimum": 0},
        "max_queued_bytes": SIZE,
        "queue_timeout": DURATION,
        "connect_timeout": DURATION,
        "idle_timeout": DURATION,
        "keepalive": DURATION,
        "headers": {**HEADERS_SCHEMA, "additionalProperties": {"type": "string", "pattern": "^[^\\r\\n\\x00]*$"}},
        "forward_client_auth": {"type": "boolean"},
        "context_errors": {"type": "boolean"},
        "api": {
            "anyOf": [
                {"enum": list(API_NAMES)},
                {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"enum": list(API_NAMES)}},
            ],
            "description": f"one of {', '.join(API_NAMES)}, or a list of them: the APIs the server speaks "
            "(turns in another API are translated to the first)",
        },
        "slot_save": {
            "type": "object",
            "additionalProperties": False,
            "required": ["folder"],
            "properties": {
                "folder": {"type": "string", "minLength": 1},
                "budget": SIZE,
                "idle": DURATION,
            },
            "description": "warm restarts: {folder: the server's --slot-save-path, budget: '20GiB', idle: '3s'}",
        },
        "model": {"type": "string", "minLength": 1},
        "fold_system_messages": {"type": "boolean"},
        "drop_fields": {"type": "array", "items": {"type": "string", "minLength": 1}},
    },
}


def build_schema(registry: Registry) -> dict[str, Any]:
    """The whole-file schema; `match` and `action` accept exactly the registered names."""
    rule = {
        "type": "object",
        "additionalProperties": False,
        "required": ["action"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "description": {"type": "string"},
            "match": {
                "type": ["object", "null"],
                "additionalProperties": False,
                "properties": {name: spec.schema for name, spec in registry.matchers.items()},
            },
            "action": {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "properties": {name: spec.schema for name, spec in registry.actions.items()},
            },
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "required": ["rules"],
        "properties": {
            "version": {"const": 1},
            "default_upstream": {"type": "string"},
            "plugin_rules": {"type": "boolean"},
            "auth": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "api_keys": {
                        "type": "array",
                        "items": {"type": "string", "minLength": 16},
                        "description": "keys of at least 16 characters; ${ENV_VAR} allowed",
                    }
                },
            },
            "limits": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "max_body": SIZE,
                    "header_timeout": DURATION,
                    "body_timeout": DURATION,
                    "keepalive_timeout": DURATION,
                    "send_timeout": DURATION,
                    "max_connections": {"type": "integer", "minimum": 1},
                },
            },
            "security": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "allowed_hosts": {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1},
                        "description": "Host header names accepted, '*' for any",
                    },
                    "allowed_origins": {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1},
                        "description": "browser origins accepted, e.g. http://127.0.0.1:3000",
                    },
                },
            },
            "upstreams": {"type": "object", "minProperties": 1, "additionalProperties": UPSTREAM},
            "rules": {"type": "array", "items": rule},
        },
    }
