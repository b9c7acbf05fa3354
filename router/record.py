"""`serve --record FILE`: one JSON line per request as it arrived, credentials redacted, in the
format `replay` reads.

Each line: seq, id, time, method, path, query (credentials redacted), headers (credentials
redacted), body (the JSON as the client sent it, before any rewrite, or `body_text` when it was
not JSON) and the live decision (rule, action, status). Recording never fails a request.
"""

from __future__ import annotations

import time
from typing import IO, Any

from router.jsonutil import dumps
from router.log import logger
from router.outcome import Outcome
from router.protocols.base import Request
from router.secrets import redact_headers, redact_query


class Recorder:
    """Appends requests to a JSON-lines file, line-buffered so a crash loses at most one line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[str] = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in close()
        self._seq = 0

    def write(self, request: Request, outcome: Outcome) -> None:
        """Append one request as it arrived and what the router decided."""
        self._seq += 1
        record: dict[str, Any] = {
            "seq": self._seq,
            "id": request.id,
            "time": time.time(),
            "method": request.method,
            "path": request.path,
            "query": redact_query(request.query),
            "headers": redact_headers(request.headers.items()),
            "decision": {"rule": outcome.rule, "action": outcome.action, "status": outcome.status},
        }
        try:
            line = dumps({**record, "body": request.body}) if request.body is not None else None
        except ValueError:  # JSON the writer cannot write back (nested too deeply): kept as text
            line = None
        if line is None:
            text = request.raw.decode("utf-8", "replace")
            line = dumps({**record, "body_text": text} if request.raw else record)
        try:
            self._file.write(line + "\n")
        except OSError as exc:
            logger.error("--record %s: cannot write: %s", self.path, exc)

    def close(self) -> None:
        """Close the file."""
        self._file.close()
