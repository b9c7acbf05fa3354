"""Warm restarts (`slot_save`): a finished turn's slot is saved when the server is idle, and restored
before the first turn after the server restarts; refused restores, busy servers, servers that are
not llama-server and the disk budget. Against a fake llama-server that keeps a slot of "tokens"
(the prompt's words) and really writes and reads its files, and against the real one."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from router.app import STATE, build_app
from router.config import parse_config
from router.errors import RulesError
from router.plugins import builtin_registry
from router.servers.llama import LlamaServer
from router.upstream.slot_files import INDEX_FILE
from tests.conftest import finished_line, post_and_leave_after, user_message
from tests.servers import require_llama_server

SYSTEM = "You are a careful coding agent. " * 40


@dataclass
class FakeLlama:
    """llama-server's slot API with one slot: /props, /slots, save and restore into FOLDER, and a
    /v1/messages whose reused prompt tokens are the words it shares with the slot's last prompt."""

    folder: Path
    slot: list[str] = field(default_factory=list)
    id_task: int = -1
    prompt_size: int = 0  # words of the last turn's prompt
    processed: int = 0  # words processed since the server started (its prompt_tokens_total)
    refuse_restore: bool = False
    props: bool = True
    calls: list[str] = field(default_factory=list)
    turn_gate: asyncio.Event | None = None
    end_gate: asyncio.Event | None = None  # a stream's last event sent, its body ends once this is set

    def restart(self) -> None:
        """What a restarted server has: an empty slot that has run nothing."""
        self.slot, self.id_task, self.prompt_size, self.processed = [], -1, 0, 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/props", self.get_props)
        app.router.add_get("/slots", self.get_slots)
        app.router.add_get("/metrics", self.get_metrics)
        app.router.add_post("/slots/{id}", self.slot_action)
        app.router.add_post("/v1/messages", self.messages)
        return app

    async def get_props(self, request: web.Request) -> web.Response:
        self.calls.append("props")
        if not self.props:
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response(
            {
                "model_path": "/models/m.gguf",
                "total_slots": 1,
                "endpoint_metrics": True,
                "default_generation_settings": {"n_ctx": 4096},
            }
        )

    async def get_slots(self, request: web.Request) -> web.Response:
        self.calls.append("slots")
        slot = {"id": 0, "n_ctx": 4096, "is_processing": False}
        if self.id_task >= 0:  # a server that has run nothing shows no task
            slot |= {"id_task": self.id_task, "n_prompt_tokens": self.prompt_size, "n_prompt_tokens_cache": 0}
        return web.json_response([slot])

    async def get_metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            text=f"# TYPE llamacpp:prompt_tokens_total counter\nllamacpp:prompt_tokens_total {self.processed}\n"
        )

    async def slot_action(self, request: web.Request) -> web.Response:
        action = request.query["action"]
        name = (await request.json())["filename"]
        self.calls.append(action)
        if action == "save":
            data = json.dumps(self.slot).encode()
            (self.folder / name).write_bytes(data)
            return web.json_response(
                {"id_slot": 0, "filename": name, "n_saved": len(self.slot), "n_written": len(data), "timings": {}}
            )
        if self.refuse_restore:
            message = "Unable to restore slot, no available space in KV cache or invalid slot save file"
            return web.json_response({"error": {"code": 400, "message": message}}, status=400)
        self.slot = json.loads((self.folder / name).read_bytes())
        return web.json_response({"id_slot": 0, "filename": name, "n_restored": len(self.slot), "timings": {}})

    async def messages(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append("turn")
        if self.turn_gate is not None:
            await self.turn_gate.wait()
        prompt = (json.dumps(body.get("system")) + " " + json.dumps(body["messages"])).split()
        shared = 0
        for a, b in zip(self.slot, prompt, strict=False):
            if a != b:
                break
            shared += 1
        self.slot, self.prompt_size, self.id_task = prompt, len(prompt), self.id_task + 1
        self.processed += len(prompt) - shared
        if body.get("stream"):
            return await self.stream(request, body["model"])
        return web.json_response(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": "done"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": len(prompt) - shared, "output_tokens": 1, "cache_read_input_tokens": shared},
            }
        )

    async def stream(self, request: web.Request, model: str) -> web.StreamResponse:
        """The answer as Anthropic's events; the body's end waits for END_GATE when it is set."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        message = {"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": []}
        for name, data in (
            ("message_start", {"message": {**message, "usage": {"input_tokens": 1, "output_tokens": 0}}}),
            ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "done"}}),
            ("content_block_stop", {"index": 0}),
            ("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}}),
            ("message_stop", {}),
        ):
            await response.write(f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode())
        if self.end_gate is not None:
            await self.end_gate.wait()
        await response.write_eof()
        return response


def rules(url: str, folder: Path, extra: str = "") -> str:
    """A forward-everything table with warm restarts (braces doubled: make_router formats it)."""
    return f"""
