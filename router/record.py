"""`serve --record FILE`: one JSON line per request, keys redacted, in the format `replay` reads.

Each line: seq, time, method, path, query, headers (secrets redacted), body (the parsed JSON, or
`body_text` when it was not JSON) and the live decision (rule, action, status).
"""

from __future__ import annotations

import time
from typing import IO, Any

from router.exchange import Exchange
from router.jsonutil import dumps
from router.log import redact_headers


class Recorder:
    """Appends exchanges to a JSON-lines file, line-buffered so a crash loses at most one line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[str] = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in close()
        self._seq = 0

    def write(self, ex: Exchange) -> None:
        """Append one request and what the router decided."""
        self._seq += 1
        record: dict[str, Any] = {
            "seq": self._seq,
            "id": ex.id,
            "time": time.time(),
            "method": ex.method,
            "path": ex.path,
            "query": ex.query,
            "headers": redact_headers(ex.headers.items()),
        }
        if ex.body is not None:
            record["body"] = ex.body
        elif ex.raw:
            record["body_text"] = ex.raw.decode("utf-8", "replace")
        record["decision"] = {"rule": ex.rule, "action": ex.action, "status": ex.status}
        self._file.write(dumps(record) + "\n")

    def close(self) -> None:
        """Close the file."""
        self._file.close()
