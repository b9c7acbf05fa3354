"""Warm restarts for llama-server: a server's slot (its KV cache) is saved to disk after a
finished turn, and restored before the first turn after the server restarts, so that turn processes
only what the saved prompt does not share with it instead of the whole prompt.

llama-server does the saving and restoring (`--slot-save-path FOLDER`, `POST /slots/0?action=save`
and `?action=restore`); the router decides when, names the files, and keeps an index of them in
the same folder (which it must see: the server runs on this machine). A file is kept per
conversation and per server identity (model, context, slot count, KV type), with the digests of its
prompt's blocks (system and tools, then each message), so the best file for a new prompt is the one
sharing the longest run of leading blocks. A save waits until the server has been idle for `idle`
seconds with nothing queued (a save holds the slot about half a second for 12k tokens), and holds
the server's slot in the router's gate while it runs. The folder is kept within `budget` bytes,
oldest files first.

A server counts as possibly restarted when the router starts, when it comes back after being down,
and whenever it has been idle: before such a server's next turn the router asks `GET /slots`, and
restores only into a server that has run no task since it started (its slots show no `id_task`),
so a server that kept its cache is never overwritten.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from router.jsonutil import dumps_bytes, loads
from router.log import logger, progress
from router.upstream.client import ConnectFailed, ResponseFailed, UpstreamClient
from router.upstream.queue import PriorityGate, Server
from router.upstream.slot_files import FILE_PREFIX, SavedSlot, SlotFiles

CALL_TIMEOUT = 120.0  # seconds for a save or restore: a big slot on a slow disk
LOOK_TIMEOUT = 10.0  # seconds for GET /props and /slots: answered between two batches of an idle server
ANSWER_LIMIT = 1 << 20  # bytes read of /slots, /props and save/restore answers


@dataclass(frozen=True)
class SlotSaveConfig:
    """An upstream's `slot_save` settings."""

    folder: str  # the folder llama-server was started with (--slot-save-path), as this machine sees it
    budget: int = 20 * 1024**3  # bytes of saved slots kept in the folder
    idle: float = 3.0  # seconds a server must be idle after a turn before its slot is saved


@dataclass
class ServerWarmth:
    """What the router knows of one server's slot."""

    check: bool = True  # the server may have restarted since the router last saw its slot
    comebacks: int = 0  # its health's count when last seen
    identity: str | None = None
    last_blocks: list[str] = field(default_factory=list)  # the prompt of the last finished turn
    saved_blocks: list[str] = field(default_factory=list)  # the prompt of the last save
    metrics: bool = False  # it serves GET /metrics (started with --metrics)
    restored: int = 0  # tokens restored before the turn running now (0: none)
    processed_before: float | None = None  # its prompt_tokens_total counter just before that turn
    warned: bool = False  # said once that it is not llama-server
    save_task: asyncio.Task[None] | None = None


@dataclass
class WarmLedger:
    """What warm restarts saved, for status, metrics, top and the shutdown line."""

    saves: int = 0
    restores: int = 0
    refused: int = 0
    tokens_restored: int = 0  # prompt tokens the first turn after a restore found in the cache