version: 1
upstreams:
  local:
    url: {url}
    slot_save: {{{{folder: "{folder}", idle: 0{extra}}}}}
rules:
  - name: all
    action: {{{{forward: {{{{}}}}}}}}
"""


async def until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@pytest.fixture
async def llama(aiohttp_server, tmp_path):
    fake = FakeLlama(tmp_path / "slots")
    fake.folder.mkdir()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


def turn(text: str) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 5, "system": SYSTEM, "messages": user_message(text)}


def warm(router) -> Any:
    return router.app[STATE].pool["local"].warm


async def test_a_restarted_server_gets_the_saved_slot_back_before_the_next_conversations_first_turn(
    llama, make_router, http
):
    router = await make_router(rules(llama.url, llama.folder))
    client = await http(router)
    assert (await client.post("/v1/messages", json=turn("list the files"))).status == 200
    await until(lambda: warm(router).ledger.saves == 1)
    index = json.loads((llama.folder / INDEX_FILE).read_text())["files"]
    assert len(index) == 1 and (llama.folder / index[0]["file"]).exists()

    llama.restart()
    answer = await client.post("/v1/messages", json=turn("explain the build"))
    assert answer.status == 200
    assert llama.calls.index("restore") < len(llama.calls) - 1 - llama.calls[::-1].index("turn"), llama.calls
    usage = (await answer.json())["usage"]
    assert usage["cache_read_input_tokens"] > usage["input_tokens"], "the system prompt came from the restored slot"
    await until(lambda: warm(router).ledger.tokens_restored > 0)
    assert warm(router).ledger.tokens_restored == usage["cache_read_input_tokens"]

    doc = await (await client.get("/_router/status")).json()
    saved = doc["upstreams"]["local"]["slot_save"]
    assert saved["restores"] == 1 and saved["saves"] >= 1 and saved["files"][0]["bytes"] > 0


async def test_a_server_that_kept_its_cache_is_not_restored_into(llama, make_router, http):
    router = await make_router(rules(llama.url, llama.folder))
    client = await http(router)
    assert (await client.post("/v1/messages", json=turn("one"))).status == 200
    await until(lambda: warm(router).ledger.saves == 1)
    assert (await client.post("/v1/messages", json=turn("two"))).status == 200
    assert "restore" not in llama.calls


async def test_a_refused_restore_falls_back_to_a_plain_prefill_with_one_log_line(llama, make_router, http, caplog):
    router = await make_router(rules(llama.url, llama.folder))
    client = await http(router)
    assert (await client.post("/v1/messages", json=turn("one"))).status == 200
    await until(lambda: warm(router).ledger.saves == 1)
    llama.restart()
    llama.refuse_restore = True
    answer = await client.post("/v1/messages", json=turn("two"))
    assert answer.status == 200 and (await answer.json())["content"][0]["text"] == "done"
    assert warm(router).ledger.refused == 1 and warm(router).ledger.restores == 0
    refused = [r.getMessage() for r in caplog.records if "refused to restore" in r.getMessage()]
    assert len(refused) == 1 and "no available space in KV cache" in refused[0], refused


async def test_no_save_runs_while_a_turn_waits_or_runs(llama, make_router, http):
    router = await make_router(rules(llama.url, llama.folder))
    client = await http(router)
    assert (await client.post("/v1/messages", json=turn("one"))).status == 200
    await until(lambda: warm(router).ledger.saves == 1)
    llama.turn_gate = asyncio.Event()
    running = asyncio.ensure_future(client.post("/v1/messages", json=turn("two")))
    await until(lambda: llama.calls.count("turn") == 2)
    waiting = asyncio.ensure_future(client.post("/v1/messages", json=turn("three")))
    await until(lambda: router.app[STATE].pool["local"].gate.queued == 1)
    calls = len(llama.calls)
    llama.turn_gate.set()
    assert (await running).status == 200 and (await waiting).status == 200
    after_first = llama.calls[calls:]
    assert after_first[: after_first.index("turn") + 1] == ["turn"], f"the waiting turn goes first: {after_first}"
    await until(lambda: warm(router).ledger.saves == 2)


async def test_a_client_that_hangs_up_after_the_last_event_still_has_its_slot_saved(llama, make_router, caplog):
    """Codex hangs up once its stream's last event arrives, before the body's end: the turn was
    answered whole, so its slot is saved as after any finished turn."""
    router = await make_router(rules(llama.url, llama.folder))
    llama.end_gate = asyncio.Event()
    await post_and_leave_after(router, "/v1/messages", {**turn("one"), "stream": True}, b"event: message_stop")
    line = await finished_line(caplog, llama.end_gate.set)
    assert "status=200" in line and "after the answer's last event" in line, line
    await until(lambda: warm(router).ledger.saves == 1)
    assert "save" in llama.calls


async def test_the_budget_deletes_the_oldest_files(llama, make_router, http):
    router = await make_router(rules(llama.url, llama.folder, extra=", budget: 1"))
    client = await http(router)
    assert (await client.post("/v1/messages", json={**turn("one"), "system": "first project"})).status == 200
    await until(lambda: warm(router).ledger.saves == 1)
    first = next(llama.folder.glob("ghost-router-*.bin"))
    assert (await client.post("/v1/messages", json={**turn("two"), "system": "second project"})).status == 200
    await until(lambda: warm(router).ledger.saves == 2)
    assert not first.exists(), "the older file went to stay within the budget"
    assert len(list(llama.folder.glob("ghost-router-*.bin"))) == 1


async def test_a_server_that_is_not_llama_server_is_left_alone(llama, make_router, http, caplog):
    llama.props = False
    router = await make_router(rules(llama.url, llama.folder))
    client = await http(router)
    for text in ("one", "two"):
        assert (await client.post("/v1/messages", json=turn(text))).status == 200
    assert "restore" not in llama.calls and "save" not in llama.calls
    said = [r.getMessage() for r in caplog.records if "does not describe itself as llama-server" in r.getMessage()]
    assert len(said) == 1 and "Remove slot_save from it" in said[0], said


async def test_a_missing_folder_is_a_rules_error_that_says_what_to_do(tmp_path):
    with pytest.raises(RulesError) as error:
        text = rules("http://127.0.0.1:9", tmp_path / "nowhere").format()
        parse_config(text, "rules.yaml", builtin_registry())
    assert "slot_save.folder" in str(error.value) and "--slot-save-path" in str(error.value)


async def llama_metrics(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        text = await response.text()
    return {
        name.removeprefix("llamacpp:"): float(value)
        for name, value in (line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("llamacpp:"))
    }


async def test_a_real_llama_server_restarted_reads_only_the_new_conversations_words(
    aiohttp_server, sdk, tmp_path, unused_tcp_port
):
    require_llama_server()
    folder = tmp_path / "slots"
    folder.mkdir()
    llama = LlamaServer(port=unused_tcp_port, extra=["--slot-save-path", str(folder)], log_path=tmp_path / "llama.log")
    await llama.start()
    try:
        text = rules(llama.url, folder).format()
        router = await aiohttp_server(build_app(parse_config(text, "rules.yaml", builtin_registry())))
        client = sdk(router, timeout=900)
        system = "You are a coding agent. Follow the project's conventions and keep answers short. " * 60

        async def turn(words: str) -> Any:
            async with client.messages.stream(
                model="smollm2", max_tokens=8, system=system, messages=[{"role": "user", "content": words}]
            ) as stream:
                return await stream.get_final_message()

        before = await llama_metrics(llama.url)
        await turn("Say hello.")
        first = (await llama_metrics(llama.url))["prompt_tokens_total"] - before["prompt_tokens_total"]
        await until(lambda: warm(router).ledger.saves == 1, timeout=300)
        assert any(folder.glob("ghost-router-*.bin"))

        await llama.stop()
        await llama.start()
        await turn("Name one prime number.")
        second = (await llama_metrics(llama.url))["prompt_tokens_total"]
        assert warm(router).ledger.restores == 1
        assert second < first * 0.1, f"after the restart the server processed {second} of {first} tokens"
        await until(lambda: warm(router).ledger.tokens_restored > 0, timeout=300)
        print(f"\nfirst turn: {first:.0f} prompt tokens processed; after a restart: {second:.0f}")
    finally:
        await llama.stop()
