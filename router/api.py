"""The public API for plugins: everything a plugin needs, from one module.

Bundled plugins import only this module; third-party plugins should too: the router's other
modules may move between releases, this one's names stay. docs/plugins.md documents each name.
"""

from __future__ import annotations

from multidict import CIMultiDictProxy

from router.answers import Answer, Head, Result, Streamed, Trace
from router.edits import BodyEdits, Edits
from router.errors import BadRequest, Overloaded, RouterError, UpstreamUnavailable
from router.hookspecs import hookimpl
from router.jsonutil import dumps, dumps_bytes, loads
from router.outcome import Outcome
from router.protocols.base import (
    Protocol,
    Reply,
    Request,
    RequestView,
    client_from_user_agent,
    expect,
    json_type_name,
    sse,
)
from router.rules.globs import compile_glob
from router.schema_example import example_from_schema
from router.specs import Action, ActionSpec, BuildContext, MatcherSpec, Services, Test
from router.tokens import estimate_tokens, quick_estimate
from router.translate.sse import ServerEvent

Headers = CIMultiDictProxy[str]  # a request's headers, read-only and case-insensitive

__all__ = [
    "Action",
    "ActionSpec",
    "Answer",
    "BadRequest",
    "BodyEdits",
    "BuildContext",
    "Edits",
    "Head",
    "Headers",
    "MatcherSpec",
    "Outcome",
    "Overloaded",
    "Protocol",
    "Reply",
    "Request",
    "RequestView",
    "Result",
    "RouterError",
    "ServerEvent",
    "Services",
    "Streamed",
    "Test",
    "Trace",
    "UpstreamUnavailable",
    "client_from_user_agent",
    "compile_glob",
    "dumps",
    "dumps_bytes",
    "estimate_tokens",
    "example_from_schema",
    "expect",
    "hookimpl",
    "json_type_name",
    "loads",
    "quick_estimate",
    "sse",
]
