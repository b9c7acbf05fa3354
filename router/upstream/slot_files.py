"""Saved slot files: the index llama-server's slot files are kept by, in the folder they are saved
to, and the digests of a prompt's leading blocks that pick the best file for a new prompt.

A prompt's blocks are what precedes its turns (system prompt and tools), then each message; each
digest covers everything before it, so two prompts share the first N digests exactly when their first
N blocks are equal. `cache_control` markers are left out: Claude Code moves them between turns, and
they change no token the server sees.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from router.jsonutil import dumps_bytes, loads
from router.log import logger

INDEX_FILE = "ghost-router-slots.json"
FILE_PREFIX = "ghost-router-"
PROMPT_FIELDS = ("system", "tools", "instructions", "systemInstruction")  # what precedes the turns
TURN_FIELDS = ("messages", "input", "contents")
IGNORED_KEYS = frozenset({"cache_control"})  # markers that move between turns but change no prompt token


@dataclass
class SavedSlot:
    """One saved slot file and what it holds."""

    file: str
    identity: str  # the server it came from: model, context, slot count, KV type
    conversation: str  # the digest of its prompt's first two blocks
    blocks: list[str]  # cumulative digests of its prompt's blocks
    tokens: int
    size: int
    saved_at: float


def prompt_blocks(body: bytes) -> list[str]:
    """Cumulative digests of the prompt in BODY (a JSON model turn of any API): one for what precedes
    the turns (system prompt, tools), then one per message, each covering everything before it.
    Empty when BODY is not such a request."""
    try:
        request = loads(body)
        if not isinstance(request, dict):
            return []
        turns = next((request[name] for name in TURN_FIELDS if isinstance(request.get(name), list)), None)
        if turns is None:
            return []
        head = {name: request[name] for name in PROMPT_FIELDS if name in request}
        digest = hashlib.blake2b(digest_size=16)
        blocks = []
        for block in [head, *turns]:
            digest.update(_canonical(block))
            blocks.append(digest.copy().hexdigest())
    except (ValueError, RecursionError):  # not JSON, or nested deeper than anyone's prompt
        return []
    return blocks


def _canonical(value: Any) -> bytes:
    return json.dumps(_without_markers(value), sort_keys=True, ensure_ascii=False).encode()


def _without_markers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_markers(v) for k, v in value.items() if k not in IGNORED_KEYS}
    if isinstance(value, list):
        return [_without_markers(v) for v in value]
    return value


def shared_blocks(a: list[str], b: list[str]) -> int:
    """How many leading blocks two prompts share."""
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


class SlotFiles:
    """The index of saved slot files in one folder: which to restore, adding, evicting."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.entries: dict[str, SavedSlot] = {}
        self._load()

    def _load(self) -> None:
        try:
            raw = loads((self.folder / INDEX_FILE).read_bytes())
            self.entries = {e["file"]: SavedSlot(**e) for e in raw["files"]}
        except FileNotFoundError:
            self.entries = {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("slot_save: %s is unreadable (%s); starting a new index", self.folder / INDEX_FILE, exc)
            self.entries = {}
        for name in [n for n in self.entries if not (self.folder / n).exists()]:
            del self.entries[name]  # deleted by hand, or never written

    def write(self) -> None:
        """Write the index (atomically: a crash leaves the old one)."""
        temporary = self.folder / f".{INDEX_FILE}.tmp"
        temporary.write_bytes(dumps_bytes({"files": [asdict(e) for e in self.entries.values()]}))
        os.replace(temporary, self.folder / INDEX_FILE)

    def best(self, identity: str, blocks: list[str]) -> tuple[SavedSlot, int] | None:
        """The file of IDENTITY sharing the most leading blocks with BLOCKS (at least the system
        prompt and tools; the newest among equals), with that count."""
        best: tuple[SavedSlot, int] | None = None
        for entry in self.entries.values():
            if entry.identity != identity:
                continue
            shared = shared_blocks(entry.blocks, blocks)
            if shared and (best is None or (shared, entry.saved_at) > (best[1], best[0].saved_at)):
                best = (entry, shared)
        return best

    def add(self, entry: SavedSlot, budget: int) -> list[str]:
        """Record ENTRY (replacing the file of the same name), then delete the oldest files while the
        folder holds more than BUDGET bytes; returns the names deleted."""
        self.entries[entry.file] = entry
        deleted = []
        for old in sorted(self.entries.values(), key=lambda e: e.saved_at):
            if self.total() <= budget or old.file == entry.file:
                break
            with contextlib.suppress(FileNotFoundError):
                (self.folder / old.file).unlink()
            del self.entries[old.file]
            deleted.append(old.file)
        self.write()
        return deleted

    def total(self) -> int:
        """Bytes of all files."""
        return sum(e.size for e in self.entries.values())

    def status(self) -> list[dict[str, Any]]:
        """The files, newest first, for status and top."""
        return [
            {"file": e.file, "tokens": e.tokens, "bytes": e.size, "saved_at": e.saved_at}
            for e in sorted(self.entries.values(), key=lambda e: -e.saved_at)
        ]