class WarmStarts:
    """One upstream's warm restarts."""

    def __init__(self, upstream: str, config: SlotSaveConfig) -> None:
        self.upstream, self.config = upstream, config
        self.client: UpstreamClient | None = None  # the forwarding client, given with each turn
        self.folder = Path(config.folder).expanduser()
        self.files = SlotFiles(self.folder)
        self.servers: dict[str, ServerWarmth] = {}
        self.ledger = WarmLedger()

    def reconfigure(self, config: SlotSaveConfig) -> None:
        """Adopt CONFIG (a rules reload); a new folder means a new index."""
        if Path(config.folder).expanduser() != self.folder:
            self.folder = Path(config.folder).expanduser()
            self.files = SlotFiles(self.folder)
        self.config = config

    def warmth(self, server: Server) -> ServerWarmth:
        """SERVER's state, made on first use."""
        return self.servers.setdefault(server.url, ServerWarmth())

    async def before_turn(self, server: Server, blocks: list[str], client: UpstreamClient) -> None:
        """Before a turn with prompt BLOCKS goes to SERVER (holding its slot): if the server may
        have restarted and its slot is empty, restore the best saved file."""
        self.client = client
        state = self.warmth(server)
        self._cancel_save(state)
        if state.comebacks != server.health.comebacks:  # it was down and answers again
            state.comebacks, state.check = server.health.comebacks, True
        if not state.check or not blocks:
            return
        try:
            identity = state.identity = await self._identity(server, state)
            slots = await self._call(server, "GET", "/slots") if identity else None
        except WarmError as exc:
            if not exc.unreachable:  # a server that is down gets its error from the turn itself
                state.check = False
                logger.warning("slot_save: upstream '%s' at %s: %s; no restore", self.upstream, server.url, exc)
            return
        state.check = False
        if identity is None:
            if not state.warned:
                state.warned = True
                logger.warning(
                    "slot_save: upstream '%s' at %s does not describe itself as llama-server does (GET /props); "
                    "its slots are neither saved nor restored. Remove slot_save from it, or point it at llama-server",
                    self.upstream,
                    server.url,
                )
            return
        if not _fresh(slots):
            return
        found = self.files.best(identity, blocks)
        if found is None:
            return
        entry, shared = found
        try:
            answer = await self._call(server, "POST", "/slots/0?action=restore", {"filename": entry.file})
        except WarmError as exc:
            self.ledger.refused += 1
            logger.warning(
                "slot_save: upstream '%s' at %s refused to restore %s (%s); the prompt is processed in full",
                self.upstream,
                server.url,
                entry.file,
                exc,
            )
            return
        self.ledger.restores += 1
        restored = answer.get("n_restored")
        state.restored = restored if isinstance(restored, int) and restored > 0 else 0
        state.processed_before = await self._processed(server) if state.metrics else None
        progress.info(
            "upstream '%s' at %s: restored %s tokens from %s (shares %d of %d prompt blocks) in %.2f s",
            self.upstream,
            server.url,
            answer.get("n_restored", "?"),
            entry.file,
            shared,
            len(blocks),
            _ms(answer, "restore_ms") / 1000,
        )

    async def after_turn(self, server: Server, blocks: list[str], gate: PriorityGate) -> None:
        """A turn with prompt BLOCKS finished on SERVER: count what a restore before it saved, and
        schedule a save for when the server is idle."""
        state = self.warmth(server)
        if not blocks or state.identity is None:  # not a model turn, or not llama-server
            return
        if state.restored:
            await self._count_restored(server, state)
        state.last_blocks = blocks
        self._cancel_save(state)
        state.save_task = asyncio.create_task(
            self._save_when_idle(server, state, gate), name=f"ghost-router slot save {self.upstream}"
        )

    def _cancel_save(self, state: ServerWarmth) -> None:
        if state.save_task is not None and not state.save_task.done():
            state.save_task.cancel()
        state.save_task = None

    async def _save_when_idle(self, server: Server, state: ServerWarmth, gate: PriorityGate) -> None:
        await asyncio.sleep(self.config.idle)
        if not gate.hold(server):  # a turn is running or waiting: it goes first, the save waits for the next lull
            return
        state.check = True  # idle now: the server may restart before the next turn
        try:
            await self._save(server, state)
        except (WarmError, OSError) as exc:
            logger.warning("slot_save: upstream '%s' at %s: %s; not saved", self.upstream, server.url, exc)
        finally:
            gate.release(server)

    async def _count_restored(self, server: Server, state: ServerWarmth) -> None:
        """The first turn after a restore is done: the tokens of its prompt the server did not
        process (its prompt's size from GET /slots, less what /metrics says it processed; without
        --metrics, the tokens restored, at most the prompt's size: an upper bound)."""
        restored, before = state.restored, state.processed_before
        state.restored, state.processed_before = 0, None
        try:
            slots = await self._call(server, "GET", "/slots")
            prompt = _prompt_tokens(slots, _last_used_slot(slots))
            after = await self._processed(server) if before is not None else None
        except WarmError as exc:
            logger.warning(
                "slot_save: upstream '%s' at %s: %s; the restore's saving is not counted",
                self.upstream,
                server.url,
                exc,
            )
            return
        if prompt is None:
            return
        reused = (
            max(0, prompt - int(after - before)) if after is not None and before is not None else min(restored, prompt)
        )
        self.ledger.tokens_restored += reused
        progress.info(
            "upstream '%s' at %s: the first turn after the restore found %d of its %d prompt tokens in the cache",
            self.upstream,
            server.url,
            reused,
            prompt,
        )

    async def _processed(self, server: Server) -> float | None:
        """SERVER's prompt_tokens_total counter (GET /metrics), None when it has none."""
        text = await self._call(server, "GET", "/metrics", raw=True)
        for line in text.decode("utf-8", "replace").splitlines():
            if line.startswith("llamacpp:prompt_tokens_total "):
                try:
                    return float(line.split()[1])
                except (IndexError, ValueError):
                    return None
        return None

    async def _save(self, server: Server, state: ServerWarmth) -> None:
        slots = await self._call(server, "GET", "/slots")
        if state.last_blocks == state.saved_blocks:
            return  # the slot holds what was saved last
        identity = state.identity
        assert identity is not None
        conversation = state.last_blocks[min(1, len(state.last_blocks) - 1)]
        name = f"{FILE_PREFIX}{identity[:12]}-{conversation[:20]}.bin"
        slot = _last_used_slot(slots)
        answer = await self._call(server, "POST", f"/slots/{slot}?action=save", {"filename": name})
        tokens = answer.get("n_saved")
        if not isinstance(tokens, int) or tokens <= 0:
            return
        size = _file_size(self.folder / name, answer)
        entry = SavedSlot(name, identity, conversation, state.last_blocks, tokens, size, time.time())
        deleted = self.files.add(entry, self.config.budget)
        state.saved_blocks = state.last_blocks
        self.ledger.saves += 1
        progress.info(
            "upstream '%s' at %s: saved its slot (%d tokens, %.0f MB) in %.2f s%s",
            self.upstream,
            server.url,
            tokens,
            size / 1e6,
            _ms(answer, "save_ms") / 1000,
            f"; deleted {len(deleted)} older file(s) to stay within the budget" if deleted else "",
        )

    async def _identity(self, server: Server, state: ServerWarmth) -> str | None:
        """What a saved slot must match to be restored into SERVER: its model, context, slot count
        and build, from GET /props (which does not tell the KV type: llama-server refuses a file of
        another KV type itself). None for a server that is not llama-server."""
        try:
            props = await self._call(server, "GET", "/props")
        except WarmError as exc:
            if exc.unreachable:
                raise
            return None
        settings = props.get("default_generation_settings") if isinstance(props, dict) else None
        if not isinstance(settings, dict) or "n_ctx" not in settings:
            return None
        state.metrics = props.get("endpoint_metrics") is True
        parts = [
            props.get("model_path"),
            props.get("model_ftype"),
            settings.get("n_ctx"),
            props.get("total_slots"),
            props.get("build_info"),
        ]
        return hashlib.blake2b(json.dumps(parts).encode(), digest_size=16).hexdigest()

    async def _call(
        self, server: Server, method: str, path: str, body: dict[str, Any] | None = None, raw: bool = False
    ) -> Any:
        """SERVER's JSON answer to METHOD PATH (its bytes, RAW); raises WarmError for anything else."""
        assert self.client is not None, "a turn came first"
        headers = [("Content-Type", "application/json")] if body is not None else []
        if server.authorization:
            headers.append(("Authorization", server.authorization))
        try:
            response = await self.client.send(
                method,
                server.url + path,
                headers,
                dumps_bytes(body) if body is not None else b"",
                LOOK_TIMEOUT,
                CALL_TIMEOUT if body is not None else LOOK_TIMEOUT,
            )
        except ConnectFailed as exc:
            raise WarmError(f"{method} {path}: cannot connect ({exc.reason})", unreachable=True) from None
        except (ResponseFailed, TimeoutError) as exc:
            raise WarmError(f"{method} {path} failed ({exc or 'timed out'})") from None
        try:
            data = b""
            while len(data) < ANSWER_LIMIT and (chunk := await response.read_chunk()):
                data += chunk
        except (ResponseFailed, TimeoutError) as exc:
            response.close()
            raise WarmError(f"{method} {path} broke off ({exc or 'timed out'})") from None
        except BaseException:  # the turn's client left during a restore: its connection is not reused
            response.close()
            raise
        response.release()
        if raw and response.status == 200:
            return data
        try:
            answer = loads(data)
        except ValueError:
            answer = None
        if response.status != 200:
            error = answer.get("error") if isinstance(answer, dict) else None
            message = error.get("message") if isinstance(error, dict) else error
            raise WarmError(f"{method} {path} answered {response.status}: {message or data[:200]!r}")
        if answer is None:
            raise WarmError(f"{method} {path} answered something that is not JSON")
        return answer

    def status(self) -> dict[str, Any]:
        """For /_router/status and top."""
        return {
            "folder": str(self.folder),
            "budget": self.config.budget,
            "bytes": self.files.total(),
            "files": self.files.status(),
            **asdict(self.ledger),
        }

    def close(self) -> None:
        """Cancel pending saves."""
        for state in self.servers.values():
            self._cancel_save(state)


class WarmError(Exception):
    """A slot call went wrong; the message says how. UNREACHABLE: nothing accepted the connection."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def _fresh(slots: Any) -> bool:
    """Whether llama-server's GET /slots shows a server that has run no task yet (just started: its
    slots have no `id_task`, or -1)."""
    if not isinstance(slots, list) or not slots:
        return False
    return all(isinstance(s, dict) and s.get("id_task", -1) == -1 and not s.get("is_processing") for s in slots)


def _last_used_slot(slots: Any) -> int:
    """The id of the slot that ran the newest task (the turn that just finished), 0 if unknown."""
    used = (
        [s for s in slots if isinstance(s, dict) and isinstance(s.get("id_task"), int)]
        if isinstance(slots, list)
        else []
    )
    newest = max(used, key=lambda s: s["id_task"], default={})
    slot = newest.get("id", 0)
    return slot if isinstance(slot, int) and slot >= 0 else 0


def _prompt_tokens(slots: Any, slot: int) -> int | None:
    """The size of the prompt SLOT's last task had."""
    for entry in slots if isinstance(slots, list) else []:
        if isinstance(entry, dict) and entry.get("id", 0) == slot:
            value = entry.get("n_prompt_tokens")
            return value if isinstance(value, int) and value > 0 else None
    return None


def _ms(answer: Any, name: str) -> float:
    timings = answer.get("timings") if isinstance(answer, dict) else None
    value = timings.get(name) if isinstance(timings, dict) else None
    return float(value) if isinstance(value, (int, float)) else 0.0


def _file_size(path: Path, answer: dict[str, Any]) -> int:
    try:
        return path.stat().st_size
    except OSError:
        written = answer.get("n_written")
        return written if isinstance(written, int) else 0
